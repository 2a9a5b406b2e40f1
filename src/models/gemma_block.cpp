#include "models/gemma_block.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <optional>
#include <string>
#include <string_view>

#include "af/backend/key_cache.hpp"
#include "af/core/error.hpp"
#include "af/core/half.hpp"
#include "af/nn/attention.hpp"
#include "af/nn/layers.hpp"
#include "models/decoder_lm.hpp"

namespace af::models {
namespace {

constexpr const char* kWho = "gemma";

// Prompts run in chunks of at most this many tokens so the scratch stays bounded.
constexpr int64_t kChunk = 512;

// ---- Weights -----------------------------------------------------------------------------------

struct GemmaLayer {
  nn::RmsNorm input_norm, post_attn_norm, pre_ffw_norm, post_ffw_norm;  // [hidden]
  nn::RmsNorm q_norm, k_norm;                                           // [head_dim] or empty
  nn::Linear q_proj, k_proj, v_proj, o_proj;
  nn::Linear gate_proj, up_proj, down_proj;
};

struct GemmaWeights {
  nn::Embedding embed_tokens;
  std::vector<GemmaLayer> layers;
  nn::RmsNorm norm;
  nn::Linear lm_head;  // tied: a view of embed_tokens' table

  static GemmaWeights load(const nn::VarBuilder& root, const GemmaSpec& s,
                           const std::function<void(int64_t, int64_t)>& progress);
  void prepare(Backend& be) {
    for (GemmaLayer& l : layers) {
      for (nn::Linear* w :
           {&l.q_proj, &l.k_proj, &l.v_proj, &l.o_proj, &l.gate_proj, &l.up_proj, &l.down_proj})
        w->prepare(be);
    }
    lm_head.prepare(be);
  }
};

nn::RmsNorm load_norm(const nn::VarBuilder& vb, int64_t dim, const GemmaSpec& s) {
  nn::RmsNorm n = nn::RmsNorm::load(vb, dim, s.rms_norm_eps);
  for (float& w : n.weight) w += s.norm_weight_offset;
  return n;
}

GemmaWeights GemmaWeights::load(const nn::VarBuilder& root, const GemmaSpec& s,
                                const std::function<void(int64_t, int64_t)>& progress) {
  const int64_t steps = s.num_layers + 2, q_dim = s.num_heads * s.head_dim;
  const int64_t kv_dim = s.num_kv_heads * s.head_dim;
  const nn::VarBuilder vb = root.sub("model");
  GemmaWeights w;
  w.embed_tokens = nn::Embedding::load(vb.sub("embed_tokens"), s.vocab_size, s.hidden_size);
  if (progress) progress(1, steps);
  for (int64_t i = 0; i < s.num_layers; ++i) {
    const nn::VarBuilder lb = vb.sub("layers").sub(i), at = lb.sub("self_attn"),
                         mlp = lb.sub("mlp");
    GemmaLayer l;
    l.input_norm = load_norm(lb.sub("input_layernorm"), s.hidden_size, s);
    l.post_attn_norm = load_norm(lb.sub("post_attention_layernorm"), s.hidden_size, s);
    l.pre_ffw_norm = load_norm(lb.sub("pre_feedforward_layernorm"), s.hidden_size, s);
    l.post_ffw_norm = load_norm(lb.sub("post_feedforward_layernorm"), s.hidden_size, s);
    if (s.qk_norm) {
      l.q_norm = load_norm(at.sub("q_norm"), s.head_dim, s);
      l.k_norm = load_norm(at.sub("k_norm"), s.head_dim, s);
    }
    l.q_proj = nn::Linear::load(at.sub("q_proj"), s.hidden_size, q_dim, false);
    l.k_proj = nn::Linear::load(at.sub("k_proj"), s.hidden_size, kv_dim, false);
    l.v_proj = nn::Linear::load(at.sub("v_proj"), s.hidden_size, kv_dim, false);
    l.o_proj = nn::Linear::load(at.sub("o_proj"), q_dim, s.hidden_size, false);
    l.gate_proj = nn::Linear::load(mlp.sub("gate_proj"), s.hidden_size, s.intermediate_size, false);
    l.up_proj = nn::Linear::load(mlp.sub("up_proj"), s.hidden_size, s.intermediate_size, false);
    l.down_proj = nn::Linear::load(mlp.sub("down_proj"), s.intermediate_size, s.hidden_size, false);
    w.layers.push_back(std::move(l));
    if (progress) progress(i + 2, steps);
  }
  w.norm = load_norm(vb.sub("norm"), s.hidden_size, s);
  const nn::VarBuilder head = root.sub("lm_head");
  if (!s.tie_word_embeddings || head.has("weight")) {
    w.lm_head = nn::Linear::load(head, s.hidden_size, s.vocab_size, false);
  } else {
    w.lm_head.weight = w.embed_tokens.table;
    w.lm_head.in = s.hidden_size;
    w.lm_head.out = s.vocab_size;
  }
  if (progress) progress(steps, steps);
  return w;
}

// ---- Attention helpers
// ---------------------------------------------------------------------------

float cache_value(float x) { return x; }
float cache_value(uint16_t h) { return f16_to_f32(h); }

void attention(Backend& be, const float* q, const float* k, const float* v, int64_t n,
               int64_t n_past, const GemmaSpec& s, float* out) {
  be.attention(q, k, v, n, n_past, s.num_heads, s.num_kv_heads, s.head_dim, s.query_scale, out);
}
void attention(Backend& be, const float* q, const uint16_t* k, const uint16_t* v, int64_t n,
               int64_t n_past, const GemmaSpec& s, float* out) {
  be.attention_f16(q, k, v, n, n_past, s.num_heads, s.num_kv_heads, s.head_dim, s.query_scale, out);
}

// Keys [lo, lo + count) of a key cache copied to positions [0, count) of dst (same layout).
template <class T>
void copy_keys(const T* src, int64_t lo, int64_t count, int64_t n_kv_heads, int64_t head_dim,
               T* dst) {
  for (int64_t j = 0; j < count; ++j) {
    for (int64_t h = 0; h < n_kv_heads; ++h) {
      for (int64_t d = 0; d < head_dim; ++d) {
        dst[key_offset(j, h, d, n_kv_heads, head_dim)] =
            src[key_offset(lo + j, h, d, n_kv_heads, head_dim)];
      }
    }
  }
}

// Soft-capped attention (Gemma 2), with the window when window > 0: plain loops, softmax in
// double. q/out: [n, n_heads * head_dim]; the caches hold positions 0 .. n_past + n - 1.
template <class T>
void softcapped_attention(const float* q, const T* k, const T* v, int64_t n, int64_t n_past,
                          int64_t window, const GemmaSpec& s, float* out) {
  const int64_t hd = s.head_dim, group = s.num_heads / s.num_kv_heads;
  const int64_t q_dim = s.num_heads * hd, kv_dim = s.num_kv_heads * hd;
  const double cap = s.attn_softcap;
  std::vector<double> p(static_cast<size_t>(n_past + n)), acc(static_cast<size_t>(hd));
  for (int64_t t = 0; t < n; ++t) {
    const int64_t pos = n_past + t;
    const int64_t lo = window > 0 ? std::max<int64_t>(0, pos - window + 1) : 0;
    for (int64_t h = 0; h < s.num_heads; ++h) {
      const float* qh = q + t * q_dim + h * hd;
      const int64_t g = h / group;
      double mx = -INFINITY;
      for (int64_t j = lo; j <= pos; ++j) {
        double dot = 0;
        for (int64_t d = 0; d < hd; ++d)
          dot += double(qh[d]) * cache_value(k[key_offset(j, g, d, s.num_kv_heads, hd)]);
        double score = dot * s.query_scale;
        if (cap > 0) score = cap * std::tanh(score / cap);
        p[static_cast<size_t>(j)] = score;
        mx = std::max(mx, score);
      }
      double sum = 0;
      std::fill(acc.begin(), acc.end(), 0.0);
      for (int64_t j = lo; j <= pos; ++j) {
        const double e = std::exp(p[static_cast<size_t>(j)] - mx);
        sum += e;
        const T* vj = v + j * kv_dim + g * hd;
        for (int64_t d = 0; d < hd; ++d) acc[static_cast<size_t>(d)] += e * cache_value(vj[d]);
      }
      float* o = out + t * q_dim + h * hd;
      for (int64_t d = 0; d < hd; ++d) o[d] = static_cast<float>(acc[static_cast<size_t>(d)] / sum);
    }
  }
}

// Gemma 3's sliding layers (no soft-capping) keep a ring of sliding_window rows when the window
// is shorter than the context (nn::SelfAttention::Segment::window); global layers, and Gemma 2's
// soft-capped sliding layers (plain loops over a linear cache), keep every position.
class GemmaSequence final : public SequenceState {
 public:
  GemmaSequence(const GemmaSpec& s, int64_t context, DType kv_type)
      : window(s.attn_softcap == 0 && s.sliding_window < context ? s.sliding_window : 0),
        context(context),
        slot(static_cast<size_t>(s.num_layers)),
        ring(static_cast<size_t>(s.num_layers), false) {
    int64_t n_ring = 0, n_full = 0;
    for (int64_t l = 0; l < s.num_layers; ++l) {
      const bool sliding = !s.sliding.empty() && s.sliding[static_cast<size_t>(l)];
      ring[static_cast<size_t>(l)] = window > 0 && sliding;
      slot[static_cast<size_t>(l)] = ring[static_cast<size_t>(l)] ? n_ring++ : n_full++;
    }
    full = std::make_unique<nn::KvCache>(n_full, context, s.num_kv_heads, s.head_dim, kv_type);
    rings = std::make_unique<nn::KvCache>(n_ring, window, s.num_kv_heads, s.head_dim, kv_type);
  }
  int64_t n_past() const override { return length; }
  int64_t capacity() const override { return context; }
  // As DecoderSequence: past one position back after a ring wrapped, start over.
  void truncate(int64_t n) override {
    AF_CHECK(n >= 0, ErrorCode::kInvalidArgument, "model", "negative truncate length ", n);
    if (window > 0 && n + 1 < length && length > window) n = 0;
    length = std::min(length, n);
  }
  nn::KvCache& cache(int64_t l) { return ring[static_cast<size_t>(l)] ? *rings : *full; }
  void* k(int64_t l) { return cache(l).k(slot[static_cast<size_t>(l)]); }
  void* v(int64_t l) { return cache(l).v(slot[static_cast<size_t>(l)]); }

