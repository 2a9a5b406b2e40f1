// Qwen2-Audio (Qwen2AudioForConditionalGeneration): an audio tower (Qwen2AudioEncoder: Whisper's
// encoder under its own names, with average pooling stride 2 and the layer norm after it), a
// linear multi_modal_projector and a Qwen2 text model, on one backend. Audio enters as rows that
// replace the "<|AUDIO|>" placeholders' embeddings, as LLaVA's images do.
//
// The encoder takes the full 30 s log-mel window, but transformers masks the keys past the
// audio's own frames and drops the rows after them, so only those rows are computed here: the
// conv stem sees the padded window (its last rows read padding frames, as in transformers), the
// transformer layers run over the feature_length rows alone (no key past them exists).
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <utility>

#include "af/core/error.hpp"
#include "af/models/audio_encoder.hpp"
#include "af/models/multimodal.hpp"
#include "af/nn/layers.hpp"
#include "af/nn/var_builder.hpp"
#include "models/decoder_lm.hpp"
#include "models/registry.hpp"
#include "models/text_backed_lm.hpp"

namespace af::models {
namespace {

constexpr char kComponent[] = "qwen2_audio";

struct LayerNorm {
  std::vector<float> weight, bias;  // [dim]
  static LayerNorm load(const nn::VarBuilder& vb, int64_t dim) {
    return {vb.f32("weight", {dim}), vb.f32("bias", {dim})};
  }
  void forward(Backend& be, const float* x, int64_t rows, float* y) const {
    // torch.nn.LayerNorm's default eps: Qwen2AudioEncoder does not set one.
    be.layer_norm(x, weight.data(), bias.data(), rows, int64_t(weight.size()), 1e-5f, y);
  }
};

// A conv1d with kernel 3, padding 1 and GELU (the encoder's stem) as im2col + matmul: the weight
// [out, in, 3] is read as [out, in * 3].
struct Conv1d {
  nn::Linear lin;
  int64_t stride = 1;
  static Conv1d load(const nn::VarBuilder& vb, int64_t in, int64_t out, int64_t stride) {
    const Tensor w = vb.tensor("weight", {out, in, 3});
    AF_CHECK(w.dtype() == DType::F32 || w.dtype() == DType::F16 || w.dtype() == DType::BF16,
             ErrorCode::kUnsupported, kComponent, vb.path("weight"), " is stored as ",
             name(w.dtype()), "; conv1d takes f32, f16 or bf16");
    Conv1d c;
    c.lin.weight = w.reshape({out, in * 3});
    c.lin.bias = vb.f32("bias", {out});
    c.lin.in = in * 3;
    c.lin.out = out;
    c.stride = stride;
    return c;
  }
  // The first t_out output rows [t_out, out] of a signal of t_in steps, x(c, t) = x[c * c_stride +
  // t * t_stride]; steps outside [0, t_in) are the zero padding.
  void forward(Backend& be, const float* x, int64_t t_in, int64_t c_stride, int64_t t_stride,
               int64_t t_out, float* y) const {
    const int64_t in = lin.in / 3;
    std::vector<float> cols(static_cast<size_t>(t_out * in * 3), 0.0f);
    for (int64_t t = 0; t < t_out; ++t) {
      float* row = cols.data() + t * in * 3;
      for (int64_t k = 0; k < 3; ++k) {
        const int64_t src = t * stride + k - 1;
        if (src < 0 || src >= t_in) continue;
        for (int64_t c = 0; c < in; ++c) row[c * 3 + k] = x[c * c_stride + src * t_stride];
      }
    }
    lin.forward(be, cols.data(), t_out, y);
    be.gelu(y, t_out * lin.out, GeluKind::kErf);
  }
};

struct EncoderLayer {
  LayerNorm attn_norm, mlp_norm;
  nn::Linear q, k, v, out, fc1, fc2;  // k without bias, as WhisperAttention
};

struct AudioSpec {
  int64_t d_model = 0, layers = 0, heads = 0, ffn = 0, mels = 0, positions = 0;
  static AudioSpec from(const io::HfConfig& c) {
    AudioSpec s{c.get_int("d_model"),
                c.get_int("encoder_layers"),
                c.get_int("encoder_attention_heads"),
                c.get_int("encoder_ffn_dim"),
                c.get_int("num_mel_bins", 128),
                c.get_int("max_source_positions", 1500)};
    const std::string act = c.get_string("activation_function", "gelu");
    AF_CHECK(act == "gelu", ErrorCode::kUnsupported, kComponent, c.origin(),
             ": activation_function \"", act, "\" is not supported (gelu)");
    AF_CHECK(!c.get_bool("scale_embedding", false), ErrorCode::kUnsupported, kComponent, c.origin(),
             ": scale_embedding true is not supported");
    const std::pair<int64_t, const char*> checks[] = {{s.d_model, "d_model"},
                                                      {s.layers, "encoder_layers"},
                                                      {s.heads, "encoder_attention_heads"},
                                                      {s.ffn, "encoder_ffn_dim"},
                                                      {s.mels, "num_mel_bins"},
                                                      {s.positions, "max_source_positions"}};
    for (const auto& [v, key] : checks)
      AF_CHECK(v > 0 && v <= (1 << 16), ErrorCode::kFormat, kComponent, c.origin(), ": \"", key,
               "\" = ", v, " is outside 1..65536");
    AF_CHECK(s.d_model % s.heads == 0, ErrorCode::kFormat, kComponent, c.origin(), ": d_model ",
             s.d_model, " is not a multiple of encoder_attention_heads ", s.heads);
    return s;
  }
};

class Qwen2AudioEncoder final : public AudioEncoder {
 public:
  Qwen2AudioEncoder(const nn::VarBuilder& tower, const nn::VarBuilder& projector,
                    const AudioSpec& spec, int64_t text_hidden, const modalities::LogMelConfig& mel,
                    std::shared_ptr<Backend> backend)
      : spec_(spec), extractor_(mel), backend_(std::move(backend)) {
    AF_CHECK(mel.feature_size == spec.mels && mel.n_frames() == 2 * spec.positions,
             ErrorCode::kFormat, kComponent, "preprocessor_config.json gives ", mel.feature_size,
             " mels x ", mel.n_frames(), " frames, but the audio tower takes ", spec.mels, " x ",
             2 * spec.positions, " (num_mel_bins, 2 * max_source_positions)");
    const int64_t d = spec.d_model;
    conv1_ = Conv1d::load(tower.sub("conv1"), spec.mels, d, 1);
    conv2_ = Conv1d::load(tower.sub("conv2"), d, d, 2);
    positions_ = tower.sub("embed_positions").f32("weight", {spec.positions, d});
    for (int64_t i = 0; i < spec.layers; ++i) {
      const nn::VarBuilder l = tower.sub("layers").sub(i), a = l.sub("self_attn");
      layers_.push_back({LayerNorm::load(l.sub("self_attn_layer_norm"), d),
                         LayerNorm::load(l.sub("final_layer_norm"), d),
                         nn::Linear::load(a.sub("q_proj"), d, d, true),
                         nn::Linear::load(a.sub("k_proj"), d, d, false),
                         nn::Linear::load(a.sub("v_proj"), d, d, true),
                         nn::Linear::load(a.sub("out_proj"), d, d, true),
                         nn::Linear::load(l.sub("fc1"), d, spec.ffn, true),
                         nn::Linear::load(l.sub("fc2"), spec.ffn, d, true)});
    }
    norm_ = LayerNorm::load(tower.sub("layer_norm"), d);
    projector_ = nn::Linear::load(projector.sub("linear"), d, text_hidden, true);
    Backend& be = *backend_;
    conv1_.lin.prepare(be);
    conv2_.lin.prepare(be);
    for (EncoderLayer& l : layers_)
      for (nn::Linear* lin : {&l.q, &l.k, &l.v, &l.out, &l.fc1, &l.fc2}) lin->prepare(be);
    projector_.prepare(be);
  }

