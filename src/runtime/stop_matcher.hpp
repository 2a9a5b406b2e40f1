#pragma once
// Stop strings over streamed text: text is released as soon as it can no longer be the start of
// a stop string, and nothing from the first stop string on is ever released.
#include <algorithm>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace af::runtime {

class StopMatcher {
 public:
  struct Result {
    std::string text;      // safe to show now
    bool stopped = false;  // a stop string was found; text ends right before it
  };

  explicit StopMatcher(std::vector<std::string> stops) : stops_(std::move(stops)) {}

  Result push(std::string_view piece) {
    held_ += piece;
    if (stops_.empty()) return {std::exchange(held_, {}), false};
    // The earliest stop string wins; held_ never contains a whole stop string before this call,
    // so the search covers every new occurrence.
    size_t first = std::string::npos;
    for (const std::string& stop : stops_) first = std::min(first, held_.find(stop));
    if (first != std::string::npos) {
      Result r{held_.substr(0, first), true};
      held_.clear();
      return r;
    }
    // Hold back the longest tail that is a proper prefix of some stop string. Stop strings are
    // valid UTF-8, so the tail starts on a character boundary.
    size_t keep = 0;
    for (const std::string& stop : stops_) {
      for (size_t n = std::min(stop.size() - 1, held_.size()); n > keep; --n) {
        if (held_.compare(held_.size() - n, n, stop, 0, n) == 0) {
          keep = n;
          break;
        }
      }
    }
    Result r{held_.substr(0, held_.size() - keep), false};
    held_.erase(0, held_.size() - keep);
    return r;
  }

  // End of generation: `tail` (the decoder's last bytes) plus what was held back, cut at a stop
  // string if one completes.
  std::string finish(std::string_view tail) {
    Result r = push(tail);
    if (!r.stopped) r.text += std::exchange(held_, {});
    return r.text;
  }

 private:
  std::vector<std::string> stops_;
  std::string held_;
};

}  // namespace af::runtime
