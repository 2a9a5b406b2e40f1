// Function calling pieces of af-server (apps/server/tool_calls.cpp): the model's tool-call
// text (Hermes/Qwen2.5, Llama 3, Mistral) into OpenAI tool_calls, malformed calls left as text,
// and the grammar that forces one call whose arguments follow the tool's parameters schema.
#include <gtest/gtest.h>

#include <random>

#include "af/tokenizer/tokenizer.hpp"
#include "api.hpp"
#include "chat_prompt.hpp"
#include "runtime/json_matcher.hpp"
#include "test_util.hpp"
#include "tool_calls.hpp"

namespace af::server {
namespace {

using nlohmann::json;

const json kTools = json::parse(R"([
  {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object",
    "properties": {"city": {"type": "string", "maxLength": 20},
                   "unit": {"enum": ["c", "f"]}}, "required": ["city"]}}},
  {"type": "function", "function": {"name": "add", "parameters": {"type": "object",
    "properties": {"a": {"$ref": "#/$defs/n"}, "b": {"$ref": "#/$defs/n"}},
    "required": ["a", "b"], "$defs": {"n": {"type": "integer"}}}}}])");
const std::vector<std::string> kNames = {"get_weather", "add"};

TEST(ToolCalls, ParsesEachFamilysSyntax) {
  std::mt19937_64 rng(1);
  auto hermes = parse_tool_calls(
      "Let me look.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": "
      "\"Paris\"}}\n</tool_call>\n<tool_call>{\"name\": \"add\", \"arguments\": \"{\\\"a\\\": 1, "
      "\\\"b\\\": 2}\"}</tool_call>",
      ToolSyntax::kHermes, kNames, rng);
  ASSERT_TRUE(hermes);
  EXPECT_EQ(hermes->content, "Let me look.");
  ASSERT_EQ(hermes->calls.size(), 2u);
  EXPECT_EQ(hermes->calls[0].name, "get_weather");
  EXPECT_EQ(json::parse(hermes->calls[0].arguments), json({{"city", "Paris"}}));
  EXPECT_EQ(json::parse(hermes->calls[1].arguments), json({{"a", 1}, {"b", 2}}));
  EXPECT_EQ(hermes->calls[0].id.rfind("call_", 0), 0u);
  EXPECT_EQ(hermes->calls[0].id.size(), 29u);
  EXPECT_NE(hermes->calls[0].id, hermes->calls[1].id);

  auto llama = parse_tool_calls(
      "<|python_tag|>{\"name\": \"add\", \"parameters\": {\"a\": 1, \"b\": 2}}; {\"name\": "
      "\"get_weather\", \"parameters\": {\"city\": \"a;b\"}}",
      ToolSyntax::kLlama3, kNames, rng);
  ASSERT_TRUE(llama);
  ASSERT_EQ(llama->calls.size(), 2u);
  EXPECT_EQ(json::parse(llama->calls[1].arguments), json({{"city", "a;b"}}));

  auto mistral =
      parse_tool_calls("[TOOL_CALLS][{\"name\": \"add\", \"arguments\": {\"a\": 3, \"b\": 4}}]",
                       ToolSyntax::kMistral, kNames, rng);
  ASSERT_TRUE(mistral);
  EXPECT_EQ(mistral->calls[0].name, "add");
}

TEST(ToolCalls, MalformedCallsStayText) {
  std::mt19937_64 rng(1);
  for (const char* text : {
           "plain text",
           "<tool_call>{\"name\": \"add\", \"arguments\": {\"a\": 1}",              // unclosed
           "<tool_call>{\"name\": \"add\", \"arguments\": {\"a\": }}</tool_call>",  // bad JSON
           "<tool_call>{\"name\": \"rm_rf\", \"arguments\": {}}</tool_call>",       // unknown tool
           "<tool_call>{\"arguments\": {}}</tool_call>",                            // no name
           "<tool_call>{\"name\": \"add\", \"arguments\": [1]}</tool_call>",        // not an object
           "<tool_call>{\"name\": \"add\", \"arguments\": {}}</tool_call> and more text",
       }) {
    EXPECT_FALSE(parse_tool_calls(text, ToolSyntax::kHermes, kNames, rng)) << text;
  }
  EXPECT_FALSE(parse_tool_calls("{\"name\": \"add\"}", ToolSyntax::kLlama3, kNames, rng));
  EXPECT_FALSE(parse_tool_calls("[TOOL_CALLS]nope", ToolSyntax::kMistral, kNames, rng));
}

TEST(ToolCalls, DetectsTheSyntaxFromTheTemplate) {
  EXPECT_EQ(detect_tool_syntax("{{- '[TOOL_CALLS]' }}"), ToolSyntax::kMistral);
  EXPECT_EQ(detect_tool_syntax("<|start_header_id|>ipython<|end_header_id|>"), ToolSyntax::kLlama3);
  EXPECT_EQ(detect_tool_syntax("<tool_call>\\n"), ToolSyntax::kHermes);
}