  int64_t window, context;
  std::vector<int64_t> slot;                 // [num_layers]: layer -> its cache's layer
  std::vector<bool> ring;                    // [num_layers]: whether the layer's cache is a ring
  std::unique_ptr<nn::KvCache> full, rings;  // [context] / [window] rows per layer
  int64_t length = 0;
};

// ---- The model
// -----------------------------------------------------------------------------------

class GemmaLM final : public CausalLM {
 public:
  GemmaLM(std::shared_ptr<const io::ModelFiles> files, GemmaSpec spec, GemmaWeights weights,
          GemmaRopes ropes, float embed_scale, std::shared_ptr<Backend> backend, int64_t context,
          DType kv_type, ModelInfo info)
      : files_(std::move(files)),
        s_(std::move(spec)),
        w_(std::move(weights)),
        ropes_(std::move(ropes)),
        embed_scale_(embed_scale),
        be_(std::move(backend)),
        context_(context),
        kv_type_(kv_type),
        own_(s_, context, kv_type),
        info_(std::move(info)) {}

  ModelConfig config() const override {
    return {s_.vocab_size, s_.max_position_embeddings, s_.hidden_size, s_.num_layers};
  }
  const ModelInfo& info() const override { return info_; }
  int64_t n_past() const override { return own_.length; }
  void truncate(int64_t n) override { own_.truncate(n); }