  const modalities::LogMelExtractor& extractor() const override { return extractor_; }
  int64_t output_hidden() const override { return projector_.out; }

  int64_t num_audio_tokens(const modalities::Audio& audio) const override {
    const int64_t tokens = output_length(feature_length(audio));
    AF_CHECK(tokens > 0, ErrorCode::kInvalidArgument, kComponent, "the audio has ",
             audio.samples().size(), " samples: too short to give one audio token");
    return tokens;
  }

  AudioFeatures encode(const modalities::Audio& audio) override {
    const int64_t n_tokens = num_audio_tokens(audio);
    const int64_t rows = (feature_length(audio) - 1) / 2 + 1;  // conv2 rows in the mask
    const modalities::LogMel mel = extractor_.compute(audio.samples());
    std::vector<float> x = encoder_rows(mel, rows);
    // AvgPool1d(2, stride 2) over time, then the tower's layer norm, then the projector.
    const int64_t d = spec_.d_model;
    std::vector<float> pooled(static_cast<size_t>(n_tokens * d));
    for (int64_t t = 0; t < n_tokens; ++t)
      for (int64_t j = 0; j < d; ++j)
        pooled[t * d + j] = (x[2 * t * d + j] + x[(2 * t + 1) * d + j]) / 2.0f;
    Backend& be = *backend_;
    norm_.forward(be, pooled.data(), n_tokens, pooled.data());
    AudioFeatures out{n_tokens, projector_.out, {}, {}};
    out.rows.resize(static_cast<size_t>(n_tokens * projector_.out));
    projector_.forward(be, pooled.data(), n_tokens, out.rows.data());
    return out;
  }

