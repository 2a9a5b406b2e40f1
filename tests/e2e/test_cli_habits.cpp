// af-cli as people used to llama.cpp type it (issue 18, "CLI habits"), on stories260K: model
// paths, llama.cpp's flags, prompt sources and escapes, --stop, quantize type names, --help
// defaults, flag errors before loading, progress bars, the trained-context limit, chat's
// context shift / commands / multi-line input, --version.
#include <chrono>
#include <cstdio>
#include <fstream>
#include <regex>
#include <string>

#include "test_util.hpp"

namespace af {
namespace {

std::string cli() { return AF_CLI_PATH; }
std::string hf() { return test::testdata_dir() + "/models/stories260K-hf"; }
std::string gguf() { return test::testdata_dir() + "/models/stories260K/stories260K.gguf"; }

// stdout and stderr together, with the exit status.
test::ShellResult sh(const std::string& command) { return test::run_shell(command + " 2>&1"); }
// stdout only.
test::ShellResult out(const std::string& command) {
  return test::run_shell(command + " 2>/dev/null");
}
bool has(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}
size_t count(const std::string& text, const std::string& part) {
  size_t n = 0;
  for (size_t at = text.find(part); at != std::string::npos; at = text.find(part, at + 1)) ++n;
  return n;
}

const char kGreedy[] = " -p 'Once upon a time' -n 24 --temp 0";

TEST(CliHabits, SafetensorsFileWorksInRunTokenizeAndChat) {
  AF_REQUIRE_TESTDATA(hf());
  const std::string file = hf() + "/model.safetensors";
  const test::ShellResult folder = out(cli() + " run -m " + hf() + kGreedy);
  ASSERT_EQ(folder.status, 0);
  const test::ShellResult single = out(cli() + " run -m " + file + kGreedy);
  EXPECT_EQ(single.status, 0) << single.out;
  EXPECT_EQ(single.out, folder.out);
  const test::ShellResult ids = sh("printf 'Once upon a time' | " + cli() + " tokenize -m " + file);
  EXPECT_EQ(ids.status, 0) << ids.out;
  EXPECT_EQ(ids.out, "403 407 261 378\n");
  const test::ShellResult chat =
      sh("printf 'Hi\\n' | " + cli() + " chat -m " + file + " -n 4 --temp 0");
  EXPECT_EQ(chat.status, 0) << chat.out;
  EXPECT_TRUE(has(chat.out, " | prompt ")) << chat.out;
}

TEST(CliHabits, NonModelFileSaysUnrecognisedModelFormat) {
  const std::string readme = test::source_dir() + "/README.md";
  for (const char* command : {"run", "inspect", "tokenize"}) {
    const test::ShellResult r = sh(cli() + " " + command + " -m " + readme +
                                   (std::string(command) == "run" ? " -p Hi" : "") + " </dev/null");
    EXPECT_EQ(r.status, 1) << command << ": " << r.out;
    EXPECT_TRUE(has(r.out, "unrecognised model format")) << command << ": " << r.out;
    EXPECT_TRUE(has(r.out, "README.md")) << r.out;
    EXPECT_FALSE(has(r.out, "invalid JSON")) << r.out;
  }
}

TEST(CliHabits, HubFlagsAreRefusedWithAMessage) {
  for (const char* flag : {"-hf", "-hfr", "--hf-repo"}) {
    const test::ShellResult r = sh(cli() + " run " + flag + " Qwen/Qwen2-0.5B-GGUF -p Hi");
    EXPECT_EQ(r.status, 2) << flag << ": " << r.out;
    EXPECT_TRUE(has(r.out, "downloading from the Hub is not supported: pass a local path"))
        << flag << ": " << r.out;
    EXPECT_FALSE(has(r.out, "Usage:")) << r.out;  // not the help
  }
  // A prompt that starts like the flag is text.
  AF_REQUIRE_TESTDATA(hf());
  EXPECT_EQ(out(cli() + " run -m " + hf() + " -p -hf -n 2 --temp 0").status, 0);
}

TEST(CliHabits, GpuLayersFlagIsANoOpWithANote) {
  AF_REQUIRE_TESTDATA(hf());
  const test::ShellResult plain = out(cli() + " run -m " + hf() + kGreedy);
  for (const char* flag : {"-ngl 99", "--n-gpu-layers 99", "-ngl 0 -fa"}) {
    const test::ShellResult both = sh(cli() + " run -m " + hf() + kGreedy + " " + flag);
    EXPECT_EQ(both.status, 0) << flag << ": " << both.out;
    EXPECT_TRUE(has(both.out, plain.out.substr(0, plain.out.size() - 1))) << both.out;
    const test::ShellResult only = out(cli() + " run -m " + hf() + kGreedy + " " + flag);
    EXPECT_EQ(only.out, plain.out) << flag;
  }
  EXPECT_TRUE(has(sh(cli() + " run -m " + hf() + kGreedy + " -ngl 99").out,
                  "-ngl/--n-gpu-layers 99 ignored: this build runs on the CPU"));
}

TEST(CliHabits, NPredictMinusOneRunsToTheContextEnd) {
  AF_REQUIRE_TESTDATA(hf());
  const test::ShellResult r = test::run_shell(
      cli() + " run -m " + hf() +
      " -p 'Once upon a time' -n -1 -c 40 --ignore-eos --temp 0 --print-ids 2>&1 >/dev/null");
  ASSERT_EQ(r.status, 0) << r.out;
  // 5 prompt ids (BOS included) + 35 generated fill the 40-token context.
  EXPECT_TRUE(has(r.out, "prompt 5 tokens")) << r.out;
  EXPECT_TRUE(has(r.out, "generated 35 tokens")) << r.out;
}

TEST(CliHabits, PromptFromFileAndFromStdin) {
  AF_REQUIRE_TESTDATA(hf());
  test::TempFolder dir("af_cli_prompt");
  const std::string file = (dir / "prompt.txt").string();
  { std::ofstream(file, std::ios::binary) << "Once upon a time"; }
  const test::ShellResult by_flag = out(cli() + " run -m " + hf() + kGreedy);
  ASSERT_EQ(by_flag.status, 0);
  const std::string rest = " -n 24 --temp 0";
  EXPECT_EQ(out(cli() + " run -m " + hf() + " -f " + file + rest).out, by_flag.out);
  EXPECT_EQ(out(cli() + " run -m " + hf() + rest + " < " + file).out, by_flag.out);
  EXPECT_EQ(out("cat " + file + " | " + cli() + " run -m " + hf() + rest).out, by_flag.out);
  EXPECT_EQ(out("cat " + file + " | " + cli() + " run -m " + hf() + " -f -" + rest).out,
            by_flag.out);
  const test::ShellResult both = sh(cli() + " run -m " + hf() + " -p x -f " + file + rest);
  EXPECT_EQ(both.status, 2) << both.out;
  EXPECT_TRUE(has(both.out, "-p/--prompt and -f/--file")) << both.out;
  const test::ShellResult missing = sh(cli() + " run -m " + hf() + " -f /nonexistent.txt");
  EXPECT_EQ(missing.status, 2) << missing.out;
  EXPECT_TRUE(has(missing.out, "-f/--file '/nonexistent.txt'")) << missing.out;
}

// llama-cli processes escapes in -p by default; so does af-cli (--no-escape keeps them).
TEST(CliHabits, PromptEscapesAreProcessedByDefault) {
  AF_REQUIRE_TESTDATA(hf());
  test::TempFolder dir("af_cli_escape");
  const std::string file = (dir / "prompt.txt").string();
  { std::ofstream(file, std::ios::binary) << "Once upon a time.\nThe end"; }
  const std::string rest = " -n 12 --temp 0 --print-ids";
  const test::ShellResult real = out(cli() + " run -m " + hf() + " -f " + file + rest);
  ASSERT_EQ(real.status, 0);
  const std::string typed = " -p 'Once upon a time.\\nThe end'";
  EXPECT_EQ(out(cli() + " run -m " + hf() + typed + rest).out, real.out);
  EXPECT_EQ(out(cli() + " run -m " + hf() + typed + " -e" + rest).out, real.out);
  EXPECT_NE(out(cli() + " run -m " + hf() + typed + " --no-escape" + rest).out, real.out);
}

TEST(CliHabits, StopTakesOneValuePerFlag) {
  AF_REQUIRE_TESTDATA(hf());
  // Before, "text" was taken as a second stop string.
  const test::ShellResult r = sh(cli() + " run -m " + hf() + " --stop . text" + kGreedy);
  EXPECT_EQ(r.status, 2) << r.out;
  EXPECT_TRUE(has(r.out, "text")) << r.out;
  // The greedy continuation is ", there was a little girl named Lily. ..."
  const test::ShellResult two =
      out(cli() + " run -m " + hf() + kGreedy + " --stop Lily --stop girl");
  EXPECT_EQ(two.status, 0);
  EXPECT_EQ(two.out, ", there was a little \n");
}

TEST(CliHabits, QuantizeTakesAPositionalTypeInAnyCase) {
  AF_REQUIRE_TESTDATA(hf());
  test::TempFolder dir("af_cli_quant_names");
  const std::string a = (dir / "a.gguf").string(), b = (dir / "b.gguf").string();
  const std::string c = (dir / "c.gguf").string(), d = (dir / "d.gguf").string();
  ASSERT_EQ(out(cli() + " quantize " + hf() + " " + a + " Q8_0").status, 0);
  ASSERT_EQ(out(cli() + " quantize " + hf() + " " + b + " --type q8_0").status, 0);
  EXPECT_EQ(test::read_text(a), test::read_text(b));
  // llama-quantize's alias: Q4_K is Q4_K_M.
  ASSERT_EQ(out(cli() + " quantize " + hf() + " " + c + " Q4_K").status, 0);
  ASSERT_EQ(out(cli() + " quantize " + hf() + " " + d + " q4_k_m").status, 0);
  EXPECT_EQ(test::read_text(c), test::read_text(d));
  const test::ShellResult bad = sh(cli() + " quantize " + hf() + " " + a + " q9_9");
  EXPECT_EQ(bad.status, 2) << bad.out;
  EXPECT_TRUE(has(bad.out, "TYPE 'q9_9': unknown type (expected f32, f16")) << bad.out;
  // The same names for run --quantize (q4_k_m: every matrix to Q4_K, as q4_k).
  const std::string run = cli() + " run -m " + gguf() + kGreedy + " --print-ids --quantize ";
  const test::ShellResult upper = out(run + "Q4_K_M");
  EXPECT_EQ(upper.status, 0);
  EXPECT_EQ(upper.out, out(run + "q4_k").out);
  EXPECT_EQ(out(run + "Q8_0").out, out(run + "q8_0").out);
  const test::ShellResult unknown = sh(run + "q9_9");
  EXPECT_EQ(unknown.status, 2);
  EXPECT_TRUE(has(unknown.out, "--quantize 'q9_9': unknown type")) << unknown.out;
}

TEST(CliHabits, HelpShowsDefaults) {
  const test::ShellResult run = out(cli() + " run --help");
  EXPECT_EQ(run.status, 0);
  EXPECT_TRUE(std::regex_search(run.out, std::regex("--n-predict INT=128"))) << run.out;
  EXPECT_TRUE(std::regex_search(run.out, std::regex("--temp FLOAT=0.8"))) << run.out;
  EXPECT_TRUE(std::regex_search(run.out, std::regex("--top-k INT=40"))) << run.out;
  const test::ShellResult bench = out(cli() + " bench --help");
  EXPECT_TRUE(std::regex_search(bench.out, std::regex(R"(--n-prompt INT=\[512\])"))) << bench.out;
}

// chat's help says the default context is 4096 or the trained one if smaller; stories260K was
// trained on 512, so a 600-token message is refused (before, the context was 4096).
TEST(CliHabits, ChatContextDefaultIsWhatItsHelpSays) {
  AF_REQUIRE_TESTDATA(hf());
  EXPECT_TRUE(has(out(cli() + " chat --help").out,
                  "context length (0: 4096, or the model's trained context if smaller)"));
  std::string message;
  for (int i = 0; i < 150; ++i) message += "the cat sat. ";
  const test::ShellResult r =
      sh("printf '" + message + "\\nHi\\n' | " + cli() + " chat -m " + hf() + " -n 4 --temp 0");
  EXPECT_TRUE(has(r.out, "the context holds 512 (-c/--ctx-size)")) << r.out.substr(0, 2000);
  // The conversation went on: the next message got its reply.
  EXPECT_EQ(count(r.out, " | prompt "), 1u) << r.out.substr(0, 2000);
  EXPECT_EQ(r.status, 1);  // a turn failed
}

TEST(CliHabits, BenchPromptZeroSkipsThePrefillTest) {
  AF_REQUIRE_TESTDATA(gguf());
  const test::ShellResult r =
      sh(cli() + " bench -m " + gguf() + " -p 0 -n 4 -r 1 -t 1 --bw-mib 16");
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_TRUE(has(r.out, "pp               skipped (-p 0)")) << r.out;
  EXPECT_FALSE(has(r.out, "not in range")) << r.out;
  const test::ShellResult json =
      out(cli() + " bench -m " + gguf() + " -p 0 -n 4 -r 1 -t 1 --bw-mib 16 --json");
  EXPECT_TRUE(has(json.out, "\"pp_tokens_per_s\":null")) << json.out;
  const test::ShellResult bad = sh(cli() + " bench -m " + gguf() + " -n 0");
  EXPECT_EQ(bad.status, 2);
  EXPECT_TRUE(has(bad.out, "-n/--n-gen must be >= 1, got 0")) << bad.out;
}

// Values are checked before anything loads (the model path does not exist here) and the
// message names the flag typed, not the library's field.
TEST(CliHabits, BadValuesNameTheFlagTypedBeforeLoading) {
  struct Case {
    const char* args;
    const char* message;
  };
  const Case cases[] = {
      {"run -n 0", "-n/--n-predict must be >= 1, or -1"},
      {"run --top-p 0", "--top-p must be in (0, 1]"},
      {"run --temp -1", "--temp must be >= 0"},
      {"run -c -5", "-c/--ctx-size must be >= 0"},
      {"run --kv-type q8", "--kv-type 'q8': expected f32, f16 or q8_0"},
      {"run -ctk q4_0", "-ctk/--cache-type-k 'q4_0': expected f32, f16 or q8_0"},
      {"chat -ctv bf16", "-ctv/--cache-type-v 'bf16': expected f32, f16 or q8_0"},
      {"chat -n 0", "-n/--n-predict must be >= 1"},
      {"chat --min-p 2", "--min-p must be in [0, 1]"},
      {"run --repeat-last-n -2", "--repeat-last-n must be >= -1"},
  };
  const auto t0 = std::chrono::steady_clock::now();
  for (const Case& c : cases) {
    const test::ShellResult r = sh(cli() + " " + c.args + " -m /nonexistent/model </dev/null");
    EXPECT_EQ(r.status, 2) << c.args << ": " << r.out;
    EXPECT_TRUE(has(r.out, c.message)) << c.args << ": " << r.out;
    EXPECT_FALSE(has(r.out, "/nonexistent")) << c.args << ": " << r.out;
    EXPECT_FALSE(has(r.out, "max_tokens")) << r.out;
  }
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(),
            10 * test::time_scale());
}

// `script` runs the command on a pseudo-terminal, as a user's shell does.
bool have_script() { return test::run_shell("command -v script >/dev/null").status == 0; }

TEST(CliHabits, ProgressBarsOnlyOnATerminal) {
  AF_REQUIRE_TESTDATA(hf());
  test::TempFolder dir("af_cli_progress");
  const std::string q = cli() + " quantize " + hf() + " " + (dir / "q.gguf").string() + " q8_0";
  const std::string run = cli() + " run -m " + hf() + kGreedy;
  // Not a terminal: no bar, no control characters.
  const test::ShellResult piped = sh(run + " | cat");
  EXPECT_FALSE(has(piped.out, "loading [")) << piped.out;
  EXPECT_FALSE(has(piped.out, "\r")) << piped.out;
  EXPECT_FALSE(has(sh(q).out, "quantizing ["));
  if (!have_script()) GTEST_SKIP() << "no `script` (util-linux) for a pseudo-terminal";
  const test::ShellResult tty = test::run_shell("script -qec \"" + run + "\" /dev/null");
  EXPECT_EQ(tty.status, 0) << tty.out;
  EXPECT_TRUE(has(tty.out, "loading [")) << tty.out;
  EXPECT_TRUE(has(tty.out, "100%")) << tty.out;
  // A long prefill (~320 ids) shows a bar too, and runs in chunks without changing the output.
  test::TempFolder text_dir("af_cli_progress_text");
  const std::string text = (text_dir / "p.txt").string();
  {
    std::ofstream f(text, std::ios::binary);
    for (int i = 0; i < 35; ++i) f << "The dog ran home. ";
  }
  const std::string longer =
      cli() + " run -m " + hf() + " -f " + text + " -n 8 --temp 0 --print-ids";
  const test::ShellResult ptty = test::run_shell("script -qec \"" + longer + "\" /dev/null");
  EXPECT_TRUE(has(ptty.out, "prompt [")) << ptty.out;
  EXPECT_TRUE(has(ptty.out, "256/")) << ptty.out;
  const test::ShellResult plain_ids = out(longer);
  const test::ShellResult chunked_ids = out("AF_PROGRESS=1 " + longer);
  EXPECT_FALSE(plain_ids.out.empty());
  EXPECT_EQ(chunked_ids.out, plain_ids.out);
  const test::ShellResult qtty = test::run_shell("script -qec \"" + q + "\" /dev/null");
  EXPECT_TRUE(has(qtty.out, "quantizing [")) << qtty.out;
  EXPECT_TRUE(has(qtty.out, "blk.0.attn_q.weight q8_0 ")) << qtty.out;  // per tensor, with size
}

// A prompt past the trained context (512) was silently run with a stretched context; now it is
// refused quickly unless --extend-context asks for it.
TEST(CliHabits, PromptBeyondTheTrainedContextIsRefused) {
  AF_REQUIRE_TESTDATA(hf());
  test::TempFolder dir("af_cli_long");
  const std::string file = (dir / "long.txt").string();
  {
    std::ofstream f(file, std::ios::binary);
    for (int i = 0; i < 8000; ++i) f << "The cat sat. ";  // ~100 KB
  }
  const auto t0 = std::chrono::steady_clock::now();
  const test::ShellResult r = sh(cli() + " run -m " + hf() + " -f " + file + " -n 8 --temp 0");
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(r.status, 1) << r.out.substr(0, 2000);
  EXPECT_TRUE(has(r.out, "the context holds 512 (the model's trained context)")) << r.out;
  EXPECT_TRUE(has(r.out, "--extend-context")) << r.out;
  EXPECT_LT(s, 10 * test::time_scale());
  // Asked for, it runs (and warns); a short prompt with a long -n stops at the context's end.
  const test::ShellResult shortened =
      test::run_shell("head -c 2000 " + file + " | " + cli() + " run -m " + hf() +
                      " -n 2 --temp 0 --extend-context 2>&1 >/dev/null");
  EXPECT_EQ(shortened.status, 0) << shortened.out;
  const test::ShellResult fits =
      test::run_shell(cli() + " run -m " + hf() +
                      " -p 'Once upon a time' -n 600 --ignore-eos --temp 0 2>&1 >/dev/null");
  EXPECT_EQ(fits.status, 0) << fits.out;
  EXPECT_TRUE(has(fits.out, "stop: context_full")) << fits.out;
  EXPECT_TRUE(has(fits.out, "generated 508 tokens")) << fits.out;
}

TEST(CliHabitsChat, ContextShiftDropsTheOldestTurnsAndKeepsGoing) {
  AF_REQUIRE_TESTDATA(hf());
  std::string input;
  for (int i = 0; i < 6; ++i) input += "Tell me a story about a cat and a dog.\\n";
  const test::ShellResult r = sh("printf '" + input + "' | " + cli() + " chat -m " + hf() +
                                 " -c 160 -n 24 --temp 0 --system 'You are kind.'");
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_EQ(count(r.out, " | prompt "), 6u) << r.out;
  EXPECT_TRUE(has(r.out, "oldest turn")) << r.out;
  EXPECT_TRUE(has(r.out, "kept the system prompt")) << r.out;
  EXPECT_FALSE(has(r.out, "error")) << r.out;
}

TEST(CliHabitsChat, HelpMultiLineInputAndRunsFlags) {
  AF_REQUIRE_TESTDATA(hf());
  // /help, a """ block of three lines and a line continued with '\' are one message each.
  const test::ShellResult r =
      sh("printf '/help\\n\"\"\"\\nOne\\nTwo\\nThree\\n\"\"\"\\nFour\\\\\\nFive\\n' | " + cli() +
         " chat -m " + hf() +
         " -n 6 --temp 0 --stop zzz --quantize Q8_0 --kv-type f16 --top-k 5 --seed 3 -ngl 9");
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_TRUE(has(r.out, "commands: /help")) << r.out;
  EXPECT_EQ(count(r.out, " | prompt "), 2u) << r.out;
}

// On a terminal: the prompt, /help, and (built with libedit) the history kept in $HOME.
TEST(CliHabitsChat, InteractiveOnATerminal) {
  AF_REQUIRE_TESTDATA(hf());
  if (!have_script()) GTEST_SKIP() << "no `script` (util-linux) for a pseudo-terminal";
  test::TempFolder home("af_cli_home");
  const test::ShellResult r = test::run_shell(
      "printf 'Hi there\\n/help\\n/exit\\n' | HOME=" + (home / "").string() +
      " timeout 60 script -qec \"" + cli() + " chat -m " + hf() + " -n 4 --temp 0\" /dev/null");
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_TRUE(has(r.out, "/help for commands")) << r.out;
  EXPECT_TRUE(has(r.out, "> ")) << r.out;
  EXPECT_TRUE(has(r.out, "commands: /help")) << r.out;
  EXPECT_EQ(count(r.out, " | prompt "), 1u) << r.out;
  if (has(r.out, "libedit")) {
    EXPECT_TRUE(has(test::read_text((home / ".af_cli_chat_history").string()),
                    "there"));  // libedit writes spaces as \\040
  }
}

TEST(CliHabits, VersionOnBothBinaries) {
  for (const std::string& binary : {cli(), std::string(AF_SERVER_PATH)}) {
    const test::ShellResult r = sh(binary + " --version");
    EXPECT_EQ(r.status, 0) << binary << ": " << r.out;
    EXPECT_TRUE(std::regex_search(
        r.out,
        std::regex("^af-(cli|server) [0-9]+\\.[0-9]+\\.[0-9]+ \\(commit [0-9a-f]{7,}|unknown")))
        << r.out;
    EXPECT_TRUE(has(r.out, "build, CPU kernel tables: scalar")) << r.out;
  }
}

}  // namespace
}  // namespace af
