#pragma once
// The one exception type of the library: a component tag plus a message that names the file,
// tensor or field at fault. Apps and bindings catch it at their boundary.
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace af {

enum class ErrorCode {
  kInvalidArgument,  // caller passed something unusable (shape, id, option)
  kFormat,           // a file's content is malformed or hostile
  kIo,               // the OS refused (open, mmap, read)
  kUnsupported,      // valid input that this build cannot handle (dtype, architecture, CUDA)
  kOutOfRange,       // position/context/cache limits
  kInternal,
};

const char* error_code_name(ErrorCode code);

class Error : public std::runtime_error {
 public:
  Error(ErrorCode code, std::string component, const std::string& message)
      : std::runtime_error("[" + component + "] " + message),
        code_(code),
        component_(std::move(component)) {}

  ErrorCode code() const { return code_; }
  const std::string& component() const { return component_; }

 private:
  ErrorCode code_;
  std::string component_;
};

namespace detail {
template <class... Args>
std::string concat(const Args&... args) {
  std::ostringstream out;
  (out << ... << args);
  return out.str();
}
}  // namespace detail

// Throws af::Error(code, component, concatenation of args).
template <class... Args>
[[noreturn]] void fail(ErrorCode code, const std::string& component, const Args&... args) {
  throw Error(code, component, detail::concat(args...));
}

}  // namespace af

// Always-on check for cheap invariants; the message arguments are streamed after the condition.
#define AF_CHECK(cond, code, component, ...)                   \
  do {                                                         \
    if (!(cond)) ::af::fail((code), (component), __VA_ARGS__); \
  } while (0)

#ifdef NDEBUG
#define AF_DCHECK(cond) ((void)0)
#else
#define AF_DCHECK(cond)                                                                      \
  do {                                                                                       \
    if (!(cond))                                                                             \
      ::af::fail(::af::ErrorCode::kInternal, "dcheck", __FILE__, ":", __LINE__, ": " #cond); \
  } while (0)
#endif
