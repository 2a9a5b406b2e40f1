#!/usr/bin/env python3
"""Image encode time, AlloyForge vs llama.cpp's mtmd, on the same CLIP ViT-L/14-336-shaped mmproj
(random weights; bench/make_clip_mmproj.py, F16 and Q8_0), same image, same thread count, runs
interleaved in one session. AlloyForge: build/bench/image_encoder_bench (preprocess + tower +
projector, 3 iterations). llama.cpp: llama-mtmd-cli with a 1-layer random Llama text model of
n_embd 4096 (written here, stories260K's vocabulary), timing from its log line
"mtmd batch encoding done in N ms" (tower + projector of the one image chunk; its preprocessing
is not in it).

Usage (from the repository root; the GGUFs go to --work, ~1 GB, not committed):
  PYTHONPATH=/work/peers/llama.cpp/gguf-py /work/pyref/bin/python \\
      bench/image_encode_vs_llamacpp.py --work /tmp/clipbench [--rounds 3] [--threads 2]
"""
import argparse
import os
import re
import statistics
import subprocess
import sys

import numpy as np
import gguf

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_text_model(path, testdata):
    """A 1-layer Llama GGUF of n_embd 4096: mtmd refuses an mmproj whose output width differs."""
    src = gguf.GGUFReader(os.path.join(testdata, "models", "stories260K", "stories260K.gguf"))
    field = lambda k: src.fields[k].contents()
    rng = np.random.default_rng(1)
    hidden, heads, kv, ffn = 4096, 32, 4, 64
    vocab = len(field("tokenizer.ggml.tokens"))
    w = gguf.GGUFWriter(path, "llama")
    w.add_context_length(512)
    w.add_embedding_length(hidden)
    w.add_block_count(1)
    w.add_feed_forward_length(ffn)
    w.add_head_count(heads)
    w.add_head_count_kv(kv)
    w.add_rope_dimension_count(hidden // heads)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_tokenizer_model("llama")
    w.add_token_list(field("tokenizer.ggml.tokens"))
    w.add_token_scores(field("tokenizer.ggml.scores"))
    w.add_token_types(field("tokenizer.ggml.token_type"))
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    t = lambda *shape: (rng.standard_normal(shape) * 0.02).astype(np.float16)
    w.add_tensor("token_embd.weight", t(vocab, hidden))
    w.add_tensor("output_norm.weight", np.ones(hidden, np.float32))
    w.add_tensor("blk.0.attn_norm.weight", np.ones(hidden, np.float32))
    w.add_tensor("blk.0.ffn_norm.weight", np.ones(hidden, np.float32))
    w.add_tensor("blk.0.attn_q.weight", t(hidden, hidden))
    w.add_tensor("blk.0.attn_k.weight", t(hidden // heads * kv, hidden))
    w.add_tensor("blk.0.attn_v.weight", t(hidden // heads * kv, hidden))
    w.add_tensor("blk.0.attn_output.weight", t(hidden, hidden))
    w.add_tensor("blk.0.ffn_gate.weight", t(ffn, hidden))
    w.add_tensor("blk.0.ffn_up.weight", t(ffn, hidden))
    w.add_tensor("blk.0.ffn_down.weight", t(hidden, ffn))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def af_ms(bench, mmproj, image, threads):
    env = dict(os.environ, AF_MMPROJ=mmproj, AF_IMAGE_BENCH_FILE=image,
               AF_BENCH_THREADS=str(threads))
    out = subprocess.run([bench, "--benchmark_format=json"], env=env, check=True,
                         capture_output=True, text=True, cwd=ROOT).stdout
    import json
    return json.loads(out)["benchmarks"][0]["real_time"]


def llama_ms(cli, text, mmproj, image, threads):
    r = subprocess.run([cli, "-m", text, "--mmproj", mmproj, "--image", image, "-p",
                        "describe this image", "-n", "1", "-t", str(threads), "--temp", "0",
                        "-c", "1024", "--chat-template", "vicuna"],
                       capture_output=True, text=True, errors="replace")
    m = re.search(r"mtmd batch encoding done in (\d+) ms", r.stdout + r.stderr)
    if not m:
        sys.exit("llama-mtmd-cli printed no encode time:\n" + (r.stderr or r.stdout)[-2000:])
    return float(m.group(1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", required=True)
    ap.add_argument("--llama-bin", default="/work/peers/llama.cpp/build/bin")
    ap.add_argument("--af-bench", default=os.path.join(ROOT, "build", "bench",
                                                       "image_encoder_bench"))
    ap.add_argument("--testdata", default=os.path.join(ROOT, "..", "shared", "testdata"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    image = os.path.join(args.testdata, "images", "rocket.jpg")
    text = os.path.join(args.work, "text-4096.gguf")
    if not os.path.exists(text):
        make_text_model(text, args.testdata)
    for kind in ("f16", "q8_0"):
        mmproj = os.path.join(args.work, f"clip336-{kind}.gguf")
        if not os.path.exists(mmproj):
            subprocess.run([sys.executable, os.path.join(ROOT, "bench", "make_clip_mmproj.py"),
                            "--type", kind, mmproj], check=True)
        ours, theirs = [], []
        for _ in range(args.rounds):
            ours.append(af_ms(args.af_bench, mmproj, image, args.threads))
            theirs.append(llama_ms(os.path.join(args.llama_bin, "llama-mtmd-cli"), text, mmproj,
                                   image, args.threads))
        a, b = statistics.median(ours), statistics.median(theirs)
        print(f"{kind}: AlloyForge {a:.0f} ms (runs {[round(x) for x in ours]}), "
              f"llama.cpp mtmd {b:.0f} ms (runs {[round(x) for x in theirs]}), "
              f"speed-up {b / a:.2f}x")


if __name__ == "__main__":
    main()
