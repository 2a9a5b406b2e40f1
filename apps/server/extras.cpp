#include "extras.hpp"

#include <cerrno>
#include <cstring>

#include "af/core/error.hpp"
#include "api.hpp"

namespace af::server {

using nlohmann::json;

namespace {

// Bodies of these endpoints: the request limits of the generation endpoints.
json parse_object(std::string_view text) {
  const ApiLimits limits;
  return parse_json_body(text, limits.max_json_depth, limits.max_json_elements);
}

[[noreturn]] void bad_field(const std::string& name, const std::string& expected) {
  throw ApiError(400, "Invalid '" + name + "': expected " + expected + ".", "invalid_request_error",
                 name, "invalid_type");
}

bool flag(const json& body, const char* name, bool fallback) {
  auto it = body.find(name);
  if (it == body.end() || it->is_null()) return fallback;
  if (!it->is_boolean()) bad_field(name, "a boolean");
  return it->get<bool>();
}

bool valid_utf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    const size_t n = c < 0x80           ? 1
                     : (c >> 5) == 0x6  ? 2
                     : (c >> 4) == 0xE  ? 3
                     : (c >> 3) == 0x1E ? 4
                                        : 0;
    if (n == 0 || i + n > s.size()) return false;
    for (size_t k = 1; k < n; ++k) {
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return false;
    }
    i += n;
  }
  return true;
}

std::string json_escape_prompt(const std::string& text) {
  constexpr size_t kMaxLogged = 500;  // bytes of prompt text per line
  std::string cut = text.substr(0, kMaxLogged);
  while (!cut.empty() && !valid_utf8(cut)) cut.pop_back();
  return json(cut).dump() + (text.size() > kMaxLogged ? "..." : "");
}

}  // namespace

json tokenize_response(std::string_view text, const tok::Tokenizer& tokenizer) {
  const json body = parse_object(text);
  auto content = body.find("content");
  if (content == body.end()) {
    throw ApiError(400, "Missing required parameter: 'content'.", "invalid_request_error",
                   "content", "missing_required_parameter");
  }
  if (!content->is_string()) bad_field("content", "a string");
  const bool add_special = flag(body, "add_special", false);
  const bool parse_special = flag(body, "parse_special", true);
  const bool with_pieces = flag(body, "with_pieces", false);
  std::vector<int32_t> ids;
  try {
    ids = tokenizer.encode(content->get<std::string>(), add_special, parse_special);
  } catch (const Error& e) {
    throw ApiError(400, std::string("Invalid 'content': ") + e.what(), "invalid_request_error",
                   "content", "invalid_value");
  }
  json tokens = json::array();
  for (int32_t id : ids) {
    if (!with_pieces) {
      tokens.push_back(id);
      continue;
    }
    const std::string piece = tokenizer.token_bytes(id, false);
    json bytes = json::array();
    for (unsigned char c : piece) bytes.push_back(c);
    tokens.push_back({{"id", id}, {"piece", valid_utf8(piece) ? json(piece) : bytes}});
  }
  return {{"tokens", tokens}};
}

json detokenize_response(std::string_view text, const tok::Tokenizer& tokenizer) {
  const json body = parse_object(text);
  auto tokens = body.find("tokens");
  if (tokens == body.end()) {
    throw ApiError(400, "Missing required parameter: 'tokens'.", "invalid_request_error", "tokens",
                   "missing_required_parameter");
  }
  if (!tokens->is_array()) bad_field("tokens", "an array of token ids");
  std::vector<int32_t> ids;
  for (size_t i = 0; i < tokens->size(); ++i) {
    const json& t = (*tokens)[i];
    const std::string name = "tokens[" + std::to_string(i) + "]";
    if (!t.is_number_integer()) bad_field(name, "an integer token id");
    const int64_t id = t.get<int64_t>();
    if (id < 0 || id >= tokenizer.vocab_size() ||
        !tokenizer.is_assigned(static_cast<int32_t>(id))) {
      throw ApiError(400,
                     "Invalid '" + name + "': " + std::to_string(id) +
                         " is not a token id of this model's tokenizer.",
                     "invalid_request_error", name, "invalid_value");
    }
    ids.push_back(static_cast<int32_t>(id));
  }
  return {{"content", tokenizer.decode(ids, /*skip_special=*/false)}};
}

json apply_template_response(std::string_view text, const ChatPrompt& prompt) {
  const ApiRequest r = parse_request(Endpoint::kChatCompletions, text);
  return {{"prompt", prompt.render(r.messages)}};
}

bool CorsPolicy::allows(std::string_view origin) const {
  if (origin.empty()) return false;
  for (const std::string& o : origins) {
    if (o == "*" || o == origin) return true;
  }
  return false;
}

std::string format_access_line(const AccessRecord& r) {
  char head[96];
  std::snprintf(head, sizeof head, " %d", r.status);
  std::string line = r.remote + " \"" + r.method + " " + r.path + "\"" + head;
  if (r.prompt_tokens >= 0) {
    line += " tokens=" + std::to_string(r.prompt_tokens) + "+" +
            std::to_string(std::max<int64_t>(r.completion_tokens, 0));
  }
  char ms[32];
  std::snprintf(ms, sizeof ms, " %.1f ms", r.milliseconds);
  line += ms;
  if (!r.prompt.empty()) line += " prompt=" + json_escape_prompt(r.prompt);
  return line;
}

AccessLog::AccessLog(const std::string& path)
    : file_(path == "-" ? stderr : std::fopen(path.c_str(), "a")), owned_(path != "-") {
  AF_CHECK(file_ != nullptr, ErrorCode::kIo, "server", "--access-log ", path, ": ",
           std::strerror(errno));
}

AccessLog::~AccessLog() {
  if (owned_) std::fclose(file_);
}

void AccessLog::write(const AccessRecord& record) {
  const std::string line = "[af-server] " + format_access_line(record) + "\n";
  std::lock_guard lock(mutex_);
  std::fwrite(line.data(), 1, line.size(), file_);
  std::fflush(file_);
}

}  // namespace af::server
