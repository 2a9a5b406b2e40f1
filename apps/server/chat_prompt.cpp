#include "chat_prompt.hpp"

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

ChatPrompt::ChatPrompt(const std::optional<std::string>& template_source,
                       const tok::Tokenizer& tokenizer)
    : template_(template_source.value_or(runtime::kChatMlTemplate), tokenizer),
      model_template_(template_source.has_value()) {}

std::vector<af::ChatMessage> ChatPrompt::to_runtime(
    const std::vector<ChatMessage>& messages) const {
  std::vector<af::ChatMessage> list;
  for (const ChatMessage& m : messages) {
    list.push_back({m.role == "developer" ? "system" : m.role, m.content});
  }
  return list;
}

std::string ChatPrompt::render(const std::vector<ChatMessage>& messages) const {
  try {
    return template_.render(to_runtime(messages), /*add_generation_prompt=*/true);
  } catch (const Error& e) {
    throw ApiError(400, std::string("The model's chat template rejected the messages: ") + e.what(),
                   "invalid_request_error", "messages", "invalid_value");
  }
}

std::vector<int32_t> ChatPrompt::encode(const std::vector<ChatMessage>& messages,
                                        const tok::Tokenizer& tokenizer,
                                        bool parse_special_in_content,
                                        const std::function<bool()>& cancelled) const {
  const std::vector<af::ChatMessage> list = to_runtime(messages);
  runtime::RenderedChat rendered;
  try {
    rendered = template_.render_located(list, /*add_generation_prompt=*/true);
  } catch (const Error& e) {
    throw ApiError(400, std::string("The model's chat template rejected the messages: ") + e.what(),
                   "invalid_request_error", "messages", "invalid_value");
  }
  // Templates usually write the BOS token themselves; do not add a second one.
  const int32_t bos = tokenizer.bos_id();
  const bool has_bos = bos >= 0 && rendered.text.starts_with(tokenizer.token_piece(bos));
  try {
    return runtime::encode_chat(tokenizer, rendered, list, /*add_special=*/!has_bos,
                                parse_special_in_content, cancelled);
  } catch (const tok::Cancelled&) {
    throw;
  } catch (const Error& e) {
    throw ApiError(400, e.what(), "invalid_request_error", "messages", "invalid_value");
  }
}

}  // namespace af::server
