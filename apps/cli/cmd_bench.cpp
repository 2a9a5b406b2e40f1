// af-cli bench -m PATH [-p 512] [-n 128] [-t 2] [-r REPS] [--depth D] [--json]
// Prefill (pp: p tokens in one forward) and decode (tg: n single-token steps from an empty
// cache, or after a D-token prefill with --depth) speed as the median of REPS repetitions, the
// bytes one decode token reads (weights + KV cache), and the memory bandwidth measured in the
// same process with the same thread count, so that roofline_ratio = tg * bytes / bandwidth says
// how close decoding is to the memory limit. It also reports the load time, the time to the first
// token (load + the first forward, page faults included) and the resident memory against the
// file and KV cache sizes. --json prints exactly one JSON object.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "af/backend/backend.hpp"
#include "af/backend/key_cache.hpp"
#include "af/backend/quant.hpp"
#include "af/core/error.hpp"
#include "af/io/model_files.hpp"
#include "af/models/causal_lm.hpp"
#include "cli_common.hpp"
#include "commands.hpp"

namespace af::cli {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

double median(std::vector<double> v) {
  AF_CHECK(!v.empty(), ErrorCode::kInternal, "bench", "median of no samples");
  std::sort(v.begin(), v.end());
  const size_t h = v.size() / 2;
  return v.size() % 2 ? v[h] : 0.5 * (v[h - 1] + v[h]);
}

// Reads a buffer much larger than the last-level cache with `threads` threads, each streaming
// its contiguous share, as the decode matmuls stream the weights. Four independent xor chains
// over 64-bit words vectorise to full-width loads; the result is kept so nothing is elided.
class BandwidthProbe {
 public:
  BandwidthProbe(size_t bytes, int threads)
      : words_(bytes / sizeof(uint64_t)), threads_(std::max(threads, 1)) {
    data_.reset(new uint64_t[words_]);
    // Written (not just allocated) so every page is resident before the first timed pass.
    for (size_t i = 0; i < words_; ++i) data_[i] = i * 0x9E3779B97F4A7C15ull;
  }

  // One timed pass; returns GB/s (1e9 bytes per second).
  double pass() {
    std::vector<uint64_t> sums(static_cast<size_t>(threads_));
    std::vector<std::thread> pool;
    const size_t share = words_ / static_cast<size_t>(threads_) / 8 * 8;
    const auto t0 = Clock::now();
    for (int t = 1; t < threads_; ++t)
      pool.emplace_back([&, t] { sums[static_cast<size_t>(t)] = read(t * share, share); });
    sums[0] = read(0, share);
    for (std::thread& th : pool) th.join();
    const double s = seconds_since(t0);
    for (uint64_t v : sums) sink_ ^= v;
    return static_cast<double>(share * static_cast<size_t>(threads_) * sizeof(uint64_t)) / s / 1e9;
  }
  uint64_t sink() const { return sink_; }

 private:
  uint64_t read(size_t begin, size_t count) const {
    const uint64_t* p = data_.get() + begin;
    uint64_t a = 0, b = 0, c = 0, d = 0, e = 0, f = 0, g = 0, h = 0;
    for (size_t i = 0; i < count; i += 8) {
      a ^= p[i];
      b ^= p[i + 1];
      c ^= p[i + 2];
      d ^= p[i + 3];
      e ^= p[i + 4];
      f ^= p[i + 5];
      g ^= p[i + 6];
      h ^= p[i + 7];
    }
    return a ^ b ^ c ^ d ^ e ^ f ^ g ^ h;
  }

