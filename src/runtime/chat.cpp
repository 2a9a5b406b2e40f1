#include "runtime/chat.hpp"

#include <algorithm>
#include <charconv>

#include <nlohmann/json.hpp>

#include "af/core/error.hpp"

namespace af::runtime {

namespace {
std::string piece_or_empty(const tok::Tokenizer& tokenizer, int32_t id) {
  return id >= 0 ? tokenizer.token_piece(id) : std::string();
}

// Content markers: private-use characters that no template writes, around the message index.
constexpr std::string_view kMarkOpen = "\xEE\x80\x80";   // U+E000
constexpr std::string_view kMarkClose = "\xEE\x80\x81";  // U+E001

std::string marker(size_t index) {
  return std::string(kMarkOpen) + std::to_string(index) + std::string(kMarkClose);
}

// One part of a marked rendering: template text, or the content of message `index`.
struct Part {
  std::string_view text;
  size_t index = SIZE_MAX;  // SIZE_MAX: template text
};

std::vector<Part> split_marked(std::string_view marked, size_t n_messages) {
  std::vector<Part> parts;
  size_t pos = 0;
  while (pos <= marked.size()) {
    const size_t open = marked.find(kMarkOpen, pos);
    if (open == std::string_view::npos) {
      parts.push_back({marked.substr(pos)});
      break;
    }
    const size_t digits = open + kMarkOpen.size();
    size_t index = 0;
    const auto r = std::from_chars(marked.data() + digits, marked.data() + marked.size(), index);
    const size_t after = static_cast<size_t>(r.ptr - marked.data());
    if (r.ec != std::errc() || index >= n_messages ||
        marked.compare(after, kMarkClose.size(), kMarkClose) != 0) {
      return {};  // the template cut or changed a marker
    }
    parts.push_back({marked.substr(pos, open - pos)});
    parts.push_back({{}, index});
    pos = after + kMarkClose.size();
  }
  return parts;
}

std::string_view trim(std::string_view s) {
  const auto space = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; };
  while (!s.empty() && space(s.front())) s.remove_prefix(1);
  while (!s.empty() && space(s.back())) s.remove_suffix(1);
  return s;
}

// Whether a message's images or audio sit inside or after its text (not all before it).
bool interleaved(const ChatMessage& m) {
  for (const std::vector<size_t>* offsets : {&m.image_offsets, &m.audio_offsets})
    for (size_t offset : *offsets)
      if (offset > 0) return true;
  return false;
}

void check_offsets(const ChatMessage& m, size_t index, const std::vector<size_t>& offsets,
                   size_t count, const char* kind) {
  if (offsets.empty()) return;
  AF_CHECK(offsets.size() == count, ErrorCode::kInvalidArgument, "chat", "message ", index, ": ",
           offsets.size(), " ", kind, " offsets for ", count, " ", kind, "s");
  for (size_t i = 0; i < offsets.size(); ++i) {
    AF_CHECK(offsets[i] <= m.content.size() && (i == 0 || offsets[i] >= offsets[i - 1]),
             ErrorCode::kInvalidArgument, "chat", "message ", index, ": ", kind, " ", i, " offset ",
             offsets[i], " is past the content (", m.content.size(),
             " bytes) or before the previous ", kind, "'s");
  }
}

void check_image_offsets(const ChatMessage& m, size_t index) {
  check_offsets(m, index, m.image_offsets, m.images.size(), "image");
  check_offsets(m, index, m.audio_offsets, m.audios.size(), "audio");
}

// The message's content parts in the order given: the text before each image or audio, the
// media part ({"type": "image"} / {"type": "audio"}), then the rest (a text part always when
// there was none before, as transformers gets it).
nlohmann::ordered_json content_parts(const ChatMessage& m) {
  std::vector<std::pair<size_t, const char*>> media;  // (offset, type) in content order
  for (size_t i = 0; i < m.images.size(); ++i)
    media.emplace_back(i < m.image_offsets.size() ? m.image_offsets[i] : 0, "image");
  for (size_t i = 0; i < m.audios.size(); ++i)
    media.emplace_back(i < m.audio_offsets.size() ? m.audio_offsets[i] : 0, "audio");
  std::stable_sort(media.begin(), media.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  auto parts = nlohmann::ordered_json::array();
  size_t from = 0;
  for (const auto& [at, type] : media) {
    if (at > from) {
      parts.push_back({{"type", "text"}, {"text", m.content.substr(from, at - from)}});
      from = at;
    }
    parts.push_back({{"type", type}});
  }
  if (from == 0 || from < m.content.size())
    parts.push_back({{"type", "text"}, {"text", m.content.substr(from)}});
  return parts;
}

// Matches the marked parts against the real rendering; false when they do not line up.
bool locate(const std::vector<Part>& parts, const std::vector<ChatMessage>& messages,
            RenderedChat& out) {
  const std::string_view text = out.text;
  size_t pos = 0;
  for (size_t k = 0; k < parts.size(); ++k) {
    if (parts[k].index == SIZE_MAX) {
      if (text.compare(pos, parts[k].text.size(), parts[k].text) != 0) return false;
      pos += parts[k].text.size();
      continue;
    }
    // The content as is, or trimmed (`| trim`, `.strip()`): the one the next template text
    // follows.
    const std::string_view content = messages[parts[k].index].content;
    const std::string_view next =
        k + 1 < parts.size() && parts[k + 1].index == SIZE_MAX ? parts[k + 1].text : "";
    bool found = false;
    for (std::string_view candidate : {content, trim(content)}) {
      if (text.compare(pos, candidate.size(), candidate) != 0) continue;
      if (text.compare(pos + candidate.size(), next.size(), next) != 0) continue;
      if (!candidate.empty()) out.content.push_back({pos, pos + candidate.size()});
      pos += candidate.size();
      found = true;
      break;
    }
    if (!found) return false;
  }
  return pos == text.size();
}
}  // namespace

ChatFormatter::ChatFormatter(const std::string& source, const tok::Tokenizer& tokenizer,
                             const tok::TemplateLimits& limits)
    : template_(tok::ChatTemplate::parse(source, "chat template")),
      limits_(limits),
      bos_(piece_or_empty(tokenizer, tokenizer.bos_id())),
      eos_(piece_or_empty(tokenizer, tokenizer.eos_id())) {}

std::string ChatFormatter::render(const std::vector<ChatMessage>& messages,
                                  bool add_generation_prompt, const ChatExtras& extras) const {
  nlohmann::ordered_json context;
  context["messages"] = nlohmann::ordered_json::array();
  for (size_t i = 0; i < messages.size(); ++i) {
    const ChatMessage& m = messages[i];
    check_image_offsets(m, i);
    nlohmann::ordered_json message = {{"role", m.role}};
    // Content parts, as transformers passes a message with images to the template.
    message["content"] =
        m.images.empty() && m.audios.empty() ? nlohmann::ordered_json(m.content) : content_parts(m);
    if (i < extras.message_fields.size() && extras.message_fields[i].is_object()) {
      for (const auto& [key, value] : extras.message_fields[i].items()) message[key] = value;
    }
    context["messages"].push_back(std::move(message));
  }
  // As transformers' apply_chat_template, which always passes these (templates test both
  // `tools is defined` and `tools is not none`).
  context["tools"] = extras.tools;
  context["documents"] = nullptr;
  context["add_generation_prompt"] = add_generation_prompt;
  context["bos_token"] = bos_;
  context["eos_token"] = eos_;
  return template_.render(context, limits_);
}

RenderedChat ChatFormatter::render_located(const std::vector<ChatMessage>& messages,
                                           bool add_generation_prompt,
                                           const ChatExtras& extras) const {
  RenderedChat out;
  out.text = render(messages, add_generation_prompt, extras);
  // Text split around images has no single marker position: not located (encode_chat then
  // checks the content for special-token text instead).
  for (const ChatMessage& m : messages)
    if (interleaved(m)) return out;
  std::vector<ChatMessage> marked = messages;
  for (size_t i = 0; i < marked.size(); ++i) marked[i].content = marker(i);
  std::string marked_text;
  try {
    marked_text = render(marked, add_generation_prompt, extras);
  } catch (const Error& e) {
    // A budget the markers' rendering alone exceeds is still the budget: report it.
    if (e.code() == ErrorCode::kOutOfRange) throw;
    return out;  // the template inspects content (e.g. refuses some): not located
  }
  out.located = locate(split_marked(marked_text, messages.size()), messages, out);
  if (!out.located) out.content.clear();
  return out;
}

std::vector<ChatMessage> images_as_text(const std::vector<ChatMessage>& messages,
                                        const std::string& image_text) {
  std::vector<ChatMessage> out;
  for (const ChatMessage& m : messages) {
    // Typed, it could not be told from an image (and would forge one).
    AF_CHECK(m.content.find(image_text) == std::string::npos, ErrorCode::kInvalidArgument, "chat",
             "message ", out.size(), " holds \"", image_text,
             "\", the text this model's images become in chat; remove it (images go in image "
             "parts)");
    out.push_back({m.role, m.content, {}, {}, m.audios, m.audio_offsets});
    if (m.images.empty()) continue;
    std::string content;
    size_t from = 0;
    const auto add = [&content](std::string_view part) {
      if (part.empty()) return;
      if (!content.empty()) content += '\n';
      content += part;
    };
    for (size_t i = 0; i < m.images.size(); ++i) {
      const size_t at =
          std::min(i < m.image_offsets.size() ? m.image_offsets[i] : 0, m.content.size());
      add(std::string_view(m.content).substr(from, at > from ? at - from : 0));
      from = std::max(from, at);
      add(image_text);
    }
    add(std::string_view(m.content).substr(from));
    out.back().content = std::move(content);
  }
  return out;
}

namespace {

// `ranges` with every occurrence of `cut` inside them left out.
std::vector<tok::Tokenizer::TextRange> cut_ranges(std::string_view text,
                                                  std::vector<tok::Tokenizer::TextRange> ranges,
                                                  std::string_view cut) {
  if (cut.empty()) return ranges;
  std::vector<tok::Tokenizer::TextRange> out;
  for (tok::Tokenizer::TextRange r : ranges) {
    for (size_t at = text.find(cut, r.begin);
         at != std::string_view::npos && at + cut.size() <= r.end; at = text.find(cut, r.begin)) {
      if (at > r.begin) out.push_back({r.begin, at});
      r.begin = at + cut.size();
    }
    if (r.end > r.begin) out.push_back(r);
  }
  return out;
}

std::string without(std::string text, std::string_view cut) {
  if (cut.empty()) return text;
  for (size_t at = text.find(cut); at != std::string::npos; at = text.find(cut, at))
    text.erase(at, cut.size());
  return text;
}

}  // namespace

std::vector<int32_t> encode_chat(const tok::Tokenizer& tokenizer, const RenderedChat& rendered,
                                 const std::vector<ChatMessage>& messages, bool add_special,
                                 bool parse_special_in_content,
                                 const std::function<bool()>& cancelled,
                                 std::string_view image_text) {
  if (parse_special_in_content)
    return tokenizer.encode(rendered.text, add_special, true, cancelled);
  if (rendered.located) {
    return tokenizer.encode_with_plain_ranges(
        rendered.text, add_special, cut_ranges(rendered.text, rendered.content, image_text),
        cancelled);
  }
  // Content that holds no special-token text (but images) tokenizes the same either way.
  for (size_t i = 0; i < messages.size(); ++i) {
    const std::string c = without(messages[i].content, image_text);
    AF_CHECK(
        tokenizer.encode(c, false, true, cancelled) == tokenizer.encode(c, false, false, cancelled),
        ErrorCode::kInvalidArgument, "chat", "message ", i,
        " holds special-token text, and the chat template changes message content so "
        "that it cannot be kept apart from the template's own special tokens; remove it "
        "(or allow it with parse_special_in_content)");
  }
  return tokenizer.encode(rendered.text, add_special, true, cancelled);
}

std::optional<std::string> find_model_chat_template(const std::string& model_path) {
  return tok::find_chat_template(model_path);
}

}  // namespace af::runtime
