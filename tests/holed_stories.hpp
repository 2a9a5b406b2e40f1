#pragma once
// stories260K-hf with holes in its tokenizer's id space: a copy whose tokenizer.json lacks some
// vocabulary entries (and the merges that use them) while model.safetensors keeps all 512
// embedding rows. Real vocabularies look like this between their regular and added tokens, and
// padded embeddings (Qwen2's 151936 rows for 151646 tokens) like a missing last id.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "test_util.hpp"

namespace af::test {

inline std::string stories_hf_dir() { return testdata_dir() + "/models/stories260K-hf"; }

// Writes the copy into `dir` (which must exist) and returns its path.
inline std::string write_holed_stories(const std::filesystem::path& dir,
                                       const std::set<int32_t>& holes) {
  namespace fs = std::filesystem;
  const fs::path src = stories_hf_dir();
  for (const char* name :
       {"config.json", "generation_config.json", "tokenizer_config.json", "model.safetensors"}) {
    fs::copy_file(src / name, dir / name, fs::copy_options::overwrite_existing);
  }
  nlohmann::ordered_json tok = nlohmann::ordered_json::parse(read_text(src / "tokenizer.json"));
  auto& model = tok["model"];
  std::set<std::string> removed;
  nlohmann::ordered_json vocab = nlohmann::ordered_json::object();
  for (auto& [piece, id] : model["vocab"].items()) {
    if (holes.count(id.get<int32_t>())) {
      removed.insert(piece);
    } else {
      vocab[piece] = id;
    }
  }
  model["vocab"] = vocab;
  nlohmann::ordered_json merges = nlohmann::ordered_json::array();
  for (const auto& m : model["merges"]) {
    const std::string s = m.get<std::string>();
    const size_t sp = s.find(' ');
    const std::string a = s.substr(0, sp), b = s.substr(sp + 1);
    if (!removed.count(a) && !removed.count(b) && !removed.count(a + b)) merges.push_back(m);
  }
  model["merges"] = merges;
  std::ofstream(dir / "tokenizer.json") << tok.dump();
  return dir.string();
}

}  // namespace af::test