// Random documents the grammar lets through parse back into a valid call.
TEST(ToolCalls, GrammarForcesAValidCall) {
  std::mt19937 pick(3);
  std::mt19937_64 rng(3);
  for (ToolSyntax syntax : {ToolSyntax::kHermes, ToolSyntax::kLlama3, ToolSyntax::kMistral}) {
    for (const std::string only : {"", "add"}) {
      const auto g = tool_call_grammar(kTools, only, syntax);
      for (int k = 0; k < 20; ++k) {
        runtime::JsonMatcher m(g);
        std::string text;
        while (!m.closed() && text.size() < 2000) {
          std::vector<uint8_t> ok;
          for (int b = 0; b < 256; ++b) {
            runtime::JsonMatcher next = m;
            if (next.push(static_cast<uint8_t>(b))) ok.push_back(static_cast<uint8_t>(b));
          }
          ASSERT_FALSE(ok.empty()) << text;
          uint8_t b = ok[pick() % ok.size()];
          for (uint8_t closer : {'"', '}', ']'}) {
            if (std::find(ok.begin(), ok.end(), closer) != ok.end() && pick() % 3 == 0) b = closer;
          }
          ASSERT_TRUE(m.push(b));
          text.push_back(static_cast<char>(b));
        }
        auto parsed = parse_tool_calls(text, syntax, kNames, rng);
        ASSERT_TRUE(parsed) << text;
        ASSERT_EQ(parsed->calls.size(), 1u);
        if (!only.empty()) {
          EXPECT_EQ(parsed->calls[0].name, only);
        }
        const json args = json::parse(parsed->calls[0].arguments);
        if (parsed->calls[0].name == "add") {
          EXPECT_TRUE(args["a"].is_number_integer() && args["b"].is_number_integer()) << text;
        } else {
          EXPECT_TRUE(args["city"].is_string()) << text;
        }
      }
    }
  }
}

TEST(ToolCalls, BadParametersAreA400NamingTheTool) {
  json tools = kTools;
  tools[1]["function"]["parameters"]["properties"]["a"] = {{"type", "string"}, {"pattern", "x"}};
  try {
    tool_call_grammar(tools, "", ToolSyntax::kHermes);
    ADD_FAILURE() << "accepted";
  } catch (const ApiError& e) {
    EXPECT_EQ(e.status, 400);
    EXPECT_EQ(e.param, "tools[1].function.parameters");
    EXPECT_NE(e.message.find("'pattern' at #/properties/a"), std::string::npos) << e.message;
  }
  try {
    tool_call_grammar(kTools, "nope", ToolSyntax::kHermes);
    ADD_FAILURE() << "accepted";
  } catch (const ApiError& e) {
    EXPECT_EQ(e.param, "tool_choice");
  }
}

// tools= and the messages' tool_calls / tool_call_id reach the template (Qwen2.5's), with the
// call's arguments string given parsed, as transformers' templates index it.
TEST(ToolCalls, ToolsAndToolMessagesReachTheTemplate) {
  const std::string dir = test::testdata_dir() + "/tokenizer/hf/qwen2.5";
  const std::string jinja = test::testdata_dir() + "/templates/Qwen-Qwen2.5-7B-Instruct.jinja";
  AF_REQUIRE_TESTDATA(dir);
  AF_REQUIRE_TESTDATA(jinja);
  const auto tokenizer = tok::Tokenizer::load(dir);
  const ChatPrompt prompt(test::read_text(jinja), *tokenizer);
  std::vector<ChatMessage> messages(3);
  messages[0].role = "user";
  messages[0].content = "Add 1 and 2.";
  messages[1].role = "assistant";
  messages[1].tool_calls = json::parse(R"([{"id": "call_1", "type": "function",
      "function": {"name": "add", "arguments": "{\"a\": 1, \"b\": 2}"}}])");
  messages[2].role = "tool";
  messages[2].tool_call_id = "call_1";
  messages[2].content = "3";
  const std::string text = prompt.render(messages, kTools);
  EXPECT_NE(text.find("<tools>"), std::string::npos) << text;
  EXPECT_NE(text.find("\"name\": \"get_weather\""), std::string::npos) << text;
  EXPECT_NE(text.find("<tool_call>\n{\"name\": \"add\", \"arguments\": {\"a\": 1, \"b\": 2}}"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("<tool_response>\n3\n</tool_response>"), std::string::npos) << text;
  EXPECT_EQ(prompt.render(messages).find("<tools>"), std::string::npos);
}

}  // namespace
}  // namespace af::server
