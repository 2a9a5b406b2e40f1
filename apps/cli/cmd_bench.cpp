// af-cli bench -m PATH [-p 512] [-n 128] [-t 2] [-r REPS] [-d D] [-ctk T] [-ctv T]
//              [--json | -o md|csv|json|jsonl]
// -p, -n, -t and -d take comma lists (-p 128,512 -t 1,2), as llama-bench's do: every
// combination is measured on its own and printed as one row.
// Prefill (pp: p tokens in one forward) and decode (tg: n single-token steps from an empty
// cache) speed, and with -d D both again after a D-token prefill (llama-bench's --n-depth), as
// the median of REPS repetitions, the KV cache's types (-ctk/-ctv) and bytes per token, the
// bytes one decode token reads (weights + KV cache), and the memory bandwidth measured in the
// same process with the same thread count, so that roofline_ratio = tg * bytes / bandwidth says
// how close decoding is to the memory limit. The bandwidth (bandwidth_probe.hpp) is the highest
// sustained read rate these threads get: each pass streams a --bw-mib buffer (default 1 GiB,
// keep it well above the LLC) once with wide loads, independent accumulators and software
// prefetch (bandwidth_stream_gb_s) and once by memcpy (bandwidth_memcpy_gb_s), and counts the
// faster; bandwidth_gb_s is the median over passes interleaved with the timed repetitions,
// bandwidth_method names the kernels. (The earlier probe, one xor loop of 16-byte loads without
// prefetch, read 25-40 % below that limit, below what the decode itself streams: roofline
// ratios above 1.) It also reports the load time, the time to the first token (load + the first
// forward, page faults included) and the resident memory against the file and KV cache sizes.
// --json prints exactly one JSON object per combination.
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
#include <vector>

#include <nlohmann/json.hpp>

#include "af/backend/backend.hpp"
#include "af/backend/key_cache.hpp"
#include "af/backend/quant.hpp"
#include "af/core/error.hpp"
#include "af/io/model_files.hpp"
#include "af/models/causal_lm.hpp"
#include "af/models/model_files.hpp"
#include "bandwidth_probe.hpp"
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

