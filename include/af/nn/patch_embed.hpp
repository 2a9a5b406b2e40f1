#pragma once
// ViT patch embedding: PyTorch's Conv2d(channels, hidden, kernel_size = stride = patch, no
// padding) as used by CLIP/SigLIP vision towers, computed as im2col + Backend::matmul.
#include <cstdint>
#include <memory>
#include <vector>

#include "af/backend/backend.hpp"
#include "af/nn/var_builder.hpp"

namespace af::nn {

// The patches of pixels[channels, height, width] (float32, row-major, e.g.
// af::modalities::PixelValues for one image) as rows: cols[n_patches, channels * patch * patch],
// patch (py, px) at row py * (width / patch) + px, its element (c, i, j) at c * patch * patch +
// i * patch + j (the conv weight's [hidden, channels, patch, patch] order). Rows and columns past
// the last whole patch are dropped, as the strided conv does.
void patch_im2col(const float* pixels, int64_t channels, int64_t height, int64_t width,
                  int64_t patch, float* cols);

struct PatchEmbedding {
  Tensor weight;            // [hidden, channels * patch * patch], F32/F16/BF16
  std::vector<float> bias;  // [hidden] or empty
  int64_t channels = 3, patch = 0, hidden = 0;
  std::shared_ptr<const PreparedWeight> prepared;

  // vb holds "weight" [hidden, channels, patch, patch] (the conv's) and, with_bias, "bias"
  // [hidden]. Throws kUnsupported naming the tensor for a dtype other than F32/F16/BF16.
  static PatchEmbedding load(const VarBuilder& vb, int64_t channels, int64_t patch, int64_t hidden,
                             bool with_bias);
  void prepare(Backend& be) { prepared = be.prepare_matmul_weight(weight); }
  int64_t n_patches(int64_t height, int64_t width) const {
    return (height / patch) * (width / patch);
  }
  // out[n_patches(height, width), hidden] = the conv's output, flattened and transposed as HF's
  // embeddings do (patch_embeds.flatten(2).transpose(1, 2)); pixels: [channels, height, width];
  // cols: room for n_patches * channels * patch * patch floats (grown as needed). Throws
  // kInvalidArgument when the image is smaller than one patch.
  void forward(Backend& be, const float* pixels, int64_t height, int64_t width,
               std::vector<float>& cols, float* out) const;
};

}  // namespace af::nn
