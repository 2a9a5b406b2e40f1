// The MoE decoder of moe_block.hpp as a CausalLM: attention (with optional q/k head norms) over
// the shared KV cache types, then a dense SwiGLU MLP or the MoE ffn per layer.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

#include "af/backend/key_cache.hpp"
#include "af/core/error.hpp"
#include "af/nn/attention.hpp"
#include "af/nn/rope.hpp"
#include "models/moe_block.hpp"

namespace af::models {
namespace {

// Prompts run in chunks of at most this many tokens so the scratch stays bounded.
constexpr int64_t kChunk = 512;

// Presents each expert's projection under its own HF name ("<p>.experts.3.gate_proj.weight")
// when the file stacks all experts in one 3-D tensor ("<p>.experts.gate_proj.weight", which is
// what the io name table calls GGUF's blk.N.ffn_gate_exps): a view of expert 3's rows, no copy.
class ExpertSliceSource final : public io::WeightSource {
 public:
  ExpertSliceSource(const io::WeightSource& inner, int64_t num_experts)
      : inner_(inner), num_experts_(num_experts) {}

  bool has(const std::string& name) const override {
    if (inner_.has(name)) return true;
    const std::optional<Slice> s = parse(name);
    return s && inner_.has(s->stacked);
  }

  Tensor get(const std::string& name) const override {
    const std::optional<Slice> s = inner_.has(name) ? std::nullopt : parse(name);
    if (!s || !inner_.has(s->stacked)) return inner_.get(name);
    const Tensor all = inner_.get(s->stacked);
    const std::string gguf = io::gguf_name_from_hf(s->stacked);
    AF_CHECK(all.shape().rank() == 3 && all.shape()[0] == num_experts_, ErrorCode::kFormat, "moe",
             inner_.origin(), ": tensor ", s->stacked,
             gguf == s->stacked ? std::string() : " (" + gguf + ")", " has shape ",
             all.shape().str(), ", expected [", num_experts_,
             ", rows, columns]: one matrix per expert of the config's expert count");
    AF_CHECK(s->expert < num_experts_, ErrorCode::kFormat, "moe", inner_.origin(), ": expert ",
             s->expert, " of ", name, " is past the ", num_experts_, " experts");
    const size_t bytes = all.nbytes() / static_cast<size_t>(num_experts_);
    return Tensor(all.dtype(), Shape{all.shape()[1], all.shape()[2]}, all.buffer(),
                  all.data() + static_cast<size_t>(s->expert) * bytes);
  }

  std::vector<std::string> names() const override { return inner_.names(); }
  std::string origin() const override { return inner_.origin(); }

 private:
  struct Slice {
    std::string stacked;
    int64_t expert;
  };
  // "<p>.experts.<E>.<rest>" -> {"<p>.experts.<rest>", E}.
  static std::optional<Slice> parse(const std::string& name) {
    constexpr std::string_view kKey = ".experts.";
    const size_t at = name.find(kKey);
    if (at == std::string::npos) return std::nullopt;
    const size_t begin = at + kKey.size();
    size_t end = begin;
    while (end < name.size() && name[end] >= '0' && name[end] <= '9') ++end;
    if (end == begin || end - begin > 9 || end >= name.size() || name[end] != '.')
      return std::nullopt;
    return Slice{name.substr(0, begin) + name.substr(end + 1),
                 std::stoll(name.substr(begin, end - begin))};
  }

  const io::WeightSource& inner_;
  int64_t num_experts_;
};

struct MoeLayer {
  nn::RmsNorm input_norm, post_norm;  // [hidden]
  nn::RmsNorm q_norm, k_norm;         // [head_dim], when spec.qk_norm
  nn::SelfAttention attn;             // its projections (the forward is this file's)
  bool is_moe = false;
  nn::GatedMlp mlp;  // dense layers
  MoeFfn moe;        // MoE layers
};

struct MoeWeights {
  nn::Embedding embed_tokens;
  std::vector<MoeLayer> layers;
  nn::RmsNorm norm;
  nn::Linear lm_head;  // tied: a view of embed_tokens' table

