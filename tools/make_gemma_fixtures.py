#!/usr/bin/env python3
"""Tiny random Gemma-family models + reference logits for AlloyForge's e2e tests.

Each model is built with transformers itself (Gemma3ForCausalLM, ...), randomised with fixed
seeds, and written to ``tests/fixtures/models/<name>/`` in the layout of
tools/make_reference_models.py, which tests/e2e/test_reference_models.cpp reads:

    config.json, model.safetensors   save_pretrained (float32)
    <name>.gguf                      llama.cpp's own converter
                                     (/work/peers/llama.cpp/convert_hf_to_gguf.py --outtype f32)
                                     run on the folder plus a SentencePiece tokenizer.model
                                     (stories260K's tok512.model; not committed)
    logits_transformers_f32.bin      float32 [len(ids), vocab] of one forward over "ids"
    reference.json                   ids, vocab_size, logits, and "greedy": the prompt ids and
                                     the ids transformers' generate(do_sample=False) appends

The prompt is longer than the sliding window, so the window layers are checked past it (in
prefill and in generate's decode steps).

Usage (repository root): /work/pyref/bin/python tools/make_gemma_fixtures.py [--only gemma3]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import transformers

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "tests" / "fixtures" / "models"
TOKENIZER = Path("/work/shared/testdata/models/stories260K/tok512.model")
CONVERTER = Path("/work/peers/llama.cpp/convert_hf_to_gguf.py")
LLAMA_GGUF_PY = Path("/work/peers/llama.cpp/gguf-py")

VOCAB = 256
N_IDS = 66
N_GREEDY_PROMPT = 6
N_GREEDY_NEW = 20

COMMON = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_attention_heads=2,
              num_key_value_heads=1, head_dim=16, max_position_embeddings=256, rms_norm_eps=1e-6,
              bos_token_id=2, eos_token_id=1, pad_token_id=0, tie_word_embeddings=True,
              attn_implementation="eager")

SPECS = {
    # Six layers: llama.cpp's default pattern (5 sliding, 1 global), which the converter relies
    # on; global layers with their own base and linear scaling, local ones with another base.
    # query_pre_attn_scalar = head_dim because llama.cpp's GGUF path scales by head_dim.
    "gemma3": dict(
        cls="Gemma3ForCausalLM", config="Gemma3TextConfig", seed=31,
        extra=dict(num_hidden_layers=6, sliding_window=8, query_pre_attn_scalar=16,
                   hidden_activation="gelu_pytorch_tanh",
                   rope_parameters={"full_attention": {"rope_type": "linear", "factor": 2.0,
                                                       "rope_theta": 100000.0},
                                    "sliding_attention": {"rope_type": "default",
                                                          "rope_theta": 10000.0}})),
    # Gemma 2: soft caps on attention scores and logits (small caps so that they bite on these
    # random weights), a window on the even layers, one RoPE base (the converter writes none).
    "gemma2": dict(
        cls="Gemma2ForCausalLM", config="Gemma2Config", seed=37,
        extra=dict(num_hidden_layers=4, sliding_window=8, query_pre_attn_scalar=16,
                   hidden_activation="gelu_pytorch_tanh", attn_logit_softcapping=2.0,
                   final_logit_softcapping=3.0,
                   rope_parameters={"rope_type": "default", "rope_theta": 10000.0})),
}


def make_ids(seed: int, n: int):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(3, VOCAB, (n,), generator=g).tolist()


def build(spec):
    torch.manual_seed(spec["seed"])
    cfg = getattr(transformers, spec["config"])(**COMMON, **spec["extra"])
    model = getattr(transformers, spec["cls"])(cfg)
    g = torch.Generator().manual_seed(spec["seed"] * 7 + 3)
    with torch.no_grad():
        for name, p in model.named_parameters():
            # Gemma norms multiply by (1 + weight): small random weights around 0.
            scale = 0.1 if "norm" in name else 0.15
            p.copy_(scale * torch.randn(p.shape, generator=g))
    return model.eval()


def convert(folder: Path, gguf_path: Path):
    work = Path(tempfile.mkdtemp())
    try:
        for f in folder.iterdir():
            shutil.copy(f, work / f.name)
        shutil.copy(TOKENIZER, work / "tokenizer.model")
        env = dict(os.environ, PYTHONPATH=str(LLAMA_GGUF_PY))
        subprocess.run([sys.executable, str(CONVERTER), str(work), "--outtype", "f32",
                        "--outfile", str(gguf_path)], check=True, env=env,
                       stdout=subprocess.DEVNULL)
    finally:
        shutil.rmtree(work)


@torch.no_grad()
def make_one(name, spec):
    d = OUT / name
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    model = build(spec)
    model.save_pretrained(d, safe_serialization=True)
    for extra in ("generation_config.json",):
        (d / extra).unlink(missing_ok=True)
    convert(d, d / f"{name}.gguf")

    ref_model = getattr(transformers, spec["cls"]).from_pretrained(
        d, dtype=torch.float32, attn_implementation="eager").eval()
    ids = make_ids(spec["seed"] + 1000, N_IDS)
    logits = ref_model(torch.tensor([ids]), use_cache=False).logits[0].float().numpy()
    assert logits.shape == (N_IDS, VOCAB) and np.isfinite(logits).all()
    logits.astype("<f4").tofile(d / "logits_transformers_f32.bin")
    prompt = ids[:N_GREEDY_PROMPT]
    out = ref_model.generate(torch.tensor([prompt]), do_sample=False, max_new_tokens=N_GREEDY_NEW,
                             min_new_tokens=N_GREEDY_NEW, eos_token_id=None, pad_token_id=0)
    greedy = out[0, len(prompt):].tolist()
    ref = {
        "name": name,
        "architecture": spec["cls"],
        "gguf": f"{name}.gguf",
        "weights_dtype": "float32",
        "ids": ids,
        "vocab_size": VOCAB,
        "logits": {"transformers_f32": {
            "file": "logits_transformers_f32.bin",
            "dtype_note": "transformers forward in float32, F32 weights (eager attention)",
            "tolerance_hint": 1e-4}},
        "greedy": {"prompt": prompt, "ids": greedy},
        "generator": {"script": "tools/make_gemma_fixtures.py",
                      "torch": torch.__version__.split("+")[0],
                      "transformers": transformers.__version__},
    }
    (d / "reference.json").write_text(json.dumps(ref, indent=1) + "\n")
    print(f"{name}: logits std {logits.std():.3f}, distinct argmax "
          f"{len(set(logits.argmax(-1).tolist()))}, greedy {greedy}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", nargs="*", default=list(SPECS))
    args = ap.parse_args()
    torch.set_num_threads(1)
    for name in args.only:
        make_one(name, SPECS[name])


if __name__ == "__main__":
    main()
