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
  const double partial = config.get_float("partial_rotary_factor", 1.0);
  const int64_t rotary_dim = static_cast<int64_t>(static_cast<double>(head_dim) * partial);
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
  } else if (type == "longrope") {
    // MiniCPM4: the long factors and the cos/sin scale sqrt(1 + ln(max/orig) / ln(orig)) apply
    // when the configured context exceeds the original one.
    const double max_pos = static_cast<double>(config.get_int("max_position_embeddings"));
    const double orig = params->get_float("original_max_position_embeddings", max_pos);
    const bool long_ctx = max_pos > orig;
    if (params->has("short_factor")) {
      const size_t n = rope.inv_freq_.size();
      const std::vector<float> f =
          factor_list(*params, long_ctx ? "long_factor" : "short_factor", n);
      for (size_t i = 0; i < n; ++i) rope.inv_freq_[i] /= f[i];
    }
    if (long_ctx) {
      AF_CHECK(rotary_dim == head_dim, ErrorCode::kUnsupported, "rope", config.origin(),
               ": longrope with a partial rotary dimension is not supported yet");
      rope.attention_scaling_ =
          static_cast<float>(std::sqrt(1 + std::log(max_pos / orig) / std::log(orig)));
    }
  } else if (type != "default") {
    fail(ErrorCode::kUnsupported, "rope", config.origin(), ": rope type \"", type,
         "\" is not supported yet (supported: default, linear, llama3, longrope)");
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
  return rope;
}

}  // namespace af::nn
