#pragma once
// The chat prompt of a conversation: the model's Jinja chat template rendered as transformers'
// apply_chat_template renders it (messages, add_generation_prompt, bos_token, eos_token).
#include <optional>
#include <string>
#include <vector>

#include "af/runtime/session.hpp"
#include "af/tokenizer/chat_template.hpp"

namespace af::runtime {

class ChatFormatter {
 public:
  ChatFormatter(const std::string& source, const tok::Tokenizer& tokenizer);
  std::string render(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const;

 private:
  tok::ChatTemplate template_;
  std::string bos_, eos_;
};

// The template shipped with the model at model_path, if any.
std::optional<std::string> find_model_chat_template(const std::string& model_path);

}  // namespace af::runtime
