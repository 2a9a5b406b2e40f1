// A multi-hour file (written here with libsndfile: 8 kHz 8-bit WAV, silence with a tone burst
// every 10 minutes) transcribed window by window: resident memory while it runs stays within a
// few MB of where it started, far below the 460 MB its 16 kHz samples would take (2 h).
// Slow (~240 windows of the tiny model): AF_WHISPER_MEMORY_HOURS sets the length (default 2).
#include <gtest/gtest.h>
#include <sndfile.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "af/models/whisper_transcribe.hpp"
#include "test_util.hpp"

namespace af::models {
namespace {

int64_t rss_bytes() {
  std::ifstream statm("/proc/self/statm");
  int64_t pages = 0, resident = 0;
  statm >> pages >> resident;
  return resident * 4096;
}

std::string write_long_wav(double hours) {
  // One file per process: concurrent test runs on one machine must not share it.
  const std::string path =
      testing::TempDir() + "/whisper_hours_" + std::to_string(::getpid()) + ".wav";
  SF_INFO info{};
  info.samplerate = 8000;
  info.channels = 1;
  info.format = SF_FORMAT_WAV | SF_FORMAT_PCM_U8;
  SNDFILE* f = sf_open(path.c_str(), SFM_WRITE, &info);
  EXPECT_NE(f, nullptr) << sf_strerror(nullptr);
  const int64_t total = int64_t(hours * 3600 * 8000);
  std::vector<float> block(8000);
  for (int64_t at = 0; at < total; at += int64_t(block.size())) {
    const bool burst = at % (600 * 8000) < 8000 * 2;  // 2 s of 440 Hz every 10 minutes
    for (size_t i = 0; i < block.size(); ++i) {
      block[i] =
          burst ? 0.3f * float(std::sin(2 * M_PI * 440.0 * double(at + int64_t(i)) / 8000)) : 0.0f;
    }
    sf_write_float(f, block.data(), sf_count_t(std::min<int64_t>(8000, total - at)));
  }
  sf_close(f);
  return path;
}

#if defined(__SANITIZE_ADDRESS__)
#define AF_WHISPER_MEMORY_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define AF_WHISPER_MEMORY_SANITIZED 1
#endif
#endif

TEST(WhisperLongFormMemory, MultiHourFileStreamsInBoundedMemory) {
#ifdef AF_WHISPER_MEMORY_SANITIZED
  // AddressSanitizer keeps freed blocks in quarantine (RSS grows by design) and runs the
  // ~240 windows about 10x slower: the bound is measured by the native run.
  GTEST_SKIP() << "resident-memory bound not meaningful under AddressSanitizer";
#endif
  const char* env = std::getenv("AF_WHISPER_MEMORY_HOURS");
  const double hours = env ? std::atof(env) : 2.0;
  ASSERT_GT(hours, 0.0);
  const std::string path = write_long_wav(hours);
  auto t = WhisperTranscriber::load(test::fixtures_dir() + "/whisper/tiny_ts");
  WhisperTranscribeOptions o;
  o.language = "en";
  o.max_new_tokens = 1;  // one token per window: the test is about reading, not decoding
  modalities::AudioLimits limits;
  limits.max_seconds = hours * 3600 + 1;
  const int64_t before = rss_bytes();
  int64_t peak = before, first_window = 0, windows = 0, last_seek = 0, total_frames = 0;
  const WhisperTranscription r = t->transcribe_file(path, o, limits, [&](const WhisperProgress& p) {
    peak = std::max(peak, rss_bytes());
    if (windows == 0) first_window = peak;
    ++windows;
    last_seek = p.seek;
    total_frames = p.total_frames;
    return true;
  });
  std::filesystem::remove(path);
  EXPECT_NEAR(r.duration, hours * 3600, 1e-6);
  EXPECT_EQ(total_frames, int64_t(hours * 3600 * 100));
  EXPECT_EQ(last_seek, total_frames);
  EXPECT_GE(windows, int64_t(hours * 120));
  // The 16 kHz samples alone would be hours * 230 MB, the file itself hours * 29 MB. The first
  // window brings the encoder's scratch (attention over 1500 positions); after it, nothing grows.
  EXPECT_LT(peak - before, int64_t(48) << 20) << "RSS grew by " << ((peak - before) >> 20) << " MB";
  EXPECT_LT(peak - first_window, int64_t(8) << 20)
      << "RSS grew by " << ((peak - first_window) >> 20) << " MB after the first window";
}

}  // namespace
}  // namespace af::models
