// WhisperForConditionalGeneration: config, weights by HF name, encoder and decoder forwards.
#include "af/models/whisper.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <optional>

#include "af/backend/key_cache.hpp"
#include "af/core/dtype.hpp"
#include "af/core/error.hpp"
#include "af/core/half.hpp"
#include "af/models/model_files.hpp"
#include "af/nn/layers.hpp"
#include "af/nn/var_builder.hpp"

namespace af::models {
namespace {

// A float16 copy of float32 weight w when every value is a float16 exactly, else an undefined
// tensor. The CTranslate2 Whisper checkpoints are float16 (OpenAI trained in float16), widened
// to float32 when converted: the decoder reads every weight once per token, so half the bytes
// makes it faster with the same products, since the kernels widen float16 to the same float32
// and sum in the same order (backend/cpu/kernels/dense_packed.hpp).
Tensor exact_f16(const Tensor& w) {
  if (w.dtype() != DType::F32 || w.numel() == 0) return {};
  const float* src = w.as<float>();
  uint16_t first;
  if (!f32_to_f16_exact(src, 1, &first)) return {};  // a float32 checkpoint: known at once
  Tensor h = Tensor::zeros(DType::F16, w.shape());
  if (!f32_to_f16_exact(src, w.numel(), reinterpret_cast<uint16_t*>(h.mutable_data()))) return {};
  return h;
}

// Prepares w for be: with `half`, its exact float16 copy when it has one (the float32 pages it
// came from are released), else w as nn::Linear::prepare does.
std::shared_ptr<const PreparedWeight> prepare_half(Backend& be, Tensor& w, bool half) {
  Tensor h = half ? exact_f16(w) : Tensor();
  if (!h.defined()) {
    return dynamic_cast<const MappedFile*>(w.buffer().get()) ? be.prepare_matmul_weight(w)
                                                             : nullptr;
  }
  if (const auto* file = dynamic_cast<const MappedFile*>(w.buffer().get())) {
    file->release_pages(w.data(), w.nbytes());
  }
  w = std::move(h);
  return be.prepare_matmul_weight(w);
}

void prepare_half(Backend& be, nn::Linear& l, bool half) {
  l.prepared = prepare_half(be, l.weight, half);
}

struct LayerNorm {
  std::vector<float> weight, bias;  // [dim]
  static LayerNorm load(const nn::VarBuilder& vb, int64_t dim) {
    return {vb.f32("weight", {dim}), vb.f32("bias", {dim})};
  }
  void forward(Backend& be, const float* x, int64_t rows, float eps, float* y) const {
    be.layer_norm(x, weight.data(), bias.data(), rows, int64_t(weight.size()), eps, y);
  }
};

// Whisper attention: q/v/out projections with bias, k without (as HF's WhisperAttention).
struct Attention {
  nn::Linear q, k, v, out;
  static Attention load(const nn::VarBuilder& vb, int64_t d) {
    return {nn::Linear::load(vb.sub("q_proj"), d, d, true),
            nn::Linear::load(vb.sub("k_proj"), d, d, false),
            nn::Linear::load(vb.sub("v_proj"), d, d, true),
            nn::Linear::load(vb.sub("out_proj"), d, d, true)};
  }
  void prepare(Backend& be) {
    for (nn::Linear* l : {&q, &k, &v, &out}) l->prepare(be);
  }
  void prepare_half(Backend& be, bool half) {
    for (nn::Linear* l : {&q, &k, &v, &out}) models::prepare_half(be, *l, half);
  }
};

struct Mlp {
  nn::Linear fc1, fc2;
  static Mlp load(const nn::VarBuilder& vb, int64_t d, int64_t ffn) {
    return {nn::Linear::load(vb.sub("fc1"), d, ffn, true),
            nn::Linear::load(vb.sub("fc2"), ffn, d, true)};
  }
  // y[m, d] = fc2(gelu(fc1(x))); scratch: m * ffn floats.
  void forward(Backend& be, const float* x, int64_t m, float* scratch, float* y) const {
    fc1.forward(be, x, m, scratch);
    be.gelu(scratch, m * fc1.out, GeluKind::kErf);
    fc2.forward(be, scratch, m, y);
  }
};

// A conv1d with kernel 3 and padding 1 (Whisper's stem) as im2col + matmul: the weight
// [out, in, 3] is read as [out, in * 3].
struct Conv1d {
  nn::Linear lin;
  int64_t stride = 1;
  static Conv1d load(const nn::VarBuilder& vb, int64_t in, int64_t out, int64_t stride) {
    Conv1d c;
    const Tensor w = vb.tensor("weight", {out, in, 3});
    AF_CHECK(w.dtype() == DType::F32 || w.dtype() == DType::F16 || w.dtype() == DType::BF16,
             ErrorCode::kUnsupported, "whisper", vb.path("weight"), " is stored as ",
             name(w.dtype()), "; conv1d takes f32, f16 or bf16");
    c.lin.weight = w.reshape({out, in * 3});
    c.lin.bias = vb.f32("bias", {out});
    c.lin.in = in * 3;
    c.lin.out = out;
    c.stride = stride;
    return c;
  }
  // x(c, t) = x[c * c_stride + t * t_stride] for t in [0, t_in); y: [t_out, out] rows.
  void forward(Backend& be, const float* x, int64_t t_in, int64_t c_stride, int64_t t_stride,
               std::vector<float>& cols, float* y) const {
    const int64_t in = lin.in / 3, t_out = (t_in - 1) / stride + 1;
    cols.assign(static_cast<size_t>(t_out * in * 3), 0.0f);
    for (int64_t t = 0; t < t_out; ++t) {
      float* row = cols.data() + t * in * 3;
      for (int64_t k = 0; k < 3; ++k) {
        const int64_t src = t * stride + k - 1;
        if (src < 0 || src >= t_in) continue;  // zero padding
        for (int64_t c = 0; c < in; ++c) row[c * 3 + k] = x[c * c_stride + src * t_stride];
      }
    }
    lin.forward(be, cols.data(), t_out, y);
    be.gelu(y, t_out * lin.out, GeluKind::kErf);
  }
};

struct EncoderLayer {
  LayerNorm attn_norm, mlp_norm;
  Attention attn;
  Mlp mlp;
};

struct DecoderLayer {
  LayerNorm self_norm, cross_norm, mlp_norm;
  Attention self_attn, cross_attn;
  Mlp mlp;
};

}  // namespace

struct Whisper::Weights {
  Conv1d conv1, conv2;
  std::vector<float> encoder_positions;  // [max_source_positions, d]
  std::vector<EncoderLayer> encoder;
  LayerNorm encoder_norm;
  nn::Embedding tokens;                  // [vocab, d]
  std::vector<float> decoder_positions;  // [max_target_positions, d]
  std::vector<DecoderLayer> decoder;
  LayerNorm decoder_norm;
  Tensor output;  // [vocab, d]: proj_out.weight, or the token embedding it is tied to
  std::shared_ptr<const PreparedWeight> output_prepared;  // float16 copy's packing, or null
};

WhisperConfig WhisperConfig::from(const io::HfConfig& c) {
  WhisperConfig w;
  w.d_model = c.get_int("d_model");
  w.encoder_layers = c.get_int("encoder_layers");
  w.encoder_heads = c.get_int("encoder_attention_heads");
  w.encoder_ffn = c.get_int("encoder_ffn_dim");
  w.decoder_layers = c.get_int("decoder_layers");
  w.decoder_heads = c.get_int("decoder_attention_heads");
  w.decoder_ffn = c.get_int("decoder_ffn_dim");
  w.num_mel_bins = c.get_int("num_mel_bins", 80);
  w.max_source_positions = c.get_int("max_source_positions", 1500);
  w.max_target_positions = c.get_int("max_target_positions", 448);
  w.vocab_size = c.get_int("vocab_size");
  w.scale_embedding = c.get_bool("scale_embedding", false);
  const std::string act = c.get_string("activation_function", "gelu");
  AF_CHECK(act == "gelu", ErrorCode::kUnsupported, "whisper", c.origin(),
           ": activation_function \"", act, "\" is not supported (gelu)");
  auto positive = [&](int64_t v, const char* key, int64_t hi) {
    AF_CHECK(v > 0 && v <= hi, ErrorCode::kFormat, "whisper", c.origin(), ": \"", key, "\" = ", v,
             " is outside 1..", hi);
  };
  positive(w.d_model, "d_model", 1 << 16);
  positive(w.encoder_layers, "encoder_layers", 256);
  positive(w.decoder_layers, "decoder_layers", 256);
  positive(w.encoder_heads, "encoder_attention_heads", w.d_model);
  positive(w.decoder_heads, "decoder_attention_heads", w.d_model);
  positive(w.encoder_ffn, "encoder_ffn_dim", 1 << 18);
  positive(w.decoder_ffn, "decoder_ffn_dim", 1 << 18);
  positive(w.num_mel_bins, "num_mel_bins", 512);
  positive(w.max_source_positions, "max_source_positions", 1 << 16);
  positive(w.max_target_positions, "max_target_positions", 1 << 16);
  positive(w.vocab_size, "vocab_size", 1 << 22);
  AF_CHECK(w.d_model % w.encoder_heads == 0 && w.d_model % w.decoder_heads == 0, ErrorCode::kFormat,
           "whisper", c.origin(), ": d_model ", w.d_model,
           " is not a multiple of the attention heads");
  return w;
}

bool is_whisper_model(const std::string& path) {
  const io::ModelFiles files = open_model_files(path);
  return io::HfConfig(files.config, path).architecture() == "WhisperForConditionalGeneration";
}

std::unique_ptr<Whisper> Whisper::load(const std::string& path, const LoadOptions& options) {
  std::unique_ptr<Whisper> m(new Whisper());
  m->files_ = open_model_files(path);
  const io::HfConfig hf(m->files_.config, path + " (config.json)");
  AF_CHECK(hf.architecture() == "WhisperForConditionalGeneration", ErrorCode::kUnsupported,
           "whisper", path, ": architecture \"", hf.architecture(),
           "\" is not WhisperForConditionalGeneration");
  const WhisperConfig c = m->config_ = WhisperConfig::from(hf);
  std::optional<DType> weight_type = options.dtype;
  if (!options.quantize.empty()) {
    weight_type = dtype_from_name(options.quantize);
    AF_CHECK(weight_type.has_value() && (!options.dtype || options.dtype == weight_type),
             ErrorCode::kInvalidArgument, "whisper", "quantize '", options.quantize,
             "' is unknown or disagrees with dtype");
  }
  const nn::VarBuilder root =
      nn::VarBuilder(*m->files_.weights, "model").with_quantization(weight_type);
  const int64_t d = c.d_model;
  auto w = std::make_unique<Weights>();
  const nn::VarBuilder enc = root.sub("encoder"), dec = root.sub("decoder");
  w->conv1 = Conv1d::load(enc.sub("conv1"), c.num_mel_bins, d, 1);
  w->conv2 = Conv1d::load(enc.sub("conv2"), d, d, 2);
  w->encoder_positions = enc.sub("embed_positions").f32("weight", {c.max_source_positions, d});
  for (int64_t i = 0; i < c.encoder_layers; ++i) {
    const nn::VarBuilder l = enc.sub("layers").sub(i);
    w->encoder.push_back({LayerNorm::load(l.sub("self_attn_layer_norm"), d),
                          LayerNorm::load(l.sub("final_layer_norm"), d),
                          Attention::load(l.sub("self_attn"), d), Mlp::load(l, d, c.encoder_ffn)});
  }
  w->encoder_norm = LayerNorm::load(enc.sub("layer_norm"), d);
  w->tokens = nn::Embedding::load(dec.sub("embed_tokens"), c.vocab_size, d);
  w->decoder_positions = dec.sub("embed_positions").f32("weight", {c.max_target_positions, d});
  for (int64_t i = 0; i < c.decoder_layers; ++i) {
    const nn::VarBuilder l = dec.sub("layers").sub(i);
    w->decoder.push_back(
        {LayerNorm::load(l.sub("self_attn_layer_norm"), d),
         LayerNorm::load(l.sub("encoder_attn_layer_norm"), d),
         LayerNorm::load(l.sub("final_layer_norm"), d), Attention::load(l.sub("self_attn"), d),
         Attention::load(l.sub("encoder_attn"), d), Mlp::load(l, d, c.decoder_ffn)});
  }
  w->decoder_norm = LayerNorm::load(dec.sub("layer_norm"), d);
  const nn::VarBuilder top(*m->files_.weights);
  w->output = top.has("proj_out.weight") ? top.tensor("proj_out.weight", {c.vocab_size, d})
                                         : w->tokens.table;

  BackendOptions backend_options{options.device, options.num_threads, options.isa};
  // quantize = "bf16" opts in to AVX512_BF16 dot products (activations rounded to bf16), as
  // for the decoder-only models; dtype = BF16 keeps the exact widened-to-float32 path.
  backend_options.bf16_dot = !options.quantize.empty() && weight_type == DType::BF16;
  m->backend_ = make_backend(backend_options);
  Backend& be = *m->backend_;
  w->conv1.lin.prepare(be);
  w->conv2.lin.prepare(be);
  for (auto& l : w->encoder) l.attn.prepare(be), l.mlp.fc1.prepare(be), l.mlp.fc2.prepare(be);
  // The decoder reads its weights once per token (memory-bound): float16 where exact.
  // The cross-attention keys and values are projected once per window (1500 rows, a GEMM that
  // float32 weights serve faster): they stay float32.
  // An explicit dtype (or quantize) keeps the weights as it makes them.
  const bool half = !weight_type.has_value();
  int64_t token_bytes = 0;
  for (auto& l : w->decoder) {
    l.self_attn.prepare_half(be, half);
    prepare_half(be, l.cross_attn.q, half), prepare_half(be, l.cross_attn.out, half);
    l.cross_attn.k.prepare(be), l.cross_attn.v.prepare(be);
    prepare_half(be, l.mlp.fc1, half), prepare_half(be, l.mlp.fc2, half);
    for (const nn::Linear* p : {&l.self_attn.q, &l.self_attn.k, &l.self_attn.v, &l.self_attn.out,
                                &l.cross_attn.q, &l.cross_attn.out, &l.mlp.fc1, &l.mlp.fc2}) {
      token_bytes += int64_t(p->weight.nbytes());
    }
  }
  // Only an exact float16 copy is packed: a float32 one would double the tied embedding's memory.
  if (Tensor h = half ? exact_f16(w->output) : Tensor(); h.defined()) {
    w->output = std::move(h);
    w->output_prepared = be.prepare_matmul_weight(w->output);
  }
  m->token_weight_bytes_ = token_bytes + int64_t(w->output.nbytes());
  m->w_ = std::move(w);
  return m;
}

Whisper::~Whisper() = default;

std::vector<float> Whisper::encode(std::span<const float> mel) {
  const WhisperConfig& c = config_;
  const int64_t d = c.d_model, frames = c.n_frames(), n = c.max_source_positions;
  AF_CHECK(int64_t(mel.size()) == c.num_mel_bins * frames, ErrorCode::kInvalidArgument, "whisper",
           "encode: ", mel.size(), " mel values, expected ", c.num_mel_bins, " x ", frames);
  Backend& be = *backend_;
  std::vector<float> cols, stem(static_cast<size_t>(frames * d));
  std::vector<float> x(static_cast<size_t>(n * d));
  w_->conv1.forward(be, mel.data(), frames, frames, 1, cols, stem.data());  // [frames, d]
  w_->conv2.forward(be, stem.data(), frames, 1, d, cols, x.data());         // [n, d]
  be.add_scaled(x.data(), w_->encoder_positions.data(), 1.0f, n * d);

  const int64_t heads = c.encoder_heads, hd = d / heads;
  const float eps = float(c.layer_norm_eps), scale = 1.0f / std::sqrt(float(hd));
  std::vector<float> h(x.size()), q(x.size()), k(x.size()), v(x.size()), att(x.size());
  std::vector<float> ffn(static_cast<size_t>(n * c.encoder_ffn));
  for (const EncoderLayer& l : w_->encoder) {
    l.attn_norm.forward(be, x.data(), n, eps, h.data());
    const Backend::MatmulTarget qkv[] = {l.attn.q.target(q.data()), l.attn.k.target(k.data()),
                                         l.attn.v.target(v.data())};
    be.matmul_group(h.data(), n, qkv, 3);
    be.attention_rows(q.data(), d, k.data(), d, v.data(), d, n, n, heads, heads, hd, scale, {},
                      att.data());
    l.attn.out.forward(be, att.data(), n, h.data());
    be.add_scaled(x.data(), h.data(), 1.0f, n * d);
    l.mlp_norm.forward(be, x.data(), n, eps, h.data());
    l.mlp.forward(be, h.data(), n, ffn.data(), att.data());
    be.add_scaled(x.data(), att.data(), 1.0f, n * d);
  }
  w_->encoder_norm.forward(be, x.data(), n, eps, x.data());
  return x;
}

WhisperState Whisper::start(std::span<const float> encoded) {
  const WhisperConfig& c = config_;
  const int64_t d = c.d_model, n = c.max_source_positions;
  AF_CHECK(int64_t(encoded.size()) == n * d, ErrorCode::kInvalidArgument, "whisper",
           "start: ", encoded.size(), " encoder values, expected ", n, " x ", d);
  const int64_t heads = c.decoder_heads, hd = d / heads;
  WhisperState s;
  std::vector<float> keys(static_cast<size_t>(n * d));  // [n, d] rows, then blocked
  for (const DecoderLayer& l : w_->decoder) {
    s.cross_k.emplace_back(static_cast<size_t>(key_cache_floats(n, heads, hd)));
    s.cross_v.emplace_back(static_cast<size_t>(n * d));
    const Backend::MatmulTarget kv[] = {l.cross_attn.k.target(keys.data()),
                                        l.cross_attn.v.target(s.cross_v.back().data())};
    backend_->matmul_group(encoded.data(), n, kv, 2);
    // Blocked once here: attention_rows would re-pack all n keys on every decode step.
    store_keys(s.cross_k.back().data(), keys.data(), n, 0, heads, hd);
    s.self_k.emplace_back(static_cast<size_t>(c.max_target_positions * d));
    s.self_v.emplace_back(static_cast<size_t>(c.max_target_positions * d));
  }
  return s;
}

void Whisper::check_state(const WhisperState& s, int64_t m) const {
  const WhisperConfig& c = config_;
  AF_CHECK(m > 0, ErrorCode::kInvalidArgument, "whisper", "decode: no ids");
  AF_CHECK(int64_t(s.self_k.size()) == c.decoder_layers, ErrorCode::kInvalidArgument, "whisper",
           "decode: the state was not made by start()");
  AF_CHECK(
      s.cross_k.size() == s.self_k.size() &&
          int64_t(s.cross_k[0].size()) == key_cache_floats(c.max_source_positions, c.decoder_heads,
                                                           c.d_model / c.decoder_heads),
      ErrorCode::kInvalidArgument, "whisper",
      "decode: cross_k is not start()'s blocked key layout");
  AF_CHECK(s.n_past + m <= c.max_target_positions, ErrorCode::kOutOfRange, "whisper",
           "decode: ", s.n_past + m, " decoder positions exceed max_target_positions ",
           c.max_target_positions);
}

std::vector<float> Whisper::decode(WhisperState& s, std::span<const int32_t> ids, bool all_logits,
                                   WhisperCrossScores* cross_scores) {
  const int64_t m = int64_t(ids.size());
  check_state(s, m);
  WhisperState* states[] = {&s};
  const int64_t rows = all_logits ? m : 1;
  std::vector<float> logits(static_cast<size_t>(rows * config_.vocab_size));
  forward(states, ids, m, all_logits, logits.data(), cross_scores);
  return logits;
}

std::vector<float> Whisper::decode_step(std::span<WhisperState* const> states,
                                        std::span<const int32_t> ids) {
  AF_CHECK(!states.empty() && ids.size() == states.size(), ErrorCode::kInvalidArgument, "whisper",
           "decode_step: ", ids.size(), " ids for ", states.size(), " states");
  for (size_t i = 0; i < states.size(); ++i) {
    check_state(*states[i], 1);
    for (size_t j = 0; j < i; ++j) {
      AF_CHECK(states[j] != states[i], ErrorCode::kInvalidArgument, "whisper",
               "decode_step: state ", i, " is also state ", j);
    }
  }
  std::vector<float> logits(states.size() * static_cast<size_t>(config_.vocab_size));
  forward(states, ids, 1, false, logits.data(), nullptr);
  return logits;
}

// The decoder over rows x of ids: with one state, its `per_state` tokens (decode); with several,
// one token each (decode_step). Self- and cross-attention run per state as decode() of that
// state alone would run them; the norms and matmuls go over all rows at once, each row's result
// the same bits as alone (every kernel sums each output over k in an order that does not depend
// on the other rows), so the weights are read once per step for all states.
void Whisper::forward(std::span<WhisperState* const> states, std::span<const int32_t> ids,
                      int64_t per_state, bool all_logits, float* logits,
                      WhisperCrossScores* cross_scores) {
  const WhisperConfig& c = config_;
  const int64_t d = c.d_model, m = int64_t(ids.size());
  Backend& be = *backend_;
  std::vector<float> x(static_cast<size_t>(m * d));  // [m, d]
  w_->tokens.forward(be, ids.data(), m, x.data());
  if (c.scale_embedding) be.scale(x.data(), std::sqrt(float(d)), m * d);
  for (size_t i = 0; i < states.size(); ++i) {
    be.add_scaled(x.data() + int64_t(i) * per_state * d,
                  w_->decoder_positions.data() + states[i]->n_past * d, 1.0f, per_state * d);
  }
  const int64_t heads = c.decoder_heads, hd = d / heads, n_audio = c.max_source_positions;
  const float eps = float(c.layer_norm_eps), scale = 1.0f / std::sqrt(float(hd));
  const bool one = states.size() == 1;
  std::vector<float> h(x.size()), q(x.size()), att(x.size());               // [m, d]
  std::vector<float> k_new(one ? 0 : x.size()), v_new(one ? 0 : x.size());  // [m, d]
  std::vector<float> ffn(static_cast<size_t>(m * c.decoder_ffn));
  for (size_t i = 0; i < w_->decoder.size(); ++i) {
    const DecoderLayer& l = w_->decoder[i];
    l.self_norm.forward(be, x.data(), m, eps, h.data());
    // One state writes its keys/values straight into its cache; several go through k_new/v_new.
    WhisperState& first = *states[0];
    float* k_out = one ? first.self_k[i].data() + first.n_past * d : k_new.data();
    float* v_out = one ? first.self_v[i].data() + first.n_past * d : v_new.data();
    const Backend::MatmulTarget qkv[] = {l.self_attn.q.target(q.data()),
                                         l.self_attn.k.target(k_out), l.self_attn.v.target(v_out)};
    be.matmul_group(h.data(), m, qkv, 3);
    for (size_t j = 0; j < states.size(); ++j) {
      WhisperState& s = *states[j];
      const int64_t row = int64_t(j) * per_state, past = s.n_past;
      float* k_cache = s.self_k[i].data();
      float* v_cache = s.self_v[i].data();
      if (!one) {
        std::copy_n(k_new.data() + row * d, per_state * d, k_cache + past * d);
        std::copy_n(v_new.data() + row * d, per_state * d, v_cache + past * d);
      }
      AttentionMask causal{AttentionMaskKind::kCausal, past};
      be.attention_rows(q.data() + row * d, d, k_cache, d, v_cache, d, per_state, past + per_state,
                        heads, heads, hd, scale, causal, att.data() + row * d);
    }
    l.self_attn.out.forward(be, att.data(), m, h.data());
    be.add_scaled(x.data(), h.data(), 1.0f, m * d);

    l.cross_norm.forward(be, x.data(), m, eps, h.data());
    l.cross_attn.q.forward(be, h.data(), m, q.data());
    if (cross_scores) {  // decode() only: one state
      cross_scores->record(int64_t(i), q.data(), states[0]->cross_k[i].data(), m, heads, hd,
                           n_audio, scale);
    }
    // The KV-cache kernel over the pre-blocked cross keys; it is causal, so each query row is
    // its own call placed after all n_audio positions (it sees every one).
    for (int64_t t = 0; t < m; ++t) {
      const WhisperState& s = *states[size_t(t / per_state)];
      be.attention(q.data() + t * d, s.cross_k[i].data(), s.cross_v[i].data(), 1, n_audio - 1,
                   heads, heads, hd, scale, att.data() + t * d);
    }
    l.cross_attn.out.forward(be, att.data(), m, h.data());
    be.add_scaled(x.data(), h.data(), 1.0f, m * d);

    l.mlp_norm.forward(be, x.data(), m, eps, h.data());
    l.mlp.forward(be, h.data(), m, ffn.data(), att.data());
    be.add_scaled(x.data(), att.data(), 1.0f, m * d);
  }
  for (WhisperState* s : states) s->n_past += per_state;
  // All rows (decode's all_logits), or the last row of each state.
  const int64_t n_states = int64_t(states.size());
  const int64_t rows = all_logits ? m : n_states;
  if (!all_logits && per_state > 1) {  // one state: its last row
    std::copy_n(x.data() + (m - 1) * d, d, x.data());
  }
  w_->decoder_norm.forward(be, x.data(), rows, eps, h.data());
  be.matmul(h.data(), rows, w_->output, nullptr, logits, w_->output_prepared.get());
}

}  // namespace af::models
