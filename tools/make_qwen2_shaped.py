#!/usr/bin/env python3
"""Qwen2-0.5B-shaped benchmark model with random weights (issue 5).

Shape: hidden 896, 24 layers, 14 heads, 2 KV heads, intermediate 4864, vocab 151936, tied
embeddings (494M parameters). Written under a cache dir outside the repository:

  <out>/hf/                      HF folder (transformers save_pretrained, bfloat16 like Qwen2)
  <out>/qwen2_shaped-f16.gguf    GGUF F16 written with pip's gguf (llama.cpp's key conventions)
  <out>/qwen2_shaped-q8_0.gguf   llama.cpp's own quantizations of the F16 file
  <out>/qwen2_shaped-q4_0.gguf   (llama_model_quantize through llama-cpp-python)
  <out>/qwen2_shaped-q4_k_m.gguf

The vocabulary is synthetic (SentencePiece-style: <unk>, <s>, </s>, 256 byte tokens, then
"tok<N>"): the benchmark feeds token ids, never text. Files that exist are kept (use --force).
Usage: /work/venv/bin/python tools/make_qwen2_shaped.py [--out DIR] [--force] [--types ...]
"""
import argparse
import ctypes
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

DEFAULT_OUT = Path(os.environ.get("AF_BENCH_CACHE", Path.home() / ".cache/alloyforge/bench"))
SHAPE = dict(hidden=896, layers=24, heads=14, kv_heads=2, ffn=4864, vocab=151936, ctx=32768,
             theta=1000000.0, eps=1e-6)
from make_reference_models import HF2GGUF_LAYER  # noqa: E402  (tools/ is on sys.path)
# llama_ftype values (llama.h)
FTYPES = {"q8_0": 7, "q4_0": 2, "q4_k_m": 15, "q4_k_s": 14, "q5_k_m": 17, "q6_k": 18}


def log(msg):
    print(f"[make_qwen2_shaped {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def make_hf(out: Path):
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM
    torch.manual_seed(0)
    s = SHAPE
    cfg = Qwen2Config(vocab_size=s["vocab"], hidden_size=s["hidden"],
                      intermediate_size=s["ffn"], num_hidden_layers=s["layers"],
                      num_attention_heads=s["heads"], num_key_value_heads=s["kv_heads"],
                      max_position_embeddings=s["ctx"], rms_norm_eps=s["eps"],
                      rope_theta=s["theta"], tie_word_embeddings=True, bos_token_id=1,
                      eos_token_id=2, torch_dtype="bfloat16")
    with torch.no_grad():
        model = Qwen2ForCausalLM(cfg).to(torch.bfloat16)
        # Random norms near 1 so activations are not all identical across layers.
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(1.0 + 0.1 * torch.randn_like(p, dtype=torch.float32))
    model.save_pretrained(str(out), safe_serialization=True)
    log(f"HF folder written: {out}")


def vocab():
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{i:02X}>" for i in range(256)]
    types = [2, 3, 3] + [6] * 256
    tokens += [f"tok{i}" for i in range(SHAPE["vocab"] - len(tokens))]
    types += [1] * (SHAPE["vocab"] - len(types))
    return tokens, [0.0] * len(tokens), types


def make_f16_gguf(hf: Path, path: Path):
    import gguf
    from safetensors import safe_open
    s = SHAPE
    head_dim = s["hidden"] // s["heads"]
    w = gguf.GGUFWriter(str(path), "qwen2")
    w.add_name("qwen2-shaped")
    w.add_block_count(s["layers"])
    w.add_context_length(s["ctx"])
    w.add_embedding_length(s["hidden"])
    w.add_feed_forward_length(s["ffn"])
    w.add_head_count(s["heads"])
    w.add_head_count_kv(s["kv_heads"])
    w.add_rope_freq_base(s["theta"])
    w.add_layer_norm_rms_eps(s["eps"])
    w.add_key_length(head_dim)
    w.add_value_length(head_dim)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    tokens, scores, types = vocab()
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_unk_token_id(0)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    with safe_open(str(hf / "model.safetensors"), "pt") as f:
        names = list(f.keys())
        for name in names:
            t = f.get_tensor(name).float().numpy()
            if name == "model.embed_tokens.weight":
                g = "token_embd.weight"
            elif name == "model.norm.weight":
                g = "output_norm.weight"
            elif name == "lm_head.weight":
                continue  # tied
            else:
                bid, rest = name[len("model.layers."):].split(".", 1)
                g = f"blk.{bid}.{HF2GGUF_LAYER[rest]}"
            # convert_hf_to_gguf --outtype f16 keeps 1-D tensors (norms, biases) in F32
            w.add_tensor(g, t.astype(np.float16) if t.ndim >= 2 else t.astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    log(f"GGUF F16 written: {path}")


def quantize_llamacpp(src: Path, dst: Path, ftype: int, threads: int):
    import llama_cpp
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = threads
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(),
                                        ctypes.byref(params))
    if rc != 0:
        raise RuntimeError(f"llama_model_quantize({dst.name}) failed with {rc}")
    log(f"llama.cpp quantization written: {dst}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--force", action="store_true")
    ap.add_argument("--types", nargs="*", default=["q8_0", "q4_0", "q4_k_m"],
                    choices=sorted(FTYPES))
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    hf = a.out / "hf"
    if a.force or not (hf / "model.safetensors").exists():
        make_hf(hf)
    f16 = a.out / "qwen2_shaped-f16.gguf"
    if a.force or not f16.exists():
        make_f16_gguf(hf, f16)
    for t in a.types:
        dst = a.out / f"qwen2_shaped-{t}.gguf"
        if a.force or not dst.exists():
            quantize_llamacpp(f16, dst, FTYPES[t], a.threads)
    info = {p.name: p.stat().st_size for p in sorted(a.out.glob("*.gguf"))}
    (a.out / "files.json").write_text(json.dumps(info, indent=2) + "\n")
    print(json.dumps(info, indent=2))


if __name__ == "__main__":
    sys.exit(main())
