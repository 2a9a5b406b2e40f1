#pragma once
// Video as Qwen2-VL's preprocessing sees it: a few RGB frames sampled from the file at a requested
// rate and resized to a pixel budget, as qwen_vl_utils' fetch_video does (smart_nframes, frames
// at round(linspace(0, total - 1, n)), smart_resize between VIDEO_MIN_PIXELS and the per-frame
// share of the total-pixels budget, torchvision's antialiased bicubic). Containers and codecs come
// from ffmpeg's libraries (Debian's libavformat/libavcodec/libswscale); a build without them
// (AF_VIDEO=OFF) throws af::Error "built without video" from every decoding entry point.
// The frame count and the output size are fixed from the stream's header before any frame is
// decoded, and only the sampled frames are kept (far gaps are crossed by seeking), so a 4-hour
// video costs its sampled frames, not its length.
#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "af/modalities/image.hpp"

namespace af::modalities {

// How frames are sampled and sized (qwen_vl_utils' constants are the defaults).
struct VideoSampling {
  double fps = 2.0;       // frames taken per second of video (FPS); must be in (0, 1000]
  int min_frames = 4;     // FPS_MIN_FRAMES (rounded up to a multiple of frame_factor)
  int max_frames = 768;   // FPS_MAX_FRAMES (rounded down to a multiple of frame_factor)
  int nframes = 0;        // > 0: take this many frames (rounded to frame_factor) instead of fps
  int frame_factor = 2;   // FRAME_FACTOR: the frame count is a multiple of it (temporal patch)
  int image_factor = 28;  // patch_size * merge_size: output sides are multiples of it
  int64_t min_pixels = 128 * 28 * 28;  // VIDEO_MIN_TOKEN_NUM * image_factor^2, per frame
  int64_t max_pixels = 768 * 28 * 28;  // VIDEO_MAX_TOKEN_NUM * image_factor^2, per frame
  // The whole video's budget (MODEL_SEQ_LEN * image_factor^2 * 0.9): each frame gets
  // total_pixels / nframes * frame_factor, floored at 1.05 * min_pixels.
  double total_pixels = 128000.0 * 28 * 28 * 0.9;
};

struct VideoLimits {
  // Largest encoded file Video::load / Video::decode accepts.
  uint64_t max_file_bytes = 4ull << 30;
  // Largest source frame (width * height), checked from the stream header before decoding.
  uint64_t max_frame_pixels = 8192ull * 8192;
  // Longest video accepted, in seconds (from the container's header).
  double max_seconds = 24 * 3600.0;
  // Source frame rates accepted; a header outside these is refused as corrupt.
  double min_source_fps = 0.01;
  double max_source_fps = 1000.0;
  // Most container packets read in one call (seeks included): a bound on time for hostile input.
  uint64_t max_packets = 4'000'000;
};

// The frame-rate checks of VideoSampling::fps (NaN, <= 0, > 1000); throws af::Error naming `what`.
void check_sampling(const VideoSampling& sampling, const std::string& what);

// Qwen2-VL's smart_resize as the video path uses it: (height, width) as multiples of `factor`
// with the pixel count within [min_pixels, max_pixels], keeping the aspect ratio as far as it
// can. Throws af::Error for an aspect ratio over 200 or a zero side.
// The pixel bounds are doubles because fetch_video's budget share is a Python float.
std::pair<int, int> video_smart_resize(int height, int width, int factor, double min_pixels,
                                       double max_pixels);

// qwen_vl_utils' own smart_resize, which fetch_video uses: each side starts at least `factor`,
// and the shrinking branch has no such floor (a side that would reach 0 is refused here).
std::pair<int, int> fetch_video_smart_resize(int height, int width, int factor, double min_pixels,
                                             double max_pixels);

// qwen_vl_utils' smart_nframes: how many frames to take from `total_frames` at `video_fps`.
int smart_nframes(const VideoSampling& sampling, int64_t total_frames, double video_fps);

// torch.linspace(0, total_frames - 1, n).round(): the indices of the sampled frames.
std::vector<int64_t> sample_indices(int64_t total_frames, int n);

class Video {
 public:
  Video() = default;

  // Decodes and samples a file (fetch_video); errors are af::Error "[video] <path>: ...".
  static Video load(const std::string& path, const VideoSampling& sampling = {},
                    const VideoLimits& limits = {});
  // The same for an encoded file held in memory; `origin` names it in errors.
  static Video decode(std::span<const uint8_t> bytes, const std::string& origin = "<memory>",
                      const VideoSampling& sampling = {}, const VideoLimits& limits = {});
  // A list of images as a video, as the HF processor takes one: every frame kept as it is (same
  // size required), `sample_fps` frames per second of video.
  static Video from_frames(std::vector<Image> frames, double sample_fps = 2.0,
                           const std::string& origin = "<frames>");

  const std::vector<Image>& frames() const { return frames_; }  // each [height, width, 3]
  int width() const { return frames_.empty() ? 0 : frames_[0].width(); }
  int height() const { return frames_.empty() ? 0 : frames_[0].height(); }
  // Sampled frames per second of source video: nframes / total_frames * source_fps
  // (Qwen2.5-VL's second_per_grid_ts is temporal_patch_size / sample_fps).
  double sample_fps() const { return sample_fps_; }
  double source_fps() const { return source_fps_; }
  int64_t source_frames() const { return source_frames_; }
  const std::vector<int64_t>& frame_indices() const { return frame_indices_; }
  // True for a decoded file: fetch_video hands the processor float tensors (resized again, if
  // at all, in float32); false for a list of images (uint8 tensors, torch's uint8 resize).
  bool float_frames() const { return float_frames_; }
  // SHA-256 (lower-case hex) of the frames' sizes and pixels and the sample rate: a cache key.
  const std::string& hash() const { return hash_; }

  // Internal: built by the decoders.
  Video(std::vector<Image> frames, double sample_fps, double source_fps, int64_t source_frames,
        std::vector<int64_t> frame_indices, bool float_frames);

 private:
  std::vector<Image> frames_;
  double sample_fps_ = 0;
  double source_fps_ = 0;
  int64_t source_frames_ = 0;
  std::vector<int64_t> frame_indices_;
  bool float_frames_ = false;
  std::string hash_;
};

// True when this build decodes video files (ffmpeg's libraries were found, AF_VIDEO=ON).
bool video_supported();

}  // namespace af::modalities