 private:
  // Qwen2AudioProcessor's feature_attention_mask sum: the hop-spaced frames that start inside the
  // (truncated) audio.
  int64_t feature_length(const modalities::Audio& audio) const {
    const modalities::LogMelConfig& c = extractor_.config();
    const int64_t n = std::min<int64_t>(int64_t(audio.samples().size()), c.n_samples());
    return (n + c.hop_length - 1) / c.hop_length;
  }
  // _get_feat_extract_output_lengths: after conv2 (stride 2), then after the pooling. Python's
  // floor division makes one conv2 row give (1 - 2) // 2 + 1 = 0 tokens (C++ would round to 1).
  static int64_t output_length(int64_t frames) {
    if (frames <= 0) return 0;
    const int64_t rows = (frames - 1) / 2 + 1;
    return rows < 2 ? 0 : (rows - 2) / 2 + 1;
  }

  // The stem and transformer layers over the first `rows` positions: [rows, d_model].
  std::vector<float> encoder_rows(const modalities::LogMel& mel, int64_t rows) {
    Backend& be = *backend_;
    const int64_t d = spec_.d_model, frames = mel.n_frames;
    const int64_t stem_rows = std::min(frames, 2 * rows);  // conv1 rows conv2 reads
    std::vector<float> stem(static_cast<size_t>(stem_rows * d)), x(static_cast<size_t>(rows * d));
    conv1_.forward(be, mel.data.data(), frames, frames, 1, stem_rows, stem.data());
    conv2_.forward(be, stem.data(), frames, 1, d, rows, x.data());
    be.add_scaled(x.data(), positions_.data(), 1.0f, rows * d);

    const int64_t heads = spec_.heads, hd = d / heads;
    const float scale = 1.0f / std::sqrt(float(hd));
    std::vector<float> h(x.size()), q(x.size()), k(x.size()), v(x.size()), att(x.size());
    std::vector<float> ffn(static_cast<size_t>(rows * spec_.ffn));
    for (const EncoderLayer& l : layers_) {
      l.attn_norm.forward(be, x.data(), rows, h.data());
      const Backend::MatmulTarget qkv[] = {l.q.target(q.data()), l.k.target(k.data()),
                                           l.v.target(v.data())};
      be.matmul_group(h.data(), rows, qkv, 3);
      be.attention_rows(q.data(), d, k.data(), d, v.data(), d, rows, rows, heads, heads, hd, scale,
                        {}, att.data());
      l.out.forward(be, att.data(), rows, h.data());
      be.add_scaled(x.data(), h.data(), 1.0f, rows * d);
      l.mlp_norm.forward(be, x.data(), rows, h.data());
      l.fc1.forward(be, h.data(), rows, ffn.data());
      be.gelu(ffn.data(), rows * spec_.ffn, GeluKind::kErf);
      l.fc2.forward(be, ffn.data(), rows, att.data());
      be.add_scaled(x.data(), att.data(), 1.0f, rows * d);
    }
    return x;
  }

  AudioSpec spec_;
  modalities::LogMelExtractor extractor_;
  std::shared_ptr<Backend> backend_;
  Conv1d conv1_, conv2_;
  std::vector<float> positions_;  // [max_source_positions, d_model]
  std::vector<EncoderLayer> layers_;
  LayerNorm norm_;
  nn::Linear projector_;  // [text hidden, d_model]
};

class Qwen2AudioLM final : public TextBackedLM {
 public:
  Qwen2AudioLM(std::shared_ptr<const io::ModelFiles> files, std::unique_ptr<CausalLM> text,
               std::unique_ptr<AudioEncoder> encoder, int32_t audio_token)
      : TextBackedLM(std::move(files), std::move(text), "Qwen2AudioForConditionalGeneration"),
        encoder_(std::move(encoder)),
        audio_token_(audio_token) {
    AF_CHECK(audio_token_ >= 0 && audio_token_ < text_->config().vocab_size, ErrorCode::kFormat,
             kComponent, files_->path, ": audio_token_index ", audio_token_,
             " is outside the text model's vocabulary of ", text_->config().vocab_size);
  }

  int32_t image_token_id() const override { return -1; }
  ImageEncoder& image_encoder() override {
    fail(ErrorCode::kUnsupported, kComponent, files_->path,
         ": Qwen2-Audio takes audio, not images");
  }
  int32_t audio_token_id() const override { return audio_token_; }
  AudioEncoder* audio_encoder() override { return encoder_.get(); }