namespace {

struct BenchOptions {
  std::string path, isa, quantize, output;
  KvCacheFlags kv;  // --kv-type, -ctk/--cache-type-k, -ctv/--cache-type-v
  // Comma lists (llama-bench style): every combination is one measurement / output row.
  std::vector<int64_t> n_prompt{512}, n_gen{128}, depth{0};
  std::vector<int> threads{2};
  int reps = 5;
  int64_t bw_mib = 1024;
  bool json = false, repack = true;
};

// Every value of the comma lists, checked before anything loads, with the flag named.
void check_options(const BenchOptions& o) {
  for (int64_t p : o.n_prompt) {
    require_flag(p >= 0, "-p/--n-prompt",
                 "must be >= 0 (0: skip the prefill test), got " + std::to_string(p));
  }
  for (int64_t n : o.n_gen) {
    require_flag(n >= 1, "-n/--n-gen", "must be >= 1, got " + std::to_string(n));
  }
  for (int t : o.threads) {
    require_flag(t >= 1, "-t/--threads", "must be >= 1, got " + std::to_string(t));
  }
  require_flag(o.reps >= 1, "-r/--reps", "must be >= 1, got " + std::to_string(o.reps));
  require_flag(o.bw_mib >= 1 && o.bw_mib <= (int64_t{1} << 20), "--bw-mib",
               "must be 1..1048576 (MiB), got " + std::to_string(o.bw_mib));
  for (int64_t d : o.depth) {
    require_flag(d >= 0, "-d/--depth", "must be >= 0 (0: off), got " + std::to_string(d));
  }
  check_kv_cache_flags(o.kv);
  load_quantize_name(o.quantize);  // an unknown type name is a usage error before loading
}

// One combination's measurement.
struct BenchCase {
  int threads;
  int64_t n_prompt, n_gen, depth;
};

// Loads the model with `c.threads` threads and measures one combination; the JSON object is the
// --json contract (keys documented in docs/USER_GUIDE.md).
nlohmann::ordered_json run_case(const BenchOptions& o, const BenchCase& c) {
  const std::string quantize = load_quantize_name(o.quantize);
  models::LoadOptions options;
  options.num_threads = c.threads;
  options.isa = o.isa;
  options.quantize = quantize;
  options.repack_weights = o.repack;
  options.kv_type_k = kv_cache_k_type(o.kv);
  options.kv_type_v = kv_cache_v_type(o.kv);
  options.context_length = std::max(c.depth + c.n_prompt, c.depth + c.n_gen);
  options.context_length = std::max(options.context_length, c.n_gen);
  const auto t_load = Clock::now();
  auto model = models::load(o.path, options);
  const double load_s = seconds_since(t_load);
  const ModelConfig config = model->config();
  const models::ModelInfo& info = model->info();
  AF_CHECK(c.depth == 0 || c.depth + std::max(c.n_gen, c.n_prompt) <= info.context_length,
           ErrorCode::kOutOfRange, "bench", "--depth ", c.depth, " + -n ", c.n_gen, " / -p ",
           c.n_prompt, " exceeds the context of ", info.context_length);
  const std::string isa = make_backend({Device::cpu(), 1, o.isa})->name();

  const io::ModelFiles files = models::open_model_files(o.path);
  const bool tied = !files.weights->has("lm_head.weight");
  const std::optional<DType> load_as = quantize.empty() ? std::nullopt : dtype_from_name(quantize);
  const WeightBytes wb = weight_bytes(files, config.vocab_size, tied, load_as);
  // The KV cache holds, per layer, ctx positions of K (in whole blocks of kKeyBlock) and V in
  // the layouts of af/backend/key_cache.hpp (f32, f16 or q8_0 each); a decode step at context c
  // reads c positions of K and V per layer: kv_row_bytes (ModelInfo::kv_bytes_per_token).
  const int64_t kv_row_bytes = info.kv_bytes_per_token;
  const int64_t kv_cache_bytes =
      config.num_layers *
      (key_cache_bytes(info.kv_type_k, info.context_length, info.num_kv_heads, info.head_dim) +
       info.context_length * value_row_bytes(info.kv_type_v, info.num_kv_heads, info.head_dim));
  auto bytes_at = [&](double mean_context) {
    return static_cast<double>(wb.per_token) + mean_context * static_cast<double>(kv_row_bytes);
  };

  const std::vector<int32_t> prompt = bench_ids(c.n_prompt, config.vocab_size);
  const std::vector<int32_t> gen = bench_ids(c.n_gen, config.vocab_size);
  const std::vector<int32_t> deep = bench_ids(c.depth, config.vocab_size);
  // Warm-up, timed only as the first token: pages of the mapped weights become resident,
  // caches and pools settle.
  model->reset_state();
  const auto t_first = Clock::now();
  const std::vector<int32_t>& warm = c.n_prompt > 0 ? prompt : gen;
  model->forward(std::span<const int32_t>(warm.data(), std::min<size_t>(warm.size(), 16)), false);
  const double first_token_s = load_s + seconds_since(t_first);
  model->reset_state();
  for (int i = 0; i < 2 && i < c.n_gen; ++i) model->forward_step({&gen[static_cast<size_t>(i)], 1});

  // Allocated after the warm-up so that the resident memory read before it is the model's.
  const int64_t rss_model = resident_bytes();
  BandwidthProbe probe(static_cast<size_t>(o.bw_mib) << 20, c.threads);
  probe.pass();  // warm-up
  std::vector<double> bw, bw_stream, bw_memcpy;
  auto probe_pass = [&] {
    const BandwidthSample s = probe.pass();
    bw.push_back(s.best_gb_s());
    bw_stream.push_back(s.stream_gb_s);
    bw_memcpy.push_back(s.memcpy_gb_s);
  };

  auto time_decode = [&](int64_t start) {
    model->truncate(start);
    const auto t0 = Clock::now();
    for (int32_t id : gen) model->forward_step({&id, 1});
    return seconds_since(t0);
  };

  std::vector<double> pp_s, tg_s, deep_s, deep_pp_s;
  for (int r = 0; r < o.reps; ++r) {
    model->reset_state();
    if (c.n_prompt > 0) {
      const auto t0 = Clock::now();
      model->forward(prompt, false);
      pp_s.push_back(seconds_since(t0));
      probe_pass();
    }
    tg_s.push_back(time_decode(0));
    probe_pass();
  }
  if (c.depth > 0) {
    model->reset_state();
    for (size_t b = 0; b < deep.size(); b += 512) {
      const size_t e = std::min(deep.size(), b + 512);
      model->forward(std::span<const int32_t>(deep.data() + b, e - b), false);
    }
    for (int r = 0; r < o.reps; ++r) {
      deep_s.push_back(time_decode(c.depth));
      probe_pass();
      // pp at depth (llama-bench's -d): the prompt after the depth tokens, in one forward.
      if (c.n_prompt > 0) {
        model->truncate(c.depth);
        const auto t0 = Clock::now();
        model->forward(prompt, false);
        deep_pp_s.push_back(seconds_since(t0));
      }
    }
  }

  const double bandwidth = median(bw);
  const double pp = pp_s.empty() ? 0.0 : static_cast<double>(c.n_prompt) / median(pp_s);
  const double tg = static_cast<double>(c.n_gen) / median(tg_s);
  const double bytes = bytes_at(0.5 * static_cast<double>(c.n_gen));
  nlohmann::ordered_json j;
  j["model"] = o.path;
  j["format"] = files.format;
  j["weight_types"] = wb.types;
  j["isa"] = isa;
  j["threads"] = c.threads;
  j["n_prompt"] = c.n_prompt;
  j["n_gen"] = c.n_gen;
  j["reps"] = o.reps;
  j["repack_weights"] = o.repack;
  j["quantize"] = o.quantize;
  j["kv_type"] = o.kv.both;
  j["cache_type_k"] = std::string(name(info.kv_type_k));
  j["cache_type_v"] = std::string(name(info.kv_type_v));
  j["load_s"] = load_s;
  j["first_token_s"] = first_token_s;
  j["rss_bytes"] = rss_model;
  j["kv_cache_bytes"] = kv_cache_bytes;
  j["kv_bytes_per_token"] = kv_row_bytes;
  j["pp_tokens_per_s"] = pp_s.empty() ? nlohmann::ordered_json() : nlohmann::ordered_json(pp);
  j["tg_tokens_per_s"] = tg;
  j["bytes_per_token"] = bytes;
  j["weight_bytes_per_token"] = wb.per_token;
  j["weight_file_bytes"] = wb.file;
  j["bandwidth_gb_s"] = bandwidth;
  j["roofline_ratio"] = tg * bytes / (bandwidth * 1e9);
  j["bandwidth_probe_mib"] = o.bw_mib;
  j["bandwidth_min_gb_s"] = *std::min_element(bw.begin(), bw.end());
  j["bandwidth_max_gb_s"] = *std::max_element(bw.begin(), bw.end());
  j["bandwidth_method"] = std::string("max(") + probe.stream_method() + ", memcpy) per pass";
  j["bandwidth_stream_gb_s"] = median(bw_stream);
  j["bandwidth_memcpy_gb_s"] = median(bw_memcpy);
  if (c.depth > 0) {
    const double tgd = static_cast<double>(c.n_gen) / median(deep_s);
    const double bytes_d =
        bytes_at(static_cast<double>(c.depth) + 0.5 * static_cast<double>(c.n_gen));
    j["depth"] = c.depth;
    j["tg_depth_tokens_per_s"] = tgd;
    j["bytes_per_token_depth"] = bytes_d;
    j["roofline_ratio_depth"] = tgd * bytes_d / (bandwidth * 1e9);
    j["pp_depth_tokens_per_s"] =
        deep_pp_s.empty()
            ? nlohmann::ordered_json()
            : nlohmann::ordered_json(static_cast<double>(c.n_prompt) / median(deep_pp_s));
  }
  // Keeps the probe's reads observable so the compiler cannot drop them.
  volatile uint64_t probe_sink = probe.sink();
  (void)probe_sink;
  return j;
}

void print_text(const nlohmann::ordered_json& j) {
  const auto num = [&](const char* key) { return j[key].get<double>(); };
  std::printf("model            %s (%s; %s)\n", j["model"].get<std::string>().c_str(),
              j["format"].get<std::string>().c_str(), j["weight_types"].get<std::string>().c_str());
  std::printf("kernels          %s, %d threads, %d reps (medians)\n",
              j["isa"].get<std::string>().c_str(), j["threads"].get<int>(), j["reps"].get<int>());
  std::printf("load             %10.1f ms (first token after %.1f ms)\n", num("load_s") * 1e3,
              num("first_token_s") * 1e3);
  std::printf("resident memory  %10.1f MB (weights %.1f MB, KV cache %.1f MB)\n",
              num("rss_bytes") / 1e6, num("weight_file_bytes") / 1e6, num("kv_cache_bytes") / 1e6);
  std::printf("KV cache         %s/%s (K/V), %.0f bytes per token (all layers)\n",
              j["cache_type_k"].get<std::string>().c_str(),
              j["cache_type_v"].get<std::string>().c_str(), num("kv_bytes_per_token"));
  if (j["pp_tokens_per_s"].is_null()) {
    std::printf("pp               skipped (-p 0)\n");
  } else {
    std::printf("pp%-6lld         %10.2f tokens/s\n", j["n_prompt"].get<long long>(),
                num("pp_tokens_per_s"));
  }
  std::printf("tg%-6lld         %10.2f tokens/s\n", j["n_gen"].get<long long>(),
              num("tg_tokens_per_s"));
  std::printf("bytes/token      %10.1f MB (weights %.1f MB + KV)\n", num("bytes_per_token") / 1e6,
              num("weight_bytes_per_token") / 1e6);
  std::printf("bandwidth        %10.2f GB/s (min %.2f, max %.2f)\n", num("bandwidth_gb_s"),
              num("bandwidth_min_gb_s"), num("bandwidth_max_gb_s"));
  std::printf("  stream / memcpy %9.2f / %.2f GB/s (%s)\n", num("bandwidth_stream_gb_s"),
              num("bandwidth_memcpy_gb_s"), j["bandwidth_method"].get<std::string>().c_str());
  std::printf("roofline ratio   %10.3f\n", num("roofline_ratio"));
  if (j.contains("depth")) {
    std::printf("tg%lld @ depth %lld %8.2f tokens/s (roofline ratio %.3f)\n",
                j["n_gen"].get<long long>(), j["depth"].get<long long>(),
                num("tg_depth_tokens_per_s"), num("roofline_ratio_depth"));
    if (!j["pp_depth_tokens_per_s"].is_null()) {
      std::printf("pp%lld @ depth %lld %8.2f tokens/s\n", j["n_prompt"].get<long long>(),
                  j["depth"].get<long long>(), num("pp_depth_tokens_per_s"));
    }
  }
}

// The md / csv rows: one per combination, llama-bench's habit of one line per test setting.
// Columns after "bandwidth GB/s" came later (kept last so existing csv readers still work).
const char* const kTableColumns[] = {"model",    "weight_types", "isa",          "threads",
                                     "n_prompt", "n_gen",        "depth",        "pp t/s",
                                     "tg t/s",   "tg@depth t/s", "roofline",     "bandwidth GB/s",
                                     "ctk",      "ctv",          "pp@depth t/s", "KV bytes/token"};

std::vector<std::string> table_row(const nlohmann::ordered_json& j) {
  const auto fixed = [](double v, int digits) {
    char buf[64];
    std::snprintf(buf, sizeof(buf), "%.*f", digits, v);
    return std::string(buf);
  };
  const bool deep = j.contains("depth");
  const bool deep_pp = deep && !j["pp_depth_tokens_per_s"].is_null();
  return {j["model"].get<std::string>(),
          j["weight_types"].get<std::string>(),
          j["isa"].get<std::string>(),
          std::to_string(j["threads"].get<int>()),
          std::to_string(j["n_prompt"].get<int64_t>()),
          std::to_string(j["n_gen"].get<int64_t>()),
          deep ? std::to_string(j["depth"].get<int64_t>()) : "0",
          j["pp_tokens_per_s"].is_null() ? "" : fixed(j["pp_tokens_per_s"].get<double>(), 2),
          fixed(j["tg_tokens_per_s"].get<double>(), 2),
          deep ? fixed(j["tg_depth_tokens_per_s"].get<double>(), 2) : "",
          fixed(j["roofline_ratio"].get<double>(), 3),
          fixed(j["bandwidth_gb_s"].get<double>(), 2),
          j["cache_type_k"].get<std::string>(),
          j["cache_type_v"].get<std::string>(),
          deep_pp ? fixed(j["pp_depth_tokens_per_s"].get<double>(), 2) : "",
          std::to_string(j["kv_bytes_per_token"].get<int64_t>())};
}

// CSV field quoting (RFC 4180): fields with commas or quotes are quoted, quotes doubled.
std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string out = "\"";
  for (char ch : s) out += ch == '"' ? std::string("\"\"") : std::string(1, ch);
  return out + "\"";
}

