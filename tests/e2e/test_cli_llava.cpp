// af-cli with images on the tiny transformers-made LLaVA fixtures (tools/make_llava_fixtures.py):
// `logits --image` at every position of the expanded sequence (placeholders once per image or
// already expanded) against transformers, `run --image` greedy ids against generate, and the
// errors of a text-only model or placeholders that do not match the images.
#include <algorithm>
#include <cmath>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "test_util.hpp"

namespace af {
namespace {

struct CliRun {
  int status;
  std::string out;
};

CliRun cli(const std::string& args) {
  const test::ShellResult r = test::run_shell(std::string(AF_CLI_PATH) + " " + args + " 2>&1");
  return {r.status, r.out};
}

std::string fixture(const std::string& name) { return test::fixtures_dir() + "/models/" + name; }

nlohmann::json reference(const std::string& name) {
  return nlohmann::json::parse(test::read_text(fixture(name) + "/reference.json"));
}

// "testdata:camera.png" or a path relative to the repository.
std::string image_path(const std::string& name) {
  const std::string prefix = "testdata:";
  if (name.rfind(prefix, 0) == 0) return test::testdata_dir() + "/images/" + name.substr(9);
  return test::source_dir() + "/" + name;
}

std::string join(const std::vector<int32_t>& ids) {
  std::ostringstream s;
  for (size_t i = 0; i < ids.size(); ++i) s << (i ? " " : "") << ids[i];
  return s.str();
}

// The ids with every run of image tokens collapsed to one placeholder.
std::vector<int32_t> collapse(const std::vector<int32_t>& ids, int32_t image_token) {
  std::vector<int32_t> out;
  for (int32_t id : ids)
    if (id != image_token || out.empty() || out.back() != image_token) out.push_back(id);
  return out;
}

std::vector<std::vector<float>> parse_rows(const std::string& text) {
  std::vector<std::vector<float>> rows;
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    std::istringstream values(line);
    std::vector<float> row;
    float v;
    while (values >> v) row.push_back(v);
    rows.push_back(std::move(row));
  }
  return rows;
}

void expect_logits(const std::string& name, const nlohmann::json& prompt, bool expanded,
                   const std::string& model_args = "") {
  const nlohmann::json ref = reference(name);
  const auto image_token = ref["image_token_id"].get<int32_t>();
  std::vector<int32_t> ids = prompt["input_ids"].get<std::vector<int32_t>>();
  // Two images side by side would merge into one run; the fixtures keep text between images.
  if (!expanded) ids = collapse(ids, image_token);
  std::string args = "logits -t 2 " + (model_args.empty() ? "-m " + fixture(name) : model_args) +
                     " --ids \"" + join(ids) + "\"";
  for (const auto& image : prompt["images"]) args += " --image " + image_path(image);
  const CliRun r = cli(args);
  ASSERT_EQ(r.status, 0) << r.out;
  const std::vector<std::vector<float>> rows = parse_rows(r.out);
  const std::vector<float> want =
      test::read_f32(fixture(name) + "/" + prompt["logits_file"].get<std::string>());
  const auto n = prompt["logits_shape"][0].get<size_t>();
  const auto vocab = prompt["logits_shape"][1].get<size_t>();
  ASSERT_EQ(rows.size(), n) << name;
  double diff = 0;
  for (size_t t = 0; t < n; ++t) {
    ASSERT_EQ(rows[t].size(), vocab);
    size_t best = 0;
    for (size_t j = 0; j < vocab; ++j) {
      diff = std::max<double>(diff, std::fabs(rows[t][j] - want[t * vocab + j]));
      if (rows[t][j] > rows[t][best]) best = j;
    }
    EXPECT_EQ(best, prompt["argmax"][t].get<size_t>()) << name << " position " << t;
  }
  EXPECT_LT(diff, 1e-4) << name << " " << prompt["name"];
}

class CliLlava : public ::testing::TestWithParam<std::string> {};

TEST_P(CliLlava, LogitsAtEveryPositionEqualTransformers) {
  const nlohmann::json ref = reference(GetParam());
  ASSERT_FALSE(ref["prompts"].empty());
  for (const auto& prompt : ref["prompts"]) {
    expect_logits(GetParam(), prompt, /*expanded=*/true);
    expect_logits(GetParam(), prompt, /*expanded=*/false);
  }
}

TEST_P(CliLlava, RunGreedyIdsEqualTransformersGenerate) {
  const nlohmann::json ref = reference(GetParam());
  ASSERT_FALSE(ref["prompts"].empty());
  for (const auto& prompt : ref["prompts"]) {
    auto want = prompt["generate_ids"].get<std::vector<int32_t>>();
    std::string args = "run -t 2 -m " + fixture(GetParam()) + " --temp 0 --print-ids -n " +
                       std::to_string(want.size()) + " -p \"" + prompt["text"].get<std::string>() +
                       "\"";
    for (const auto& image : prompt["images"]) args += " --image " + image_path(image);
    const test::ShellResult r =
        test::run_shell(std::string(AF_CLI_PATH) + " " + args + " 2>/dev/null");
    ASSERT_EQ(r.status, 0) << args;
    if (!want.empty() && want.back() == 2) want.pop_back();  // EOS is not printed
    // The embedding has rows past the tokenizer's 513 ids (vocab_size 520); sessions never
    // sample such ids (no text), transformers may: compare up to the first one.
    const auto unassigned =
        std::find_if(want.begin(), want.end(), [](int32_t id) { return id > 512; });
    const auto n = static_cast<size_t>(unassigned - want.begin());
    want.erase(unassigned, want.end());
    std::istringstream got_ids(r.out);
    std::vector<int32_t> got;
    for (int32_t id; got_ids >> id && got.size() < n;) got.push_back(id);
    EXPECT_EQ(got, want) << GetParam() << " " << prompt["name"] << ": " << r.out;
  }
}

// llama.cpp's files for the same model: the text GGUF (convert_hf_to_gguf.py) and the mmproj
// GGUF (its LLaVA converter) give transformers' logits too.
TEST(CliLlavaGguf, TextGgufPlusMmprojLogitsEqualTransformers) {
  const std::string dir = fixture("llava_clip");
  const nlohmann::json ref = reference("llava_clip");
  for (const auto& prompt : ref["prompts"]) {
    expect_logits("llava_clip", prompt, /*expanded=*/false,
                  "-m " + dir + "/text-model-f32.gguf --mmproj " + dir + "/mmproj-model-f32.gguf");
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, CliLlava,
                         ::testing::Values("llava_clip", "llava_siglip", "llava_next"));

TEST(CliLlavaErrors, PlaceholdersAndImagesMustMatchAndTextModelsTakeNone) {
  const std::string image = test::testdata_dir() + "/images/camera.png";
  const std::string model = fixture("llava_clip");
  CliRun r = cli("logits -m " + model + " --ids \"1 512 7 512\" --image " + image);
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.out.find("more placeholders than images"), std::string::npos) << r.out;
  r = cli("logits -m " + model + " --ids \"1 512 7\" --image " + image + " --image " + image);
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.out.find("more images than placeholders"), std::string::npos) << r.out;
  r = cli("run -m " + test::testdata_dir() + "/models/stories260K-hf -p Once -n 2 --image " +
          image);
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.out.find("text-only"), std::string::npos) << r.out;
  r = cli("logits -m " + model + " --mmproj " + model + "/mmproj-model-f32.gguf --ids \"1 512\"" +
          " --image " + image);
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.out.find("its own vision tower"), std::string::npos) << r.out;
  r = cli("run -m " + model + " -p Once -n 2 --image " + test::source_dir() + "/README.md");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.out.find("[image]"), std::string::npos) << r.out;
}

