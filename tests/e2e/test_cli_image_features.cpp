// af-cli image-features: the output contract (one line per image token, hidden_size %.9g floats
// each, images in the order given) and its values against transformers' get_image_features on
// the LLaVA fixtures (tools/make_llava_fixtures.py); bad input exits 1 with the message.
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "test_util.hpp"

namespace af {
namespace {

std::string model_dir(const std::string& m) { return test::fixtures_dir() + "/models/" + m; }

std::string image_path(const std::string& name) {
  const std::string tag = "testdata:";
  if (name.rfind(tag, 0) == 0) return test::testdata_dir() + "/images/" + name.substr(tag.size());
  return test::source_dir() + "/" + name;
}

// Rows of floats; `widths_ok` is false when a line's count differs from `hidden`.
std::vector<std::vector<float>> parse_rows(const std::string& out, size_t hidden, bool& widths_ok) {
  std::vector<std::vector<float>> rows;
  std::istringstream in(out);
  widths_ok = true;
  for (std::string line; std::getline(in, line);) {
    std::istringstream row(line);
    std::vector<float> v;
    for (std::string tok; row >> tok;) v.push_back(std::strtof(tok.c_str(), nullptr));
    widths_ok = widths_ok && v.size() == hidden;
    rows.push_back(std::move(v));
  }
  return rows;
}

const nlohmann::json& find_image(const nlohmann::json& ref, const std::string& name) {
  for (const auto& e : ref["images"]) {
    if (e["name"] == name) return e;
  }
  throw std::runtime_error("no fixture image " + name);
}

// Runs image-features on `images` of `model` and checks every row against image_features.f32.
void check_model(const std::string& model, const std::vector<std::string>& images) {
  SCOPED_TRACE(model);
  const auto ref = nlohmann::json::parse(test::read_text(model_dir(model) + "/reference.json"));
  const std::vector<float> all = test::read_f32(model_dir(model) + "/image_features.f32");
  std::string cmd = std::string(AF_CLI_PATH) + " image-features -t 2 -m '" + model_dir(model) + "'";
  for (const auto& name : images) cmd += " --image '" + image_path(name) + "'";
  const test::ShellResult r = test::run_shell(cmd);
  ASSERT_EQ(r.status, 0);
  const size_t hidden = ref["text_hidden_size"].get<size_t>();
  bool widths_ok = false;
  const auto rows = parse_rows(r.out, hidden, widths_ok);
  EXPECT_TRUE(widths_ok);
  size_t row = 0;
  float worst = 0;
  for (const auto& name : images) {
    const auto& e = find_image(ref, name);
    const size_t n = e["num_image_tokens"].get<size_t>(), offset = e["features_offset"];
    ASSERT_GE(rows.size(), row + n) << name;
    for (size_t t = 0; t < n; ++t, ++row) {
      for (size_t i = 0; i < hidden && i < rows[row].size(); ++i) {
        worst = std::max(worst, std::fabs(rows[row][i] - all[offset + t * hidden + i]));
      }
    }
  }
  EXPECT_EQ(rows.size(), row);
  EXPECT_LE(worst, 1e-4f);
}

TEST(CliImageFeatures, LlavaClipTwoImagesMatchTransformers) {
  if (!std::filesystem::is_directory(test::testdata_dir() + "/images")) GTEST_SKIP();
  check_model("llava_clip",
              {"testdata:chelsea.jpg", "tests/fixtures/images/inputs/tall_7x300.jpg"});
}

TEST(CliImageFeatures, LlavaNextUnpaddedRowsMatchTransformers) {
  if (!std::filesystem::is_directory(test::testdata_dir() + "/images")) GTEST_SKIP();
  check_model("llava_next",
              {"testdata:llama1-logo.png", "tests/fixtures/images/inputs/odd_641x479.png"});
}

TEST(CliImageFeatures, SiglipListFeatureLayersMatchTransformers) {
  if (!std::filesystem::is_directory(test::testdata_dir() + "/images")) GTEST_SKIP();
  check_model("llava_siglip", {"testdata:rocket.jpg"});
}

TEST(CliImageFeatures, BadInputExitsOneWithTheMessage) {
  const std::string err =
      std::filesystem::temp_directory_path() / ("af_imgfeat_err_" + std::to_string(getpid()));
  const std::string cli =
      std::string(AF_CLI_PATH) + " image-features -m '" + model_dir("llava_clip") + "' --image ";
  test::ShellResult r =
      test::run_shell(cli + "'" + test::source_dir() + "/README.md' 2>'" + err + "'");
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(test::read_text(err).find("not an image"), std::string::npos) << test::read_text(err);
  // A text-only model has no vision tower.
  r = test::run_shell(std::string(AF_CLI_PATH) + " image-features -m '" + model_dir("qwen2") +
                      "' --image '" + test::source_dir() +
                      "/tests/fixtures/images/inputs/rgb.bmp' 2>'" + err + "'");
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(test::read_text(err).find("vision_config"), std::string::npos) << test::read_text(err);
  // An mmproj whose projector width is not the text model's hidden size (qwen2: 64, not 32).
  r = test::run_shell(std::string(AF_CLI_PATH) + " image-features -m '" + model_dir("qwen2") +
                      "' --mmproj '" + model_dir("llava_clip") +
                      "/mmproj-model-f32.gguf' --image '" + test::source_dir() +
                      "/tests/fixtures/images/inputs/rgb.bmp' 2>'" + err + "'");
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(test::read_text(err).find("does not belong to this model"), std::string::npos)
      << test::read_text(err);
  std::filesystem::remove(err);
}

TEST(CliImageFeatures, MmprojEqualsTheHfFolder) {
  const std::string img = test::source_dir() + "/tests/fixtures/images/inputs/odd_641x479.png";
  const std::string cli = std::string(AF_CLI_PATH) + " image-features -t 2 -m '" +
                          model_dir("llava_clip") + "' --image '" + img + "'";
  const test::ShellResult hf = test::run_shell(cli);
  const test::ShellResult gguf =
      test::run_shell(cli + " --mmproj '" + model_dir("llava_clip") + "/mmproj-model-f32.gguf'");
  ASSERT_EQ(hf.status, 0);
  ASSERT_EQ(gguf.status, 0);
  bool ok_a = false, ok_b = false;
  const auto a = parse_rows(hf.out, 32, ok_a), b = parse_rows(gguf.out, 32, ok_b);
  ASSERT_EQ(a.size(), 4u);
  ASSERT_EQ(b.size(), a.size());
  float worst = 0;
  for (size_t r = 0; r < a.size(); ++r) {
    for (size_t i = 0; i < a[r].size() && i < b[r].size(); ++i) {
      worst = std::max(worst, std::fabs(a[r][i] - b[r][i]));
    }
  }
  EXPECT_TRUE(ok_a && ok_b);
  EXPECT_LE(worst, 1e-4f);
}

}  // namespace
}  // namespace af
