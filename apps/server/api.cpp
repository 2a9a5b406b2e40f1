#include "api.hpp"

#include <cmath>
#include <limits>
#include <sstream>

#include "af/core/error.hpp"
#include "io/json_util.hpp"

namespace af::server {

using nlohmann::json;

json error_body(const ApiError& error) {
  json e = {{"message", error.message}, {"type", error.type}};
  e["param"] = error.param.empty() ? json(nullptr) : json(error.param);
  e["code"] = error.code.empty() ? json(nullptr) : json(error.code);
  return json{{"error", e}};
}

namespace {

const char* type_name(const json& v) {
  switch (v.type()) {
    case json::value_t::null:
      return "null";
    case json::value_t::boolean:
      return "a boolean";
    case json::value_t::string:
      return "a string";
    case json::value_t::array:
      return "an array";
    case json::value_t::object:
      return "an object";
    case json::value_t::number_float:
      return "a decimal";
    default:
      return "an integer";
  }
}

[[noreturn]] void invalid_type(const std::string& param, const char* expected, const json& got) {
  throw ApiError(400,
                 "Invalid type for '" + param + "': expected " + expected + ", but got " +
                     type_name(got) + " instead.",
                 "invalid_request_error", param, "invalid_type");
}

[[noreturn]] void invalid_value(const std::string& param, const std::string& why) {
  throw ApiError(400, "Invalid value for '" + param + "': " + why, "invalid_request_error", param,
                 "invalid_value");
}

// Optional fields: absent or null means "use the default".
const json* field(const json& body, const char* name) {
  auto it = body.find(name);
  if (it == body.end() || it->is_null()) return nullptr;
  return &*it;
}

double get_number(const json& body, const char* name, double fallback, double lo, double hi) {
  const json* v = field(body, name);
  if (!v) return fallback;
  if (!v->is_number()) invalid_type(name, "a number", *v);
  const double x = v->get<double>();
  if (!std::isfinite(x) || x < lo || x > hi) {
    std::ostringstream why;
    why << x << " is outside [" << lo << ", " << hi << "].";
    invalid_value(name, why.str());
  }
  return x;
}

int64_t get_integer(const json& body, const char* name, int64_t fallback, int64_t lo, int64_t hi) {
  const json* v = field(body, name);
  if (!v) return fallback;
  int64_t x = 0;
  if (v->is_number_integer()) {
    if (v->is_number_unsigned() &&
        v->get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      invalid_value(name, "too large.");
    }
    x = v->get<int64_t>();
  } else if (v->is_number_float() && std::floor(v->get<double>()) == v->get<double>() &&
             std::fabs(v->get<double>()) < 9e15) {
    x = static_cast<int64_t>(v->get<double>());  // 16.0 is an integer to JavaScript clients
  } else {
    invalid_type(name, "an integer", *v);
  }
  if (x < lo || x > hi) {
    invalid_value(name, std::to_string(x) + " is outside [" + std::to_string(lo) + ", " +
                            std::to_string(hi) + "].");
  }
  return x;
}

bool get_bool(const json& body, const char* name, bool fallback) {
  const json* v = field(body, name);
  if (!v) return fallback;
  if (!v->is_boolean()) invalid_type(name, "a boolean", *v);
  return v->get<bool>();
}

// An "image_url" (or "video_url") part's url: {"image_url": {"url": "..."}} (OpenAI) or
// {"image_url": "..."}; `key` is the part's type.
std::string media_part_url(const json& part, const std::string& p, const std::string& key) {
  auto it = part.find(key);
  const std::string name = p + "." + key;
  if (it == part.end()) {
    throw ApiError(400, "Missing required parameter: '" + name + "'.", "invalid_request_error",
                   name, "missing_required_parameter");
  }
  if (it->is_string()) return it->get<std::string>();
  if (!it->is_object()) invalid_type(name, "an object", *it);
  auto url = it->find("url");
  if (url == it->end()) {
    throw ApiError(400, "Missing required parameter: '" + name + ".url'.", "invalid_request_error",
                   name + ".url", "missing_required_parameter");
  }
  if (!url->is_string()) invalid_type(name + ".url", "a string", *url);
  return url->get<std::string>();
}

// An "input_audio" part: {"input_audio": {"data": "<base64>", "format": "wav" | "mp3"}}.
ChatMessage::InputAudio audio_part(const json& part, const std::string& p) {
  auto it = part.find("input_audio");
  if (it == part.end()) {
    throw ApiError(400, "Missing required parameter: '" + p + ".input_audio'.",
                   "invalid_request_error", p + ".input_audio", "missing_required_parameter");
  }
  if (!it->is_object()) invalid_type(p + ".input_audio", "an object", *it);
  ChatMessage::InputAudio audio;
  for (const char* key : {"data", "format"}) {
    auto v = it->find(key);
    const std::string name = p + ".input_audio." + key;
    if (v == it->end()) {
      throw ApiError(400, "Missing required parameter: '" + name + "'.", "invalid_request_error",
                     name, "missing_required_parameter");
    }
    if (!v->is_string()) invalid_type(name, "a string", *v);
    (std::string(key) == "data" ? audio.data : audio.format) = v->get<std::string>();
  }
  if (audio.format != "wav" && audio.format != "mp3") {
    throw ApiError(400,
                   "Invalid value for '" + p + ".input_audio.format': '" + audio.format +
                       "'. Supported values are: 'wav' and 'mp3'.",
                   "invalid_request_error", p + ".input_audio.format", "invalid_value");
  }
  return audio;
}

std::string content_text(const json& content, const std::string& param, ChatMessage& message) {
  if (content.is_string()) return content.get<std::string>();
  if (!content.is_array()) invalid_type(param, "a string or an array of content parts", content);
  std::string text;
  for (size_t i = 0; i < content.size(); ++i) {
    const std::string p = param + "[" + std::to_string(i) + "]";
    const json& part = content[i];
    if (!part.is_object()) invalid_type(p, "an object", part);
    auto type = part.find("type");
    if (type == part.end() || !type->is_string()) {
      throw ApiError(400, "Missing required parameter: '" + p + ".type'.", "invalid_request_error",
                     p + ".type", "missing_required_parameter");
    }
    if (*type == "image_url") {
      message.image_urls.push_back(media_part_url(part, p, "image_url"));
      message.image_offsets.push_back(text.size());
      continue;
    }
    if (*type == "video_url") {
      message.video_urls.push_back(media_part_url(part, p, "video_url"));
      message.video_offsets.push_back(text.size());
      continue;
    }
    if (*type == "input_audio") {
      message.audios.push_back(audio_part(part, p));
      message.audio_offsets.push_back(text.size());
      continue;
    }
    if (*type != "text") {
      throw ApiError(
          400,
          "Content parts of type '" + type->get<std::string>() +
              "' are not supported; only 'text', 'image_url', 'video_url' and 'input_audio' "
              "are.",
          "invalid_request_error", p + ".type", "unsupported_value");
    }
    auto t = part.find("text");
    if (t == part.end() || !t->is_string()) {
      if (t == part.end()) {
        throw ApiError(400, "Missing required parameter: '" + p + ".text'.",
                       "invalid_request_error", p + ".text", "missing_required_parameter");
      }
      invalid_type(p + ".text", "a string", *t);
    }
    text += t->get<std::string>();
  }
  return text;
}

void parse_tool_fields(const json& m, const std::string& p, ChatMessage& message);

std::vector<ChatMessage> parse_messages(const json& body) {
  auto it = body.find("messages");
  if (it == body.end()) {
    throw ApiError(400, "Missing required parameter: 'messages'.", "invalid_request_error",
                   "messages", "missing_required_parameter");
  }
  if (!it->is_array()) invalid_type("messages", "an array", *it);
  if (it->empty()) {
    throw ApiError(400, "Invalid 'messages': empty array. Expected an array with minimum length 1.",
                   "invalid_request_error", "messages", "empty_array");
  }
  std::vector<ChatMessage> messages;
  for (size_t i = 0; i < it->size(); ++i) {
    const std::string p = "messages[" + std::to_string(i) + "]";
    const json& m = (*it)[i];
    if (!m.is_object()) invalid_type(p, "an object", m);
    auto role = m.find("role");
    if (role == m.end()) {
      throw ApiError(400, "Missing required parameter: '" + p + ".role'.", "invalid_request_error",
                     p + ".role", "missing_required_parameter");
    }
    if (!role->is_string()) invalid_type(p + ".role", "a string", *role);
    const std::string r = role->get<std::string>();
    if (r != "system" && r != "developer" && r != "user" && r != "assistant" && r != "tool") {
      invalid_value(p + ".role", "'" + r +
                                     "' is not one of 'system', 'developer', 'user', "
                                     "'assistant', 'tool'.");
    }
    ChatMessage message{r, {}};
    parse_tool_fields(m, p, message);
    auto content = m.find("content");
    if (content == m.end() || content->is_null()) {
      // An assistant turn that only called tools has no content.
      if (r != "assistant") {
        throw ApiError(400, "Missing required parameter: '" + p + ".content'.",
                       "invalid_request_error", p + ".content", "missing_required_parameter");
      }
    } else {
      message.content = content_text(*content, p + ".content", message);
    }
    messages.push_back(std::move(message));
  }
  return messages;
}

// An assistant message's tool_calls and a tool message's tool_call_id (and any message's name).
void parse_tool_fields(const json& m, const std::string& p, ChatMessage& message) {
  if (auto calls = m.find("tool_calls"); calls != m.end() && !calls->is_null()) {
    if (!calls->is_array()) invalid_type(p + ".tool_calls", "an array", *calls);
    for (size_t k = 0; k < calls->size(); ++k) {
      const std::string q = p + ".tool_calls[" + std::to_string(k) + "]";
      const json& c = (*calls)[k];
      if (!c.is_object()) invalid_type(q, "an object", c);
      auto f = c.find("function");
      if (f == c.end() || !f->is_object() || !f->contains("name") || !(*f)["name"].is_string()) {
        throw ApiError(400, "Missing required parameter: '" + q + ".function.name'.",
                       "invalid_request_error", q + ".function.name", "missing_required_parameter");
      }
    }
    message.tool_calls = *calls;
  }
  for (const char* key : {"tool_call_id", "name"}) {
    auto v = m.find(key);
    if (v == m.end() || v->is_null()) continue;
    if (!v->is_string()) invalid_type(p + "." + key, "a string", *v);
    (std::string(key) == "name" ? message.name : message.tool_call_id) = v->get<std::string>();
  }
}

// tools, tool_choice, parallel_tool_calls (chat).
void parse_tools(const json& body, ApiRequest& r) {
  if (const json* tools = field(body, "tools")) {
    if (!tools->is_array()) invalid_type("tools", "an array", *tools);
    for (size_t i = 0; i < tools->size(); ++i) {
      const std::string p = "tools[" + std::to_string(i) + "]";
      const json& t = (*tools)[i];
      if (!t.is_object()) invalid_type(p, "an object", t);
      if (t.value("type", "") != "function") {
        invalid_value(p + ".type", "only 'function' tools are supported.");
      }
      auto f = t.find("function");
      if (f == t.end() || !f->is_object()) {
        throw ApiError(400, "Missing required parameter: '" + p + ".function'.",
                       "invalid_request_error", p + ".function", "missing_required_parameter");
      }
      auto name = f->find("name");
      if (name == f->end() || !name->is_string() || name->get<std::string>().empty()) {
        throw ApiError(400, "Missing required parameter: '" + p + ".function.name'.",
                       "invalid_request_error", p + ".function.name", "missing_required_parameter");
      }
      if (auto params = f->find("parameters");
          params != f->end() && !params->is_object() && !params->is_null()) {
        invalid_type(p + ".function.parameters", "an object", *params);
      }
    }
    if (!tools->empty()) r.tools = *tools;
  }
  if (const json* choice = field(body, "tool_choice")) {
    if (choice->is_string()) {
      r.tool_choice = choice->get<std::string>();
      if (r.tool_choice != "none" && r.tool_choice != "auto" && r.tool_choice != "required") {
        invalid_value("tool_choice", "'" + r.tool_choice +
                                         "' is not one of 'none', 'auto', 'required', or a "
                                         "{\"type\": \"function\"} object.");
      }
    } else if (choice->is_object() && choice->contains("function") &&
               (*choice)["function"].is_object() &&
               (*choice)["function"].value("name", json()).is_string()) {
      r.tool_choice = "function";
      r.tool_choice_name = (*choice)["function"]["name"].get<std::string>();
    } else {
      invalid_type("tool_choice", "a string or {\"type\": \"function\", \"function\": {\"name\"}}",
                   *choice);
    }
    if (r.tool_choice != "none" && r.tool_choice != "auto" && r.tools.is_null()) {
      invalid_value("tool_choice", "tool_choice needs tools.");
    }
  }
  if (const json* parallel = field(body, "parallel_tool_calls")) {
    if (!parallel->is_boolean()) invalid_type("parallel_tool_calls", "a boolean", *parallel);
    r.parallel_tool_calls = parallel->get<bool>();
  }
}

// response_format json_schema: {"json_schema": {"name": required, "schema": optional,
// "strict": optional bool, "description"}}, as OpenAI checks it. Returns the schema.
json parse_json_schema_format(const json& format) {
  const std::string p = "response_format.json_schema";
  auto js = format.find("json_schema");
  if (js == format.end()) {
    throw ApiError(400, "Missing required parameter: '" + p + "'.", "invalid_request_error", p,
                   "missing_required_parameter");
  }
  if (!js->is_object()) invalid_type(p, "an object", *js);
  auto name = js->find("name");
  if (name == js->end()) {
    throw ApiError(400, "Missing required parameter: '" + p + ".name'.", "invalid_request_error",
                   p + ".name", "missing_required_parameter");
  }
  if (!name->is_string()) invalid_type(p + ".name", "a string", *name);
  if (auto strict = js->find("strict");
      strict != js->end() && !strict->is_null() && !strict->is_boolean()) {
    invalid_type(p + ".strict", "a boolean", *strict);
  }
  auto schema = js->find("schema");
  if (schema == js->end() || schema->is_null()) return json::object();
  if (!schema->is_object() && !schema->is_boolean()) {
    invalid_type(p + ".schema", "an object", *schema);
  }
  return *schema;
}

void parse_prompt(const json& body, ApiRequest& request, const ApiLimits& limits) {
  auto it = body.find("prompt");
  if (it == body.end() || it->is_null()) {
    throw ApiError(400, "Missing required parameter: 'prompt'.", "invalid_request_error", "prompt",
                   "missing_required_parameter");
  }
  const json& p = *it;
  auto ids_of = [](const json& arr, const std::string& param) {
    std::vector<int32_t> ids;
    for (const json& v : arr) {
      if (!v.is_number_integer()) invalid_type(param, "an array of token ids", v);
      const int64_t id = v.get<int64_t>();
      if (id < 0 || id > std::numeric_limits<int32_t>::max()) {
        invalid_value(param, "token id " + std::to_string(id) + " is out of range.");
      }
      ids.push_back(static_cast<int32_t>(id));
    }
    return ids;
  };
  if (p.is_string()) {
    request.prompt_texts.push_back(p.get<std::string>());
  } else if (p.is_array() && !p.empty() && p[0].is_number()) {
    request.prompt_ids.push_back(ids_of(p, "prompt"));
  } else if (p.is_array() && !p.empty()) {
    if (static_cast<int>(p.size()) > limits.max_prompts) {
      invalid_value("prompt",
                    "at most " + std::to_string(limits.max_prompts) + " prompts per request.");
    }
    for (size_t i = 0; i < p.size(); ++i) {
      const std::string param = "prompt[" + std::to_string(i) + "]";
      if (p[i].is_string() && request.prompt_ids.empty()) {
        request.prompt_texts.push_back(p[i].get<std::string>());
      } else if (p[i].is_array() && request.prompt_texts.empty()) {
        request.prompt_ids.push_back(ids_of(p[i], param));
      } else {
        invalid_type(param, "a string, or an array of token ids like the other prompts", p[i]);
      }
    }
  } else {
    invalid_type("prompt", "a string, an array of strings or an array of token ids", p);
  }
}

std::vector<std::string> parse_stop(const json& body, const ApiLimits& limits) {
  const json* v = field(body, "stop");
  if (!v) return {};
  std::vector<std::string> stop;
  if (v->is_string()) {
    stop.push_back(v->get<std::string>());
  } else if (v->is_array()) {
    if (static_cast<int>(v->size()) > limits.max_stop) {
      invalid_value("stop", "at most " + std::to_string(limits.max_stop) + " stop strings.");
    }
    for (const json& s : *v) {
      if (!s.is_string()) invalid_type("stop", "a string or an array of strings", s);
      stop.push_back(s.get<std::string>());
    }
  } else {
    invalid_type("stop", "a string or an array of strings", *v);
  }
  std::erase_if(stop, [](const std::string& s) { return s.empty(); });
  return stop;
}

std::vector<std::pair<int32_t, float>> parse_logit_bias(const json& body) {
  const json* v = field(body, "logit_bias");
  if (!v) return {};
  if (!v->is_object()) invalid_type("logit_bias", "an object", *v);
  std::vector<std::pair<int32_t, float>> bias;
  for (const auto& [key, value] : v->items()) {
    int64_t id = -1;
    bool digits = !key.empty() && key.size() <= 10;
    for (char c : key) digits = digits && c >= '0' && c <= '9';
    if (digits) id = std::stoll(key);
    if (!digits || id > std::numeric_limits<int32_t>::max()) {
      invalid_value("logit_bias", "the key '" + key + "' is not a token id.");
    }
    if (!value.is_number()) invalid_type("logit_bias." + key, "a number", value);
    const double b = value.get<double>();
    if (!(b >= -100 && b <= 100)) invalid_value("logit_bias." + key, "outside [-100, 100].");
    bias.emplace_back(static_cast<int32_t>(id), static_cast<float>(b));
  }
  return bias;
}

}  // namespace

json parse_json_body(std::string_view text, int max_depth, size_t max_elements) {
  json body;
  try {
    body = io::detail::parse_json(text, "request body", "server",
                                  {.max_depth = max_depth, .max_elements = max_elements});
  } catch (const Error& e) {
    throw ApiError(
        400, std::string("We could not parse the JSON body of your request. (") + e.what() + ")",
        "invalid_request_error", "", "invalid_json");
  }
  if (!body.is_object()) {
    throw ApiError(400, "The request body must be a JSON object.", "invalid_request_error", "",
                   "invalid_json");
  }
  return body;
}

ApiRequest parse_request(Endpoint endpoint, std::string_view body_text, const ApiLimits& limits) {
  const json body = parse_json_body(body_text, limits.max_json_depth, limits.max_json_elements);
  ApiRequest r;
  r.endpoint = endpoint;
  if (const json* model = field(body, "model")) {
    if (!model->is_string()) invalid_type("model", "a string", *model);
    r.model = model->get<std::string>();
  }
  if (endpoint == Endpoint::kChatCompletions) {
    r.messages = parse_messages(body);
    parse_tools(body, r);
  } else {
    parse_prompt(body, r, limits);
    if (get_bool(body, "echo", false)) {
      throw ApiError(400, "'echo' is not supported by this server.", "invalid_request_error",
                     "echo", "unsupported_parameter");
    }
    get_integer(body, "best_of", 1, 1, 1);  // several candidates per choice: not supported
  }

  constexpr int64_t kMaxInt = std::numeric_limits<int32_t>::max();
  const int64_t max_tokens = get_integer(body, "max_tokens", -1, 1, kMaxInt);
  r.max_tokens = get_integer(body, "max_completion_tokens", max_tokens, 1, kMaxInt);
  if (endpoint == Endpoint::kCompletions && !field(body, "max_tokens")) {
    r.max_tokens = 16;  // OpenAI's default for legacy completions
  }

  ops::SamplingParams& s = r.sampling;
  s.temperature = static_cast<float>(get_number(body, "temperature", 1.0, 0.0, 2.0));
  s.top_p = static_cast<float>(get_number(body, "top_p", 1.0, 0.0, 1.0));
  if (s.top_p == 0.0f) s.top_p = std::numeric_limits<float>::min();  // OpenAI allows 0: argmax
  s.top_k = static_cast<int32_t>(get_integer(body, "top_k", 0, -1, kMaxInt));
  if (s.top_k < 0) s.top_k = 0;  // llama.cpp and vLLM use -1 for "off"
  s.min_p = static_cast<float>(get_number(body, "min_p", 0.0, 0.0, 1.0));
  s.typical_p = static_cast<float>(get_number(body, "typical_p", 1.0, 1e-6, 1.0));
  s.presence_penalty = static_cast<float>(get_number(body, "presence_penalty", 0.0, -2.0, 2.0));
  s.frequency_penalty = static_cast<float>(get_number(body, "frequency_penalty", 0.0, -2.0, 2.0));
  s.repetition_penalty =
      static_cast<float>(get_number(body, "repetition_penalty", 1.0, 1e-6, 100.0));
  if (const json* seed = field(body, "seed")) {
    if (!seed->is_number_integer()) invalid_type("seed", "an integer", *seed);
    r.has_seed = true;
    s.seed = seed->is_number_unsigned() ? seed->get<uint64_t>()
                                        : static_cast<uint64_t>(seed->get<int64_t>());
  }
  s.logit_bias = parse_logit_bias(body);
  r.stop = parse_stop(body, limits);
  r.n = static_cast<int>(get_integer(body, "n", 1, 1, limits.max_n));

  if (endpoint == Endpoint::kChatCompletions) {
    r.logprobs = get_bool(body, "logprobs", false);
    s.top_logprobs =
        static_cast<int32_t>(get_integer(body, "top_logprobs", 0, 0, ops::kMaxTopLogprobs));
    if (s.top_logprobs > 0 && !r.logprobs) {
      throw ApiError(400, "Invalid value for 'top_logprobs': 'logprobs' must be set to true.",
                     "invalid_request_error", "top_logprobs", "invalid_value");
    }
  } else if (const json* lp = field(body, "logprobs")) {
    // Legacy completions: an integer, how many alternatives per token.
    if (lp->is_boolean()) invalid_type("logprobs", "an integer", *lp);
    s.top_logprobs =
        static_cast<int32_t>(get_integer(body, "logprobs", 0, 0, ops::kMaxTopLogprobs));
    r.logprobs = true;
  }

  r.stream = get_bool(body, "stream", false);
  if (const json* opts = field(body, "stream_options")) {
    if (!opts->is_object()) invalid_type("stream_options", "an object", *opts);
    if (!r.stream) {
      throw ApiError(400,
                     "The 'stream_options' parameter is only allowed when 'stream' is "
                     "enabled.",
                     "invalid_request_error", "stream_options", "invalid_value");
    }
    r.include_usage = get_bool(*opts, "include_usage", false);
  }
  if (const json* format = field(body, "response_format")) {
    if (!format->is_object()) invalid_type("response_format", "an object", *format);
    auto type = format->find("type");
    if (type == format->end() || !type->is_string()) {
      throw ApiError(400, "Missing required parameter: 'response_format.type'.",
                     "invalid_request_error", "response_format.type", "missing_required_parameter");
    }
    if (*type == "json_object") {
      r.json_object = true;
    } else if (*type == "json_schema") {
      r.json_schema = parse_json_schema_format(*format);
    } else if (*type != "text") {
      throw ApiError(400,
                     "Invalid value for 'response_format.type': '" + type->get<std::string>() +
                         "' is not supported; use 'text', 'json_object' or 'json_schema'.",
                     "invalid_request_error", "response_format.type", "unsupported_value");
    }
  }
  return r;
}

}  // namespace af::server
