#pragma once
// Reads chat input: with line editing and history (libedit, when built with it) on a terminal,
// plain lines from a pipe. Multi-line messages: a line ending in '\' continues on the next
// line, and a line holding only """ starts or ends a block taken as typed.
#include <optional>
#include <string>

namespace af::cli {

class LineReader {
 public:
  // `history_file`: where a terminal session's history is kept ("" for none).
  LineReader(bool interactive, std::string history_file);
  ~LineReader();
  LineReader(const LineReader&) = delete;
  LineReader& operator=(const LineReader&) = delete;

  // The next message; nullopt at end of input. An interrupted prompt (Ctrl-C) gives "".
  std::optional<std::string> read_message();
  static bool has_line_editing();

 private:
  std::optional<std::string> read_line(const char* prompt);
  bool interactive_;
  std::string history_file_;
};

}  // namespace af::cli
