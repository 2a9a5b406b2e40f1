// torch's antialiased bicubic resize on uint8 (aten/src/ATen/native/cpu/UpSampleKernel.cpp,
// _compute_index_ranges_int16_weights, and UpSampleKernelAVXAntialias.h), reproduced so that
// frames resized here equal torchvision's value for value.
#include "resize_torch.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "af/core/error.hpp"

namespace af::modalities::detail {
namespace {

// Keys' cubic with a = -0.5 (torch's antialiased kernels; the plain bicubic uses -0.75).
double cubic_aa_filter(double x) {
  constexpr double a = -0.5;
  x = std::abs(x);
  if (x < 1.0) return ((a + 2) * x - (a + 3)) * x * x + 1;
  if (x < 2.0) return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a;
  return 0.0;
}

// One output side's taps: output i reads inputs [start[i], start[i] + size[i]) with
// weights[i * taps + k], fixed point with `precision` fractional bits.
struct Taps {
  int taps = 0;
  int precision = 0;
  std::vector<int> start, size;
  std::vector<int16_t> weights;
};

Taps compute_taps(int in_size, int out_size) {
  const double scale = double(in_size) / out_size;
  const double support = scale >= 1.0 ? 2.0 * scale : 2.0;  // interp_size 4, halved
  const double invscale = scale >= 1.0 ? 1.0 / scale : 1.0;
  Taps t;
  t.taps = int(std::ceil(support)) * 2 + 1;
  t.start.resize(out_size);
  t.size.resize(out_size);
  std::vector<double> w(size_t(out_size) * t.taps, 0.0);
  double wt_max = 0.0;
  for (int i = 0; i < out_size; ++i) {
    const double center = scale * (i + 0.5);
    const int64_t xmin = std::max<int64_t>(int64_t(center - support + 0.5), 0);
    int64_t xsize = std::min<int64_t>(int64_t(center + support + 0.5), in_size) - xmin;
    xsize = std::clamp<int64_t>(xsize, 0, t.taps);
    double* wi = w.data() + size_t(i) * t.taps;
    double total = 0.0;
    for (int64_t j = 0; j < xsize; ++j) {
      wi[j] = cubic_aa_filter((double(j + xmin) - center + 0.5) * invscale);
      total += wi[j];
    }
    if (total != 0.0) {
      for (int64_t j = 0; j < xsize; ++j) {
        wi[j] /= total;
        wt_max = std::max(wt_max, wi[j]);
      }
    }
    t.start[i] = int(xmin);
    t.size[i] = int(xsize);
  }
  // The most fractional bits (at most 22) for which 2 * wt_max still fits int16.
  for (t.precision = 0; t.precision < 22; ++t.precision) {
    const int next = int(0.5 + wt_max * double(1 << (t.precision + 1)));
    if (next >= (1 << 15)) break;
  }
  t.weights.resize(w.size());
  for (size_t k = 0; k < w.size(); ++k) {
    const double v = w[k] * double(1 << t.precision);
    t.weights[k] = int16_t(v < 0 ? int(-0.5 + v) : int(0.5 + v));
  }
  return t;
}

uint8_t fixed_to_u8(int32_t sum, int precision) {
  return uint8_t(std::clamp(sum >> precision, 0, 255));
}

// Resamples along one axis of an interleaved RGB buffer: `count` outputs per line, `lines`
// lines; element (line, i, c) sits at line * line_stride + i * step + c.
void resample_axis(const uint8_t* in, uint8_t* out, const Taps& t, int lines, int count,
                   size_t in_line_stride, size_t in_step, size_t out_line_stride, size_t out_step) {
  const int32_t round = t.precision > 0 ? int32_t(1) << (t.precision - 1) : 0;
  for (int line = 0; line < lines; ++line) {
    const uint8_t* src = in + size_t(line) * in_line_stride;
    uint8_t* dst = out + size_t(line) * out_line_stride;
    for (int i = 0; i < count; ++i) {
      const int16_t* w = t.weights.data() + size_t(i) * t.taps;
      for (int c = 0; c < 3; ++c) {
        int32_t sum = round;
        for (int k = 0; k < t.size[i]; ++k) {
          sum += int32_t(src[size_t(t.start[i] + k) * in_step + c]) * w[k];
        }
        dst[size_t(i) * out_step + c] = fixed_to_u8(sum, t.precision);
      }
    }
  }
}

}  // namespace

Image resize_like_torch_bicubic_uint8(const Image& image, int width, int height) {
  AF_CHECK(width > 0 && height > 0 && image.width() > 0 && image.height() > 0,
           ErrorCode::kInvalidArgument, "video", "resize to ", width, "x", height, " from ",
           image.width(), "x", image.height());
  if (width == image.width() && height == image.height()) return image;
  std::vector<uint8_t> cur = image.rgb();
  int cur_w = image.width();
  const int h = image.height();
  if (width != cur_w) {  // horizontal pass: each row
    const Taps t = compute_taps(cur_w, width);
    std::vector<uint8_t> next(size_t(h) * width * 3);
    resample_axis(cur.data(), next.data(), t, h, width, size_t(cur_w) * 3, 3, size_t(width) * 3, 3);
    cur.swap(next);
    cur_w = width;
  }
  if (height != h) {  // vertical pass: each column
    const Taps t = compute_taps(h, height);
    std::vector<uint8_t> next(size_t(height) * cur_w * 3);
    resample_axis(cur.data(), next.data(), t, cur_w, height, 3, size_t(cur_w) * 3, 3,
                  size_t(cur_w) * 3);
    cur.swap(next);
  }
  return Image(width, height, std::move(cur));
}

namespace {

// aten's HelperInterpCubic::aa_filter<float> as the FMA-contracted build computes it.
float cubic_aa_filter_f32(float x) {
  constexpr float a = -0.5f;
  x = std::abs(x);
  if (x < 1.0f) return std::fma(std::fma(a + 2.0f, x, -(a + 3.0f)) * x, x, 1.0f);
  if (x < 2.0f) return std::fma(std::fma(std::fma(a, x, -5.0f * a), x, 8.0f * a), x, -4.0f * a);
  return 0.0f;
}

struct TapsF32 {
  std::vector<int> start, size;
  std::vector<float> weights;  // [out, taps]
  int taps = 0;
};

// _compute_indices_min_size_weights_aa<float>: the mixed float/double arithmetic of its C++
// (the 0.5 literals are doubles) kept as it is.
TapsF32 compute_taps_f32(int in_size, int out_size) {
  const float scale = float(in_size) / float(out_size);
  const float support = scale >= 1.0f ? float(4 * 0.5 * double(scale)) : 2.0f;
  const float invscale = scale >= 1.0f ? float(1.0 / double(scale)) : 1.0f;
  TapsF32 t;
  t.taps = int(std::ceil(support)) * 2 + 1;
  t.start.resize(out_size);
  t.size.resize(out_size);
  t.weights.assign(size_t(out_size) * t.taps, 0.0f);
  for (int i = 0; i < out_size; ++i) {
    const float center = float(double(scale) * (i + 0.5));
    const int64_t xmin = std::max<int64_t>(int64_t(double(center - support) + 0.5), 0);
    int64_t xsize = std::min<int64_t>(int64_t(double(center + support) + 0.5), in_size) - xmin;
    xsize = std::clamp<int64_t>(xsize, 0, t.taps);
    float* w = t.weights.data() + size_t(i) * t.taps;
    float total = 0.0f;
    for (int64_t j = 0; j < xsize; ++j) {
      const float d = float(j + xmin) - center;
      w[j] = cubic_aa_filter_f32(float((double(d) + 0.5) * double(invscale)));
      total += w[j];
    }
    if (total != 0.0f) {
      for (int64_t j = 0; j < xsize; ++j) w[j] /= total;
    }
    t.start[i] = int(xmin);
    t.size[i] = int(xsize);
  }
  return t;
}

void resample_axis_f32(const float* in, float* out, const TapsF32& t, int lines, int count,
                       size_t in_line_stride, size_t in_step, size_t out_line_stride,
                       size_t out_step) {
  for (int line = 0; line < lines; ++line) {
    const float* src = in + size_t(line) * in_line_stride;
    float* dst = out + size_t(line) * out_line_stride;
    for (int i = 0; i < count; ++i) {
      const float* w = t.weights.data() + size_t(i) * t.taps;
      const float* s0 = src + size_t(t.start[i]) * in_step;
      for (int c = 0; c < 3; ++c) {
        float sum = t.size[i] > 0 ? s0[c] * w[0] : 0.0f;
        for (int k = 1; k < t.size[i]; ++k) sum = std::fma(s0[size_t(k) * in_step + c], w[k], sum);
        dst[size_t(i) * out_step + c] = sum;
      }
    }
  }
}

}  // namespace

std::vector<float> resize_like_torch_bicubic_f32(std::vector<float> cur, int in_width,
                                                 int in_height, int width, int height) {
  AF_CHECK(width > 0 && height > 0 && in_width > 0 && in_height > 0 &&
               cur.size() == size_t(in_width) * in_height * 3,
           ErrorCode::kInvalidArgument, "video", "resize to ", width, "x", height, " from ",
           in_width, "x", in_height);
  int cur_w = in_width;
  if (width != cur_w) {
    const TapsF32 t = compute_taps_f32(cur_w, width);
    std::vector<float> next(size_t(in_height) * width * 3);
    resample_axis_f32(cur.data(), next.data(), t, in_height, width, size_t(cur_w) * 3, 3,
                      size_t(width) * 3, 3);
    cur.swap(next);
    cur_w = width;
  }
  if (height != in_height) {
    const TapsF32 t = compute_taps_f32(in_height, height);
    std::vector<float> next(size_t(height) * cur_w * 3);
    resample_axis_f32(cur.data(), next.data(), t, cur_w, height, 3, size_t(cur_w) * 3, 3,
                      size_t(cur_w) * 3);
    cur.swap(next);
  }
  return cur;
}

Image resize_like_torch_bicubic_float(const Image& image, int width, int height) {
  if (width == image.width() && height == image.height()) return image;
  const std::vector<float> out =
      resize_like_torch_bicubic_f32(std::vector<float>(image.rgb().begin(), image.rgb().end()),
                                    image.width(), image.height(), width, height);
  std::vector<uint8_t> rgb(out.size());
  for (size_t k = 0; k < out.size(); ++k) {
    rgb[k] = uint8_t(std::nearbyint(std::clamp(out[k], 0.0f, 255.0f)));
  }
  return Image(width, height, std::move(rgb));
}

}  // namespace af::modalities::detail
