// af-cli: the command-line front end. Library errors become a message on stderr and exit code 1
// (2 for usage errors: CLI11's, and UsageError for values checked before a model loads).
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "af/core/error.hpp"
#include "build_info.hpp"
#include "cli_common.hpp"
#include "commands.hpp"

int main(int argc, char** argv) {
  CLI::App app{"AlloyForge command-line tool"};
  app.require_subcommand(1);
  app.set_version_flag("--version", af::apps::version_line("af-cli"));
  // --help shows every option's default (inherited by the subcommands added below).
  app.option_defaults()->always_capture_default();
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
  add(af::cli::add_embed);
  try {
    // llama.cpp's -ngl, -hf, ... (CLI11 would read "-ngl" as "-n gl").
    std::vector<std::string> args = af::cli::normalize_llama_args(argc, argv);
    std::vector<const char*> ptrs;
    for (const std::string& a : args) ptrs.push_back(a.c_str());
    app.parse(static_cast<int>(ptrs.size()), ptrs.data());
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  } catch (const af::cli::UsageError& e) {
    std::fprintf(stderr, "af-cli: error: %s\n", e.what());
    return 2;
  }
  try {
    for (const auto& [sub, cmd] : commands) {
      if (sub->parsed()) return cmd();
    }
  } catch (const af::cli::UsageError& e) {
    std::fprintf(stderr, "af-cli: error: %s\n", e.what());
    return 2;
  } catch (const af::Error& e) {
    std::fprintf(stderr, "af-cli: error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "af-cli: error: %s\n", e.what());
    return 1;
  }
  return 2;
}
