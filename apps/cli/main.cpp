// af-cli: the command-line front end. Library errors become a message on stderr and exit code 1
// (2 for usage errors).
#include <cstdio>
#include <map>

#include "af/core/error.hpp"
#include "commands.hpp"

int main(int argc, char** argv) {
  CLI::App app{"AlloyForge command-line tool"};
  app.require_subcommand(1);
  std::map<CLI::App*, af::cli::Command> commands;
  auto add = [&](af::cli::Command (*fn)(CLI::App&)) {
    size_t before = app.get_subcommands({}).size();
    af::cli::Command cmd = fn(app);
    commands[app.get_subcommands({})[before]] = std::move(cmd);
  };
  add(af::cli::add_inspect);
  add(af::cli::add_logits);
  add(af::cli::add_run);
  add(af::cli::add_chat);
  add(af::cli::add_tokenize);
  add(af::cli::add_detokenize);
  add(af::cli::add_template);
  add(af::cli::add_bench);
  add(af::cli::add_quantize);
  add(af::cli::add_preprocess);
  add(af::cli::add_image_features);
  add(af::cli::add_log_mel);
  add(af::cli::add_transcribe);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  try {
    for (const auto& [sub, cmd] : commands) {
      if (sub->parsed()) return cmd();
    }
  } catch (const af::Error& e) {
    std::fprintf(stderr, "af-cli: error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "af-cli: error: %s\n", e.what());
    return 1;
  }
  return 2;
}
