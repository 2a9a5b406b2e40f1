#include "models/decoder_lm.hpp"

#include <algorithm>
#include <cstring>
#include <limits>
#include <optional>
#include <string>

#include "af/backend/quant.hpp"
#include "af/core/error.hpp"

namespace af::models {
namespace {

// Prompts are processed in chunks of at most this many tokens so the activation scratch stays
// bounded (about kChunk * (4 * hidden + 2 * intermediate) floats) whatever the prompt length.
constexpr int64_t kChunk = 512;

// A window at least as long as the context never hides a key: no ring then.
int64_t effective_window(int64_t window, int64_t context) {
  return window > 0 && window < context ? window : 0;
}

class DecoderSequence final : public SequenceState {
 public:
  // window > 0: the cache is a ring of `window` rows (nn::SelfAttention::Segment::window).
  DecoderSequence(int64_t n_layers, int64_t context, int64_t window, int64_t n_kv_heads,
                  int64_t head_dim, DType k_type, DType v_type)
      : cache(n_layers, window > 0 ? window : context, n_kv_heads, head_dim, k_type, v_type),
        window(window),
        context(context) {}
  int64_t n_past() const override { return length; }
  int64_t capacity() const override { return context; }
  // A ring keeps only the last `window` positions: going back more than one position after it
  // wrapped would need keys it has overwritten, so the sequence then starts over (n_past() 0).
  void truncate(int64_t n) override {
    AF_CHECK(n >= 0, ErrorCode::kInvalidArgument, "model", "negative truncate length ", n);
    if (window > 0 && n + 1 < length && length > window) n = 0;
    length = std::min(length, n);
    // Cut back to where explicit M-RoPE positions began: later ids are plain text again.
    if (length <= rope_delta_from) rope_delta = 0, rope_delta_from = INT64_MAX;
  }

  nn::KvCache cache;  // [window or context rows] per layer
  int64_t window, context;
  int64_t length = 0;
  // M-RoPE (InputEmbeddings::positions): ids without explicit positions sit at length + delta;
  // delta holds since cache row rope_delta_from.
  int64_t rope_delta = 0;
  int64_t rope_delta_from = INT64_MAX;
};

class DecoderLM final : public CausalLM {
 public:
  DecoderLM(std::shared_ptr<const io::ModelFiles> files, DecoderSpec spec, DecoderWeights weights,
            nn::Rope rope, std::shared_ptr<Backend> backend, int64_t context, ModelInfo info)
      : files_(std::move(files)),
        spec_(spec),
        w_(std::move(weights)),
        rope_(std::move(rope)),
        be_(std::move(backend)),
        context_(context),
        own_(spec.num_layers, context, effective_window(spec.sliding_window, context),
             spec.num_kv_heads, spec.head_dim, info.kv_type_k, info.kv_type_v),
        info_(std::move(info)) {}

  ModelConfig config() const override {
    return {spec_.vocab_size, spec_.max_position_embeddings, spec_.hidden_size, spec_.num_layers};
  }
  const ModelInfo& info() const override { return info_; }
  int64_t n_past() const override { return own_.length; }
  void truncate(int64_t n) override { own_.truncate(n); }

  std::vector<float> forward(std::span<const int32_t> ids, bool all_logits) override {
    const BatchItem item{&own_, ids, all_logits};
    return run(std::span(&item, 1), Output::kLogits);
  }

  std::vector<float> forward_embeds(std::span<const int32_t> ids, bool all_logits,
                                    const InputEmbeddings& embeddings) override {
    const BatchItem item{&own_, ids, all_logits, embeddings};
    return run(std::span(&item, 1), Output::kLogits);
  }

  std::unique_ptr<SequenceState> new_sequence(int64_t context_length) override {
    AF_CHECK(context_length >= 0, ErrorCode::kInvalidArgument, "model", "negative context length ",
             context_length);
    const int64_t context = context_length > 0 ? context_length : context_;
    return std::make_unique<DecoderSequence>(
        spec_.num_layers, context, effective_window(spec_.sliding_window, context),
        spec_.num_kv_heads, spec_.head_dim, info_.kv_type_k, info_.kv_type_v);
  }

