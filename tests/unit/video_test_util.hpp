#pragma once
// Videos made for the tests by Debian's ffmpeg CLI (nothing large is committed): the same short
// clip tools/make_video_fixtures.py makes, and helpers to run ffmpeg and find its output.
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "af/modalities/video.hpp"
#include "test_util.hpp"

namespace af::test {

inline bool ffmpeg_cli_present() {
  static const bool present = std::system("ffmpeg -version >/dev/null 2>&1") == 0;
  return present;
}

// A folder for this process's videos (removed by the OS's tmp cleaning, not by the tests).
inline std::string video_tmp_dir() {
  static const std::string dir = [] {
    auto d =
        std::filesystem::temp_directory_path() / ("af_video_test_" + std::to_string(::getpid()));
    std::filesystem::create_directories(d);
    return d.string();
  }();
  return dir;
}

// Runs ffmpeg with `args` (each single-quoted); true on success.
inline bool run_ffmpeg(const std::vector<std::string>& args) {
  std::string cmd = "ffmpeg -nostdin -v error -y";
  for (const auto& a : args) cmd += " '" + a + "'";
  return std::system((cmd + " >/dev/null 2>&1").c_str()) == 0;
}

inline const std::vector<std::string>& clip_images() {
  static const std::vector<std::string> names = {"camera.png", "chelsea.jpg", "rocket.jpg",
                                                 "llama1-logo.png"};
  return names;
}

// tools/make_video_fixtures.py's clip: the four test images at 160x120, 8 frames each at 8 fps,
// PNG in MOV (lossless RGB). Made once per process; "" when ffmpeg or the images are missing.
inline std::string fixture_clip() {
  static const std::string path = []() -> std::string {
    if (!ffmpeg_cli_present()) return "";
    const std::string out = video_tmp_dir() + "/clip.mov";
    std::vector<std::string> args;
    std::string graph;
    for (size_t i = 0; i < clip_images().size(); ++i) {
      args.insert(args.end(), {"-loop", "1", "-t", "1", "-framerate", "8", "-i",
                               testdata_dir() + "/images/" + clip_images()[i]});
      // Appended piece by piece: GCC 12 reports a false -Wrestrict for "[" + std::string.
      const std::string n = std::to_string(i);
      graph.append("[").append(n).append("]scale=160:120,setsar=1,format=rgb24[s");
      graph.append(n).append("];");
    }
    graph += "[s0][s1][s2][s3]concat=n=4:v=1:a=0[v]";
    args.insert(args.end(),
                {"-filter_complex", graph, "-map", "[v]", "-c:v", "png", "-pix_fmt", "rgb24", out});
    return run_ffmpeg(args) ? out : "";
  }();
  return path;
}

#define AF_SKIP_WITHOUT_VIDEO()                                                          \
  do {                                                                                   \
    if (!af::modalities::video_supported()) GTEST_SKIP() << "built without video";       \
    if (af::test::fixture_clip().empty())                                                \
      GTEST_SKIP() << "needs Debian's ffmpeg CLI and AF_TESTDATA/images to make a clip"; \
  } while (0)

}  // namespace af::test
