#include "line_reader.hpp"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <iostream>

#ifdef AF_HAVE_LIBEDIT
#include <editline/readline.h>
#endif

namespace af::cli {

LineReader::LineReader(bool interactive, std::string history_file)
    : interactive_(interactive), history_file_(std::move(history_file)) {
#ifdef AF_HAVE_LIBEDIT
  if (interactive_) {
    using_history();
    if (!history_file_.empty()) read_history(history_file_.c_str());
  }
#endif
}

LineReader::~LineReader() {
#ifdef AF_HAVE_LIBEDIT
  if (interactive_ && !history_file_.empty()) write_history(history_file_.c_str());
#endif
}

bool LineReader::has_line_editing() {
#ifdef AF_HAVE_LIBEDIT
  return true;
#else
  return false;
#endif
}

std::optional<std::string> LineReader::read_line(const char* prompt) {
#ifdef AF_HAVE_LIBEDIT
  if (interactive_) {
    errno = 0;
    char* line = readline(prompt);
    if (line == nullptr) {
      if (errno == EINTR) return std::string();  // Ctrl-C at the prompt
      return std::nullopt;
    }
    std::string out(line);
    std::free(line);
    return out;
  }
#endif
  if (interactive_) {
    std::fputs(prompt, stdout);
    std::fflush(stdout);
  }
  std::string line;
  if (!std::getline(std::cin, line)) {
    if (interactive_ && !std::cin.eof()) {  // Ctrl-C at the prompt: a fresh line
      std::cin.clear();
      std::fputs("\n", stdout);
      return std::string();
    }
    return std::nullopt;
  }
  return line;
}

std::optional<std::string> LineReader::read_message() {
  std::optional<std::string> line = read_line("> ");
  if (!line) return line;
  std::string message;
  if (*line == "\"\"\"") {  // a block, up to the next """ line
    for (bool first = true;; first = false) {
      std::optional<std::string> next = read_line(". ");
      if (!next || *next == "\"\"\"") break;
      if (!first) message += '\n';
      message += *next;
    }
  } else {
    message = *line;
    while (!message.empty() && message.back() == '\\') {
      message.back() = '\n';
      std::optional<std::string> next = read_line(". ");
      if (!next) break;
      message += *next;
    }
  }
#ifdef AF_HAVE_LIBEDIT
  if (interactive_ && !message.empty()) add_history(message.c_str());
#endif
  return message;
}

}  // namespace af::cli
