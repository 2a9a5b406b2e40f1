// Qwen2VLVideoProcessor against transformers (tests/fixtures/video/qwen2_vl_video.json, written
// by tools/make_video_fixtures.py): pixel_values_videos bit for bit (SHA-256 of the float32
// values), video_grid_thw and second_per_grid_t, for a clip the test makes with the ffmpeg CLI
// (qwen_vl_utils' fetch_video, then the processor) and for a list of image frames.
#include <cstring>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "af/core/error.hpp"
#include "af/modalities/qwen2_vl_video_processor.hpp"
#include "modalities/sha256.hpp"
#include "unit/image_test_util.hpp"
#include "unit/video_test_util.hpp"

namespace af::modalities {
namespace {

const nlohmann::json& fixture_case(const std::string& name) {
  static const nlohmann::json root =
      nlohmann::json::parse(test::read_text(test::fixtures_dir() + "/video/qwen2_vl_video.json"));
  return root.at("cases").at(name);
}

void expect_matches(const VideoPixelValues& got, const nlohmann::json& want) {
  EXPECT_EQ(got.shape, want.at("shape").get<std::vector<int64_t>>());
  EXPECT_EQ(std::vector<int64_t>(got.grid_thw.begin(), got.grid_thw.end()),
            want.at("grid_thw").get<std::vector<int64_t>>());
  EXPECT_DOUBLE_EQ(got.second_per_grid_t, want.at("second_per_grid_t").get<double>());
  ASSERT_EQ(got.data.size(), size_t(got.shape[0] * got.shape[1]));
  for (const auto& [row, values] : want.at("rows").items()) {
    for (size_t k = 0; k < values.size(); ++k) {
      EXPECT_EQ(got.data[size_t(std::stoll(row)) * got.shape[1] + k], values[k].get<float>())
          << "row " << row << " value " << k;
    }
  }
  double sum = 0;
  for (float v : got.data) sum += v;
  EXPECT_NEAR(sum, want.at("sum").get<double>(), 1e-6 * std::abs(sum) + 1e-3);
  const auto* bytes = reinterpret_cast<const uint8_t*>(got.data.data());
  EXPECT_EQ(detail::sha256_hex({bytes, got.data.size() * sizeof(float)}),
            want.at("sha256").get<std::string>());
}

TEST(Qwen2VLVideoProcessor, FileWithDefaultsEqualsTransformers) {
  AF_SKIP_WITHOUT_VIDEO();
  const auto& want = fixture_case("file_default");
  const Video video = Video::load(test::fixture_clip());
  EXPECT_EQ(video.frame_indices(), want.at("frame_indices").get<std::vector<int64_t>>());
  EXPECT_DOUBLE_EQ(video.sample_fps(), want.at("sample_fps").get<double>());
  expect_matches(Qwen2VLVideoProcessor().preprocess(video), want);
}

TEST(Qwen2VLVideoProcessor, FileUnderATotalPixelBudgetEqualsTransformers) {
  AF_SKIP_WITHOUT_VIDEO();
  const auto& want = fixture_case("file_budget");
  VideoSampling s;
  s.fps = 4.0, s.max_frames = 6, s.min_pixels = 3136, s.total_pixels = 3136 * 16;
  const Video video = Video::load(test::fixture_clip(), s);
  EXPECT_EQ(video.frame_indices(), want.at("frame_indices").get<std::vector<int64_t>>());
  EXPECT_EQ(video.height(), want.at("frame_size")[0].get<int>());
  EXPECT_EQ(video.width(), want.at("frame_size")[1].get<int>());
  Qwen2VLVideoProcessorConfig c;
  c.min_pixels = 3136;
  expect_matches(Qwen2VLVideoProcessor(c).preprocess(video), want);
}

TEST(Qwen2VLVideoProcessor, ImageFramesEqualTransformers) {
  if (!test::shared_images_present()) GTEST_SKIP() << "needs AF_TESTDATA/images";
  std::vector<Image> frames;
  for (size_t i = 0; i < 3; ++i) {
    const Image img = Image::load(test::testdata_dir() + "/images/" + test::clip_images()[i]);
    std::vector<uint8_t> crop(96 * 72 * 3);
    for (int y = 0; y < 72; ++y) std::memcpy(&crop[size_t(y) * 96 * 3], img.pixel(0, y), 96 * 3);
    frames.emplace_back(96, 72, std::move(crop));
  }
  Qwen2VLVideoProcessorConfig c;
  c.min_pixels = 3136;
  expect_matches(Qwen2VLVideoProcessor(c).preprocess(Video::from_frames(frames)),
                 fixture_case("frames"));
}

TEST(Qwen2VLVideoProcessor, ConfigFromJson) {
  const auto p = Qwen2VLVideoProcessor::from_json(
      R"({"size": {"shortest_edge": 4000, "longest_edge": 90000}, "min_pixels": 3136,
          "temporal_patch_size": 2, "patch_size": 14, "merge_size": 2})",
      "cfg.json");
  EXPECT_EQ(p.config().min_pixels, 3136);  // min_pixels wins over size, as in __init__
  EXPECT_EQ(p.config().max_pixels, 90000);
  for (const char* bad : {R"({"patch_size": 0})", R"({"image_std": [1, 0, 1]})", R"({"size": 5})",
                          R"({"min_pixels": 10, "max_pixels": 5})", "[1]"}) {
    try {
      Qwen2VLVideoProcessor::from_json(bad, "cfg.json");
      ADD_FAILURE() << bad;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("cfg.json"), std::string::npos) << e.what();
    }
  }
}

}  // namespace
}  // namespace af::modalities
