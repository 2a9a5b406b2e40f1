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
                       const tok::Tokenizer& tokenizer) {
  if (template_source) template_.emplace(*template_source, tokenizer);
}

std::string ChatPrompt::render(const std::vector<ChatMessage>& messages) const {
  if (!template_) return render_chatml(messages);
  std::vector<af::ChatMessage> list;
  for (const ChatMessage& m : messages) {
    list.push_back({m.role == "developer" ? "system" : m.role, m.content});
  }
  try {
    return template_->render(list, /*add_generation_prompt=*/true);
  } catch (const Error& e) {
    throw ApiError(400, std::string("The model's chat template rejected the messages: ") + e.what(),
                   "invalid_request_error", "messages", "invalid_value");
  }
}

}  // namespace af::server
