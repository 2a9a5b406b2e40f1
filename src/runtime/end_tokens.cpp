#include "runtime/end_tokens.hpp"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "io/json_util.hpp"

namespace af::runtime {
namespace {

// generation_config.json holds a few dozen values; a million leaves ample room while keeping a
// hostile file from allocating more than a few tens of MB before it is refused.
constexpr size_t kGenerationConfigMaxValues = size_t{1} << 20;

// A missing or unreadable generation_config.json adds nothing: it is optional in HF folders. One
// that is present but not valid JSON (or past the depth/size caps) is an error naming the file:
// silently dropping its end tokens would make generation run to the length limit.
std::vector<int32_t> generation_config_eos(const std::string& model_path) {
  std::filesystem::path dir = model_path;
  if (!std::filesystem::is_directory(dir)) dir = dir.parent_path();
  std::vector<int32_t> ids;
  const std::filesystem::path path = dir / "generation_config.json";
  std::ifstream in(path, std::ios::binary);
  if (!in) return ids;
  std::ostringstream text;
  text << in.rdbuf();
  io::detail::JsonLimits limits;
  limits.max_elements = kGenerationConfigMaxValues;
  const nlohmann::json j = io::detail::parse_json(text.str(), path.string(), "runtime", limits);
  if (!j.is_object() || !j.contains("eos_token_id")) return ids;
  const nlohmann::json& e = j["eos_token_id"];
  if (e.is_number_integer()) ids.push_back(e.get<int32_t>());
  if (e.is_array()) {
    for (const auto& v : e)
      if (v.is_number_integer()) ids.push_back(v.get<int32_t>());
  }
  return ids;
}

}  // namespace

std::vector<int32_t> default_end_tokens(const models::CausalLM& model,
                                        const tok::Tokenizer* tokenizer) {
  std::vector<int32_t> ids = model.info().eos_token_ids;
  if (tokenizer && tokenizer->eos_id() >= 0) ids.push_back(tokenizer->eos_id());
  for (int32_t id : generation_config_eos(model.info().path)) ids.push_back(id);
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  return ids;
}

}  // namespace af::runtime
