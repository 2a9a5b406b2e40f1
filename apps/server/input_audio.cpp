#include "input_audio.hpp"

#include <string_view>
#include <vector>

#include "af/core/error.hpp"
#include "api.hpp"

namespace af::server {
namespace {

[[noreturn]] void bad(const std::string& param, const std::string& message) {
  throw ApiError(400, "Invalid audio in '" + param + "': " + message, "invalid_request_error",
                 param, "invalid_audio");
}

int base64_value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+' || c == '-') return 62;
  if (c == '/' || c == '_') return 63;
  return -1;
}

// RFC 4648 base64 (also the URL-safe alphabet); padding optional. The size is checked against
// max_bytes from the text's length before anything is allocated.
std::vector<uint8_t> base64_decode(std::string_view text, const std::string& param,
                                   uint64_t max_bytes) {
  while (!text.empty() && text.back() == '=') text.remove_suffix(1);
  const uint64_t decoded = text.size() / 4 * 3 + (text.size() % 4 * 3) / 4;
  if (decoded > max_bytes) {
    throw ApiError(413,
                   "The audio in '" + param + "' is " + std::to_string(decoded) +
                       " bytes; the limit is " + std::to_string(max_bytes) +
                       " bytes (--max-audio-bytes).",
                   "invalid_request_error", param, "audio_too_large");
  }
  if (text.size() % 4 == 1) bad(param, "the data is not base64 (truncated)");
  std::vector<uint8_t> out;
  out.reserve(static_cast<size_t>(decoded));
  uint32_t acc = 0;
  int bits = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    const int v = base64_value(text[i]);
    if (v < 0) bad(param, "the data is not base64 (character " + std::to_string(i) + ")");
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

modalities::Audio load_input_audio(const std::string& data, const std::string& format,
                                   const std::string& param, const InputAudioOptions& options) {
  if (format != "wav" && format != "mp3")
    bad(param, "format '" + format + "' is not supported; use 'wav' or 'mp3'");
  const std::vector<uint8_t> bytes = base64_decode(data, param, options.max_bytes);
  if (bytes.empty()) bad(param, "the data is empty");
  modalities::Audio audio;
  try {
    audio = modalities::Audio::decode(bytes, param, options.limits);
  } catch (const Error& e) {
    bad(param, std::string("the ") + format + " data could not be decoded: " + e.what());
  }
  if (audio.samples().empty()) bad(param, "the audio holds no samples");
  return audio;
}

}  // namespace af::server
