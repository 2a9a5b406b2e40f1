#pragma once
// llama-server-compatible endpoints beside the OpenAI ones (socket-free, so tests call them
// directly): /tokenize, /detokenize, /apply-template, and CORS and access-log helpers.
#include <cstdint>
#include <cstdio>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "af/tokenizer/tokenizer.hpp"
#include "chat_prompt.hpp"

namespace af::server {

// POST /tokenize {"content": str, "add_special": false, "parse_special": true,
// "with_pieces": false} -> {"tokens": [id, ...]}, or with pieces [{"id", "piece"}] where a
// piece that is not whole UTF-8 is given as its list of byte values (as llama-server does).
// Bad fields throw ApiError 400 naming them.
nlohmann::json tokenize_response(std::string_view body, const tok::Tokenizer& tokenizer);
// POST /detokenize {"tokens": [id, ...]} -> {"content": str}; ids the tokenizer does not assign
// -> 400 naming the index.
nlohmann::json detokenize_response(std::string_view body, const tok::Tokenizer& tokenizer);
// POST /apply-template {"messages": [...]} -> {"prompt": the chat template's text}.
nlohmann::json apply_template_response(std::string_view body, const ChatPrompt& prompt);

// --cors-origin: exact origins ("https://app.example.com") or "*".
struct CorsPolicy {
  std::vector<std::string> origins;  // empty: CORS off
  bool enabled() const { return !origins.empty(); }
  bool allows(std::string_view origin) const;
};

// One line per answered request: client address, method and path, status, prompt+generated
// tokens (generation endpoints), milliseconds; the prompt text only when asked for.
struct AccessRecord {
  std::string remote, method, path;
  int status = 0;
  int64_t prompt_tokens = -1, completion_tokens = -1;  // -1: not a generation
  double milliseconds = 0;
  std::string prompt;  // empty unless --log-prompts
};
std::string format_access_line(const AccessRecord& record);

class AccessLog {
 public:
  // path: a file appended to, or "-" for stderr. Throws af::Error when it cannot be opened.
  explicit AccessLog(const std::string& path);
  ~AccessLog();
  AccessLog(const AccessLog&) = delete;
  AccessLog& operator=(const AccessLog&) = delete;
  void write(const AccessRecord& record);

 private:
  std::mutex mutex_;
  std::FILE* file_;
  bool owned_;
};

}  // namespace af::server
