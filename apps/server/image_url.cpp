#include "image_url.hpp"

#include <filesystem>

#include "af/core/error.hpp"
#include "api.hpp"
#include "base64.hpp"

namespace af::server {
namespace {

namespace fs = std::filesystem;

[[noreturn]] void bad(const std::string& param, const std::string& message) {
  throw ApiError(400, "Invalid image in '" + param + "': " + message, "invalid_request_error",
                 param, "invalid_image");
}

std::vector<uint8_t> decode_data(std::string_view text, const std::string& param) {
  std::vector<uint8_t> out;
  std::string error;
  if (!base64_decode(text, out, error)) bad(param, "the data URL is not base64 (" + error + ")");
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
    const std::vector<uint8_t> bytes = decode_data(std::string_view(url).substr(comma + 1), param);
    return decode(bytes, param, options);
  }
  if (url.rfind("file://", 0) == 0) return load_local(url.substr(7), param, options);
  if (url.rfind("http://", 0) == 0 || url.rfind("https://", 0) == 0) {
    bad(param, "remote image URLs are not fetched; send the image as a base64 data URL");
  }
  bad(param, "expected a data:image/...;base64 URL");
}

}  // namespace af::server
