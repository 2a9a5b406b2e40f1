// core: dtypes, shapes, half conversions, tensors and errors.
#include <cmath>
#include <cstring>
#include <limits>
#include <random>

#include <gtest/gtest.h>

#include "af/core/dtype.hpp"
#include "af/core/error.hpp"
#include "af/core/half.hpp"
#include "af/core/shape.hpp"
#include "af/core/tensor.hpp"

namespace af {
namespace {

TEST(DType, BlockSizesOfGgufTypes) {
  EXPECT_EQ(info(DType::Q4_0).block_size, 32);
  EXPECT_EQ(info(DType::Q4_0).type_size, 18);
  EXPECT_EQ(info(DType::Q8_0).type_size, 34);
  EXPECT_EQ(info(DType::Q4_K).block_size, 256);
  EXPECT_EQ(info(DType::Q4_K).type_size, 144);
  EXPECT_EQ(info(DType::Q6_K).type_size, 210);
  EXPECT_EQ(info(DType::BF16).type_size, 2);
  EXPECT_FALSE(dtype_info(4).has_value());  // Q4_2: removed from ggml
  EXPECT_FALSE(dtype_info(1000).has_value());
  EXPECT_EQ(dtype_from_name("Q8_0"), DType::Q8_0);
  EXPECT_EQ(dtype_from_name("q4_k"), DType::Q4_K);
  EXPECT_FALSE(dtype_from_name("q4_9").has_value());
  EXPECT_EQ(row_bytes(DType::Q4_0, 64), 36);
  EXPECT_THROW(row_bytes(DType::Q4_0, 33), Error);
  EXPECT_THROW(row_bytes(DType::F32, std::numeric_limits<int64_t>::max()), Error);
}

TEST(Shape, NumelChecksOverflow) {
  EXPECT_EQ((Shape{2, 3, 4}).numel(), 24);
  EXPECT_EQ(Shape{}.numel(), 1);
  EXPECT_EQ((Shape{3, 5}).str(), "[3, 5]");
  EXPECT_EQ((Shape{3, 5}).dim(-1), 5);
  EXPECT_THROW((Shape{3, 5}).dim(2), Error);
  Shape huge{int64_t{1} << 40, int64_t{1} << 40};
  EXPECT_THROW(huge.numel(), Error);
  EXPECT_THROW((Shape{-1}), Error);
}

TEST(Half, F16RoundTripsAndRoundsToNearestEven) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const float f = f16_to_f32(static_cast<uint16_t>(h));
    if (std::isnan(f)) continue;
    ASSERT_EQ(f32_to_f16(f), h) << std::hex << h;
  }
  EXPECT_EQ(f16_to_f32(0x3c00), 1.0f);
  EXPECT_EQ(f16_to_f32(0x0001), std::ldexp(1.0f, -24));
  EXPECT_EQ(f32_to_f16(65520.0f), 0x7c00);  // rounds up to inf
  EXPECT_EQ(f32_to_f16(65519.0f), 0x7bff);
  EXPECT_EQ(f32_to_f16(1.0f + std::ldexp(1.0f, -11)), 0x3c00);  // tie to even
  EXPECT_EQ(f32_to_f16(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3c02);
  EXPECT_TRUE(std::isnan(f16_to_f32(f32_to_f16(NAN))));
}

TEST(Half, Bf16RoundsToNearestEven) {
  EXPECT_EQ(f32_to_bf16(1.0f), 0x3f80);
  EXPECT_EQ(bf16_to_f32(0x3f80), 1.0f);
  float halfway = 1.0f + std::ldexp(1.0f, -8);  // exactly between 0x3f80 and 0x3f81
  EXPECT_EQ(f32_to_bf16(halfway), 0x3f80);
  EXPECT_EQ(f32_to_bf16(1.0f + 3 * std::ldexp(1.0f, -8)), 0x3f82);
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(NAN))));
}

TEST(Tensor, ViewsAreBoundsCheckedAndConvert) {
  std::vector<float> values = {1.5f, -2.0f, 3.25f, 0.0f, 7.0f, -0.5f};
  Tensor t = Tensor::from_f32({2, 3}, values.data());
  EXPECT_EQ(t.nbytes(), 24u);
  Tensor r = t.reshape({3, 2});
  EXPECT_EQ(r.as<float>()[5], -0.5f);
  EXPECT_THROW(t.reshape({4, 2}), Error);
  // A view that would run past its buffer is refused.
  EXPECT_THROW(Tensor(DType::F32, {7}, t.buffer(), t.data()), Error);
  // F16 and BF16 convert exactly for representable values.
  Tensor h = Tensor::zeros(DType::F16, {6});
  Tensor b = Tensor::zeros(DType::BF16, {6});
  for (int i = 0; i < 6; ++i) {
    reinterpret_cast<uint16_t*>(h.mutable_data())[i] = f32_to_f16(values[i]);
    reinterpret_cast<uint16_t*>(b.mutable_data())[i] = f32_to_bf16(values[i]);
  }
  for (int i = 0; i < 6; ++i) {
    EXPECT_EQ(h.to_f32().as<float>()[i], values[i]);
    EXPECT_EQ(b.to_f32().as<float>()[i], values[i]);
  }
  EXPECT_THROW(Tensor::zeros(DType::Q8_0, {2, 32}).to_f32(), Error);
}

TEST(Error, CarriesComponentAndCode) {
  try {
    fail(ErrorCode::kFormat, "gguf", "file ", "x.gguf", ": bad magic");
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kFormat);
    EXPECT_EQ(e.component(), "gguf");
    EXPECT_STREQ(e.what(), "[gguf] file x.gguf: bad magic");
  }
}

}  // namespace
}  // namespace af
