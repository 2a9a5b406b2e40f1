#!/usr/bin/env python3
"""GGUF benchmark models of real model shapes with random weights (issue 16).

No torch: numpy writes the tensors straight into a GGUF with llama.cpp's key conventions.
--type f16 (bf16) writes random N(0, 0.02) matrices (norms near 1); a quantized --type writes random
block bytes with small fixed scales (values within about +-0.04) in llama.cpp's tensor type mix
for that file type (q4_k_m: Q6_K output/tied embedding and attn_v / ffn_down of the
use_more_bits layers; K-quant rows not a multiple of 256 fall back to Q5_0 / Q5_1 / Q8_0), so a
7B file takes a minute instead of an hour of quantization. Only for speed measurements: the
weights mean nothing.

Shapes (--shape):
  qwen2.5-0.5b  hidden 896,  24 layers, 14/2 heads, ffn 4864,  vocab 151936, tied
  qwen2.5-1.5b  hidden 1536, 28 layers, 12/2 heads, ffn 8960,  vocab 151936, tied
  llama3.2-3b   hidden 3072, 28 layers, 24/8 heads, ffn 8192,  vocab 128256, tied
  qwen2.5-7b    hidden 3584, 28 layers, 28/4 heads, ffn 18944, vocab 152064, untied
  qwen3-1.7b    hidden 2048, 28 layers, 16/8 heads of 128, ffn 6144, vocab 151936, tied,
                q/k RMSNorm per head (arch qwen3)
  qwen3-30b-a3b-8l  Qwen3-30B-A3B's layer shapes with 8 of its 48 layers (issue 19): hidden 2048,
                32/4 heads of 128, q/k norms, 128 experts top-8 of width 768, no shared
                expert, vocab 151936, untied (about 5.6B parameters, 0.8B active per token)
The vocabulary is synthetic (the benchmarks feed token ids, never text).
Usage: /work/pyref/bin/python tools/make_shaped_gguf.py --shape qwen2.5-1.5b [--type q4_k_m]
         --out FILE.gguf
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np

SHAPES = {
    "qwen2.5-0.5b": dict(arch="qwen2", hidden=896, layers=24, heads=14, kv_heads=2, ffn=4864,
                         vocab=151936, tied=True, theta=1000000.0, eps=1e-6, bias=True),
    "qwen2.5-1.5b": dict(arch="qwen2", hidden=1536, layers=28, heads=12, kv_heads=2, ffn=8960,
                         vocab=151936, tied=True, theta=1000000.0, eps=1e-6, bias=True),
    "llama3.2-3b": dict(arch="llama", hidden=3072, layers=28, heads=24, kv_heads=8, ffn=8192,
                        vocab=128256, tied=True, theta=500000.0, eps=1e-5, bias=False),
    "qwen2.5-7b": dict(arch="qwen2", hidden=3584, layers=28, heads=28, kv_heads=4, ffn=18944,
                       vocab=152064, tied=False, theta=1000000.0, eps=1e-6, bias=True),
    "qwen3-1.7b": dict(arch="qwen3", hidden=2048, layers=28, heads=16, kv_heads=8, ffn=6144,
                       vocab=151936, tied=True, theta=1000000.0, eps=1e-6, bias=False,
                       head_dim=128, qk_norm=True),
    "qwen3-30b-a3b-8l": dict(arch="qwen3moe", hidden=2048, layers=8, heads=32, kv_heads=4,
                             head_dim=128, ffn=6144, vocab=151936, tied=False, theta=1000000.0,
                             eps=1e-6, bias=False, experts=128, experts_used=8, expert_ffn=768),
}


def head_dim_of(s):
    return s.get("head_dim", s["hidden"] // s["heads"])


def log(msg):
    print(f"[make_shaped_gguf {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# Block bytes and scale fields of the quantized types: (elements, bytes, [(offset, fp16 value)]),
# chosen so that d * scale * q (- dmin * min) stays within about +-0.04.
BLOCKS = {
    "Q4_0": (32, 18, [(0, 5e-3)]),
    "Q4_1": (32, 20, [(0, 5e-3), (2, -0.04)]),
    "Q5_0": (32, 22, [(0, 2.5e-3)]),
    "Q5_1": (32, 24, [(0, 2.5e-3), (2, -0.04)]),
    "Q8_0": (32, 34, [(0, 3e-4)]),
    "Q2_K": (256, 84, [(80, 4e-4), (82, 2.5e-3)]),
    "Q3_K": (256, 110, [(108, 2e-4)]),
    "Q4_K": (256, 144, [(0, 1.5e-4), (2, 1.1e-3)]),
    "Q5_K": (256, 176, [(0, 8e-5), (2, 1.2e-3)]),
    "Q6_K": (256, 210, [(208, 8e-5)]),
}
# llama.cpp's fallback for K-quant rows that are not a multiple of 256.
FALLBACK = {"Q2_K": "Q4_0", "Q3_K": "Q4_0", "Q4_K": "Q5_0", "Q5_K": "Q5_1", "Q6_K": "Q8_0"}
# File type -> (default matrix type, type of attn_v / ffn_down in use_more_bits layers, output).
# Mixes with more rules (q2_k, q3_k_m) are in matrix_type.
MIXES = {
    "q4_k_m": ("Q4_K", "Q6_K", "Q6_K"), "q4_k_s": ("Q4_K", "Q4_K", "Q6_K"),
    "q5_k_m": ("Q5_K", "Q6_K", "Q6_K"), "q6_k": ("Q6_K", "Q6_K", "Q6_K"),
    "q4_0": ("Q4_0", "Q4_0", "Q6_K"), "q8_0": ("Q8_0", "Q8_0", "Q8_0"),
    "q4_1": ("Q4_1", "Q4_1", "Q6_K"), "q5_0": ("Q5_0", "Q5_0", "Q6_K"),
    "q5_1": ("Q5_1", "Q5_1", "Q6_K"), "q2_k": ("Q2_K", None, "Q6_K"),
    "q3_k_m": ("Q3_K", None, "Q6_K"),
}
FILE_TYPES = {"f16": "MOSTLY_F16", "bf16": "MOSTLY_BF16", "q4_k_m": "MOSTLY_Q4_K_M", "q4_k_s": "MOSTLY_Q4_K_S",
              "q5_k_m": "MOSTLY_Q5_K_M", "q6_k": "MOSTLY_Q6_K", "q4_0": "MOSTLY_Q4_0",
              "q8_0": "MOSTLY_Q8_0", "q4_1": "MOSTLY_Q4_1", "q5_0": "MOSTLY_Q5_0",
              "q5_1": "MOSTLY_Q5_1", "q2_k": "MOSTLY_Q2_K", "q3_k_m": "MOSTLY_Q3_K_M"}


def use_more_bits(i, n):
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


def matrix_type(ftype, role, layer, n_layers, gqa):
    """The tensor type llama.cpp's llama_tensor_get_type (src/llama-quant.cpp) gives a non-MoE,
    non-Falcon matrix; role is default / output / attn_v / attn_output / ffn_down."""
    default, more, output = MIXES[ftype]
    if role == "output":
        return output
    if ftype == "q2_k":  # attn_v Q4_K with GQA >= 4 (else Q3_K), ffn_down and attn_output Q3_K
        return {"attn_v": "Q4_K" if gqa >= 4 else "Q3_K", "ffn_down": "Q3_K",
                "attn_output": "Q3_K"}.get(role, default)
    if ftype == "q3_k_m":  # attn_v Q5_K in the first 2 layers, ffn_down Q5_K in the first 1/16
        if role == "attn_v":
            return "Q5_K" if layer < 2 else "Q4_K"
        if role == "ffn_down":
            return "Q5_K" if layer < n_layers // 16 else "Q4_K"
        return "Q4_K" if role == "attn_output" else default
    if role in ("attn_v", "ffn_down") and use_more_bits(layer, n_layers):
        return more
    return default


def random_blocks(qtype, n, k, rng):
    """n rows of k elements of qtype as random block bytes, uint8 [n, row bytes]."""
    elems, nbytes, scales = BLOCKS[qtype]
    blocks = rng.integers(0, 256, size=(n * k // elems, nbytes), dtype=np.uint8)
    for off, value in scales:
        blocks[:, off:off + 2] = np.frombuffer(np.float16(value).tobytes(), np.uint8)
    if qtype == "Q6_K":  # int8 scales within +-32
        blocks[:, 192:208] = (blocks[:, 192:208].astype(np.int16) % 64 - 32).astype(np.uint8)
    return blocks.reshape(n, k // elems * nbytes)


class Lazy:
    """A tensor yet to be made: its GGUF byte shape, numpy dtype and quant type (None: the
    dtype's own), and make(), which draws it from the rng. write() records every tensor's info
    first and makes each one only when its bytes go to the file, so a 7B file never sits in RAM."""

    def __init__(self, shape, dtype, qtype, make):
        self.shape, self.dtype, self.qtype, self.make = shape, np.dtype(dtype), qtype, make

    @property
    def nbytes(self):
        return int(np.prod(self.shape)) * self.dtype.itemsize


def tensors(s, rng, ftype="f16"):
    """Yields (gguf name, Lazy): matrices [out, in] (numpy order), 1-D tensors F32. The rng is
    drawn in yield order as each Lazy is made."""
    h, hd = s["hidden"], head_dim_of(s)
    q, kv = hd * s["heads"], hd * s["kv_heads"]
    n_layers = s["layers"]
    layer = [0]  # the layer whose matrices are being made (for use_more_bits)

    def mat(n, k, role="default"):
        if ftype == "f16":
            return Lazy((n, k), np.float16, None, lambda: (
                rng.standard_normal((n, k), dtype=np.float32) * 0.02).astype(np.float16))
        if ftype == "bf16":  # the top half of each float32 (truncated: the weights mean nothing)
            return Lazy((n, 2 * k), np.uint8, "BF16", lambda: (
                (rng.standard_normal((n, k), dtype=np.float32) * 0.02).view(np.uint32) >> 16)
                .astype(np.uint16).view(np.uint8))
        qtype = matrix_type(ftype, role, layer[0], n_layers, s["heads"] // s["kv_heads"])
        if k % BLOCKS[qtype][0]:
            qtype = FALLBACK[qtype]
        elems, nbytes, _ = BLOCKS[qtype]
        return Lazy((n, k // elems * nbytes), np.uint8, qtype,
                    lambda: random_blocks(qtype, n, k, rng))

    def norm(n):
        return Lazy((n,), np.float32, None, lambda: (
            1.0 + 0.1 * rng.standard_normal(n, dtype=np.float32)).astype(np.float32))

    def bias(n):
        return Lazy((n,), np.float32, None,
                    lambda: (0.02 * rng.standard_normal(n)).astype(np.float32))

    # A tied embedding is the output matrix (llama.cpp gives it the output type); an untied
    # one keeps the default type.
    yield "token_embd.weight", mat(s["vocab"], h, "output" if s["tied"] else "default")
    for i in range(n_layers):
        layer[0] = i
        p = f"blk.{i}."
        yield p + "attn_norm.weight", norm(h)
        yield p + "attn_q.weight", mat(q, h)
        yield p + "attn_k.weight", mat(kv, h)
        yield p + "attn_v.weight", mat(kv, h, "attn_v")
        if s["bias"]:
            for n, width in (("q", q), ("k", kv), ("v", kv)):
                yield p + f"attn_{n}.bias", bias(width)
        if s.get("qk_norm"):
            yield p + "attn_q_norm.weight", norm(hd)
            yield p + "attn_k_norm.weight", norm(hd)
        yield p + "attn_output.weight", mat(h, q, "attn_output")
        yield p + "ffn_norm.weight", norm(h)
        if "experts" in s:
            yield from moe_tensors(s, p, hd, mat, norm)
            continue
        yield p + "ffn_gate.weight", mat(s["ffn"], h)
        yield p + "ffn_up.weight", mat(s["ffn"], h)
        yield p + "ffn_down.weight", mat(h, s["ffn"], "ffn_down")
    yield "output_norm.weight", norm(h)
    if not s["tied"]:
        yield "output.weight", mat(s["vocab"], h, "output")


def moe_tensors(s, p, hd, mat, norm):
    """A Qwen3-MoE layer's q/k norms, router (F32, as llama-quantize keeps it) and experts
    stacked [experts, rows, row bytes or columns]."""
    e, h, f = s["experts"], s["hidden"], s["expert_ffn"]

    def stack(n, k, role="default"):
        parts = [mat(n, k, role) for _ in range(e)]
        return Lazy((e,) + parts[0].shape, parts[0].dtype, parts[0].qtype,
                    lambda: np.stack([part.make() for part in parts]))

    yield p + "attn_q_norm.weight", norm(hd)
    yield p + "attn_k_norm.weight", norm(hd)
    yield p + "ffn_gate_inp.weight", Lazy((e, h), np.float32, None, lambda: (
        0.02 * np.random.default_rng(0).standard_normal((e, h))).astype(np.float32))
    yield p + "ffn_gate_exps.weight", stack(f, h)
    yield p + "ffn_up_exps.weight", stack(f, h)
    yield p + "ffn_down_exps.weight", stack(h, f, "ffn_down")


def write(shape: str, ftype: str, path: Path, seed: int):
    import gguf
    s = SHAPES[shape]
    w = gguf.GGUFWriter(str(path), s["arch"])
    w.add_name(f"{shape}-shaped")
    w.add_block_count(s["layers"])
    w.add_context_length(32768)
    w.add_embedding_length(s["hidden"])
    w.add_feed_forward_length(s["ffn"])
    w.add_head_count(s["heads"])
    w.add_head_count_kv(s["kv_heads"])
    w.add_rope_freq_base(s["theta"])
    w.add_layer_norm_rms_eps(s["eps"])
    head_dim = head_dim_of(s)
    if "experts" in s:
        w.add_expert_count(s["experts"])
        w.add_expert_used_count(s["experts_used"])
        w.add_expert_feed_forward_length(s["expert_ffn"])
    w.add_key_length(head_dim)
    w.add_value_length(head_dim)
    if s["arch"] == "llama":
        w.add_rope_dimension_count(head_dim)
    w.add_file_type(getattr(gguf.LlamaFileType, FILE_TYPES[ftype]))
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{i:02X}>" for i in range(256)]
    tokens += [f"tok{i}" for i in range(s["vocab"] - len(tokens))]
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores([0.0] * len(tokens))
    w.add_token_types([2, 3, 3] + [6] * 256 + [1] * (len(tokens) - 259))
    w.add_unk_token_id(0)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    # Pass 1: the tensor infos (no data made); pass 2: each tensor made and written in turn.
    for name, t in tensors(s, None, ftype):
        raw = getattr(gguf.GGMLQuantizationType, t.qtype) if t.qtype else None
        w.add_tensor_info(name, t.shape, t.dtype, t.nbytes, raw_dtype=raw)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    rng = np.random.default_rng(seed)
    for _, t in tensors(s, rng, ftype):
        data = t.make()
        assert data.nbytes == t.nbytes and data.dtype == t.dtype
        w.write_tensor_data(data)
        del data
    w.close()
    log(f"GGUF {ftype} written: {path} ({path.stat().st_size / 1e9:.2f} GB)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shape", required=True, choices=sorted(SHAPES))
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--type", default="f16", choices=sorted(FILE_TYPES))
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    a.out.parent.mkdir(parents=True, exist_ok=True)
    write(a.shape, a.type, a.out, a.seed)


if __name__ == "__main__":
    sys.exit(main())