  std::vector<float> forward_batch(std::span<const BatchItem> items) override {
    check_own_sequences(items);
    return run(items, Output::kLogits);
  }

  std::vector<float> hidden_batch(std::span<const BatchItem> items) override {
    check_own_sequences(items);
    return run(items, Output::kHidden);
  }

 private:
  // What run() returns per output row: vocab logits, or the final-norm hidden state.
  enum class Output { kLogits, kHidden };

  void check_own_sequences(std::span<const BatchItem> items) const {
    for (const BatchItem& item : items) {
      AF_CHECK(item.sequence != &own_ && dynamic_cast<DecoderSequence*>(item.sequence),
               ErrorCode::kInvalidArgument, "model",
               "forward_batch needs sequences made by this model's new_sequence()");
    }
  }

  // A contiguous run of one item's ids inside a chunk.
  struct Piece {
    size_t item;
    int64_t offset, n;
  };

  std::vector<float> run(std::span<const BatchItem> items, Output output) {
    output_ = output;
    const int64_t width = output == Output::kHidden ? spec_.hidden_size : spec_.vocab_size;
    AF_CHECK(!items.empty(), ErrorCode::kInvalidArgument, "model", "forward needs at least one id");
    int64_t out_rows = 0;
    for (size_t i = 0; i < items.size(); ++i) {
      const BatchItem& item = items[i];
      const auto n = static_cast<int64_t>(item.ids.size());
      AF_CHECK(n > 0, ErrorCode::kInvalidArgument, "model", "forward needs at least one id",
               items.size() > 1 ? " (batch item " + std::to_string(i) + ")" : std::string());
      for (int32_t id : item.ids) {
        AF_CHECK(id >= 0 && id < spec_.vocab_size, ErrorCode::kInvalidArgument, "model",
                 "token id ", id, " is outside the vocabulary of ", spec_.vocab_size);
      }
      check_embeddings(item, i);
      const auto* seq = static_cast<const DecoderSequence*>(item.sequence);
      AF_CHECK(seq->length + n <= seq->context, ErrorCode::kOutOfRange, "model",
               "context full: ", seq->length, " cached + ", n, " new tokens exceed the context of ",
               seq->context, " (raise the context length)");
      for (size_t j = 0; j < i; ++j) {
        AF_CHECK(items[j].sequence != item.sequence, ErrorCode::kInvalidArgument, "model",
                 "a sequence appears twice in one batch (items ", j, " and ", i, ")");
      }
      out_rows += item.all_logits ? n : 1;
    }
    std::vector<float> logits(static_cast<size_t>(out_rows * width));
    // Output row of each item's first logits row.
    std::vector<int64_t> out_row(items.size());
    for (size_t i = 0, row = 0; i < items.size(); ++i) {
      out_row[i] = static_cast<int64_t>(row);
      row += items[i].all_logits ? items[i].ids.size() : 1;
    }
    std::vector<int64_t> n_past_before(items.size());
    for (size_t i = 0; i < items.size(); ++i) n_past_before[i] = items[i].sequence->n_past();
    // Pack the ids into chunks of at most kChunk tokens; an item may span several chunks.
    std::vector<int64_t> done(items.size(), 0);
    std::vector<Piece> pieces;
    for (;;) {
      pieces.clear();
      int64_t rows = 0;
      for (size_t i = 0; i < items.size() && rows < kChunk; ++i) {
        const auto left = static_cast<int64_t>(items[i].ids.size()) - done[i];
        if (left == 0) continue;
        const int64_t take = std::min(left, kChunk - rows);
        pieces.push_back({i, done[i], take});
        done[i] += take;
        rows += take;
      }
      if (pieces.empty()) break;
      run_chunk(items, pieces, rows, out_row, logits.data());
    }
    for (size_t i = 0; i < items.size(); ++i) update_rope_delta(items[i], n_past_before[i]);
    return logits;
  }

