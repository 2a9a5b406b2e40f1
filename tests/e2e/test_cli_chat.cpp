// af-cli run's sampling / stop flags and af-cli chat from a pipe, on stories260K.
#include <cstdio>

#include "test_util.hpp"

namespace af {
namespace {

struct Result {
  int status;
  std::string out;  // stdout and, with merge_stderr, stderr
};

Result shell(const std::string& cmd) {
  const test::ShellResult r = test::run_shell(cmd);
  return {r.status, r.out};
}

std::string cli() { return AF_CLI_PATH; }
std::string hf() { return test::testdata_dir() + "/models/stories260K-hf"; }

TEST(CliChat, PipedConversationStreamsRepliesAndResets) {
  AF_REQUIRE_TESTDATA(hf());
  const Result r = shell("printf 'Tell me a story.\\n/reset\\nAnother one.\\n' | " + cli() +
                         " chat -m " + hf() + " --temp 0 -n 8 2>&1");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("using ChatML"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("[history cleared]"), std::string::npos) << r.out;
  // Two replies, each followed by its stats line on stderr.
  size_t replies = 0;
  for (size_t at = r.out.find(" | prompt "); at != std::string::npos;
       at = r.out.find(" | prompt ", at + 1))
    ++replies;
  EXPECT_EQ(replies, 2u) << r.out;
}

TEST(CliChat, SecondTurnReusesTheCache) {
  AF_REQUIRE_TESTDATA(hf());
  const Result r = shell("printf 'Tell me a story.\\nAnd then?\\n' | " + cli() + " chat -m " +
                         hf() + " --temp 0 -n 6 2>&1 >/dev/null");
  ASSERT_EQ(r.status, 0) << r.out;
  const size_t second = r.out.rfind("[af-cli chat] ");
  ASSERT_NE(second, std::string::npos) << r.out;
  const std::string line = r.out.substr(second, r.out.find('\n', second) - second);
  EXPECT_EQ(line.find("(0 reused)"), std::string::npos) << line;
}

TEST(CliChat, TemplateLimitFlagsBoundTheRendering) {
  AF_REQUIRE_TESTDATA(hf());
  const Result r = shell("printf 'Tell me a story.\\n' | " + cli() + " chat -m " + hf() +
                         " --temp 0 -n 4 --template-max-steps 5 2>&1");
  EXPECT_NE(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("TemplateLimits::max_steps"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find(" | prompt "), std::string::npos) << r.out;  // no reply
}

TEST(CliRun, StopStringIsNotPrinted) {
  AF_REQUIRE_TESTDATA(hf());
  // The greedy continuation is ", there was a little girl named Lily. ..."
  const Result r = shell(cli() + " run -m " + hf() +
                         " -p 'Once upon a time' -n 48 --temp 0 --stop 'girl' 2>/dev/null");
  ASSERT_EQ(r.status, 0);
  EXPECT_EQ(r.out, ", there was a little \n");
}

TEST(CliRun, SamplingFlagsAreAcceptedAndSeeded) {
  AF_REQUIRE_TESTDATA(hf());
  const std::string args = " run -m " + hf() +
                           " -p 'Once upon a time' -n 24 --temp 0.9 --top-k 30 --top-p 0.9 "
                           "--min-p 0.02 --typical-p 0.95 --repeat-penalty 1.1 --repeat-last-n 32 "
                           "--presence-penalty 0.2 --frequency-penalty 0.1 --seed 42 --print-ids";
  const Result a = shell(cli() + args + " -t 1 2>/dev/null");
  const Result b = shell(cli() + args + " -t 2 2>/dev/null");
  ASSERT_EQ(a.status, 0);
  EXPECT_EQ(a.out, b.out);
  EXPECT_FALSE(a.out.empty());
}

TEST(CliRun, BadArgumentsFailWithAMessage) {
  AF_REQUIRE_TESTDATA(hf());
  // Usage errors (exit 2) name the flags typed (test_cli_habits.cpp has the rest).
  Result r = shell(cli() + " run -m " + hf() + " -p Hi -n 0 2>&1");
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.out.find("-n/--n-predict"), std::string::npos) << r.out;
  r = shell(cli() + " run -m " + hf() + " -p Hi --top-p 0 2>&1");
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.out.find("--top-p"), std::string::npos) << r.out;
  r = shell(cli() + " run -m /nonexistent -p Hi 2>&1");
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.out.find("/nonexistent"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace af
