#include "models/moe_block.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <optional>

#include "af/core/error.hpp"

namespace af::models {
namespace {

template <class T>
void grow(std::vector<T>& v, int64_t count) {
  if (static_cast<int64_t>(v.size()) < count) v.resize(static_cast<size_t>(count));
}

// An MoE size from config.json: positive and below 2^31, naming the field.
int64_t moe_size(const io::HfConfig& c, const std::string& key, const char* who) {
  const int64_t v = c.get_int(key);
  AF_CHECK(v > 0 && v <= std::numeric_limits<int32_t>::max(), ErrorCode::kFormat, who, c.origin(),
           ": field \"", key, "\" must be a positive integer below 2^31, got ", v);
  return v;
}

}  // namespace

MoeSpec MoeSpec::from_config(const io::HfConfig& c, const char* who, const char* num_experts_key) {
  MoeSpec s;
  s.who = who;
  s.base = DecoderSpec::from_llama_config(c);
  // transformers 5 writes Qwen's num_experts as num_local_experts; either name counts.
  const std::string experts_key =
      c.has(num_experts_key) ? num_experts_key
                             : (c.has("num_experts") ? "num_experts" : "num_local_experts");
  s.num_experts = moe_size(c, experts_key, who);
  s.top_k = moe_size(c, "num_experts_per_tok", who);
  AF_CHECK(s.top_k <= s.num_experts, ErrorCode::kFormat, who, c.origin(), ": num_experts_per_tok ",
           s.top_k, " exceeds the ", s.num_experts, " experts");
  s.expert_intermediate = c.has("moe_intermediate_size") ? moe_size(c, "moe_intermediate_size", who)
                                                         : s.base.intermediate_size;
  s.moe_layers.assign(static_cast<size_t>(s.base.num_layers), true);
  return s;
}

std::vector<bool> qwen_moe_layers(const io::HfConfig& c, const MoeSpec& s) {
  const int64_t step = c.get_int("decoder_sparse_step", 1);
  AF_CHECK(step > 0, ErrorCode::kFormat, s.who, c.origin(),
           ": decoder_sparse_step must be positive, got ", step);
  std::vector<bool> moe(static_cast<size_t>(s.base.num_layers));
  for (int64_t l = 0; l < s.base.num_layers; ++l) moe[static_cast<size_t>(l)] = (l + 1) % step == 0;
  if (c.has("mlp_only_layers") && !c.json().at("mlp_only_layers").is_null()) {
    const nlohmann::json& only = c.json().at("mlp_only_layers");
    AF_CHECK(only.is_array(), ErrorCode::kFormat, s.who, c.origin(),
             ": \"mlp_only_layers\" must be a list of layer indices");
    for (const nlohmann::json& l : only) {
      AF_CHECK(
          l.is_number_integer() && l.get<int64_t>() >= 0 && l.get<int64_t>() < s.base.num_layers,
          ErrorCode::kFormat, s.who, c.origin(), ": mlp_only_layers entry ", l.dump(),
          " is not a layer index below ", s.base.num_layers);
      moe[l.get<size_t>()] = false;
    }
  }
  return moe;
}

void route_top_k(const float* logits, int64_t n, int64_t num_experts, int64_t top_k,
                 bool renormalize, int32_t* experts, float* weights) {
  std::vector<float> p(static_cast<size_t>(num_experts));
  std::vector<bool> taken(static_cast<size_t>(num_experts));
  for (int64_t t = 0; t < n; ++t) {
    const float* row = logits + t * num_experts;
    const float mx = *std::max_element(row, row + num_experts);
    float sum = 0;
    for (int64_t e = 0; e < num_experts; ++e)
      sum += p[static_cast<size_t>(e)] = std::exp(row[e] - mx);
    for (float& v : p) v /= sum;
    std::fill(taken.begin(), taken.end(), false);
    int32_t* ex = experts + t * top_k;
    float* w = weights + t * top_k;
    for (int64_t j = 0; j < top_k; ++j) {
      int64_t best = -1;
      for (int64_t e = 0; e < num_experts; ++e) {  // strict >: the lower index wins a tie
        if (!taken[static_cast<size_t>(e)] &&
            (best < 0 || p[static_cast<size_t>(e)] > p[static_cast<size_t>(best)]))
          best = e;
      }
      taken[static_cast<size_t>(best)] = true;
      ex[j] = static_cast<int32_t>(best);
      w[j] = p[static_cast<size_t>(best)];
    }
    if (!renormalize) continue;
    float total = 0;
    for (int64_t j = 0; j < top_k; ++j) total += w[j];
    for (int64_t j = 0; j < top_k; ++j) w[j] /= total;
  }
}

MoeFfn MoeFfn::load(const nn::VarBuilder& layer, const MoeSpec& s) {
  MoeFfn f;
  f.hidden = s.base.hidden_size;
  f.ff = s.expert_intermediate;
  f.shared_ff = s.shared_intermediate;
  f.top_k = s.top_k;
  f.renormalize = s.norm_topk_prob;
  const nn::VarBuilder m = layer.sub(s.moe_prefix);
  // The router and the shared expert's gate stay as stored (llama.cpp keeps them F32 when it
  // quantizes: routing is sensitive to their rounding).
  const nn::VarBuilder exact = m.with_quantization(std::nullopt);
  f.router = nn::Linear::load(exact.sub("gate"), f.hidden, s.num_experts, false);
  // No reserve: a hostile expert count fails at the first missing or misshapen expert instead.
  for (int64_t e = 0; e < s.num_experts; ++e) {
    const nn::VarBuilder x = m.sub("experts").sub(e);
    f.experts.push_back({nn::Linear::load(x.sub(s.expert_names[0]), f.hidden, f.ff, false),
                         nn::Linear::load(x.sub(s.expert_names[1]), f.hidden, f.ff, false),
                         nn::Linear::load(x.sub(s.expert_names[2]), f.ff, f.hidden, false)});
  }
  if (f.shared_ff > 0) {
    f.shared = nn::GatedMlp::load(m.sub("shared_expert"), f.hidden, f.shared_ff, false);
    f.shared_gate = nn::Linear::load(exact.sub("shared_expert_gate"), f.hidden, 1, false);
  }
  return f;
}

void MoeFfn::prepare(Backend& be) {
  router.prepare(be);
  for (Expert& e : experts) {
    e.gate.prepare(be);
    e.up.prepare(be);
    e.down.prepare(be);
  }
  if (shared_ff > 0) {
    shared.prepare(be);
    shared_gate.prepare(be);
  }
}

void MoeFfn::forward(Backend& be, const float* h, int64_t n, MoeScratch& s, float* y) const {
  const auto n_experts = static_cast<int64_t>(experts.size());
  grow(s.logits, n * n_experts);
  grow(s.experts, n * top_k);
  grow(s.weights, n * top_k);
  router.forward(be, h, n, s.logits.data());
  route_top_k(s.logits.data(), n, n_experts, top_k, renormalize, s.experts.data(),
              s.weights.data());
  if (n == 1) {
    forward_one(be, h, s, y);
  } else {
    // Counting sort of the (token, slot) pairs by expert, tokens ascending within an expert.
    s.offsets.assign(static_cast<size_t>(n_experts + 1), 0);
    for (int64_t i = 0; i < n * top_k; ++i) ++s.offsets[static_cast<size_t>(s.experts[i]) + 1];
    int64_t most = 0;
    for (int64_t e = 0; e < n_experts; ++e) {
      most = std::max(most, s.offsets[static_cast<size_t>(e + 1)]);
      s.offsets[static_cast<size_t>(e + 1)] += s.offsets[static_cast<size_t>(e)];
    }
    grow(s.order, n * top_k);
    std::vector<int64_t> next(s.offsets.begin(), s.offsets.end() - 1);
    for (int64_t i = 0; i < n * top_k; ++i)
      s.order[static_cast<size_t>(next[static_cast<size_t>(s.experts[i])]++)] = i;
    grow(s.rows, most * hidden);
    grow(s.gate, most * ff);
    grow(s.up, most * ff);
    grow(s.out, most * hidden);
    std::fill(y, y + n * hidden, 0.0f);
    for (int64_t e = 0; e < n_experts; ++e) {
      const int64_t first = s.offsets[static_cast<size_t>(e)];
      const int64_t count = s.offsets[static_cast<size_t>(e + 1)] - first;
      if (count == 0) continue;
      const int64_t* slots = s.order.data() + first;
      for (int64_t i = 0; i < count; ++i) {
        std::memcpy(s.rows.data() + i * hidden, h + slots[i] / top_k * hidden,
                    static_cast<size_t>(hidden) * sizeof(float));
      }
      const Expert& x = experts[static_cast<size_t>(e)];
      const Backend::MatmulTarget gate_up[] = {x.gate.target(s.gate.data()),
                                               x.up.target(s.up.data())};
      be.matmul_group(s.rows.data(), count, gate_up, 2);
      be.silu_mul(s.gate.data(), s.up.data(), count * ff);
      x.down.forward(be, s.gate.data(), count, s.out.data());
      for (int64_t i = 0; i < count; ++i) {
        const float w = s.weights[static_cast<size_t>(slots[i])];
        float* dst = y + slots[i] / top_k * hidden;
        const float* src = s.out.data() + i * hidden;
        for (int64_t d = 0; d < hidden; ++d) dst[d] += src[d] * w;
      }
    }
  }
  add_shared(be, h, n, s, y);
}

// One token: the gate/up products of its top_k experts in one group over the same row, then
// each chosen expert's down product, summed in ascending expert order.
void MoeFfn::forward_one(Backend& be, const float* h, MoeScratch& s, float* y) const {
  std::vector<int64_t>& slot = s.order;
  slot.resize(static_cast<size_t>(top_k));
  for (int64_t j = 0; j < top_k; ++j) slot[static_cast<size_t>(j)] = j;
  std::sort(slot.begin(), slot.end(),
            [&](int64_t a, int64_t b) { return s.experts[a] < s.experts[b]; });
  grow(s.gate, top_k * ff);
  grow(s.up, top_k * ff);
  grow(s.out, top_k * hidden);
  std::vector<Backend::MatmulTarget> targets;
  targets.reserve(static_cast<size_t>(2 * top_k));
  for (int64_t j = 0; j < top_k; ++j) {
    const Expert& x = experts[static_cast<size_t>(s.experts[static_cast<size_t>(slot[j])])];
    targets.push_back(x.gate.target(s.gate.data() + j * ff));
    targets.push_back(x.up.target(s.up.data() + j * ff));
  }
  be.matmul_group(h, 1, targets.data(), static_cast<int64_t>(targets.size()));
  be.silu_mul(s.gate.data(), s.up.data(), top_k * ff);
  for (int64_t j = 0; j < top_k; ++j) {
    const Expert& x = experts[static_cast<size_t>(s.experts[static_cast<size_t>(slot[j])])];
    x.down.forward(be, s.gate.data() + j * ff, 1, s.out.data() + j * hidden);
  }
  std::fill(y, y + hidden, 0.0f);
  for (int64_t j = 0; j < top_k; ++j) {
    const float w = s.weights[static_cast<size_t>(slot[j])];
    const float* src = s.out.data() + j * hidden;
    for (int64_t d = 0; d < hidden; ++d) y[d] += src[d] * w;
  }
}

// y += sigmoid(shared_gate · h) * shared_expert(h), when the layer has a shared expert.
void MoeFfn::add_shared(Backend& be, const float* h, int64_t n, MoeScratch& s, float* y) const {
  if (shared_ff == 0) return;
  grow(s.gate, 2 * n * shared_ff);
  grow(s.out, n * hidden + n);
  float* out = s.out.data();       // [n, hidden]
  float* gate = out + n * hidden;  // [n]
  shared.forward(be, h, n, s.gate.data(), out);
  shared_gate.forward(be, h, n, gate);
  for (int64_t t = 0; t < n; ++t) {
    const float g = 1.0f / (1.0f + std::exp(-gate[t]));
    for (int64_t d = 0; d < hidden; ++d) y[t * hidden + d] += g * out[t * hidden + d];
  }
}

}  // namespace af::models