  void check_embeddings(const BatchItem& item, size_t index) const {
    const InputEmbeddings& e = item.embeddings;
    check_positions(item, index);
    if (e.mask.empty()) return;
    AF_CHECK(e.mask.size() == item.ids.size(), ErrorCode::kInvalidArgument, "model",
             "input embeddings mask has ", e.mask.size(), " entries for ", item.ids.size(),
             " ids (batch item ", index, ")");
    const auto rows = static_cast<int64_t>(
        std::count_if(e.mask.begin(), e.mask.end(), [](uint8_t m) { return m != 0; }));
    AF_CHECK(static_cast<int64_t>(e.rows.size()) == rows * spec_.hidden_size,
             ErrorCode::kInvalidArgument, "model", "input embeddings hold ", e.rows.size(),
             " floats; ", rows, " masked positions need ", rows, " x ", spec_.hidden_size,
             " (batch item ", index, ")");
  }

  void check_positions(const BatchItem& item, size_t index) const {
    const std::span<const int32_t> p = item.embeddings.positions;
    if (p.empty()) return;
    AF_CHECK(rope_.multi_positions(), ErrorCode::kInvalidArgument, "model", info_.architecture,
             " has 1-D rotary positions; explicit M-RoPE positions are for Qwen2-VL models");
    AF_CHECK(p.size() == 3 * item.ids.size(), ErrorCode::kInvalidArgument, "model", "M-RoPE takes ",
             3 * item.ids.size(), " positions (3 per id), got ", p.size(), " (batch item ", index,
             ")");
    for (int32_t v : p) {
      AF_CHECK(v >= 0, ErrorCode::kInvalidArgument, "model", "negative M-RoPE position ", v,
               " (batch item ", index, ")");
    }
  }

  // The rope delta a sequence keeps after `item`: get_rope_index's max position + 1 - length.
  static void update_rope_delta(const BatchItem& item, int64_t n_past_before) {
    const std::span<const int32_t> p = item.embeddings.positions;
    if (p.empty()) return;
    auto* seq = static_cast<DecoderSequence*>(item.sequence);
    const int64_t top = *std::max_element(p.begin(), p.end());
    seq->rope_delta = top + 1 - (n_past_before + static_cast<int64_t>(item.ids.size()));
    seq->rope_delta_from = std::min(seq->rope_delta_from, n_past_before);
  }

  // Overwrites the looked-up rows of x where a piece's item has input embeddings.
  void splice_embeddings(std::span<const BatchItem> items, const std::vector<Piece>& pieces,
                         float* x) const {
    const auto hidden = static_cast<size_t>(spec_.hidden_size);
    for (size_t s = 0; s < pieces.size(); ++s) {
      const Piece& p = pieces[s];
      const InputEmbeddings& e = items[p.item].embeddings;
      if (e.mask.empty()) continue;
      // Rows of the masked positions before this piece (earlier chunks) are skipped.
      auto next = static_cast<size_t>(
          std::count_if(e.mask.begin(), e.mask.begin() + p.offset, [](uint8_t m) { return m; }));
      for (int64_t t = 0; t < p.n; ++t) {
        if (!e.mask[static_cast<size_t>(p.offset + t)]) continue;
        std::memcpy(x + static_cast<size_t>(segments_[s].row_begin + t) * hidden,
                    e.rows.data() + next++ * hidden, hidden * sizeof(float));
      }
    }
  }

