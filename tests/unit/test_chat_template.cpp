// Chat-template engine behaviour not covered by the transformers-recorded fixtures: error
// locations and messages, resource limits, the two context overloads, find_chat_template.
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "af/core/error.hpp"
#include "af/tokenizer/chat_template.hpp"
#include "io_test_util.hpp"
#include "test_util.hpp"

namespace af {
namespace {

using nlohmann::ordered_json;

std::string render(const std::string& source,
                   const ordered_json& context = ordered_json::object()) {
  return tok::ChatTemplate::parse(source, "t.jinja").render(context);
}

// The af::Error message of rendering (or parsing) `source`; fails the test if nothing throws.
std::string error_of(const std::string& source,
                     const ordered_json& context = ordered_json::object()) {
  try {
    render(source, context);
  } catch (const Error& e) {
    EXPECT_EQ(e.component(), "template");
    return e.what();
  }
  ADD_FAILURE() << "no error for " << source;
  return {};
}

TEST(ChatTemplate, SyntaxErrorsNameOriginLineAndColumn) {
  EXPECT_NE(error_of("line one\n{{ 1 + }}").find("t.jinja:2:8: syntax error"), std::string::npos)
      << error_of("line one\n{{ 1 + }}");
  EXPECT_NE(error_of("{% if x %}\nabc")
                .find("t.jinja:2:4: syntax error: unexpected end of template, expected"),
            std::string::npos)
      << error_of("{% if x %}\nabc");
  EXPECT_NE(error_of("ab\n  {{ 'open }}").find("t.jinja:2:6: syntax error: unterminated string"),
            std::string::npos);
  EXPECT_NE(error_of("{% endfor %}").find("t.jinja:1:4: syntax error: unknown tag 'endfor'"),
            std::string::npos);
  EXPECT_NE(error_of("{% include 'x' %}").find("not supported"), std::string::npos);
  EXPECT_NE(error_of("{{ x").find("expected '}}'"), std::string::npos);
  EXPECT_NE(error_of("{# never closed").find("unterminated comment"), std::string::npos);
  EXPECT_NE(error_of("{% break %}").find("outside a loop"), std::string::npos);
  try {
    tok::ChatTemplate::parse("{{ ) }}");
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kFormat);
    EXPECT_NE(std::string(e.what()).find("<template>:1:4"), std::string::npos) << e.what();
  }
}

TEST(ChatTemplate, RaiseExceptionCarriesTheTemplatesMessageAndLocation) {
  const std::string msg = error_of(
      "{% for m in messages %}\n  {{ raise_exception('Roles must alternate: ' ~ m.role) }}\n{% "
      "endfor %}",
      ordered_json{{"messages", {{{"role", "bot"}}}}});
  EXPECT_NE(msg.find("t.jinja:2:"), std::string::npos) << msg;
  EXPECT_EQ(msg.substr(msg.size() - std::string("Roles must alternate: bot").size()),
            "Roles must alternate: bot");
}

TEST(ChatTemplate, RuntimeErrorsAreLocated) {
  EXPECT_NE(error_of("\n\n   {{ missing.attr }}").find("t.jinja:3:"), std::string::npos);
  EXPECT_NE(error_of("{{ missing.attr }}").find("'missing' is undefined"), std::string::npos);
  EXPECT_NE(error_of("{{ 'a' + 1 }}").find("can only concatenate str"), std::string::npos);
  EXPECT_NE(error_of("{{ 1 // 0 }}").find("division"), std::string::npos);
  EXPECT_NE(error_of("{{ [1] | nosuch }}").find("no filter named 'nosuch'"), std::string::npos);
  EXPECT_NE(error_of("{{ 1 is nosuch }}").find("no test named 'nosuch'"), std::string::npos);
  EXPECT_NE(error_of("{{ 9223372036854775807 + 1 }}").find("integer overflow"), std::string::npos);
  EXPECT_NE(error_of("{% for x in none %}{% endfor %}").find("not iterable"), std::string::npos);
  EXPECT_NE(error_of("{% set ns = namespace() %}{% set ns.__class__ = 1 %}").find("underscore"),
            std::string::npos);
}

TEST(ChatTemplate, LimitsStopRunawayTemplates) {
  // Infinite macro recursion, huge ranges, exponential strings, long loops: errors, not hangs.
  EXPECT_NE(
      error_of("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}").find("recursion deeper"),
      std::string::npos);
  EXPECT_NE(error_of("{{ range(1000000) | length }}").find("Range too big"), std::string::npos);
  tok::TemplateLimits one_mb;
  one_mb.max_string_bytes = 1 << 20;
  try {
    tok::ChatTemplate::parse(
        "{% set ns = namespace(s='xxxxxxxxxxxxxxxx') %}{% for i in range(40) %}{% set ns.s = ns.s "
        "~ ns.s %}{% endfor %}")
        .render(ordered_json::object(), one_mb);
    ADD_FAILURE() << "string doubling ran to completion";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("exceed 1048576 bytes"), std::string::npos) << e.what();
  }
  EXPECT_NE(error_of("{{ 'x' * 100000000000 }}").find("exceed"), std::string::npos);
  // The step budget (small here to keep the test fast; the default is 5 million).
  tok::TemplateLimits small;
  small.max_steps = 100000;
  try {
    tok::ChatTemplate::parse(
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}")
        .render(ordered_json::object(), small);
    ADD_FAILURE() << "nested loops ran to completion";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("exceeded 100000 evaluation steps"), std::string::npos)
        << e.what();
  }
  EXPECT_NE(error_of("{% set ns = namespace(l=[]) %}{% for i in range(1000) %}{% set ns.l = [ns.l] "
                     "%}{% endfor %}")
                .find("nested deeper"),
            std::string::npos);
  // A 20000-term operator chain parses, refuses to evaluate that deep, and is freed iteratively.
  std::string chain = "{{ ";
  for (int i = 0; i < 20000; ++i) chain += "1+";
  EXPECT_NE(error_of(chain + "1 }}").find("recursion deeper"), std::string::npos);
  // A namespace holding itself is printed without endless recursion and freed (ASan/LSan).
  EXPECT_NE(error_of("{% set ns = namespace() %}{% set ns.me = ns %}{{ ns }}").find("too deeply"),
            std::string::npos);
  EXPECT_EQ(render("{% set ns = namespace() %}{% set ns.me = [ns] %}ok"), "ok");
}

