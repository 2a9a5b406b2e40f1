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