  std::vector<float> forward(std::span<const int32_t> ids, bool all_logits) override {
    std::vector<float> logits(static_cast<size_t>((all_logits ? ids.size() : 1) * s_.vocab_size));
    run_item(own_, ids, all_logits, logits.data(), "");
    return logits;
  }

  std::unique_ptr<SequenceState> new_sequence(int64_t context_length) override {
    AF_CHECK(context_length >= 0, ErrorCode::kInvalidArgument, "model", "negative context length ",
             context_length);
    return std::make_unique<GemmaSequence>(s_, context_length > 0 ? context_length : context_,
                                           kv_type_);
  }

  // Each item runs on its own (one pass over the weights per item).
  std::vector<float> forward_batch(std::span<const BatchItem> items) override {
    AF_CHECK(!items.empty(), ErrorCode::kInvalidArgument, "model", "forward needs at least one id");
    size_t rows = 0;
    for (size_t i = 0; i < items.size(); ++i) {
      AF_CHECK(items[i].sequence != &own_ && dynamic_cast<GemmaSequence*>(items[i].sequence),
               ErrorCode::kInvalidArgument, "model",
               "forward_batch needs sequences made by this model's new_sequence()");
      AF_CHECK(items[i].embeddings.empty(), ErrorCode::kUnsupported, "model", info_.architecture,
               " does not take input embeddings");
      for (size_t j = 0; j < i; ++j) {
        AF_CHECK(items[j].sequence != items[i].sequence, ErrorCode::kInvalidArgument, "model",
                 "a sequence appears twice in one batch (items ", j, " and ", i, ")");
      }
      rows += items[i].all_logits ? items[i].ids.size() : 1;
    }
    std::vector<float> logits(rows * static_cast<size_t>(s_.vocab_size));
    size_t row = 0;
    for (size_t i = 0; i < items.size(); ++i) {
      const BatchItem& it = items[i];
      run_item(*static_cast<GemmaSequence*>(it.sequence), it.ids, it.all_logits,
               logits.data() + row * static_cast<size_t>(s_.vocab_size),
               " (batch item " + std::to_string(i) + ")");
      row += it.all_logits ? it.ids.size() : 1;
    }
    return logits;
  }

