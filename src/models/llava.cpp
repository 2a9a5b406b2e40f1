// LLaVA-1.5 (LlavaForConditionalGeneration) and LLaVA-NeXT (LlavaNextForConditionalGeneration):
// an image encoder (vision tower + projector, models/image_encoder) beside a Llama, Mistral or
// Qwen2 text decoder, on one backend. The decoder is the plain text model under the checkpoint's
// prefix; images enter as rows that replace the placeholder tokens' embeddings.
#include <utility>

#include "af/core/error.hpp"
#include "af/models/model_files.hpp"
#include "af/models/multimodal.hpp"
#include "models/decoder_lm.hpp"
#include "models/registry.hpp"
#include "models/text_backed_lm.hpp"

namespace af::models {
namespace {

constexpr char kComponent[] = "llava";

class LlavaLM final : public TextBackedLM {
 public:
  LlavaLM(std::shared_ptr<const io::ModelFiles> encoder_files, std::unique_ptr<CausalLM> text,
          std::unique_ptr<ImageEncoder> encoder, int32_t image_token, std::string architecture)
      : TextBackedLM(std::move(encoder_files), std::move(text), std::move(architecture)),
        encoder_(std::move(encoder)),
        image_token_(image_token) {
    const int64_t hidden = text_->config().hidden_size;
    AF_CHECK(encoder_->output_hidden() == hidden, ErrorCode::kFormat, kComponent,
             "the image encoder (mmproj) writes rows of ", encoder_->output_hidden(),
             " floats but the text model's hidden_size is ", hidden,
             ": the encoder does not belong to this text model");
    AF_CHECK(image_token_ >= 0 && image_token_ < text_->config().vocab_size, ErrorCode::kFormat,
             kComponent, "image token id ", image_token_,
             " is outside the text model's vocabulary of ", text_->config().vocab_size);
  }

  int32_t image_token_id() const override { return image_token_; }
  ImageEncoder& image_encoder() override { return *encoder_; }

