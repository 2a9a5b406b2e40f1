#pragma once
// The chat prompt of a conversation: the model's Jinja chat template rendered as transformers'
// apply_chat_template renders it (messages, add_generation_prompt, bos_token, eos_token), and
// tokenized so that special-token text typed inside message content stays plain text.
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "af/runtime/session.hpp"
#include "af/tokenizer/chat_template.hpp"

namespace af::runtime {

// ChatML, the fallback llama.cpp uses too, for models that ship no template.
inline constexpr char kChatMlTemplate[] =
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\\n' }}{% endif %}";

// A rendered prompt and where the messages' content lies in it.
struct RenderedChat {
  std::string text;
  std::vector<tok::Tokenizer::TextRange> content;  // byte ranges of text written from content
  bool located = false;  // false: the template changed content beyond trimming; `content` empty
};

// What transformers passes beside the messages' role and content: `tools=` (OpenAI's tool list,
// or null) and per-message fields such as an assistant's tool_calls or a tool message's
// tool_call_id, merged into each message object as transformers passes the message dicts.
struct ChatExtras {
  nlohmann::ordered_json tools = nullptr;
  std::vector<nlohmann::ordered_json> message_fields = {};  // [messages] objects, or empty
};

class ChatFormatter {
 public:
  // `limits` bound every rendering (an exceeded one throws af::Error kOutOfRange).
  ChatFormatter(const std::string& source, const tok::Tokenizer& tokenizer,
                const tok::TemplateLimits& limits = {});
  std::string render(const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                     const ChatExtras& extras = {}) const;
  // render(), plus the content ranges: found by rendering again with each content replaced by a
  // unique marker and matching the two renderings (content may be inserted as is or trimmed).
  RenderedChat render_located(const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                              const ChatExtras& extras = {}) const;

 private:
  tok::ChatTemplate template_;
  tok::TemplateLimits limits_;
  std::string bos_, eos_;
};

// The ids of a rendered chat prompt. parse_special_in_content false (the default everywhere):
// special tokens are parsed only in the template's own text, so "</s>" or a role marker typed
// in a message is plain text; true: the whole text is parsed, as transformers does. When the
// template transformed content so that it cannot be located and some content holds special-token
// text, throws kInvalidArgument (component "chat") rather than guess. `cancelled` as for
// Tokenizer::encode (throws tok::Cancelled).
// `image_text` (MultimodalLM::chat_image_text, written by images_as_text): inside content it is
// parsed as the special token it is, the rest of the content staying plain.
std::vector<int32_t> encode_chat(const tok::Tokenizer& tokenizer, const RenderedChat& rendered,
                                 const std::vector<ChatMessage>& messages, bool add_special,
                                 bool parse_special_in_content,
                                 const std::function<bool()>& cancelled = {},
                                 std::string_view image_text = {});

// `messages` with each image written into its message's content as `image_text`, the parts
// (image, or non-empty text, in content order) joined by "\n" as MiniCPM-V's chat() joins
// them; images are dropped from the messages. Throws af::Error kInvalidArgument (component
// "chat") for a message whose text holds `image_text` itself.
std::vector<ChatMessage> images_as_text(const std::vector<ChatMessage>& messages,
                                        const std::string& image_text);

// The template shipped with the model at model_path, if any.
std::optional<std::string> find_model_chat_template(const std::string& model_path);

}  // namespace af::runtime
