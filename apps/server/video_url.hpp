#pragma once
// The videos of chat content parts ({"type": "video_url", "video_url": {"url":
// "data:video/mp4;base64,..."}}, as vLLM accepts them): base64 data URLs decoded with ffmpeg's
// libraries and sampled as Qwen2-VL's fetch_video does (af::modalities::Video). Remote and file
// URLs are refused (the server never fetches). Errors are ApiError 400 naming the part (not a
// video data URL, bad base64, undecodable video, a build without video) and 413 past max_bytes,
// checked from the base64 length before anything is decoded.
#include <cstdint>
#include <string>

#include "af/modalities/video.hpp"

namespace af::server {

struct VideoUrlOptions {
  // Largest decoded video file a part may carry (--max-video-bytes). The request body limit
  // (--max-body-bytes) applies to the base64 text first, so raise both for longer videos.
  uint64_t max_bytes = 32ull << 20;
  modalities::VideoSampling sampling;  // fps, frame count and pixel budget (qwen_vl_utils')
  modalities::VideoLimits limits;      // frame size, duration, packet bounds
};

modalities::Video load_video_url(const std::string& url, const std::string& param,
                                 const VideoUrlOptions& options);

}  // namespace af::server
