#!/usr/bin/env python3
"""Tiny random mixture-of-experts models + reference logits for AlloyForge's e2e tests.

Each model is built with transformers itself (Qwen2MoeForCausalLM, Qwen3MoeForCausalLM,
MixtralForCausalLM), randomised with fixed seeds, and written to
``tests/fixtures/models/<name>/`` in the layout tests/e2e/test_reference_models.cpp reads:

    config.json, model.safetensors   save_pretrained (float32; per-expert HF names)
    <name>.gguf                      llama.cpp's own converter (convert_hf_to_gguf.py
                                     --outtype f32) on the folder plus a SentencePiece
                                     tokenizer.model (stories260K's tok512.model; not committed;
                                     the Qwen converters are made to read it instead of a BPE
                                     tokenizer.json, which a random model does not have)
    q8_0/<name>.q8_0.gguf            the same converter with --outtype q8_0 (in a subfolder, so
                                     the F32 logits test does not pick it up)
    logits_transformers_f32.bin      float32 [len(ids), vocab] of one forward over "ids"
    logits_llamacpp.bin              llama.cpp (tools/llamacpp_dump_logits.cpp, F32 KV cache,
                                     n_ctx = n_batch = n_ubatch = 256, 2 threads) on <name>.gguf
    q8_0/logits_llamacpp_q8_0.bin    the same on the Q8_0 file
    reference.json                   ids, vocab_size, logits, "greedy" (prompt + the ids
                                     transformers' generate(do_sample=False) appends) and "q8_0"

Router weights are drawn larger than the rest so that no token's top-k choice is a near tie
(a tie within float rounding could pick another expert in another implementation).

Usage (repository root):
    g++ -O1 -std=c++17 tools/llamacpp_dump_logits.cpp -I$L/include -I$L/ggml/include \
        -L$L/build/bin -lllama -lggml -lggml-base -Wl,-rpath,$L/build/bin -o DUMP
    /work/pyref/bin/python tools/make_moe_fixtures.py --llamacpp-dump DUMP [--only mixtral]
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
LLAMA = Path("/work/peers/llama.cpp")

VOCAB = 256
N_IDS = 66
N_GREEDY_PROMPT = 6
N_GREEDY_NEW = 20

COMMON = dict(vocab_size=VOCAB, hidden_size=32, num_attention_heads=2, num_key_value_heads=1,
              num_hidden_layers=2, max_position_embeddings=256, rms_norm_eps=1e-6,
              bos_token_id=2, eos_token_id=1, pad_token_id=0, tie_word_embeddings=False,
              num_experts_per_tok=2, attn_implementation="eager")

SPECS = {
    # Shared expert with its sigmoid gate, top-2 of 8 without renormalisation, qkv bias.
    "qwen2_moe": dict(
        cls="Qwen2MoeForCausalLM", config="Qwen2MoeConfig", seed=41,
        extra=dict(intermediate_size=64, moe_intermediate_size=16,
                   shared_expert_intermediate_size=32, num_experts=8, norm_topk_prob=False,
                   qkv_bias=True, rope_parameters={"rope_type": "default",
                                                   "rope_theta": 10000.0})),
    # q/k RMSNorm per head, top-2 of 8 renormalised, no shared expert, head_dim != hidden/heads.
    "qwen3_moe": dict(
        cls="Qwen3MoeForCausalLM", config="Qwen3MoeConfig", seed=43,
        extra=dict(intermediate_size=64, moe_intermediate_size=16, num_experts=8, head_dim=24,
                   norm_topk_prob=True, rope_parameters={"rope_type": "default",
                                                         "rope_theta": 1000000.0})),
    # Softmax over the top-2 of 4 router logits (GGUF: architecture "llama" with experts).
    "mixtral": dict(
        cls="MixtralForCausalLM", config="MixtralConfig", seed=47,
        extra=dict(intermediate_size=16, num_local_experts=4, head_dim=16,
                   rope_parameters={"rope_type": "default", "rope_theta": 1000000.0})),
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
            if "norm" in name:
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            elif name.endswith("gate.weight") and "shared" not in name:
                p.copy_(1.0 * torch.randn(p.shape, generator=g))  # the router: decisive
            else:
                p.copy_(0.15 * torch.randn(p.shape, generator=g))
    return model.eval()


# Runs llama.cpp's converter with the SentencePiece vocabulary for every architecture.
CONVERT = """
import runpy, sys
sys.path.insert(0, {llama!r})
sys.argv = {argv!r}
import conversion.base as base
base.TextModel.set_vocab = base.TextModel._set_vocab_sentencepiece
runpy.run_path({script!r}, run_name="__main__")
"""


def convert(folder: Path, gguf_path: Path, outtype: str):
    work = Path(tempfile.mkdtemp())
    try:
        for f in folder.iterdir():
            if f.is_file() and f.suffix in (".json", ".safetensors"):
                shutil.copy(f, work / f.name)
        shutil.copy(TOKENIZER, work / "tokenizer.model")
        env = dict(os.environ, PYTHONPATH=str(LLAMA / "gguf-py"))
        script = LLAMA / "convert_hf_to_gguf.py"
        argv = [str(script), str(work), "--outtype", outtype, "--outfile", str(gguf_path)]
        code = CONVERT.format(llama=str(LLAMA), argv=argv, script=str(script))
        subprocess.run([sys.executable, "-c", code], check=True, env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    finally:
        shutil.rmtree(work)


def llamacpp_logits(dump: str, gguf_path: Path, out: Path, ids):
    subprocess.run([dump, str(gguf_path), str(out)] + [str(i) for i in ids], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    lc = np.fromfile(out, dtype="<f4").reshape(len(ids), VOCAB)
    assert np.isfinite(lc).all()
    return lc


def routing_margin(model, ids):
    """Smallest gap between the k-th and (k+1)-th router probability over all tokens/layers."""
    margins = []
    hooks = []
    for layer in model.model.layers:
        gate = getattr(layer.mlp, "gate", None)
        if gate is None:
            continue

        def hook(_m, _inp, out):
            probs = torch.softmax(out[0].float(), dim=-1)
            top = torch.topk(probs, COMMON["num_experts_per_tok"] + 1, dim=-1).values
            margins.append((top[:, -2] - top[:, -1]).min().item())
        hooks.append(gate.register_forward_hook(hook))
    model(torch.tensor([ids]), use_cache=False)
    for h in hooks:
        h.remove()
    return min(margins)


@torch.no_grad()
def make_one(name, spec, dump):
    d = OUT / name
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    model = build(spec)
    model.save_pretrained(d, safe_serialization=True)
    (d / "generation_config.json").unlink(missing_ok=True)
    convert(d, d / f"{name}.gguf", "f32")
    (d / "q8_0").mkdir()
    convert(d, d / "q8_0" / f"{name}.q8_0.gguf", "q8_0")

    ref_model = getattr(transformers, spec["cls"]).from_pretrained(
        d, dtype=torch.float32, attn_implementation="eager").eval()
    ids = make_ids(spec["seed"] + 1000, N_IDS)
    logits = ref_model(torch.tensor([ids]), use_cache=False).logits[0].float().numpy()
    assert logits.shape == (N_IDS, VOCAB) and np.isfinite(logits).all()
    logits.astype("<f4").tofile(d / "logits_transformers_f32.bin")
    margin = routing_margin(ref_model, ids)
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
        "min_routing_margin": margin,
        "generator": {"script": "tools/make_moe_fixtures.py",
                      "torch": torch.__version__.split("+")[0],
                      "transformers": transformers.__version__},
    }
    note = ("llama.cpp (tools/llamacpp_dump_logits.cpp) on the GGUF, n_ctx=n_batch=n_ubatch=256, "
            "2 threads, F32 KV cache, flash attention off")
    if dump:
        lc = llamacpp_logits(dump, d / f"{name}.gguf", d / "logits_llamacpp.bin", ids)
        diff = float(np.abs(lc - logits).max())
        ref["logits"]["llamacpp"] = {"file": "logits_llamacpp.bin", "tolerance_hint": 1e-4,
                                     "dtype_note": note, "max_abs_diff_vs_transformers_f32": diff}
        q8 = llamacpp_logits(dump, d / "q8_0" / f"{name}.q8_0.gguf",
                             d / "q8_0" / "logits_llamacpp_q8_0.bin", ids)
        ref["q8_0"] = {"gguf": f"q8_0/{name}.q8_0.gguf", "file": "q8_0/logits_llamacpp_q8_0.bin",
                       "dtype_note": note + "; convert_hf_to_gguf.py --outtype q8_0",
                       "max_abs_diff_vs_transformers_f32": float(np.abs(q8 - logits).max())}
        print(f"{name}: max|llamacpp - transformers| {diff:.3e}, q8_0 "
              f"{ref['q8_0']['max_abs_diff_vs_transformers_f32']:.3e}")
    (d / "reference.json").write_text(json.dumps(ref, indent=1) + "\n")
    print(f"{name}: logits std {logits.std():.3f}, distinct argmax "
          f"{len(set(logits.argmax(-1).tolist()))}, routing margin {margin:.3e}, greedy {greedy}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", nargs="*", default=list(SPECS))
    ap.add_argument("--llamacpp-dump", help="built tools/llamacpp_dump_logits.cpp")
    args = ap.parse_args()
    torch.set_num_threads(1)
    for name in args.only:
        make_one(name, SPECS[name], args.llamacpp_dump)


if __name__ == "__main__":
    main()
