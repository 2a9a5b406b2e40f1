#include "input_audio.hpp"

#include <string_view>
#include <vector>

#include "af/core/error.hpp"
#include "api.hpp"
#include "base64.hpp"

namespace af::server {
namespace {

[[noreturn]] void bad(const std::string& param, const std::string& message) {
  throw ApiError(400, "Invalid audio in '" + param + "': " + message, "invalid_request_error",
                 param, "invalid_audio");
}

// The size is checked against max_bytes (413) before anything is allocated.
std::vector<uint8_t> decode_data(std::string_view text, const std::string& param,
                                 uint64_t max_bytes) {
  const uint64_t decoded = base64_decoded_size(text);
  if (decoded > max_bytes) {
    throw ApiError(413,
                   "The audio in '" + param + "' is " + std::to_string(decoded) +
                       " bytes; the limit is " + std::to_string(max_bytes) +
                       " bytes (--max-audio-bytes).",
                   "invalid_request_error", param, "audio_too_large");
  }
  std::vector<uint8_t> out;
  std::string error;
  if (!base64_decode(text, out, error)) bad(param, "the data is not base64 (" + error + ")");
  return out;
}

}  // namespace

modalities::Audio load_input_audio(const std::string& data, const std::string& format,
                                   const std::string& param, const InputAudioOptions& options) {
  if (format != "wav" && format != "mp3")
    bad(param, "format '" + format + "' is not supported; use 'wav' or 'mp3'");
  const std::vector<uint8_t> bytes = decode_data(data, param, options.max_bytes);
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
