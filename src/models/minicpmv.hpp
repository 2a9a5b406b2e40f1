#pragma once
// MiniCPM-V 2.6's image encoder alone (navit SigLIP tower + perceiver resampler of a "MiniCPMV"
// HF folder), for load_image_encoder (af-cli image-features). `files` must outlive it (weights
// are views into it); preprocessor_config.json and tokenizer files lie beside config.json.
#include <memory>

#include "af/models/image_encoder.hpp"

namespace af::models {

std::unique_ptr<ImageEncoder> load_minicpmv_encoder(const io::ModelFiles& files,
                                                    const io::HfConfig& config,
                                                    std::shared_ptr<Backend> backend,
                                                    const LoadOptions& options);

}  // namespace af::models
