// Built when AF_CUDA is off: asking for a CUDA device is a clear error, not a missing symbol.
#include "af/backend/backend.hpp"
#include "af/core/error.hpp"

namespace af::cuda {

std::unique_ptr<Backend> make_cuda_backend(const BackendOptions& options) {
  fail(ErrorCode::kUnsupported, "cuda", "device ", options.device.str(),
       " requested, but AlloyForge was built without CUDA (configure with -DAF_CUDA=ON)");
}

}  // namespace af::cuda
