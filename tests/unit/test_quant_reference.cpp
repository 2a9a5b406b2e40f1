// af::quant reference quantizers against llama.cpp: tests/fixtures/quant holds llama.cpp's own
// quantize_row_*_ref output and dequantization for a fixed input (tools/make_quant_fixtures.py).
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "af/backend/quant.hpp"
#include "af/core/error.hpp"
#include "test_util.hpp"

namespace {

using af::DType;

constexpr int64_t kCols = 512;

std::vector<uint8_t> read_bytes(const std::string& path) {
  const std::string s = af::test::read_text(path);
  return {s.begin(), s.end()};
}

std::string quant_fixture(const std::string& file) {
  return af::test::fixtures_dir() + "/quant/" + file;
}

class QuantFixture : public ::testing::TestWithParam<DType> {};

TEST_P(QuantFixture, QuantizeMatchesLlamaCppBytes) {
  const DType type = GetParam();
  const std::string tname(af::name(type));
  const std::vector<float> input = af::test::read_f32(quant_fixture("input_f32.bin"));
  const int64_t kRows = static_cast<int64_t>(input.size()) / kCols;
  ASSERT_GT(kRows, 0);
  const std::vector<uint8_t> expected = read_bytes(quant_fixture(tname + ".bin"));
  const int64_t row_bytes = af::row_bytes(type, kCols);
  ASSERT_EQ(expected.size(), static_cast<size_t>(kRows * row_bytes)) << tname;
  std::vector<uint8_t> got(expected.size(), 0xAB);
  for (int64_t r = 0; r < kRows; ++r) {
    af::quant::quantize_row(type, input.data() + r * kCols, got.data() + r * row_bytes, kCols);
  }
  const int64_t block_bytes = af::info(type).type_size;
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_EQ(got[i], expected[i]) << tname << ": first differing byte " << i << " (block "
                                   << static_cast<int64_t>(i) / block_bytes << ")";
  }
}

TEST_P(QuantFixture, DequantizeMatchesLlamaCppBitForBit) {
  const DType type = GetParam();
  const std::string tname(af::name(type));
  const std::vector<uint8_t> packed = read_bytes(quant_fixture(tname + ".bin"));
  const std::vector<float> expected = af::test::read_f32(quant_fixture(tname + "_dequant.bin"));
  ASSERT_GT(expected.size(), 0u);
  std::vector<float> got(expected.size());
  af::quant::dequantize_row(type, packed.data(), got.data(), static_cast<int64_t>(got.size()));
  for (size_t i = 0; i < got.size(); ++i) {
    uint32_t a, b;
    std::memcpy(&a, &got[i], 4);
    std::memcpy(&b, &expected[i], 4);
    ASSERT_EQ(a, b) << tname << " element " << i << ": " << got[i] << " vs " << expected[i];
  }
}

TEST_P(QuantFixture, RoundTripErrorIsWithinTheFormatsResolution) {
  const DType type = GetParam();
  const int64_t k = 1024;
  const std::vector<float> x = af::test::random_floats(k, -1.f, 1.f, 7);
  std::vector<uint8_t> q(static_cast<size_t>(af::row_bytes(type, k)));
  std::vector<float> y(k);
  af::quant::quantize_row(type, x.data(), q.data(), k);
  af::quant::dequantize_row(type, q.data(), y.data(), k);
  double err = 0, ref = 0;
  for (int64_t i = 0; i < k; ++i) {
    err += (x[i] - y[i]) * (x[i] - y[i]);
    ref += x[i] * x[i];
  }
  // Relative RMS error: about 2^-(bits) for uniform data; Q2_K is the coarsest.
  EXPECT_LT(std::sqrt(err / ref), type == DType::Q2_K ? 0.35 : 0.15) << af::name(type);
}

INSTANTIATE_TEST_SUITE_P(AllTypes, QuantFixture,
                         ::testing::Values(DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1,
                                           DType::Q8_0, DType::Q2_K, DType::Q3_K, DType::Q4_K,
                                           DType::Q5_K, DType::Q6_K, DType::Q8_K),
                         [](const ::testing::TestParamInfo<DType>& info) {
                           return std::string(af::name(info.param));
                         });

TEST(QuantApi, SupportedTypes) {
  EXPECT_TRUE(af::quant::is_supported(DType::Q4_K));
  EXPECT_TRUE(af::quant::is_supported(DType::Q8_0));
  EXPECT_FALSE(af::quant::is_supported(DType::F32));
  EXPECT_FALSE(af::quant::is_supported(DType::IQ4_XS));
}

TEST(QuantApi, RowLengthNotAMultipleOfTheBlockIsRejected) {
  std::vector<float> x(300, 0.5f);
  std::vector<uint8_t> q(1024);
  try {
    af::quant::quantize_row(DType::Q4_K, x.data(), q.data(), 300);
    FAIL() << "expected af::Error";
  } catch (const af::Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("q4_K"), std::string::npos) << msg;
    EXPECT_NE(msg.find("300"), std::string::npos) << msg;
  }
  EXPECT_THROW(af::quant::dequantize_row(DType::Q8_0, q.data(), x.data(), 33), af::Error);
}

TEST(QuantApi, UnsupportedTypeIsNamed) {
  std::vector<float> x(256, 0.5f);
  std::vector<uint8_t> q(1024);
  try {
    af::quant::quantize_row(DType::IQ2_XXS, x.data(), q.data(), 256);
    FAIL() << "expected af::Error";
  } catch (const af::Error& e) {
    EXPECT_NE(std::string(e.what()).find("iq2_xxs"), std::string::npos) << e.what();
  }
}

TEST(QuantApi, NonFiniteInputDoesNotCrash) {
  std::vector<float> x(256, 1.0f);
  x[3] = std::nanf("");
  x[100] = INFINITY;
  x[200] = -INFINITY;
  for (DType t : {DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1, DType::Q8_0, DType::Q2_K,
                  DType::Q3_K, DType::Q4_K, DType::Q5_K, DType::Q6_K, DType::Q8_K}) {
    std::vector<uint8_t> q(static_cast<size_t>(af::row_bytes(t, 256)));
    std::vector<float> y(256);
    af::quant::quantize_row(t, x.data(), q.data(), 256);
    af::quant::dequantize_row(t, q.data(), y.data(), 256);
  }
}

}  // namespace
