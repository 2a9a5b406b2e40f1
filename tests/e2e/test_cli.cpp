// af-cli as other tools use it: `logits` output format and `inspect`, on stories260K.
#include <cmath>
#include <fstream>
#include <sstream>
#include <string>

#include <unistd.h>

#include <nlohmann/json.hpp>

#include "test_util.hpp"

namespace af {
namespace {

struct CliRun {
  int status;
  std::string out;
};

CliRun run(const std::string& args) {
  const test::ShellResult r =
      test::run_shell(std::string(AF_CLI_PATH) + " " + args + " 2>/dev/null");
  return {r.status, r.out};
}

TEST(Cli, LogitsPrintsOneLinePerPositionWithFullPrecision) {
  const std::string gguf = test::testdata_dir() + "/models/stories260K/stories260K.gguf";
  AF_REQUIRE_TESTDATA(gguf);
  CliRun r = run("logits -m " + gguf + " --ids \"1 403 407 261 378\"");
  ASSERT_EQ(r.status, 0);
  std::istringstream lines(r.out);
  std::string line;
  std::vector<std::vector<double>> rows;
  while (std::getline(lines, line)) {
    std::istringstream values(line);
    std::vector<double> row;
    double v;
    while (values >> v) row.push_back(v);
    rows.push_back(row);
  }
  ASSERT_EQ(rows.size(), 5u);
  for (const auto& row : rows) ASSERT_EQ(row.size(), 512u);
  // The last line holds the logits after the prompt: top-1 432 at 17.799398 (reference file).
  EXPECT_NEAR(rows[4][432], 17.799398, 1e-4);
  EXPECT_NEAR(rows[4][383], 14.281259, 1e-4);
  // At least 7 significant digits are printed.
  std::istringstream last(r.out.substr(r.out.rfind('\n', r.out.size() - 2) + 1));
  std::string first_value;
  last >> first_value;
  size_t digits = 0;
  for (char c : first_value) digits += std::isdigit(static_cast<unsigned char>(c)) ? 1 : 0;
  EXPECT_GE(digits, 7u) << first_value;
}

TEST(Cli, InspectListsArchitectureAndTensors) {
  const std::string gguf = test::testdata_dir() + "/models/stories260K/stories260K.gguf";
  AF_REQUIRE_TESTDATA(gguf);
  CliRun r = run("inspect -m " + gguf);
  ASSERT_EQ(r.status, 0);
  EXPECT_NE(r.out.find("architecture: LlamaForCausalLM"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("tensors: 48"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("model.layers.4.mlp.down_proj.weight"), std::string::npos);
  EXPECT_NE(r.out.find("[64, 172]"), std::string::npos);
}

TEST(Cli, ErrorsExitNonZeroWithAMessage) {
  EXPECT_EQ(run("logits -m /nonexistent/model.gguf --ids \"1 2\"").status, 1);
  const std::string gguf = test::testdata_dir() + "/models/stories260K/stories260K.gguf";
  AF_REQUIRE_TESTDATA(gguf);
  EXPECT_EQ(run("logits -m " + gguf + " --ids \"1 x\"").status, 1);
  EXPECT_EQ(run("logits -m " + gguf + " --ids \"1 99999\"").status, 1);
  EXPECT_EQ(run("logits -m " + gguf).status, 2);  // --ids is required
}

// run --json-schema: sampled output (temperature 1) is a whole document of the schema's shape;
// a refused keyword stops before loading with an error naming the file and the keyword.
TEST(Cli, RunJsonSchemaGivesAValidDocument) {
  const std::string gguf = test::testdata_dir() + "/models/stories260K/stories260K.gguf";
  AF_REQUIRE_TESTDATA(gguf);
  const std::string schema = ::testing::TempDir() + "af_cli_schema.json";
  {
    std::ofstream(schema) << R"({"type": "object", "properties": {"n": {"type": "integer",
        "minimum": 1, "maximum": 9}, "ok": {"type": "boolean"}}, "required": ["n", "ok"]})";
  }
  for (int seed : {1, 2, 3}) {
    CliRun r = run("run -m " + gguf + " -p Once --temp 1 -n 200 -s " + std::to_string(seed) +
                   " --json-schema " + schema);
    ASSERT_EQ(r.status, 0);
    const auto doc = nlohmann::json::parse(r.out);
    EXPECT_TRUE(doc["ok"].is_boolean()) << r.out;
    EXPECT_GE(doc["n"].get<int>(), 1);
    EXPECT_LE(doc["n"].get<int>(), 9);
  }
  { std::ofstream(schema) << R"({"type": "string", "pattern": "^a"})"; }
  const test::ShellResult bad = test::run_shell(std::string(AF_CLI_PATH) + " run -m " + gguf +
                                                " --json-schema " + schema + " 2>&1");
  EXPECT_NE(bad.status, 0);
  EXPECT_NE(bad.out.find("unsupported keyword 'pattern' at #"), std::string::npos) << bad.out;
  EXPECT_NE(bad.out.find(schema), std::string::npos) << bad.out;
}

}  // namespace
}  // namespace af

