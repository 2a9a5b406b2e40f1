// Phi-3 / Phi-3.5 / Phi-4-mini (Phi3ForCausalLM): the Llama decoder with fused projections
// (self_attn.qkv_proj = [q; k; v] rows, mlp.gate_up_proj = [gate; up] rows), LongRoPE with
// short/long factors and its cos/sin scale, and partial rotary (Phi-4-mini) -- the last two
// handled by nn::Rope -- and Phi-3-mini's sliding window (a ring KV cache, as Mistral's). The
// fused weights keep their HF names in the file; a view of the weight source presents their
// row ranges as q/k/v_proj and gate/up_proj, so the shared decoder runs them unchanged and
// without a copy (rows of every type are contiguous).
#include <array>
#include <limits>
#include <optional>
#include <string>
#include <string_view>

#include "af/core/error.hpp"
#include "models/decoder_lm.hpp"
#include "models/registry.hpp"

namespace af::models {
namespace {

class FusedSplitSource final : public io::WeightSource {
 public:
  // llama.cpp's converter keeps both fused: attn_qkv and ffn_up, which this family's tensor
  // names (kBlockNames below) read back as self_attn.qkv_proj and mlp.gate_up_proj.
  FusedSplitSource(std::unique_ptr<io::WeightSource> inner, const DecoderSpec& spec)
      : inner_(std::move(inner)) {
    const int64_t q = spec.num_heads * spec.head_dim;
    const int64_t kv = spec.num_kv_heads * spec.head_dim;
    const int64_t ff = spec.intermediate_size;
    const std::string_view qkv = "self_attn.qkv_proj.weight";
    const std::string_view gate_up = "mlp.gate_up_proj.weight";
    parts_ = {{{"self_attn.q_proj.weight", qkv, 0, q, q + 2 * kv},
               {"self_attn.k_proj.weight", qkv, q, kv, q + 2 * kv},
               {"self_attn.v_proj.weight", qkv, q + kv, kv, q + 2 * kv},
               {"mlp.gate_proj.weight", gate_up, 0, ff, 2 * ff},
               {"mlp.up_proj.weight", gate_up, ff, ff, 2 * ff}}};
  }

  bool has(const std::string& name) const override {
    const auto split = find_part(name);
    return split ? inner_->has(split->first + std::string(split->second->fused))
                 : inner_->has(name);
  }

  Tensor get(const std::string& name) const override {
    const auto split = find_part(name);
    if (!split) return inner_->get(name);
    const Part& part = *split->second;
    const std::string fused_name = split->first + std::string(part.fused);
    const Tensor fused = inner_->get(fused_name);
    AF_CHECK(fused.shape().rank() == 2 && fused.shape()[0] == part.fused_rows, ErrorCode::kFormat,
             "weights", inner_->origin(), ": tensor ", fused_name, " has shape ",
             fused.shape().str(), ", the config implies ", part.fused_rows, " rows");
    const size_t row_bytes = fused.nbytes() / static_cast<size_t>(part.fused_rows);
    return Tensor(fused.dtype(), Shape{part.rows, fused.shape()[1]}, fused.buffer(),
                  fused.data() + static_cast<size_t>(part.first_row) * row_bytes);
  }

  std::vector<std::string> names() const override { return inner_->names(); }
  std::string origin() const override { return inner_->origin(); }

 private:
  // One split part: the HF name the decoder asks for, the fused tensor it lies in, its rows.
  struct Part {
    std::string_view name, fused;
    int64_t first_row, rows, fused_rows;
  };

  // The layer prefix ("model.layers.3.") and the part, when `name` is one of the split names.
  std::optional<std::pair<std::string, const Part*>> find_part(const std::string& name) const {
    for (const Part& part : parts_) {
      if (name.size() > part.name.size() && name.ends_with(part.name) &&
          name[name.size() - part.name.size() - 1] == '.') {
        return std::pair{name.substr(0, name.size() - part.name.size()), &part};
      }
    }
    return std::nullopt;
  }

  std::unique_ptr<io::WeightSource> inner_;
  std::array<Part, 5> parts_;
};

DecoderSpec phi3_decoder_spec(const io::HfConfig& config) {
  DecoderSpec spec = DecoderSpec::from_llama_config(config);
  spec.qkv_bias = spec.o_bias = spec.mlp_bias = false;
  // As transformers' Phi3 mask (masking_utils' sliding_window_overlay): query p sees key j
  // when p - j < sliding_window (null or absent: every key). A window shorter than the
  // session's context (Phi-3-mini-4k: 2047 of 4096) makes each layer's KV cache a ring.
  const int64_t window = config.get_int("sliding_window", 0);
  AF_CHECK(window >= 0 && window <= std::numeric_limits<int32_t>::max(), ErrorCode::kFormat, "phi3",
           config.origin(), ": sliding_window must be a non-negative integer, got ", window);
  spec.sliding_window = window;
  return spec;
}

std::unique_ptr<CausalLM> make_phi3(io::ModelFiles files, const io::HfConfig& config,
                                    const LoadOptions& options) {
  const DecoderSpec spec = phi3_decoder_spec(config);
  files.weights = std::make_unique<FusedSplitSource>(std::move(files.weights), spec);
  return make_decoder_lm(std::move(files), config, spec, options);
}

// llama.cpp's Phi3MiniModel converter: rotary dims as rope.dimension_count, LongRoPE as
// rope_factors_{long,short} tensors (nn::Rope reads them) with the pretraining context and the
// cos/sin scale as metadata; a sliding_window of 0 means none.
void phi3_config_from_gguf(const io::GgufMetadata& md, nlohmann::json& c) {
  const int64_t head_dim = c.contains("head_dim") ? c["head_dim"].get<int64_t>()
                                                  : c["hidden_size"].get<int64_t>() /
                                                        c["num_attention_heads"].get<int64_t>();
  if (md.find(md.arch("rope.dimension_count")) && head_dim > 0) {
    c["partial_rotary_factor"] = static_cast<double>(md.get_int(md.arch("rope.dimension_count"))) /
                                 static_cast<double>(head_dim);
  }
  const std::string window_key = md.arch("attention.sliding_window");
  const int64_t window = md.find(window_key) ? md.get_int(window_key) : 0;
  if (window > 0) c["sliding_window"] = window;
  const std::string orig_key = md.arch("rope.scaling.original_context_length");
  if (!md.find(orig_key)) return;
  const int64_t orig = md.get_int(orig_key);
  c["original_max_position_embeddings"] = orig;
  if (!md.file().has_tensor("rope_factors_short.weight")) return;
  nlohmann::json s = {{"rope_type", "longrope"}, {"original_max_position_embeddings", orig}};
  if (md.find(md.arch("rope.scaling.attn_factor")))
    s["attention_factor"] = md.get_float(md.arch("rope.scaling.attn_factor"));
  c["rope_scaling"] = s;
}

constexpr io::TensorName kBlockNames[] = {{"ffn_up", "mlp.gate_up_proj"}};
constexpr std::string_view kClasses[] = {"Phi3ForCausalLM"};
constexpr io::GgufArchitecture kGguf{
    .gguf_name = "phi3",
    .hf_class = "Phi3ForCausalLM",
    .block_names = kBlockNames,
    .config_from_gguf = phi3_config_from_gguf,
};

}  // namespace

constinit const ArchitectureInfo kPhi3Architecture{kClasses, make_phi3, &kGguf};

}  // namespace af::models
