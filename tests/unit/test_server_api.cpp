// af-server's request parser: OpenAI's fields and defaults, and a 400 with the field named for
// every kind of bad input.
#include "api.hpp"
#include "chat_prompt.hpp"
#include "metrics.hpp"
#include "structured.hpp"
#include "test_util.hpp"

#include <gtest/gtest.h>

namespace af::server {
namespace {

ApiError error_of(Endpoint endpoint, const std::string& body) {
  try {
    parse_request(endpoint, body);
  } catch (const ApiError& e) {
    return e;
  }
  ADD_FAILURE() << "no error for " << body;
  return ApiError(0, "");
}

constexpr Endpoint kChat = Endpoint::kChatCompletions;
constexpr Endpoint kCompletion = Endpoint::kCompletions;

TEST(ServerApi, ChatFieldsAndDefaults) {
  const ApiRequest r = parse_request(kChat, R"({
    "model": "m", "messages": [
      {"role": "system", "content": "Be brief."},
      {"role": "user", "content": [{"type": "text", "text": "Hi "}, {"type": "text", "text": "there"}]},
      {"role": "assistant", "content": null}],
    "max_completion_tokens": 12, "temperature": 0.5, "top_p": 0.9, "top_k": 40, "min_p": 0.05,
    "presence_penalty": 0.5, "frequency_penalty": -0.5, "repetition_penalty": 1.1,
    "seed": 42, "stop": ["\n", "END"], "n": 3, "logprobs": true, "top_logprobs": 4,
    "logit_bias": {"17": -100, "3": 2.5}, "stream": true, "stream_options": {"include_usage": true},
    "response_format": {"type": "json_object"}, "user": "x", "some_future_field": {"a": 1}})");
  ASSERT_EQ(r.messages.size(), 3u);
  EXPECT_EQ(r.messages[1].content, "Hi there");
  EXPECT_EQ(r.messages[2].content, "");
  EXPECT_EQ(r.max_tokens, 12);
  EXPECT_FLOAT_EQ(r.sampling.temperature, 0.5f);
  EXPECT_FLOAT_EQ(r.sampling.top_p, 0.9f);
  EXPECT_EQ(r.sampling.top_k, 40);
  EXPECT_FLOAT_EQ(r.sampling.min_p, 0.05f);
  EXPECT_FLOAT_EQ(r.sampling.presence_penalty, 0.5f);
  EXPECT_FLOAT_EQ(r.sampling.frequency_penalty, -0.5f);
  EXPECT_FLOAT_EQ(r.sampling.repetition_penalty, 1.1f);
  EXPECT_TRUE(r.has_seed);
  EXPECT_EQ(r.sampling.seed, 42u);
  EXPECT_EQ(r.stop, (std::vector<std::string>{"\n", "END"}));
  EXPECT_EQ(r.n, 3);
  EXPECT_TRUE(r.logprobs);
  EXPECT_EQ(r.sampling.top_logprobs, 4);
  ASSERT_EQ(r.sampling.logit_bias.size(), 2u);
  EXPECT_TRUE(r.stream && r.include_usage && r.json_object);

  const ApiRequest d = parse_request(kChat, R"({"messages": [{"role": "user", "content": "x"}]})");
  EXPECT_EQ(d.max_tokens, -1);
  EXPECT_FLOAT_EQ(d.sampling.temperature, 1.0f);  // OpenAI's default
  EXPECT_FALSE(d.has_seed || d.stream || d.logprobs || d.json_object);
  EXPECT_EQ(d.n, 1);
}

TEST(ServerApi, ImagePartsKeepTheirPlaceInTheText) {
  const ApiRequest r = parse_request(kChat, R"({"messages": [{"role": "user", "content": [
      {"type": "text", "text": "Look:"}, {"type": "image_url", "image_url": {"url": "data:a"}},
      {"type": "text", "text": " and"}, {"type": "image_url", "image_url": {"url": "data:b"}}]}]})");
  ASSERT_EQ(r.messages.size(), 1u);
  EXPECT_EQ(r.messages[0].content, "Look: and");
  EXPECT_EQ(r.messages[0].image_urls, (std::vector<std::string>{"data:a", "data:b"}));
  EXPECT_EQ(r.messages[0].image_offsets, (std::vector<size_t>{5, 9}));

  // The chat template gets the parts in that order (LLaVA-style: "<image>\n" per image part).
  const auto tokenizer = tok::Tokenizer::load(test::testdata_dir() + "/models/stories260K-hf");
  const ChatPrompt llava(
      "{% for m in messages %}{% for p in m.content %}{% if p.type == 'image' %}<image>\n"
      "{% else %}{{ p.text }}{% endif %}{% endfor %}{% endfor %}",
      *tokenizer);
  EXPECT_EQ(llava.render(r.messages), "Look:<image>\n and<image>\n");
}

