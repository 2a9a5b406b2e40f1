// libFuzzer target: any byte string must either parse or raise af::Error; crashes, leaks,
// sanitizer reports and other exception types are bugs.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>

#include "af/core/buffer.hpp"
#include "af/core/error.hpp"
#include "af/io/safetensors.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto buffer = std::make_shared<af::OwnedBuffer>(size);
  if (size) std::memcpy(buffer->mutable_data(), data, size);
  try {
    af::io::SafeTensorsFile file = af::io::SafeTensorsFile::parse(buffer, "fuzz");
    // Touch every exposed view so that a bad bounds check shows up under ASan.
    for (const af::io::SafeTensorsEntry& e : file.entries()) {
      af::Tensor t = file.tensor(e.name);
      volatile std::byte sink{};
      if (t.nbytes()) sink = t.data()[t.nbytes() - 1];
      (void)sink;
    }
  } catch (const af::Error&) {
  }
  return 0;
}
