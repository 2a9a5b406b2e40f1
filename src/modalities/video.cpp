// Video: qwen_vl_utils' frame-count and size arithmetic (smart_nframes, linspace indices,
// smart_resize with the total-pixels budget), the list-of-frames input and the content hash.
// Decoding itself is behind decode_video_frames (video_ffmpeg.cpp or video_stub.cpp).
#include "af/modalities/video.hpp"

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "af/core/error.hpp"
#include "resize_torch.hpp"
#include "sha256.hpp"
#include "video_decode.hpp"

namespace af::modalities {
namespace detail {

void fail_video(const std::string& origin, const std::string& message) {
  fail(ErrorCode::kFormat, "video", origin, ": ", message);
}

}  // namespace detail

namespace {

using detail::fail_video;

// Python's round() on a float: half to even (nearbyint under the default rounding mode).
int64_t round_half_even(double x) { return int64_t(std::nearbyint(x)); }
int64_t round_by_factor(double n, int f) { return round_half_even(n / f) * f; }
int64_t ceil_by_factor(double n, int f) { return int64_t(std::ceil(n / f)) * f; }
int64_t floor_by_factor(double n, int f) { return int64_t(std::floor(n / f)) * f; }

// The per-frame pixel cap fetch_video derives from the total budget for `nframes` frames.
double frame_max_pixels(const VideoSampling& s, int nframes) {
  const double share = s.total_pixels / nframes * s.frame_factor;
  return std::max(std::min(double(s.max_pixels), share), double(int64_t(s.min_pixels * 1.05)));
}

// Both smart_resize variants refuse empty frames and aspect ratios over 200.
void check_aspect(int height, int width) {
  if (height <= 0 || width <= 0) {
    fail(ErrorCode::kInvalidArgument, "video", "frame size ", width, "x", height, " is empty");
  }
  const double ratio = double(std::max(height, width)) / std::min(height, width);
  if (ratio > 200) {
    fail(ErrorCode::kInvalidArgument, "video", "frame ", width, "x", height,
         " has an aspect ratio of ", ratio, "; Qwen2-VL takes at most 200 (smart_resize)");
  }
}

std::string hash_frames(const std::vector<Image>& frames, double sample_fps) {
  detail::Sha256 sha;
  auto put = [&](const void* p, size_t n) { sha.update({static_cast<const uint8_t*>(p), n}); };
  const uint64_t count = frames.size();
  put(&count, sizeof count);
  put(&sample_fps, sizeof sample_fps);
  for (const Image& f : frames) {
    const int32_t wh[2] = {f.width(), f.height()};
    put(wh, sizeof wh);
    put(f.rgb().data(), f.rgb().size());
  }
  const auto digest = sha.finish();
  return detail::to_hex(digest);
}

// fetch_video for a decodable source: plan the frames from the header, keep only those, resize
// each to the budgeted size as it arrives.
Video sample_video(const detail::VideoSource& source, const VideoSampling& sampling,
                   const VideoLimits& limits) {
  check_sampling(sampling, source.origin);
  std::vector<Image> frames;
  std::vector<int64_t> indices;
  int out_h = 0, out_w = 0;
  auto plan = [&](const detail::VideoStreamInfo& info) {
    const int n = smart_nframes(sampling, info.total_frames, info.fps);
    indices = sample_indices(info.total_frames, n);
    std::tie(out_h, out_w) =
        fetch_video_smart_resize(info.height, info.width, sampling.image_factor,
                                 double(sampling.min_pixels), frame_max_pixels(sampling, n));
    frames.reserve(indices.size());
    return indices;
  };
  auto sink = [&](size_t, Image frame) {
    frames.push_back(detail::resize_like_torch_bicubic_float(frame, out_w, out_h));
  };
  const auto info = detail::decode_video_frames(source, limits, plan, sink);
  if (info.frames_estimated && !frames.empty()) {
    while (frames.size() < indices.size()) frames.push_back(frames.back());
  }
  if (frames.size() != indices.size()) {
    fail_video(source.origin, "decoded " + std::to_string(frames.size()) + " of the " +
                                  std::to_string(indices.size()) + " sampled frames");
  }
  const double sample_fps =
      double(indices.size()) / std::max(double(info.total_frames), 1e-6) * info.fps;
  return Video(std::move(frames), sample_fps, info.fps, info.total_frames, std::move(indices),
               true);
}

}  // namespace

void check_sampling(const VideoSampling& s, const std::string& what) {
  auto bad = [&](const std::string& msg) {
    fail(ErrorCode::kInvalidArgument, "video", what, ": ", msg);
  };
  if (!(s.fps > 0.0 && s.fps <= 1000.0)) {
    bad("fps " + std::to_string(s.fps) + " is outside (0, 1000]");
  }
  if (s.frame_factor < 1 || s.frame_factor > 64) bad("frame_factor must be in [1, 64]");
  if (s.image_factor < 1 || s.image_factor > 1024) bad("image_factor must be in [1, 1024]");
  if (s.min_frames < 0 || s.max_frames < s.frame_factor || s.nframes < 0) {
    bad("need 0 <= min_frames, frame_factor <= max_frames and nframes >= 0 (got min_frames " +
        std::to_string(s.min_frames) + ", max_frames " + std::to_string(s.max_frames) + ")");
  }
  if (!(s.min_pixels > 0 && s.max_pixels >= s.min_pixels && s.total_pixels > 0 &&
        std::isfinite(s.total_pixels))) {
    bad("need 0 < min_pixels <= max_pixels and a positive total_pixels");
  }
}

std::pair<int, int> video_smart_resize(int height, int width, int factor, double min_pixels,
                                       double max_pixels) {
  check_aspect(height, width);
  int64_t h_bar = round_by_factor(height, factor);
  int64_t w_bar = round_by_factor(width, factor);
  if (double(h_bar * w_bar) > max_pixels) {
    const double beta = std::sqrt(double(height) * width / max_pixels);
    h_bar = std::max<int64_t>(factor, floor_by_factor(height / beta, factor));
    w_bar = std::max<int64_t>(factor, floor_by_factor(width / beta, factor));
  } else if (double(h_bar * w_bar) < min_pixels) {
    const double beta = std::sqrt(min_pixels / (double(height) * width));
    h_bar = ceil_by_factor(height * beta, factor);
    w_bar = ceil_by_factor(width * beta, factor);
  }
  return {int(h_bar), int(w_bar)};
}

std::pair<int, int> fetch_video_smart_resize(int height, int width, int factor, double min_pixels,
                                             double max_pixels) {
  check_aspect(height, width);
  int64_t h_bar = std::max<int64_t>(factor, round_by_factor(height, factor));
  int64_t w_bar = std::max<int64_t>(factor, round_by_factor(width, factor));
  if (double(h_bar * w_bar) > max_pixels) {
    const double beta = std::sqrt(double(height) * width / max_pixels);
    h_bar = floor_by_factor(height / beta, factor);
    w_bar = floor_by_factor(width / beta, factor);
  } else if (double(h_bar * w_bar) < min_pixels) {
    const double beta = std::sqrt(min_pixels / (double(height) * width));
    h_bar = ceil_by_factor(height * beta, factor);
    w_bar = ceil_by_factor(width * beta, factor);
  }
  if (h_bar <= 0 || w_bar <= 0) {
    fail(ErrorCode::kInvalidArgument, "video", "frame ", width, "x", height,
         " cannot keep its aspect ratio within ", max_pixels, " pixels in multiples of ", factor);
  }
  return {int(h_bar), int(w_bar)};
}

int smart_nframes(const VideoSampling& s, int64_t total_frames, double video_fps) {
  int64_t n = 0;
  if (s.nframes > 0) {
    n = round_by_factor(s.nframes, s.frame_factor);
  } else {
    const int64_t min_frames = ceil_by_factor(s.min_frames, s.frame_factor);
    const int64_t max_frames = floor_by_factor(s.max_frames, s.frame_factor);
    double want = double(total_frames) / video_fps * s.fps;
    want = std::min(std::min(std::max(want, double(min_frames)), double(max_frames)),
                    double(total_frames));
    n = floor_by_factor(want, s.frame_factor);
  }
  if (n < s.frame_factor || n > total_frames) {
    fail(ErrorCode::kInvalidArgument, "video",
         "the number of sampled frames must be in [" + std::to_string(s.frame_factor) + ", " +
             std::to_string(total_frames) + "] (the video's frame count), got " +
             std::to_string(n));
  }
  return int(n);
}

std::vector<int64_t> sample_indices(int64_t total_frames, int n) {
  // torch.linspace in float32: the first half counts up from the start, the second half down
  // from the end (aten's LinspaceKernel), then torch.round (half to even).
  std::vector<int64_t> out(size_t(std::max(n, 0)));
  if (n == 1) out[0] = 0;
  if (n <= 1) return out;
  const float start = 0.0f, end = float(total_frames - 1);
  const float step = (end - start) / float(n - 1);
  const int halfway = n / 2;
  for (int i = 0; i < n; ++i) {
    const float v = i < halfway ? start + step * float(i) : end - step * float(n - i - 1);
    out[size_t(i)] = int64_t(std::nearbyint(v));
  }
  return out;
}

Video::Video(std::vector<Image> frames, double sample_fps, double source_fps, int64_t source_frames,
             std::vector<int64_t> frame_indices, bool float_frames)
    : frames_(std::move(frames)),
      sample_fps_(sample_fps),
      source_fps_(source_fps),
      source_frames_(source_frames),
      frame_indices_(std::move(frame_indices)),
      float_frames_(float_frames) {
  hash_ = hash_frames(frames_, sample_fps_);
}

Video Video::load(const std::string& path, const VideoSampling& sampling,
                  const VideoLimits& limits) {
  std::error_code ec;
  const auto size = std::filesystem::file_size(path, ec);
  if (ec) fail(ErrorCode::kIo, "video", path, ": cannot open (", ec.message(), ")");
  if (size > limits.max_file_bytes) {
    fail(ErrorCode::kOutOfRange, "video", path, ": ", size, " bytes exceeds the limit of ",
         limits.max_file_bytes, " (VideoLimits::max_file_bytes)");
  }
  return sample_video({path, {}, path}, sampling, limits);
}

Video Video::decode(std::span<const uint8_t> bytes, const std::string& origin,
                    const VideoSampling& sampling, const VideoLimits& limits) {
  if (bytes.size() > limits.max_file_bytes) {
    fail(ErrorCode::kOutOfRange, "video", origin, ": ", bytes.size(),
         " bytes exceeds the limit of ", limits.max_file_bytes, " (VideoLimits::max_file_bytes)");
  }
  if (bytes.empty()) fail_video(origin, "empty input");
  return sample_video({"", bytes, origin}, sampling, limits);
}

Video Video::from_frames(std::vector<Image> frames, double sample_fps, const std::string& origin) {
  if (frames.empty()) fail(ErrorCode::kInvalidArgument, "video", origin, ": no frames");
  if (!(sample_fps > 0.0 && sample_fps <= 1000.0)) {
    fail(ErrorCode::kInvalidArgument, "video", origin, ": sample fps ", sample_fps,
         " is outside (0, 1000]");
  }
  for (size_t i = 0; i < frames.size(); ++i) {
    if (frames[i].width() <= 0 || frames[i].height() <= 0) {
      fail(ErrorCode::kInvalidArgument, "video", origin, ": frame ", i, " is empty");
    }
    if (frames[i].width() != frames[0].width() || frames[i].height() != frames[0].height()) {
      fail(ErrorCode::kInvalidArgument, "video", origin, ": frame ", i, " is ", frames[i].width(),
           "x", frames[i].height(), " but frame 0 is ", frames[0].width(), "x", frames[0].height(),
           " (a video's frames share one size)");
    }
  }
  std::vector<int64_t> indices(frames.size());
  for (size_t i = 0; i < indices.size(); ++i) indices[i] = int64_t(i);
  const auto n = int64_t(frames.size());
  return Video(std::move(frames), sample_fps, sample_fps, n, std::move(indices), false);
}

}  // namespace af::modalities
