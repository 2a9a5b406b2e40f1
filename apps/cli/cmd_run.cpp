// af-cli run -m PATH -p PROMPT [-n N] [--temp T] [--top-k K] [--top-p P] [--min-p P] [--seed S]
//            [--repeat-penalty R] [--threads N] [--print-ids] [--mmproj FILE] [--image IMG ...]
// Prints only the generated text on stdout (streamed; with --print-ids the generated ids
// separated by spaces), timings on stderr. --temp 0 is greedy. Without -p, generation starts
// from the BOS token alone. Images (multimodal models) go where the prompt has the model's image
// token, else right after BOS.
#include <cstdio>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "af/core/error.hpp"
#include "af/models/causal_lm.hpp"
#include "af/runtime/session.hpp"
#include "commands.hpp"
#include "sampling_options.hpp"

namespace af::cli {

Command add_run(CLI::App& app) {
  struct Options {
    std::string path, prompt, isa, mmproj;
    std::vector<std::string> images;
    int n_predict = 128, threads = 0;
    int64_t ctx = 0;
    std::vector<std::string> stop;
    bool print_ids = false, ignore_eos = false;
    SamplingOptions sampling;
  };
  auto o = std::make_shared<Options>();
  auto* sub = app.add_subcommand("run", "Generate text from a prompt");
  sub->add_option("-m,--model", o->path, "HF folder, .safetensors or .gguf file")->required();
  sub->add_option("-p,--prompt", o->prompt, "prompt text (empty: start from BOS)");
  sub->add_option("--mmproj", o->mmproj, "llama.cpp mmproj GGUF (image encoder) for a text GGUF");
  sub->add_option("--image", o->images, "image file (repeatable; multimodal models)");
  sub->add_option("-n,--n-predict", o->n_predict, "tokens to generate (>= 1)");
  add_sampling_options(*sub, o->sampling);
  sub->add_option("--stop", o->stop, "stop string (repeatable); not printed");
  sub->add_flag("--ignore-eos", o->ignore_eos, "keep generating after end-of-sequence tokens");
  sub->add_option("-t,--threads", o->threads, "threads (0: all cores)");
  sub->add_option("-c,--ctx-size", o->ctx, "context length (0: the model's)");
  add_isa_option(*sub, o->isa);
  sub->add_flag("--print-ids", o->print_ids, "print generated ids instead of text");
  auto quantize = std::make_shared<std::string>();
  sub->add_option("--quantize", *quantize, "quantize float weights at load: q8_0, q4_0, q4_k, ...");
  auto kv_type = std::make_shared<std::string>("f32");
  sub->add_option("--kv-type", *kv_type, "KV cache elements: f32 (exact, default) or f16")
      ->check(CLI::IsMember({"f32", "f16"}));
  return [o, quantize, kv_type]() {
    std::shared_ptr<const tok::Tokenizer> tokenizer = tok::Tokenizer::load(o->path);
    GenerateRequest request;
    request.max_tokens = o->n_predict;
    request.stop = o->stop;
    request.ignore_eos = o->ignore_eos;
    request.sampling = make_sampling_params(o->sampling);
    request.prompt_ids = tokenizer->encode(o->prompt, /*add_special=*/true);
    for (const std::string& image : o->images)
      request.images.push_back(modalities::Image::load(image));
    AF_CHECK(!request.prompt_ids.empty(), ErrorCode::kInvalidArgument, "cli",
             "the prompt is empty and the tokenizer adds no BOS token: nothing to start from");

    models::LoadOptions options;
    options.num_threads = o->threads;
    options.isa = o->isa;
    options.quantize = *quantize;
    options.kv_type = *kv_type == "f16" ? DType::F16 : DType::F32;
    options.context_length = o->ctx;
    options.mmproj = o->mmproj;
    // As llama.cpp does, run past the trained context when asked to (warned below).
    options.min_context_length =
        static_cast<int64_t>(request.prompt_ids.size()) + std::max(o->n_predict, 0);
    auto model = models::load(o->path, options);
    if (o->ctx == 0 && model->info().context_length > model->config().max_position_embeddings) {
      std::fprintf(stderr,
                   "[af-cli run] warning: prompt + n_predict = %lld exceeds the model's trained "
                   "context of %lld; the context was extended\n",
                   static_cast<long long>(options.min_context_length),
                   static_cast<long long>(model->config().max_position_embeddings));
    }
    Session session = SessionBuilder().tokenizer(tokenizer).build(std::move(model));

    bool first_id = true;
    if (!o->print_ids) {
      request.on_token = [](const TokenEvent& event) {
        std::fwrite(event.text.data(), 1, event.text.size(), stdout);
        std::fflush(stdout);
        return true;
      };
    }
    const GenerateResponse res = session.generate(request);
    if (o->print_ids) {
      std::vector<int32_t> ids = res.ids;
      // The end-of-sequence token is not part of the output, as in the text.
      if (res.finish_reason == FinishReason::kStop && res.stop_string.empty() && !ids.empty())
        ids.pop_back();
      for (int32_t id : ids) {
        std::printf(first_id ? "%d" : " %d", id);
        first_id = false;
      }
    }
    std::fputs("\n", stdout);
    std::fprintf(stderr,
                 "\n[af-cli run] stop: %s | prompt %lld tokens, %.1f tok/s | generated %zu "
                 "tokens, %.1f tok/s | first token %.0f ms | seed %llu\n",
                 std::string(to_string(res.finish_reason)).c_str(),
                 static_cast<long long>(res.prompt_tokens), res.timings.prompt_tokens_per_s,
                 res.ids.size(), res.timings.generated_tokens_per_s,
                 res.timings.time_to_first_token_ms,
                 static_cast<unsigned long long>(request.sampling.seed));
    return 0;
  };
}

}  // namespace af::cli
