// The ops a CLIP/SigLIP vision tower adds: quick_gelu (GeluKind::kQuick) on every ISA against its
// float64 formula, and nn::PatchEmbedding (im2col + matmul) against a direct float64
// convolution with stride = kernel = patch and no padding.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "af/backend/backend.hpp"
#include "af/core/error.hpp"
#include "af/core/half.hpp"
#include "af/io/model_files.hpp"
#include "af/nn/patch_embed.hpp"
#include "backend/cpu/dispatch.hpp"
#include "test_util.hpp"

namespace af {
namespace {

using test::random_floats;

// Bound: exp within 2 ulp plus one division, so |got - x·σ(1.702x)| <= 1e-6 * |want| + 1e-7.
TEST(VisionOps, QuickGeluMatchesFloat64OnEveryIsa) {
  const int64_t n = 1001;  // a tail on every vector width
  const std::vector<float> x = random_floats(static_cast<size_t>(n), -12.0f, 12.0f, 3);
  for (cpu::Isa isa : cpu::supported_isas()) {
    auto be = make_backend({Device::cpu(), 2, cpu::isa_name(isa)});
    std::vector<float> y = x;
    be->gelu(y.data(), n, GeluKind::kQuick);
    for (int64_t i = 0; i < n; ++i) {
      const double v = x[static_cast<size_t>(i)];
      const double want = v / (1.0 + std::exp(-1.702 * v));
      ASSERT_NEAR(y[static_cast<size_t>(i)], want, 1e-6 * std::fabs(want) + 1e-7)
          << cpu::isa_name(isa) << " x=" << v;
    }
  }
}

// Tensors by name, for VarBuilder.
class MapSource : public io::WeightSource {
 public:
  std::map<std::string, Tensor> tensors;
  bool has(const std::string& name) const override { return tensors.count(name) != 0; }
  Tensor get(const std::string& name) const override {
    const auto it = tensors.find(name);
    if (it == tensors.end()) fail(ErrorCode::kFormat, "test", "no tensor ", name);
    return it->second;
  }
  std::vector<std::string> names() const override {
    std::vector<std::string> out;
    for (const auto& [name, t] : tensors) out.push_back(name);
    return out;
  }
  std::string origin() const override { return "memory"; }
};

// A conv weight [hidden, channels, patch, patch] of dtype, and the float values it holds.
Tensor conv_weight(DType dtype, int64_t hidden, int64_t channels, int64_t patch,
                   std::vector<float>& values) {
  Tensor t = Tensor::zeros(dtype, Shape{hidden, channels, patch, patch});
  auto* f32 = reinterpret_cast<float*>(t.mutable_data());
  auto* half = reinterpret_cast<uint16_t*>(t.mutable_data());
  for (size_t i = 0; i < values.size(); ++i) {
    if (dtype == DType::F32) f32[i] = values[i];
    if (dtype == DType::F16) values[i] = f16_to_f32(half[i] = f32_to_f16(values[i]));
  }
  return t;
}

struct ConvCase {
  int64_t channels, height, width, patch, hidden;
  DType dtype;
};

TEST(VisionOps, PatchEmbeddingMatchesDirectConvolution) {
  // Patch 14 and 16; image sides that are and are not multiples of the patch (the conv drops
  // the remainder); a single patch.
  const ConvCase cases[] = {{3, 28, 42, 14, 19, DType::F32},
                            {3, 37, 50, 16, 8, DType::F16},
                            {3, 14, 14, 14, 5, DType::F32},
                            {1, 33, 17, 4, 7, DType::F32},
                            {3, 45, 31, 14, 33, DType::F16}};
  uint32_t seed = 10;
  for (const ConvCase& c : cases) {
    const int64_t k = c.channels * c.patch * c.patch;
    std::vector<float> w = random_floats(static_cast<size_t>(c.hidden * k), -1, 1, seed++);
    const std::vector<float> bias = random_floats(static_cast<size_t>(c.hidden), -1, 1, seed++);
    const std::vector<float> pixels =
        random_floats(static_cast<size_t>(c.channels * c.height * c.width), -2, 2, seed++);
    MapSource src;
    src.tensors["embeddings.patch_embedding.weight"] =
        conv_weight(c.dtype, c.hidden, c.channels, c.patch, w);
    src.tensors["embeddings.patch_embedding.bias"] = Tensor::from_f32(Shape{c.hidden}, bias.data());
    const nn::VarBuilder vb(src, "embeddings.patch_embedding");
    const int64_t gh = c.height / c.patch, gw = c.width / c.patch;
    for (cpu::Isa isa : cpu::supported_isas()) {
      auto be = make_backend({Device::cpu(), 1, cpu::isa_name(isa)});
      nn::PatchEmbedding pe = nn::PatchEmbedding::load(vb, c.channels, c.patch, c.hidden, true);
      pe.prepare(*be);
      ASSERT_EQ(pe.n_patches(c.height, c.width), gh * gw);
      std::vector<float> cols, out(static_cast<size_t>(gh * gw * c.hidden));
      pe.forward(*be, pixels.data(), c.height, c.width, cols, out.data());
      for (int64_t py = 0; py < gh; ++py) {
        for (int64_t px = 0; px < gw; ++px) {
          for (int64_t o = 0; o < c.hidden; ++o) {
            double want = bias[static_cast<size_t>(o)], mag = std::fabs(want);
            for (int64_t ch = 0; ch < c.channels; ++ch) {
              for (int64_t i = 0; i < c.patch; ++i) {
                for (int64_t j = 0; j < c.patch; ++j) {
                  const double term =
                      double(w[static_cast<size_t>(((o * c.channels + ch) * c.patch + i) * c.patch +
                                                   j)]) *
                      pixels[static_cast<size_t>((ch * c.height + py * c.patch + i) * c.width +
                                                 px * c.patch + j)];
                  want += term;
                  mag += std::fabs(term);
                }
              }
            }
            // Float accumulation error grows with the sum of |terms|.
            ASSERT_NEAR(out[static_cast<size_t>((py * gw + px) * c.hidden + o)], want,
                        1e-5 * mag + 1e-6)
                << cpu::isa_name(isa) << " patch " << py << "," << px << " out " << o;
          }
        }
      }
    }
  }
}

TEST(VisionOps, PatchEmbeddingRejectsBadInput) {
  MapSource src;
  std::vector<float> w(4 * 3 * 2 * 2, 0.5f);
  src.tensors["p.weight"] = conv_weight(DType::F32, 4, 3, 2, w);
  src.tensors["q.weight"] = Tensor::zeros(DType::I32, Shape{4, 3, 2, 2});
  auto be = make_backend({Device::cpu(), 1, ""});
  const nn::PatchEmbedding pe = nn::PatchEmbedding::load(nn::VarBuilder(src, "p"), 3, 2, 4, false);
  std::vector<float> pixels(3, 1.0f), cols, out(4);
  try {
    pe.forward(*be, pixels.data(), 1, 1, cols, out.data());
    ADD_FAILURE() << "no error for a 1x1 image";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("smaller than one 2x2 patch"), std::string::npos)
        << e.what();
  }
  try {
    nn::PatchEmbedding::load(nn::VarBuilder(src, "q"), 3, 2, 4, false);
    ADD_FAILURE() << "no error for an i32 weight";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kUnsupported);
    EXPECT_NE(std::string(e.what()).find("q.weight"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace af
