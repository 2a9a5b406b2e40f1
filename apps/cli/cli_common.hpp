#pragma once
// Habits af-cli shares across subcommands: usage errors that name the flag typed (checked before
// a model loads), llama.cpp's flag spellings, prompt sources (-p, -f, stdin) with llama-cli's
// escape processing, one case-insensitive set of quantization type names, and a progress bar
// that only a terminal sees.
#include <cstdint>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <CLI/CLI.hpp>

#include "af/core/dtype.hpp"

namespace af::cli {

// A command line that cannot work (a value out of range, flags that conflict): main() prints
// it and exits 2 like CLI11's own parse errors. Thrown before any model is loaded.
class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Throws UsageError("<flags> <what>") unless ok; `flags` as the user may type them
// ("-n/--n-predict").
void require_flag(bool ok, std::string_view flags, std::string_view what);

// ---- llama.cpp's flags ------------------------------------------------------------------------

// Rewrites argv for CLI11, which reads "-ngl" as "-n gl" and "-hf" as "-h -f": llama.cpp's
// multi-letter single-dash flags become their long forms (-ngl -> --n-gpu-layers, -sys ->
// --system, -fa -> --flash-attn), and the Hub download flags (-hf,
// -hfr, -hff, --hf-repo, ...) throw UsageError. Values of text options (-p "-hf") are left alone.
std::vector<std::string> normalize_llama_args(int argc, char** argv);

// --n-gpu-layers (-ngl) and --flash-attn (-fa): accepted so llama.cpp command lines work; this
// CPU build has nothing to offload, so a note on stderr says they were ignored.
struct GpuFlags {
  std::optional<int> n_gpu_layers;
  bool flash_attn = false;
};
void add_gpu_flags(CLI::App& sub, GpuFlags& flags);
void note_gpu_flags(const GpuFlags& flags, std::string_view command);

// --kv-type (keys and values), --cache-type-k/-ctk and --cache-type-v/-ctv (one side each, as
// llama.cpp's): f32 (exact, the default), f16 or q8_0.
struct KvCacheFlags {
  std::string both = "f32", k, v;  // k / v empty: `both`
};
void add_kv_cache_flags(CLI::App& sub, KvCacheFlags& flags);
// Throws UsageError naming the flag for a type other than f32, f16 or q8_0.
void check_kv_cache_flags(const KvCacheFlags& flags);
// The keys' and values' element types the flags ask for (after check_kv_cache_flags).
DType kv_cache_k_type(const KvCacheFlags& flags);
DType kv_cache_v_type(const KvCacheFlags& flags);
// "KV cache q8_0/f16 (K/V), 9.0 KiB per token": for the load log lines.
std::string describe_kv_cache(DType k_type, DType v_type, int64_t bytes_per_token);

// ---- prompts ----------------------------------------------------------------------------------

// llama-cli's escape processing (its default; --no-escape turns it off): \n \t \r \\ \' \" \a
// \b \f \v \? \0 and \xHH; any other backslash stays as typed.
std::string unescape(std::string_view text);

struct PromptOptions {
  std::optional<std::string> prompt;  // -p
  std::string file;                   // -f ("-": stdin)
  bool escape = true;                 // -e/--escape (default), --no-escape
};
void add_prompt_options(CLI::App& sub, PromptOptions& o);
// The prompt text: -p (escapes processed), -f FILE (as written), or, with neither, stdin when it
// is a pipe or a file (never a terminal, so an interactive shell does not wait); "" if none.
std::string read_prompt(const PromptOptions& o);

// --stop: one string per flag (repeat the flag for more), so a following word is not taken as
// another stop string; escapes processed as for -p unless --no-escape.
void add_stop_option(CLI::App& sub, std::vector<std::string>& stop);
std::vector<std::string> process_stop_strings(const std::vector<std::string>& stop, bool escape);

// ---- quantization type names ------------------------------------------------------------------

// One spelling set for `run/chat/bench --quantize` and `quantize TYPE`, case-insensitive, as
// llama-quantize spells them (Q4_K_M, q4_k_m; Q4_K is Q4_K_M's alias as there).
struct QuantType {
  std::string_view name;  // canonical, lower case
  DType base;             // the type most matrices get
  uint32_t file_type;     // llama.cpp's llama_ftype (general.file_type)
};
const QuantType& find_quant_type(std::string_view name, std::string_view flag);
std::string quant_type_names();  // "f32, f16, bf16, q8_0, ..." for help and errors
// The LoadOptions::quantize string for a --quantize value ("" stays ""); throws UsageError.
std::string load_quantize_name(const std::string& value);

// ---- progress -----------------------------------------------------------------------------------

// A one-line bar redrawn in place on stderr, only when stderr is a terminal (AF_PROGRESS=1
// forces it, =0 hides it); finish() clears the line.
class ProgressBar {
 public:
  explicit ProgressBar(std::string label);
  ~ProgressBar();
  ProgressBar(const ProgressBar&) = delete;
  ProgressBar& operator=(const ProgressBar&) = delete;
  // `detail` is shown after the bar, e.g. the tensor being written.
  void update(int64_t done, int64_t total, std::string_view detail = {});
  void finish();
  bool enabled() const { return enabled_; }

 private:
  std::string label_;
  bool enabled_ = false, drawn_ = false;
  int last_permille_ = -1;
};
bool progress_enabled();

// GenerateRequest::on_prefill for a "prompt" bar (cleared when the prefill ends); empty when
// progress is off. The bar lives as long as the returned function.
std::function<void(int64_t, int64_t)> prefill_progress();

}  // namespace af::cli