  size_t words_;
  int threads_;
  std::unique_ptr<uint64_t[]> data_;
  uint64_t sink_ = 0;
};

// Weight bytes one decode token reads: every matrix once (as loaded: --quantize converts the
// float ones), except an untied embedding table, of which only one row is read (a tied table is
// read whole as the output projection).
struct WeightBytes {
  int64_t per_token = 0;
  int64_t file = 0;
  std::string types;  // e.g. "q4_K:168,q6_K:25,f32:121" (tensor counts per storage type)
};

// `load_as`: the type the loader converts float matrices to (--quantize), if any.
WeightBytes weight_bytes(const io::ModelFiles& files, int64_t vocab, bool tied,
                         std::optional<DType> load_as) {
  WeightBytes out;
  std::map<std::string, int> counts;
  for (const std::string& name : files.weights->names()) {
    const Tensor t = files.weights->get(name);
    out.file += static_cast<int64_t>(t.nbytes());
    // Every 2-D float tensor of these models is a matrix the loader converts.
    DType type = t.dtype();
    if (load_as && t.shape().rank() == 2 && !info(type).quantized) {
      type = quant::load_type(*load_as, t.shape()[1]).value_or(type);
    }
    const int64_t bytes = t.shape().rank() == 2 ? t.shape()[0] * row_bytes(type, t.shape()[1])
                                                : static_cast<int64_t>(t.nbytes());
    counts[std::string(af::name(t.dtype()))]++;
    if (name == "model.embed_tokens.weight" && !tied && t.shape().rank() == 2) {
      out.per_token += bytes / std::max<int64_t>(vocab, 1);
    } else {
      out.per_token += bytes;
    }
  }
  for (const auto& [type, n] : counts) {
    if (!out.types.empty()) out.types += ',';
    out.types += type + ":" + std::to_string(n);
  }
  return out;
}

// Resident memory of this process in bytes (VmRSS), or -1 where /proc does not say.
int64_t resident_bytes() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoll(line.substr(6)) * 1024;  // "... kB"
  }
  return -1;
}

std::vector<int32_t> bench_ids(int64_t n, int64_t vocab) {
  std::vector<int32_t> ids(static_cast<size_t>(n));
  uint64_t s = 0x2545F4914F6CDD1Dull;
  for (int32_t& id : ids) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    id = static_cast<int32_t>((s >> 33) % static_cast<uint64_t>(vocab));
  }
  return ids;
}

}  // namespace

