// MiniCPMVImageProcessor against OpenBMB's image_processing_minicpmv.py
// (tools/make_minicpmv_fixtures.py processor): the slice grid, tgt_sizes, every piece's pixel
// values bit for bit (SHA-256 of the float32 values), the prompt placeholder; and clear errors for
// bad configs and sizes.
#include <openssl/evp.h>

#include <nlohmann/json.hpp>

#include "af/core/error.hpp"
#include "af/modalities/minicpmv_processor.hpp"
#include "image_test_util.hpp"

namespace af::modalities {
namespace {

std::string sha256_hex(const float* values, size_t n) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_Digest(values, n * sizeof(float), digest, &length, EVP_sha256(), nullptr);
  std::string hex;
  char byte[3];
  for (unsigned int i = 0; i < length; ++i) {
    std::snprintf(byte, sizeof(byte), "%02x", digest[i]);
    hex += byte;
  }
  return hex;
}

std::string dir() { return test::fixtures_dir() + "/minicpmv"; }

// HF's per-piece arrays [3, p, n_i * p] back out of our concatenation [3, p, N * p].
std::vector<float> hf_order(const PixelValues& pv) {
  const int64_t p = pv.shape[1], row = pv.shape[2];
  std::vector<float> out;
  out.reserve(pv.data.size());
  int64_t offset = 0;
  for (size_t i = 0; i < pv.tgt_sizes.size(); i += 2) {
    const int64_t len = pv.tgt_sizes[i] * pv.tgt_sizes[i + 1] * p;
    for (int64_t r = 0; r < 3 * p; ++r) {
      const float* src = pv.data.data() + r * row + offset;
      out.insert(out.end(), src, src + len);
    }
    offset += len;
  }
  return out;
}

TEST(MiniCPMVProcessor, PiecesEqualOpenBMB) {
  const nlohmann::json cases = nlohmann::json::parse(test::read_text(dir() + "/processor.json"));
  ASSERT_GE(cases["cases"].size(), 7u);
  int checked = 0;
  for (const auto& c : cases["cases"]) {
    const std::string where = c["where"], file = c["file"], config = c["config"];
    if (where == "shared" && !test::shared_images_present()) continue;
    SCOPED_TRACE(config + " " + file);
    const auto processor = ImageProcessor::load(dir() + "/configs/" + config);
    const auto& mini = dynamic_cast<const MiniCPMVImageProcessor&>(*processor);
    const Image image = Image::load(test::image_path(where, file));
    const PixelValues pv = processor->preprocess(image);
    std::vector<int64_t> tgt;
    for (const auto& s : c["tgt_sizes"]) tgt.insert(tgt.end(), s.begin(), s.end());
    ASSERT_EQ(pv.tgt_sizes, tgt);
    const auto grid = minicpmv_slice_grid(mini.minicpmv_config(), image.width(), image.height());
    if (c["grid"].is_null()) {
      EXPECT_FALSE(grid.has_value());
    } else {
      ASSERT_TRUE(grid.has_value());
      EXPECT_EQ(grid->first, c["grid"][0].get<int>());
      EXPECT_EQ(grid->second, c["grid"][1].get<int>());
    }
    const std::vector<float> values = hf_order(pv);
    ASSERT_EQ(values.size(), pv.data.size());
    size_t start = 0;
    for (size_t i = 0; i < c["shapes"].size(); ++i) {  // each piece's first values
      const auto first = c["first"][i].get<std::vector<float>>();
      for (size_t j = 0; j < first.size(); ++j) EXPECT_EQ(values[start + j], first[j]) << i;
      const auto shape = c["shapes"][i].get<std::vector<int64_t>>();
      start += size_t(shape[0] * shape[1] * shape[2]);
    }
    EXPECT_EQ(start, values.size());
    EXPECT_EQ(sha256_hex(values.data(), values.size()), c["sha256"].get<std::string>());
    EXPECT_EQ(minicpmv_placeholder(mini.minicpmv_config(), image.width(), image.height(), 0),
              c["placeholder"].get<std::string>());
    ++checked;
  }
  EXPECT_GE(checked, 4);
  if (!test::shared_images_present()) GTEST_SKIP() << "shared images absent (AF_TESTDATA)";
}

// The HF processor fails on a 1x1 image (it reads the (1, 1, 3) array as channels-first); ours
// upscales it to the one scale x scale overview as it does every small image.
TEST(MiniCPMVProcessor, OnePixelImageBecomesOneOverview) {
  const auto processor = ImageProcessor::load(dir() + "/configs/v2_6");
  const PixelValues pv = processor->preprocess(Image(1, 1, {10, 20, 30}));
  EXPECT_EQ(pv.tgt_sizes, (std::vector<int64_t>{32, 32}));
  EXPECT_EQ(pv.shape, (std::vector<int64_t>{3, 14, 32 * 32 * 14}));
  EXPECT_FLOAT_EQ(pv.data[0], (10.0f / 255.0f - 0.5f) / 0.5f);
}

TEST(MiniCPMVProcessor, BadConfigNamesTheField) {
  const char* bad[] = {
      R"({"image_processor_type": "MiniCPMVImageProcessor", "max_slice_nums": 0})",
      R"({"image_processor_type": "MiniCPMVImageProcessor", "scale_resolution": -4})",
      R"({"image_processor_type": "MiniCPMVImageProcessor", "patch_size": "14"})",
      R"({"image_processor_type": "MiniCPMVImageProcessor", "norm_std": [0.5, 0, 0.5]})",
      R"({"image_processor_type": "MiniCPMVImageProcessor", "im_start": ""})"};
  const char* fields[] = {"max_slice_nums", "scale_resolution", "patch_size", "norm_std",
                          "im_start"};
  for (size_t i = 0; i < std::size(bad); ++i) {
    try {
      ImageProcessor::from_json(bad[i], "pp.json");
      ADD_FAILURE() << bad[i];
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(fields[i]), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("pp.json"), std::string::npos) << e.what();
    }
  }
}

// A config whose pieces would hold millions of patches is refused before pixels are allocated.
TEST(MiniCPMVProcessor, TooManyPatchesIsAClearError) {
  const auto processor = ImageProcessor::from_json(
      R"({"image_processor_type": "MiniCPMVImageProcessor", "scale_resolution": 4096,
          "patch_size": 1})",
      "big.json");
  try {
    processor->preprocess(Image(2, 2, std::vector<uint8_t>(12, 7)));
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("patches"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace af::modalities