namespace af {
namespace {

std::string stories_file(const std::string& name) {
  return test::testdata_dir() + "/models/stories260K/" + name;
}

TEST(CliRun, GreedyGenerationMatchesReferenceForGgufAndHf) {
  AF_REQUIRE_TESTDATA(stories_file("stories260K.gguf"));
  const std::string text = test::read_text(stories_file("expected_once_upon_a_time.txt"));
  const std::string label = "greedy_generated_text: '";
  const size_t at = text.find(label) + label.size();
  const std::string expected = text.substr(at, text.find("'\n", at) - at);
  for (const std::string& model :
       {stories_file("stories260K.gguf"), test::testdata_dir() + "/models/stories260K-hf"}) {
    CliRun r = run("run -m " + model + " -p \"Once upon a time\" -n 48 --temp 0");
    ASSERT_EQ(r.status, 0) << model;
    EXPECT_EQ(r.out, expected + "\n") << model;
  }
}

TEST(CliRun, FromBosReproducesLlama2cOutput) {
  AF_REQUIRE_TESTDATA(stories_file("llama2c_run_t0_n256_output.txt"));
  // No prompt and no piped stdin (which would be the prompt): from BOS. The GGUF's trained
  // context is 128 (llama2.c ran with 512): 257 tokens need --extend-context.
  CliRun r = run("run -m " + stories_file("stories260K.gguf") +
                 " -n 256 --temp 0 -t 1 --extend-context </dev/null");
  ASSERT_EQ(r.status, 0);
  EXPECT_EQ(r.out, test::read_text(stories_file("llama2c_run_t0_n256_output.txt")));
}

TEST(CliRun, SameSeedSameOutputAtAnyThreadCount) {
  AF_REQUIRE_TESTDATA(stories_file("stories260K.gguf"));
  const std::string args = "run -m " + stories_file("stories260K.gguf") +
                           " -p \"Once upon a time\" -n 40 --temp 1.0 --seed 42 --print-ids";
  CliRun one = run(args + " -t 1");
  CliRun two = run(args + " -t 2");
  ASSERT_EQ(one.status, 0);
  EXPECT_EQ(one.out, two.out);
  EXPECT_GT(one.out.size(), 40u);
  CliRun other = run("run -m " + stories_file("stories260K.gguf") +
                     " -p \"Once upon a time\" -n 40 --temp 1.0 --seed 7 --print-ids");
  EXPECT_NE(one.out, other.out);
}

// Each case's text through `af-cli tokenize`; returns how many give exactly the expected ids.
size_t tokenize_through_cli(const std::string& vocab, const std::vector<test::VocabCase>& cases,
                            const std::string& input) {
  size_t passed = 0;
  for (const auto& c : cases) {
    { std::ofstream(input, std::ios::binary) << c.text; }
    CliRun r = run("tokenize -m " + vocab + " < " + input);
    EXPECT_EQ(r.status, 0);
    std::istringstream line(r.out);
    std::vector<int32_t> ids;
    int32_t id;
    while (line >> id) ids.push_back(id);
    EXPECT_EQ(ids, c.ids) << "text: " << c.text;
    passed += ids == c.ids;
  }
  return passed;
}

TEST(CliTokenize, LlamaCppVectorsThroughTheCli) {
  const std::string vocab = test::testdata_dir() + "/tokenizer/ggml-vocab-llama-spm.gguf";
  AF_REQUIRE_TESTDATA(vocab);
  const auto cases = test::read_vocab_vectors(vocab + ".inp", vocab + ".out");
  ASSERT_GE(cases.size(), 40u);
  const std::string input =
      testing::TempDir() + "af_tokenize_input_" + std::to_string(::getpid()) + ".txt";
  const size_t passed = tokenize_through_cli(vocab, cases, input);
  std::printf("[cli tokenize] %zu/%zu llama-spm vectors\n", passed, cases.size());
  // Round trip through detokenize for the stories260K prompt.
  { std::ofstream(input, std::ios::binary) << "1 403 407 261 378"; }
  CliRun text =
      run("detokenize -m " + stories_file("stories260K.gguf") + " --skip-special < " + input);
  ASSERT_EQ(text.status, 0);
  EXPECT_EQ(text.out, "Once upon a time");
}

// The WordPiece vocabulary (BERT bge) through the CLI: every llama.cpp vector, and
// --add-special putting [CLS] ... [SEP] around the ids; the trained WordPiece and Unigram
// tokenizer.json fixtures load and round-trip through tokenize / detokenize.
TEST(CliTokenize, WordPieceAndUnigramThroughTheCli) {
  const std::string vocab = test::testdata_dir() + "/tokenizer/ggml-vocab-bert-bge.gguf";
  AF_REQUIRE_TESTDATA(vocab);
  const auto cases = test::read_vocab_vectors(vocab + ".inp", vocab + ".out");
  ASSERT_EQ(cases.size(), 46u);
  const std::string input =
      testing::TempDir() + "af_tokenize_wpm_input_" + std::to_string(::getpid()) + ".txt";
  const size_t passed = tokenize_through_cli(vocab, cases, input);
  std::printf("[cli tokenize] %zu/%zu bert-bge vectors\n", passed, cases.size());
  { std::ofstream(input, std::ios::binary) << "Hello world"; }
  EXPECT_EQ(run("tokenize -m " + vocab + " --add-special < " + input).out, "101 7592 2088 102\n");

  const std::string models = test::source_dir() + "/tests/fixtures/tokenizer/models/";
  for (const char* name : {"wordpiece.json", "unigram.json"}) {
    { std::ofstream(input, std::ios::binary) << "hello world"; }
    CliRun ids = run("tokenize -m " + models + name + " < " + input);
    ASSERT_EQ(ids.status, 0) << name;
    { std::ofstream(input, std::ios::binary) << ids.out; }
    CliRun text = run("detokenize -m " + models + name + " < " + input);
    ASSERT_EQ(text.status, 0) << name;
    EXPECT_EQ(text.out, "hello world") << name;
  }
}

}  // namespace
}  // namespace af
