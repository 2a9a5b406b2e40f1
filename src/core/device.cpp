#include "af/core/device.hpp"

namespace af {

std::string Device::str() const {
  return kind == DeviceKind::kCpu ? "cpu" : "cuda:" + std::to_string(index);
}

}  // namespace af