 private:
  void run_item(GemmaSequence& seq, std::span<const int32_t> ids, bool all_logits, float* logits,
                const std::string& where) {
    const auto n = static_cast<int64_t>(ids.size());
    AF_CHECK(n > 0, ErrorCode::kInvalidArgument, "model", "forward needs at least one id", where);
    for (int32_t id : ids) {
      AF_CHECK(id >= 0 && id < s_.vocab_size, ErrorCode::kInvalidArgument, "model", "token id ", id,
               " is outside the vocabulary of ", s_.vocab_size, where);
    }
    AF_CHECK(seq.length + n <= seq.context, ErrorCode::kOutOfRange, "model",
             "context full: ", seq.length, " cached + ", n, " new tokens exceed the context of ",
             seq.context, " (raise the context length)", where);
    for (int64_t done = 0; done < n; done += kChunk) {
      const int64_t m = std::min(kChunk, n - done);
      const bool last = done + m == n;
      const int64_t want = all_logits ? m : (last ? 1 : 0);
      run_chunk(seq, ids.data() + done, m, want, logits + (all_logits ? done : 0) * s_.vocab_size);
    }
  }

  // Appends ids[n] to seq; logits[want, vocab] of the last `want` rows.
  void run_chunk(GemmaSequence& seq, const int32_t* ids, int64_t n, int64_t want, float* logits) {
    const int64_t hidden = s_.hidden_size;
    reserve(n);
    for (int64_t t = 0; t < n; ++t)
      positions_[static_cast<size_t>(t)] = static_cast<int32_t>(seq.length + t);
    float* x = x_.data();  // [n, hidden] residual stream
    w_.embed_tokens.forward(*be_, ids, n, x);
    be_->scale(x, embed_scale_, n * hidden);
    for (int64_t l = 0; l < s_.num_layers; ++l) layer(seq, l, n);
    seq.length += n;
    if (want == 0) return;
    float* h = h_.data();  // [want, hidden]
    w_.norm.forward(*be_, x + (n - want) * hidden, want, h);
    w_.lm_head.forward(*be_, h, want, logits);
    if (s_.final_softcap > 0) {
      const float cap = s_.final_softcap;
      for (int64_t i = 0; i < want * s_.vocab_size; ++i)
        logits[i] = cap * std::tanh(logits[i] / cap);
    }
  }

