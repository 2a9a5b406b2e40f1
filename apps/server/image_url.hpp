#pragma once
// The images of chat content parts ({"type": "image_url", "image_url": {"url": ...}}): base64
// data URLs ("data:image/png;base64,..."), and file:// URLs only inside a folder the operator
// allows. Remote (http/https) URLs are refused: the server never fetches. Errors are ApiError 400
// naming the part.
#include <string>

#include "af/modalities/image.hpp"

namespace af::server {

struct ImageUrlOptions {
  std::string local_folder;  // file:// URLs allowed inside it; empty: none
  modalities::ImageLimits limits;
};

modalities::Image load_image_url(const std::string& url, const std::string& param,
                                 const ImageUrlOptions& options);

}  // namespace af::server