TEST(ChatTemplate, ContextKeysKeepTheirOrderInBothOverloads) {
  const auto tpl =
      tok::ChatTemplate::parse("{{ tool | tojson }}|{% for k in tool %}{{ k }}{% endfor %}");
  const auto ordered =
      ordered_json::parse(R"({"tool": {"name": "f", "description": "d", "arguments": {}}})");
  EXPECT_EQ(tpl.render(ordered),
            R"({"name": "f", "description": "d", "arguments": {}}|namedescriptionarguments)");
  // nlohmann::json sorts keys itself; the overload renders what it was given.
  const auto sorted = nlohmann::json::parse(R"({"tool": {"name": "f", "description": "d"}})");
  EXPECT_EQ(tpl.render(sorted), R"({"description": "d", "name": "f"}|descriptionname)");
  EXPECT_THROW(tpl.render(ordered_json::array()), Error);
}

TEST(ChatTemplate, ParsedTemplateIsReusableAndCopyable) {
  const auto tpl =
      tok::ChatTemplate::parse("{{ greeting }}, {{ name | default('world') }}!", "hello.jinja");
  const tok::ChatTemplate copy = tpl;  // NOLINT(performance-unnecessary-copy-initialization)
  EXPECT_EQ(tpl.render(ordered_json{{"greeting", "Hi"}}), "Hi, world!");
  EXPECT_EQ(copy.render(ordered_json{{"greeting", "Yo"}, {"name", "Bo"}}), "Yo, Bo!");
  EXPECT_EQ(copy.origin(), "hello.jinja");
  EXPECT_EQ(copy.source(), "{{ greeting }}, {{ name | default('world') }}!");
}

TEST(ChatTemplate, StrftimeNowUsesTheClock) {
  const std::string year = render("{{ strftime_now('%Y') }}");
  ASSERT_EQ(year.size(), 4u);
  EXPECT_GE(std::stoi(year), 2024);
  EXPECT_EQ(render("{{ strftime_now('') }}"), "");
}

TEST(ChatTemplate, TrailingNewlineAndCrlfAsTransformers) {
  EXPECT_EQ(render("a\n"), "a");
  EXPECT_EQ(render("a\n\n"), "a\n");
  EXPECT_EQ(render("a\r\nb"), "a\nb");
  EXPECT_EQ(render("{{ 'x\r\ny' }}"), "x\ny");
}