  void run_chunk(std::span<const BatchItem> items, const std::vector<Piece>& pieces, int64_t n,
                 const std::vector<int64_t>& out_row, float* logits) {
    const int64_t hidden = spec_.hidden_size;
    reserve(n);
    segments_.clear();
    int64_t row = 0;
    for (const Piece& p : pieces) {
      const BatchItem& item = items[p.item];
      auto* seq = static_cast<DecoderSequence*>(item.sequence);
      const int64_t n_past = seq->length;  // advanced after each chunk
      for (int64_t t = 0; t < p.n; ++t) {
        ids_[static_cast<size_t>(row + t)] = item.ids[static_cast<size_t>(p.offset + t)];
        positions_[static_cast<size_t>(row + t)] =
            static_cast<int32_t>(n_past + t + seq->rope_delta);
      }
      if (rope_.multi_positions()) fill_mrope_positions(item, p, row, n);
      segments_.push_back({nullptr, nullptr, row, p.n, n_past});
      row += p.n;
    }

    float* x = x_.data();  // [n, hidden] residual stream
    float* h = h_.data();  // [n, hidden] normed input / sublayer output
    w_.embed_tokens.forward(*be_, ids_.data(), n, x);
    if (spec_.embed_scale != 1.0f) be_->scale(x, spec_.embed_scale, n * hidden);
    splice_embeddings(items, pieces, x);
    for (int64_t l = 0; l < spec_.num_layers; ++l) {
      const DecoderWeights::Layer& layer = w_.layers[static_cast<size_t>(l)];
      for (size_t s = 0; s < pieces.size(); ++s) {
        auto* seq = static_cast<DecoderSequence*>(items[pieces[s].item].sequence);
        segments_[s].k_cache = seq->cache.k(l);
        segments_[s].v_cache = seq->cache.v(l);
        segments_[s].k_type = seq->cache.k_type();
        segments_[s].v_type = seq->cache.v_type();
        segments_[s].window = seq->window;
      }
      // Each sublayer's norm is fused into its first products (h holds the normed rows while
      // the backend needs them, then the sublayer's output).
      layer.self_attn.forward_batch(*be_, rope_, segments_.data(),
                                    static_cast<int64_t>(segments_.size()), x, n, positions_.data(),
                                    scratch_.data(), h, &layer.input_layernorm);
      be_->add_scaled(x, h, spec_.residual_scale, n * hidden);
      layer.mlp.forward(*be_, x, n, scratch_.data(), h, &layer.post_attention_layernorm);
      be_->add_scaled(x, h, spec_.residual_scale, n * hidden);
    }

    // Rows whose logits are wanted: all rows of all_logits items, else an item's last id.
    int64_t out_n = 0;
    for (size_t s = 0; s < pieces.size(); ++s) {
      const Piece& p = pieces[s];
      const BatchItem& item = items[p.item];
      const bool last_piece = p.offset + p.n == static_cast<int64_t>(item.ids.size());
      const int64_t first = item.all_logits ? 0 : (last_piece ? p.n - 1 : p.n);
      for (int64_t t = first; t < p.n; ++t) {
        std::memcpy(h + out_n * hidden, x + (segments_[s].row_begin + t) * hidden,
                    static_cast<size_t>(hidden) * sizeof(float));
        out_dest_[static_cast<size_t>(out_n++)] =
            out_row[p.item] + (item.all_logits ? p.offset + t : 0);
      }
    }
    for (const Piece& p : pieces)
      static_cast<DecoderSequence*>(items[p.item].sequence)->length += p.n;
    if (out_n == 0) return;
    w_.norm.forward(*be_, h, out_n, h);
    if (output_ == Output::kHidden) {
      for (int64_t r = 0; r < out_n; ++r) {
        std::memcpy(logits + out_dest_[static_cast<size_t>(r)] * hidden, h + r * hidden,
                    static_cast<size_t>(hidden) * sizeof(float));
      }
      return;
    }
    if (spec_.logit_divisor != 1.0f) be_->scale(h, 1.0f / spec_.logit_divisor, out_n * hidden);
    const bool contiguous = [&] {
      for (int64_t r = 1; r < out_n; ++r)
        if (out_dest_[static_cast<size_t>(r)] != out_dest_[0] + r) return false;
      return true;
    }();
    const int64_t vocab = spec_.vocab_size;
    if (contiguous) {
      w_.lm_head.forward(*be_, h, out_n, logits + out_dest_[0] * vocab);
      return;
    }
    if (static_cast<int64_t>(logit_rows_.size()) < out_n * vocab)
      logit_rows_.resize(static_cast<size_t>(out_n * vocab));
    w_.lm_head.forward(*be_, h, out_n, logit_rows_.data());
    for (int64_t r = 0; r < out_n; ++r) {
      std::memcpy(logits + out_dest_[static_cast<size_t>(r)] * vocab,
                  logit_rows_.data() + r * vocab, static_cast<size_t>(vocab) * sizeof(float));
    }
  }

