// An mmproj GGUF written by llama.cpp's converter (general.architecture "clip").
#include "af/core/error.hpp"
#include "models/llava_image_encoder.hpp"

namespace af::models {

std::unique_ptr<ImageEncoder> load_mmproj_image_encoder(const io::ModelFiles& files,
                                                        std::shared_ptr<Backend> backend,
                                                        const LoadOptions& options) {
  (void)backend, (void)options;
  fail(ErrorCode::kUnsupported, "vision", files.path, ": mmproj GGUF files are not supported yet");
}

}  // namespace af::models