void print_rows(const std::string& format, const std::vector<nlohmann::ordered_json>& rows) {
  if (format == "json") {
    nlohmann::ordered_json all = nlohmann::ordered_json::array();
    for (const auto& j : rows) all.push_back(j);
    std::printf("%s\n", all.dump(1).c_str());
  } else if (format == "jsonl") {
    for (const auto& j : rows) std::printf("%s\n", j.dump().c_str());
  } else if (format == "csv") {
    std::string line;
    for (const char* c : kTableColumns) line += (line.empty() ? "" : ",") + csv_field(c);
    std::printf("%s\n", line.c_str());
    for (const auto& j : rows) {
      line.clear();
      for (const std::string& f : table_row(j)) line += (line.empty() ? "" : ",") + csv_field(f);
      std::printf("%s\n", line.c_str());
    }
  } else {  // md
    std::string head = "|", rule = "|";
    for (const char* c : kTableColumns) {
      head += std::string(" ") + c + " |";
      rule += " --- |";
    }
    std::printf("%s\n%s\n", head.c_str(), rule.c_str());
    for (const auto& j : rows) {
      std::string line = "|";
      for (const std::string& f : table_row(j)) line += " " + f + " |";
      std::printf("%s\n", line.c_str());
    }
  }
}

}  // namespace

