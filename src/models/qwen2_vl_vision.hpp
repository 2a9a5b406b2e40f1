#pragma once
// The vision tower + PatchMerger of Qwen2-VL / Qwen2.5-VL checkpoints (private to af_models).
#include <memory>

#include "af/io/hf_config.hpp"
#include "af/io/model_files.hpp"
#include "af/models/qwen2_vl.hpp"

namespace af::models {

// True for the architectures whose vision tower this file builds.
bool is_qwen2_vl_architecture(const std::string& architecture);

// The vision encoder of an HF Qwen2VLForConditionalGeneration / Qwen2_5_VLForConditionalGeneration
// folder: config.json's vision_config, weights "visual.*" (hub checkpoints and transformers 5's
// save_pretrained) or "model.visual.*", preprocessor_config.json beside config.json. `files`
// must outlive the encoder; `backend` is shared with the text decoder.
std::unique_ptr<Qwen2VLVisionEncoder> load_qwen2_vl_vision(const io::ModelFiles& files,
                                                           const io::HfConfig& config,
                                                           std::shared_ptr<Backend> backend,
                                                           const LoadOptions& options);

}  // namespace af::models
