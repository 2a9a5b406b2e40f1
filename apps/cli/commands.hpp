#pragma once
// af-cli subcommands. Each registers its options on the CLI11 app and returns the function that
// runs it; errors propagate as af::Error to main(), which prints them and exits non-zero.
#include <functional>
#include <string>

#include <CLI/CLI.hpp>

namespace af::cli {

using Command = std::function<int()>;

// --isa, the same on every subcommand that loads a model (LoadOptions::isa).
inline void add_isa_option(CLI::App& sub, std::string& isa) {
  sub.add_option("--isa", isa,
                 "force CPU kernels: scalar, avx2 (with AVX-VNNI int8 dot products where the CPU "
                 "has them), avx512");
}

Command add_inspect(CLI::App& app);
Command add_logits(CLI::App& app);
Command add_run(CLI::App& app);
Command add_chat(CLI::App& app);
Command add_tokenize(CLI::App& app);
Command add_detokenize(CLI::App& app);
Command add_template(CLI::App& app);
Command add_bench(CLI::App& app);
Command add_quantize(CLI::App& app);
Command add_preprocess(CLI::App& app);
Command add_log_mel(CLI::App& app);

}  // namespace af::cli
