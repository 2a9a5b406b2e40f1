#include "cli_video.hpp"

#include <algorithm>

#include "af/core/error.hpp"
#include "af/runtime/prompt.hpp"

namespace af::cli {

void add_video_flags(CLI::App& sub, VideoFlags& flags) {
  sub.add_option("--video", flags.path,
                 "video for the ids' video token (Qwen2-VL): MP4/MOV, MKV/WebM, AVI, MPEG-TS, Ogg, "
                 "FLV or GIF");
  sub.add_option("--fps", flags.fps, "--video: frames sampled per second")->capture_default_str();
  sub.add_option("--max-frames", flags.max_frames, "--video: most frames sampled")
      ->capture_default_str();
}

namespace {

models::MultimodalLM& video_model(models::CausalLM& model) {
  auto* mm = dynamic_cast<models::MultimodalLM*>(&model);
  AF_CHECK(mm != nullptr && mm->video_token_id() >= 0, ErrorCode::kUnsupported, "cli",
           model.info().path,
           ": this model takes no video (video-language models: Qwen2-VL, Qwen2.5-VL)");
  return *mm;
}

}  // namespace

std::string video_prompt(const std::string& prompt, const VideoFlags& flags) {
  if (flags.path.empty() || prompt.find("<|video_pad|>") != std::string::npos) return prompt;
  return "<|vision_start|><|video_pad|><|vision_end|>" + prompt;
}

modalities::Video load_video(models::CausalLM& model, const VideoFlags& flags) {
  modalities::VideoSampling sampling = video_model(model).video_sampling();
  sampling.fps = flags.fps;
  sampling.max_frames = flags.max_frames;
  return modalities::Video::load(flags.path, sampling);
}

VideoPrompt place_video(models::CausalLM& model, std::span<const int32_t> ids,
                        const VideoFlags& flags, int64_t context_length) {
  models::MultimodalLM* mm = &video_model(model);
  const int32_t token = mm->video_token_id();
  // Checked before decoding: a prompt without its placeholder should not cost a video decode.
  const auto placeholders = std::count(ids.begin(), ids.end(), token);
  AF_CHECK(placeholders > 0, ErrorCode::kInvalidArgument, "cli",
           "--video given but the ids hold no video placeholder (token ", token,
           ", \"<|video_pad|>\")");
  const modalities::Video video = load_video(model, flags);
  // Sizes first: a video too long for the context is refused before it is encoded.
  const int64_t n = mm->num_video_tokens(video);
  AF_CHECK(placeholders == 1 || placeholders == n, ErrorCode::kInvalidArgument, "cli",
           "the ids hold ", placeholders, " video placeholders (token ", token,
           "); the video needs 1 (expanded to ", n, ") or ", n, " already expanded");
  const int64_t counts[] = {n};
  runtime::ImagePrompt placed = runtime::expand_image_tokens(ids, token, counts);
  AF_CHECK(static_cast<int64_t>(placed.ids.size()) <= context_length, ErrorCode::kOutOfRange, "cli",
           "the expanded prompt has ", placed.ids.size(), " tokens (", n,
           " for the video); the context holds ", context_length,
           " (fewer frames: --fps, --max-frames)");
  models::VideoFeatures features = mm->encode_video(video);
  AF_CHECK(features.features.n_tokens == n, ErrorCode::kInternal, "cli", "the video encoder made ",
           features.features.n_tokens, " rows for ", n, " placeholders");
  VideoPrompt out;
  out.positions = mm->mrope_positions(placed.ids, {}, std::span(&features, 1));
  out.ids = std::move(placed.ids);
  out.mask = std::move(placed.mask);
  out.rows = std::move(features.features.rows);
  return out;
}

}  // namespace af::cli
