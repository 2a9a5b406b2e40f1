// libFuzzer target: af-server's request parser on arbitrary bodies, for both endpoints. Every
// input must either parse or throw ApiError with a 4xx status; nothing else may escape.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "api.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  // The first byte picks the endpoint, the rest is the body.
  const auto endpoint =
      (data[0] & 1) ? af::server::Endpoint::kCompletions : af::server::Endpoint::kChatCompletions;
  const std::string_view body(reinterpret_cast<const char*>(data + 1), size - 1);
  try {
    const af::server::ApiRequest r = af::server::parse_request(endpoint, body);
    if (r.n < 1 || r.stop.size() > 4) std::abort();
  } catch (const af::server::ApiError& e) {
    if (e.status < 400 || e.status >= 500 || e.message.empty()) std::abort();
    // As the server does: messages may quote invalid UTF-8 from the body.
    (void)af::server::error_body(e).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  }
  return 0;
}
