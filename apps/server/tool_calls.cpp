#include "tool_calls.hpp"

#include "af/core/error.hpp"
#include "api.hpp"

namespace af::server {
namespace {

using nlohmann::json;

std::string trim(std::string_view s) {
  const size_t a = s.find_first_not_of(" \t\r\n");
  if (a == std::string_view::npos) return {};
  const size_t b = s.find_last_not_of(" \t\r\n");
  return std::string(s.substr(a, b - a + 1));
}

std::string call_id(std::mt19937_64& rng) {
  static const char kChars[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
  std::string id = "call_";
  for (int i = 0; i < 24; ++i) id.push_back(kChars[rng() % (sizeof(kChars) - 1)]);
  return id;
}

// {"name": <known tool>, <args_key>: {...}} -> a call; nullopt otherwise.
std::optional<ToolCall> call_from(const json& j, const char* args_key,
                                  const std::vector<std::string>& names, std::mt19937_64& rng) {
  if (!j.is_object()) return std::nullopt;
  auto name = j.find("name");
  auto args = j.find(args_key);
  if (args == j.end()) args = j.find("arguments");
  if (name == j.end() || !name->is_string() || args == j.end()) return std::nullopt;
  if (std::find(names.begin(), names.end(), name->get<std::string>()) == names.end()) {
    return std::nullopt;
  }
  json arguments = *args;
  if (arguments.is_string()) {  // some models write the arguments as a JSON string
    arguments = json::parse(arguments.get<std::string>(), nullptr, false);
  }
  if (!arguments.is_object()) return std::nullopt;
  return ToolCall{call_id(rng), name->get<std::string>(), arguments.dump()};
}

json parse_or_discard(std::string_view text) { return json::parse(text, nullptr, false); }

}  // namespace

ToolSyntax detect_tool_syntax(std::string_view source) {
  if (source.find("[TOOL_CALLS]") != std::string_view::npos) return ToolSyntax::kMistral;
  if (source.find("<|python_tag|>") != std::string_view::npos ||
      source.find("ipython") != std::string_view::npos) {
    return ToolSyntax::kLlama3;
  }
  return ToolSyntax::kHermes;
}

std::optional<ParsedOutput> parse_tool_calls(std::string_view text, ToolSyntax syntax,
                                             const std::vector<std::string>& names,
                                             std::mt19937_64& rng) {
  ParsedOutput out;
  switch (syntax) {
    case ToolSyntax::kHermes: {
      static constexpr std::string_view kOpen = "<tool_call>", kClose = "</tool_call>";
      size_t pos = text.find(kOpen);
      if (pos == std::string_view::npos) return std::nullopt;
      out.content = trim(text.substr(0, pos));
      while (pos != std::string_view::npos) {
        const size_t end = text.find(kClose, pos);
        if (end == std::string_view::npos) return std::nullopt;
        auto call =
            call_from(parse_or_discard(text.substr(pos + kOpen.size(), end - pos - kOpen.size())),
                      "arguments", names, rng);
        if (!call) return std::nullopt;
        out.calls.push_back(std::move(*call));
        const size_t next = text.find(kOpen, end);
        // Only whitespace may sit between and after the calls.
        const size_t stop = next == std::string_view::npos ? text.size() : next;
        if (!trim(text.substr(end + kClose.size(), stop - end - kClose.size())).empty()) {
          return std::nullopt;
        }
        pos = next;
      }
      return out;
    }
    case ToolSyntax::kLlama3: {
      std::string body = trim(text);
      static constexpr std::string_view kTag = "<|python_tag|>";
      if (body.rfind(kTag, 0) == 0) body = trim(std::string_view(body).substr(kTag.size()));
      if (body.empty() || body[0] != '{') return std::nullopt;
      // One call, or several separated by ';' (Llama 3.1's parallel form).
      size_t start = 0;
      while (start < body.size()) {
        size_t end = body.find(';', start);
        while (end != std::string::npos &&
               parse_or_discard(std::string_view(body).substr(start, end - start)).is_discarded()) {
          end = body.find(';', end + 1);
        }
        if (end == std::string::npos) end = body.size();
        auto call = call_from(parse_or_discard(std::string_view(body).substr(start, end - start)),
                              "parameters", names, rng);
        if (!call) return std::nullopt;
        out.calls.push_back(std::move(*call));
        start = end + 1;
      }
      return out;
    }
    case ToolSyntax::kMistral: {
      static constexpr std::string_view kTag = "[TOOL_CALLS]";
      const size_t pos = text.find(kTag);
      std::string_view rest;
      if (pos != std::string_view::npos) {
        out.content = trim(text.substr(0, pos));
        rest = text.substr(pos + kTag.size());
      } else {
        rest = text;  // constrained output: the array alone
      }
      const json calls = parse_or_discard(trim(rest));
      if (!calls.is_array() || calls.empty()) return std::nullopt;
      for (const json& c : calls) {
        auto call = call_from(c, "arguments", names, rng);
        if (!call) return std::nullopt;
        out.calls.push_back(std::move(*call));
      }
      return out;
    }
  }
  return std::nullopt;
}

std::shared_ptr<const runtime::JsonGrammar> tool_call_grammar(const json& tools,
                                                              const std::string& only_name,
                                                              ToolSyntax syntax) {
  json alternatives = json::array();
  json defs = json::object();  // the tools' $defs, hoisted to the root their $refs point at
  const char* args_key = syntax == ToolSyntax::kLlama3 ? "parameters" : "arguments";
  for (size_t i = 0; i < tools.size(); ++i) {
    const json& f = tools[i]["function"];
    const std::string name = f["name"].get<std::string>();
    if (!only_name.empty() && name != only_name) continue;
    const json params = f.value("parameters", json{{"type", "object"}});
    const std::string param = "tools[" + std::to_string(i) + "].function.parameters";
    try {
      runtime::compile_json_schema(params);  // its own errors name its own paths
    } catch (const Error& e) {
      throw ApiError(400, "Invalid schema for function '" + name + "': " + e.what(),
                     "invalid_request_error", param,
                     e.code() == ErrorCode::kUnsupported ? "unsupported_value" : "invalid_value");
    }
    // "#/$defs/..." in the parameters means their own root: the definitions move to the root
    // of the combined schema, where the $refs now point.
    json params_body = params;
    for (const char* key : {"$defs", "definitions"}) {
      if (!params.contains(key)) continue;
      for (const auto& [def, value] : params[key].items()) {
        json& slot = defs[key][def];
        if (!slot.is_null() && slot != value) {
          throw ApiError(400, "Functions define '" + def + "' differently in '" + key + "'.",
                         "invalid_request_error", param, "unsupported_value");
        }
        slot = value;
      }
      params_body.erase(key);
    }
    json call = {{"type", "object"},
                 {"properties", {{"name", {{"const", name}}}, {args_key, params_body}}},
                 {"required", {"name", args_key}}};
    alternatives.push_back(std::move(call));
  }
  if (alternatives.empty()) {
    throw ApiError(400, "tool_choice names function '" + only_name + "', which is not in tools.",
                   "invalid_request_error", "tool_choice", "invalid_value");
  }
  json schema = alternatives.size() == 1 ? alternatives[0] : json{{"anyOf", alternatives}};
  if (syntax == ToolSyntax::kMistral) {
    schema = {{"type", "array"}, {"items", schema}, {"minItems", 1}, {"maxItems", 1}};
  }
  for (const auto& [key, value] : defs.items()) schema[key] = value;
  try {
    auto grammar = runtime::compile_json_schema(schema);
    switch (syntax) {
      case ToolSyntax::kHermes:
        return runtime::wrap_json_grammar(grammar, "<tool_call>\n", "\n</tool_call>");
      case ToolSyntax::kLlama3:
      case ToolSyntax::kMistral:
        return grammar;
    }
  } catch (const Error& e) {
    throw ApiError(400, std::string("Invalid tools: ") + e.what(), "invalid_request_error", "tools",
                   "invalid_value");
  }
  return nullptr;
}

bool tools_active(const ApiRequest& r) {
  return r.endpoint == Endpoint::kChatCompletions && !r.tools.is_null() && r.tool_choice != "none";
}

std::shared_ptr<const runtime::JsonGrammar> tool_choice_grammar(const ApiRequest& r,
                                                                ToolSyntax syntax) {
  if (!tools_active(r) || r.tool_choice == "auto") return nullptr;
  return tool_call_grammar(r.tools, r.tool_choice == "function" ? r.tool_choice_name : "", syntax);
}

std::optional<json> tool_call_message(const ApiRequest& r, ToolSyntax syntax,
                                      const std::string& text, std::mt19937_64& rng) {
  if (!tools_active(r)) return std::nullopt;
  std::vector<std::string> names;
  for (const json& t : r.tools) names.push_back(t["function"]["name"].get<std::string>());
  auto parsed = parse_tool_calls(text, syntax, names, rng);
  if (!parsed) return std::nullopt;
  if (!r.parallel_tool_calls) parsed->calls.resize(1);
  json calls = json::array();
  for (const ToolCall& c : parsed->calls) {
    calls.push_back({{"id", c.id},
                     {"type", "function"},
                     {"function", {{"name", c.name}, {"arguments", c.arguments}}}});
  }
  return json{{"role", "assistant"},
              {"content", parsed->content.empty() ? json(nullptr) : json(parsed->content)},
              {"refusal", nullptr},
              {"tool_calls", std::move(calls)}};
}

json stream_tool_delta(const ApiRequest& r, ToolSyntax syntax, int index, const std::string& text,
                       json& finish, std::mt19937_64& rng) {
  json delta;
  if (auto message = tool_call_message(r, syntax, text, rng)) {
    json calls = (*message)["tool_calls"];
    for (size_t k = 0; k < calls.size(); ++k) calls[k]["index"] = k;
    delta = {{"tool_calls", std::move(calls)}};
    if (!(*message)["content"].is_null()) delta["content"] = (*message)["content"];
    finish["finish_reason"] = "tool_calls";
  } else {
    delta = {{"content", text}};
  }
  return {{"index", index},
          {"delta", std::move(delta)},
          {"logprobs", nullptr},
          {"finish_reason", nullptr}};
}

}  // namespace af::server