Command add_bench(CLI::App& app) {
  auto o = std::make_shared<BenchOptions>();
  auto* sub = app.add_subcommand("bench", "Measure prefill/decode speed against memory bandwidth");
  sub->add_option("-m,--model", o->path, "HF folder, .safetensors or .gguf file")->required();
  // Ranges are checked in the command (check_options), with messages that name the flag.
  sub->add_option("-p,--n-prompt", o->n_prompt,
                  "prefill tokens (pp), one forward (0: skip pp, as llama-bench); a comma list "
                  "runs each")
      ->delimiter(',');
  sub->add_option("-n,--n-gen", o->n_gen, "decode steps (tg); a comma list runs each")
      ->delimiter(',');
  sub->add_option("-t,--threads", o->threads, "threads; a comma list runs each")->delimiter(',');
  sub->add_option("-r,--reps", o->reps, "repetitions (medians are reported)");
  sub->add_option("-d,--depth", o->depth,
                  "also measure tg after a prefill of this many tokens (0: off), e.g. 4096; a "
                  "comma list runs each")
      ->delimiter(',');
  sub->add_option("--bw-mib", o->bw_mib, "bandwidth probe buffer in MiB (keep >> L3)")
      ->check(CLI::Range(int64_t{16}, int64_t{1} << 20));
  add_isa_option(*sub, o->isa);
  sub->add_option("--quantize", o->quantize,
                  "weights at load (every matrix to the type's base; bf16 also computes with "
                  "AVX512_BF16 dot products): " +
                      quant_type_names());
  add_kv_cache_flags(*sub, o->kv);
  sub->add_flag("--json", o->json, "print one JSON object (one per line for several combinations)");
  sub->add_option("-o,--output", o->output,
                  "md, csv, json (an array) or jsonl: one row per combination")
      ->check(CLI::IsMember({"md", "csv", "json", "jsonl"}));
  sub->add_flag("--repack,!--no-repack", o->repack,
                "repack quantized file weights at load (LoadOptions::repack_weights; default on)");
  return [o]() {
    check_options(*o);
    std::vector<BenchCase> cases;  // threads outermost, as llama-bench orders its rows
    for (int t : o->threads) {
      for (int64_t p : o->n_prompt) {
        for (int64_t n : o->n_gen) {
          for (int64_t d : o->depth) cases.push_back({t, p, n, d});
        }
      }
    }
    std::vector<nlohmann::ordered_json> rows;
    for (const BenchCase& c : cases) {
      rows.push_back(run_case(*o, c));
      if (!o->output.empty()) continue;
      if (o->json) {
        std::printf("%s\n", rows.back().dump().c_str());
      } else {
        if (rows.size() > 1) std::printf("\n");
        print_text(rows.back());
      }
      std::fflush(stdout);
    }
    if (!o->output.empty()) print_rows(o->output, rows);
    return 0;
  };
}

}  // namespace af::cli
