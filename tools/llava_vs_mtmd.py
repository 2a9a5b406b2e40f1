#!/usr/bin/env python3
"""AlloyForge against llama.cpp's libmtmd on the same LLaVA-1.5 files (issue 13, agreement).

Makes a random LLaVA-1.5 (CLIP tower, Llama text model) with transformers, converts it with
llama.cpp's own converters (text GGUF through convert_hf_to_gguf.py, mmproj through the legacy
LLaVA converter, as tools/make_llava_fixtures.py does), then for a "describe this image" prompt
compares (llama-server with an f32 KV cache and no flash attention)
  - greedy generated ids: llama-server /completion (multimodal_data, return_tokens) against
    `af-cli run --mmproj --image --temp 0 --print-ids`;
  - the first generated token's top-k log-probabilities: llama-server's n_probs against the
    log-softmax of the last row of `af-cli logits`.
The text vocabulary equals the tokenizer's (513): llama.cpp refuses a token_embd wider than the
vocabulary, which the committed llava_clip fixture (vocab_size 520) has. Models go to --work
(default /work/peers/models/llava_vs_mtmd); nothing here is committed but this script.

Result (2026-12-07, this build of llama.cpp from llama-cpp-python 0.3.36): text alone, all 16
greedy ids equal and first-token top-10 logprobs within 1e-6; with an image the vision path
differs: a 56x56 image (no resize on either side) agrees for 13 ids, first-token logprobs within
0.11 (top-3 order differs); a photo (chelsea.jpg) diverges at the first id. Causes in llama.cpp's
clip graph (AlloyForge matches transformers within 1e-4 there): the projector's "gelu" is
ggml_gelu (tanh approximation; transformers' LLaVA uses erf gelu), the CPU gelu/gelu_quick read
FP16 lookup tables (GGML_GELU_FP16, GGML_GELU_QUICK_FP16 in ggml-cpu/vec.h), F16 weights (patch
conv, projector) take F16-rounded activations, and for other sizes llama.cpp pads to a square and
resizes with its own bicubic instead of PIL's shortest-edge resize + center crop.

Usage: /work/pyref/bin/python tools/llava_vs_mtmd.py [--images A.png B.jpg] [-n 16]
"""
import argparse
import base64
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import urllib.request

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_llava_fixtures as mlf  # noqa: E402
from transformers import LlavaForConditionalGeneration  # noqa: E402

ROOT = mlf.ROOT
PROMPT = "describe this image"
MARKER = "<__media__>"
IMAGE_SIZE = 56  # 4x4 patches of 14: 16 image tokens


