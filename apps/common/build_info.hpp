#pragma once
// What `af-cli --version` and `af-server --version` print (apps/common/CMakeLists.txt fills it).
#include <string>

namespace af::apps {

// "<program> <version> (commit <sha>, <build type>, kernels: scalar avx2 ...)", one line.
std::string version_line(const char* program);

}  // namespace af::apps
