// af-cli preprocess --video: the image contract (shape line, one %.9g row per patch) carrying
// Qwen2-VL's pixel_values_videos, equal to transformers' for the clip the test makes with the
// ffmpeg CLI (tests/fixtures/video/qwen2_vl_video.json); bad input exits 1 with the message.
#include <cstdlib>
#include <sstream>

#include <nlohmann/json.hpp>

#include "modalities/sha256.hpp"
#include "test_util.hpp"
#include "unit/video_test_util.hpp"

namespace af {
namespace {

std::string cli() { return std::string(AF_CLI_PATH) + " preprocess"; }

TEST(CliPreprocessVideo, PrintsTransformersPixelValues) {
  AF_SKIP_WITHOUT_VIDEO();
  const auto want = nlohmann::json::parse(test::read_text(
      test::fixtures_dir() + "/video/qwen2_vl_video.json"))["cases"]["file_default"];
  const test::ShellResult r =
      test::run_shell(cli() + " --video '" + test::fixture_clip() + "' 2>/dev/null");
  ASSERT_EQ(r.status, 0);
  std::istringstream in(r.out);
  std::string line;
  std::getline(in, line);
  EXPECT_EQ(line, "2240 1176");
  std::vector<float> values;
  size_t rows = 0;
  while (std::getline(in, line)) {
    std::istringstream row(line);
    size_t n = 0;
    for (std::string tok; row >> tok; ++n) values.push_back(std::strtof(tok.c_str(), nullptr));
    EXPECT_EQ(n, 1176u) << "row " << rows;
    ++rows;
  }
  EXPECT_EQ(rows, 2240u);
  const auto* bytes = reinterpret_cast<const uint8_t*>(values.data());
  EXPECT_EQ(modalities::detail::sha256_hex({bytes, values.size() * sizeof(float)}),
            want["sha256"].get<std::string>());
}

TEST(CliPreprocessVideo, SamplingFlagsAndBadInput) {
  AF_SKIP_WITHOUT_VIDEO();
  const std::string clip = " --video '" + test::fixture_clip() + "'";
  auto r = test::run_shell(cli() + clip + " --fps 4 --max-frames 6 2>&1 >/dev/null");
  EXPECT_EQ(r.status, 0);
  EXPECT_NE(r.out.find("video: 6 of 32 frames (0 6 12 19 25 31)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("video_grid_thw 3 20 28"), std::string::npos) << r.out;
  r = test::run_shell(cli() + clip + " --fps 0 2>&1");
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.out.find("fps"), std::string::npos) << r.out;
  r = test::run_shell(cli() + " --video /nonexistent.mp4 2>&1");
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.out.find("[video] /nonexistent.mp4"), std::string::npos) << r.out;
  r = test::run_shell(cli() + " 2>&1");
  EXPECT_EQ(r.status, 2);
}

}  // namespace
}  // namespace af
