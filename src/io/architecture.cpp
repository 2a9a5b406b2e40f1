#include "af/io/architecture.hpp"

#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "af/core/error.hpp"

namespace af::io {
namespace {

constexpr const char* kComponent = "model_files";

// Whole-model tensors (the part before ".weight" / ".bias").
constexpr TensorName kGlobalNames[] = {
    {"token_embd", "model.embed_tokens"},
    {"output_norm", "model.norm"},
    {"output", "lm_head"},
};

// Per-layer tensors: "blk.N.<gguf>" <-> "model.layers.N.<hf>".
constexpr TensorName kBlockNames[] = {
    {"attn_qkv", "self_attn.qkv_proj"},  // fused (Phi-3)
    {"attn_norm", "input_layernorm"},
    {"attn_q", "self_attn.q_proj"},
    {"attn_k", "self_attn.k_proj"},
    {"attn_v", "self_attn.v_proj"},
    {"attn_output", "self_attn.o_proj"},
    {"ffn_norm", "post_attention_layernorm"},
    {"ffn_gate", "mlp.gate_proj"},
    {"ffn_up", "mlp.up_proj"},
    {"ffn_down", "mlp.down_proj"},
    {"attn_q_norm", "self_attn.q_norm"},  // q/k_norm: per-head RMSNorm (Qwen3, Gemma 3)
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

// Maps `name` in the direction from -> to (member pointers pick the column): the family's
// own block names first, then the shared tables.
std::string map_name(const std::string& name, const GgufArchitecture* arch,
                     std::string_view TensorName::*from, std::string_view TensorName::*to,
                     std::string_view from_block, std::string_view to_block) {
  std::string_view stem, suffix, layer, rest;
  if (!split_suffix(name, &stem, &suffix)) return name;
  for (const TensorName& p : kGlobalNames) {
    if (p.*from == stem) return std::string(p.*to).append(suffix);
  }
  if (!split_block(stem, from_block, &layer, &rest)) return name;
  const std::span<const TensorName> own = arch ? arch->block_names : std::span<const TensorName>();
  for (std::span<const TensorName> table : {own, std::span<const TensorName>(kBlockNames)}) {
    for (const TensorName& p : table) {
      if (p.*from == rest) {
        return std::string(to_block).append(layer).append(".").append(p.*to).append(suffix);
      }
    }
  }
  return name;
}

}  // namespace

std::span<const TensorName> shared_global_names() { return kGlobalNames; }
std::span<const TensorName> shared_block_names() { return kBlockNames; }

std::string hf_name_from_gguf(const std::string& gguf_name, const GgufArchitecture* arch) {
  return map_name(gguf_name, arch, &TensorName::gguf, &TensorName::hf, kGgufBlock, kHfBlock);
}

std::string gguf_name_from_hf(const std::string& hf_name, const GgufArchitecture* arch) {
  return map_name(hf_name, arch, &TensorName::hf, &TensorName::gguf, kHfBlock, kGgufBlock);
}

const GgufArchitecture* find_gguf_architecture(GgufArchitectures known,
                                               std::string_view gguf_name) {
  for (const GgufArchitecture* a : known) {
    if (a->gguf_name == gguf_name) return a;
  }
  return nullptr;
}

// ---- GgufMetadata ----------------------------------------------------------------------------

namespace {

// GgufValue's accessors name the key but not the file; add it.
template <class F>
auto with_origin(const GgufFile& file, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const Error& e) {
    if (e.component() == kComponent) throw;
    fail(e.code(), kComponent, file.origin(), ": ", e.what());
  }
}

}  // namespace

const GgufValue& GgufMetadata::require(const std::string& key) const {
  const GgufValue* v = file_.find(key);
  AF_CHECK(v != nullptr, ErrorCode::kFormat, kComponent, file_.origin(), ": missing metadata key '",
           key, "'");
  return *v;
}

int64_t GgufMetadata::get_int(const std::string& key) const {
  return with_origin(file_, [&] { return require(key).as_int(key); });
}

std::string GgufMetadata::get_string(const std::string& key) const {
  return with_origin(file_, [&] { return require(key).as_string(key); });
}

double GgufMetadata::get_float(const std::string& key) const {
  const GgufValue& v = require(key);
  double d = with_origin(file_, [&] { return v.as_float(key); });
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

std::optional<int64_t> GgufMetadata::special_id(const std::string& key, int64_t vocab) const {
  const GgufValue* v = find(key);
  if (v == nullptr) return std::nullopt;
  const auto* u = std::get_if<uint64_t>(&v->value);
  if (u && *u > static_cast<uint64_t>(vocab)) return std::nullopt;  // also past int64
  const int64_t id = get_int(key);
  if (id < 0 || id >= vocab) return std::nullopt;
  return id;
}

// ---- GgufConversionInput ----------------------------------------------------------------------

int64_t GgufConversionInput::get_int(const char* key) const {
  auto it = config.find(key);
  AF_CHECK(it != config.end() && it->is_number_integer(), ErrorCode::kFormat, "convert", origin,
           ": config.json needs integer \"", key, "\"");
  return it->get<int64_t>();
}

double GgufConversionInput::number(const nlohmann::json& object, const char* key, double fallback) {
  auto it = object.find(key);
  return it != object.end() && it->is_number() ? it->get<double>() : fallback;
}

}  // namespace af::io