TEST(ServerApi, CompletionPrompts) {
  ApiRequest r = parse_request(kCompletion, R"({"prompt": "Once", "stop": "x", "logprobs": 2})");
  EXPECT_EQ(r.prompt_texts, std::vector<std::string>{"Once"});
  EXPECT_EQ(r.max_tokens, 16);  // legacy completions default
  EXPECT_EQ(r.stop, std::vector<std::string>{"x"});
  EXPECT_TRUE(r.logprobs);
  EXPECT_EQ(r.sampling.top_logprobs, 2);
  r = parse_request(kCompletion, R"({"prompt": [1, 2, 3], "max_tokens": 4.0})");
  EXPECT_EQ(r.prompt_ids, (std::vector<std::vector<int32_t>>{{1, 2, 3}}));
  EXPECT_EQ(r.max_tokens, 4);
  r = parse_request(kCompletion, R"({"prompt": ["a", "b"]})");
  EXPECT_EQ(r.prompt_texts.size(), 2u);
  r = parse_request(kCompletion, R"({"prompt": [[1], [2, 3]]})");
  EXPECT_EQ(r.prompt_ids.size(), 2u);
}

TEST(ServerApi, BadInputIsA400NamingTheField) {
  struct Case {
    Endpoint endpoint;
    const char* body;
    const char* param;  // "" for null
    const char* code;
  };
  const Case cases[] = {
      {kChat, "{", "", "invalid_json"},
      {kChat, "", "", "invalid_json"},
      {kChat, "[1]", "", "invalid_json"},
      {kChat, R"({"messages": [{"role": "user", "content": "x"}]} trailing)", "", "invalid_json"},
      {kChat, "{}", "messages", "missing_required_parameter"},
      {kChat, R"({"messages": []})", "messages", "empty_array"},
      {kChat, R"({"messages": "hi"})", "messages", "invalid_type"},
      {kChat, R"({"messages": [1]})", "messages[0]", "invalid_type"},
      {kChat, R"({"messages": [{"content": "x"}]})", "messages[0].role",
       "missing_required_parameter"},
      {kChat, R"({"messages": [{"role": "king", "content": "x"}]})", "messages[0].role",
       "invalid_value"},
      {kChat, R"({"messages": [{"role": "user"}]})", "messages[0].content",
       "missing_required_parameter"},
      {kChat, R"({"messages": [{"role": "user", "content": 5}]})", "messages[0].content",
       "invalid_type"},
      {kChat, R"({"messages": [{"role": "user", "content": [{"type": "file"}]}]})",
       "messages[0].content[0].type", "unsupported_value"},
      {kChat, R"({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]})",
       "messages[0].content[0].image_url", "missing_required_parameter"},
      {kCompletion, "{}", "prompt", "missing_required_parameter"},
      {kCompletion, R"({"prompt": 5})", "prompt", "invalid_type"},
      {kCompletion, R"({"prompt": [1, "a"]})", "prompt", "invalid_type"},
      {kCompletion, R"({"prompt": [-1]})", "prompt", "invalid_value"},
      {kCompletion, R"({"prompt": "a", "echo": true})", "echo", "unsupported_parameter"},
      {kCompletion, R"({"prompt": "a", "max_tokens": 0})", "max_tokens", "invalid_value"},
      {kCompletion, R"({"prompt": "a", "max_tokens": "5"})", "max_tokens", "invalid_type"},
      {kCompletion, R"({"prompt": "a", "max_tokens": 1.5})", "max_tokens", "invalid_type"},
      {kCompletion, R"({"prompt": "a", "max_tokens": 1e300})", "max_tokens", "invalid_type"},
      {kCompletion, R"({"prompt": "a", "temperature": "hot"})", "temperature", "invalid_type"},
      {kCompletion, R"({"prompt": "a", "temperature": 3})", "temperature", "invalid_value"},
      {kCompletion, R"({"prompt": "a", "top_p": -0.1})", "top_p", "invalid_value"},
      {kCompletion, R"({"prompt": "a", "n": 0})", "n", "invalid_value"},
      {kCompletion, R"({"prompt": "a", "n": 1000})", "n", "invalid_value"},
      {kCompletion, R"({"prompt": "a", "stop": 5})", "stop", "invalid_type"},
      {kCompletion, R"({"prompt": "a", "stop": ["a","b","c","d","e"]})", "stop", "invalid_value"},
      {kCompletion, R"({"prompt": "a", "seed": 1.5})", "seed", "invalid_type"},
      {kCompletion, R"({"prompt": "a", "logit_bias": {"x": 1}})", "logit_bias", "invalid_value"},
      {kCompletion, R"({"prompt": "a", "logit_bias": {"1": 500}})", "logit_bias.1",
       "invalid_value"},
      {kCompletion, R"({"prompt": "a", "logprobs": true})", "logprobs", "invalid_type"},
      {kChat, R"({"messages": [{"role": "user", "content": "x"}], "top_logprobs": 2})",
       "top_logprobs", "invalid_value"},
      {kChat, R"({"messages": [{"role": "user", "content": "x"}], "stream": "yes"})", "stream",
       "invalid_type"},
      {kChat, R"({"messages": [{"role": "user", "content": "x"}], "stream_options": {}})",
       "stream_options", "invalid_value"},
      {kChat,
       R"({"messages": [{"role": "user", "content": "x"}], "response_format": {"type": "json_schema"}})",
       "response_format.json_schema", "missing_required_parameter"},
      {kChat,
       R"({"messages": [{"role": "user", "content": "x"}], "response_format": {"type": "json_schema", "json_schema": {"schema": {}}}})",
       "response_format.json_schema.name", "missing_required_parameter"},
      {kChat,
       R"({"messages": [{"role": "user", "content": "x"}], "response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": 3}}})",
       "response_format.json_schema.schema", "invalid_type"},
      {kChat,
       R"({"messages": [{"role": "user", "content": "x"}], "response_format": {"type": "xml"}})",
       "response_format.type", "unsupported_value"},
      {kChat, R"({"messages": [{"role": "user", "content": "x"}], "model": 3})", "model",
       "invalid_type"},
  };
  for (const Case& c : cases) {
    const ApiError e = error_of(c.endpoint, c.body);
    EXPECT_EQ(e.status, 400) << c.body;
    EXPECT_EQ(e.type, "invalid_request_error") << c.body;
    EXPECT_EQ(e.param, c.param) << c.body;
    EXPECT_EQ(e.code, c.code) << c.body;
    EXPECT_FALSE(e.message.empty());
  }
}

