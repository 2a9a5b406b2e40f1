#pragma once
// Shared helpers for tests: where the repository and ../shared/testdata are.
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <cstring>
#include <fstream>
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

}  // namespace af::test

// Skips loudly when the shared test data is missing (it is beside every checkout and CI run).
#define AF_REQUIRE_TESTDATA(path)                                                        \
  do {                                                                                   \
    if (!std::filesystem::exists(path)) {                                                \
      std::fprintf(stderr, "\n*** SKIPPED: test data %s is missing (set AF_TESTDATA) ***\n", \
                   std::string(path).c_str());                                           \
      GTEST_SKIP() << "missing test data " << (path);                                    \
    }                                                                                    \
  } while (0)
