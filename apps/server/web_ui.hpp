#pragma once
// The chat page af-server serves at / (apps/server/web/, built into the binary by
// cmake/embed_files.cmake: no files to install, no CDN).
#include <span>
#include <string_view>

namespace af::server {

struct WebAsset {
  std::string_view path;          // URL path, e.g. "/" or "/app.js"
  std::string_view content_type;  // e.g. "text/html; charset=utf-8"
  std::string_view body;
};

std::span<const WebAsset> web_assets();
// The asset served at `path`, or nullptr.
const WebAsset* find_web_asset(std::string_view path);

// The page loads only its own script and style and talks only to this server; images attached
// to messages are data: URLs.
inline constexpr const char* kWebContentSecurityPolicy =
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

}  // namespace af::server