class FindChatTemplate : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ =
        std::filesystem::temp_directory_path() /
        ("af_chat_template_" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()) +
         "_" + ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  void write(const std::string& name, const std::string& text) {
    std::ofstream(dir_ / name, std::ios::binary) << text;
  }
  std::filesystem::path dir_;
};

TEST_F(FindChatTemplate, TokenizerConfigStringOrNamedList) {
  write("tokenizer_config.json", R"({"chat_template": "{{ messages }}"})");
  EXPECT_EQ(tok::find_chat_template(dir_.string()), "{{ messages }}");
  EXPECT_EQ(tok::find_chat_template((dir_ / "tokenizer_config.json").string()), "{{ messages }}");
  write(
      "tokenizer_config.json",
      R"({"chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}]})");
  EXPECT_EQ(tok::find_chat_template(dir_.string()), "D");
  write("tokenizer_config.json", R"({"bos_token": "<s>"})");
  EXPECT_EQ(tok::find_chat_template(dir_.string()), std::nullopt);
  write("tokenizer_config.json", R"({"chat_template": 5})");
  EXPECT_THROW(tok::find_chat_template(dir_.string()), Error);
  write("tokenizer_config.json", "{not json");
  EXPECT_THROW(tok::find_chat_template(dir_.string()), Error);
}

TEST_F(FindChatTemplate, ChatTemplateJinjaWins) {
  write("tokenizer_config.json", R"({"chat_template": "from config"})");
  write("chat_template.jinja", "from jinja file\n");
  EXPECT_EQ(tok::find_chat_template(dir_.string()), "from jinja file\n");
  EXPECT_THROW(tok::find_chat_template((dir_ / "missing").string()), Error);
}

TEST(FindChatTemplateGguf, ReadsTokenizerChatTemplateMetadata) {
  io::test::TempDir dir;
  const auto with = dir.path() / "with.gguf";
  io::test::write_file(
      with, io::test::GgufBuilder()
                .kv_str("general.architecture", "llama")
                .kv_str("tokenizer.chat_template", "{{ bos_token }}{{ messages[0].content }}")
                .build());
  const auto tpl = tok::find_chat_template(with.string());
  ASSERT_TRUE(tpl.has_value());
  EXPECT_EQ(tok::ChatTemplate::parse(*tpl).render(ordered_json{
                {"bos_token", "<s>"}, {"messages", {{{"role", "user"}, {"content", "hi"}}}}}),
            "<s>hi");
  const auto without = dir.path() / "without.gguf";
  io::test::write_file(without,
                       io::test::GgufBuilder().kv_str("general.architecture", "llama").build());
  EXPECT_EQ(tok::find_chat_template(without.string()), std::nullopt);
  const auto wrong_type = dir.path() / "wrong.gguf";
  io::test::write_file(wrong_type,
                       io::test::GgufBuilder().kv_u32("tokenizer.chat_template", 7).build());
  EXPECT_THROW(tok::find_chat_template(wrong_type.string()), Error);
}

TEST(FindChatTemplateTestdata, QwenConfigAndStoriesModels) {
  const std::string qwen = test::testdata_dir() + "/tokenizer/hf/qwen2.5/tokenizer_config.json";
  AF_REQUIRE_TESTDATA(qwen);
  const auto tpl = tok::find_chat_template(qwen);
  ASSERT_TRUE(tpl.has_value());
  const std::string file =
      test::read_text(test::testdata_dir() + "/templates/Qwen-Qwen2.5-7B-Instruct.jinja");
  // The testdata .jinja was extracted from this very config.
  EXPECT_EQ(*tpl, file);
  EXPECT_EQ(tok::find_chat_template(test::testdata_dir() + "/models/stories260K-hf"), std::nullopt);
  EXPECT_EQ(tok::find_chat_template(test::testdata_dir() + "/models/stories260K/stories260K.gguf"),
            std::nullopt);
  const auto phi = tok::find_chat_template(test::testdata_dir() + "/tokenizer/hf/phi-3-mini");
  ASSERT_TRUE(phi.has_value());
  EXPECT_NO_THROW(tok::ChatTemplate::parse(*phi).render(ordered_json{
      {"messages", {{{"role", "user"}, {"content", "hi"}}}}, {"add_generation_prompt", true}}));
}

}  // namespace
}  // namespace af
