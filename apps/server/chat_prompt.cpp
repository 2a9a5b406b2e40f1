#include "chat_prompt.hpp"

#include <utility>

#include "af/core/error.hpp"

namespace af::server {

std::string render_chatml(const std::vector<ChatMessage>& messages) {
  std::string text;
  for (const ChatMessage& m : messages) {
    // "developer" is OpenAI's newer name for the system role.
    const std::string& role = m.role == "developer" ? std::string("system") : m.role;
    text += "<|im_start|>" + role + "\n" + m.content + "<|im_end|>\n";
  }
  return text + "<|im_start|>assistant\n";
}

namespace {

// The af-server option that sets the TemplateLimits field an error message names.
std::string limit_option(const std::string& message) {
  static const std::pair<const char*, const char*> kOptions[] = {
      {"TemplateLimits::max_steps", "--template-max-steps"},
      {"TemplateLimits::max_memory_bytes", "--template-max-memory"},
      {"TemplateLimits::max_string_bytes", "--template-max-string-bytes"},
      {"TemplateLimits::max_depth", "--template-max-depth"},
  };
  for (const auto& [field, option] : kOptions) {
    if (message.find(field) != std::string::npos) return option;
  }
  return "--template-max-*";
}

// A template that outgrew the operator's budget is the server's problem (500, with the option
// that raises it); one that refused the messages (raise_exception, type errors) is the client's.
[[noreturn]] void throw_template_error(const Error& e) {
  if (e.code() == ErrorCode::kOutOfRange) {
    throw ApiError(
        500,
        std::string("The model's chat template exceeded its rendering budget (af-server ") +
            limit_option(e.what()) + "): " + e.what(),
        "server_error", "", "template_limit_exceeded");
  }
  throw ApiError(400, std::string("The model's chat template rejected the messages: ") + e.what(),
                 "invalid_request_error", "messages", "invalid_value");
}

}  // namespace

ChatPrompt::ChatPrompt(const std::optional<std::string>& template_source,
                       const tok::Tokenizer& tokenizer, const tok::TemplateLimits& limits)
    : template_(template_source.value_or(runtime::kChatMlTemplate), tokenizer, limits),
      model_template_(template_source.has_value()),
      source_(template_source.value_or(runtime::kChatMlTemplate)) {}

std::vector<af::ChatMessage> ChatPrompt::to_runtime(
    const std::vector<ChatMessage>& messages) const {
  std::vector<af::ChatMessage> list;
  for (const ChatMessage& m : messages) {
    // The template needs only how many images and audios a message has (placeholders, not
    // pixels or samples).
    list.push_back({m.role == "developer" ? "system" : m.role, m.content,
                    std::vector<modalities::Image>(m.image_urls.size()), m.image_offsets,
                    std::vector<modalities::Audio>(m.audios.size()), m.audio_offsets});
  }
  return list;
}

runtime::ChatExtras ChatPrompt::extras(const std::vector<ChatMessage>& messages,
                                       const nlohmann::json& tools) {
  runtime::ChatExtras out;
  out.tools = tools;
  for (const ChatMessage& m : messages) {
    nlohmann::ordered_json fields = nlohmann::ordered_json::object();
    if (!m.tool_calls.is_null()) {
      // Templates index the arguments as a mapping (transformers' convention): OpenAI's JSON
      // string is given parsed, as llama.cpp's server does.
      nlohmann::ordered_json calls = m.tool_calls;
      for (auto& call : calls) {
        auto& args = call["function"]["arguments"];
        if (args.is_string()) {
          auto parsed = nlohmann::ordered_json::parse(args.get<std::string>(), nullptr, false);
          if (!parsed.is_discarded()) args = std::move(parsed);
        }
      }
      fields["tool_calls"] = std::move(calls);
    }
    if (!m.tool_call_id.empty()) fields["tool_call_id"] = m.tool_call_id;
    if (!m.name.empty()) fields["name"] = m.name;
    out.message_fields.push_back(std::move(fields));
  }
  return out;
}

std::string ChatPrompt::render(const std::vector<ChatMessage>& messages,
                               const nlohmann::json& tools) const {
  try {
    return template_.render(to_runtime(messages), /*add_generation_prompt=*/true,
                            extras(messages, tools));
  } catch (const Error& e) {
    throw_template_error(e);
  }
}

std::vector<int32_t> ChatPrompt::encode(const std::vector<ChatMessage>& messages,
                                        const tok::Tokenizer& tokenizer,
                                        bool parse_special_in_content,
                                        const std::function<bool()>& cancelled,
                                        const nlohmann::json& tools,
                                        const std::string& image_text) const {
  std::vector<af::ChatMessage> list = to_runtime(messages);
  if (!image_text.empty()) {
    try {
      list = runtime::images_as_text(list, image_text);
    } catch (const Error& e) {
      throw ApiError(400, e.what(), "invalid_request_error", "messages", "invalid_value");
    }
  }
  runtime::RenderedChat rendered;
  try {
    rendered =
        template_.render_located(list, /*add_generation_prompt=*/true, extras(messages, tools));
  } catch (const Error& e) {
    throw_template_error(e);
  }
  // Templates usually write the BOS token themselves; do not add a second one.
  const int32_t bos = tokenizer.bos_id();
  const bool has_bos = bos >= 0 && rendered.text.starts_with(tokenizer.token_piece(bos));
  try {
    return runtime::encode_chat(tokenizer, rendered, list, /*add_special=*/!has_bos,
                                parse_special_in_content, cancelled, image_text);
  } catch (const tok::Cancelled&) {
    throw;
  } catch (const Error& e) {
    throw ApiError(400, e.what(), "invalid_request_error", "messages", "invalid_value");
  }
}

}  // namespace af::server