  // M-RoPE: positions_ holds [3][n] for the chunk; a piece's rows take its item's explicit
  // positions, or the 1-D position (already in component 0) in all three components.
  void fill_mrope_positions(const BatchItem& item, const Piece& p, int64_t row, int64_t n) {
    const std::span<const int32_t> given = item.embeddings.positions;
    const auto total = static_cast<int64_t>(item.ids.size());
    for (int64_t c = 0; c < 3; ++c) {
      for (int64_t t = 0; t < p.n; ++t) {
        positions_[static_cast<size_t>(c * n + row + t)] =
            given.empty() ? positions_[static_cast<size_t>(row + t)]
                          : given[static_cast<size_t>(c * total + p.offset + t)];
      }
    }
  }

  void reserve(int64_t n) {
    const auto need = [&](std::vector<float>& v, int64_t count) {
      if (static_cast<int64_t>(v.size()) < count) v.resize(static_cast<size_t>(count));
    };
    const int64_t q_dim = spec_.num_heads * spec_.head_dim;
    const int64_t kv_dim = spec_.num_kv_heads * spec_.head_dim;
    need(x_, n * spec_.hidden_size);
    need(h_, n * std::max(spec_.hidden_size, q_dim));
    need(scratch_, n * std::max(2 * q_dim + 2 * kv_dim, 2 * spec_.intermediate_size));
    if (static_cast<int64_t>(positions_.size()) < 3 * n)
      positions_.resize(static_cast<size_t>(3 * n));
    if (static_cast<int64_t>(ids_.size()) < n) {
      ids_.resize(static_cast<size_t>(n));
      out_dest_.resize(static_cast<size_t>(n));
    }
  }