  bool is_sliding(int64_t l) const {
    return !s_.sliding.empty() && s_.sliding[static_cast<size_t>(l)];
  }

  void layer(GemmaSequence& seq, int64_t l, int64_t n) {
    const GemmaLayer& L = w_.layers[static_cast<size_t>(l)];
    const int64_t hidden = s_.hidden_size, hd = s_.head_dim;
    const int64_t q_dim = s_.num_heads * hd, kv_dim = s_.num_kv_heads * hd;
    float* x = x_.data();               // [n, hidden]
    float* h = h_.data();               // [n, hidden]
    float* q = scratch_.data();         // [n, q_dim]
    float* k_new = q + n * q_dim;       // [n, kv_dim]
    float* v_new = k_new + n * kv_dim;  // [n, kv_dim]
    float* attn = v_new + n * kv_dim;   // [n, q_dim]
    const Backend::MatmulTarget qkv[] = {L.q_proj.target(q), L.k_proj.target(k_new),
                                         L.v_proj.target(v_new)};
    nn::matmul_group_after_norm(*be_, &L.input_norm, x, n, h, qkv, 3, kWho);
    if (s_.qk_norm) {
      L.q_norm.forward(*be_, q, n * s_.num_heads, q);
      L.k_norm.forward(*be_, k_new, n * s_.num_kv_heads, k_new);
    }
    const nn::Rope& rope = is_sliding(l) ? ropes_.local : ropes_.global;
    rope.apply(*be_, q, n, s_.num_heads, positions_.data());
    rope.apply(*be_, k_new, n, s_.num_kv_heads, positions_.data());
    if (seq.ring[static_cast<size_t>(l)]) {
      const DType type = seq.cache(l).k_type();
      const nn::SelfAttention::Segment segment{seq.k(l),   seq.v(l), 0,    n,
                                               seq.length, type,     type, seq.window};
      nn::attend_cached(*be_, segment, q, k_new, v_new, s_.num_heads, s_.num_kv_heads, hd,
                        s_.query_scale, attn);
    } else if (seq.cache(l).k_type() == DType::F16) {
      attend(static_cast<uint16_t*>(seq.k(l)), static_cast<uint16_t*>(seq.v(l)), win_f16_, l, q,
             k_new, v_new, n, seq.length, attn);
    } else {
      attend(static_cast<float*>(seq.k(l)), static_cast<float*>(seq.v(l)), win_f32_, l, q, k_new,
             v_new, n, seq.length, attn);
    }
    L.o_proj.forward(*be_, attn, n, h);
    L.post_attn_norm.forward(*be_, h, n, h);
    be_->add_scaled(x, h, 1.0f, n * hidden);

    float* gate = scratch_.data();                // [n, intermediate]
    float* up = gate + n * s_.intermediate_size;  // [n, intermediate]
    const Backend::MatmulTarget both[] = {L.gate_proj.target(gate), L.up_proj.target(up)};
    nn::matmul_group_after_norm(*be_, &L.pre_ffw_norm, x, n, h, both, 2, kWho);
    be_->gelu(gate, n * s_.intermediate_size, GeluKind::kTanh);
    for (int64_t i = 0; i < n * s_.intermediate_size; ++i) gate[i] *= up[i];
    L.down_proj.forward(*be_, gate, n, h);
    L.post_ffw_norm.forward(*be_, h, n, h);
    be_->add_scaled(x, h, 1.0f, n * hidden);
  }

