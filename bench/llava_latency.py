#!/usr/bin/env python3
"""Time to first token of an image question through af-server, and of a second question about the
same image with the encoder-output cache (issue 13).

  /work/pyref/bin/python bench/llava_latency.py --make [--work DIR]    (the model, once; torch)
  python3 bench/llava_latency.py [--work DIR] [--server build/apps/server/af-server] [--threads 2]

--make writes a random-weight LLaVA-1.5-shaped HF folder with transformers (not committed): a CLIP
ViT-B/16-224 tower (768 wide, 12 layers, feature layer -2, 196 image tokens), an mlp2x_gelu
projector and a Llama text model (1024 wide, 8 layers, the stories260K tokenizer + "<image>").
The bench then starts af-server on it and asks, each a fresh conversation with the same image:
  1. "Describe this image."  (encodes the image, prefills everything)
  2. "What is in the top left corner?"  (same image: no encode, the image rows come from the KV
     prefix; only the new text is prefilled)
  3. question 1 again with another image (the cold case again, for comparison)
For each it prints the time to first token (a max_tokens=1 request, wall clock, client side),
prompt_tokens, cached_tokens and how many times the image encoder ran (af_image_encodes_total
from /metrics). Standard library only, except --make. Not a test: numbers depend on the machine.
"""
import argparse
import base64
import http.client
import json
import os
import re
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUESTIONS = ["Describe this image.", "What is in the top left corner?"]


def make_model(work, testdata):
    import torch
    from transformers import (CLIPVisionConfig, LlamaConfig, LlavaConfig,
                              LlavaForConditionalGeneration, LlavaProcessor)
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    import make_llava_fixtures as mlf
    vision = CLIPVisionConfig(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                              num_attention_heads=12, image_size=224, patch_size=16,
                              projection_dim=512, hidden_act="quick_gelu", layer_norm_eps=1e-5)
    text = LlamaConfig(vocab_size=513, hidden_size=1024, intermediate_size=2816,
                       num_hidden_layers=8, num_attention_heads=16, num_key_value_heads=16,
                       max_position_embeddings=2048, rms_norm_eps=1e-5, bos_token_id=1,
                       eos_token_id=2, pad_token_id=0, tie_word_embeddings=False)
    cfg = LlavaConfig(vision_config=vision, text_config=text, image_token_id=512,
                      projector_hidden_act="gelu", vision_feature_select_strategy="default",
                      vision_feature_layer=-2, image_seq_length=196)
    torch.manual_seed(0)
    model = LlavaForConditionalGeneration(cfg).eval()
    model.save_pretrained(work, safe_serialization=True)
    processor = LlavaProcessor(image_processor=mlf.clip_processor(224),
                               tokenizer=mlf.make_tokenizer(testdata), patch_size=16,
                               vision_feature_select_strategy="default",
                               num_additional_image_tokens=1, chat_template=mlf.CHAT_TEMPLATE)
    processor.save_pretrained(work)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(port, method, path, body=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    conn.request(method, path, json.dumps(body) if body else None,
                 {"Content-Type": "application/json"})
    resp = conn.getresponse()
    data = resp.read()
    if resp.status != 200:
        raise RuntimeError(f"{path}: HTTP {resp.status}: {data[:300]!r}")
    return data


def image_encodes(port):
    text = request(port, "GET", "/metrics").decode()
    return int(re.search(r"^af_image_encodes_total (\d+)", text, re.M).group(1))


def ask(port, image, question):
    url = "data:image/jpeg;base64," + base64.b64encode(open(image, "rb").read()).decode()
    body = {"model": "llava", "max_tokens": 1, "temperature": 0, "messages": [
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}},
                                     {"type": "text", "text": question}]}]}
    before = image_encodes(port)
    t0 = time.perf_counter()
    usage = json.loads(request(port, "POST", "/v1/chat/completions", body))["usage"]
    seconds = time.perf_counter() - t0
    return {"question": question, "image": os.path.basename(image),
            "ttft_ms": round(seconds * 1e3, 1), "prompt_tokens": usage["prompt_tokens"],
            "cached_tokens": usage.get("prompt_tokens_details", {}).get("cached_tokens"),
            "image_encodes": image_encodes(port) - before}


def wait_ready(port, proc):
    for _ in range(600):
        if proc.poll() is not None:
            raise RuntimeError("af-server exited")
        try:
            request(port, "GET", "/v1/models")
            return
        except (OSError, RuntimeError):
            time.sleep(0.1)
    raise RuntimeError("af-server did not come up")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default="/work/peers/models/llava_bench")
    ap.add_argument("--make", action="store_true")
    ap.add_argument("--testdata", default=os.path.join(ROOT, "..", "shared", "testdata"))
    ap.add_argument("--server", default=os.path.join(ROOT, "build", "apps", "server", "af-server"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--images", nargs=2, default=None)
    args = ap.parse_args()
    if args.make:
        os.makedirs(args.work, exist_ok=True)
        make_model(args.work, args.testdata)
        return
    images = args.images or [os.path.join(args.testdata, "images", f)
                             for f in ("chelsea.jpg", "rocket.jpg")]
    port = free_port()
    proc = subprocess.Popen([args.server, "-m", args.work, "--port", str(port), "-t",
                             str(args.threads), "-p", "1", "-c", "1024"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_ready(port, proc)
        for image, question in [(images[0], QUESTIONS[0]), (images[0], QUESTIONS[1]),
                                (images[1], QUESTIONS[0])]:
            print(json.dumps(ask(port, image, question)), flush=True)
    finally:
        proc.terminate()
        proc.wait()


if __name__ == "__main__":
    main()