  static MoeWeights load(const nn::VarBuilder& root, const MoeSpec& s,
                         const std::function<void(int64_t, int64_t)>& progress) {
    const DecoderSpec& b = s.base;
    const int64_t steps = b.num_layers + 2;
    const nn::VarBuilder vb = root.sub("model");
    MoeWeights w;
    w.embed_tokens = nn::Embedding::load(vb.sub("embed_tokens"), b.vocab_size, b.hidden_size);
    if (progress) progress(1, steps);
    for (int64_t i = 0; i < b.num_layers; ++i) {
      const nn::VarBuilder lb = vb.sub("layers").sub(i);
      MoeLayer l;
      l.input_norm = nn::RmsNorm::load(lb.sub("input_layernorm"), b.hidden_size, b.rms_norm_eps);
      l.post_norm =
          nn::RmsNorm::load(lb.sub("post_attention_layernorm"), b.hidden_size, b.rms_norm_eps);
      l.attn = nn::SelfAttention::load(lb.sub("self_attn"), b.hidden_size, b.num_heads,
                                       b.num_kv_heads, b.head_dim, b.qkv_bias, b.o_bias);
      if (s.qk_norm) {
        l.q_norm = nn::RmsNorm::load(lb.sub("self_attn").sub("q_norm"), b.head_dim, b.rms_norm_eps);
        l.k_norm = nn::RmsNorm::load(lb.sub("self_attn").sub("k_norm"), b.head_dim, b.rms_norm_eps);
      }
      l.is_moe = s.moe_layers[static_cast<size_t>(i)];
      if (l.is_moe) {
        l.moe = MoeFfn::load(lb, s);
      } else {
        l.mlp = nn::GatedMlp::load(lb.sub("mlp"), b.hidden_size, b.intermediate_size, b.mlp_bias);
      }
      w.layers.push_back(std::move(l));
      if (progress) progress(i + 2, steps);
    }
    w.norm = nn::RmsNorm::load(vb.sub("norm"), b.hidden_size, b.rms_norm_eps);
    const nn::VarBuilder head = root.sub("lm_head");
    if (!b.tie_word_embeddings || head.has("weight")) {
      w.lm_head = nn::Linear::load(head, b.hidden_size, b.vocab_size, false);
    } else {
      w.lm_head.weight = w.embed_tokens.table;
      w.lm_head.in = b.hidden_size;
      w.lm_head.out = b.vocab_size;
    }
    if (progress) progress(steps, steps);
    return w;
  }

  void prepare(Backend& be) {
    for (MoeLayer& l : layers) {
      l.attn.prepare(be);
      if (l.is_moe) {
        l.moe.prepare(be);
      } else {
        l.mlp.prepare(be);
      }
    }
    lm_head.prepare(be);
  }
};

class MoeSequence final : public SequenceState {
 public:
  MoeSequence(const DecoderSpec& s, int64_t context, DType k_type, DType v_type)
      : cache(s.num_layers, context, s.num_kv_heads, s.head_dim, k_type, v_type) {}
  int64_t n_past() const override { return length; }
  int64_t capacity() const override { return cache.max_seq(); }
  void truncate(int64_t n) override {
    AF_CHECK(n >= 0, ErrorCode::kInvalidArgument, "model", "negative truncate length ", n);
    length = std::min(length, n);
  }
  nn::KvCache cache;
  int64_t length = 0;
};

class MoeLM final : public CausalLM {
 public:
  MoeLM(std::shared_ptr<const io::ModelFiles> files, std::unique_ptr<io::WeightSource> slices,
        MoeSpec spec, MoeWeights weights, nn::Rope rope, std::shared_ptr<Backend> backend,
        int64_t context, ModelInfo info)
      : files_(std::move(files)),
        slices_(std::move(slices)),
        s_(std::move(spec)),
        w_(std::move(weights)),
        rope_(std::move(rope)),
        be_(std::move(backend)),
        context_(context),
        own_(s_.base, context, info.kv_type_k, info.kv_type_v),
        info_(std::move(info)) {}

