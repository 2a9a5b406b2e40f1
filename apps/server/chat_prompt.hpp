#pragma once
// Chat messages to prompt text: the model's own chat template when it ships one, else ChatML.
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "api.hpp"
#include "runtime/chat.hpp"

namespace af::server {

// ChatML (<|im_start|>role\ncontent<|im_end|>\n ... <|im_start|>assistant\n), the format
// af-server uses when the model ships no chat template of its own (as `af-cli chat` does).
std::string render_chatml(const std::vector<ChatMessage>& messages);

class ChatPrompt {
 public:
  // template_source: the model's template (runtime::find_model_chat_template), or nullopt for
  // ChatML. `limits` bound every rendering. Throws af::Error when the template does not parse.
  ChatPrompt(const std::optional<std::string>& template_source, const tok::Tokenizer& tokenizer,
             const tok::TemplateLimits& limits = {});

  // The prompt for the assistant's next turn. A template that refuses the messages
  // (raise_exception, e.g. roles that do not alternate) throws ApiError 400; one that exceeds
  // `limits` throws ApiError 500 with code "template_limit_exceeded", naming the option to raise.
  // `tools`: the request's tools (null: none), given to the template as transformers does.
  std::string render(const std::vector<ChatMessage>& messages,
                     const nlohmann::json& tools = nullptr) const;
  // The same prompt as ids, with BOS added unless the template writes it. Special tokens are
  // parsed only in the template's own text unless parse_special_in_content (transformers'
  // behaviour), so a message cannot forge turns or end generation with "</s>" or role markers.
  // `cancelled` as for Tokenizer::encode: tok::Cancelled passes through. `image_text`: the
  // model's MultimodalLM::chat_image_text (images written into the content as it).
  std::vector<int32_t> encode(const std::vector<ChatMessage>& messages,
                              const tok::Tokenizer& tokenizer, bool parse_special_in_content,
                              const std::function<bool()>& cancelled = {},
                              const nlohmann::json& tools = nullptr,
                              const std::string& image_text = {}) const;
  bool uses_model_template() const { return model_template_; }
  // The template's text (for its tool-call syntax).
  const std::string& source() const { return source_; }

 private:
  std::vector<af::ChatMessage> to_runtime(const std::vector<ChatMessage>& messages) const;
  static runtime::ChatExtras extras(const std::vector<ChatMessage>& messages,
                                    const nlohmann::json& tools);
  runtime::ChatFormatter template_;  // the model's, or ChatML
  bool model_template_;
  std::string source_;
};

}  // namespace af::server