  // Stores the new keys and values at n_past.. and attends: out[n, q_dim]. Queries whose window
  // reaches back to position 0 run in one call over the cache; each later query of a sliding
  // layer runs on a copy of its own window's keys (the kernels take no lower key bound).
  template <class T>
  void attend(T* k_cache, T* v_cache, std::vector<T>& window_keys, int64_t l, const float* q,
              const float* k_new, const float* v_new, int64_t n, int64_t n_past, float* out) {
    const int64_t q_dim = s_.num_heads * s_.head_dim, kv_dim = s_.num_kv_heads * s_.head_dim;
    store_keys(k_cache, k_new, n, n_past, s_.num_kv_heads, s_.head_dim);
    T* v_dst = v_cache + n_past * kv_dim;
    for (int64_t i = 0; i < n * kv_dim; ++i)
      v_dst[i] = to_cache_element(v_new[i], static_cast<T*>(nullptr));
    const int64_t window = is_sliding(l) ? s_.sliding_window : 0;
    if (s_.attn_softcap > 0) {
      softcapped_attention(q, k_cache, v_cache, n, n_past, window, s_, out);
      return;
    }
    const int64_t whole = window > 0 ? std::clamp<int64_t>(window - n_past, 0, n) : n;
    if (whole > 0) attention(*be_, q, k_cache, v_cache, whole, n_past, s_, out);
    if (whole == n) return;
    window_keys.resize(static_cast<size_t>(key_cache_floats(window, s_.num_kv_heads, s_.head_dim)));
    for (int64_t t = whole; t < n; ++t) {
      const int64_t lo = n_past + t - window + 1;
      copy_keys(k_cache, lo, window, s_.num_kv_heads, s_.head_dim, window_keys.data());
      attention(*be_, q + t * q_dim, window_keys.data(), v_cache + lo * kv_dim, 1, window - 1, s_,
                out + t * q_dim);
    }
  }

  void reserve(int64_t n) {
    const auto need = [&](std::vector<float>& v, int64_t count) {
      if (static_cast<int64_t>(v.size()) < count) v.resize(static_cast<size_t>(count));
    };
    const int64_t q_dim = s_.num_heads * s_.head_dim, kv_dim = s_.num_kv_heads * s_.head_dim;
    need(x_, n * s_.hidden_size);
    need(h_, n * s_.hidden_size);
    need(scratch_, n * std::max(2 * q_dim + 2 * kv_dim, 2 * s_.intermediate_size));
    if (static_cast<int64_t>(positions_.size()) < n) positions_.resize(static_cast<size_t>(n));
  }

