#include "runtime/chat.hpp"

#include <nlohmann/json.hpp>

namespace af::runtime {

namespace {
std::string piece_or_empty(const tok::Tokenizer& tokenizer, int32_t id) {
  return id >= 0 ? tokenizer.token_piece(id) : std::string();
}
}  // namespace

ChatFormatter::ChatFormatter(const std::string& source, const tok::Tokenizer& tokenizer)
    : template_(tok::ChatTemplate::parse(source, "chat template")),
      bos_(piece_or_empty(tokenizer, tokenizer.bos_id())),
      eos_(piece_or_empty(tokenizer, tokenizer.eos_id())) {}

std::string ChatFormatter::render(const std::vector<ChatMessage>& messages,
                                  bool add_generation_prompt) const {
  nlohmann::ordered_json context;
  context["messages"] = nlohmann::ordered_json::array();
  for (const ChatMessage& m : messages) {
    context["messages"].push_back({{"role", m.role}, {"content", m.content}});
  }
  // As transformers' apply_chat_template, which always passes these (templates test both
  // `tools is defined` and `tools is not none`).
  context["tools"] = nullptr;
  context["documents"] = nullptr;
  context["add_generation_prompt"] = add_generation_prompt;
  context["bos_token"] = bos_;
  context["eos_token"] = eos_;
  return template_.render(context);
}

std::optional<std::string> find_model_chat_template(const std::string& model_path) {
  return tok::find_chat_template(model_path);
}

}  // namespace af::runtime
