// Qwen2VLImageProcessor against transformers' PIL backend (tools/make_qwen2_vl_fixtures.py
// processor): pixel_values bit for bit (SHA-256 of the float32 array), image_grid_thw, and
// smart_resize's sizes and refusals.
#include <openssl/evp.h>

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

std::string qwen_dir() { return test::fixtures_dir() + "/qwen2_vl"; }

nlohmann::json fixture() {
  return nlohmann::json::parse(test::read_text(qwen_dir() + "/processor.json"));
}

TEST(Qwen2VLProcessor, PixelValuesAndGridEqualTransformers) {
  const nlohmann::json cases = fixture()["cases"];
  ASSERT_GE(cases.size(), 30u);
  int checked = 0;
  for (const auto& c : cases) {
    const std::string where = c["where"], file = c["file"], config = c["config"];
    if (where == "shared" && !test::shared_images_present()) continue;
    SCOPED_TRACE(config + " " + file);
    const auto processor = ImageProcessor::load(qwen_dir() + "/configs/" + config);
    const PixelValues pv = processor->preprocess(Image::load(test::image_path(where, file)));
    ASSERT_EQ(pv.shape, c["shape"].get<std::vector<int64_t>>());
    EXPECT_EQ(pv.grid_thw, c["grid_thw"].get<std::vector<int64_t>>());
    const auto first = c["first"].get<std::vector<float>>();
    const auto last = c["last"].get<std::vector<float>>();
    for (size_t i = 0; i < first.size(); ++i) EXPECT_EQ(pv.data[i], first[i]) << i;
    for (size_t i = 0; i < last.size(); ++i)
      EXPECT_EQ(pv.data[pv.data.size() - last.size() + i], last[i]) << i;
    double sum = 0.0;
    for (float v : pv.data) sum += v;
    EXPECT_NEAR(sum, c["sum"].get<double>(), double(pv.data.size()) * 1e-6);
    EXPECT_EQ(sha256_hex(pv.data), c["sha256"].get<std::string>());
    ++checked;
  }
  EXPECT_GE(checked, 20);
  if (!test::shared_images_present()) GTEST_SKIP() << "shared images absent (AF_TESTDATA)";
}

TEST(Qwen2VLProcessor, SmartResizeEqualsTransformers) {
  const nlohmann::json f = fixture();
  ASSERT_GE(f["smart_resize"].size(), 30u);
  for (const auto& s : f["smart_resize"]) {
    const int64_t h = s["height"], w = s["width"];
    SCOPED_TRACE(std::to_string(h) + "x" + std::to_string(w));
    const auto [rh, rw] = qwen2vl_smart_resize(h, w, 28, s["min_pixels"], s["max_pixels"]);
    EXPECT_EQ(rh, s["resized"][0].get<int64_t>());
    EXPECT_EQ(rw, s["resized"][1].get<int64_t>());
  }
  for (const auto& r : f["refused"]) {
    EXPECT_THROW(qwen2vl_smart_resize(r[0], r[1], 28, 3136, 1003520), Error);
  }
}

TEST(Qwen2VLProcessor, AspectRatioOver200IsAClearError) {
  const auto processor = ImageProcessor::load(qwen_dir() + "/configs/small");
  try {
    processor->preprocess(Image(201, 1, std::vector<uint8_t>(201 * 3, 9)));
    ADD_FAILURE() << "a 201x1 image was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("aspect ratio of 201"), std::string::npos) << e.what();
  }
  // Exactly 200 is taken (HF refuses only > 200), and a 1-pixel-high strip becomes one row of
  // merged patches.
  const PixelValues pv = processor->preprocess(Image(200, 1, std::vector<uint8_t>(200 * 3, 9)));
  EXPECT_EQ(pv.grid_thw[0], 1);
  EXPECT_EQ(pv.grid_thw[1] % 2, 0);
}

TEST(Qwen2VLProcessor, ConfigKeysAndLimits) {
  const auto p = ImageProcessor::from_json(R"({"image_processor_type": "Qwen2VLImageProcessor",
      "size": {"shortest_edge": 100, "longest_edge": 5000}, "max_pixels": 6000})",
                                           "pp.json");
  EXPECT_EQ(p->config().min_pixels, 100);
  EXPECT_EQ(p->config().max_pixels, 6000);  // top-level max_pixels overrides size
  EXPECT_EQ(p->config().patch_size, 14);
  EXPECT_EQ(p->config().temporal_patch_size, 2);
  for (const char* bad : {R"("max_pixels": 100000000000)", R"("min_pixels": 0)",
                          R"("min_pixels": 9000, "max_pixels": 8000)", R"("patch_size": 0)",
                          R"("merge_size": "2")", R"("size": 5)"}) {
    SCOPED_TRACE(bad);
    try {
      ImageProcessor::from_json(
          std::string(R"({"image_processor_type": "Qwen2VLImageProcessor", )") + bad + "}",
          "pp.json");
      ADD_FAILURE() << "accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("pp.json"), std::string::npos) << e.what();
    }
  }
}

// Two frames of a video go through the same flattening: patch (0, 0)'s columns are channel
// 0 frame 0's patch, then channel 0 frame 1's, as HF's video processor lays them.
TEST(Qwen2VLProcessor, PatchifyOrdersFramesInsideChannels) {
  const int64_t h = 4, w = 4;
  std::vector<float> frames(2 * 3 * h * w);
  for (size_t i = 0; i < frames.size(); ++i) frames[i] = float(i);
  const PixelValues pv = qwen2vl_patchify(frames.data(), 2, h, w, 2, 2, 2);
  EXPECT_EQ(pv.shape, (std::vector<int64_t>{4, 24}));
  EXPECT_EQ(pv.grid_thw, (std::vector<int64_t>{1, 2, 2}));
  // Row 1 is the patch at (0, 1): columns 2..3 of rows 0..1.
  const std::vector<float> row1(pv.data.begin() + 24, pv.data.begin() + 32);
  EXPECT_EQ(row1, (std::vector<float>{2, 3, 6, 7, 50, 51, 54, 55}));
  EXPECT_THROW(qwen2vl_patchify(frames.data(), 1, h, w, 2, 2, 2), Error);
}

}  // namespace
}  // namespace af::modalities
