// af-cli quantize IN OUT TYPE (or --type TYPE): q8_0|q4_0|q4_1|q5_0|q5_1|q4_k_m|q4_k_s|q5_k_m|
//                                                q6_k|q2_k|q3_k_m|f16|bf16|f32, any case
// (llama-quantize's aliases q3_k, q4_k, q5_k mean their _m mixtures).
// Writes a GGUF file that llama.cpp loads from a GGUF file or an HF folder: argument parsing and
// printing around af::convert::write_gguf (af/convert/gguf_convert.hpp), which does the work.
#include <cstdio>
#include <memory>
#include <string>

#include "af/convert/gguf_convert.hpp"
#include "cli_common.hpp"
#include "commands.hpp"

namespace af::cli {

Command add_quantize(CLI::App& app) {
  struct Options {
    std::string in, out, type, type_flag, vocab_from;
    int threads = 0;
  };
  auto o = std::make_shared<Options>();
  auto* sub =
      app.add_subcommand("quantize", "Write a (quantized) GGUF file from a GGUF or HF model");
  sub->add_option("IN", o->in, "GGUF file or HF folder")->required();
  sub->add_option("OUT", o->out, "output .gguf path")->required();
  sub->add_option("TYPE", o->type, "target type, as llama-quantize's third argument");
  sub->add_option("--type", o->type_flag, "target type (or TYPE): " + quant_type_names());
  sub->add_option("-t,--threads", o->threads, "threads (0: all cores)");
  sub->add_option("--vocab-from", o->vocab_from,
                  "HF input: copy the tokenizer.* keys of this GGUF file instead of reading "
                  "tokenizer.json");
  return [o]() {
    require_flag(o->type.empty() || o->type_flag.empty() || o->type == o->type_flag,
                 "TYPE and --type", "disagree ('" + o->type + "' vs '" + o->type_flag + "')");
    require_flag(!o->type.empty() || !o->type_flag.empty(), "TYPE (or --type)",
                 "is required: " + quant_type_names());
    const QuantType& mix = o->type.empty() ? find_quant_type(o->type_flag, "--type")
                                           : find_quant_type(o->type, "TYPE");
    require_flag(o->threads >= 0, "-t/--threads", "must be >= 0 (0: all cores)");
    const convert::GgufTarget target{mix.name, mix.base, mix.file_type};
    convert::GgufWriteOptions options;
    options.threads = o->threads;
    options.vocab_from = o->vocab_from;
    // Per tensor on a terminal: "quantizing [###...] 40% blk.3.ffn_down.weight q6_K 1.2 MB".
    auto bar = std::make_shared<ProgressBar>("quantizing");
    if (bar->enabled()) {
      options.on_tensor = [bar](int64_t index, int64_t total, const std::string& detail) {
        bar->update(index, total, detail);
      };
    }
    options.on_note = [](const std::string& note) {
      std::fprintf(stderr, "[af-cli quantize] %s\n", note.c_str());
    };
    const convert::GgufWriteSummary written = convert::write_gguf(o->in, o->out, target, options);
    bar->finish();
    std::string summary;
    for (const auto& [t, n] : written.types) summary += " " + t + ":" + std::to_string(n);
    std::fprintf(stderr, "[af-cli quantize] wrote %s (%zu tensors:%s)\n", o->out.c_str(),
                 written.tensors, summary.c_str());
    return 0;
  };
}

}  // namespace af::cli