TEST(ServerApi, DeepNestingIsRejectedNotRecursed) {
  std::string body = R"({"messages": [{"role": "user", "content": "x"}], "x": )";
  body += std::string(100000, '[') + std::string(100000, ']') + "}";
  EXPECT_EQ(error_of(kChat, body).code, "invalid_json");
}

TEST(ServerApi, ErrorBodyHasOpenAIsShape) {
  const auto j = error_body(ApiError(400, "bad", "invalid_request_error", "n", "invalid_value"));
  EXPECT_EQ(
      j.dump(),
      R"({"error":{"code":"invalid_value","message":"bad","param":"n","type":"invalid_request_error"}})");
  EXPECT_TRUE(error_body(ApiError(500, "x", "server_error"))["error"]["param"].is_null());
}

TEST(ServerApi, ChatMLPrompt) {
  EXPECT_EQ(render_chatml({{"developer", "Be kind."}, {"user", "Hi"}}),
            "<|im_start|>system\nBe kind.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
            "<|im_start|>assistant\n");
}

TEST(ServerApi, ChatPromptUsesTheModelsTemplate) {
  const auto tokenizer =
      tok::Tokenizer::load(test::testdata_dir() + "/models/stories260K-hf");  // BOS <s>
  const ChatPrompt model_template(
      "{{ bos_token }}{% for m in messages %}[{{ m.role }}]{{ m.content }}{% endfor %}"
      "{% if add_generation_prompt %}[assistant]{% endif %}",
      *tokenizer);
  EXPECT_TRUE(model_template.uses_model_template());
  EXPECT_EQ(model_template.render({{"developer", "S"}, {"user", "Hi"}}),
            "<s>[system]S[user]Hi[assistant]");
  const ChatPrompt strict("{{ raise_exception('roles must alternate') }}", *tokenizer);
  try {
    strict.render({{"user", "Hi"}});
    ADD_FAILURE() << "no error";
  } catch (const ApiError& e) {
    EXPECT_EQ(e.status, 400);
    EXPECT_EQ(e.param, "messages");
    EXPECT_NE(e.message.find("roles must alternate"), std::string::npos);
  }
  EXPECT_FALSE(ChatPrompt(std::nullopt, *tokenizer).uses_model_template());
  EXPECT_EQ(ChatPrompt(std::nullopt, *tokenizer).render({{"user", "Hi"}}),
            render_chatml({{"user", "Hi"}}));
}

