// af-cli tokenize -m PATH [--add-special] [--parse-special]: stdin text (all of it one text)
//   -> ids separated by spaces on one line.
// af-cli detokenize -m PATH [--skip-special]: ids on stdin -> text.
#include <cstdio>
#include <iostream>
#include <iterator>
#include <memory>
#include <string>

#include "af/tokenizer/tokenizer.hpp"
#include "commands.hpp"

namespace af::cli {
namespace {

std::string read_stdin() {
  std::string text((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
  return text;
}

}  // namespace

Command add_tokenize(CLI::App& app) {
  struct Options {
    std::string path;
    bool add_special = false, parse_special = false;
  };
  auto o = std::make_shared<Options>();
  auto* sub = app.add_subcommand("tokenize", "Print the token ids of the text on stdin");
  sub->add_option("-m,--model", o->path, ".gguf, tokenizer.json or HF folder")->required();
  sub->add_flag("--add-special", o->add_special, "add BOS/EOS as the tokenizer's config says");
  sub->add_flag("--parse-special", o->parse_special,
                "turn special-token text such as <|im_start|> into its id");
  return [o]() {
    auto tokenizer = tok::Tokenizer::load(o->path);
    const std::string text = read_stdin();
    const std::vector<int32_t> ids = tokenizer->encode(text, o->add_special, o->parse_special);
    std::printf("%s\n", tok::format_ids(ids).c_str());
    return 0;
  };
}

Command add_detokenize(CLI::App& app) {
  struct Options {
    std::string path;
    bool skip_special = false;
  };
  auto o = std::make_shared<Options>();
  auto* sub = app.add_subcommand("detokenize", "Print the text of the ids on stdin");
  sub->add_option("-m,--model", o->path, ".gguf, tokenizer.json or HF folder")->required();
  sub->add_flag("--skip-special", o->skip_special, "leave out special tokens");
  return [o]() {
    auto tokenizer = tok::Tokenizer::load(o->path);
    const std::vector<int32_t> ids = tok::parse_ids(read_stdin());
    const std::string text = tokenizer->decode(ids, o->skip_special);
    std::fwrite(text.data(), 1, text.size(), stdout);
    return 0;
  };
}

}  // namespace af::cli
