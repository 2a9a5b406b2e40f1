#!/usr/bin/env python3
"""Sentence-embedding throughput: AlloyForge (`af-cli embed`) vs sentence-transformers on the
real all-MiniLM-L6-v2, batch 32, 2 threads, in the same run on the same machine.

  /work/pyref/bin/python bench/embeddings_vs_sentence_transformers.py \
      [--cli build/apps/cli/af-cli] [--model $AF_MODELS/all-minilm-l6-v2] [-n 512] [--reps 3]

Both sides embed the same N sentences (deterministic, 6-60 words) with batch size 32 and 2
threads (torch.set_num_threads(2); af-cli -t 2). Times exclude model loading and include
tokenization; each side reports its best of --reps runs. The vectors are also compared (max
cosine distance), so a fast wrong answer cannot pass.
"""
from __future__ import annotations

import argparse
import os
import random
import subprocess
import tempfile
import time

import numpy as np

WORDS = ("the a quick brown fox jumps over lazy dog model vector sentence embedding search query "
         "document river mountain city night morning coffee music learning fast slow bright dark "
         "computer language network weather garden market story people question answer world "
         "small large ancient modern simple complex happy quiet loud energy water light").split()


def sentences(n: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        words = [rng.choice(WORDS) for _ in range(rng.randint(6, 60))]
        out.append(" ".join(words).capitalize() + ".")
    return out


def bench_ours(cli: str, model: str, texts: list[str], reps: int):
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write("\n".join(texts) + "\n")
        path = f.name
    best, vectors = float("inf"), None
    try:
        for _ in range(reps):
            p = subprocess.run([cli, "embed", "-m", model, "-f", path, "-t", "2", "-b", "32",
                                "--timing"], capture_output=True, text=True, check=True)
            seconds = float(p.stderr.split(" in ")[1].split(" s")[0])
            best = min(best, seconds)
            vectors = np.array([np.fromstring(line.strip()[1:-1], sep=",")
                                for line in p.stdout.splitlines()])
    finally:
        os.unlink(path)
    return best, vectors


def bench_st(model: str, texts: list[str], reps: int):
    import torch
    from sentence_transformers import SentenceTransformer
    torch.set_num_threads(2)
    st = SentenceTransformer(model, device="cpu")
    st.encode(texts[:32], batch_size=32)  # warm-up
    best, vectors = float("inf"), None
    for _ in range(reps):
        t0 = time.perf_counter()
        vectors = st.encode(texts, batch_size=32, convert_to_numpy=True)
        best = min(best, time.perf_counter() - t0)
    return best, vectors


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cli", default="build/apps/cli/af-cli")
    ap.add_argument("--model", default=os.path.join(os.environ.get("AF_MODELS", ""),
                                                    "all-minilm-l6-v2"))
    ap.add_argument("-n", type=int, default=512)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    texts = sentences(args.n)
    ours_s, ours_v = bench_ours(args.cli, args.model, texts, args.reps)
    st_s, st_v = bench_st(args.model, texts, args.reps)
    cos = 1 - np.sum(ours_v * st_v, axis=1) / (np.linalg.norm(ours_v, axis=1) *
                                               np.linalg.norm(st_v, axis=1))
    print(f"sentences: {len(texts)}, batch 32, 2 threads, best of {args.reps}")
    print(f"sentence-transformers: {st_s:.3f} s  {len(texts) / st_s:8.1f} sentences/s")
    print(f"alloyforge:            {ours_s:.3f} s  {len(texts) / ours_s:8.1f} sentences/s")
    print(f"speedup: {st_s / ours_s:.2f}x   max cosine distance: {cos.max():.2e}")


if __name__ == "__main__":
    main()
