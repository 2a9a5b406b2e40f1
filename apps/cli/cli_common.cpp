#include "cli_common.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <iterator>
#include <memory>
#include <sstream>

namespace af::cli {

void require_flag(bool ok, std::string_view flags, std::string_view what) {
  if (!ok) throw UsageError(std::string(flags) + " " + std::string(what));
}

// ---- llama.cpp's flags ------------------------------------------------------------------------

namespace {

struct Rewrite {
  std::string_view from, to;
};
constexpr Rewrite kRewrites[] = {
    {"-ngl", "--n-gpu-layers"}, {"--gpu-layers", "--n-gpu-layers"}, {"-sys", "--system"},
    {"-fa", "--flash-attn"},    {"-ctk", "--cache-type-k"},         {"-ctv", "--cache-type-v"},
};

constexpr std::string_view kHubFlags[] = {
    "-hf",       "-hfr",      "-hff",       "-hft",        "-hfv", "-hffv",        "-mu",
    "--hf-repo", "--hf-file", "--hf-token", "--model-url", "-dr",  "--docker-repo"};

// Options whose next argument is free text that may start with '-'.
constexpr std::string_view kTextOptions[] = {"-p",     "--prompt",        "--system", "-sys",
                                             "--stop", "--template",      "-f",       "--file",
                                             "--ids",  "--reverse-prompt"};

template <class Range>
bool contains(const Range& range, std::string_view s) {
  return std::find(std::begin(range), std::end(range), s) != std::end(range);
}

}  // namespace

std::vector<std::string> normalize_llama_args(int argc, char** argv) {
  std::vector<std::string> out;
  out.reserve(static_cast<size_t>(argc));
  bool value_next = false;
  for (int i = 0; i < argc; ++i) {
    std::string arg = argv[i];
    if (i > 0 && !value_next) {
      const std::string_view name = std::string_view(arg).substr(0, arg.find('='));
      if (contains(kHubFlags, name)) {
        throw UsageError(std::string(name) +
                         ": downloading from the Hub is not supported: pass a local path with "
                         "-m (an HF folder, a .safetensors or a .gguf file)");
      }
      for (const Rewrite& r : kRewrites) {
        if (name == r.from) arg = std::string(r.to) + arg.substr(name.size());
      }
    }
    value_next = !value_next && i > 0 && contains(kTextOptions, arg);
    out.push_back(std::move(arg));
  }
  return out;
}

void add_gpu_flags(CLI::App& sub, GpuFlags& flags) {
  sub.add_option("--n-gpu-layers", flags.n_gpu_layers,
                 "llama.cpp's -ngl: accepted and ignored (this build runs on the CPU)");
  sub.add_flag("--flash-attn", flags.flash_attn,
               "llama.cpp's -fa: accepted and ignored (attention is always fused here)");
}

void note_gpu_flags(const GpuFlags& flags, std::string_view command) {
  if (flags.n_gpu_layers) {
    std::fprintf(stderr,
                 "[af-cli %.*s] note: -ngl/--n-gpu-layers %d ignored: this build runs on the CPU\n",
                 static_cast<int>(command.size()), command.data(), *flags.n_gpu_layers);
  }
}

void add_kv_cache_flags(CLI::App& sub, KvCacheFlags& flags) {
  sub.add_option("--kv-type", flags.both,
                 "KV cache elements, keys and values: f32 (exact, default), f16 or q8_0");
  sub.add_option("--cache-type-k", flags.k,
                 "llama.cpp's -ctk: the keys' elements (f32, f16, q8_0); default --kv-type");
  sub.add_option("--cache-type-v", flags.v,
                 "llama.cpp's -ctv: the values' elements (f32, f16, q8_0); default --kv-type");
}

namespace {

std::optional<DType> kv_cache_type(std::string_view name) {
  if (name == "f32") return DType::F32;
  if (name == "f16") return DType::F16;
  if (name == "q8_0") return DType::Q8_0;
  return std::nullopt;
}

}  // namespace

void check_kv_cache_flags(const KvCacheFlags& flags) {
  const auto check = [](const std::string& value, std::string_view flag) {
    require_flag(kv_cache_type(value).has_value(), flag,
                 "'" + value + "': expected f32, f16 or q8_0");
  };
  check(flags.both, "--kv-type");
  if (!flags.k.empty()) check(flags.k, "-ctk/--cache-type-k");
  if (!flags.v.empty()) check(flags.v, "-ctv/--cache-type-v");
}

DType kv_cache_k_type(const KvCacheFlags& flags) {
  return kv_cache_type(flags.k.empty() ? flags.both : flags.k).value_or(DType::F32);
}

DType kv_cache_v_type(const KvCacheFlags& flags) {
  return kv_cache_type(flags.v.empty() ? flags.both : flags.v).value_or(DType::F32);
}

std::string describe_kv_cache(DType k_type, DType v_type, int64_t bytes_per_token) {
  char buf[128];
  std::snprintf(buf, sizeof buf, "KV cache %s/%s (K/V), %.1f KiB per token",
                std::string(name(k_type)).c_str(), std::string(name(v_type)).c_str(),
                static_cast<double>(bytes_per_token) / 1024.0);
  return buf;
}

// ---- prompts ----------------------------------------------------------------------------------

namespace {

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

std::string unescape(std::string_view in) {
  std::string out;
  out.reserve(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] != '\\' || i + 1 == in.size()) {
      out.push_back(in[i]);
      continue;
    }
    const char c = in[++i];
    switch (c) {
      case 'n':
        out.push_back('\n');
        break;
      case 't':
        out.push_back('\t');
        break;
      case 'r':
        out.push_back('\r');
        break;
      case 'a':
        out.push_back('\a');
        break;
      case 'b':
        out.push_back('\b');
        break;
      case 'f':
        out.push_back('\f');
        break;
      case 'v':
        out.push_back('\v');
        break;
      case '0':
        out.push_back('\0');
        break;
      case '\\':
      case '\'':
      case '"':
      case '?':
        out.push_back(c);
        break;
      case 'x':
        if (i + 2 < in.size() && hex_value(in[i + 1]) >= 0 && hex_value(in[i + 2]) >= 0) {
          out.push_back(static_cast<char>(hex_value(in[i + 1]) * 16 + hex_value(in[i + 2])));
          i += 2;
          break;
        }
        [[fallthrough]];
      default:  // not an escape: kept as typed, as llama.cpp does
        out.push_back('\\');
        out.push_back(c);
    }
  }
  return out;
}

