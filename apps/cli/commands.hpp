#pragma once
// af-cli subcommands. Each registers its options on the CLI11 app and returns the function that
// runs it; errors propagate as af::Error to main(), which prints them and exits non-zero.
#include <functional>

#include <CLI/CLI.hpp>

namespace af::cli {

using Command = std::function<int()>;

Command add_inspect(CLI::App& app);
Command add_logits(CLI::App& app);
Command add_run(CLI::App& app);
Command add_chat(CLI::App& app);
Command add_tokenize(CLI::App& app);
Command add_detokenize(CLI::App& app);
Command add_template(CLI::App& app);
Command add_bench(CLI::App& app);
Command add_quantize(CLI::App& app);

}  // namespace af::cli