TEST(CliLlavaErrors, ChatImageCommandAttachesToTheNextMessageAndBadImagesKeepTheChat) {
  const std::string image = test::testdata_dir() + "/images/camera.png";
  // A bad path is reported and the chat goes on; the image goes with "What is this?", whose
  // prompt is the fixture's one_image prompt without BOS (the template writes none): 32 tokens.
  const test::ShellResult chat = test::run_shell(
      "printf '/image /nonexistent.png\\n/image " + image + "\\nWhat is this?\\nAnd now?\\n' | " +
      std::string(AF_CLI_PATH) + " chat -m " + fixture("llava_clip") + " --temp 0 -n 3 2>&1");
  // The exit status says something failed (the bad path), as for any failed chat turn.
  EXPECT_EQ(chat.status, 1) << chat.out;
  EXPECT_NE(chat.out.find("/nonexistent.png"), std::string::npos) << chat.out;
  EXPECT_NE(chat.out.find("prompt 32 tokens (0 reused)"), std::string::npos) << chat.out;
  // The second turn reuses the first, image rows included.
  EXPECT_EQ(chat.out.find("(0 reused)"), chat.out.rfind("(0 reused)")) << chat.out;
  // An image to a text-only model ends that turn only.
  const test::ShellResult text = test::run_shell(
      "printf '/image " + image + "\\nHi\\nHi\\n' | " + std::string(AF_CLI_PATH) + " chat -m " +
      test::testdata_dir() + "/models/stories260K-hf --temp 0 -n 2 2>&1");
  EXPECT_EQ(text.status, 1) << text.out;
  EXPECT_NE(text.out.find("text-only"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("| prompt "), std::string::npos) << text.out;
}

// Context shift with images: the image turn's prompt is 32 tokens, 4 of them the image's rows
// (image_seq_length 4). With -c 62 the next turn needs 62 tokens + 3 for the reply, so the image
// turn must be dropped; counted as its one placeholder id (59 + 3 <= 62) it was kept, and the
// 62-token prompt then did not fit (the turn failed). Dropping the turn drops its image.
TEST(CliLlavaErrors, ChatContextShiftDropsImageTurnsWithTheirImages) {
  const std::string image = test::testdata_dir() + "/images/camera.png";
  const test::ShellResult chat = test::run_shell(
      "printf '/image " + image + "\\nWhat is this?\\nAnd now?\\nAgain?\\n' | " +
      std::string(AF_CLI_PATH) + " chat -m " + fixture("llava_clip") + " --temp 0 -n 3 -c 62 2>&1");
  EXPECT_EQ(chat.status, 0) << chat.out;
  EXPECT_NE(chat.out.find("prompt 32 tokens (0 reused)"), std::string::npos) << chat.out;
  EXPECT_NE(chat.out.find("dropped the 1 oldest turn"), std::string::npos) << chat.out;
  size_t turns = 0;
  for (size_t at = chat.out.find("| prompt "); at != std::string::npos;
       at = chat.out.find("| prompt ", at + 1))
    ++turns;
  EXPECT_EQ(turns, 3u) << chat.out;
  EXPECT_EQ(chat.out.find("error"), std::string::npos) << chat.out;
}

}  // namespace
}  // namespace af