  ModelConfig config() const override {
    const DecoderSpec& b = s_.base;
    return {b.vocab_size, b.max_position_embeddings, b.hidden_size, b.num_layers};
  }
  const ModelInfo& info() const override { return info_; }
  int64_t n_past() const override { return own_.length; }
  void truncate(int64_t n) override { own_.truncate(n); }

  std::vector<float> forward(std::span<const int32_t> ids, bool all_logits) override {
    std::vector<float> logits(
        static_cast<size_t>((all_logits ? ids.size() : 1) * s_.base.vocab_size));
    run_item(own_, ids, all_logits, logits.data(), "");
    return logits;
  }

  std::unique_ptr<SequenceState> new_sequence(int64_t context_length) override {
    AF_CHECK(context_length >= 0, ErrorCode::kInvalidArgument, "model", "negative context length ",
             context_length);
    return std::make_unique<MoeSequence>(s_.base, context_length > 0 ? context_length : context_,
                                         info_.kv_type_k, info_.kv_type_v);
  }

  // Each item runs on its own (one pass over the weights per item).
  std::vector<float> forward_batch(std::span<const BatchItem> items) override {
    AF_CHECK(!items.empty(), ErrorCode::kInvalidArgument, "model", "forward needs at least one id");
    size_t rows = 0;
    for (size_t i = 0; i < items.size(); ++i) {
      AF_CHECK(items[i].sequence != &own_ && dynamic_cast<MoeSequence*>(items[i].sequence),
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
    const auto vocab = static_cast<size_t>(s_.base.vocab_size);
    std::vector<float> logits(rows * vocab);
    size_t row = 0;
    for (size_t i = 0; i < items.size(); ++i) {
      const BatchItem& it = items[i];
      run_item(*static_cast<MoeSequence*>(it.sequence), it.ids, it.all_logits,
               logits.data() + row * vocab, " (batch item " + std::to_string(i) + ")");
      row += it.all_logits ? it.ids.size() : 1;
    }
    return logits;
  }

 private:
  void run_item(MoeSequence& seq, std::span<const int32_t> ids, bool all_logits, float* logits,
                const std::string& where) {
    const auto n = static_cast<int64_t>(ids.size());
    const int64_t vocab = s_.base.vocab_size;
    AF_CHECK(n > 0, ErrorCode::kInvalidArgument, "model", "forward needs at least one id", where);
    for (int32_t id : ids) {
      AF_CHECK(id >= 0 && id < vocab, ErrorCode::kInvalidArgument, "model", "token id ", id,
               " is outside the vocabulary of ", vocab, where);
    }
    AF_CHECK(seq.length + n <= seq.cache.max_seq(), ErrorCode::kOutOfRange, "model",
             "context full: ", seq.length, " cached + ", n, " new tokens exceed the context of ",
             seq.cache.max_seq(), " (raise the context length)", where);
    for (int64_t done = 0; done < n; done += kChunk) {
      const int64_t m = std::min(kChunk, n - done);
      const int64_t want = all_logits ? m : (done + m == n ? 1 : 0);
      run_chunk(seq, ids.data() + done, m, want, logits + (all_logits ? done : 0) * vocab);
    }
  }

  // Appends ids[n] to seq; logits[want, vocab] of the last `want` rows.
  void run_chunk(MoeSequence& seq, const int32_t* ids, int64_t n, int64_t want, float* logits) {
    const int64_t hidden = s_.base.hidden_size;
    reserve(n);
    for (int64_t t = 0; t < n; ++t)
      positions_[static_cast<size_t>(t)] = static_cast<int32_t>(seq.length + t);
    float* x = x_.data();  // [n, hidden] residual stream
    w_.embed_tokens.forward(*be_, ids, n, x);
    for (int64_t l = 0; l < s_.base.num_layers; ++l) {
      attention(seq, l, n);
      ffn(l, n);
    }
    seq.length += n;
    if (want == 0) return;
    float* h = h_.data();  // [want, hidden]
    w_.norm.forward(*be_, x + (n - want) * hidden, want, h);
    w_.lm_head.forward(*be_, h, want, logits);
  }

  // x += o_proj(attention(rope(norm_q(q)), rope(norm_k(k)), v)) over input_norm(x).
  void attention(MoeSequence& seq, int64_t l, int64_t n) {
    const MoeLayer& L = w_.layers[static_cast<size_t>(l)];
    const DecoderSpec& b = s_.base;
    const int64_t hd = b.head_dim, q_dim = b.num_heads * hd, kv_dim = b.num_kv_heads * hd;
    float* x = x_.data();               // [n, hidden]
    float* h = h_.data();               // [n, hidden]
    float* q = scratch_.data();         // [n, q_dim]
    float* k_new = q + n * q_dim;       // [n, kv_dim]
    float* v_new = k_new + n * kv_dim;  // [n, kv_dim]
    float* out = v_new + n * kv_dim;    // [n, q_dim]
    const Backend::MatmulTarget qkv[] = {L.attn.q_proj.target(q), L.attn.k_proj.target(k_new),
                                         L.attn.v_proj.target(v_new)};
    nn::matmul_group_after_norm(*be_, &L.input_norm, x, n, h, qkv, 3, s_.who);
    if (s_.qk_norm) {
      L.q_norm.forward(*be_, q, n * b.num_heads, q);
      L.k_norm.forward(*be_, k_new, n * b.num_kv_heads, k_new);
    }
    rope_.apply(*be_, q, n, b.num_heads, positions_.data());
    rope_.apply(*be_, k_new, n, b.num_kv_heads, positions_.data());
    store_keys_as(seq.cache.k_type(), seq.cache.k(l), k_new, n, seq.length, b.num_kv_heads, hd);
    store_values_as(seq.cache.v_type(), seq.cache.v(l), v_new, n, seq.length, b.num_kv_heads, hd);
    be_->attention_kv(q, {seq.cache.k(l), seq.cache.v(l), seq.cache.k_type(), seq.cache.v_type()},
                      n, seq.length, b.num_heads, b.num_kv_heads, hd,
                      1.0f / std::sqrt(static_cast<float>(hd)), out);
    L.attn.o_proj.forward(*be_, out, n, h);
    be_->add_scaled(x, h, 1.0f, n * b.hidden_size);
  }

  // x += mlp(post_norm(x)), the MLP dense or MoE.
  void ffn(int64_t l, int64_t n) {
    const MoeLayer& L = w_.layers[static_cast<size_t>(l)];
    const int64_t hidden = s_.base.hidden_size;
    float* x = x_.data();
    float* h = h_.data();
    float* y = y_.data();  // [n, hidden]
    L.post_norm.forward(*be_, x, n, h);
    if (L.is_moe) {
      L.moe.forward(*be_, h, n, moe_scratch_, y);
    } else {
      L.mlp.forward(*be_, h, n, scratch_.data(), y);
    }
    be_->add_scaled(x, y, 1.0f, n * hidden);
  }

  void reserve(int64_t n) {
    const auto need = [&](std::vector<float>& v, int64_t count) {
      if (static_cast<int64_t>(v.size()) < count) v.resize(static_cast<size_t>(count));
    };
    const DecoderSpec& b = s_.base;
    const int64_t q_dim = b.num_heads * b.head_dim, kv_dim = b.num_kv_heads * b.head_dim;
    need(x_, n * b.hidden_size);
    need(h_, n * b.hidden_size);
    need(y_, n * b.hidden_size);
    need(scratch_, n * std::max(2 * q_dim + 2 * kv_dim, 2 * b.intermediate_size));
    if (static_cast<int64_t>(positions_.size()) < n) positions_.resize(static_cast<size_t>(n));
  }

  std::shared_ptr<const io::ModelFiles> files_;  // the weights are views into it
  std::unique_ptr<io::WeightSource> slices_;     // the expert-slicing view used at load
  MoeSpec s_;
  MoeWeights w_;
  nn::Rope rope_;
  std::shared_ptr<Backend> be_;
  int64_t context_;
  MoeSequence own_;
  ModelInfo info_;
  std::vector<float> x_, h_, y_, scratch_;
  std::vector<int32_t> positions_;
  MoeScratch moe_scratch_;
};

}  // namespace

std::unique_ptr<CausalLM> make_moe_lm(io::ModelFiles files, const io::HfConfig& config,
                                      MoeSpec spec, const LoadOptions& options) {
  auto shared = std::make_shared<const io::ModelFiles>(std::move(files));
  auto slices = std::make_unique<ExpertSliceSource>(*shared->weights, spec.num_experts);
  const nn::VarBuilder vb(*slices);
  MoeWeights weights =
      MoeWeights::load(vb.with_quantization(load_weight_type(options)), spec, options.on_progress);
  const DecoderSpec& b = spec.base;
  const int64_t context = options.context_length > 0
                              ? options.context_length
                              : std::max(b.max_position_embeddings, options.min_context_length);
  nn::Rope rope = nn::Rope::from_config(config, b.head_dim, shared->qk_rope_layout, vb, context);
  ModelInfo info;
  info.architecture = config.architecture();
  info.format = shared->format;
  info.path = shared->path;
  info.num_heads = b.num_heads;
  info.num_kv_heads = b.num_kv_heads;
  info.head_dim = b.head_dim;
  info.intermediate_size = spec.expert_intermediate;
  info.context_length = context;
  info.kv_type_k = options.kv_type_k.value_or(options.kv_type);
  info.kv_type_v = options.kv_type_v.value_or(options.kv_type);
  info.kv_bytes_per_token =
      b.num_layers *
      nn::KvCache::bytes_per_position(info.kv_type_k, info.kv_type_v, b.num_kv_heads, b.head_dim);
  info.bos_token_id = static_cast<int32_t>(config.get_int("bos_token_id", -1));
  info.eos_token_ids = config.eos_token_ids();
  BackendOptions backend_options{options.device, options.num_threads, options.isa};
  backend_options.bf16_dot =
      !options.quantize.empty() && dtype_from_name(options.quantize) == DType::BF16;
  std::shared_ptr<Backend> backend = options.backend;
  if (!backend) backend = make_backend(backend_options);
  if (options.repack_weights) weights.prepare(*backend);
  return std::make_unique<MoeLM>(std::move(shared), std::move(slices), std::move(spec),
                                 std::move(weights), std::move(rope), std::move(backend), context,
                                 std::move(info));
}

bool moe_config_from_gguf(const io::GgufMetadata& md, nlohmann::json& c) {
  if (!md.find(md.arch("expert_count")) || md.get_int(md.arch("expert_count")) == 0) return false;
  c["num_experts"] = c["num_local_experts"] = md.get_int(md.arch("expert_count"));
  c["num_experts_per_tok"] = md.get_int(md.arch("expert_used_count"));
  if (md.find(md.arch("expert_feed_forward_length")))
    c["moe_intermediate_size"] = md.get_int(md.arch("expert_feed_forward_length"));
  if (md.find(md.arch("expert_shared_feed_forward_length")))
    c["shared_expert_intermediate_size"] = md.get_int(md.arch("expert_shared_feed_forward_length"));
  return true;
}

}  // namespace af::models