 private:
  std::unique_ptr<ImageEncoder> encoder_;
  int32_t image_token_;
};

// text_config as the text model reads it. Checkpoints written before transformers 5 leave out
// the keys equal to LlamaConfig's defaults (llava-1.5-7b-hf keeps only a few), so those defaults
// fill the gaps for Llama text models; the top-level tie_word_embeddings applies as in
// LlavaConfig. Ids the text model needs (bos/eos) fall back to the top level.
io::HfConfig text_config(const io::HfConfig& config) {
  nlohmann::json text =
      config.has("text_config") ? config.json().at("text_config") : nlohmann::json::object();
  AF_CHECK(text.is_object(), ErrorCode::kFormat, kComponent, config.origin(),
           ": field \"text_config\" must be an object");
  const std::string type = text.value("model_type", std::string("llama"));
  if (type == "llama") {
    const nlohmann::json defaults = {{"vocab_size", 32000},
                                     {"hidden_size", 4096},
                                     {"intermediate_size", 11008},
                                     {"num_hidden_layers", 32},
                                     {"num_attention_heads", 32},
                                     {"rms_norm_eps", 1e-6},
                                     {"max_position_embeddings", 2048},
                                     {"hidden_act", "silu"},
                                     {"rope_theta", 10000.0}};
    for (const auto& [key, value] : defaults.items()) {
      if (!text.contains(key) || text[key].is_null()) text[key] = value;
    }
  }
  for (const char* key : {"bos_token_id", "eos_token_id", "pad_token_id"}) {
    if ((!text.contains(key) || text[key].is_null()) && config.has(key))
      text[key] = config.json().at(key);
  }
  if (config.get_bool("tie_word_embeddings", false)) text["tie_word_embeddings"] = true;
  text["model_type"] = type;
  text["architectures"] = {config.architecture()};
  return io::HfConfig(std::move(text), config.origin() + " (text_config)");
}

DecoderSpec text_spec(const io::HfConfig& text) {
  const std::string type = text.get_string("model_type", "llama");
  if (type == "llama" || type == "mistral") return llama_decoder_spec(text);
  if (type == "qwen2") return qwen2_decoder_spec(text);
  fail(ErrorCode::kUnsupported, kComponent, text.origin(), ": text model_type \"", type,
       "\" is not supported (expected llama, mistral or qwen2)");
}

// transformers 5 saves the decoder as model.language_model.* + lm_head.*; earlier releases as
// language_model.model.* + language_model.lm_head.*.
DecoderRoot text_root(const io::WeightSource& weights) {
  if (weights.has("language_model.model.embed_tokens.weight"))
    return {"language_model.model", "language_model.lm_head"};
  return {"model.language_model", "lm_head"};
}

int32_t image_token_from_config(const io::HfConfig& config) {
  const char* key = config.has("image_token_index") ? "image_token_index" : "image_token_id";
  const int64_t id = config.get_int(key, 32000);  // LlavaConfig's default
  AF_CHECK(id >= 0 && id <= INT32_MAX, ErrorCode::kFormat, kComponent, config.origin(),
           ": field \"", key, "\" must be a token id, got ", id);
  return static_cast<int32_t>(id);
}

// The "<image>" token of a text GGUF's vocabulary (llama.cpp keeps it in the vocabulary of
// converted LLaVA text models, though its own mtmd inserts image rows without placeholders).
int32_t image_token_from_gguf(const io::ModelFiles& files) {
  if (files.gguf) {
    const std::string key = "tokenizer.ggml.tokens";
    if (const io::GgufValue* tokens = files.gguf->find(key)) {
      const io::GgufArray& names = tokens->as_array(key);
      for (size_t i = 0; i < names.size(); ++i)
        if (names.string_at(i, key) == "<image>") return static_cast<int32_t>(i);
    }
  }
  fail(ErrorCode::kFormat, kComponent, files.path,
       ": no \"<image>\" token in the text model's vocabulary to stand for image rows");
}

std::shared_ptr<Backend> shared_backend(const LoadOptions& options) {
  if (options.backend) return options.backend;
  BackendOptions backend_options{options.device, options.num_threads, options.isa};
  backend_options.bf16_dot =
      !options.quantize.empty() && dtype_from_name(options.quantize) == DType::BF16;
  return make_backend(backend_options);
}

std::unique_ptr<MultimodalLM> load_folder(io::ModelFiles files, const io::HfConfig& config,
                                          const LoadOptions& options,
                                          const ImageEncoderLoader& encoder_loader) {
  auto shared = std::make_shared<const io::ModelFiles>(std::move(files));
  LoadOptions parts = options;
  parts.backend = shared_backend(options);
  const io::HfConfig text = text_config(config);
  std::unique_ptr<CausalLM> decoder =
      make_decoder_lm(shared, text, text_spec(text), parts, text_root(*shared->weights));
  const ImageEncoderLoader& loader = encoder_loader ? encoder_loader : load_image_encoder;
  std::unique_ptr<ImageEncoder> encoder = loader(*shared, config, parts.backend, parts);
  return std::make_unique<LlavaLM>(shared, std::move(decoder), std::move(encoder),
                                   image_token_from_config(config), config.architecture());
}

}  // namespace

std::unique_ptr<CausalLM> make_llava(io::ModelFiles files, const io::HfConfig& config,
                                     const LoadOptions& options) {
  return load_folder(std::move(files), config, options, {});
}

namespace {
constexpr std::string_view kClasses[] = {"LlavaForConditionalGeneration",
                                         "LlavaNextForConditionalGeneration"};
}  // namespace

// HF folders only; a text GGUF takes llama.cpp's mmproj through load_multimodal instead.
constinit const ArchitectureInfo kLlavaArchitecture{kClasses, make_llava};

std::unique_ptr<MultimodalLM> compose_multimodal(std::unique_ptr<CausalLM> text,
                                                 std::unique_ptr<ImageEncoder> encoder,
                                                 int32_t image_token_id) {
  AF_CHECK(text && encoder, ErrorCode::kInvalidArgument, kComponent,
           "compose_multimodal needs a text model and an encoder");
  return std::make_unique<LlavaLM>(nullptr, std::move(text), std::move(encoder), image_token_id,
                                   std::string());
}

std::unique_ptr<MultimodalLM> load_multimodal(const std::string& path, const std::string& mmproj,
                                              const LoadOptions& options,
                                              const ImageEncoderLoader& encoder_loader) {
  io::ModelFiles files = open_model_files(path);
  io::HfConfig config(files.config,
                      files.format == "gguf" ? path + " (GGUF metadata)" : path + " (config.json)");
  const ImageEncoderLoader& loader = encoder_loader ? encoder_loader : load_image_encoder;
  if (mmproj.empty()) {
    const std::string arch = config.architecture();
    AF_CHECK(config.has("vision_config") || config.has("text_config"), ErrorCode::kUnsupported,
             kComponent, path, ": ", arch,
             " is a text-only model: it takes no images (give an mmproj file for a text GGUF)");
    return load_folder(std::move(files), config, options, loader);
  }
  // A text model (any supported architecture) with llama.cpp's mmproj GGUF beside it.
  AF_CHECK(!config.has("vision_config"), ErrorCode::kInvalidArgument, kComponent, path,
           ": this model has its own vision tower; an mmproj is for text models");
  LoadOptions parts = options;
  parts.mmproj.clear();
  parts.backend = shared_backend(options);
  const int32_t image_token =
      files.format == "gguf" ? image_token_from_gguf(files) : image_token_from_config(config);
  ModelFactory factory = find_factory(config.architecture());
  AF_CHECK(factory != nullptr, ErrorCode::kUnsupported, kComponent, path, ": architecture \"",
           config.architecture(), "\" is not supported as the text model of an mmproj");
  std::unique_ptr<CausalLM> text = factory(std::move(files), config, parts);
  auto encoder_files = std::make_shared<const io::ModelFiles>(open_model_files(mmproj));
  const io::HfConfig encoder_config(encoder_files->config, mmproj + " (GGUF metadata)");
  std::unique_ptr<ImageEncoder> encoder =
      loader(*encoder_files, encoder_config, parts.backend, parts);
  return std::make_unique<LlavaLM>(std::move(encoder_files), std::move(text), std::move(encoder),
                                   image_token, std::string());
}

}  // namespace af::models