// A model whose template takes no image parts (MiniCPM-V): each image_url part becomes the
// model's image token in the text, parts joined by "\n"; that text typed in a message is a 400.
TEST(ServerApi, ChatPromptWritesImagesAsTextForMiniCPMV) {
  const auto tokenizer = tok::Tokenizer::load(test::testdata_dir() + "/models/stories260K-hf");
  const ChatPrompt prompt("{{ bos_token }}{% for m in messages %}{{ m.content }}{% endfor %}",
                          *tokenizer);
  const std::vector<ChatMessage> messages = {{"user", "Hi", {"a.png", "b.png"}, {0, 2}}};
  const int32_t unk = tokenizer->encode("<unk>", false)[0];
  // "<s><unk>\nHi\n<unk>"
  std::vector<int32_t> want = {tokenizer->bos_id(), unk};
  for (int32_t id : tokenizer->encode("\nHi\n", false, false)) want.push_back(id);
  want.push_back(unk);
  EXPECT_EQ(prompt.encode(messages, *tokenizer, false, {}, nullptr, "<unk>"), want);
  try {
    prompt.encode({{"user", "Hi <unk>", {"a.png"}}}, *tokenizer, false, {}, nullptr, "<unk>");
    ADD_FAILURE() << "no error";
  } catch (const ApiError& e) {
    EXPECT_EQ(e.status, 400);
    EXPECT_NE(e.message.find("<unk>"), std::string::npos) << e.message;
  }
}

// A template past the operator's budget (--template-max-*) is the server's problem: 500 naming
// the option, not a 400 blaming the messages.
TEST(ServerApi, ChatPromptOverItsTemplateBudgetIs500NamingTheOption) {
  const auto tokenizer = tok::Tokenizer::load(test::testdata_dir() + "/models/stories260K-hf");
  const std::string source =
      "{% for m in messages %}{% for i in range(1000) %}{{ m.content }}{% endfor %}{% endfor %}";
  const auto error_of = [&](const tok::TemplateLimits& limits) {
    try {
      ChatPrompt(source, *tokenizer, limits).encode({{"user", "Hi"}}, *tokenizer, false);
    } catch (const ApiError& e) {
      return e;
    }
    ADD_FAILURE() << "no error";
    return ApiError(0, "");
  };
  tok::TemplateLimits steps;
  steps.max_steps = 100;
  ApiError e = error_of(steps);
  EXPECT_EQ(e.status, 500);
  EXPECT_EQ(e.type, "server_error");
  EXPECT_EQ(e.code, "template_limit_exceeded");
  EXPECT_NE(e.message.find("--template-max-steps"), std::string::npos) << e.message;
  EXPECT_NE(e.message.find("exceeded 100 evaluation steps"), std::string::npos) << e.message;
  tok::TemplateLimits output;
  output.max_string_bytes = 64;
  e = error_of(output);
  EXPECT_EQ(e.status, 500);
  EXPECT_NE(e.message.find("--template-max-string-bytes"), std::string::npos) << e.message;
  tok::TemplateLimits memory;
  memory.max_memory_bytes = 256;
  e = error_of(memory);
  EXPECT_EQ(e.status, 500);
  EXPECT_NE(e.message.find("--template-max-memory"), std::string::npos) << e.message;
  tok::TemplateLimits depth;
  depth.max_depth = 2;
  e = error_of(depth);
  EXPECT_EQ(e.status, 500);
  EXPECT_NE(e.message.find("--template-max-depth"), std::string::npos) << e.message;
  // The default budget renders it.
  EXPECT_FALSE(ChatPrompt(source, *tokenizer).encode({{"user", "Hi"}}, *tokenizer, false).empty());
}

