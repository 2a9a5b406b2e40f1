#include "web_ui.hpp"

namespace af::server {

const WebAsset* find_web_asset(std::string_view path) {
  for (const auto& asset : web_assets()) {
    if (asset.path == path) return &asset;
  }
  return nullptr;
}

}  // namespace af::server
