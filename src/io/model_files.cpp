#include "af/io/model_files.hpp"

#include <algorithm>

#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string_view>

#include "af/core/error.hpp"
#include "af/io/architecture.hpp"
#include "af/io/safetensors.hpp"
#include "io/json_util.hpp"

namespace af::io {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr const char* kComponent = "model_files";

// ---- Weight sources --------------------------------------------------------------------------

class SafeTensorsWeights final : public WeightSource {
 public:
  SafeTensorsWeights(std::vector<std::shared_ptr<const SafeTensorsFile>> files,
                     std::map<std::string, size_t> where, std::string origin)
      : files_(std::move(files)), where_(std::move(where)), origin_(std::move(origin)) {}

  bool has(const std::string& hf_name) const override { return where_.count(hf_name) != 0; }
  Tensor get(const std::string& hf_name) const override {
    auto it = where_.find(hf_name);
    AF_CHECK(it != where_.end(), ErrorCode::kFormat, kComponent, origin_, ": no tensor named '",
             hf_name, "'");
    return files_[it->second]->tensor(hf_name);
  }
  std::vector<std::string> names() const override {
    std::vector<std::string> out;
    out.reserve(where_.size());
    for (const auto& [name, file] : where_) out.push_back(name);
    return out;
  }
  std::string origin() const override { return origin_; }

 private:
  std::vector<std::shared_ptr<const SafeTensorsFile>> files_;
  std::map<std::string, size_t> where_;  // tensor name -> index into files_
  std::string origin_;
};

class GgufWeights final : public WeightSource {
 public:
  GgufWeights(std::shared_ptr<const GgufFile> file, const GgufArchitecture* arch)
      : file_(std::move(file)), arch_(arch) {
    for (const GgufTensorInfo& t : file_->tensors()) {
      std::string hf = hf_name_from_gguf(t.name, arch_);
      // An unmapped tensor keeps its GGUF name, which could collide with a mapped one.
      AF_CHECK(hf_to_gguf_.emplace(hf, t.name).second, ErrorCode::kFormat, kComponent,
               file_->origin(), ": tensors '", hf_to_gguf_[hf], "' and '", t.name,
               "' both map to '", hf, "'");
    }
  }

  bool has(const std::string& hf_name) const override { return hf_to_gguf_.count(hf_name) != 0; }
  Tensor get(const std::string& hf_name) const override {
    auto it = hf_to_gguf_.find(hf_name);
    AF_CHECK(it != hf_to_gguf_.end(), ErrorCode::kFormat, kComponent, file_->origin(),
             ": no tensor named '", hf_name, "' (GGUF name '", gguf_name_from_hf(hf_name, arch_),
             "')");
    return file_->tensor(it->second);
  }
  std::vector<std::string> names() const override {
    std::vector<std::string> out;
    out.reserve(hf_to_gguf_.size());
    for (const auto& [hf, gguf] : hf_to_gguf_) out.push_back(hf);
    return out;
  }
  std::string origin() const override { return file_->origin(); }

