#pragma once
// torch's antialiased bicubic resize (_upsample_bicubic2d_aa, Keys' cubic with a = -0.5) in the
// two forms Qwen2-VL's video path meets. Both are separable, the horizontal pass then the
// vertical, each skipped when that side keeps its size.
#include <vector>

#include "af/modalities/image.hpp"

namespace af::modalities::detail {

// torchvision.transforms.v2's resize of a uint8 tensor (Qwen2VLVideoProcessor): torch's native
// uint8 path, int16 weights with a precision chosen from the largest weight, rounding and
// clipping to uint8 after each pass (Pillow-SIMD's fixed point).
Image resize_like_torch_bicubic_uint8(const Image& image, int width, int height);

// torchvision.transforms' (v1) resize of a uint8 tensor (qwen_vl_utils' fetch_video): cast to
// float32, float32 weights and sums, clamp to [0, 255], round half to even. torch's x86 CPU
// kernels are built with FMA contraction (AVX2/AVX-512 dispatch), so the filter polynomial and
// the tap sums are fused multiply-adds here too: plain products differ in about 1 pixel in 10^4.
Image resize_like_torch_bicubic_float(const Image& image, int width, int height);

// The float32 resize itself, without the rounding: `rgb` is [in_height, in_width, 3] and so is
// the result at the new size (torchvision.transforms.v2 on a float tensor).
std::vector<float> resize_like_torch_bicubic_f32(std::vector<float> rgb, int in_width,
                                                 int in_height, int width, int height);

}  // namespace af::modalities::detail
