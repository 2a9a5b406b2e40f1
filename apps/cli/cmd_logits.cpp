// af-cli logits -m PATH --ids "1 403 407": one line per input position, vocab_size logits
// separated by spaces, 9 significant digits (float32 round-trips).
#include <cstdio>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "af/core/error.hpp"
#include "af/models/causal_lm.hpp"
#include "commands.hpp"

namespace af::cli {
namespace {

std::vector<int32_t> parse_ids(const std::string& text) {
  std::vector<int32_t> ids;
  std::istringstream in(text);
  std::string word;
  while (in >> word) {
    size_t used = 0;
    long long value = 0;
    try {
      value = std::stoll(word, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    AF_CHECK(used == word.size() && value >= 0 && value <= INT32_MAX, ErrorCode::kInvalidArgument,
             "cli", "bad token id \"", word, "\" in --ids");
    ids.push_back(static_cast<int32_t>(value));
  }
  AF_CHECK(!ids.empty(), ErrorCode::kInvalidArgument, "cli", "--ids holds no token ids");
  return ids;
}

}  // namespace

Command add_logits(CLI::App& app) {
  struct Options {
    std::string path, ids, isa, audio;
    int threads = 0;
  };
  auto o = std::make_shared<Options>();
  auto* sub = app.add_subcommand("logits", "Print the logits of every position of an id sequence");
  sub->add_option("-m,--model", o->path, "HF folder, .safetensors or .gguf file")->required();
  sub->add_option("--ids", o->ids, "token ids separated by spaces")->required();
  sub->add_option("-t,--threads", o->threads, "threads (0: all cores)");
  sub->add_option("--audio", o->audio, "Whisper models: the audio the decoder ids attend to");
  add_isa_option(*sub, o->isa);
  return [o]() {
    std::vector<int32_t> ids = parse_ids(o->ids);
    if (!o->audio.empty()) return print_whisper_logits(o->path, o->audio, ids, o->threads, o->isa);
    models::LoadOptions options;
    options.num_threads = o->threads;
    options.isa = o->isa;
    options.context_length = static_cast<int64_t>(ids.size());
    auto model = models::load(o->path, options);
    std::vector<float> logits = model->forward(ids, true);
    const int64_t vocab = model->config().vocab_size;
    std::string line;
    char number[32];
    for (size_t t = 0; t < ids.size(); ++t) {
      line.clear();
      for (int64_t j = 0; j < vocab; ++j) {
        std::snprintf(
            number, sizeof number, j ? " %.9g" : "%.9g",
            static_cast<double>(logits[t * static_cast<size_t>(vocab) + static_cast<size_t>(j)]));
        line += number;
      }
      line += '\n';
      std::fwrite(line.data(), 1, line.size(), stdout);
    }
    return 0;
  };
}

}  // namespace af::cli