  std::shared_ptr<const io::ModelFiles> files_;  // the weights are views into it
  DecoderSpec spec_;
  DecoderWeights w_;
  nn::Rope rope_;
  std::shared_ptr<Backend> be_;  // shared with a composition's encoders
  int64_t context_;
  DecoderSequence own_;
  ModelInfo info_;
  std::vector<float> x_, h_, scratch_, logit_rows_;
  std::vector<int32_t> positions_, ids_;
  std::vector<int64_t> out_dest_;
  std::vector<nn::SelfAttention::Segment> segments_;
  Output output_ = Output::kLogits;  // of the run() in progress
};

}  // namespace

namespace {

// A size from config.json: positive, and at most 2^31 - 1 so that products of two sizes (the
// attention and embedding widths) cannot overflow. The error names the field and its value.
int64_t size_field(const io::HfConfig& c, const std::string& key,
                   std::optional<int64_t> fallback = std::nullopt) {
  const int64_t v = fallback && !c.has(key) ? *fallback : c.get_int(key);
  AF_CHECK(v > 0 && v <= std::numeric_limits<int32_t>::max(), ErrorCode::kFormat, "config",
           c.origin(), ": field \"", key, "\" must be a positive integer below 2^31, got ", v);
  return v;
}

}  // namespace

DecoderSpec DecoderSpec::from_llama_config(const io::HfConfig& c) {
  DecoderSpec s;
  s.vocab_size = size_field(c, "vocab_size");
  s.hidden_size = size_field(c, "hidden_size");
  s.intermediate_size = size_field(c, "intermediate_size");
  s.num_layers = size_field(c, "num_hidden_layers");
  s.num_heads = size_field(c, "num_attention_heads");
  s.num_kv_heads = size_field(c, "num_key_value_heads", s.num_heads);
  AF_CHECK(c.has("head_dim") || s.hidden_size % s.num_heads == 0, ErrorCode::kFormat, "config",
           c.origin(), ": hidden_size ", s.hidden_size, " is not divisible by num_attention_heads ",
           s.num_heads);
  s.head_dim = size_field(c, "head_dim", s.hidden_size / s.num_heads);
  AF_CHECK(s.num_heads % s.num_kv_heads == 0, ErrorCode::kFormat, "config", c.origin(),
           ": num_attention_heads ", s.num_heads, " is not a multiple of num_key_value_heads ",
           s.num_kv_heads);
  s.max_position_embeddings = size_field(c, "max_position_embeddings", 2048);
  s.rms_norm_eps = c.get_float("rms_norm_eps", 1e-6);
  s.qkv_bias = c.get_bool("attention_bias", false);
  s.o_bias = s.qkv_bias;
  s.mlp_bias = c.get_bool("mlp_bias", false);
  s.tie_word_embeddings = c.get_bool("tie_word_embeddings", false);
  const std::string act = c.get_string("hidden_act", "silu");
  AF_CHECK(act == "silu" || act == "swish", ErrorCode::kUnsupported, "config", c.origin(),
           ": hidden_act \"", act, "\" is not supported for this architecture (expected silu)");
  return s;
}

DecoderWeights DecoderWeights::load(const nn::VarBuilder& vb, const nn::VarBuilder& head,
                                    const DecoderSpec& s,
                                    const std::function<void(int64_t, int64_t)>& progress) {
  const int64_t steps = s.num_layers + 2;
  auto advance = [&](int64_t done) {
    if (progress) progress(done, steps);
  };
  DecoderWeights w;
  w.embed_tokens = nn::Embedding::load(vb.sub("embed_tokens"), s.vocab_size, s.hidden_size);
  advance(1);
  for (int64_t i = 0; i < s.num_layers; ++i) {
    nn::VarBuilder lb = vb.sub("layers").sub(i);
    w.layers.push_back(DecoderWeights::Layer{
        nn::RmsNorm::load(lb.sub("input_layernorm"), s.hidden_size, s.rms_norm_eps),
        nn::RmsNorm::load(lb.sub("post_attention_layernorm"), s.hidden_size, s.rms_norm_eps),
        nn::SelfAttention::load(lb.sub("self_attn"), s.hidden_size, s.num_heads, s.num_kv_heads,
                                s.head_dim, s.qkv_bias, s.o_bias),
        nn::GatedMlp::load(lb.sub("mlp"), s.hidden_size, s.intermediate_size, s.mlp_bias)});
    if (s.qk_norm) {
      nn::SelfAttention& a = w.layers.back().self_attn;
      a.q_norm = nn::RmsNorm::load(lb.sub("self_attn").sub("q_norm"), s.head_dim, s.rms_norm_eps);
      a.k_norm = nn::RmsNorm::load(lb.sub("self_attn").sub("k_norm"), s.head_dim, s.rms_norm_eps);
    }
    advance(i + 2);
  }
  w.norm = nn::RmsNorm::load(vb.sub("norm"), s.hidden_size, s.rms_norm_eps);
  // Some tied checkpoints still carry lm_head.weight; an untied one must.
  if (!s.tie_word_embeddings || head.has("weight")) {
    w.lm_head = nn::Linear::load(head, s.hidden_size, s.vocab_size, false);
  } else {
    w.lm_head.weight = w.embed_tokens.table;
    w.lm_head.in = s.hidden_size;
    w.lm_head.out = s.vocab_size;
  }
  advance(steps);
  return w;
}

void DecoderWeights::prepare(Backend& be) {
  for (Layer& layer : layers) {
    layer.self_attn.prepare(be);
    layer.mlp.prepare(be);
  }
  lm_head.prepare(be);
}

std::optional<DType> load_weight_type(const LoadOptions& options) {
  std::optional<DType> type = options.dtype;
  if (!options.quantize.empty()) {
    const std::optional<DType> named = dtype_from_name(options.quantize);
    AF_CHECK(named.has_value(), ErrorCode::kInvalidArgument, "models", "quantize: unknown type '",
             options.quantize, "'");
    AF_CHECK(!type || *type == *named, ErrorCode::kInvalidArgument, "models", "dtype ", name(*type),
             " and quantize '", options.quantize, "' disagree");
    type = named;
  }
  if (!type) return type;
  const bool dense = *type == DType::F32 || *type == DType::F16 || *type == DType::BF16;
  AF_CHECK(dense || (quant::is_supported(*type) && *type != DType::Q8_K),
           ErrorCode::kInvalidArgument, "models", "weight type ", name(*type),
           " is not supported (expected f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q2_k, q3_k, "
           "q4_k, q5_k or q6_k)");
  return type;
}

std::unique_ptr<CausalLM> make_decoder_lm(io::ModelFiles files, const io::HfConfig& config,
                                          DecoderSpec spec, const LoadOptions& options) {
  return make_decoder_lm(std::make_shared<const io::ModelFiles>(std::move(files)), config, spec,
                         options, DecoderRoot{});
}

std::unique_ptr<CausalLM> make_decoder_lm(std::shared_ptr<const io::ModelFiles> shared,
                                          const io::HfConfig& config, DecoderSpec spec,
                                          const LoadOptions& options, const DecoderRoot& root) {
  const io::ModelFiles& files = *shared;
  nn::VarBuilder vb(*files.weights);
  const std::optional<DType> weight_type = load_weight_type(options);
  const nn::VarBuilder quantized = vb.with_quantization(weight_type);
  DecoderWeights weights = DecoderWeights::load(
      quantized.sub(root.body), quantized.sub(root.lm_head), spec, options.on_progress);
  const int64_t context = options.context_length > 0
                              ? options.context_length
                              : std::max(spec.max_position_embeddings, options.min_context_length);
  nn::Rope rope = nn::Rope::from_config(config, spec.head_dim, files.qk_rope_layout, vb, context);
  ModelInfo info;
  info.architecture = config.architecture();
  info.format = files.format;
  info.path = files.path;
  info.num_heads = spec.num_heads;
  info.num_kv_heads = spec.num_kv_heads;
  info.head_dim = spec.head_dim;
  info.intermediate_size = spec.intermediate_size;
  info.context_length = context;
  info.kv_type_k = options.kv_type_k.value_or(options.kv_type);
  info.kv_type_v = options.kv_type_v.value_or(options.kv_type);
  info.kv_bytes_per_token =
      spec.num_layers * nn::KvCache::bytes_per_position(info.kv_type_k, info.kv_type_v,
                                                        spec.num_kv_heads, spec.head_dim);
  info.bos_token_id = static_cast<int32_t>(config.get_int("bos_token_id", -1));
  info.eos_token_ids = config.eos_token_ids();
  BackendOptions backend_options{options.device, options.num_threads, options.isa};
  // quantize = "bf16" opts in to bf16 dot products (activations rounded to bf16).
  backend_options.bf16_dot =
      !options.quantize.empty() && dtype_from_name(options.quantize) == DType::BF16;
  std::shared_ptr<Backend> backend = options.backend;
  if (!backend) backend = make_backend(backend_options);
  // Weights converted or quantized at load are owned copies, which Linear::prepare leaves as
  // they are (repacking them would keep both resident).
  if (options.repack_weights) weights.prepare(*backend);
  return std::make_unique<DecoderLM>(std::move(shared), spec, std::move(weights), std::move(rope),
                                     std::move(backend), context, std::move(info));
}

}  // namespace af::models
