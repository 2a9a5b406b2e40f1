#pragma once
// Causal LMs that also read images (LLaVA-1.5, LLaVA-NeXT) or audio (Qwen2-Audio): the text decoder
// plus a media encoder on one shared backend. A prompt holds the model's placeholder id once per
// media token;
// the runtime (af/runtime/prompt.hpp) expands placeholders and hands the encoder's rows to
// forward_embeds / BatchItem::embeddings, which replace the placeholders' embeddings.
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "af/io/hf_config.hpp"
#include "af/io/model_files.hpp"
#include "af/modalities/video.hpp"
#include "af/models/audio_encoder.hpp"
#include "af/models/causal_lm.hpp"
#include "af/models/image_encoder.hpp"

namespace af::models {

// A video encoded for the text model (Qwen2-VL): the rows that replace its placeholders and
// what its M-RoPE positions need.
struct VideoFeatures {
  ImageFeatures features;        // [t * h * w / merge^2, hidden]; grid_thw = video_grid_thw
  double second_per_grid_t = 0;  // temporal_patch_size / sample_fps (Qwen2.5-VL's time steps)
};

class MultimodalLM : public CausalLM {
 public:
  // The placeholder token of an image ("<image>": config.json's image_token_index); -1 for a
  // model that takes no images (image_encoder() then throws kUnsupported).
  virtual int32_t image_token_id() const = 0;
  virtual ImageEncoder& image_encoder() = 0;
  // The placeholder token of audio ("<|AUDIO|>": audio_token_index) and its encoder; -1 and
  // null for a model that takes no audio.
  virtual int32_t audio_token_id() const { return -1; }
  virtual AudioEncoder* audio_encoder() { return nullptr; }
  // Models whose processor writes markup around each image's rows (MiniCPM-V: an image id and
  // "<image>"/"<slice>" pieces), where a run of image_token_id() alone would be a wrong prompt.
  // Text prompts: the model's image tags (MiniCPM-V: "(<image>./</image>)") replaced by the
  // image token's text, before tokenization (a tag tokenized as text cannot be expanded
  // exactly). Default: `text` as is.
  virtual std::string image_prompt_text(std::string_view text) const { return std::string(text); }
  // Ids: image_token_id() given once per image replaced by the processor's ids of that image's
  // placeholder, or ids already expanded that way returned as is (checked); throws af::Error
  // kInvalidArgument for any other prompt with images. nullopt (default): the placeholder is
  // one token repeated (runtime::expand_image_tokens, which then runs on the result too).
  virtual std::optional<std::vector<int32_t>> expand_image_placeholders(
      std::span<const int32_t> ids, std::span<const modalities::Image> images) const {
    (void)ids, (void)images;
    return std::nullopt;
  }
  // Chat: the text an image becomes in its message's content when the model's chat template
  // takes no image parts (MiniCPM-V, whose chat() writes the tag into the text; here its image
  // token, parts joined by "\n"); empty (default): images reach the template as content parts.
  virtual std::string chat_image_text() const { return {}; }
  // M-RoPE models (Qwen2-VL): the [3][ids.size()] rotary positions of an expanded prompt
  // showing `images` in order (their grids follow from their sizes; nothing is encoded), for
  // InputEmbeddings::positions. Empty for models with 1-D positions.
  std::vector<int32_t> mrope_positions(std::span<const int32_t> ids,
                                       std::span<const modalities::Image> images) const {
    return mrope_positions(ids, images, {});
  }
  // The same with `videos` (encoded) filling the video placeholder runs in order.
  virtual std::vector<int32_t> mrope_positions(std::span<const int32_t> ids,
                                               std::span<const modalities::Image> images,
                                               std::span<const VideoFeatures> videos) const {
    (void)ids, (void)images, (void)videos;
    return {};
  }
  // Video models (Qwen2-VL): the placeholder of a video ("<|video_pad|>": video_token_id); -1
  // for a model that takes no video (video_sampling and encode_video then throw kUnsupported).
  virtual int32_t video_token_id() const { return -1; }
  // The frame sampling (fetch_video's pixel budget) this model's video processor goes with;
  // callers set fps and max_frames on it before Video::load.
  virtual modalities::VideoSampling video_sampling() const { no_video(); }
  // How many placeholder tokens `video` expands to (t * h * w / merge^2 of its grid), without
  // preprocessing or encoding it: what a prompt's length can be checked against first.
  virtual int64_t num_video_tokens(const modalities::Video& video) const {
    (void)video;
    no_video();
  }
  // Preprocesses (the model's video processor) and encodes one sampled video.
  virtual VideoFeatures encode_video(const modalities::Video& video) {
    (void)video;
    no_video();
  }

 private:
  [[noreturn]] void no_video() const {
    fail(ErrorCode::kUnsupported, "multimodal", info().path,
         ": this model takes no video (video-language models: Qwen2-VL, Qwen2.5-VL)");
  }
};

// Builds the image encoder of a checkpoint (default: load_image_encoder). Tests and custom
// encoders pass their own.
using ImageEncoderLoader = std::function<std::unique_ptr<ImageEncoder>(
    const io::ModelFiles& files, const io::HfConfig& config, std::shared_ptr<Backend> backend,
    const LoadOptions& options)>;

// Opens a LLaVA-style HF folder, or a text model with an mmproj GGUF (mmproj not empty), and
// builds text decoder + encoder on one backend. Throws af::Error for a text-only model without
// mmproj, or an encoder whose output width differs from the text model's hidden_size.
std::unique_ptr<MultimodalLM> load_multimodal(const std::string& path, const std::string& mmproj,
                                              const LoadOptions& options = {},
                                              const ImageEncoderLoader& encoder_loader = {});

// A text model composed with an image encoder built beside it (`encoder` must write rows of the
// text model's hidden_size; checked).
std::unique_ptr<MultimodalLM> compose_multimodal(std::unique_ptr<CausalLM> text,
                                                 std::unique_ptr<ImageEncoder> encoder,
                                                 int32_t image_token_id);

}  // namespace af::models
