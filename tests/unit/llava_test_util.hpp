#pragma once
// The LLaVA fixtures of tools/make_llava_fixtures.py (tests/fixtures/models/llava_*): their
// reference.json, images and image_features.f32 rows.
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "af/io/hf_config.hpp"
#include "af/io/model_files.hpp"
#include "af/models/image_encoder.hpp"
#include "test_util.hpp"

namespace af::test {

inline std::string llava_dir(const std::string& model) {
  return fixtures_dir() + "/models/" + model;
}

inline nlohmann::json llava_reference(const std::string& model) {
  std::ifstream in(llava_dir(model) + "/reference.json");
  return nlohmann::json::parse(in);
}

// "testdata:<file>" is ../shared/testdata/images/<file>; other names are repository paths.
inline std::string llava_image_path(const std::string& name) {
  const std::string tag = "testdata:";
  if (name.rfind(tag, 0) == 0) return testdata_dir() + "/images/" + name.substr(tag.size());
  return source_dir() + "/" + name;
}

// The reference rows of one reference.json "images" entry.
inline std::vector<float> llava_reference_features(const std::string& model,
                                                   const nlohmann::json& entry) {
  const int64_t n =
      entry["features_shape"][0].get<int64_t>() * entry["features_shape"][1].get<int64_t>();
  std::vector<float> out(static_cast<size_t>(n));
  std::ifstream in(llava_dir(model) + "/image_features.f32", std::ios::binary);
  in.seekg(entry["features_offset"].get<int64_t>() * 4);
  in.read(reinterpret_cast<char*>(out.data()), n * 4);
  EXPECT_TRUE(in.good()) << model << " image_features.f32 is short";
  return out;
}

inline float max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  float m = a.size() == b.size() ? 0.0f : INFINITY;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) m = std::max(m, std::fabs(a[i] - b[i]));
  return m;
}

}  // namespace af::test
