// af-cli embed -m MODEL [--pooling mean|cls|last] [--normalize | --no-normalize]
//              [-p TEXT]... [-f FILE] [-b N] [--timing]: one JSON array of floats per input.
// -f reads one text per line (empty lines skipped). Pooling and normalisation default to what
// the model folder's sentence-transformers modules say (af::Embedder).
#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "af/runtime/embedder.hpp"
#include "cli_common.hpp"
#include "commands.hpp"

namespace af::cli {
namespace {

std::vector<std::string> read_lines(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw UsageError("-f/--file: cannot open " + path);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (!line.empty()) lines.push_back(std::move(line));
  }
  return lines;
}

void print_vector(const std::vector<float>& v) {
  std::string out = "[";
  char buf[32];
  for (size_t i = 0; i < v.size(); ++i) {
    // %.9g round-trips a float exactly.
    std::snprintf(buf, sizeof buf, "%s%.9g", i ? "," : "", static_cast<double>(v[i]));
    out += buf;
  }
  out += "]\n";
  std::fwrite(out.data(), 1, out.size(), stdout);
}

}  // namespace

Command add_embed(CLI::App& app) {
  struct Options {
    std::string path, pooling, file, isa;
    std::vector<std::string> prompts;
    int normalize = -1;  // -1: the model's default
    int threads = 0;
    int64_t batch_tokens = 8192, batch_size = 64;
    bool timing = false;
  };
  auto o = std::make_shared<Options>();
  auto* sub = app.add_subcommand(
      "embed", "Print sentence embeddings (BERT folders or decoder LMs), one JSON array a line");
  sub->add_option("-m,--model", o->path, "HF folder (BertModel, decoder LM) or .gguf")->required();
  sub->add_option("-p,--prompt", o->prompts, "text to embed (repeatable)");
  sub->add_option("-f,--file", o->file, "file with one text per line");
  sub->add_option("--pooling", o->pooling,
                  "mean, cls or last (default: the folder's 1_Pooling config; else mean for "
                  "encoders, last for decoders)")
      ->check(CLI::IsMember({"mean", "cls", "last"}));
  sub->add_flag_function(
      "--normalize", [o](int64_t) { o->normalize = 1; },
      "L2-normalise the vectors (default: as the folder's modules.json says)");
  sub->add_flag_function(
      "--no-normalize", [o](int64_t) { o->normalize = 0; }, "leave the vectors unnormalised");
  sub->add_option("-t,--threads", o->threads, "threads (0: all cores)")
      ->check(CLI::NonNegativeNumber);
  sub->add_option("--batch-tokens", o->batch_tokens, "tokens per forward pass")
      ->check(CLI::PositiveNumber);
  sub->add_option("-b,--batch-size", o->batch_size, "inputs per forward pass")
      ->check(CLI::PositiveNumber);
  sub->add_flag("--timing", o->timing,
                "print the embedding time (after loading) and sentences/s on stderr");
  add_isa_option(*sub, o->isa);
  return [o]() {
    std::vector<std::string> texts = o->prompts;
    if (!o->file.empty()) {
      for (std::string& line : read_lines(o->file)) texts.push_back(std::move(line));
    }
    if (texts.empty()) throw UsageError("nothing to embed: give -p TEXT or -f FILE");
    models::LoadOptions load;
    load.num_threads = o->threads;
    load.isa = o->isa;
    EmbedOptions options;
    if (!o->pooling.empty()) options.pooling = models::pooling_from_name(o->pooling);
    if (o->normalize >= 0) options.normalize = o->normalize == 1;
    options.max_batch_tokens = o->batch_tokens;
    options.max_batch_inputs = o->batch_size;
    auto embedder = Embedder::load(o->path, load, options);
    const auto start = std::chrono::steady_clock::now();
    const std::vector<std::vector<float>> vectors = embedder->embed(texts);
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    for (const std::vector<float>& v : vectors) print_vector(v);
    if (o->timing) {
      std::fprintf(stderr, "embedded %zu inputs in %.4f s: %.1f sentences/s\n", texts.size(),
                   seconds, static_cast<double>(texts.size()) / seconds);
    }
    return 0;
  };
}

}  // namespace af::cli
