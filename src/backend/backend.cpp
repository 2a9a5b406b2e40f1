#include "af/backend/backend.hpp"

#include "backend/cpu/cpu_backend.hpp"

namespace af {
namespace cuda {
std::unique_ptr<Backend> make_cuda_backend(const BackendOptions& options);
}

std::unique_ptr<Backend> make_backend(const BackendOptions& options) {
  if (options.device.kind == DeviceKind::kCuda) return cuda::make_cuda_backend(options);
  return cpu::make_cpu_backend(options);
}

}  // namespace af
