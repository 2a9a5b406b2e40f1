#pragma once
// Stop strings over streamed text: text is released only once it can no longer be the start of
// a stop string, so a stop string split across tokens is never shown.
#include <string>
#include <string_view>
#include <vector>

namespace af::runtime {

class StopStringFilter {
 public:
  explicit StopStringFilter(std::vector<std::string> stops);

  // Appends text; returns what is now safe to show. After a stop string is found, returns the
  // text before it and matched() becomes true; later pushes return nothing.
  std::string push(std::string_view text);
  // The text still held back (at the end of generation, when no stop string matched).
  std::string flush();

  bool matched() const { return !matched_.empty(); }
  const std::string& matched_string() const { return matched_; }

 private:
  std::vector<std::string> stops_;
  std::string held_;
  std::string matched_;
};

}  // namespace af::runtime
