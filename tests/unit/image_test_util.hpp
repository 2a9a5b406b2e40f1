#pragma once
// Paths of the image fixtures (tests/fixtures/images, written by tools/make_image_fixtures.py) and
// of the shared images in ../shared/testdata/images.
#include <filesystem>
#include <string>

#include "test_util.hpp"

namespace af::test {

inline std::string image_fixtures_dir() { return fixtures_dir() + "/images"; }

// The path of a fixture entry: "shared" entries live in AF_TESTDATA/images, "inputs" in the repo.
inline std::string image_path(const std::string& where, const std::string& file) {
  return where == "shared" ? testdata_dir() + "/images/" + file
                           : image_fixtures_dir() + "/inputs/" + file;
}

inline bool shared_images_present() {
  return std::filesystem::is_directory(testdata_dir() + "/images");
}

}  // namespace af::test
