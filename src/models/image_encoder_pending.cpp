// Placeholder for load_image_encoder until the vision towers (branch venc,
// src/models/llava_image_encoder.cpp) are merged: delete this file in that merge.
#include "af/core/error.hpp"
#include "af/models/image_encoder.hpp"

namespace af::models {

std::unique_ptr<ImageEncoder> load_image_encoder(const io::ModelFiles& files, const io::HfConfig&,
                                                 std::shared_ptr<Backend>, const LoadOptions&) {
  fail(ErrorCode::kUnsupported, "llava", files.path,
       ": this build has no image encoder yet (vision towers not built in)");
}

}  // namespace af::models
