#include "chat_prompt.hpp"

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

}  // namespace af::server
