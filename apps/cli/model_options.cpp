#include "model_options.hpp"

#include <algorithm>
#include <cstdio>

#include "af/core/error.hpp"
#include "af/io/model_files.hpp"
#include "af/models/model_files.hpp"
#include "commands.hpp"

namespace af::cli {

void add_model_options(CLI::App& sub, ModelOptions& o, const std::string& ctx_help, bool extend) {
  sub.add_option("-m,--model", o.path, "HF folder, .safetensors or .gguf file")->required();
  sub.add_option("-t,--threads", o.threads, "threads (0: all cores)");
  sub.add_option("-c,--ctx-size", o.ctx, ctx_help);
  if (extend) {
    sub.add_flag("--extend-context", o.extend_context,
                 "run past the model's trained context when the prompt needs it (RoPE "
                 "positions it never saw: quality degrades); without it such a prompt is refused");
  }
  sub.add_option("--quantize", o.quantize,
                 "quantize float weights at load (every matrix to the type's base: q4_k_m -> "
                 "Q4_K): " +
                     quant_type_names());
  add_kv_cache_flags(sub, o.kv);
  add_isa_option(sub, o.isa);
  sub.add_option("--mmproj", o.mmproj, "llama.cpp mmproj GGUF (image encoder) for a text GGUF");
  add_gpu_flags(sub, o.gpu);
}

void check_model_options(const ModelOptions& o) {
  require_flag(o.threads >= 0, "-t/--threads",
               "must be >= 0 (0: all cores), got " + std::to_string(o.threads));
  require_flag(o.ctx >= 0, "-c/--ctx-size",
               "must be >= 0 (0: the model's), got " + std::to_string(o.ctx));
  check_kv_cache_flags(o.kv);
  load_quantize_name(o.quantize);  // throws UsageError for an unknown name
}

int64_t trained_context(const std::string& path) {
  const io::ModelFiles files = models::open_model_files(path);
  const nlohmann::json* config = &files.config;
  std::string field = "max_position_embeddings";
  // A LLaVA folder: the text model's context is text_config's (LlamaConfig's default 2048 when
  // an older checkpoint leaves it out, as models/llava.cpp reads it).
  const auto text = files.config.find("text_config");
  if (!files.config.contains(field) && text != files.config.end() && text->is_object()) {
    if (!text->contains(field) && text->value("model_type", std::string("llama")) == "llama")
      return 2048;
    config = &*text;
    field = "text_config." + field;
  }
  const auto it = config->find("max_position_embeddings");
  AF_CHECK(it != config->end() && it->is_number_integer() && it->get<int64_t>() > 0,
           ErrorCode::kFormat, "cli", path, ": the config has no positive integer ", field,
           " (the trained context)");
  return it->get<int64_t>();
}

models::LoadOptions make_load_options(const ModelOptions& o, int64_t context) {
  models::LoadOptions options;
  options.num_threads = o.threads;
  options.isa = o.isa;
  options.quantize = load_quantize_name(o.quantize);
  options.kv_type_k = kv_cache_k_type(o.kv);
  options.kv_type_v = kv_cache_v_type(o.kv);
  options.context_length = context;
  options.mmproj = o.mmproj;
  return options;
}

std::unique_ptr<models::CausalLM> load_with_progress(const std::string& path,
                                                     models::LoadOptions options,
                                                     const char* command) {
  ProgressBar bar("loading");
  if (bar.enabled()) {
    options.on_progress = [&bar](int64_t done, int64_t total) { bar.update(done, total); };
  }
  auto model = models::load(path, options);
  bar.finish();
  const models::ModelInfo& info = model->info();
  std::fprintf(stderr, "[af-cli %s] loaded %s: context %lld, %s\n", command,
               info.architecture.c_str(), static_cast<long long>(info.context_length),
               describe_kv_cache(info.kv_type_k, info.kv_type_v, info.kv_bytes_per_token).c_str());
  return model;
}

int64_t plan_context(const ModelOptions& o, int64_t trained, int64_t n_prompt, int64_t n_predict,
                     const char* command) {
  int64_t ctx = o.ctx > 0 ? o.ctx : trained;
  if (o.ctx > trained) {
    std::fprintf(stderr,
                 "[af-cli %s] warning: -c/--ctx-size %lld is beyond the model's trained context "
                 "of %lld; positions past it degrade quality\n",
                 command, static_cast<long long>(o.ctx), static_cast<long long>(trained));
  }
  // At least one generated token must fit after the prompt.
  const int64_t wanted = n_prompt + std::max<int64_t>(n_predict, 1);
  if (n_prompt < ctx && (wanted <= ctx || !o.extend_context)) return ctx;
  AF_CHECK(o.extend_context, ErrorCode::kOutOfRange, "cli", "the prompt is ", n_prompt,
           " tokens; the context holds ", ctx,
           o.ctx > 0 ? " (-c/--ctx-size)" : " (the model's trained context)",
           ": shorten the prompt, or pass --extend-context to run past the trained context "
           "(quality degrades)");
  if (o.ctx > 0 && n_prompt < ctx) return ctx;
  const int64_t extended = std::max(wanted, ctx);
  std::fprintf(stderr,
               "[af-cli %s] warning: --extend-context: the context is %lld, %.1fx the model's "
               "trained %lld; quality degrades past it\n",
               command, static_cast<long long>(extended),
               static_cast<double>(extended) / static_cast<double>(trained),
               static_cast<long long>(trained));
  return extended;
}

}  // namespace af::cli
