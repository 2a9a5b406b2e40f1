#pragma once
// Between the format-independent video code (video.cpp: sampling plan, resize, hash) and the
// decoder behind it: video_ffmpeg.cpp with ffmpeg's libraries, or video_stub.cpp in a build
// without them. Only video_backend.cpp chooses between the two.
#include <cstdint>
#include <functional>
#include <span>
#include <string>

#include "af/modalities/image.hpp"
#include "af/modalities/video.hpp"

namespace af::modalities::detail {

// What the container's header says about its best video stream.
struct VideoStreamInfo {
  int width = 0, height = 0;      // coded frame size
  double fps = 0;                 // average frame rate
  int64_t total_frames = 0;       // frame count (header, or duration * fps)
  bool frames_estimated = false;  // total_frames came from the duration, not a frame count
};

// Where the encoded bytes come from: a path (bytes empty) or memory.
struct VideoSource {
  std::string path;
  std::span<const uint8_t> bytes;
  std::string origin;  // names the input in errors
};

// Called once the header is read: returns the ascending frame indices to keep.
using FramePlan = std::function<std::vector<int64_t>(const VideoStreamInfo&)>;
// Receives the kept frames in order (RGB at the source size), one at a time.
using FrameSink = std::function<void(size_t plan_index, Image frame)>;

// Opens `source`, checks its header against `limits`, asks `plan` which frames to keep and
// delivers them to `sink`; returns the header facts. Throws af::Error "[video] origin: ...".
VideoStreamInfo decode_video_frames(const VideoSource& source, const VideoLimits& limits,
                                    const FramePlan& plan, const FrameSink& sink);

// The two implementations behind decode_video_frames.
VideoStreamInfo decode_video_frames_ffmpeg(const VideoSource& source, const VideoLimits& limits,
                                           const FramePlan& plan, const FrameSink& sink);
[[noreturn]] VideoStreamInfo decode_video_frames_unavailable(const VideoSource& source);

[[noreturn]] void fail_video(const std::string& origin, const std::string& message);

}  // namespace af::modalities::detail
