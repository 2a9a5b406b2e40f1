#!/usr/bin/env python3
"""AlloyForge vs llama.cpp on the same GGUF files, run alternately (issue 5).

For every round and every format: `af-cli bench --json` (ours), then llama.cpp through
llama-cpp-python (its libllama built from source with native flags), each in its own process.
llama.cpp is timed as llama-bench does: pp = one llama_decode of a p-token batch on an empty
cache, tg = n single-token llama_decode calls from an empty cache, medians of the repetitions;
with --depth D also tg after a D-token prefill (`af-cli bench --depth D` on our side).
The reported number per engine is the median over rounds. bytes/token and the memory bandwidth
come from our bench run (same file, same process as our timing); llama.cpp's roofline ratio uses
the same bytes/token and the bandwidth measured in the same round.

Files: tools/make_qwen2_shaped.py writes them (default ~/.cache/alloyforge/bench).
Usage:
  /work/venv/bin/python bench/run_vs_llamacpp.py [--formats f16 q8_0 q4_0 q4_k_m] [--rounds 3]
      [--reps 3] [-p 128] [-n 64] [-t 2] [--depth 4096] [--cli build/apps/cli/af-cli]
      [--json-out FILE] [--ours-arg=--kv-type --ours-arg=f16]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("AF_BENCH_CACHE", Path.home() / ".cache/alloyforge/bench"))


def llama_one(path: str, p: int, n: int, threads: int, reps: int, depth: int = 0) -> dict:
    """Runs in a child process: times llama.cpp on one file, prints one JSON object."""
    import llama_cpp as L
    L.llama_backend_init()
    rss_before = rss_bytes()
    t_load = time.perf_counter()
    mp = L.llama_model_default_params()
    model = L.llama_model_load_from_file(path.encode(), mp)
    if not model:
        raise RuntimeError(f"llama.cpp cannot load {path}")
    cp = L.llama_context_default_params()
    cp.n_ctx = max(256, p + n + 8, depth + n + 8)
    cp.n_batch = max(p, 1)
    cp.n_ubatch = max(p, 1)
    cp.n_threads = threads
    cp.n_threads_batch = threads
    cp.flash_attn_type = L.LLAMA_FLASH_ATTN_TYPE_AUTO
    cp.no_perf = True
    ctx = L.llama_init_from_model(model, cp)
    vocab = L.llama_model_get_vocab(model)
    n_vocab = L.llama_vocab_n_tokens(vocab)
    mem = L.llama_get_memory(ctx)
    seed = 12345

    def ids(k):
        nonlocal seed
        out = []
        for _ in range(k):
            seed = (seed * 6364136223846793005 + 1442695040888963407) % (1 << 64)
            out.append((seed >> 33) % n_vocab)
        return out

    def decode(tokens):
        arr = (L.llama_token * len(tokens))(*tokens)
        rc = L.llama_decode(ctx, L.llama_batch_get_one(arr, len(tokens)))
        if rc != 0:
            raise RuntimeError(f"llama_decode returned {rc}")

    load_s = time.perf_counter() - t_load
    # warm-up (as llama-bench): one prompt batch and one token; the first also times the first
    # token after loading, as `af-cli bench` does
    L.llama_memory_clear(mem, True)
    decode(ids(min(p, 16)))
    L.llama_synchronize(ctx)
    first_token_s = time.perf_counter() - t_load
    decode(ids(1))
    L.llama_synchronize(ctx)
    rss_model = rss_bytes() - rss_before
    pp_s, tg_s = [], []
    prompt = ids(p)
    gen = ids(n)
    for _ in range(reps):
        L.llama_memory_clear(mem, True)
        t0 = time.perf_counter()
        decode(prompt)
        L.llama_synchronize(ctx)
        pp_s.append(time.perf_counter() - t0)
        L.llama_memory_clear(mem, True)
        t0 = time.perf_counter()
        for t in gen:
            decode([t])
        L.llama_synchronize(ctx)
        tg_s.append(time.perf_counter() - t0)
    depth_s = []
    if depth > 0:
        # tg after a depth-token prefill (fed in batches of n_batch), as `af-cli bench --depth`
        deep = ids(depth)
        for _ in range(reps):
            L.llama_memory_clear(mem, True)
            for b in range(0, depth, cp.n_batch):
                decode(deep[b:b + cp.n_batch])
            L.llama_synchronize(ctx)
            t0 = time.perf_counter()
            for t in gen:
                decode([t])
            L.llama_synchronize(ctx)
            depth_s.append(time.perf_counter() - t0)
    L.llama_free(ctx)
    L.llama_model_free(model)
    extra = {"tg_depth_tokens_per_s": n / statistics.median(depth_s)} if depth_s else {}
    return extra | {"pp_tokens_per_s": p / statistics.median(pp_s),
            "tg_tokens_per_s": n / statistics.median(tg_s),
            "load_s": load_s, "first_token_s": first_token_s,
            # resident memory the model added to the Python process (the interpreter's own is
            # left out; af-cli's rss_bytes is its whole process, a few MB more)
            "rss_bytes": rss_model}


def rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return -1


def run_ours(cli: Path, path: Path, a) -> dict:
    cmd = [str(cli), "bench", "-m", str(path), "-p", str(a.p), "-n", str(a.n), "-t", str(a.t),
           "-r", str(a.reps), "--json"] + (["--depth", str(a.depth)] if a.depth else []) + a.ours_arg
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        return {"error": r.stderr.strip().splitlines()[-1] if r.stderr.strip() else "failed"}
    return json.loads(r.stdout)


def run_llama(path: Path, a) -> dict:
    cmd = [sys.executable, __file__, "--llama-one", str(path), "-p", str(a.p), "-n", str(a.n),
           "-t", str(a.t), "--reps", str(a.reps), "--depth", str(a.depth)]
    env = dict(os.environ)
    if a.llama_omp_passive:
        env["OMP_WAIT_POLICY"] = "passive"
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        return {"error": r.stderr.strip().splitlines()[-1] if r.stderr.strip() else "failed"}
    return json.loads(r.stdout.strip().splitlines()[-1])


def wait_for_quiet(threshold, max_s):
    """Waits (at most max_s) until the 1-minute load average is below threshold (0: no wait).
    On a shared machine this keeps runs out of other tenants' build bursts; the load seen before
    every run is recorded either way."""
    t0 = time.time()
    while threshold > 0 and os.getloadavg()[0] >= threshold and time.time() - t0 < max_s:
        time.sleep(5)


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(x, spec=".1f"):
    return "n/a" if x is None else format(x, spec)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--llama-one", help=argparse.SUPPRESS)
    ap.add_argument("--cache", type=Path, default=CACHE)
    ap.add_argument("--cli", type=Path, default=ROOT / "build/apps/cli/af-cli")
    ap.add_argument("--formats", nargs="*", default=["f16", "q8_0", "q4_0", "q4_k_m"])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("-p", type=int, default=128)
    ap.add_argument("-n", type=int, default=64)
    ap.add_argument("-t", type=int, default=2)
    ap.add_argument("--depth", type=int, default=0,
                    help="also time tg after a prefill of this many tokens (llama.cpp: its default "
                         "f16 KV cache; ours: float32 unless --ours-arg=--kv-type --ours-arg=f16)")
    ap.add_argument("--json-out", type=Path)
    ap.add_argument("--ours-arg", action="append", default=[],
                    help="extra argument for `af-cli bench` (repeat), e.g. --ours-arg=--quantize "
                         "--ours-arg=bf16 for AVX512_BF16 dot products on a bf16 file")
    ap.add_argument("--wait-load", type=float, default=0.0,
                    help="before each run wait until the 1-min load average is below this")
    ap.add_argument("--wait-max-s", type=float, default=120.0)
    ap.add_argument("--llama-omp-passive", action="store_true",
                    help="OMP_WAIT_POLICY=passive for llama.cpp (its OpenMP threads then sleep "
                         "instead of spinning, which matters when other jobs share the cores)")
    a = ap.parse_args()
    if a.llama_one:
        print(json.dumps(llama_one(a.llama_one, a.p, a.n, a.t, a.reps, a.depth)))
        return 0

    files = {f: a.cache / f"qwen2_shaped-{f}.gguf" for f in a.formats}
    for f, path in files.items():
        if not path.exists():
            sys.exit(f"{path} missing: run tools/make_qwen2_shaped.py first")
    rows = {f: {"ours": [], "llama": []} for f in a.formats}
    for rnd in range(a.rounds):
        for f, path in files.items():
            # alternate which engine goes first, so drift in the machine's load hits both
            order = ["ours", "llama"] if rnd % 2 == 0 else ["llama", "ours"]
            for eng in order:
                wait_for_quiet(a.wait_load, a.wait_max_s)
                load = os.getloadavg()[0]
                res = run_ours(a.cli, path, a) if eng == "ours" else run_llama(path, a)
                res["loadavg_1min_before"] = load
                rows[f][eng].append(res)
                print(f"round {rnd} {f:7s} {eng:5s} load {load:4.1f} " +
                      (res["error"] if "error" in res else
                       f"pp{a.p} {res['pp_tokens_per_s']:.1f} tg{a.n} {res['tg_tokens_per_s']:.2f}"
                       + (f" bw {res['bandwidth_gb_s']:.1f} GB/s" if "bandwidth_gb_s" in res else "")),
                      flush=True)

    summary = {}
    for f in a.formats:
        ours = [r for r in rows[f]["ours"] if "error" not in r]
        llama = [r for r in rows[f]["llama"] if "error" not in r]
        s = {"file_mb": files[f].stat().st_size / 1e6}
        s["ours_pp"] = med([r["pp_tokens_per_s"] for r in ours])
        s["ours_tg"] = med([r["tg_tokens_per_s"] for r in ours])
        s["llama_pp"] = med([r["pp_tokens_per_s"] for r in llama])
        s["llama_tg"] = med([r["tg_tokens_per_s"] for r in llama])
        s["bandwidth_gb_s"] = med([r["bandwidth_gb_s"] for r in ours])
        s["bytes_per_token"] = med([r["bytes_per_token"] for r in ours])
        for k in ("first_token_s", "rss_bytes"):
            s[f"ours_{k}"] = med([r.get(k) for r in ours])
            s[f"llama_{k}"] = med([r.get(k) for r in llama])
        s["kv_cache_bytes"] = med([r.get("kv_cache_bytes") for r in ours])
        if a.depth:
            s["ours_tg_depth"] = med([r.get("tg_depth_tokens_per_s") for r in ours])
            s["llama_tg_depth"] = med([r.get("tg_depth_tokens_per_s") for r in llama])
            o, l = s["ours_tg_depth"], s["llama_tg_depth"]
            s["ratio_tg_depth"] = o / l if o and l else None
        if not ours:
            s["ours_error"] = rows[f]["ours"][0].get("error")
        if s["bandwidth_gb_s"] and s["bytes_per_token"]:
            lim = s["bandwidth_gb_s"] * 1e9 / s["bytes_per_token"]
            s["tg_limit"] = lim
            s["ours_roofline"] = s["ours_tg"] / lim if s["ours_tg"] else None
            s["llama_roofline"] = s["llama_tg"] / lim if s["llama_tg"] else None
        for k in ("pp", "tg"):
            o, l = s.get(f"ours_{k}"), s.get(f"llama_{k}")
            s[f"ratio_{k}"] = o / l if o and l else None
        summary[f] = s

    print()
    print(f"| format | file MB | ours pp{a.p} | llama.cpp pp{a.p} | ratio | ours tg{a.n} | "
          f"llama.cpp tg{a.n} | ratio | bandwidth GB/s | tg limit | ours roofline | "
          f"llama.cpp roofline |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for f, s in summary.items():
        print(f"| {f.upper()} | {s['file_mb']:.0f} | {fmt(s['ours_pp'])} | {fmt(s['llama_pp'])} | "
              f"{fmt(s['ratio_pp'], '.2f')} | {fmt(s['ours_tg'], '.2f')} | "
              f"{fmt(s['llama_tg'], '.2f')} | {fmt(s['ratio_tg'], '.2f')} | "
              f"{fmt(s.get('bandwidth_gb_s'))} | {fmt(s.get('tg_limit'))} | "
              f"{fmt(s.get('ours_roofline'), '.2f')} | {fmt(s.get('llama_roofline'), '.2f')} |")
        if "ours_error" in s:
            print(f"  ours on {f}: {s['ours_error']}")
    print()
    print("| format | file MB | ours load + first token ms | llama.cpp | ours RSS MB | "
          "llama.cpp RSS MB (model's share) | our KV cache MB |")
    print("|---|---|---|---|---|---|---|")
    for f, s in summary.items():
        ms = lambda x: None if x is None else 1e3 * x
        mb = lambda x: None if x is None else x / 1e6
        print(f"| {f.upper()} | {s['file_mb']:.0f} | {fmt(ms(s['ours_first_token_s']), '.0f')} | "
              f"{fmt(ms(s['llama_first_token_s']), '.0f')} | {fmt(mb(s['ours_rss_bytes']), '.0f')} | "
              f"{fmt(mb(s['llama_rss_bytes']), '.0f')} | {fmt(mb(s['kv_cache_bytes']), '.1f')} |")
    if a.depth:
        print()
        print(f"| format | ours tg{a.n} at depth {a.depth} | llama.cpp | ratio |")
        print("|---|---|---|---|")
        for f, s in summary.items():
            print(f"| {f.upper()} | {fmt(s['ours_tg_depth'], '.2f')} | "
                  f"{fmt(s['llama_tg_depth'], '.2f')} | {fmt(s['ratio_tg_depth'], '.2f')} |")
    if a.json_out:
        a.json_out.write_text(json.dumps({"date": time.strftime("%Y-%m-%d %H:%M"),
                                          "args": vars(a) | {"cache": str(a.cache),
                                                             "cli": str(a.cli),
                                                             "json_out": str(a.json_out)},
                                          "summary": summary, "runs": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
