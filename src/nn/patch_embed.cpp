#include "af/nn/patch_embed.hpp"

#include <algorithm>

#include "af/core/error.hpp"

namespace af::nn {

void patch_im2col(const float* pixels, int64_t channels, int64_t height, int64_t width,
                  int64_t patch, float* cols) {
  const int64_t grid_h = height / patch, grid_w = width / patch;
  const int64_t k = channels * patch * patch;
  for (int64_t py = 0; py < grid_h; ++py) {
    for (int64_t px = 0; px < grid_w; ++px) {
      float* row = cols + (py * grid_w + px) * k;
      for (int64_t c = 0; c < channels; ++c) {
        for (int64_t i = 0; i < patch; ++i) {
          // One patch row is contiguous in the image: copy it whole.
          const float* src = pixels + (c * height + py * patch + i) * width + px * patch;
          std::copy_n(src, patch, row + (c * patch + i) * patch);
        }
      }
    }
  }
}

PatchEmbedding PatchEmbedding::load(const VarBuilder& vb, int64_t channels, int64_t patch,
                                    int64_t hidden, bool with_bias) {
  PatchEmbedding p;
  p.channels = channels;
  p.patch = patch;
  p.hidden = hidden;
  const Tensor conv = vb.tensor("weight", {hidden, channels, patch, patch});
  AF_CHECK(conv.dtype() == DType::F32 || conv.dtype() == DType::F16 || conv.dtype() == DType::BF16,
           ErrorCode::kUnsupported, "nn", vb.path("weight"), " is stored as ", name(conv.dtype()),
           "; patch embeddings take f32, f16 or bf16");
  p.weight = conv.reshape({hidden, channels * patch * patch});
  if (with_bias) p.bias = vb.f32("bias", {hidden});
  return p;
}

void PatchEmbedding::forward(Backend& be, const float* pixels, int64_t height, int64_t width,
                             std::vector<float>& cols, float* out) const {
  AF_CHECK(height >= patch && width >= patch, ErrorCode::kInvalidArgument, "nn",
           "patch embedding: image ", height, "x", width, " is smaller than one ", patch, "x",
           patch, " patch");
  const int64_t n = n_patches(height, width);
  cols.resize(static_cast<size_t>(n * channels * patch * patch));
  patch_im2col(pixels, channels, height, width, patch, cols.data());
  be.matmul(cols.data(), n, weight, bias.empty() ? nullptr : bias.data(), out, prepared.get());
}

}  // namespace af::nn
