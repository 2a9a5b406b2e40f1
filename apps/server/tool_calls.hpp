#pragma once
// Function calling: the tool-call syntax a chat template teaches its model, the grammar that
// forces a call (tool_choice "required" or a named function), and the parser that turns the
// model's text back into OpenAI tool_calls.
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "af/runtime/json_schema.hpp"

namespace af::server {

enum class ToolSyntax {
  kHermes,   // Qwen2.5, Hermes: <tool_call>\n{"name": ..., "arguments": {...}}\n</tool_call>
  kLlama3,   // Llama 3.1/3.2: {"name": ..., "parameters": {...}} (after <|python_tag|> or alone)
  kMistral,  // Mistral: [TOOL_CALLS][{"name": ..., "arguments": {...}}, ...]
};

// From the template's text: "[TOOL_CALLS]" -> Mistral, "<|python_tag|>" or "ipython" ->
// Llama 3, else Hermes (also what ChatML models are trained on, if at all).
ToolSyntax detect_tool_syntax(std::string_view template_source);

struct ToolCall {
  std::string id;  // "call_" + 24 letters and digits
  std::string name;
  std::string arguments;  // a JSON object as text, as OpenAI sends it
};

struct ParsedOutput {
  std::string content;  // text outside the calls (trimmed)
  std::vector<ToolCall> calls;
};

// The calls in a model's output, or nullopt when it holds none or any call is malformed (the
// text is then the answer, as is). `tool_names`: calls to other functions count as malformed.
std::optional<ParsedOutput> parse_tool_calls(std::string_view text, ToolSyntax syntax,
                                             const std::vector<std::string>& tool_names,
                                             std::mt19937_64& rng);

// A grammar for exactly one call, in `syntax`, to any of `tools` (OpenAI's
// [{"type": "function", "function": {"name", "parameters"}}]) or only to `only_name` when not
// empty: the arguments follow that tool's parameters schema. Throws ApiError 400 naming
// tools[i].function.parameters when a schema does not compile (unsupported keyword, limits).
std::shared_ptr<const runtime::JsonGrammar> tool_call_grammar(const nlohmann::json& tools,
                                                              const std::string& only_name,
                                                              ToolSyntax syntax);

struct ApiRequest;

// Whether a chat request may produce tool calls (tools given, tool_choice not "none").
bool tools_active(const ApiRequest& r);
// The grammar a request's tool_choice asks for: one forced call for "required" or a named
// function, nullptr for "auto"/"none" (the model may answer in text).
std::shared_ptr<const runtime::JsonGrammar> tool_choice_grammar(const ApiRequest& r,
                                                                ToolSyntax syntax);
// The assistant message for generated text: {"role", "content", "tool_calls"} when the text
// holds well-formed calls to the request's tools (content null when only calls), else nullopt
// (the text is the answer). With parallel_tool_calls false, only the first call is kept.
std::optional<nlohmann::json> tool_call_message(const ApiRequest& r, ToolSyntax syntax,
                                                const std::string& text, std::mt19937_64& rng);

// Streaming with tools: the text is held back and sent at the end as one delta chunk (returned:
// {"index", "delta", "logprobs", "finish_reason": null}), tool_calls with their index, id and
// whole arguments when the text holds calls (then `finish`'s finish_reason becomes
// "tool_calls"), else the text as content.
nlohmann::json stream_tool_delta(const ApiRequest& r, ToolSyntax syntax, int index,
                                 const std::string& text, nlohmann::json& finish,
                                 std::mt19937_64& rng);

}  // namespace af::server
