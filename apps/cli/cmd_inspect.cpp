// af-cli inspect -m PATH: architecture, hyperparameters and every tensor (HF name, dtype, shape,
// bytes) of an HF folder or GGUF file, without building the model.
#include <cstdio>
#include <memory>
#include <string>

#include "af/io/gguf.hpp"
#include "af/io/hf_config.hpp"
#include "af/io/model_files.hpp"
#include "af/models/model_files.hpp"
#include "commands.hpp"

namespace af::cli {

Command add_inspect(CLI::App& app) {
  auto* sub = app.add_subcommand("inspect", "Show a model's architecture, config and tensors");
  auto path = std::make_shared<std::string>();
  sub->add_option("-m,--model", *path, "HF folder, .safetensors or .gguf file")->required();
  return [path]() {
    io::ModelFiles files = models::open_model_files(*path);
    io::HfConfig config(files.config, *path);
    std::printf("path: %s\nformat: %s\n", files.path.c_str(), files.format.c_str());
    if (files.gguf) {
      std::printf("gguf_version: %u\ngguf_metadata_keys: %zu\n", files.gguf->version(),
                  files.gguf->metadata().size());
    }
    std::printf("architecture: %s\n", config.architecture().c_str());
    std::printf("config:\n");
    for (const auto& [key, value] : files.config.items()) {
      if (key == "architectures") continue;
      std::printf("  %s: %s\n", key.c_str(), value.dump().c_str());
    }
    const std::vector<std::string> names = files.weights->names();
    uint64_t total = 0;
    for (const std::string& name : names) total += files.weights->get(name).nbytes();
    std::printf("tensors: %zu (%llu bytes)\n", names.size(),
                static_cast<unsigned long long>(total));
    for (const std::string& name : names) {
      Tensor t = files.weights->get(name);
      std::printf("  %-56s %-6s %-16s %zu\n", name.c_str(),
                  std::string(af::name(t.dtype())).c_str(), t.shape().str().c_str(), t.nbytes());
    }
    return 0;
  };
}

}  // namespace af::cli
