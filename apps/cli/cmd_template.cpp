// af-cli template --template FILE.jinja --context CONTEXT.json [--template-max-steps N, ...]:
// prints the rendering of the
// template with the context's keys as variables, byte for byte (no newline of its own).
// strftime_now reads the real clock; give date_string in the context for fixed dates.
#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include "af/core/error.hpp"
#include "af/tokenizer/chat_template.hpp"
#include "commands.hpp"
#include "template_limit_options.hpp"

namespace af::cli {
namespace {

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(ErrorCode::kIo, "template", "cannot open ", path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

Command add_template(CLI::App& app) {
  struct Options {
    std::string template_path, context_path;
    tok::TemplateLimits limits;
  };
  auto o = std::make_shared<Options>();
  auto* sub =
      app.add_subcommand("template", "Render a chat template with the variables of a JSON file");
  sub->add_option("--template", o->template_path, "Jinja chat template file")->required();
  sub->add_option("--context", o->context_path,
                  "JSON object: messages, add_generation_prompt, bos_token, ...")
      ->required();
  add_template_limit_options(*sub, o->limits);
  return [o]() {
    const tok::ChatTemplate chat_template =
        tok::ChatTemplate::parse(read_file(o->template_path), o->template_path);
    nlohmann::ordered_json context;
    try {
      context = nlohmann::ordered_json::parse(read_file(o->context_path));
    } catch (const nlohmann::json::exception& e) {
      fail(ErrorCode::kFormat, "template", o->context_path, ": invalid JSON: ", e.what());
    }
    const std::string text = chat_template.render(context, o->limits);
    std::fwrite(text.data(), 1, text.size(), stdout);
    return 0;
  };
}

}  // namespace af::cli
