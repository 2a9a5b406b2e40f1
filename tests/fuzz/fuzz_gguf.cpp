// libFuzzer target: any byte string must either parse or raise af::Error; crashes, leaks,
// sanitizer reports and other exception types are bugs.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string_view>

#include "af/core/buffer.hpp"
#include "af/core/error.hpp"
#include "af/io/gguf.hpp"

namespace {

// Reads every element of a metadata array through the checked accessors, nested arrays too.
void touch(const af::io::GgufArray& a) {
  for (size_t i = 0; i < a.size(); ++i) {
    switch (a.type()) {
      case af::io::GgufType::kString: {
        volatile char sink = 0;
        const std::string_view s = a.string_at(i, "fuzz");
        if (!s.empty()) sink = s.back();
        (void)sink;
        break;
      }
      case af::io::GgufType::kArray:
        touch(a.array_at(i, "fuzz"));
        break;
      default:
        (void)a.at(i);
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto buffer = std::make_shared<af::OwnedBuffer>(size);
  if (size) std::memcpy(buffer->mutable_data(), data, size);
  try {
    af::io::GgufFile file = af::io::GgufFile::parse(buffer, "fuzz");
    // Touch every exposed view so that a bad bounds check shows up under ASan.
    for (const auto& [key, value] : file.metadata()) {
      if (value.type == af::io::GgufType::kArray) touch(value.as_array(key));
    }
    for (const af::io::GgufTensorInfo& info : file.tensors()) {
      af::Tensor t = file.tensor(info.name);
      volatile std::byte sink{};
      if (t.nbytes()) sink = t.data()[t.nbytes() - 1];
      (void)sink;
    }
  } catch (const af::Error&) {
  }
  return 0;
}
