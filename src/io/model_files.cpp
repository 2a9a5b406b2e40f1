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
#include "af/io/safetensors.hpp"
#include "io/json_util.hpp"

namespace af::io {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr const char* kComponent = "model_files";

// ---- GGUF <-> HF tensor names: the one table ------------------------------------------------

struct NamePair {
  std::string_view gguf;
  std::string_view hf;
};

// Whole-model tensors (the part before ".weight" / ".bias").
constexpr NamePair kGlobalNames[] = {
    {"token_embd", "model.embed_tokens"},
    {"output_norm", "model.norm"},
    {"output", "lm_head"},
};

// Per-layer tensors: "blk.N.<gguf>" <-> "model.layers.N.<hf>".
constexpr NamePair kBlockNames[] = {
    {"attn_qkv", "self_attn.qkv_proj"},  // fused (Phi-3); ffn_up then holds gate_up_proj
    {"attn_norm", "input_layernorm"},
    {"attn_q", "self_attn.q_proj"},
    {"attn_k", "self_attn.k_proj"},
    {"attn_v", "self_attn.v_proj"},
    {"attn_output", "self_attn.o_proj"},
    {"ffn_norm", "post_attention_layernorm"},
    {"ffn_gate", "mlp.gate_proj"},
    {"ffn_up", "mlp.up_proj"},
    {"ffn_down", "mlp.down_proj"},
    {"attn_q_norm", "self_attn.q_norm"},  // q/k_norm: Qwen3's per-head RMSNorm
    {"attn_k_norm", "self_attn.k_norm"},
    // Mixture of experts (Qwen2-MoE, Qwen3-MoE, Mixtral): the router, the experts stacked in
    // one 3-D tensor each ([n_experts, rows, cols]; models slice them), the shared expert.
    {"ffn_gate_inp", "mlp.gate"},
    {"ffn_gate_exps", "mlp.experts.gate_proj"},
    {"ffn_up_exps", "mlp.experts.up_proj"},
    {"ffn_down_exps", "mlp.experts.down_proj"},
    {"ffn_gate_shexp", "mlp.shared_expert.gate_proj"},
    {"ffn_up_shexp", "mlp.shared_expert.up_proj"},
    {"ffn_down_shexp", "mlp.shared_expert.down_proj"},
    {"ffn_gate_inp_shexp", "mlp.shared_expert_gate"},
};

constexpr std::string_view kGgufBlock = "blk.";
constexpr std::string_view kHfBlock = "model.layers.";

// Splits "stem.weight" / "stem.bias"; false for any other suffix.
bool split_suffix(std::string_view name, std::string_view* stem, std::string_view* suffix) {
  for (std::string_view s : {std::string_view(".weight"), std::string_view(".bias")}) {
    if (name.size() > s.size() && name.ends_with(s)) {
      *stem = name.substr(0, name.size() - s.size());
      *suffix = s;
      return true;
    }
  }
  return false;
}

// Splits "<prefix>N.rest" into N and rest; false unless N is a non-empty run of digits.
bool split_block(std::string_view stem, std::string_view prefix, std::string_view* layer,
                 std::string_view* rest) {
  if (!stem.starts_with(prefix)) return false;
  std::string_view tail = stem.substr(prefix.size());
  size_t n = 0;
  while (n < tail.size() && tail[n] >= '0' && tail[n] <= '9') ++n;
  if (n == 0 || n >= tail.size() || tail[n] != '.') return false;
  *layer = tail.substr(0, n);
  *rest = tail.substr(n + 1);
  return true;
}

// Maps `name` through the table in the direction from -> to (member pointers pick the column).
std::string map_name(const std::string& name, std::string_view NamePair::*from,
                     std::string_view NamePair::*to, std::string_view from_block,
                     std::string_view to_block) {
  std::string_view stem, suffix, layer, rest;
  if (!split_suffix(name, &stem, &suffix)) return name;
  for (const NamePair& p : kGlobalNames) {
    if (p.*from == stem) return std::string(p.*to).append(suffix);
  }
  if (split_block(stem, from_block, &layer, &rest)) {
    for (const NamePair& p : kBlockNames) {
      if (p.*from == rest) {
        return std::string(to_block).append(layer).append(".").append(p.*to).append(suffix);
      }
    }
  }
  return name;
}

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
  explicit GgufWeights(std::shared_ptr<const GgufFile> file) : file_(std::move(file)) {
    for (const GgufTensorInfo& t : file_->tensors()) {
      std::string hf = hf_name_from_gguf(t.name);
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
             ": no tensor named '", hf_name, "' (GGUF name '", gguf_name_from_hf(hf_name), "')");
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

class MetadataReader {
 public:
  explicit MetadataReader(const GgufFile& file) : file_(file) {}

  const GgufValue* find(const std::string& key) const { return file_.find(key); }
  const GgufValue& require(const std::string& key) const {
    const GgufValue* v = file_.find(key);
    AF_CHECK(v != nullptr, ErrorCode::kFormat, kComponent, file_.origin(),
             ": missing metadata key '", key, "'");
    return *v;
  }
  int64_t get_int(const std::string& key) const {
    return rethrow([&] { return require(key).as_int(key); });
  }
  std::string get_string(const std::string& key) const {
    return rethrow([&] { return require(key).as_string(key); });
  }
  // float32 values come back as the shortest decimal that rounds to the same float, so that
  // 1e-5f reads as 1e-05 like config.json rather than 9.99999974737875e-06.
  double get_float(const std::string& key) const {
    const GgufValue& v = require(key);
    double d = rethrow([&] { return v.as_float(key); });
    if (v.type != GgufType::kFloat32 || !std::isfinite(d)) return d;
    const float f = static_cast<float>(d);
    char buf[32];
    for (int precision = 1; precision <= 9; ++precision) {
      std::snprintf(buf, sizeof(buf), "%.*g", precision, d);
      double shortest = std::strtod(buf, nullptr);
      if (static_cast<float>(shortest) == f) return shortest;
    }
    return d;
  }
  double get_float(const std::string& key, double fallback) const {
    return find(key) ? get_float(key) : fallback;
  }
  // A special token id, or nullopt when absent or outside [0, vocab): converters write
  // 0xFFFFFFFF (-1 as int32) for "none", and llama.cpp ignores any id past the vocabulary.
  std::optional<int64_t> special_id(const std::string& key, int64_t vocab) const {
    const GgufValue* v = find(key);
    if (v == nullptr) return std::nullopt;
    const auto* u = std::get_if<uint64_t>(&v->value);
    if (u && *u > static_cast<uint64_t>(vocab)) return std::nullopt;  // also past int64
    const int64_t id = get_int(key);
    if (id < 0 || id >= vocab) return std::nullopt;
    return id;
  }

 private:
  // GgufValue's accessors name the key but not the file; add it.
  template <class F>
  auto rethrow(F&& f) const -> decltype(f()) {
    try {
      return f();
    } catch (const Error& e) {
      if (e.component() == kComponent) throw;
      fail(e.code(), kComponent, file_.origin(), ": ", e.what());
    }
  }
  const GgufFile& file_;
};

struct ArchInfo {
  std::string_view gguf_arch;
  std::string_view hf_class;
  RopeLayout layout;  // llama.cpp permutes q/k for interleaved RoPE in llama-family converters
};

constexpr ArchInfo kArchitectures[] = {
    {"llama", "LlamaForCausalLM", RopeLayout::kInterleaved},
    {"qwen2", "Qwen2ForCausalLM", RopeLayout::kHalf},
    {"qwen3", "Qwen3ForCausalLM", RopeLayout::kHalf},
    {"minicpm", "MiniCPMForCausalLM", RopeLayout::kInterleaved},
    {"phi3", "Phi3ForCausalLM", RopeLayout::kHalf},
    {"gemma2", "Gemma2ForCausalLM", RopeLayout::kHalf},
    {"gemma3", "Gemma3ForCausalLM", RopeLayout::kHalf},
    {"qwen2moe", "Qwen2MoeForCausalLM", RopeLayout::kHalf},
    {"qwen3moe", "Qwen3MoeForCausalLM", RopeLayout::kHalf},
};

// Phi-3 (llama.cpp's Phi3MiniModel converter): rotary dims as rope.dimension_count, LongRoPE
// as rope_factors_{long,short} tensors (nn::Rope reads them) with the pretraining context and
// the cos/sin scale as metadata; a sliding_window of 0 means none.
void phi3_config_from_gguf(const MetadataReader& md, const GgufFile& file, const std::string& p,
                           json& c) {
  const int64_t head_dim = c.contains("head_dim") ? c["head_dim"].get<int64_t>()
                                                  : c["hidden_size"].get<int64_t>() /
                                                        c["num_attention_heads"].get<int64_t>();
  if (md.find(p + "rope.dimension_count") && head_dim > 0) {
    c["partial_rotary_factor"] =
        static_cast<double>(md.get_int(p + "rope.dimension_count")) / static_cast<double>(head_dim);
  }
  const int64_t window =
      md.find(p + "attention.sliding_window") ? md.get_int(p + "attention.sliding_window") : 0;
  if (window > 0) c["sliding_window"] = window;
  if (!md.find(p + "rope.scaling.original_context_length")) return;
  const int64_t orig = md.get_int(p + "rope.scaling.original_context_length");
  c["original_max_position_embeddings"] = orig;
  if (!file.has_tensor("rope_factors_short.weight")) return;
  json s = {{"rope_type", "longrope"}, {"original_max_position_embeddings", orig}};
  if (md.find(p + "rope.scaling.attn_factor"))
    s["attention_factor"] = md.get_float(p + "rope.scaling.attn_factor");
  c["rope_scaling"] = s;
}

// Mixture of experts (llama.cpp's converters): the expert counts and widths under the names
// config.json uses; a "llama" file with experts is Mixtral.
void moe_config_from_gguf(const MetadataReader& md, const std::string& p, json& c) {
  if (!md.find(p + "expert_count") || md.get_int(p + "expert_count") == 0) return;
  if (p == "llama.") c["architectures"] = json::array({"MixtralForCausalLM"});
  c["num_experts"] = c["num_local_experts"] = md.get_int(p + "expert_count");
  c["num_experts_per_tok"] = md.get_int(p + "expert_used_count");
  if (md.find(p + "expert_feed_forward_length"))
    c["moe_intermediate_size"] = md.get_int(p + "expert_feed_forward_length");
  if (md.find(p + "expert_shared_feed_forward_length"))
    c["shared_expert_intermediate_size"] = md.get_int(p + "expert_shared_feed_forward_length");
}

json config_from_gguf(const GgufFile& file, RopeLayout* layout) {
  MetadataReader md(file);
  const std::string arch = md.get_string("general.architecture");
  if (arch == "clip") {
    // An mmproj (llama.cpp's vision encoder file): models/mmproj_gguf.cpp reads its clip.* keys
    // and tensor names itself; there is no text model to describe.
    *layout = RopeLayout::kHalf;
    return json{{"architectures", json::array({"clip"})}, {"model_type", "clip"}};
  }
  const ArchInfo* found = nullptr;
  for (const ArchInfo& a : kArchitectures) {
    if (a.gguf_arch == arch) found = &a;
  }
  AF_CHECK(found != nullptr, ErrorCode::kUnsupported, kComponent, file.origin(),
           ": GGUF architecture '", arch,
           "' is not supported (llama, qwen2, qwen3, minicpm, phi3, gemma2, gemma3, qwen2moe, "
           "qwen3moe)");
  *layout = found->layout;
  const std::string p = arch + ".";

  json c = json::object();
  c["architectures"] = json::array({std::string(found->hf_class)});
  c["model_type"] = arch;
  const int64_t hidden = md.get_int(p + "embedding_length");
  const int64_t layers = md.get_int(p + "block_count");
  const int64_t heads = md.get_int(p + "attention.head_count");
  c["hidden_size"] = hidden;
  c["intermediate_size"] = md.get_int(p + "feed_forward_length");
  c["num_hidden_layers"] = layers;
  c["num_attention_heads"] = heads;
  c["num_key_value_heads"] =
      md.find(p + "attention.head_count_kv") ? md.get_int(p + "attention.head_count_kv") : heads;
  c["rms_norm_eps"] = md.get_float(p + "attention.layer_norm_rms_epsilon");
  c["rope_theta"] = md.get_float(p + "rope.freq_base", 10000.0);
  c["max_position_embeddings"] = md.get_int(p + "context_length");
  if (md.find(p + "attention.key_length")) c["head_dim"] = md.get_int(p + "attention.key_length");
  c["hidden_act"] = "silu";

  if (file.has_tensor("token_embd.weight")) {
    for (const GgufTensorInfo& info : file.tensors()) {
      if (info.name != "token_embd.weight") continue;
      AF_CHECK(info.shape.rank() == 2, ErrorCode::kFormat, kComponent, file.origin(),
               ": tensor 'token_embd.weight' has shape ", info.shape.str(), ", expected 2-D");
      c["vocab_size"] = info.shape[0];
    }
  } else if (md.find("tokenizer.ggml.tokens")) {
    c["vocab_size"] = static_cast<int64_t>(
        md.require("tokenizer.ggml.tokens").as_array("tokenizer.ggml.tokens").size());
  } else {
    fail(ErrorCode::kFormat, kComponent, file.origin(),
         ": cannot tell the vocabulary size (no token_embd.weight, no tokenizer.ggml.tokens)");
  }
  c["tie_word_embeddings"] = !file.has_tensor("output.weight");

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

  if (arch == "phi3") phi3_config_from_gguf(md, file, p, c);
  // Mistral's window: llama.cpp's converter does not write it for the llama architecture (and
  // llama.cpp attends to every key there); a file that carries it gets the window.
  if (arch == "llama" && md.find(p + "attention.sliding_window"))
    c["sliding_window"] = md.get_int(p + "attention.sliding_window");
  moe_config_from_gguf(md, p, c);
  if (arch == "minicpm") {
    // convert_hf_to_gguf.py writes embedding_scale = scale_emb,
    // residual_scale = scale_depth / sqrt(num_hidden_layers), logit_scale = hidden /
    // dim_model_base.
    c["scale_emb"] = md.get_float(p + "embedding_scale");
    c["scale_depth"] = md.get_float(p + "residual_scale") * std::sqrt(static_cast<double>(layers));
    const double logit_scale = md.get_float(p + "logit_scale");
    AF_CHECK(logit_scale > 0 && std::isfinite(logit_scale), ErrorCode::kFormat, kComponent,
             file.origin(), ": metadata key '", p, "logit_scale' must be positive, got ",
             logit_scale);
    const double base = static_cast<double>(hidden) / logit_scale;
    // HF configs hold dim_model_base as an integer; float32 rounding should not change that.
    if (std::abs(base - std::round(base)) < 1e-3 * std::max(1.0, base)) {
      c["dim_model_base"] = static_cast<int64_t>(std::llround(base));
    } else {
      c["dim_model_base"] = base;
    }
  }
  return c;
}

ModelFiles open_gguf(const std::string& path) {
  ModelFiles m;
  m.path = path;
  m.format = "gguf";
  auto file = std::make_shared<const GgufFile>(GgufFile::open(path));
  m.config = config_from_gguf(*file, &m.qk_rope_layout);
  m.weights = std::make_unique<GgufWeights>(file);
  m.gguf = std::move(file);
  return m;
}

}  // namespace

std::string hf_name_from_gguf(const std::string& gguf_name) {
  return map_name(gguf_name, &NamePair::gguf, &NamePair::hf, kGgufBlock, kHfBlock);
}

std::string gguf_name_from_hf(const std::string& hf_name) {
  return map_name(hf_name, &NamePair::hf, &NamePair::gguf, kHfBlock, kGgufBlock);
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

ModelFiles open_model_files(const std::string& path) {
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
  if (content == "gguf" || ext == ".gguf") return open_gguf(path);
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
