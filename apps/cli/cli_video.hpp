#pragma once
// --video FILE [--fps F] [--max-frames N] for af-cli's model commands (Qwen2-VL / Qwen2.5-VL):
// the video sampled as fetch_video samples it under the model's pixel budget, encoded, and placed
// in the prompt as Qwen2VLProcessor places it ("<|video_pad|>" once, expanded to
// t * h * w / merge^2 copies, or already expanded), with the M-RoPE positions of get_rope_index.
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "af/modalities/video.hpp"
#include "af/models/multimodal.hpp"

namespace af::cli {

struct VideoFlags {
  std::string path;                                         // "" : no video
  double fps = modalities::VideoSampling{}.fps;             // frames sampled per second
  int max_frames = modalities::VideoSampling{}.max_frames;  // most frames sampled
};
void add_video_flags(CLI::App& sub, VideoFlags& flags);

// The text prompt with "<|vision_start|><|video_pad|><|vision_end|>" in front when a video is
// given and the prompt holds no "<|video_pad|>" (where Qwen2-VL's chat template writes it).
std::string video_prompt(const std::string& prompt, const VideoFlags& flags);

// flags.path sampled under `model`'s video budget at flags.fps, at most flags.max_frames frames.
// Throws af::Error for a model that takes no video or a file that does not decode.
modalities::Video load_video(models::CausalLM& model, const VideoFlags& flags);

// A prompt with its video placed: what CausalLM::forward_embeds takes.
struct VideoPrompt {
  std::vector<int32_t> ids;        // expanded
  std::vector<uint8_t> mask;       // [ids.size()]: 1 at the video's rows
  std::vector<float> rows;         // [video tokens, hidden]
  std::vector<int32_t> positions;  // [3][ids.size()] M-RoPE positions
};

// Loads, samples and encodes flags.path for `model` and places it in `ids`. Throws af::Error
// for a model without video, a prompt whose video placeholders do not match, or an expanded
// prompt longer than `context_length`.
VideoPrompt place_video(models::CausalLM& model, std::span<const int32_t> ids,
                        const VideoFlags& flags, int64_t context_length);

}  // namespace af::cli
