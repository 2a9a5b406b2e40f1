// af-cli run -m PATH [-p PROMPT] [-n N] [--temp T] [--top-k K] [--top-p P] [--seed S]
//            [--threads N] [--print-ids]
// Prints only the generated text on stdout (streamed), timings on stderr. --temp 0 is greedy.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "af/core/error.hpp"
#include "af/models/causal_lm.hpp"
#include "af/ops/sampling.hpp"
#include "af/tokenizer/tokenizer.hpp"
#include "commands.hpp"

namespace af::cli {

Command add_run(CLI::App& app) {
  struct Options {
    std::string path, prompt, isa;
    int n_predict = 128, threads = 0, top_k = 40;
    float temp = 0.8f, top_p = 0.95f;
    int64_t seed = -1, ctx = 0;
    bool print_ids = false;
  };
  auto o = std::make_shared<Options>();
  auto* sub = app.add_subcommand("run", "Generate text from a prompt");
  sub->add_option("-m,--model", o->path, "HF folder, .safetensors or .gguf file")->required();
  sub->add_option("-p,--prompt", o->prompt, "prompt text (empty: start from BOS)");
  sub->add_option("-n,--n-predict", o->n_predict, "tokens to generate")
      ->check(CLI::NonNegativeNumber);
  sub->add_option("--temp", o->temp, "temperature (0: greedy)")->check(CLI::NonNegativeNumber);
  sub->add_option("--top-k", o->top_k, "keep the k most likely tokens (0: all)");
  sub->add_option("--top-p", o->top_p, "nucleus sampling threshold");
  sub->add_option("--seed", o->seed, "random seed (-1: random)");
  sub->add_option("-t,--threads", o->threads, "threads (0: all cores)");
  sub->add_option("-c,--ctx-size", o->ctx, "context length (0: the model's)");
  sub->add_option("--isa", o->isa, "force CPU kernels: scalar, avx2, avx512");
  sub->add_flag("--print-ids", o->print_ids, "print generated ids instead of text");
  auto quantize = std::make_shared<std::string>();
  sub->add_option("--quantize", *quantize, "quantize float weights at load: q8_0, q4_0, q4_k, ...");
  return [o, quantize]() {
    using Clock = std::chrono::steady_clock;
    const auto t_load = Clock::now();
    auto tokenizer = tok::Tokenizer::load(o->path);
    const std::vector<int32_t> prompt = tokenizer->encode(o->prompt, /*add_special=*/true);
    AF_CHECK(!prompt.empty(), ErrorCode::kInvalidArgument, "cli",
             "the prompt is empty and the tokenizer adds no BOS token: nothing to start from");
    models::LoadOptions options;
    options.num_threads = o->threads;
    options.isa = o->isa;
    options.quantize = *quantize;
    options.context_length = o->ctx;
    // As llama.cpp does, run past the trained context when asked to (warned below).
    options.min_context_length = static_cast<int64_t>(prompt.size()) + o->n_predict;
    auto model = models::load(o->path, options);
    if (o->ctx == 0 && model->info().context_length > model->config().max_position_embeddings) {
      std::fprintf(stderr,
                   "[af-cli run] warning: prompt + n_predict = %lld exceeds the model's trained "
                   "context of %lld; the context was extended\n",
                   static_cast<long long>(options.min_context_length),
                   static_cast<long long>(model->config().max_position_embeddings));
    }
    std::vector<int32_t> eos = model->info().eos_token_ids;
    if (tokenizer->eos_id() >= 0) eos.push_back(tokenizer->eos_id());

    const uint64_t seed = o->seed >= 0 ? static_cast<uint64_t>(o->seed) : std::random_device{}();
    ops::Sampler sampler({o->temp, o->top_k, o->top_p, seed});
    tok::StreamDecoder stream(*tokenizer);
    const auto t_prefill = Clock::now();
    std::vector<float> logits = model->forward_step(prompt);
    const auto t_decode = Clock::now();
    std::string stop_reason = "length";
    std::vector<int32_t> generated;
    const int64_t context = model->info().context_length;
    for (int i = 0; i < o->n_predict; ++i) {
      const int32_t id = sampler.sample(logits);
      if (std::find(eos.begin(), eos.end(), id) != eos.end()) {
        stop_reason = "eos";
        break;
      }
      generated.push_back(id);
      if (o->print_ids) {
        std::printf(generated.size() == 1 ? "%d" : " %d", id);
      } else {
        std::fputs(stream.push(id).c_str(), stdout);
      }
      std::fflush(stdout);
      if (i + 1 == o->n_predict) break;
      if (model->n_past() >= context) {
        stop_reason = "context full";
        break;
      }
      logits = model->forward_step({&id, 1});
    }
    if (!o->print_ids) std::fputs(stream.flush().c_str(), stdout);
    std::fputs("\n", stdout);
    const auto t_end = Clock::now();
    const auto seconds = [](auto a, auto b) {
      return std::chrono::duration<double>(b - a).count();
    };
    const double decode_s = seconds(t_decode, t_end);
    std::fprintf(stderr,
                 "\n[af-cli run] stop: %s | load %.0f ms | prompt %zu tokens, %.1f tok/s | "
                 "generated %zu tokens, %.1f tok/s | seed %llu\n",
                 stop_reason.c_str(), 1000 * seconds(t_load, t_prefill), prompt.size(),
                 static_cast<double>(prompt.size()) / std::max(1e-9, seconds(t_prefill, t_decode)),
                 generated.size(),
                 generated.size() > 1
                     ? static_cast<double>(generated.size() - 1) / std::max(1e-9, decode_s)
                     : 0.0,
                 static_cast<unsigned long long>(seed));
    return 0;
  };
}

}  // namespace af::cli
