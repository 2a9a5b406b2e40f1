// Image processors against transformers' PIL backend (tools/make_image_fixtures.py): the shape, a
// strided sample of the pixel values within 1e-6, the float64 sum and sum of squares, and the
// SHA-256 of the whole float32 array (bit-exact).
#include <openssl/evp.h>

#include <chrono>
#include <cmath>

#include <nlohmann/json.hpp>

#include "af/core/error.hpp"
#include "af/modalities/image_processor.hpp"
#include "image_test_util.hpp"

namespace af::modalities {
namespace {

std::string sha256_hex(const std::vector<float>& values) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_Digest(values.data(), values.size() * sizeof(float), digest, &length, EVP_sha256(), nullptr);
  std::string hex;
  char byte[3];
  for (unsigned int i = 0; i < length; ++i) {
    std::snprintf(byte, sizeof(byte), "%02x", digest[i]);
    hex += byte;
  }
  return hex;
}

std::string config_dir(const std::string& name) {
  return test::image_fixtures_dir() + "/configs/" + name;
}

TEST(ImageProcessor, PixelValuesEqualTransformersPil) {
  const std::string dir = test::image_fixtures_dir();
  const auto cases = nlohmann::json::parse(test::read_text(dir + "/pixel_values.json"));
  const std::vector<float> samples = test::read_f32(dir + "/pixel_values.f32");
  ASSERT_GE(cases.size(), 80u);
  double max_err = 0.0;
  int checked = 0, bit_exact = 0;
  for (const auto& c : cases) {
    const std::string where = c["where"], file = c["file"], config = c["config"];
    if (where == "shared" && !test::shared_images_present()) continue;
    SCOPED_TRACE(config + " " + file);
    const auto processor = ImageProcessor::load(config_dir(config));
    const PixelValues pv = processor->preprocess(Image::load(test::image_path(where, file)));
    ASSERT_EQ(pv.shape, c["shape"].get<std::vector<int64_t>>());
    const size_t stride = c["stride"], offset = c["offset"], count = c["count"];
    ASSERT_EQ((pv.data.size() + stride - 1) / stride, count);
    double case_err = 0.0;
    for (size_t i = 0; i < count; ++i) {
      case_err = std::max(case_err, std::fabs(double(pv.data[i * stride]) - samples[offset + i]));
    }
    EXPECT_LE(case_err, 1e-6);
    double sum = 0.0, sumsq = 0.0;
    for (float v : pv.data) sum += v, sumsq += double(v) * v;
    const double n = double(pv.data.size());
    EXPECT_NEAR(sum, c["sum"].get<double>(), n * 1e-6);
    EXPECT_NEAR(sumsq, c["sumsq"].get<double>(), n * 1e-5);
    bit_exact += sha256_hex(pv.data) == c["sha256"].get<std::string>();
    max_err = std::max(max_err, case_err);
    ++checked;
  }
  std::printf("pixel values: %d cases, max abs error %.3g, %d bit-exact\n", checked, max_err,
              bit_exact);
  EXPECT_EQ(bit_exact, checked);
  if (!test::shared_images_present()) GTEST_SKIP() << "shared images absent (AF_TESTDATA)";
}

TEST(ImageResize, EqualsPilForEveryFilterAndPassOrder) {
  const auto fixture =
      nlohmann::json::parse(test::read_text(test::image_fixtures_dir() + "/resize.json"));
  const Image source = Image::load(test::image_path("inputs", fixture["file"]));
  ASSERT_GE(fixture["cases"].size(), 50u);
  for (const auto& c : fixture["cases"]) {
    const int w = c["width"], h = c["height"], filter = c["filter"];
    SCOPED_TRACE(std::to_string(w) + "x" + std::to_string(h) + " filter " + std::to_string(filter));
    const Image out = resize_like_pil(source, w, h, static_cast<Resample>(filter));
    EXPECT_EQ(out.hash(), c["sha256"].get<std::string>());
  }
  EXPECT_THROW(resize_like_pil(source, 10, 10, Resample::kNearest), Error);
}

// Pillow 13 runs the vertical pass first when it removes more than twice the rows the horizontal
// one removes columns, also when both shrink (7x300 -> 3x126 is a LLaVA-NeXT tile of a tall
// image). Hashes: PIL 13.0.0 Image.resize(BICUBIC) of the same synthetic image, hashed as
// Image::hash() does.
TEST(ImageResize, PassOrderFollowsPillowWhenBothAxesShrink) {
  struct Case {
    int in_w, in_h, out_w, out_h;
    const char* sha256;
  };
  const Case cases[] = {
      {7, 300, 3, 126, "3eb4bc796d9587e65377a43a339009d0b806d817e566255906997d786036399f"},
      {20, 41, 13, 10, "4895bf15c919bcb4de991c0278e7016e53744b9bbb72d83cc0cf8d9102a0baf9"},
      {92, 41, 56, 1, "72ef40f7d20e576a8d3b9ff30c94abe10cc139836605bd3696b08c9c2211b3ca"},
      {40, 60, 20, 19, "e4b7a8bceb4e5b71c3950744a20cdf55f2d19e003a37b82dfa5fceec28889938"},
      {40, 60, 20, 20, "b4097282fa79a86db8ec1cfe2fa5995513495a4ea48cd57a0a61963e30667b23"},
      {63, 47, 75, 28, "7d02e1b7eaf37b9c4aebddfa5c3536c7e2e06fa02eab602975094d410e7eae13"},
  };
  for (const Case& c : cases) {
    std::vector<uint8_t> rgb(size_t(c.in_w) * c.in_h * 3);
    for (int y = 0; y < c.in_h; ++y) {
      for (int x = 0; x < c.in_w; ++x) {
        for (int ch = 0; ch < 3; ++ch) {
          rgb[(size_t(y) * c.in_w + x) * 3 + ch] =
              uint8_t((x * 37 + y * 11 + ch * 101 + (x * y) % 7 * 29) % 256);
        }
      }
    }
    const Image out = resize_like_pil(Image(c.in_w, c.in_h, std::move(rgb)), c.out_w, c.out_h,
                                      Resample::kBicubic);
    EXPECT_EQ(out.hash(), c.sha256)
        << c.in_w << "x" << c.in_h << " -> " << c.out_w << "x" << c.out_h;
  }
}

TEST(ImageProcessor, ConfigDefaultsAndTypes) {
  auto clip =
      ImageProcessor::from_json(R"({"image_processor_type": "CLIPImageProcessorFast"})", "p.json");
  EXPECT_EQ(clip->config().type, "CLIPImageProcessor");
  EXPECT_EQ(clip->config().shortest_edge, 224);
  EXPECT_TRUE(clip->config().do_center_crop);
  auto siglip = ImageProcessor::from_json(
      R"({"image_processor_type": "SiglipImageProcessor", "size": {"height": 384, "width": 384}})",
      "p.json");
  EXPECT_FALSE(siglip->config().do_center_crop);
  EXPECT_EQ(siglip->config().size_height, 384);
  const PixelValues pv = siglip->preprocess(Image(2, 1, {0, 128, 255, 255, 255, 255}));
  EXPECT_EQ(pv.shape, (std::vector<int64_t>{3, 384, 384}));
}

void expect_config_error(const std::string& json, const std::string& needle) {
  try {
    ImageProcessor::from_json(json, "pp.json");
    ADD_FAILURE() << "accepted " << json;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("[image] pp.json"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(ImageProcessor, BadConfigsNameTheField) {
  expect_config_error("{", "pp.json");
  expect_config_error("[]", "not a JSON object");
  expect_config_error("{}", "image_processor_type");
  expect_config_error(R"({"image_processor_type": "Idefics3ImageProcessor"})", "not supported");
  const std::string clip = R"({"image_processor_type": "CLIPImageProcessor", )";
  expect_config_error(clip + R"("size": {"shortest_edge": 0}})", "size.shortest_edge");
  expect_config_error(clip + R"("size": {"shortest_edge": 1000000}})", "size.shortest_edge");
  expect_config_error(clip + R"("size": "big"})", "\"size\"");
  expect_config_error(clip + R"("crop_size": {"height": -1, "width": 3}})", "crop_size.height");
  expect_config_error(clip + R"("image_mean": [0.5, 0.5]})", "image_mean");
  expect_config_error(clip + R"("image_std": [0.5, 0, 0.5]})", "image_std");
  expect_config_error(clip + R"("resample": 0})", "resample");
  expect_config_error(clip + R"("do_resize": "yes"})", "do_resize");
  expect_config_error(R"({"image_processor_type": "LlavaNextImageProcessor",
                          "image_grid_pinpoints": [[336]]})",
                      "image_grid_pinpoints");
  try {
    ImageProcessor::load("/nonexistent/model");
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("preprocessor_config.json"), std::string::npos);
  }
}

TEST(ImageProcessor, SelectBestResolutionAsLlavaNext) {
  const std::vector<std::pair<int, int>> pins = {
      {336, 672}, {672, 336}, {672, 672}, {1008, 336}, {336, 1008}};
  EXPECT_EQ(select_best_resolution(480, 640, pins), (std::pair<int, int>{672, 672}));
  EXPECT_EQ(select_best_resolution(300, 1000, pins), (std::pair<int, int>{336, 1008}));
  EXPECT_EQ(select_best_resolution(1000, 300, pins), (std::pair<int, int>{1008, 336}));
  EXPECT_EQ(select_best_resolution(10, 10, pins), (std::pair<int, int>{336, 672}));
}

TEST(ImageProcessor, ExtremeAspectRatiosStayBounded) {
  // A 1 x 40 strip: shortest-edge 336 resizes it to 336 x 13440 before the crop; the output is
  // still the crop size and the work stays small.
  auto clip = ImageProcessor::load(config_dir("clip336"));
  const auto start = std::chrono::steady_clock::now();
  const PixelValues pv = clip->preprocess(Image(1, 40, std::vector<uint8_t>(120, 7)));
  EXPECT_EQ(pv.shape, (std::vector<int64_t>{3, 336, 336}));
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(20));
}

}  // namespace
}  // namespace af::modalities
