#include "video_url.hpp"

#include <string_view>
#include <vector>

#include "af/core/error.hpp"
#include "api.hpp"
#include "base64.hpp"

namespace af::server {
namespace {

[[noreturn]] void bad(const std::string& param, const std::string& message) {
  throw ApiError(400, "Invalid video in '" + param + "': " + message, "invalid_request_error",
                 param, "invalid_video");
}

// The size is checked against max_bytes (413) before anything is allocated.
std::vector<uint8_t> decode_data(std::string_view text, const std::string& param,
                                 uint64_t max_bytes) {
  const uint64_t decoded = base64_decoded_size(text);
  if (decoded > max_bytes) {
    throw ApiError(413,
                   "The video in '" + param + "' is " + std::to_string(decoded) +
                       " bytes; the limit is " + std::to_string(max_bytes) +
                       " bytes (--max-video-bytes).",
                   "invalid_request_error", param, "video_too_large");
  }
  std::vector<uint8_t> out;
  std::string error;
  if (!base64_decode(text, out, error)) bad(param, "the data URL is not base64 (" + error + ")");
  return out;
}

}  // namespace

modalities::Video load_video_url(const std::string& url, const std::string& param,
                                 const VideoUrlOptions& options) {
  if (url.rfind("http://", 0) == 0 || url.rfind("https://", 0) == 0 ||
      url.rfind("file://", 0) == 0) {
    bad(param, "video URLs are not fetched; send the video as a base64 data URL");
  }
  if (url.rfind("data:", 0) != 0) bad(param, "expected a data:video/...;base64 URL");
  const size_t comma = url.find(',');
  if (comma == std::string::npos) bad(param, "the data URL has no ','");
  const std::string_view header(url.data() + 5, comma - 5);
  if (!header.ends_with(";base64")) {
    bad(param, "only base64 data URLs are supported (data:video/...;base64,...)");
  }
  if (!header.starts_with("video/")) bad(param, "the data URL's media type is not video/*");
  const std::vector<uint8_t> bytes =
      decode_data(std::string_view(url).substr(comma + 1), param, options.max_bytes);
  if (bytes.empty()) bad(param, "the data URL is empty");
  try {
    return modalities::Video::decode(bytes, param, options.sampling, options.limits);
  } catch (const Error& e) {
    bad(param, e.what());
  }
}

}  // namespace af::server
