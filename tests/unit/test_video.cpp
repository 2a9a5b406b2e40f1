// Video decoding and frame sampling (af/modalities/video.hpp): qwen_vl_utils' frame-count and
// size arithmetic, decoding through ffmpeg against the ffmpeg CLI, the "built without video"
// error, and bad input (corrupt, truncated, no video stream, zero frames, absurd fps, limits, a
// 4-hour video sampled within a packet budget only seeking allows).
#include <chrono>
#include <cmath>
#include <fstream>
#include <limits>

#include <gtest/gtest.h>

#include "af/core/error.hpp"
#include "af/modalities/video.hpp"
#include "modalities/video_decode.hpp"
#include "unit/video_test_util.hpp"

namespace af::modalities {
namespace {

using test::fixture_clip;
using test::run_ffmpeg;
using test::video_tmp_dir;

std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

// The af::Error message of `f`, or "" when it does not throw one.
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// Expected values printed by qwen_vl_utils 0.0.14 (smart_nframes, torch.linspace().round()).
TEST(VideoSampling, SmartNframesMatchesQwenVlUtils) {
  VideoSampling s;
  EXPECT_EQ(smart_nframes(s, 32, 8.0), 8);
  EXPECT_EQ(smart_nframes(s, 5, 30.0), 4);
  EXPECT_EQ(smart_nframes(s, 14400, 1.0), 768);
  s.fps = 4.0, s.max_frames = 6;
  EXPECT_EQ(smart_nframes(s, 32, 8.0), 6);
  s = {}, s.fps = 0.5, s.min_frames = 3;
  EXPECT_EQ(smart_nframes(s, 1000, 30.0), 16);
  s = {}, s.nframes = 7;
  EXPECT_EQ(smart_nframes(s, 100, 25.0), 8);
  s = {};
  EXPECT_THROW(smart_nframes(s, 1, 30.0), Error);  // fewer frames than one temporal patch
}

TEST(VideoSampling, IndicesMatchTorchLinspaceRound) {
  EXPECT_EQ(sample_indices(32, 8), (std::vector<int64_t>{0, 4, 9, 13, 18, 22, 27, 31}));
  EXPECT_EQ(sample_indices(32, 6), (std::vector<int64_t>{0, 6, 12, 19, 25, 31}));
  EXPECT_EQ(sample_indices(100, 8), (std::vector<int64_t>{0, 14, 28, 42, 57, 71, 85, 99}));
  EXPECT_EQ(sample_indices(33, 4), (std::vector<int64_t>{0, 11, 21, 32}));
  const auto big = sample_indices(14400, 768);
  int64_t sum = 0;
  for (int64_t i : big) sum += i;
  EXPECT_EQ(sum, 5529216);
  EXPECT_EQ(big[1], 19);
  EXPECT_EQ(big[3], 56);
  EXPECT_EQ(big[765], 14361);
}

TEST(VideoSampling, SmartResizeMatchesQwenVlUtils) {
  EXPECT_EQ(fetch_video_smart_resize(120, 160, 28, 100352, 602112), std::make_pair(280, 392));
  EXPECT_EQ(fetch_video_smart_resize(1080, 1920, 28, 100352, 235200), std::make_pair(336, 644));
  EXPECT_EQ(fetch_video_smart_resize(10, 2000, 28, 3136, 1e6), std::make_pair(28, 1988));
  EXPECT_EQ(fetch_video_smart_resize(28, 28, 28, 3136, 1e6), std::make_pair(56, 56));
  EXPECT_EQ(fetch_video_smart_resize(112, 140, 28, 3136, 16725.333333333332),
            std::make_pair(112, 140));
  // transformers' variant (the processor's) lets a short side round to 0 and then grows it.
  EXPECT_EQ(video_smart_resize(10, 2000, 28, 3136, 1e6), std::make_pair(28, 812));
  EXPECT_EQ(video_smart_resize(120, 160, 28, 100352, 602112), std::make_pair(280, 392));
  EXPECT_THROW(fetch_video_smart_resize(28, 5600, 28, 100352, 105369.6), Error);
  EXPECT_NE(error_of([] { video_smart_resize(10, 2010, 28, 3136, 1e6); }).find("aspect ratio"),
            std::string::npos);
  EXPECT_THROW(video_smart_resize(0, 10, 28, 3136, 1e6), Error);
}

TEST(VideoSampling, AbsurdFpsIsRefusedBeforeDecoding) {
  for (double fps :
       {0.0, -1.0, std::nan(""), 1000.5, 1e9, std::numeric_limits<double>::infinity()}) {
    VideoSampling s;
    s.fps = fps;
    // The check runs before the file is opened, so even a missing file reports the fps.
    const std::string msg = error_of([&] {
      Video::decode(std::vector<uint8_t>{1, 2, 3}, "clip", s);
    });
    EXPECT_NE(msg.find("fps"), std::string::npos) << fps << ": " << msg;
  }
}

TEST(Video, BuiltWithoutVideoErrorNamesTheInputAndTheFix) {
  // The stub that a build without ffmpeg links behind every entry point (always compiled).
  const std::string msg = error_of([] {
    detail::decode_video_frames_unavailable({"", {}, "a.mp4"});
  });
  EXPECT_NE(msg.find("a.mp4"), std::string::npos) << msg;
  EXPECT_NE(msg.find("built without video"), std::string::npos) << msg;
  EXPECT_NE(msg.find("AF_VIDEO"), std::string::npos) << msg;
  if (!video_supported()) {
    EXPECT_NE(error_of([] {
                Video::decode(std::vector<uint8_t>(100, 7), "b.mp4");
              }).find("built without video"),
              std::string::npos);
  }
}

TEST(Video, FromFramesKeepsFramesAndChecksSizes) {
  std::vector<Image> frames;
  for (int i = 0; i < 3; ++i) frames.emplace_back(4, 2, std::vector<uint8_t>(24, uint8_t(i)));
  const Video v = Video::from_frames(frames, 2.0);
  EXPECT_EQ(v.frames().size(), 3u);
  EXPECT_EQ(v.sample_fps(), 2.0);
  EXPECT_FALSE(v.float_frames());
  EXPECT_EQ(v.hash().size(), 64u);
  frames.emplace_back(2, 4, std::vector<uint8_t>(24, 0));
  EXPECT_NE(error_of([&] { Video::from_frames(frames); }).find("frame 3 is 2x4"),
            std::string::npos);
  EXPECT_THROW(Video::from_frames({}), Error);
  EXPECT_THROW(Video::from_frames({Image(2, 2, std::vector<uint8_t>(12))}, 0.0), Error);
}

TEST(VideoDecode, LoadSamplesAsFetchVideo) {
  AF_SKIP_WITHOUT_VIDEO();
  const Video v = Video::load(fixture_clip());
  EXPECT_EQ(v.frame_indices(), (std::vector<int64_t>{0, 4, 9, 13, 18, 22, 27, 31}));
  EXPECT_EQ(v.source_frames(), 32);
  EXPECT_DOUBLE_EQ(v.source_fps(), 8.0);
  EXPECT_DOUBLE_EQ(v.sample_fps(), 2.0);
  EXPECT_EQ(v.width(), 392);
  EXPECT_EQ(v.height(), 280);
  EXPECT_TRUE(v.float_frames());
  // Memory and file give the same video.
  EXPECT_EQ(Video::decode(read_bytes(fixture_clip()), "clip").hash(), v.hash());
}

// Every frame of an H.264 (yuv420p) clip equals what the ffmpeg CLI decodes to rgb24.
TEST(VideoDecode, FramesEqualTheFfmpegCli) {
  AF_SKIP_WITHOUT_VIDEO();
  const std::string mp4 = video_tmp_dir() + "/h264.mp4", raw = video_tmp_dir() + "/h264.rgb";
  ASSERT_TRUE(run_ffmpeg({"-i", fixture_clip(), "-c:v", "libx264", "-pix_fmt", "yuv420p", "-g", "8",
                          "-frames:v", "12", mp4}));
  ASSERT_TRUE(run_ffmpeg({"-i", mp4, "-f", "rawvideo", "-pix_fmt", "rgb24", raw}));
  const std::vector<uint8_t> want = read_bytes(raw);
  std::vector<uint8_t> got;
  auto plan = [](const detail::VideoStreamInfo& info) {
    std::vector<int64_t> all(size_t(info.total_frames));
    for (size_t i = 0; i < all.size(); ++i) all[i] = int64_t(i);
    return all;
  };
  auto sink = [&](size_t, Image f) { got.insert(got.end(), f.rgb().begin(), f.rgb().end()); };
  const auto info = detail::decode_video_frames({mp4, {}, mp4}, {}, plan, sink);
  EXPECT_EQ(info.total_frames, 12);
  ASSERT_EQ(got.size(), want.size());
  size_t diff = 0;
  for (size_t i = 0; i < got.size(); ++i) diff += got[i] != want[i];
  EXPECT_EQ(diff, 0u);
}

TEST(VideoDecode, CorruptInputIsAClearError) {
  AF_SKIP_WITHOUT_VIDEO();
  std::vector<uint8_t> junk(4096);
  for (size_t i = 0; i < junk.size(); ++i) junk[i] = uint8_t(i * 2654435761u >> 13);
  EXPECT_NE(error_of([&] { Video::decode(junk, "junk.mp4"); }).find("[video] junk.mp4: "),
            std::string::npos);
  EXPECT_NE(error_of([] { Video::decode(std::vector<uint8_t>{}, "empty.mp4"); }).find("empty"),
            std::string::npos);
  EXPECT_EQ(error_of([] { Video::load("/nonexistent/x.mp4"); }).find("[video] /nonexistent/x.mp4"),
            0u);
  // A clip cut in half: the MOV index (at the end) is gone, or, with the index first, the
  // frames it promises are.
  const auto clip = read_bytes(fixture_clip());
  const std::vector<uint8_t> half(clip.begin(), clip.begin() + clip.size() / 2);
  EXPECT_NE(error_of([&] { Video::decode(half, "half.mov"); }).find("half.mov"), std::string::npos);
  const std::string fast = video_tmp_dir() + "/faststart.mp4";
  ASSERT_TRUE(run_ffmpeg({"-i", fixture_clip(), "-c:v", "libx264", "-pix_fmt", "yuv420p",
                          "-movflags", "+faststart", fast}));
  const auto whole = read_bytes(fast);
  const std::vector<uint8_t> cut(whole.begin(), whole.begin() + whole.size() * 6 / 10);
  const std::string msg = error_of([&] { Video::decode(cut, "cut.mp4"); });
  EXPECT_NE(msg.find("cut.mp4"), std::string::npos) << msg;
}

TEST(VideoDecode, NoVideoStreamAndZeroFrames) {
  AF_SKIP_WITHOUT_VIDEO();
  const std::string audio = video_tmp_dir() + "/audio.mkv";
  ASSERT_TRUE(run_ffmpeg({"-f", "lavfi", "-i", "sine=d=1", "-c:a", "pcm_s16le", audio}));
  EXPECT_NE(error_of([&] { Video::load(audio); }).find("no video stream"), std::string::npos);
  const std::string empty = video_tmp_dir() + "/zero.mkv";
  ASSERT_TRUE(run_ffmpeg(
      {"-f", "lavfi", "-i", "color=s=64x48:r=8", "-frames:v", "0", "-c:v", "png", empty}));
  EXPECT_NE(error_of([&] { Video::load(empty); }).find(empty), std::string::npos);
}

TEST(VideoDecode, LimitsAreCheckedFromTheHeader) {
  AF_SKIP_WITHOUT_VIDEO();
  VideoLimits small;
  small.max_frame_pixels = 100 * 100;
  EXPECT_NE(error_of([&] { Video::load(fixture_clip(), {}, small); }).find("max_frame_pixels"),
            std::string::npos);
  VideoLimits short_clip;
  short_clip.max_seconds = 1.0;
  EXPECT_NE(error_of([&] { Video::load(fixture_clip(), {}, short_clip); }).find("max_seconds"),
            std::string::npos);
  VideoLimits tiny_file;
  tiny_file.max_file_bytes = 1000;
  EXPECT_NE(error_of([&] { Video::load(fixture_clip(), {}, tiny_file); }).find("max_file_bytes"),
            std::string::npos);
}

// A 4-hour video (1 fps, 32x32, a keyframe a minute): 8 frames are sampled within 2000 packets,
// which only seeking allows (reading through would take 14400), in bounded time.
TEST(VideoDecode, FourHourVideoSeeksToTheSampledFrames) {
  AF_SKIP_WITHOUT_VIDEO();
  const std::string long_mp4 = video_tmp_dir() + "/four_hours.mp4";
  ASSERT_TRUE(run_ffmpeg({"-f", "lavfi", "-i", "color=c=blue:s=32x32:r=1:d=14400", "-c:v",
                          "libx264", "-g", "60", "-pix_fmt", "yuv420p", long_mp4}));
  VideoSampling s;
  s.max_frames = 8;
  s.min_pixels = 28 * 28;
  VideoLimits limits;
  limits.max_packets = 2000;
  const auto t0 = std::chrono::steady_clock::now();
  const Video v = Video::load(long_mp4, s, limits);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(v.frames().size(), 8u);
  EXPECT_EQ(v.frame_indices(), sample_indices(14400, 8));
  EXPECT_EQ(v.source_frames(), 14400);
  EXPECT_LT(secs, 10.0 * test::time_scale());
  limits.max_packets = 100;  // and the packet budget is enforced
  EXPECT_NE(error_of([&] { Video::load(long_mp4, s, limits); }).find("max_packets"),
            std::string::npos);
}

}  // namespace
}  // namespace af::modalities
