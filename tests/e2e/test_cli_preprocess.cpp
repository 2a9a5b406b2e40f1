// af-cli preprocess: the output contract (shape line, one line per row of the last dimension,
// %.9g floats that round-trip float32) and its values against transformers' PIL backend
// (tests/fixtures/images, from tools/make_image_fixtures.py); bad input exits 1 with the message.
#include <sstream>

#include <nlohmann/json.hpp>

#include "test_util.hpp"

namespace af {
namespace {

std::string images_dir() { return test::fixtures_dir() + "/images"; }

struct Parsed {
  std::vector<int64_t> shape;
  std::vector<float> values;
  size_t rows = 0;
  bool rows_ok = true;
};

Parsed parse_output(const std::string& out) {
  Parsed p;
  std::istringstream in(out);
  std::string line;
  std::getline(in, line);
  std::istringstream shape(line);
  for (int64_t d; shape >> d;) p.shape.push_back(d);
  while (std::getline(in, line)) {
    std::istringstream row(line);
    size_t n = 0;
    for (std::string tok; row >> tok; ++n) p.values.push_back(std::strtof(tok.c_str(), nullptr));
    p.rows_ok = p.rows_ok && !p.shape.empty() && n == size_t(p.shape.back());
    ++p.rows;
  }
  return p;
}

const nlohmann::json& find_case(const nlohmann::json& cases, const std::string& config,
                                const std::string& file) {
  for (const auto& c : cases) {
    if (c["config"] == config && c["file"] == file) return c;
  }
  throw std::runtime_error("no fixture case " + config + " " + file);
}

void check_against_fixture(const std::string& config, const std::string& file) {
  SCOPED_TRACE(config + " " + file);
  const auto cases = nlohmann::json::parse(test::read_text(images_dir() + "/pixel_values.json"));
  const std::vector<float> samples = test::read_f32(images_dir() + "/pixel_values.f32");
  const auto& c = find_case(cases, config, file);
  const test::ShellResult r =
      test::run_shell(std::string(AF_CLI_PATH) + " preprocess -m '" + images_dir() + "/configs/" +
                      config + "' --image '" + images_dir() + "/inputs/" + file + "'");
  ASSERT_EQ(r.status, 0);
  const Parsed p = parse_output(r.out);
  ASSERT_EQ(p.shape, c["shape"].get<std::vector<int64_t>>());
  EXPECT_TRUE(p.rows_ok);
  size_t total = 1;
  for (int64_t d : p.shape) total *= size_t(d);
  ASSERT_EQ(p.values.size(), total);
  EXPECT_EQ(p.rows, total / size_t(p.shape.back()));
  const size_t stride = c["stride"], offset = c["offset"], count = c["count"];
  for (size_t i = 0; i < count; ++i) {
    ASSERT_EQ(p.values[i * stride], samples[offset + i]) << "sample " << i;  // %.9g round-trips
  }
}

TEST(CliPreprocess, ClipOutputMatchesTransformers) {
  check_against_fixture("clip336", "odd_641x479.jpg");
}

TEST(CliPreprocess, AnyresShapeHasTileDimension) {
  check_against_fixture("llava_next", "odd_641x479.png");
}

TEST(CliPreprocess, BadInputExitsOneWithMessage) {
  test::TempFolder dir("af_cli_preprocess");
  const std::string err = (dir / "err").string();
  const test::ShellResult r = test::run_shell(std::string(AF_CLI_PATH) + " preprocess -m '" +
                                              images_dir() + "/configs/clip224' --image '" +
                                              test::source_dir() + "/README.md' 2>'" + err + "'");
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(r.out.empty());
  EXPECT_NE(test::read_text(err).find("[image]"), std::string::npos) << test::read_text(err);
  EXPECT_NE(test::read_text(err).find("README.md: not an image"), std::string::npos);
}

}  // namespace
}  // namespace af
