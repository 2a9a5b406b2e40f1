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

ChatPrompt::ChatPrompt(const std::optional<std::string>& template_source, std::string bos_token,
                       std::string eos_token)
    : bos_token_(std::move(bos_token)), eos_token_(std::move(eos_token)) {
  if (template_source) template_ = tok::ChatTemplate::parse(*template_source, "chat template");
}

std::string ChatPrompt::render(const std::vector<ChatMessage>& messages) const {
  if (!template_) return render_chatml(messages);
  nlohmann::ordered_json list = nlohmann::ordered_json::array();
  for (const ChatMessage& m : messages) {
    list.push_back({{"role", m.role == "developer" ? "system" : m.role}, {"content", m.content}});
  }
  nlohmann::ordered_json context = {{"messages", list},
                                    {"add_generation_prompt", true},
                                    {"bos_token", bos_token_},
                                    {"eos_token", eos_token_}};
  try {
    return template_->render(context);
  } catch (const Error& e) {
    throw ApiError(400, std::string("The model's chat template rejected the messages: ") + e.what(),
                   "invalid_request_error", "messages", "invalid_value");
  }
}

}  // namespace af::server
