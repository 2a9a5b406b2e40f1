// af-cli template: the rendering of every expected file in ../shared/testdata/templates/expected,
// byte for byte, with no newline of its own; errors exit 1 with the template's message.
#include <cstdio>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "test_util.hpp"

namespace af {
namespace {

struct CliResult {
  int status;
  std::string out;
  std::string err;
};

CliResult run_template(const std::string& template_path, const std::string& context_path,
                       const std::string& flags = "") {
  const std::string err_path = context_path + ".stderr";
  const std::string cmd = std::string(AF_CLI_PATH) + " template --template '" + template_path +
                          "' --context '" + context_path + "' " + flags + " 2>'" + err_path + "'";
  const test::ShellResult r = test::run_shell(cmd);
  return {r.status, r.out, test::read_text(err_path)};
}

class CliTemplate : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("af_cli_template_" +
            std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()));
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string write(const std::string& name, const std::string& text) {
    const auto path = dir_ / name;
    std::ofstream(path, std::ios::binary) << text;
    return path.string();
  }
  std::filesystem::path dir_;
};

TEST_F(CliTemplate, ExpectedRenderingsAreByteIdentical) {
  const std::string templates = test::testdata_dir() + "/templates";
  AF_REQUIRE_TESTDATA(templates + "/expected/conversation.json");
  const auto conversation =
      nlohmann::ordered_json::parse(test::read_text(templates + "/expected/conversation.json"));
  int checked = 0;
  for (const auto& entry : std::filesystem::directory_iterator(templates + "/expected")) {
    if (entry.path().extension() != ".txt") continue;
    const std::string stem = entry.path().stem().string();  // name.gen / name.nogen
    const std::string name = stem.substr(0, stem.rfind('.')) + ".jinja";
    nlohmann::ordered_json context;
    context["messages"] = conversation["messages"];
    context["add_generation_prompt"] = stem.substr(stem.rfind('.') + 1) == "gen";
    context["date_string"] = "26 Jul 2024";
    if (conversation["bos_token"].contains(name))
      context["bos_token"] = conversation["bos_token"][name];
    if (conversation["eos_token"].contains(name))
      context["eos_token"] = conversation["eos_token"][name];
    const CliResult r = run_template(templates + "/" + name, write("context.json", context.dump()));
    EXPECT_EQ(r.status, 0) << name << ": " << r.err;
    EXPECT_EQ(r.out, test::read_text(entry.path().string())) << entry.path().filename();
    ++checked;
  }
  EXPECT_EQ(checked, 18);
}

TEST_F(CliTemplate, PrintsExactlyTheRenderingAndReportsErrors) {
  const std::string context =
      write("c.json", R"({"messages": [{"role": "user", "content": "hi"}], "x": 1})");
  const CliResult ok = run_template(
      write("ok.jinja", "{% for m in messages %}{{ m.content }}{% endfor %}\n"), context);
  EXPECT_EQ(ok.status, 0);
  EXPECT_EQ(ok.out, "hi");  // the template's own trailing newline is dropped, none is added

  const CliResult raised = run_template(
      write("raise.jinja", "\n{{ raise_exception('Only assistants here') }}"), context);
  EXPECT_EQ(raised.status, 1);
  EXPECT_EQ(raised.out, "");
  EXPECT_NE(raised.err.find("raise.jinja:2:"), std::string::npos) << raised.err;
  EXPECT_NE(raised.err.find("Only assistants here"), std::string::npos) << raised.err;

  const CliResult syntax = run_template(write("bad.jinja", "{% if x %}never closed"), context);
  EXPECT_EQ(syntax.status, 1);
  EXPECT_NE(syntax.err.find("syntax error"), std::string::npos) << syntax.err;

  const CliResult bad_json = run_template(write("t.jinja", "{{ x }}"), write("bad.json", "{nope"));
  EXPECT_EQ(bad_json.status, 1);
  EXPECT_NE(bad_json.err.find("invalid JSON"), std::string::npos) << bad_json.err;

  EXPECT_EQ(run_template((dir_ / "missing.jinja").string(), context).status, 1);
}

TEST_F(CliTemplate, TemplateLimitFlagsBoundTheRendering) {
  const std::string context = write("c.json", R"({"n": 1000})");
  const std::string loop = write("loop.jinja", "{% for i in range(n) %}{{ i }}{% endfor %}");
  EXPECT_EQ(run_template(loop, context).status, 0);  // the defaults allow it
  const struct {
    const char* flag;
    const char* field;
  } kCases[] = {{"--template-max-steps 50", "TemplateLimits::max_steps"},
                {"--template-max-memory 100", "TemplateLimits::max_memory_bytes"},
                {"--template-max-string-bytes 100", "TemplateLimits::max_string_bytes"}};
  for (const auto& c : kCases) {
    const CliResult r = run_template(loop, context, c.flag);
    EXPECT_EQ(r.status, 1) << c.flag;
    EXPECT_EQ(r.out, "") << c.flag;
    EXPECT_NE(r.err.find(c.field), std::string::npos) << c.flag << ": " << r.err;
  }
  const std::string recursive =
      write("rec.jinja",
            "{% macro f(k) %}{% if k %}{{ f(k - 1) }}{% endif %}{% endmacro %}"
            "{{ f(20) }}");
  EXPECT_EQ(run_template(recursive, context).status, 0);
  const CliResult deep = run_template(recursive, context, "--template-max-depth 10");
  EXPECT_EQ(deep.status, 1);
  EXPECT_NE(deep.err.find("TemplateLimits::max_depth"), std::string::npos) << deep.err;
  EXPECT_NE(run_template(loop, context, "--template-max-steps 0").status, 0);  // must be positive
}

}  // namespace
}  // namespace af