void add_prompt_options(CLI::App& sub, PromptOptions& o) {
  sub.add_option("-p,--prompt", o.prompt, "prompt text (none: -f, else a piped stdin, else BOS)");
  sub.add_option("-f,--file", o.file, "read the prompt from this file (\"-\": stdin), as written");
  sub.add_flag("-e,--escape,!--no-escape", o.escape,
               "process \\n, \\t, \\\\, \\xHH ... in -p/--stop text (default on, as "
               "llama-cli; --no-escape keeps backslashes)");
}

namespace {

std::string read_all(std::istream& in) {
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// True when stdin is a pipe or a redirected file: a terminal or /dev/null is not read.
bool stdin_has_data_source() {
  struct stat st {};
  if (fstat(STDIN_FILENO, &st) != 0) return false;
  return S_ISFIFO(st.st_mode) || S_ISREG(st.st_mode);
}

}  // namespace

std::string read_prompt(const PromptOptions& o) {
  require_flag(!(o.prompt && !o.file.empty()), "-p/--prompt and -f/--file",
               "both give the prompt: pass one of them");
  if (o.prompt) return o.escape ? unescape(*o.prompt) : *o.prompt;
  if (o.file == "-") return read_all(std::cin);
  if (!o.file.empty()) {
    std::ifstream in(o.file, std::ios::binary);
    require_flag(in.good(), "-f/--file", "'" + o.file + "': cannot open the file");
    return read_all(in);
  }
  return stdin_has_data_source() ? read_all(std::cin) : std::string();
}

void add_stop_option(CLI::App& sub, std::vector<std::string>& stop) {
  sub.add_option("--stop,-r,--reverse-prompt", stop,
                 "stop string, not printed; one per flag (repeat --stop for more)")
      ->expected(1)
      ->allow_extra_args(false)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
}

std::vector<std::string> process_stop_strings(const std::vector<std::string>& stop, bool escape) {
  std::vector<std::string> out;
  for (const std::string& s : stop) {
    out.push_back(escape ? unescape(s) : s);
    require_flag(!out.back().empty(), "--stop", "is empty: a stop string needs text");
  }
  return out;
}

// ---- quantization type names ------------------------------------------------------------------

namespace {

constexpr QuantType kQuantTypes[] = {
    {"f32", DType::F32, 0},      {"f16", DType::F16, 1},      {"bf16", DType::BF16, 32},
    {"q8_0", DType::Q8_0, 7},    {"q4_0", DType::Q4_0, 2},    {"q4_1", DType::Q4_1, 3},
    {"q5_0", DType::Q5_0, 8},    {"q5_1", DType::Q5_1, 9},    {"q2_k", DType::Q2_K, 10},
    {"q3_k_m", DType::Q3_K, 12}, {"q4_k_s", DType::Q4_K, 14}, {"q4_k_m", DType::Q4_K, 15},
    {"q5_k_m", DType::Q5_K, 17}, {"q6_k", DType::Q6_K, 18},
};

// llama-quantize's aliases: a K type without a size letter is its _M mixture.
constexpr Rewrite kQuantAliases[] = {{"q3_k", "q3_k_m"}, {"q4_k", "q4_k_m"}, {"q5_k", "q5_k_m"}};

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

}  // namespace

std::string quant_type_names() {
  std::string all;
  for (const QuantType& t : kQuantTypes) all += (all.empty() ? "" : ", ") + std::string(t.name);
  return all + " (any case; q3_k, q4_k, q5_k mean their _m)";
}

const QuantType& find_quant_type(std::string_view name, std::string_view flag) {
  std::string key = lower(name);
  for (const Rewrite& a : kQuantAliases) {
    if (key == a.from) key = a.to;
  }
  for (const QuantType& t : kQuantTypes) {
    if (t.name == key) return t;
  }
  throw UsageError(std::string(flag) + " '" + std::string(name) + "': unknown type (expected " +
                   quant_type_names() + ")");
}

std::string load_quantize_name(const std::string& value) {
  if (value.empty()) return value;
  // At load every matrix gets the base type (no per-tensor mixture): q4_k_m quantizes to Q4_K.
  return lower(name(find_quant_type(value, "--quantize").base));
}

// ---- progress -----------------------------------------------------------------------------------

bool progress_enabled() {
  if (const char* env = std::getenv("AF_PROGRESS")) return std::string_view(env) != "0";
  return isatty(STDERR_FILENO) != 0;
}

ProgressBar::ProgressBar(std::string label)
    : label_(std::move(label)), enabled_(progress_enabled()) {}

ProgressBar::~ProgressBar() { finish(); }

void ProgressBar::update(int64_t done, int64_t total, std::string_view detail) {
  if (!enabled_ || total <= 0) return;
  const int permille = static_cast<int>(std::min<int64_t>(1000, done * 1000 / total));
  if (permille == last_permille_ && detail.empty()) return;
  last_permille_ = permille;
  constexpr int kWidth = 30;
  const int filled = permille * kWidth / 1000;
  std::string bar(static_cast<size_t>(filled), '#');
  bar.append(static_cast<size_t>(kWidth - filled), '.');
  // \r + "erase line" so a shorter line leaves no tail of the longer one before it.
  std::fprintf(stderr, "\r\033[K%s [%s] %3d%% %.*s", label_.c_str(), bar.c_str(), permille / 10,
               static_cast<int>(std::min<size_t>(detail.size(), 60)), detail.data());
  std::fflush(stderr);
  drawn_ = true;
}

std::function<void(int64_t, int64_t)> prefill_progress() {
  if (!progress_enabled()) return {};
  auto bar = std::make_shared<ProgressBar>("prompt");
  return [bar](int64_t done, int64_t total) {
    bar->update(done, total, std::to_string(done) + "/" + std::to_string(total) + " tokens");
    if (done >= total) bar->finish();
  };
}

void ProgressBar::finish() {
  if (drawn_) {
    std::fputs("\r\033[K", stderr);
    std::fflush(stderr);
  }
  drawn_ = false;
}

}  // namespace af::cli