TEST(ServerApi, MetricsArePrometheusText) {
  Metrics m;
  m.count_request("/v1/completions", 200);
  m.count_request("/v1/completions", 200);
  m.count_request("/random/1", 404);
  m.count_request("/random/2", 404);
  runtime::RequestResult r;
  r.cause = runtime::StopCause::kEos;
  r.total_seconds = 0.3;
  m.observe_generation(r);
  runtime::SchedulerStats s;
  s.generated_tokens = 7;
  s.queued = 2;
  const std::string text = m.render(s, 4);
  EXPECT_NE(text.find("af_http_requests_total{path=\"/v1/completions\",status=\"200\"} 2\n"),
            std::string::npos);
  EXPECT_NE(text.find("af_http_requests_total{path=\"other\",status=\"404\"} 2\n"),
            std::string::npos);
  EXPECT_NE(text.find("af_generations_total{finish_reason=\"stop\"} 1\n"), std::string::npos);
  EXPECT_NE(text.find("af_generated_tokens_total 7\n"), std::string::npos);
  EXPECT_NE(text.find("af_queue_depth 2\n"), std::string::npos);
  EXPECT_NE(text.find("af_request_seconds_bucket{le=\"0.25\"} 0\n"), std::string::npos);
  EXPECT_NE(text.find("af_request_seconds_bucket{le=\"0.5\"} 1\n"), std::string::npos);
  EXPECT_NE(text.find("af_request_seconds_count 1\n"), std::string::npos);
}

TEST(ServerApi, ToolsToolChoiceAndToolMessagesParse) {
  const ApiRequest r = parse_request(Endpoint::kChatCompletions, R"({"messages": [
      {"role": "user", "content": "x"},
      {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
        "function": {"name": "f", "arguments": "{\"a\": 1}"}}]},
      {"role": "tool", "tool_call_id": "call_1", "content": "3"}],
      "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
      "tool_choice": {"type": "function", "function": {"name": "f"}},
      "parallel_tool_calls": false})");
  EXPECT_EQ(r.tool_choice, "function");
  EXPECT_EQ(r.tool_choice_name, "f");
  EXPECT_FALSE(r.parallel_tool_calls);
  EXPECT_EQ(r.tools.size(), 1u);
  EXPECT_EQ(r.messages[1].tool_calls[0]["function"]["name"], "f");
  EXPECT_EQ(r.messages[2].tool_call_id, "call_1");
  struct Case {
    const char* body;
    const char* param;
  };
  for (const Case& c : {
           Case{R"("tools": {}})", "tools"},
           Case{R"("tools": [{"type": "function", "function": {}}]})", "tools[0].function.name"},
           Case{R"("tools": [{"type": "retrieval"}]})", "tools[0].type"},
           Case{R"("tool_choice": "required"})", "tool_choice"},
           Case{R"("tool_choice": "sometimes"})", "tool_choice"},
           Case{R"("parallel_tool_calls": 1})", "parallel_tool_calls"},
       }) {
    const std::string body =
        std::string(R"({"messages": [{"role": "user", "content": "x"}], )") + c.body;
    try {
      parse_request(Endpoint::kChatCompletions, body);
      ADD_FAILURE() << "accepted: " << body;
    } catch (const ApiError& e) {
      EXPECT_EQ(e.status, 400);
      EXPECT_EQ(e.param, c.param) << body;
    }
  }
}

TEST(ServerApi, JsonSchemaResponseFormatCompilesOrNamesTheKeyword) {
  const ApiRequest ok =
      parse_request(Endpoint::kChatCompletions,
                    R"({"messages": [{"role": "user", "content": "x"}], "response_format": {"type":
          "json_schema", "json_schema": {"name": "p", "strict": true, "schema":
          {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}}}})");
  EXPECT_TRUE(response_grammar(ok) != nullptr);
  const ApiRequest text = parse_request(Endpoint::kChatCompletions,
                                        R"({"messages": [{"role": "user", "content": "x"}]})");
  EXPECT_TRUE(response_grammar(text) == nullptr);
  const ApiRequest bad =
      parse_request(Endpoint::kChatCompletions,
                    R"({"messages": [{"role": "user", "content": "x"}], "response_format": {"type":
          "json_schema", "json_schema": {"name": "p", "schema":
          {"properties": {"a": {"type": "string", "pattern": "x"}}}}}})");
  try {
    response_grammar(bad);
    ADD_FAILURE() << "accepted";
  } catch (const ApiError& e) {
    EXPECT_EQ(e.status, 400);
    EXPECT_EQ(e.param, "response_format.json_schema.schema");
    EXPECT_EQ(e.code, "unsupported_value");
    EXPECT_NE(e.message.find("'pattern' at #/properties/a"), std::string::npos) << e.message;
  }
}

}  // namespace
}  // namespace af::server