 private:
  std::unique_ptr<AudioEncoder> encoder_;
  int32_t audio_token_;
};

io::HfConfig sub_config(const io::HfConfig& config, const char* key) {
  AF_CHECK(config.has(key) && config.json().at(key).is_object(), ErrorCode::kFormat, kComponent,
           config.origin(), ": field \"", key, "\" must be an object");
  nlohmann::json sub = config.json().at(key);
  return io::HfConfig(std::move(sub), config.origin() + " (" + key + ")");
}

// text_config as the Qwen2 model reads it; ids it lacks (bos/eos) fall back to the top level.
io::HfConfig text_config(const io::HfConfig& config) {
  nlohmann::json text = sub_config(config, "text_config").json();
  const std::string type = text.value("model_type", std::string("qwen2"));
  AF_CHECK(type == "qwen2", ErrorCode::kUnsupported, kComponent, config.origin(),
           ": text model_type \"", type, "\" is not supported (expected qwen2)");
  for (const char* key : {"bos_token_id", "eos_token_id", "pad_token_id"}) {
    if ((!text.contains(key) || text[key].is_null()) && config.has(key))
      text[key] = config.json().at(key);
  }
  text["architectures"] = {config.architecture()};
  return io::HfConfig(std::move(text), config.origin() + " (text_config)");
}

// Hub checkpoints (and transformers 5's save_pretrained) use audio_tower.*,
// multi_modal_projector.*, language_model.model.* + language_model.lm_head.*; transformers 5's
// module tree is model.audio_tower.*, model.multi_modal_projector.*, model.language_model.* +
// lm_head.*.
std::string root_of(const io::WeightSource& weights) {
  return weights.has("audio_tower.conv1.weight") ? "" : "model";
}

// The feature extractor's settings: preprocessor_config.json (hub checkpoints), else the
// "feature_extractor" object of processor_config.json (transformers 5's save_pretrained). The
// model path may name the .safetensors file instead of its folder.
modalities::LogMelConfig mel_config(const std::string& model_path) {
  std::filesystem::path folder(model_path);
  if (!std::filesystem::is_directory(folder)) folder = folder.parent_path();
  if (std::filesystem::exists(folder / "preprocessor_config.json"))
    return modalities::LogMelConfig::load(folder.string());
  const std::filesystem::path processor = folder / "processor_config.json";
  AF_CHECK(std::filesystem::exists(processor), ErrorCode::kFormat, kComponent, folder.string(),
           ": no preprocessor_config.json or processor_config.json (the feature extractor's "
           "settings)");
  const nlohmann::json json = io::read_json_file(processor.string());
  AF_CHECK(json.contains("feature_extractor") && json["feature_extractor"].is_object(),
           ErrorCode::kFormat, kComponent, processor.string(),
           ": field \"feature_extractor\" must be an object");
  return modalities::LogMelConfig::from_json(json["feature_extractor"],
                                             processor.string() + " (feature_extractor)");
}

}  // namespace

std::unique_ptr<CausalLM> make_qwen2_audio(io::ModelFiles files, const io::HfConfig& config,
                                           const LoadOptions& options) {
  AF_CHECK(files.format != "gguf", ErrorCode::kUnsupported, kComponent, files.path,
           ": Qwen2-Audio loads from an HF folder (config.json + safetensors), not GGUF");
  auto shared = std::make_shared<const io::ModelFiles>(std::move(files));
  LoadOptions parts = options;
  if (!parts.backend) {
    parts.backend = make_backend({options.device, options.num_threads, options.isa});
  }
  const std::string root = root_of(*shared->weights);
  const io::HfConfig text = text_config(config);
  const DecoderRoot decoder_root =
      root.empty() ? DecoderRoot{"language_model.model", "language_model.lm_head"}
                   : DecoderRoot{"model.language_model", "lm_head"};
  std::unique_ptr<CausalLM> decoder =
      make_decoder_lm(shared, text, qwen2_decoder_spec(text), parts, decoder_root);
  nn::VarBuilder top = nn::VarBuilder(*shared->weights, root).with_quantization(options.dtype);
  const AudioSpec spec = AudioSpec::from(sub_config(config, "audio_config"));
  auto encoder = std::make_unique<Qwen2AudioEncoder>(
      top.sub("audio_tower"), top.sub("multi_modal_projector"), spec, decoder->config().hidden_size,
      mel_config(shared->path), parts.backend);
  const int64_t token = config.get_int(
      config.has("audio_token_index") ? "audio_token_index" : "audio_token_id", 151646);
  AF_CHECK(token >= 0 && token <= INT32_MAX, ErrorCode::kFormat, kComponent, config.origin(),
           ": audio_token_index must be a token id, got ", token);
  return std::make_unique<Qwen2AudioLM>(shared, std::move(decoder), std::move(encoder),
                                        static_cast<int32_t>(token));
}

namespace {
constexpr std::string_view kClasses[] = {"Qwen2AudioForConditionalGeneration"};
}  // namespace

constinit const ArchitectureInfo kQwen2AudioArchitecture{kClasses, make_qwen2_audio};

}  // namespace af::models
