#include "video_url.hpp"

#include <string_view>
#include <vector>

#include "af/core/error.hpp"
#include "api.hpp"

namespace af::server {
namespace {

[[noreturn]] void bad(const std::string& param, const std::string& message) {
  throw ApiError(400, "Invalid video in '" + param + "': " + message, "invalid_request_error",
                 param, "invalid_video");
}

int base64_value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+' || c == '-') return 62;
  if (c == '/' || c == '_') return 63;
  return -1;
}

// RFC 4648 base64 (also the URL-safe alphabet), padding optional, as input_audio.cpp decodes
// it; the decoded size is checked against max_bytes (413) before anything is allocated.
std::vector<uint8_t> base64_decode(std::string_view text, const std::string& param,
                                   uint64_t max_bytes) {
  while (!text.empty() && text.back() == '=') text.remove_suffix(1);
  const uint64_t decoded = text.size() / 4 * 3 + (text.size() % 4 * 3) / 4;
  if (decoded > max_bytes) {
    throw ApiError(413,
                   "The video in '" + param + "' is " + std::to_string(decoded) +
                       " bytes; the limit is " + std::to_string(max_bytes) +
                       " bytes (--max-video-bytes).",
                   "invalid_request_error", param, "video_too_large");
  }
  if (text.size() % 4 == 1) bad(param, "the data URL is not base64 (truncated)");
  std::vector<uint8_t> out;
  out.reserve(size_t(decoded));
  uint32_t acc = 0;
  int bits = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    const int v = base64_value(text[i]);
    if (v < 0) bad(param, "the data URL is not base64 (character " + std::to_string(i) + ")");
    acc = (acc << 6) | uint32_t(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(uint8_t(acc >> bits));
    }
  }
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
      base64_decode(std::string_view(url).substr(comma + 1), param, options.max_bytes);
  if (bytes.empty()) bad(param, "the data URL is empty");
  try {
    return modalities::Video::decode(bytes, param, options.sampling, options.limits);
  } catch (const Error& e) {
    bad(param, e.what());
  }
}

}  // namespace af::server
