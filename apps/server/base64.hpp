#pragma once
// RFC 4648 base64 for the media parts of requests (image_url / video_url data URLs, input_audio
// data): the standard and the URL-safe alphabet, padding optional, no whitespace.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace af::server {

// The number of bytes `text` decodes to (trailing '=' ignored), from its length alone, so a
// caller can refuse an oversized payload before anything is allocated.
uint64_t base64_decoded_size(std::string_view text);

// Decodes `text` into `out`. On malformed input returns false with `error` saying why
// ("truncated" or "character N"); `out` is then unspecified.
bool base64_decode(std::string_view text, std::vector<uint8_t>& out, std::string& error);

}  // namespace af::server
