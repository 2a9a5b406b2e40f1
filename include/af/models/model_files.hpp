#pragma once
// io::open_model_files with every model family the library has (src/models/registry.hpp): the
// models layer owns the list of families, io reads GGUF files of whichever families its caller
// passes (af/io/architecture.hpp).
#include <string>

#include "af/io/architecture.hpp"
#include "af/io/model_files.hpp"

namespace af::models {

// The GGUF forms of the registered families, in AF_MODEL_FAMILIES order (llama, qwen2, ...).
io::GgufArchitectures gguf_architectures();

// io::open_model_files(path, gguf_architectures()).
io::ModelFiles open_model_files(const std::string& path);

}  // namespace af::models