Command add_bench(CLI::App& app) {
  struct Options {
    std::string path, isa, quantize, kv_type = "f32";
    int64_t n_prompt = 512, n_gen = 128, depth = 0;
    int threads = 2, reps = 5;
    int64_t bw_mib = 1024;
    bool json = false, repack = true;
  };
  auto o = std::make_shared<Options>();
  auto* sub = app.add_subcommand("bench", "Measure prefill/decode speed against memory bandwidth");
  sub->add_option("-m,--model", o->path, "HF folder, .safetensors or .gguf file")->required();
  // Ranges are checked in the command (check_options), with messages that name the flag.
  sub->add_option("-p,--n-prompt", o->n_prompt,
                  "prefill tokens (pp), one forward (0: skip pp, as llama-bench)");
  sub->add_option("-n,--n-gen", o->n_gen, "decode steps (tg)");
  sub->add_option("-t,--threads", o->threads, "threads");
  sub->add_option("-r,--reps", o->reps, "repetitions (medians are reported)");
  sub->add_option("--depth", o->depth,
                  "also measure tg after a prefill of this many tokens (0: off), e.g. 4096");
  sub->add_option("--bw-mib", o->bw_mib, "bandwidth probe buffer in MiB (keep >> L3)")
      ->check(CLI::Range(int64_t{16}, int64_t{1} << 20));
  add_isa_option(*sub, o->isa);
  sub->add_option("--quantize", o->quantize,
                  "weights at load (every matrix to the type's base; bf16 also computes with "
                  "AVX512_BF16 dot products): " +
                      quant_type_names());
  sub->add_option("--kv-type", o->kv_type,
                  "KV cache elements (LoadOptions::kv_type): f32 (exact) or f16");
  sub->add_flag("--json", o->json, "print one JSON object");
  sub->add_flag("--repack,!--no-repack", o->repack,
                "repack quantized file weights at load (LoadOptions::repack_weights; default on)");
  return [o]() {
    require_flag(o->n_prompt >= 0, "-p/--n-prompt",
                 "must be >= 0 (0: skip the prefill test), got " + std::to_string(o->n_prompt));
    require_flag(o->n_gen >= 1, "-n/--n-gen", "must be >= 1, got " + std::to_string(o->n_gen));
    require_flag(o->threads >= 1, "-t/--threads",
                 "must be >= 1, got " + std::to_string(o->threads));
    require_flag(o->reps >= 1, "-r/--reps", "must be >= 1, got " + std::to_string(o->reps));
    require_flag(o->depth >= 0, "--depth",
                 "must be >= 0 (0: off), got " + std::to_string(o->depth));
    require_flag(o->kv_type == "f32" || o->kv_type == "f16", "--kv-type",
                 "'" + o->kv_type + "': expected f32 or f16");
    const std::string quantize = load_quantize_name(o->quantize);
    models::LoadOptions options;
    options.num_threads = o->threads;
    options.isa = o->isa;
    options.quantize = quantize;
    options.repack_weights = o->repack;
    options.kv_type = o->kv_type == "f16" ? DType::F16 : DType::F32;
    options.context_length = std::max(o->n_prompt, o->depth + o->n_gen);
    options.context_length = std::max(options.context_length, o->n_gen);
    const auto t_load = Clock::now();
    auto model = models::load(o->path, options);
    const double load_s = seconds_since(t_load);
    const ModelConfig config = model->config();
    const models::ModelInfo& info = model->info();
    AF_CHECK(o->depth == 0 || o->depth + o->n_gen <= info.context_length, ErrorCode::kOutOfRange,
             "bench", "--depth ", o->depth, " + -n ", o->n_gen, " exceeds the context of ",
             info.context_length);
    const std::string isa = make_backend({Device::cpu(), 1, o->isa})->name();

    const io::ModelFiles files = io::open_model_files(o->path);
    const bool tied = !files.weights->has("lm_head.weight");
    const std::optional<DType> load_as =
        quantize.empty() ? std::nullopt : dtype_from_name(quantize);
    const WeightBytes wb = weight_bytes(files, config.vocab_size, tied, load_as);
    // The KV cache holds, per layer, ctx positions of K (in whole blocks of kKeyBlock,
    // af/backend/key_cache.hpp) and V, n_kv_heads * head_dim elements each (4 or 2 bytes); a
    // decode step at context c reads c positions of K and V per layer.
    const int64_t kv_element = options.kv_type == DType::F16 ? 2 : 4;
    const int64_t kv_row_bytes =
        config.num_layers * 2 * info.num_kv_heads * info.head_dim * kv_element;
    const int64_t kv_cache_bytes =
        config.num_layers * kv_element *
        (key_cache_floats(info.context_length, info.num_kv_heads, info.head_dim) +
         info.context_length * info.num_kv_heads * info.head_dim);
    auto bytes_at = [&](double mean_context) {
      return static_cast<double>(wb.per_token) + mean_context * static_cast<double>(kv_row_bytes);
    };

    const std::vector<int32_t> prompt = bench_ids(o->n_prompt, config.vocab_size);
    const std::vector<int32_t> gen = bench_ids(o->n_gen, config.vocab_size);
    const std::vector<int32_t> deep = bench_ids(o->depth, config.vocab_size);
    // Warm-up, timed only as the first token: pages of the mapped weights become resident,
    // caches and pools settle.
    model->reset_state();
    const auto t_first = Clock::now();
    const std::vector<int32_t>& warm = o->n_prompt > 0 ? prompt : gen;
    model->forward(std::span<const int32_t>(warm.data(), std::min<size_t>(warm.size(), 16)), false);
    const double first_token_s = load_s + seconds_since(t_first);
    model->reset_state();
    for (int i = 0; i < 2 && i < o->n_gen; ++i)
      model->forward_step({&gen[static_cast<size_t>(i)], 1});

    // Allocated after the warm-up so that the resident memory read before it is the model's.
    const int64_t rss_model = resident_bytes();
    BandwidthProbe probe(static_cast<size_t>(o->bw_mib) << 20, o->threads);
    probe.pass();  // warm-up
    std::vector<double> bw;

    auto time_decode = [&](int64_t start) {
      model->truncate(start);
      const auto t0 = Clock::now();
      for (int32_t id : gen) model->forward_step({&id, 1});
      return seconds_since(t0);
    };

    std::vector<double> pp_s, tg_s, deep_s;
    for (int r = 0; r < o->reps; ++r) {
      model->reset_state();
      if (o->n_prompt > 0) {
        const auto t0 = Clock::now();
        model->forward(prompt, false);
        pp_s.push_back(seconds_since(t0));
        bw.push_back(probe.pass());
      }
      tg_s.push_back(time_decode(0));
      bw.push_back(probe.pass());
    }
    if (o->depth > 0) {
      model->reset_state();
      for (size_t b = 0; b < deep.size(); b += 512) {
        const size_t e = std::min(deep.size(), b + 512);
        model->forward(std::span<const int32_t>(deep.data() + b, e - b), false);
      }
      for (int r = 0; r < o->reps; ++r) {
        deep_s.push_back(time_decode(o->depth));
        bw.push_back(probe.pass());
      }
    }

    const double bandwidth = median(bw);
    const double pp = pp_s.empty() ? 0.0 : static_cast<double>(o->n_prompt) / median(pp_s);
    const double tg = static_cast<double>(o->n_gen) / median(tg_s);
    const double bytes = bytes_at(0.5 * static_cast<double>(o->n_gen));
    nlohmann::ordered_json j;
    j["model"] = o->path;
    j["format"] = files.format;
    j["weight_types"] = wb.types;
    j["isa"] = isa;
    j["threads"] = o->threads;
    j["n_prompt"] = o->n_prompt;
    j["n_gen"] = o->n_gen;
    j["reps"] = o->reps;
    j["repack_weights"] = o->repack;
    j["quantize"] = o->quantize;
    j["kv_type"] = o->kv_type;
    j["load_s"] = load_s;
    j["first_token_s"] = first_token_s;
    j["rss_bytes"] = rss_model;
    j["kv_cache_bytes"] = kv_cache_bytes;
    j["pp_tokens_per_s"] = pp_s.empty() ? nlohmann::ordered_json() : nlohmann::ordered_json(pp);
    j["tg_tokens_per_s"] = tg;
    j["bytes_per_token"] = bytes;
    j["weight_bytes_per_token"] = wb.per_token;
    j["weight_file_bytes"] = wb.file;
    j["bandwidth_gb_s"] = bandwidth;
    j["roofline_ratio"] = tg * bytes / (bandwidth * 1e9);
    j["bandwidth_probe_mib"] = o->bw_mib;
    j["bandwidth_min_gb_s"] = *std::min_element(bw.begin(), bw.end());
    j["bandwidth_max_gb_s"] = *std::max_element(bw.begin(), bw.end());
    if (o->depth > 0) {
      const double tgd = static_cast<double>(o->n_gen) / median(deep_s);
      const double bytes_d =
          bytes_at(static_cast<double>(o->depth) + 0.5 * static_cast<double>(o->n_gen));
      j["depth"] = o->depth;
      j["tg_depth_tokens_per_s"] = tgd;
      j["bytes_per_token_depth"] = bytes_d;
      j["roofline_ratio_depth"] = tgd * bytes_d / (bandwidth * 1e9);
    }
    // Keeps the probe's reads observable so the compiler cannot drop them.
    volatile uint64_t probe_sink = probe.sink();
    (void)probe_sink;
    if (o->json) {
      std::printf("%s\n", j.dump().c_str());
      return 0;
    }
    std::printf("model            %s (%s; %s)\n", o->path.c_str(), files.format.c_str(),
                wb.types.c_str());
    std::printf("kernels          %s, %d threads, %d reps (medians)\n", isa.c_str(), o->threads,
                o->reps);
    std::printf("load             %10.1f ms (first token after %.1f ms)\n", load_s * 1e3,
                first_token_s * 1e3);
    std::printf("resident memory  %10.1f MB (weights %.1f MB, KV cache %.1f MB)\n",
                static_cast<double>(rss_model) / 1e6, static_cast<double>(wb.file) / 1e6,
                static_cast<double>(kv_cache_bytes) / 1e6);
    if (pp_s.empty()) {
      std::printf("pp               skipped (-p 0)\n");
    } else {
      std::printf("pp%-6lld         %10.2f tokens/s\n", static_cast<long long>(o->n_prompt), pp);
    }
    std::printf("tg%-6lld         %10.2f tokens/s\n", static_cast<long long>(o->n_gen), tg);
    std::printf("bytes/token      %10.1f MB (weights %.1f MB + KV)\n", bytes / 1e6,
                static_cast<double>(wb.per_token) / 1e6);
    std::printf("bandwidth        %10.2f GB/s (min %.2f, max %.2f)\n", bandwidth,
                j["bandwidth_min_gb_s"].get<double>(), j["bandwidth_max_gb_s"].get<double>());
    std::printf("roofline ratio   %10.3f\n", j["roofline_ratio"].get<double>());
    if (o->depth > 0) {
      std::printf("tg%lld @ depth %lld %8.2f tokens/s (roofline ratio %.3f)\n",
                  static_cast<long long>(o->n_gen), static_cast<long long>(o->depth),
                  j["tg_depth_tokens_per_s"].get<double>(),
                  j["roofline_ratio_depth"].get<double>());
    }
    return 0;
  };
}

}  // namespace af::cli
