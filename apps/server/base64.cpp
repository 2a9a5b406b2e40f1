#include "base64.hpp"

namespace af::server {
namespace {

int base64_value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+' || c == '-') return 62;
  if (c == '/' || c == '_') return 63;
  return -1;
}

std::string_view strip_padding(std::string_view text) {
  while (!text.empty() && text.back() == '=') text.remove_suffix(1);
  return text;
}

}  // namespace

uint64_t base64_decoded_size(std::string_view text) {
  text = strip_padding(text);
  return text.size() / 4 * 3 + (text.size() % 4 * 3) / 4;
}

bool base64_decode(std::string_view text, std::vector<uint8_t>& out, std::string& error) {
  text = strip_padding(text);
  if (text.size() % 4 == 1) {  // one leftover character cannot hold a whole byte
    error = "truncated";
    return false;
  }
  out.clear();
  out.reserve(static_cast<size_t>(base64_decoded_size(text)));
  uint32_t acc = 0;
  int bits = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    const int v = base64_value(text[i]);
    if (v < 0) {
      error = "character " + std::to_string(i);
      return false;
    }
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<uint8_t>(acc >> bits));
    }
  }
  return true;
}

}  // namespace af::server