def make_model(work, testdata):
    """The text GGUF and the mmproj, made once into `work`."""
    text, mmproj = (os.path.join(work, f) for f in ("text-model-f32.gguf", "mmproj-model-f32.gguf"))
    if os.path.exists(text) and os.path.exists(mmproj):
        return text, mmproj
    cfg, _, make_proc = mlf.spec_clip()
    cfg.vision_config = mlf.clip_vision(IMAGE_SIZE)
    cfg.text_config.vocab_size = 513  # the tokenizer's size: llama.cpp needs them equal
    cfg.image_seq_length = (IMAGE_SIZE // 14) ** 2
    torch.manual_seed(7)
    model = LlavaForConditionalGeneration(cfg).eval()
    mlf.randomise(model, 7)
    processor = make_proc(mlf.make_tokenizer(testdata))
    processor.image_processor = mlf.clip_processor(IMAGE_SIZE)
    processor.tokenizer.save_pretrained(work)
    mlf.make_mmproj(model, cfg, processor, work, "llava_vs_mtmd")
    mlf.make_text_gguf(model, work)
    return text, mmproj


def exact_size_image(work):
    """An image already IMAGE_SIZE square: no resize on either side, so both see the same pixels
    (llama.cpp pads to square and resizes with its own bicubic; transformers uses PIL's)."""
    path = os.path.join(work, f"square_{IMAGE_SIZE}.png")
    rng = np.random.default_rng(3)
    Image.fromarray(rng.integers(0, 256, (IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)).save(path)
    return path


class LlamaServer:
    def __init__(self, bin_dir, text, mmproj, port):
        self.url = f"http://127.0.0.1:{port}"
        self.log = open(os.path.join(tempfile.gettempdir(), f"llava_vs_mtmd_{port}.log"), "w")
        self.proc = subprocess.Popen(
            [os.path.join(bin_dir, "llama-server"), "-m", text, "--mmproj", mmproj, "--port",
             str(port), "-t", "1", "-c", "512", "--no-warmup",
             # f32 KV cache, no flash attention: llama.cpp's defaults (F16 K/V) alone move the
             # text-only logprobs by ~1e-3
             "-fa", "off", "-ctk", "f32", "-ctv", "f32"], stdout=self.log, stderr=self.log,
            env=dict(os.environ, LLAMA_MEDIA_MARKER=MARKER))  # else a random marker per run
        for _ in range(200):
            try:
                urllib.request.urlopen(self.url + "/health", timeout=1)
                return
            except Exception:
                if self.proc.poll() is not None:
                    raise RuntimeError("llama-server exited; see " + self.log.name)
                time.sleep(0.1)
        raise RuntimeError("llama-server did not come up")

    def complete(self, image, n):
        prompt = PROMPT
        if image:
            data = base64.b64encode(open(image, "rb").read()).decode()
            prompt = {"prompt_string": MARKER + PROMPT, "multimodal_data": [data]}
        body = {"prompt": prompt,
                "n_predict": n, "temperature": 0, "n_probs": 10, "return_tokens": True,
                "cache_prompt": False}
        req = urllib.request.Request(self.url + "/completion", json.dumps(body).encode(),
                                     {"Content-Type": "application/json"})
        return json.load(urllib.request.urlopen(req, timeout=60))

    def close(self):
        self.proc.terminate()
        self.proc.wait()


def af(cli, *args):
    return subprocess.run([cli, *args], check=True, capture_output=True, text=True).stdout


def first_token_logprobs(cli, text, mmproj, image, prompt_ids):
    """log-softmax of the last position of `af-cli logits` (BOS, the image token once, the text)."""
    media = ["--mmproj", mmproj, "--image", image] if image else []
    out = af(cli, "logits", "-m", text, *media, "--ids", " ".join(map(str, prompt_ids)))
    last = np.array(out.strip().splitlines()[-1].split(), dtype=np.float64)
    return last - (last.max() + math.log(np.exp(last - last.max()).sum()))


def compare(cli, server, text, mmproj, image, n):
    ref = server.complete(image, n)
    media = ["--mmproj", mmproj, "--image", image] if image else []
    mine = [int(t) for t in af(cli, "run", "-m", text, *media, "-p", PROMPT, "-n", str(n),
                               "--temp", "0", "--print-ids").split()]
    tok = subprocess.run([cli, "tokenize", "-m", text], input=PROMPT, capture_output=True,
                         text=True, check=True).stdout.split()
    prompt_ids = [1] + ([512] if image else []) + [int(t) for t in tok]
    lp = first_token_logprobs(cli, text, mmproj, image, prompt_ids)
    top = ref["completion_probabilities"][0]["top_logprobs"]
    diffs = [abs(lp[t["id"]] - t["logprob"]) for t in top]
    theirs = [int(t) for t in ref["tokens"]]
    agree = next((i for i, (a, b) in enumerate(zip(theirs, mine)) if a != b), min(len(theirs), len(mine)))
    return {"image": os.path.basename(image) if image else None, "llama_cpp_ids": theirs, "alloyforge_ids": mine,
            "ids_equal": theirs == mine, "first_divergence": None if theirs == mine else agree,
            "prompt_tokens_llama_cpp": ref.get("tokens_evaluated"),
            "first_token_top10_ids_llama_cpp": [t["id"] for t in top],
            "first_token_top10_ids_alloyforge": [int(i) for i in np.argsort(-lp)[:10]],
            "first_token_max_abs_logprob_diff": max(diffs)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default="/work/peers/models/llava_vs_mtmd")
    ap.add_argument("--llama-bin", default="/work/peers/llama.cpp/build/bin")
    ap.add_argument("--af-cli", default=os.path.join(ROOT, "build", "apps", "cli", "af-cli"))
    ap.add_argument("--testdata", default=os.path.join(ROOT, "..", "shared", "testdata"))
    ap.add_argument("--images", nargs="*")
    ap.add_argument("-n", type=int, default=16)
    ap.add_argument("--port", type=int, default=18732)
    args = ap.parse_args()
    torch.set_num_threads(1)
    os.makedirs(args.work, exist_ok=True)
    text, mmproj = make_model(args.work, args.testdata)
    # None: the text alone, which isolates the language model from the vision path.
    images = args.images or [None, exact_size_image(args.work),
                             os.path.join(args.testdata, "images", "chelsea.jpg")]
    server = LlamaServer(args.llama_bin, text, mmproj, args.port)
    try:
        for image in images:
            print(json.dumps(compare(args.af_cli, server, text, mmproj, image, args.n)))
    finally:
        server.close()


if __name__ == "__main__":
    main()
