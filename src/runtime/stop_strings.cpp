#include "runtime/stop_strings.hpp"

#include <algorithm>

#include "af/core/error.hpp"

namespace af::runtime {

StopStringFilter::StopStringFilter(std::vector<std::string> stops) : stops_(std::move(stops)) {
  for (size_t i = 0; i < stops_.size(); ++i) {
    AF_CHECK(!stops_[i].empty(), ErrorCode::kInvalidArgument, "generate", "stop string ", i,
             " is empty");
  }
}

std::string StopStringFilter::push(std::string_view text) {
  if (matched()) return {};
  held_ += text;
  // The earliest occurrence of any stop string ends the text there.
  size_t first = std::string::npos;
  for (const std::string& stop : stops_) {
    const size_t at = held_.find(stop);
    if (at != std::string::npos && (at < first || (at == first && stop.size() > matched_.size()))) {
      first = at;
      matched_ = stop;
    }
  }
  if (first != std::string::npos) {
    std::string out = held_.substr(0, first);
    held_.clear();
    return out;
  }
  // Hold back the longest suffix that is a proper prefix of some stop string.
  size_t hold = 0;
  for (const std::string& stop : stops_) {
    for (size_t len = std::min(stop.size() - 1, held_.size()); len > hold; --len) {
      if (held_.compare(held_.size() - len, len, stop, 0, len) == 0) {
        hold = len;
        break;
      }
    }
  }
  std::string out = held_.substr(0, held_.size() - hold);
  held_.erase(0, held_.size() - hold);
  return out;
}

std::string StopStringFilter::flush() {
  std::string out = std::move(held_);
  held_.clear();
  return out;
}

}  // namespace af::runtime
