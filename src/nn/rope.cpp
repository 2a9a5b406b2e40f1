#include "af/nn/rope.hpp"

#include <cmath>
#include <numbers>

#include "af/core/error.hpp"

namespace af::nn {
namespace {

// transformers' _compute_llama3_parameters, in float32 like the reference.
void apply_llama3(const io::HfConfig& p, std::vector<float>& inv_freq) {
  const double factor = p.get_float("factor");
  const double low = p.get_float("low_freq_factor");
  const double high = p.get_float("high_freq_factor");
  const double old_ctx = p.get_float("original_max_position_embeddings");
  AF_CHECK(factor > 0 && high > low, ErrorCode::kFormat, "rope", p.origin(),
           ": llama3 rope scaling needs factor > 0 and high_freq_factor > low_freq_factor");
  const float low_wavelen = static_cast<float>(old_ctx / low);
  const float high_wavelen = static_cast<float>(old_ctx / high);
  for (float& f : inv_freq) {
    const float wavelen = static_cast<float>(2 * std::numbers::pi) / f;
    float scaled = wavelen > low_wavelen ? f / static_cast<float>(factor) : f;
    if (!(wavelen < high_wavelen) && !(wavelen > low_wavelen)) {
      const float smooth = (static_cast<float>(old_ctx) / wavelen - static_cast<float>(low)) /
                           static_cast<float>(high - low);
      scaled = (1 - smooth) * scaled / static_cast<float>(factor) + smooth * scaled;
    }
    f = scaled;
  }
}

std::vector<float> factor_list(const io::HfConfig& p, const std::string& key, size_t n) {
  const nlohmann::json& v = p.json().at(key);
  AF_CHECK(v.is_array() && v.size() == n, ErrorCode::kFormat, "rope", p.origin(), ": \"", key,
           "\" must be a list of ", n, " numbers");
  std::vector<float> out;
  for (const auto& e : v) {
    AF_CHECK(e.is_number() && e.get<double>() > 0, ErrorCode::kFormat, "rope", p.origin(), ": \"",
             key, "\" holds a non-positive or non-numeric entry ", e.dump());
    out.push_back(e.get<float>());
  }
  return out;
}

// The context the model was pretrained with: in rope_parameters (transformers 5), at the top
// level (Phi-3 configs of transformers 4), else max_position_embeddings.
double longrope_original_context(const io::HfConfig& config, const io::HfConfig& params) {
  const double max_pos = static_cast<double>(config.get_int("max_position_embeddings"));
  return params.get_float("original_max_position_embeddings",
                          config.get_float("original_max_position_embeddings", max_pos));
}

// LongRoPE as transformers' _compute_longrope_parameters (Phi-3, MiniCPM4): the frequencies are
// divided by long_factor when the session's context exceeds the original one, else by
// short_factor. transformers picks per forward pass from the longest position seen; a fixed
// choice per session (as llama.cpp makes) keeps cached keys and new queries consistent and
// equals transformers whenever a pass reaches past the original context or the session is
// no longer than it. Returns the cos/sin scale: attention_factor, or
// sqrt(1 + ln(factor) / ln(orig)) with factor = max_position_embeddings / orig by default.
float apply_longrope(const io::HfConfig& config, const io::HfConfig& params, int64_t context,
                     std::vector<float>& inv_freq) {
  const double max_pos = static_cast<double>(config.get_int("max_position_embeddings"));
  const double orig = longrope_original_context(config, params);
  AF_CHECK(orig > 0, ErrorCode::kFormat, "rope", config.origin(),
           ": original_max_position_embeddings must be positive, got ", orig);
  if (params.has("short_factor")) {
    const bool long_ctx = static_cast<double>(context) > orig;
    const std::vector<float> f =
        factor_list(params, long_ctx ? "long_factor" : "short_factor", inv_freq.size());
    for (size_t i = 0; i < inv_freq.size(); ++i) inv_freq[i] /= f[i];
  }
  if (params.has("attention_factor")) {
    const double a = params.get_float("attention_factor");
    AF_CHECK(a > 0, ErrorCode::kFormat, "rope", config.origin(),
             ": attention_factor must be positive, got ", a);
    return static_cast<float>(a);
  }
  const double factor = params.get_float("factor", max_pos / orig);
  if (factor <= 1.0) return 1.0f;
  return static_cast<float>(std::sqrt(1 + std::log(factor) / std::log(orig)));
}
}  // namespace

Rope Rope::from_config(const io::HfConfig& config, int64_t head_dim, RopeLayout layout,
                       const VarBuilder& weights, int64_t context) {
  // transformers 5 keeps theta and scaling in one "rope_parameters" object.
  std::optional<io::HfConfig> params = config.object("rope_parameters");
  if (!params) params = config.object("rope_scaling");
  double theta = config.get_float("rope_theta", 10000.0);
  std::string type = "default";
  if (params) {
    theta = params->get_float("rope_theta", theta);
    type = params->get_string("rope_type", params->get_string("type", "default"));
  }
  // transformers 5 also copies partial_rotary_factor into rope_parameters (Phi-4-mini).
  const double partial = params ? params->get_float("partial_rotary_factor",
                                                    config.get_float("partial_rotary_factor", 1.0))
                                : config.get_float("partial_rotary_factor", 1.0);
  // int(head_dim * partial) as transformers, with a margin for a factor such as 40/48 that
  // a decimal (or a GGUF's rope.dimension_count / head_dim) leaves a hair below the product.
  const auto rotary_dim = static_cast<int64_t>(static_cast<double>(head_dim) * partial + 1e-6);
  AF_CHECK(theta > 0 && rotary_dim > 0 && rotary_dim % 2 == 0 && rotary_dim <= head_dim,
           ErrorCode::kFormat, "rope", config.origin(), ": invalid rope (theta ", theta,
           ", rotary dims ", rotary_dim, " of head_dim ", head_dim, ")");

  Rope rope;
  rope.head_dim_ = head_dim;
  rope.layout_ = layout;
  rope.inv_freq_.resize(static_cast<size_t>(rotary_dim / 2));
  for (int64_t i = 0; i < rotary_dim / 2; ++i) {
    const float exponent = static_cast<float>(2 * i) / static_cast<float>(rotary_dim);
    rope.inv_freq_[static_cast<size_t>(i)] = 1.0f / std::pow(static_cast<float>(theta), exponent);
  }
  if (type == "linear") {
    const float factor = static_cast<float>(params->get_float("factor"));
    AF_CHECK(factor > 0, ErrorCode::kFormat, "rope", config.origin(),
             ": linear rope scaling factor must be positive");
    for (float& f : rope.inv_freq_) f /= factor;
  } else if (type == "llama3") {
    apply_llama3(*params, rope.inv_freq_);
  } else if (type == "longrope" || type == "su") {
    rope.attention_scaling_ = apply_longrope(config, *params, context, rope.inv_freq_);
  } else if (type != "default" && type != "mrope") {
    fail(ErrorCode::kUnsupported, "rope", config.origin(), ": rope type \"", type,
         "\" is not supported yet (supported: default, linear, llama3, longrope/su)");
  }
  // GGUF stores the divisors as tensors (the config synthesised from it has no lists).
  std::string factors_name;
  if (weights.has("rope_freqs.weight")) {
    factors_name = "rope_freqs.weight";
  } else if (weights.has("rope_factors_short.weight") && !(params && params->has("short_factor"))) {
    const bool long_ctx = weights.has("rope_factors_long.weight") && params &&
                          params->has("original_max_position_embeddings") &&
                          context > params->get_int("original_max_position_embeddings");
    factors_name = long_ctx ? "rope_factors_long.weight" : "rope_factors_short.weight";
  }
  if (!factors_name.empty()) {
    const std::vector<float> f =
        weights.f32(factors_name, {static_cast<int64_t>(rope.inv_freq_.size())});
    for (size_t i = 0; i < f.size(); ++i) {
      AF_CHECK(f[i] > 0, ErrorCode::kFormat, "rope", factors_name, "[", i, "] is not positive");
      rope.inv_freq_[i] /= f[i];
    }
  }
  if (params && params->has("mrope_section")) rope.section_freq_ = mrope_sections(*params, rope);
  return rope;
}

std::vector<std::vector<float>> Rope::mrope_sections(const io::HfConfig& params, const Rope& rope) {
  // Qwen2-VL's mrope_section [t, h, w]: frequency i belongs to the component whose section
  // holds it (transformers splits the frequencies by these sizes, cycling t, h, w).
  const nlohmann::json& list = params.json().at("mrope_section");
  const auto n_freq = static_cast<int64_t>(rope.inv_freq_.size());
  AF_CHECK(list.is_array() && !list.empty() && list.size() <= 3, ErrorCode::kFormat, "rope",
           params.origin(), ": mrope_section must be a list of up to 3 sizes");
  std::vector<std::vector<float>> sections(3, std::vector<float>(size_t(n_freq), 0.0f));
  int64_t begin = 0;
  for (size_t c = 0; c < list.size(); ++c) {
    AF_CHECK(list[c].is_number_integer() && list[c].get<int64_t>() >= 0, ErrorCode::kFormat, "rope",
             params.origin(), ": mrope_section entries must be non-negative integers");
    const int64_t end = begin + list[c].get<int64_t>();
    AF_CHECK(end <= n_freq, ErrorCode::kFormat, "rope", params.origin(), ": mrope_section sums to ",
             end, ", more than the ", n_freq, " rotary frequencies (head_dim / 2)");
    for (int64_t i = begin; i < end; ++i) sections[c][size_t(i)] = rope.inv_freq_[size_t(i)];
    begin = end;
  }
  AF_CHECK(begin == n_freq, ErrorCode::kFormat, "rope", params.origin(), ": mrope_section sums to ",
           begin, ", not the ", n_freq, " rotary frequencies (head_dim / 2)");
  return sections;
}

void Rope::scale_rotated(Backend& be, float* x, int64_t rows) const {
  const int64_t rotary = rotary_dim();
  if (rotary == head_dim_) return be.scale(x, attention_scaling_, rows * head_dim_);
  for (int64_t r = 0; r < rows; ++r) be.scale(x + r * head_dim_, attention_scaling_, rotary);
}

}  // namespace af::nn
