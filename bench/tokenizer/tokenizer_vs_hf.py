#!/usr/bin/env python3
"""Encode speed of af::tok (bench/tokenizer/tokenizer_bench) against HF tokenizers on the same
deterministic mixed text, same thread count.

The text (a few MB: English prose-like word runs, other scripts, code, numbers, emoji, white
space runs) is generated from a fixed seed into a temporary file, cut into ~4 KB documents at
line ends (the C++ program cuts the same way). HF is timed with encode_batch (RAYON_NUM_THREADS
threads, set before the library is imported) and, for one thread, also with a plain loop of
encode(); the best of --repeat runs is reported, in MB/s of UTF-8 input.

Usage: /work/venv/bin/python bench/tokenizer/tokenizer_vs_hf.py --bench build/bench/tokenizer/tokenizer_bench \
           [--mb 4] [--threads 1] [--testdata ../shared/testdata]
"""
import argparse
import os
import random
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def make_text(megabytes, seed=2024):
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    from tokenizer_make_fixtures import WORDS, EMOJI, CODE  # same vocabulary of pieces
    rng = random.Random(seed)
    english = WORDS["en"]
    others = [w for k, v in WORDS.items() if k != "en" for w in v]
    out, size = [], 0
    while size < megabytes * 1_000_000:
        kind = rng.random()
        if kind < 0.6:
            line = " ".join(rng.choice(english) for _ in range(rng.randint(5, 30))) + "."
        elif kind < 0.75:
            line = " ".join(rng.choice(others) for _ in range(rng.randint(3, 15)))
        elif kind < 0.88:
            line = rng.choice(CODE)
        elif kind < 0.95:
            line = " ".join(str(rng.randint(0, 10 ** rng.randint(1, 12))) for _ in range(6))
        else:
            line = " ".join(rng.choice(EMOJI + english) for _ in range(8)) + "   \t "
        out.append(line)
        size += len(line.encode()) + 1
    return "\n".join(out) + "\n"


def documents(text, doc_bytes=4096):
    data = text.encode()
    docs, begin = [], 0
    while begin < len(data):
        end = min(len(data), begin + doc_bytes)
        nl = data.find(b"\n", end)
        end = len(data) if nl < 0 else nl + 1
        docs.append(data[begin:end].decode())
        begin = end
    return docs


def time_hf(path, docs, threads, repeat):
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(path) if path.endswith(".json") else None
    if tok is None:
        from transformers import AutoTokenizer
        tok = AutoTokenizer.from_pretrained(path).backend_tokenizer
    nbytes = sum(len(d.encode()) for d in docs)
    best_batch = best_loop = 1e30
    for _ in range(repeat):
        t0 = time.perf_counter()
        enc = tok.encode_batch(docs, add_special_tokens=False)
        best_batch = min(best_batch, time.perf_counter() - t0)
        if threads == 1:
            t0 = time.perf_counter()
            for d in docs:
                tok.encode(d, add_special_tokens=False)
            best_loop = min(best_loop, time.perf_counter() - t0)
    ntok = sum(len(e.ids) for e in enc)
    return nbytes, ntok, nbytes / best_batch / 1e6, (nbytes / best_loop / 1e6 if threads == 1
                                                     else None)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bench", required=True, help="path of the tokenizer_bench program")
    ap.add_argument("--mb", type=float, default=4)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--testdata", default=os.path.join(ROOT, "..", "shared", "testdata"))
    args = ap.parse_args()
    os.environ["RAYON_NUM_THREADS"] = str(args.threads)  # before tokenizers is imported
    os.environ["TOKENIZERS_PARALLELISM"] = "true"

    cases = [
        ("Qwen2.5 (byte-level BPE)", "tokenizer/hf/qwen2.5"),
        ("Phi-3 / Llama (SPM BPE)", "tokenizer/hf/phi-3-mini/tokenizer.json"),
        ("GPT-2 (byte-level BPE)", "tokenizer/hf/gpt2"),
        ("BERT WordPiece (tiny, fixtures)", os.path.join(ROOT, "tests/fixtures/tokenizer/models/wordpiece.json")),
        ("Unigram (tiny, fixtures)", os.path.join(ROOT, "tests/fixtures/tokenizer/models/unigram.json")),
    ]
    text = make_text(args.mb)
    docs = documents(text)
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False, encoding="utf-8") as f:
        f.write(text)
        text_path = f.name
    print(f"text: {len(text.encode())} bytes, {len(docs)} documents, threads {args.threads}")
    print("| tokenizer | af tokens | HF tokens | af MB/s | HF encode_batch MB/s | HF encode loop MB/s |")
    print("|---|---|---|---|---|---|")
    try:
        for name, rel in cases:
            path = rel if os.path.isabs(rel) else os.path.join(args.testdata, rel)
            if not os.path.exists(path):
                print(f"| {name} | (missing {path}) |")
                continue
            if path.endswith("gpt2"):
                continue  # vocab.json + merges.txt without a class: see tokenizer_make_fixtures
            out = subprocess.run([args.bench, "--tokenizer", path, "--text", text_path,
                                  "--threads", str(args.threads), "--repeat", str(args.repeat)],
                                 check=True, capture_output=True, text=True).stdout
            fields = dict(kv.split("=") for kv in out.split())
            nbytes, ntok, hf_batch, hf_loop = time_hf(path, docs, args.threads, args.repeat)
            loop = f"{hf_loop:.2f}" if hf_loop is not None else "-"
            print(f"| {name} | {fields['tokens']} | {ntok} | {float(fields['MB/s']):.2f} | "
                  f"{hf_batch:.2f} | {loop} |")
    finally:
        os.unlink(text_path)


if __name__ == "__main__":
    main()