  std::shared_ptr<const io::ModelFiles> files_;  // the weights are views into it
  GemmaSpec s_;
  GemmaWeights w_;
  GemmaRopes ropes_;
  float embed_scale_;
  std::shared_ptr<Backend> be_;
  int64_t context_;
  DType kv_type_;
  GemmaSequence own_;
  ModelInfo info_;
  std::vector<float> x_, h_, scratch_, win_f32_;
  std::vector<uint16_t> win_f16_;
  std::vector<int32_t> positions_;
};

// A size field: positive and below 2^31 (products of two sizes cannot overflow).
int64_t size_field(const io::HfConfig& c, const std::string& key, const char* who,
                   std::optional<int64_t> fallback = std::nullopt) {
  const int64_t v = fallback && !c.has(key) ? *fallback : c.get_int(key);
  AF_CHECK(v > 0 && v <= std::numeric_limits<int32_t>::max(), ErrorCode::kFormat, who, c.origin(),
           ": field \"", key, "\" must be a positive integer below 2^31, got ", v);
  return v;
}

// sqrt(hidden) as HF computes it: a float32 scalar cast to the embedding's dtype.
float embedding_scale(const io::ModelFiles& files, int64_t hidden) {
  const float scale = std::sqrt(static_cast<float>(hidden));
  if (files.format == "gguf") return scale;  // llama.cpp: sqrtf(n_embd)
  const DType table = files.weights->get("model.embed_tokens.weight").dtype();
  if (table == DType::BF16) return bf16_to_f32(f32_to_bf16(scale));
  if (table == DType::F16) return f16_to_f32(f32_to_f16(scale));
  return scale;
}

}  // namespace

std::vector<bool> sliding_layers(const io::HfConfig& config, const io::ModelFiles& files,
                                 int64_t n_layers, const std::string& gguf_arch,
                                 int64_t default_pattern) {
  std::vector<bool> sliding(static_cast<size_t>(n_layers), false);
  if (config.has("layer_types") && !config.json().at("layer_types").is_null()) {
    const nlohmann::json& types = config.json().at("layer_types");
    AF_CHECK(types.is_array() && static_cast<int64_t>(types.size()) == n_layers, ErrorCode::kFormat,
             "gemma", config.origin(), ": \"layer_types\" must list ", n_layers, " layer types");
    for (size_t i = 0; i < types.size(); ++i) {
      const bool is_sliding = types[i] == "sliding_attention";
      AF_CHECK(is_sliding || types[i] == "full_attention", ErrorCode::kFormat, "gemma",
               config.origin(), ": layer_types[", i, "] is ", types[i].dump(),
               " (expected \"sliding_attention\" or \"full_attention\")");
      sliding[i] = is_sliding;
    }
    return sliding;
  }
  int64_t pattern = config.get_int("sliding_window_pattern", default_pattern);
  if (files.gguf) {
    const std::string key = gguf_arch + ".attention.sliding_window_pattern";
    if (const io::GgufValue* v = files.gguf->find(key)) {
      if (std::holds_alternative<std::shared_ptr<io::GgufArray>>(v->value)) {
        const io::GgufArray& a = v->as_array(key);
        AF_CHECK(static_cast<int64_t>(a.size()) == n_layers, ErrorCode::kFormat, "gemma",
                 files.path, ": ", key, " lists ", a.size(), " layers, not ", n_layers);
        for (size_t i = 0; i < a.size(); ++i) sliding[i] = a.bool_at(i, key);
        return sliding;
      }
      pattern = v->as_int(key);
    }
  }
  AF_CHECK(pattern >= 0, ErrorCode::kFormat, "gemma", config.origin(),
           ": sliding_window_pattern must not be negative, got ", pattern);
  for (int64_t i = 0; i < n_layers; ++i) {
    sliding[static_cast<size_t>(i)] = pattern == 0 || (i + 1) % pattern != 0;
  }
  return sliding;
}

GemmaSpec GemmaSpec::from_config(const io::HfConfig& c, const char* who) {
  GemmaSpec s;
  s.vocab_size = size_field(c, "vocab_size", who);
  s.hidden_size = size_field(c, "hidden_size", who);
  s.intermediate_size = size_field(c, "intermediate_size", who);
  s.num_layers = size_field(c, "num_hidden_layers", who);
  s.num_heads = size_field(c, "num_attention_heads", who);
  s.num_kv_heads = size_field(c, "num_key_value_heads", who, s.num_heads);
  s.head_dim = size_field(c, "head_dim", who, 256);
  AF_CHECK(s.num_heads % s.num_kv_heads == 0, ErrorCode::kFormat, who, c.origin(),
           ": num_attention_heads ", s.num_heads, " is not a multiple of num_key_value_heads ",
           s.num_kv_heads);
  s.max_position_embeddings = size_field(c, "max_position_embeddings", who, 8192);
  s.rms_norm_eps = c.get_float("rms_norm_eps", 1e-6);
  s.tie_word_embeddings = c.get_bool("tie_word_embeddings", true);
  // GGUF-synthesised configs say "silu" for every architecture; the activation is Gemma's.
  if (c.get_string("model_type", "") != "gemma3" && c.get_string("model_type", "") != "gemma2") {
    const std::string act =
        c.get_string("hidden_activation", c.get_string("hidden_act", "gelu_pytorch_tanh"));
    AF_CHECK(act == "gelu_pytorch_tanh" || act == "gelu_tanh", ErrorCode::kUnsupported, who,
             c.origin(), ": hidden_activation \"", act,
             "\" is not supported (expected gelu_pytorch_tanh)");
  }
  return s;
}

std::unique_ptr<CausalLM> make_gemma_lm(io::ModelFiles files, const io::HfConfig& config,
                                        GemmaSpec spec, const LoadOptions& options,
                                        const GemmaRopeFactory& make_ropes) {
  auto shared = std::make_shared<const io::ModelFiles>(std::move(files));
  // GGUF files read through kGemmaBlockNames (this family's sandwich norms) in io.
  const nn::VarBuilder vb(*shared->weights);
  GemmaWeights weights = GemmaWeights::load(vb.with_quantization(load_weight_type(options)), spec,
                                            options.on_progress);
  const int64_t context = options.context_length > 0
                              ? options.context_length
                              : std::max(spec.max_position_embeddings, options.min_context_length);
  GemmaRopes ropes = make_ropes(*shared, vb, context);
  ModelInfo info;
  info.architecture = config.architecture();
  info.format = shared->format;
  info.path = shared->path;
  info.num_heads = spec.num_heads;
  info.num_kv_heads = spec.num_kv_heads;
  info.head_dim = spec.head_dim;
  info.intermediate_size = spec.intermediate_size;
  info.context_length = context;
  info.bos_token_id = static_cast<int32_t>(config.get_int("bos_token_id", -1));
  info.eos_token_ids = config.eos_token_ids();
  BackendOptions backend_options{options.device, options.num_threads, options.isa};
  backend_options.bf16_dot =
      !options.quantize.empty() && dtype_from_name(options.quantize) == DType::BF16;
  std::shared_ptr<Backend> backend = options.backend;
  if (!backend) backend = make_backend(backend_options);
  if (options.repack_weights) weights.prepare(*backend);
  const float embed_scale = embedding_scale(*shared, spec.hidden_size);
  // Gemma's own attention (sliding windows, soft-capping) reads f32 or f16 caches only.
  info.kv_type_k = options.kv_type_k.value_or(options.kv_type);
  info.kv_type_v = options.kv_type_v.value_or(options.kv_type);
  AF_CHECK(info.kv_type_k == info.kv_type_v &&
               (info.kv_type_k == DType::F32 || info.kv_type_k == DType::F16),
           ErrorCode::kUnsupported, "gemma", config.origin(),
           ": the KV cache of Gemma models is f32 or f16, the same for keys and values (asked for ",
           name(info.kv_type_k), "/", name(info.kv_type_v), ")");
  info.kv_bytes_per_token =
      spec.num_layers * nn::KvCache::bytes_per_position(info.kv_type_k, info.kv_type_v,
                                                        spec.num_kv_heads, spec.head_dim);
  return std::make_unique<GemmaLM>(std::move(shared), std::move(spec), std::move(weights),
                                   std::move(ropes), embed_scale, std::move(backend), context,
                                   info.kv_type_k, std::move(info));
}

}  // namespace af::models
