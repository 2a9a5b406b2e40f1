// The LLaVA image encoders (CLIP / SigLIP towers, projector, LLaVA-NeXT packing) against the
// features transformers computes on the fixtures of tools/make_llava_fixtures.py.
#include <gtest/gtest.h>

#include "af/core/error.hpp"
#include "af/modalities/image.hpp"
#include "af/models/model_files.hpp"
#include "llava_test_util.hpp"
#include "models/llava_image_encoder.hpp"

namespace af {
namespace {

using test::llava_dir;

std::shared_ptr<Backend> backend() {
  return std::shared_ptr<Backend>(make_backend({Device::cpu(), 2, ""}));
}

std::unique_ptr<models::ImageEncoder> load(const io::ModelFiles& files) {
  return models::load_image_encoder(files, io::HfConfig(files.config, files.path), backend(), {});
}

class LlavaFeatures : public ::testing::TestWithParam<std::string> {};

TEST_P(LlavaFeatures, MatchTransformersAtEveryImage) {
  if (!std::filesystem::is_directory(test::testdata_dir() + "/images"))
    GTEST_SKIP() << "no ../shared/testdata/images";
  const std::string model = GetParam();
  const io::ModelFiles files = models::open_model_files(llava_dir(model));
  auto encoder = load(files);
  const nlohmann::json ref = test::llava_reference(model);
  EXPECT_EQ(encoder->output_hidden(), ref["text_hidden_size"].get<int64_t>());
  ASSERT_GE(ref["images"].size(), 5u);
  for (const nlohmann::json& entry : ref["images"]) {
    const std::string name = entry["name"];
    const modalities::Image image = modalities::Image::load(test::llava_image_path(name));
    const int64_t expected_tokens = entry["num_image_tokens"].get<int64_t>();
    EXPECT_EQ(encoder->num_image_tokens(image), expected_tokens) << name;
    const models::ImageFeatures f = encoder->encode(image);
    EXPECT_EQ(f.n_tokens, expected_tokens) << name;
    EXPECT_EQ(f.hidden, encoder->output_hidden());
    EXPECT_LE(test::max_abs_diff(f.rows, test::llava_reference_features(model, entry)), 1e-4f)
        << model << " " << name;
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, LlavaFeatures,
                         ::testing::Values("llava_clip", "llava_siglip", "llava_next"));

TEST(LlavaFeatureLayers, NegativeIndicesAndListsCountFromTheEnd) {
  using models::feature_layer_indices;
  EXPECT_EQ(feature_layer_indices(nlohmann::json(-2), 3, "f"), (std::vector<int64_t>{2}));
  EXPECT_EQ(feature_layer_indices(nlohmann::json(-1), 3, "f"), (std::vector<int64_t>{3}));
  EXPECT_EQ(feature_layer_indices(nlohmann::json(0), 3, "f"), (std::vector<int64_t>{0}));
  EXPECT_EQ(feature_layer_indices(nlohmann::json::parse("[-2, -1, 1]"), 3, "f"),
            (std::vector<int64_t>{2, 3, 1}));
  EXPECT_THROW(feature_layer_indices(nlohmann::json(-5), 3, "f"), Error);
  EXPECT_THROW(feature_layer_indices(nlohmann::json(4), 3, "f"), Error);
  EXPECT_THROW(feature_layer_indices(nlohmann::json("x"), 3, "f"), Error);
  EXPECT_THROW(feature_layer_indices(nlohmann::json::array(), 3, "f"), Error);
}

TEST(LlavaUnpad, KeepsTheImageAspectLikeTransformers) {
  // Expected values from transformers' unpad_image on the same sizes.
  const auto check = [](int64_t h, int64_t w, int64_t rows, int64_t cols,
                        models::UnpadRegion want) {
    const models::UnpadRegion r = models::unpad_region(h, w, rows, cols);
    EXPECT_EQ(r.row_begin, want.row_begin) << h << "x" << w;
    EXPECT_EQ(r.row_end, want.row_end) << h << "x" << w;
    EXPECT_EQ(r.col_begin, want.col_begin) << h << "x" << w;
    EXPECT_EQ(r.col_end, want.col_end) << h << "x" << w;
  };
  check(300, 451, 6, 12, {0, 6, 1, 11});  // narrower than the grid: columns trimmed
  check(300, 7, 9, 3, {0, 9, 1, 2});      // int(round(0.21, 7)) = 0 columns of image
  check(300, 451, 6, 6, {1, 5, 0, 6});    // wider than the grid: rows trimmed
  check(451, 300, 12, 6, {1, 11, 0, 6});
}

// A copy of a fixture folder whose config.json is edited by `edit`.
std::string edited_copy(const std::string& model, const std::string& tag,
                        void (*edit)(nlohmann::json&)) {
  namespace fs = std::filesystem;
  const fs::path dir =
      fs::temp_directory_path() / ("af_llava_" + tag + "_" + std::to_string(getpid()));
  fs::remove_all(dir);
  fs::copy(llava_dir(model), dir);
  nlohmann::json config = io::read_json_file((dir / "config.json").string());
  edit(config);
  std::ofstream(dir / "config.json") << config.dump();
  return dir.string();
}

void expect_load_error(const std::string& dir, const std::string& needle) {
  const io::ModelFiles files = models::open_model_files(dir);
  try {
    load(files);
    ADD_FAILURE() << "loaded " << dir;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
  std::filesystem::remove_all(dir);
}

TEST(LlavaBadConfig, ProjectorWidthMismatchNamesTheTensor) {
  // text hidden_size no longer what the projector maps to.
  expect_load_error(edited_copy("llava_clip", "width",
                                [](nlohmann::json& c) { c["text_config"]["hidden_size"] = 64; }),
                    "multi_modal_projector.linear_1.weight");
}

TEST(LlavaBadConfig, FeatureLayerOutOfRange) {
  expect_load_error(
      edited_copy("llava_clip", "layer", [](nlohmann::json& c) { c["vision_feature_layer"] = -7; }),
      "vision_feature_layer");
}

TEST(LlavaBadConfig, ImageSmallerThanAPatch) {
  expect_load_error(edited_copy("llava_clip", "patch",
                                [](nlohmann::json& c) { c["vision_config"]["image_size"] = 10; }),
                    "smaller than one patch");
}

TEST(LlavaBadConfig, HugeImageSizeIsRefusedBeforeAllocating) {
  expect_load_error(
      edited_copy("llava_clip", "huge",
                  [](nlohmann::json& c) { c["vision_config"]["image_size"] = 1 << 20; }),
      "exceeds 8192 pixels");
}

TEST(LlavaBadConfig, UnknownStrategyAndTower) {
  expect_load_error(
      edited_copy("llava_clip", "strategy",
                  [](nlohmann::json& c) { c["vision_feature_select_strategy"] = "mean"; }),
      "vision_feature_select_strategy");
  expect_load_error(
      edited_copy("llava_clip", "tower",
                  [](nlohmann::json& c) { c["vision_config"]["model_type"] = "dinov2"; }),
      "dinov2");
}

TEST(LlavaBadConfig, ProcessorTileSizeDisagreesWithTheTower) {
  // image_size 28 keeps the 2x2 grid (and the weights' shapes) but the processor still makes
  // 30x30 tiles: a clear error at encode, not a misread buffer.
  const std::string dir = edited_copy(
      "llava_clip", "tile", [](nlohmann::json& c) { c["vision_config"]["image_size"] = 28; });
  const io::ModelFiles files = models::open_model_files(dir);
  auto encoder = load(files);
  const modalities::Image image(4, 4, std::vector<uint8_t>(48, 128));
  try {
    encoder->encode(image);
    ADD_FAILURE() << "encoded";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("vision_config.image_size"), std::string::npos)
        << e.what();
  }
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace af

namespace af {
namespace {

// llama.cpp's converter wrote mmproj-model-f32.gguf from the same weights
// (tools/make_llava_fixtures.py): the same rows as transformers, LLaVA-NeXT's packing included.
class LlavaMmproj : public ::testing::TestWithParam<std::string> {};

TEST_P(LlavaMmproj, FeaturesEqualTransformersAtEveryImage) {
  if (!std::filesystem::is_directory(test::testdata_dir() + "/images")) GTEST_SKIP();
  const std::string model = GetParam();
  const io::ModelFiles files =
      models::open_model_files(llava_dir(model) + "/mmproj-model-f32.gguf");
  auto encoder = load(files);
  const nlohmann::json ref = test::llava_reference(model);
  EXPECT_EQ(encoder->output_hidden(), ref["text_hidden_size"].get<int64_t>());
  for (const nlohmann::json& entry : ref["images"]) {
    const std::string name = entry["name"];
    const modalities::Image image = modalities::Image::load(test::llava_image_path(name));
    EXPECT_EQ(encoder->num_image_tokens(image), entry["num_image_tokens"].get<int64_t>()) << name;
    const models::ImageFeatures f = encoder->encode(image);
    EXPECT_LE(test::max_abs_diff(f.rows, test::llava_reference_features(model, entry)), 1e-4f)
        << name;
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, LlavaMmproj, ::testing::Values("llava_clip", "llava_next"));

TEST(LlavaMmprojBad, TextGgufIsRefusedByName) {
  const std::string path = test::fixtures_dir() + "/models/llama_gqa/llama_gqa.gguf";
  const io::ModelFiles files = models::open_model_files(path);
  try {
    load(files);
    ADD_FAILURE() << "loaded a text GGUF as an mmproj";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("not an mmproj"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace af
