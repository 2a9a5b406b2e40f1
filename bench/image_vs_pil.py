#!/usr/bin/env python3
"""Image decode + CLIP-336 preprocessing: AlloyForge (build/bench/image_bench) against PIL +
transformers' PIL backend on the same 1024x768 JPEG, in one run, one thread each. CPU time (not
wall time), so that a busy machine skews neither side.

Usage: bench/image_vs_pil.py [--build build] [--testdata ../shared/testdata]
Needs pillow, numpy and transformers (e.g. the venv of tools/make_image_fixtures.py).
"""
import argparse
import io
import json
import os
import subprocess
import tempfile
import time

import numpy as np
from PIL import Image
from transformers import AutoImageProcessor
from transformers.image_transforms import convert_to_rgb

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "tests", "fixtures", "images", "configs", "clip336")


def median_ms(fn, repeats=30):
    times = []
    for _ in range(repeats):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return 1000 * float(np.median(times))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--build", default=os.path.join(ROOT, "build"))
    parser.add_argument("--testdata", default=os.path.join(ROOT, "..", "shared", "testdata"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "photo_1024x768.jpg")
        src = Image.open(os.path.join(args.testdata, "images", "rocket.jpg")).convert("RGB")
        src.resize((1024, 768), Image.BICUBIC).save(path, quality=90)
        env = dict(os.environ, AF_IMAGE_BENCH_FILE=path, AF_IMAGE_BENCH_CONFIG=CONFIG)
        out = subprocess.run([os.path.join(args.build, "bench", "image_bench"),
                              "--benchmark_format=json", "--benchmark_repetitions=5",
                              "--benchmark_report_aggregates_only=true"],
                             env=env, check=True, capture_output=True, text=True).stdout
        af = {b["run_name"]: b["cpu_time"] for b in json.loads(out)["benchmarks"]
              if b.get("aggregate_name") == "median"}
        processor = AutoImageProcessor.from_pretrained(CONFIG)
        with open(path, "rb") as f:
            data = f.read()  # both sides decode from memory
        decoded = convert_to_rgb(Image.open(io.BytesIO(data)), return_numpy=True)
        pil = {
            "BM_Decode": median_ms(
                lambda: convert_to_rgb(Image.open(io.BytesIO(data)), return_numpy=True)),
            "BM_Preprocess": median_ms(lambda: processor(images=decoded, return_tensors="np")),
            "BM_DecodeAndPreprocess": median_ms(
                lambda: processor(images=Image.open(io.BytesIO(data)), return_tensors="np")),
        }
    header = f"{'1024x768 JPEG, CPU ms (median)':32} {'AlloyForge':>11} {'PIL+transformers':>17}"
    print(f"{header} {'speed-up':>9}")
    for name in ("BM_Decode", "BM_Preprocess", "BM_DecodeAndPreprocess"):
        print(f"{name:32} {af[name]:11.2f} {pil[name]:17.2f} {pil[name] / af[name]:8.1f}x")


if __name__ == "__main__":
    main()
