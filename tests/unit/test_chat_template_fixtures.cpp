// Chat templates rendered byte-identically to transformers: the expected renderings in
// ../shared/testdata/templates/expected and the fixtures recorded by
// tools/template_make_fixtures.py (every testdata template with tools, tool calls, tool
// responses, with and without system messages and generation prompt; plus feature snippets).
#include <filesystem>

#include <nlohmann/json.hpp>

#include "af/core/error.hpp"
#include "af/tokenizer/chat_template.hpp"
#include "test_util.hpp"

namespace af {
namespace {

using nlohmann::ordered_json;

std::string templates_dir() { return test::testdata_dir() + "/templates"; }

// A hundredth of each default work and memory budget: real chat templates must stay far inside
// the defaults (TemplateLimits' cost model, docs/CHAT_TEMPLATES.md).
tok::TemplateLimits hundredth_of_defaults() {
  tok::TemplateLimits limits;
  limits.max_steps /= 100;
  limits.max_memory_bytes /= 100;
  return limits;
}

// Renders, returning the text or "ERROR: message".
std::string render_or_error(const std::string& source, const std::string& origin,
                            const ordered_json& context, const tok::TemplateLimits& limits = {}) {
  try {
    return tok::ChatTemplate::parse(source, origin).render(context, limits);
  } catch (const Error& e) {
    EXPECT_EQ(e.component(), "template");
    return std::string("ERROR: ") + e.what();
  }
}

TEST(ChatTemplateFixtures, ExpectedRenderingsOfTestdataAreByteIdentical) {
  const std::string dir = templates_dir() + "/expected";
  AF_REQUIRE_TESTDATA(dir + "/conversation.json");
  const auto conversation = ordered_json::parse(test::read_text(dir + "/conversation.json"));
  int checked = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    const std::string file = entry.path().filename().string();
    if (entry.path().extension() != ".txt") continue;
    const std::string stem = file.substr(0, file.size() - 4);   // name.gen / name.nogen
    const std::string mode = stem.substr(stem.rfind('.') + 1);  // gen / nogen
    const std::string name = stem.substr(0, stem.rfind('.')) + ".jinja";
    ordered_json context;
    context["messages"] = conversation["messages"];
    context["add_generation_prompt"] = mode == "gen";
    context["date_string"] = "26 Jul 2024";
    if (conversation["bos_token"].contains(name))
      context["bos_token"] = conversation["bos_token"][name];
    if (conversation["eos_token"].contains(name))
      context["eos_token"] = conversation["eos_token"][name];
    const std::string source = test::read_text(templates_dir() + "/" + name);
    EXPECT_EQ(render_or_error(source, name, context, hundredth_of_defaults()),
              test::read_text(entry.path().string()))
        << file;
    ++checked;
  }
  EXPECT_EQ(checked, 18);
}

TEST(ChatTemplateFixtures, TestdataTemplatesWithToolsMatchTransformers) {
  AF_REQUIRE_TESTDATA(templates_dir() + "/expected/conversation.json");
  const auto fixtures =
      ordered_json::parse(test::read_text(test::fixtures_dir() + "/templates/renderings.json"));
  int rendered = 0, raised = 0;
  for (const auto& c : fixtures["cases"]) {
    const std::string name = c["template"];
    const std::string label = name + " chat=" + c["chat"].get<std::string>() +
                              " gen=" + (c["add_generation_prompt"].get<bool>() ? "1" : "0");
    const std::string source = test::read_text(templates_dir() + "/" + name);
    const auto& context = fixtures["contexts"][c["context"].get<std::string>()];
    const std::string got = render_or_error(source, name, context, hundredth_of_defaults());
    if (c.contains("expected")) {
      EXPECT_EQ(got, c["expected"].get<std::string>()) << label;
      ++rendered;
    } else {
      // transformers raised: so must we, with the template's own message where it has one.
      const std::string error = c["error"];
      EXPECT_EQ(got.rfind("ERROR: ", 0), 0u) << label << " rendered instead of raising: " << error;
      if (error.find("Error: ") == std::string::npos) {
        EXPECT_NE(got.find(error), std::string::npos) << label << ": " << got << " vs " << error;
      }
      ++raised;
    }
  }
  EXPECT_GT(rendered, 100);
  EXPECT_GT(raised, 10);
}

TEST(ChatTemplateFixtures, FeatureSnippetsMatchTransformers) {
  const auto fixtures =
      ordered_json::parse(test::read_text(test::fixtures_dir() + "/templates/snippets.json"));
  const ordered_json& context = fixtures["context"];
  for (const auto& c : fixtures["cases"]) {
    const std::string source = c["source"];
    const std::string got = render_or_error(source, "<snippet>", context);
    if (c.contains("expected")) {
      EXPECT_EQ(got, c["expected"].get<std::string>()) << source;
    } else {
      const std::string error = c["error"];
      EXPECT_EQ(got.rfind("ERROR: ", 0), 0u)
          << source << " rendered " << got << " instead of raising: " << error;
      if (error.find("Error: ") == std::string::npos && error.rfind("syntax: ", 0) != 0) {
        EXPECT_NE(got.find(error), std::string::npos) << source << ": " << got << " vs " << error;
      }
    }
  }
}

}  // namespace
}  // namespace af
