#include "image_url.hpp"

#include <filesystem>

#include "af/core/error.hpp"
#include "api.hpp"

namespace af::server {
namespace {

namespace fs = std::filesystem;

[[noreturn]] void bad(const std::string& param, const std::string& message) {
  throw ApiError(400, "Invalid image in '" + param + "': " + message, "invalid_request_error",
                 param, "invalid_image");
}

int base64_value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+' || c == '-') return 62;
  if (c == '/' || c == '_') return 63;
  return -1;
}

// RFC 4648 base64 (also the URL-safe alphabet); padding optional, whitespace not allowed.
std::vector<uint8_t> base64_decode(std::string_view text, const std::string& param) {
  while (!text.empty() && text.back() == '=') text.remove_suffix(1);
  std::vector<uint8_t> out;
  out.reserve(text.size() * 3 / 4);
  uint32_t bits = 0;
  int n_bits = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    const int v = base64_value(text[i]);
    if (v < 0) bad(param, "the data URL is not base64 (character " + std::to_string(i) + ")");
    bits = bits << 6 | static_cast<uint32_t>(v);
    n_bits += 6;
    if (n_bits >= 8) {
      n_bits -= 8;
      out.push_back(static_cast<uint8_t>(bits >> n_bits));
    }
  }
  return out;
}

modalities::Image decode(std::span<const uint8_t> bytes, const std::string& param,
                         const ImageUrlOptions& options) {
  try {
    return modalities::Image::decode(bytes, param, options.limits);
  } catch (const Error& e) {
    bad(param, e.what());
  }
}

modalities::Image load_local(const std::string& path, const std::string& param,
                             const ImageUrlOptions& options) {
  if (options.local_folder.empty()) {
    bad(param,
        "file URLs are not allowed (the server was started without "
        "--allowed-local-media-path)");
  }
  std::error_code ec;
  const fs::path folder = fs::canonical(options.local_folder, ec);
  const fs::path file = fs::weakly_canonical(path, ec);
  const auto rel = file.lexically_relative(folder);
  if (folder.empty() || rel.empty() || *rel.begin() == "..") {
    bad(param, "the file is outside the folder the server allows");
  }
  try {
    return modalities::Image::load(file.string(), options.limits);
  } catch (const Error& e) {
    bad(param, e.what());
  }
}

}  // namespace

modalities::Image load_image_url(const std::string& url, const std::string& param,
                                 const ImageUrlOptions& options) {
  if (url.rfind("data:", 0) == 0) {
    const size_t comma = url.find(',');
    if (comma == std::string::npos) bad(param, "the data URL has no ','");
    const std::string_view header(url.data() + 5, comma - 5);
    if (!header.ends_with(";base64"))
      bad(param, "only base64 data URLs are supported (data:image/...;base64,...)");
    if (!header.starts_with("image/")) bad(param, "the data URL's media type is not image/*");
    const std::vector<uint8_t> bytes =
        base64_decode(std::string_view(url).substr(comma + 1), param);
    return decode(bytes, param, options);
  }
  if (url.rfind("file://", 0) == 0) return load_local(url.substr(7), param, options);
  if (url.rfind("http://", 0) == 0 || url.rfind("https://", 0) == 0) {
    bad(param, "remote image URLs are not fetched; send the image as a base64 data URL");
  }
  bad(param, "expected a data:image/...;base64 URL");
}

}  // namespace af::server
