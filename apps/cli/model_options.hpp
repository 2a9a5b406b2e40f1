#pragma once
// The model-loading flags `run` and `chat` share (-t, -c, --quantize, --kv-type/-ctk/-ctv, --isa,
// --extend-context and llama.cpp's -ngl/-fa), checked before the model loads, and the context
// policy: a prompt beyond the model's trained context is refused unless --extend-context asks
// to run past it.
#include <cstdint>
#include <memory>
#include <string>

#include <CLI/CLI.hpp>

#include "af/models/causal_lm.hpp"
#include "cli_common.hpp"

namespace af::cli {

struct ModelOptions {
  std::string path, isa, quantize;
  KvCacheFlags kv;     // --kv-type, -ctk/--cache-type-k, -ctv/--cache-type-v
  std::string mmproj;  // --mmproj: an image encoder GGUF beside a text GGUF (LoadOptions::mmproj)
  int threads = 0;
  int64_t ctx = 0;  // -c; 0: the model's trained context (chat sets its own default)
  bool extend_context = false;
  GpuFlags gpu;
};

// `ctx_help` says what -c's default means for this command; `extend` adds --extend-context.
void add_model_options(CLI::App& sub, ModelOptions& o, const std::string& ctx_help, bool extend);
// Range checks of the flags above (UsageError naming the flag); call before loading.
void check_model_options(const ModelOptions& o);
// The model's trained context (config.json max_position_embeddings or the GGUF context_length),
// read without loading the weights.
int64_t trained_context(const std::string& path);
// LoadOptions for the flags, with `context` KV rows.
models::LoadOptions make_load_options(const ModelOptions& o, int64_t context);

// The KV rows for a prompt of `n_prompt` ids that wants `n_predict` more (-1: until the context
// ends) under -c / --extend-context; throws af::Error(kOutOfRange) naming -c/--ctx-size and
// --extend-context when the prompt does not fit. `command` prefixes warnings.
// models::load with a "loading" progress bar on a terminal (stderr), then one line there naming
// the KV cache's types and bytes per token ("[af-cli <command>] ...").
std::unique_ptr<models::CausalLM> load_with_progress(const std::string& path,
                                                     models::LoadOptions options,
                                                     const char* command);

int64_t plan_context(const ModelOptions& o, int64_t trained, int64_t n_prompt, int64_t n_predict,
                     const char* command);

}  // namespace af::cli
