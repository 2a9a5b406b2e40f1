#!/usr/bin/env python3
"""Record llama.cpp's greedy top-1 ids on a real GGUF, for tests/e2e/test_real_models.cpp.

Starts /work/peers/llama.cpp/build/bin/llama-server on MODEL (2 threads, F32 KV cache as ours,
flash attention off),
asks /completion for N greedy tokens after PROMPT (BOS added as the file says) with the top two
log-probabilities of each, and writes tests/fixtures/real_models/<name>.json:

    model         the file, relative to $AF_MODELS
    prompt        the text; prompt_ids: llama.cpp's tokens of it (/tokenize, add_special)
    ids           the N greedy ids: ids[i] is llama.cpp's top-1 after prompt_ids + ids[:i]
    margins       top-1 minus top-2 logit (log-probability) at each of those positions

Only ids are committed, never the model. Usage (repository root):
    /work/pyref/bin/python tools/record_llamacpp_top1.py NAME MODEL_REL_PATH "PROMPT" [N]
"""
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SERVER = "/work/peers/llama.cpp/build/bin/llama-server"


def post(port, path, body):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.load(r)


def main():
    name, rel, prompt = sys.argv[1], sys.argv[2], sys.argv[3]
    n = int(sys.argv[4]) if len(sys.argv) > 4 else 72
    model = Path(os.environ.get("AF_MODELS", "/root/.cache/alloyforge/models")) / rel
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([SERVER, "-m", str(model), "--port", str(port), "-t", "2", "-c", "1024", "-ctk", "f32", "-ctv", "f32", "-fa", "off"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(300):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except Exception:
                pass
            time.sleep(0.5)
        prompt_ids = post(port, "/tokenize", {"content": prompt, "add_special": True})["tokens"]
        out = post(port, "/completion", {"prompt": prompt_ids, "n_predict": n, "temperature": 0,
                                         "n_probs": 2, "cache_prompt": False, "ignore_eos": True})
        probs = out["completion_probabilities"]
        ids = [p["id"] for p in probs]
        margins = [round(p["top_logprobs"][0]["logprob"] - p["top_logprobs"][1]["logprob"], 4)
                   for p in probs]
        assert len(ids) == n and all(p["top_logprobs"][0]["id"] == p["id"] for p in probs)
        rec = {"model": rel, "prompt": prompt, "prompt_ids": prompt_ids, "ids": ids,
               "margins": margins, "text": out["content"],
               "recorded_with": "llama-server (llama-cpp-python 0.3.36's vendored llama.cpp), "
                                "-t 2 -c 1024 -ctk f32 -ctv f32 -fa off, /completion temperature 0, n_probs 2"}
        dest = REPO / "tests" / "fixtures" / "real_models" / f"{name}.json"
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(json.dumps(rec, indent=1, ensure_ascii=False) + "\n")
        print(f"{name}: min margin {min(margins)}, text {out['content']!r}")
    finally:
        proc.terminate()
        proc.wait()


if __name__ == "__main__":
    main()
