// af-cli as other tools use it: `logits` output format and `inspect`, on stories260K.
#include <cmath>
#include <sstream>

#include "test_util.hpp"

namespace af {
namespace {

struct CliRun {
  int status;
  std::string out;
};

CliRun run(const std::string& args) {
  const std::string cmd = std::string(AF_CLI_PATH) + " " + args + " 2>/dev/null";
  FILE* pipe = popen(cmd.c_str(), "r");
  std::string out;
  char buf[65536];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, pipe)) > 0) out.append(buf, n);
  int status = pclose(pipe);
  return {WEXITSTATUS(status), out};
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

}  // namespace
}  // namespace af