 private:
  std::shared_ptr<const GgufFile> file_;
  const GgufArchitecture* arch_;  // its tensor names; null for an mmproj
  std::map<std::string, std::string> hf_to_gguf_;
};

// ---- Files -----------------------------------------------------------------------------------

json read_json(const std::string& path, const detail::JsonLimits& limits) {
  std::ifstream in(path, std::ios::binary);
  AF_CHECK(in.good(), ErrorCode::kIo, kComponent, "cannot open ", path, ": ", std::strerror(errno));
  std::ostringstream text;
  text << in.rdbuf();
  AF_CHECK(!in.bad(), ErrorCode::kIo, kComponent, "cannot read ", path);
  return detail::parse_json(text.str(), path, kComponent, limits);
}

// Shard names come from the (untrusted) index: a plain file name inside the folder only.
void check_shard_name(const std::string& shard, const std::string& tensor,
                      const std::string& index_path) {
  bool ok = !shard.empty() && shard != "." && shard != ".." &&
            shard.find_first_of(std::string("/\\\0", 3)) == std::string::npos;
  AF_CHECK(ok, ErrorCode::kFormat, kComponent, index_path, ": shard name \"", shard,
           "\" for tensor '", tensor, "' is not a plain file name inside the folder");
}

std::unique_ptr<WeightSource> open_sharded(const fs::path& dir, const std::string& index_path) {
  detail::JsonLimits limits;
  limits.reject_duplicate_keys = true;
  json index = read_json(index_path, limits);
  AF_CHECK(index.is_object(), ErrorCode::kFormat, kComponent, index_path, ": not a JSON object");
  auto map_it = index.find("weight_map");
  AF_CHECK(map_it != index.end() && map_it->is_object(), ErrorCode::kFormat, kComponent, index_path,
           ": missing or non-object \"weight_map\"");

  std::map<std::string, size_t> shard_ids;  // shard file name -> index into files
  std::map<std::string, size_t> where;      // tensor name -> index into files
  for (const auto& [tensor, shard_json] : map_it->items()) {
    AF_CHECK(shard_json.is_string(), ErrorCode::kFormat, kComponent, index_path,
             ": weight_map entry for '", tensor, "' is not a string");
    const std::string& shard = shard_json.get_ref<const std::string&>();
    check_shard_name(shard, tensor, index_path);
    auto [it, inserted] = shard_ids.emplace(shard, shard_ids.size());
    where[tensor] = it->second;
  }

  std::vector<std::shared_ptr<const SafeTensorsFile>> files(shard_ids.size());
  for (const auto& [shard, id] : shard_ids) {
    fs::path shard_path = dir / shard;
    std::error_code ec;
    AF_CHECK(fs::is_regular_file(shard_path, ec), ErrorCode::kIo, kComponent, index_path,
             ": shard '", shard, "' (", shard_path.string(), ") does not exist");
    files[id] = std::make_shared<SafeTensorsFile>(SafeTensorsFile::open(shard_path.string()));
  }
  for (const auto& [tensor, id] : where) {
    AF_CHECK(files[id]->has(tensor), ErrorCode::kFormat, kComponent, index_path, ": tensor '",
             tensor, "' is listed in shard '", files[id]->origin(), "' but not stored there");
  }
  return std::make_unique<SafeTensorsWeights>(std::move(files), std::move(where), index_path);
}

std::unique_ptr<WeightSource> open_single(const std::string& path) {
  auto file = std::make_shared<const SafeTensorsFile>(SafeTensorsFile::open(path));
  std::map<std::string, size_t> where;
  for (const SafeTensorsEntry& e : file->entries()) where[e.name] = 0;
  return std::make_unique<SafeTensorsWeights>(
      std::vector<std::shared_ptr<const SafeTensorsFile>>{file}, std::move(where), path);
}

// ---- HF config from GGUF metadata ------------------------------------------------------------

// "llama, qwen2, ...": the GGUF architectures the caller accepts, for the unsupported-file
// message.
std::string known_gguf_architectures(GgufArchitectures architectures) {
  std::string known;
  for (const GgufArchitecture* a : architectures) {
    if (!known.empty()) known += ", ";
    known += a->gguf_name;
  }
  return known.empty() ? "none given: pass models::gguf_architectures()" : known;
}

// The vocabulary size: token_embd.weight's rows, else the tokenizer's token count.
int64_t vocab_size_from_gguf(const GgufMetadata& md) {
  const GgufFile& file = md.file();
  for (const GgufTensorInfo& info : file.tensors()) {
    if (info.name != "token_embd.weight") continue;
    AF_CHECK(info.shape.rank() == 2, ErrorCode::kFormat, kComponent, file.origin(),
             ": tensor 'token_embd.weight' has shape ", info.shape.str(), ", expected 2-D");
    return info.shape[0];
  }
  if (md.find("tokenizer.ggml.tokens")) {
    return static_cast<int64_t>(
        md.require("tokenizer.ggml.tokens").as_array("tokenizer.ggml.tokens").size());
  }
  fail(ErrorCode::kFormat, kComponent, file.origin(),
       ": cannot tell the vocabulary size (no token_embd.weight, no tokenizer.ggml.tokens)");
}

// The keys every llama.cpp decoder file carries, under the names config.json uses.
void shared_config_from_gguf(const GgufMetadata& md, json& c) {
  const std::string& p = md.prefix();
  // Read in this order so that a file missing several keys names the same one as before.
  c["hidden_size"] = md.get_int(p + "embedding_length");
  c["num_hidden_layers"] = md.get_int(p + "block_count");
  const int64_t heads = md.get_int(p + "attention.head_count");
  c["intermediate_size"] = md.get_int(p + "feed_forward_length");
  c["num_attention_heads"] = heads;
  c["num_key_value_heads"] =
      md.find(p + "attention.head_count_kv") ? md.get_int(p + "attention.head_count_kv") : heads;
  c["rms_norm_eps"] = md.get_float(p + "attention.layer_norm_rms_epsilon");
  c["rope_theta"] = md.get_float(p + "rope.freq_base", 10000.0);
  c["max_position_embeddings"] = md.get_int(p + "context_length");
  if (md.find(p + "attention.key_length")) c["head_dim"] = md.get_int(p + "attention.key_length");
  c["hidden_act"] = "silu";
  c["vocab_size"] = vocab_size_from_gguf(md);
  c["tie_word_embeddings"] = !md.file().has_tensor("output.weight");

  c["rope_scaling"] = nullptr;
  if (md.find(p + "rope.scaling.type")) {
    std::string type = md.get_string(p + "rope.scaling.type");
    if (type != "none") {
      json s = {{"type", type}, {"rope_type", type}};
      if (md.find(p + "rope.scaling.factor")) s["factor"] = md.get_float(p + "rope.scaling.factor");
      if (md.find(p + "rope.scaling.original_context_length"))
        s["original_max_position_embeddings"] =
            md.get_int(p + "rope.scaling.original_context_length");
      c["rope_scaling"] = s;
    }
  }
  const int64_t vocab = c["vocab_size"].get<int64_t>();
  if (auto bos = md.special_id("tokenizer.ggml.bos_token_id", vocab)) c["bos_token_id"] = *bos;
  // End of generation: EOS plus the end-of-turn / end-of-message tokens llama.cpp also stops on
  // (as HF lists several in generation_config.json).
  json eos = json::array();
  for (const char* key : {"tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id",
                          "tokenizer.ggml.eom_token_id"}) {
    const std::optional<int64_t> id = md.special_id(key, vocab);
    if (id && std::find(eos.begin(), eos.end(), json(*id)) == eos.end()) eos.push_back(*id);
  }
  if (eos.size() == 1) c["eos_token_id"] = eos[0];
  if (eos.size() > 1) c["eos_token_id"] = eos;
}

// The HF-style config of a GGUF file: the shared keys, then its family's own
// (GgufArchitecture::config_from_gguf, in the family's model file).
json config_from_gguf(const GgufFile& file, GgufArchitectures architectures,
                      const GgufArchitecture** found) {
  const GgufMetadata top(file, "");
  const std::string arch = top.get_string("general.architecture");
  *found = nullptr;
  if (arch == "clip") {
    // An mmproj (llama.cpp's vision encoder file): models/mmproj_gguf.cpp reads its clip.* keys
    // and tensor names itself; there is no text model to describe.
    return json{{"architectures", json::array({"clip"})}, {"model_type", "clip"}};
  }
  *found = find_gguf_architecture(architectures, arch);
  AF_CHECK(*found != nullptr, ErrorCode::kUnsupported, kComponent, file.origin(),
           ": GGUF architecture '", arch, "' is not supported (",
           known_gguf_architectures(architectures), ")");
  const GgufMetadata md(file, arch + ".");
  json c = json::object();
  c["architectures"] = json::array({std::string((*found)->hf_class)});
  c["model_type"] = arch;
  shared_config_from_gguf(md, c);
  if ((*found)->config_from_gguf) (*found)->config_from_gguf(md, c);
  return c;
}

ModelFiles open_gguf(const std::string& path, GgufArchitectures architectures) {
  ModelFiles m;
  m.path = path;
  m.format = "gguf";
  auto file = std::make_shared<const GgufFile>(GgufFile::open(path));
  m.config = config_from_gguf(*file, architectures, &m.gguf_architecture);
  m.qk_rope_layout = m.gguf_architecture ? m.gguf_architecture->rope_layout : RopeLayout::kHalf;
  m.weights = std::make_unique<GgufWeights>(file, m.gguf_architecture);
  m.gguf = std::move(file);
  return m;
}

}  // namespace

