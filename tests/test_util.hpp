#pragma once
// Shared helpers for tests: where the repository and ../shared/testdata are.
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace af::test {

inline std::string source_dir() {
  if (const char* env = std::getenv("AF_SOURCE_DIR")) return env;
#ifdef AF_SOURCE_DIR
  return AF_SOURCE_DIR;
#else
  return ".";
#endif
}

// AF_TESTDATA, else ../shared/testdata beside the repository root.
inline std::string testdata_dir() {
  if (const char* env = std::getenv("AF_TESTDATA")) return env;
  return source_dir() + "/../shared/testdata";
}

// n uniform floats in [lo, hi), reproducible from seed.
inline std::vector<float> random_floats(size_t n, float lo, float hi, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (float& f : v) f = dist(rng);
  return v;
}

// Time bounds in tests are set for a native Release build on a busy 2-core machine. Slower
// runs scale them: sanitizer builds by 5 on their own, and AF_TEST_TIME_SCALE (scripts/test.sh
// sets it for the runs on emulated CPUs under qemu-user, whose code is many times slower).
inline double time_scale() {
  double scale = 1;
  if (const char* env = std::getenv("AF_TEST_TIME_SCALE")) scale = std::max(1.0, std::atof(env));
#if defined(__SANITIZE_ADDRESS__)
  scale *= 5;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
  scale *= 5;
#endif
#endif
  return scale;
}

inline std::string fixtures_dir() { return source_dir() + "/tests/fixtures"; }

inline std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

inline std::vector<float> read_f32(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<float> values(bytes.size() / sizeof(float));
  std::memcpy(values.data(), bytes.data(), values.size() * sizeof(float));
  return values;
}

// llama.cpp tokenizer vectors: .inp holds texts separated by "\n__ggml_vocab_test__\n", .out
// one line of space-separated ids per text.
struct VocabCase {
  std::string text;
  std::vector<int32_t> ids;
};

inline std::vector<VocabCase> read_vocab_vectors(const std::string& inp_path,
                                                 const std::string& out_path) {
  const std::string inp = read_text(inp_path);
  const std::string out = read_text(out_path);
  const std::string sep = "\n__ggml_vocab_test__\n";
  std::vector<VocabCase> cases;
  for (size_t pos = 0; pos < inp.size();) {
    const size_t end = inp.find(sep, pos);
    if (end == std::string::npos) break;
    cases.push_back({inp.substr(pos, end - pos), {}});
    pos = end + sep.size();
  }
  size_t line_start = 0;
  for (VocabCase& c : cases) {
    const size_t line_end = out.find('\n', line_start);
    EXPECT_NE(line_end, std::string::npos) << out_path << " has fewer lines than tests";
    if (line_end == std::string::npos) break;
    std::istringstream line(out.substr(line_start, line_end - line_start));
    int32_t id;
    while (line >> id) c.ids.push_back(id);
    line_start = line_end + 1;
  }
  return cases;
}

// A command line's exit status and standard output (the command runs under /bin/sh).
struct ShellResult {
  int status;
  std::string out;
};

inline ShellResult run_shell(const std::string& command) {
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return {-1, ""};
  std::string out;
  char buf[65536];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, pipe)) > 0) out.append(buf, n);
  const int status = pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

// A fresh folder under the system temp dir (prefix, pid and a counter in its name), removed with
// everything in it when the object goes.
class TempFolder {
 public:
  explicit TempFolder(const std::string& prefix = "af_test") {
    path_ = std::filesystem::temp_directory_path() /
            (prefix + "_" + std::to_string(::getpid()) + "_" + std::to_string(counter_++));
    std::filesystem::create_directories(path_);
  }
  ~TempFolder() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempFolder(const TempFolder&) = delete;
  TempFolder& operator=(const TempFolder&) = delete;
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  static inline int counter_ = 0;
  std::filesystem::path path_;
};

// Two logit matrices [rows, vocab] compared: the largest absolute difference, the largest
// |reference logit| (for scale) and the rows whose arg-max agrees.
struct LogitDiff {
  double max_abs = 0;
  double ref_range = 0;
  int64_t top1_agree = 0;
  int64_t rows = 0;
};

inline LogitDiff compare_logits(const std::vector<float>& ours, const std::vector<float>& ref,
                                int64_t vocab) {
  LogitDiff d;
  d.rows = static_cast<int64_t>(ref.size()) / vocab;
  for (int64_t r = 0; r < d.rows; ++r) {
    const float* a = ours.data() + r * vocab;
    const float* b = ref.data() + r * vocab;
    for (int64_t j = 0; j < vocab; ++j) {
      d.max_abs = std::max<double>(d.max_abs, std::fabs(a[j] - b[j]));
      d.ref_range = std::max<double>(d.ref_range, std::fabs(b[j]));
    }
    d.top1_agree += (std::max_element(a, a + vocab) - a) == (std::max_element(b, b + vocab) - b);
  }
  return d;
}

}  // namespace af::test

// Skips loudly when the shared test data is missing (it is beside every checkout and CI run).
#define AF_REQUIRE_TESTDATA(path)                                                            \
  do {                                                                                       \
    if (!std::filesystem::exists(path)) {                                                    \
      std::fprintf(stderr, "\n*** SKIPPED: test data %s is missing (set AF_TESTDATA) ***\n", \
                   std::string(path).c_str());                                               \
      GTEST_SKIP() << "missing test data " << (path);                                        \
    }                                                                                        \
  } while (0)