std::string hf_name_from_gguf(const std::string& gguf_name) {
  return hf_name_from_gguf(gguf_name, nullptr);
}

std::string gguf_name_from_hf(const std::string& hf_name) {
  return gguf_name_from_hf(hf_name, nullptr);
}

json read_json_file(const std::string& path) { return read_json(path, {}); }

std::string sniff_file_format(const std::string& path) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) return "";
  std::ifstream in(path, std::ios::binary);
  char head[16] = {};
  in.read(head, sizeof head);
  const auto n = static_cast<size_t>(in.gcount());
  if (n >= 4 && std::memcmp(head, "GGUF", 4) == 0) return "gguf";
  // safetensors: an 8-byte little-endian header length, then the JSON header's '{'.
  if (n >= 9 && head[8] == '{') return "safetensors";
  for (size_t i = 0; i < n; ++i) {
    if (head[i] == '{') return "json";
    if (!std::isspace(static_cast<unsigned char>(head[i]))) break;
  }
  return "";
}

ModelFiles open_model_files(const std::string& path, GgufArchitectures architectures) {
  std::error_code ec;
  fs::file_status st = fs::status(path, ec);
  AF_CHECK(fs::exists(st), ErrorCode::kIo, kComponent, path, ": no such file or folder");

  ModelFiles m;
  m.path = path;
  m.qk_rope_layout = RopeLayout::kHalf;
  if (fs::is_directory(st)) {
    const fs::path dir(path);
    const fs::path config = dir / "config.json";
    AF_CHECK(fs::is_regular_file(config, ec), ErrorCode::kIo, kComponent, path,
             ": folder has no config.json");
    const fs::path index = dir / "model.safetensors.index.json";
    const fs::path single = dir / "model.safetensors";
    if (fs::is_regular_file(index, ec)) {
      m.weights = open_sharded(dir, index.string());
    } else if (fs::is_regular_file(single, ec)) {
      m.weights = open_single(single.string());
    } else {
      fail(ErrorCode::kIo, kComponent, path,
           ": folder has neither model.safetensors nor model.safetensors.index.json");
    }
    m.format = "safetensors";
    m.config = read_json_file(config.string());
    return m;
  }

  const std::string ext = fs::path(path).extension().string();
  const std::string content = sniff_file_format(path);
  // The first bytes decide; a file named .gguf/.safetensors that is not one goes to that
  // format's reader for a precise message.
  if (content == "gguf" || ext == ".gguf") return open_gguf(path, architectures);
  if (content == "safetensors" || ext == ".safetensors") {
    fs::path config = fs::path(path).parent_path() / "config.json";
    AF_CHECK(fs::is_regular_file(config, ec), ErrorCode::kIo, kComponent, path,
             ": no config.json beside the .safetensors file (looked for ", config.string(), ")");
    m.weights = open_single(path);
    m.format = "safetensors";
    m.config = read_json_file(config.string());
    return m;
  }
  fail(ErrorCode::kFormat, kComponent, path,
       ": unrecognised model format (expected an HF folder with config.json and "
       "model.safetensors, a .safetensors file with config.json beside it, or a GGUF file)");
}

}  // namespace af::io
