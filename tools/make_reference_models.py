#!/usr/bin/env python3
"""Generate tiny random reference models + reference logits for AlloyForge tests.

Every model is built *with Hugging Face transformers itself* (LlamaForCausalLM,
Qwen2ForCausalLM, and a thin MiniCPM wrapper around LlamaForCausalLM that
re-implements OpenBMB's ``modeling_minicpm.py`` scaling scheme), randomised with
fixed seeds, and written to ``tests/fixtures/models/<name>/``:

    config.json            HF config (save_pretrained; hand-written for MiniCPM*)
    model.safetensors      HF weights (save_pretrained, safe_serialization=True);
                           llama_f16_sharded instead has model.safetensors.index.json
                           + model-0000k-of-0000n.safetensors (max_shard_size)
    <name>.gguf            GGUF written with gguf-py's GGUFWriter following the
                           conventions of llama.cpp's convert_hf_to_gguf.py
                           (tensor names, q/k row permutation, metadata keys);
                           tokenizer.ggml.* metadata copied from stories260K.gguf
    reference.json         {"name", "architecture", "ids", "vocab_size", "logits": {...}}
    logits_<ref>.bin       raw little-endian float32, shape [len(ids), vocab_size],
                           logits of ALL positions of one forward pass over "ids"
                           (no BOS added)

Reference names:
    transformers_f32   transformers forward in float32 (BF16/F16 weights upcast to f32)
    transformers_bf16  (BF16 models only) transformers running natively in
                       torch.bfloat16, logits cast to float32
    llamacpp           llama.cpp (llama-cpp-python) on <name>.gguf,
                       logits_all=True, n_ctx=n_batch=n_ubatch=256, n_threads=2,
                       F32 KV cache, flash attention off

Usage (from the repository root):

    /work/venv/bin/python tools/make_reference_models.py            # all models
    /work/venv/bin/python tools/make_reference_models.py --only qwen2 minicpm
    /work/venv/bin/python tools/make_reference_models.py --skip-llamacpp
    /work/venv/bin/python tools/make_reference_models.py --check    # regenerate in a
                                 temp dir and compare byte-for-byte with the fixtures

Requirements: torch (CPU), transformers >= 5, safetensors, numpy, gguf (pip),
and llama-cpp-python for the "llamacpp" reference (skipped with a warning if it
is not importable).  No network access is needed: nothing is downloaded.

The script is deterministic: fixed seeds, fixed thread counts; re-running it
rewrites identical files (checked with --check on the same machine; llama.cpp
logits may differ in the last bits on a CPU with different SIMD support).
"""
from __future__ import annotations

import argparse
import filecmp
import hashlib
import json
import math
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

import gguf
import transformers
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM
from transformers.models.llama.modeling_llama import LlamaDecoderLayer

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "tests" / "fixtures" / "models"
STORIES_GGUF = Path("/work/shared/testdata/models/stories260K/stories260K.gguf")

VOCAB = 512
HIDDEN = 64
N_LAYERS = 2
MAX_POS = 256
N_IDS = 80
IDS_SEED = 20250101

# ---------------------------------------------------------------------------
# model specs
# ---------------------------------------------------------------------------
SPECS = [
    dict(
        name="llama_gqa", kind="llama", seed=1001, dtype="f32",
        heads=4, kv_heads=2, ffn=128, tied=False, eps=1e-5,
        rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
                         "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                         "original_max_position_embeddings": 64},
    ),
    dict(
        name="llama_bf16", kind="llama", seed=1002, dtype="bf16",
        heads=4, kv_heads=4, ffn=96, tied=True, eps=1e-5,
        rope_parameters={"rope_type": "linear", "rope_theta": 10000.0, "factor": 2.0},
    ),
    dict(
        name="qwen2", kind="qwen2", seed=1003, dtype="f32",
        heads=8, kv_heads=2, ffn=96, tied=True, eps=1e-6,
        rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
    ),
    dict(
        name="minicpm", kind="minicpm", seed=1004, dtype="f32",
        heads=4, kv_heads=2, ffn=96, tied=True, eps=1e-5, rope_theta=10000.0,
        scale_emb=12.0, scale_depth=1.4, dim_model_base=32, rope_scaling=None,
        model_type="minicpm", architectures=["MiniCPMForCausalLM"],
    ),
    dict(
        name="minicpm4", kind="minicpm", seed=1005, dtype="f32",
        heads=4, kv_heads=2, ffn=96, tied=False, eps=1e-5, rope_theta=10000.0,
        scale_emb=12.0, scale_depth=1.4, dim_model_base=16,
        # LongRoPE exactly as in OpenBMB's MiniCPM4 modeling_minicpm.py
        # (MiniCPMLongRoPE).  max_position_embeddings == original_max_position_embeddings
        # (as in the released MiniCPM4 configs) -> short_factor is used and the
        # cos/sin scaling factor sqrt(1 + log(1)/log(orig)) is exactly 1.
        rope_scaling={
            "rope_type": "longrope",
            "short_factor": [1.0, 1.05, 1.2, 1.5, 2.0, 2.75, 3.5, 4.25],
            "long_factor": [1.0, 1.5, 2.5, 4.0, 6.0, 9.0, 13.0, 18.0],
            "original_max_position_embeddings": MAX_POS,
        },
        model_type="minicpm4", architectures=["MiniCPM4ForCausalLM"],
    ),
    dict(
        # F16 weights, HF folder saved *sharded* (model.safetensors.index.json +
        # model-0000k-of-0000n.safetensors, no model.safetensors); GGUF with F16
        # matrices and F32 norms (convert_hf_to_gguf.py --outtype f16).
        name="llama_f16_sharded", kind="llama", seed=1006, dtype="f16",
        heads=4, kv_heads=2, ffn=64, tied=False, eps=1e-5,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        max_shard_size="100KB",
    ),
]


# ---------------------------------------------------------------------------
# MiniCPM reference (wrapper around transformers' LlamaForCausalLM)
# ---------------------------------------------------------------------------
class MiniCPMDecoderLayer(LlamaDecoderLayer):
    """LlamaDecoderLayer with MiniCPM's scaled residuals:
    h = residual + sublayer(norm(residual)) * (scale_depth / sqrt(num_hidden_layers))."""

    residual_scale: float = 1.0

    def forward(self, hidden_states, attention_mask=None, position_ids=None, cache=None,
                use_cache=False, position_embeddings=None, **kwargs):
        residual = hidden_states
        hidden_states = self.input_layernorm(hidden_states)
        hidden_states, _ = self.self_attn(
            hidden_states=hidden_states, attention_mask=attention_mask,
            position_ids=position_ids, cache=cache, use_cache=use_cache,
            position_embeddings=position_embeddings, **kwargs)
        hidden_states = residual + hidden_states * self.residual_scale
        residual = hidden_states
        hidden_states = self.post_attention_layernorm(hidden_states)
        hidden_states = self.mlp(hidden_states)
        hidden_states = residual + hidden_states * self.residual_scale
        return hidden_states


class MiniCPMRotary(nn.Module):
    """cos/sin exactly as MiniCPMRotaryEmbedding / MiniCPMLongRoPE compute them:
    a cache for seq_len = max_position_embeddings built at init, in float32."""

    def __init__(self, head_dim, max_pos, base, rope_scaling):
        super().__init__()
        inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2).float() / head_dim))
        t = torch.arange(max_pos, dtype=inv_freq.dtype)
        scaling_factor = 1.0
        if rope_scaling is None:
            freqs = torch.outer(t, inv_freq)
        elif rope_scaling["rope_type"] == "longrope":
            orig = rope_scaling["original_max_position_embeddings"]
            scale = max_pos / orig
            scaling_factor = math.sqrt(1 + math.log(scale) / math.log(orig))
            factors = rope_scaling["long_factor"] if max_pos > orig else rope_scaling["short_factor"]
            ext = torch.tensor(factors, dtype=torch.float32)
            freqs = torch.mul(torch.outer(t, 1.0 / ext), inv_freq)
        else:
            raise ValueError(rope_scaling)
        emb = torch.cat((freqs, freqs), dim=-1)
        self.register_buffer("cos_cached", emb.cos() * scaling_factor, persistent=False)
        self.register_buffer("sin_cached", emb.sin() * scaling_factor, persistent=False)

    def forward(self, x, position_ids):
        return self.cos_cached[position_ids].to(x.dtype), self.sin_cached[position_ids].to(x.dtype)


class MiniCPMReference(LlamaForCausalLM):
    """MiniCPM forward (OpenBMB modeling_minicpm.py) on top of LlamaForCausalLM:
      inputs_embeds = embed_tokens(ids) * scale_emb
      residual adds scaled by scale_depth / sqrt(num_hidden_layers)
      logits = lm_head(final_norm(h) / (hidden_size / dim_model_base))"""

    def setup_minicpm(self, spec):
        self.scale_emb = spec["scale_emb"]
        self.width = HIDDEN / spec["dim_model_base"]
        rs = spec["scale_depth"] / math.sqrt(N_LAYERS)
        for layer in self.model.layers:
            layer.__class__ = MiniCPMDecoderLayer
            layer.residual_scale = rs
        self.model.rotary_emb = MiniCPMRotary(HIDDEN // spec["heads"], MAX_POS, spec["rope_theta"],
                                              spec["rope_scaling"])

    def forward(self, input_ids, **kwargs):
        emb = self.model.embed_tokens(input_ids) * self.scale_emb
        out = self.model(inputs_embeds=emb, use_cache=False)
        h = out.last_hidden_state
        return transformers.modeling_outputs.CausalLMOutputWithPast(logits=self.lm_head(h / self.width))


# ---------------------------------------------------------------------------
def make_ids():
    g = torch.Generator().manual_seed(IDS_SEED)
    return torch.randint(0, VOCAB, (N_IDS,), generator=g).tolist()


def hf_config(spec):
    common = dict(vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=spec["ffn"],
                  num_hidden_layers=N_LAYERS, num_attention_heads=spec["heads"],
                  num_key_value_heads=spec["kv_heads"], max_position_embeddings=MAX_POS,
                  rms_norm_eps=spec["eps"], tie_word_embeddings=spec["tied"],
                  bos_token_id=1, eos_token_id=2, attn_implementation="eager")
    if spec["kind"] == "llama":
        return LlamaConfig(rope_parameters=dict(spec["rope_parameters"]), **common)
    if spec["kind"] == "qwen2":
        return Qwen2Config(rope_parameters=dict(spec["rope_parameters"]), **common)
    if spec["kind"] == "minicpm":
        # Llama skeleton; rope handled by MiniCPMRotary
        return LlamaConfig(rope_parameters={"rope_type": "default", "rope_theta": spec["rope_theta"]},
                           **common)
    raise ValueError(spec["kind"])


def build_model(spec):
    torch.manual_seed(spec["seed"])
    cfg = hf_config(spec)
    cls = {"llama": LlamaForCausalLM, "qwen2": Qwen2ForCausalLM, "minicpm": MiniCPMReference}[spec["kind"]]
    model = cls(cfg)
    if spec["kind"] == "minicpm":
        model.setup_minicpm(spec)
    # perturb all parameters (tied ones appear once) so logits are far from flat
    g = torch.Generator().manual_seed(spec["seed"] * 7 + 3)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            elif name.endswith(".bias"):
                p.copy_(0.2 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.08 * torch.randn(p.shape, generator=g))
    if spec["dtype"] in ("bf16", "f16"):
        # weights are stored in BF16/F16; only parameters are cast (saving only)
        model = model.to(torch.bfloat16 if spec["dtype"] == "bf16" else torch.float16)
    model.eval()
    return model


def load_reference_model(spec, d: Path, dtype):
    """Load the saved HF folder back the way a user would (from_pretrained), so that
    non-persistent buffers such as rotary inv_freq stay float32 as in real usage
    (model.to(bfloat16) would round them).  MiniCPM*: rebuild the wrapper and load
    model.safetensors into it."""
    if spec["kind"] in ("llama", "qwen2"):
        cls = LlamaForCausalLM if spec["kind"] == "llama" else Qwen2ForCausalLM
        m = cls.from_pretrained(d, dtype=dtype, attn_implementation="eager")
        assert m.config._attn_implementation == "eager"
        assert m.model.rotary_emb.inv_freq.dtype == torch.float32
    else:
        from safetensors.torch import load_file
        m = MiniCPMReference(hf_config(spec))
        m.setup_minicpm(spec)
        sd = load_file(str(d / "model.safetensors"))
        missing, unexpected = m.load_state_dict(sd, strict=False)
        assert not unexpected, unexpected
        assert missing == (["lm_head.weight"] if spec["tied"] else []), missing
        if spec["tied"]:
            assert m.lm_head.weight.data_ptr() == m.model.embed_tokens.weight.data_ptr()
        m = m.to(dtype)
    m.eval()
    return m


@torch.no_grad()
def forward_logits(model, ids):
    out = model(torch.tensor([ids], dtype=torch.long), use_cache=False)
    return out.logits[0].float().numpy().astype(np.float32)


def state_dict_f32(model):
    return {k: v.detach().float().clone() for k, v in model.state_dict().items()}


# ---------------------------------------------------------------------------
# HF folder
# ---------------------------------------------------------------------------
def write_hf(spec, model, d: Path):
    if spec["kind"] != "minicpm":
        if "max_shard_size" in spec:
            model.save_pretrained(d, safe_serialization=True, max_shard_size=spec["max_shard_size"])
            shards = sorted(p.name for p in d.glob("model-*-of-*.safetensors"))
            assert (d / "model.safetensors.index.json").exists() and 2 <= len(shards) <= 3, shards
            assert not (d / "model.safetensors").exists()
        else:
            model.save_pretrained(d, safe_serialization=True)
        gen = d / "generation_config.json"
        if gen.exists():
            gen.unlink()
        return
    # MiniCPM: weights through save_pretrained (HF tensor names), config.json by
    # hand with the keys of OpenBMB's configuration_minicpm.py
    model.save_pretrained(d, safe_serialization=True)
    for extra in ("generation_config.json",):
        if (d / extra).exists():
            (d / extra).unlink()
    cfg = {
        "architectures": spec["architectures"],
        "model_type": spec["model_type"],
        "bos_token_id": 1,
        "eos_token_id": 2,
        "hidden_act": "silu",
        "hidden_size": HIDDEN,
        "initializer_range": 0.1,
        "intermediate_size": spec["ffn"],
        "max_position_embeddings": MAX_POS,
        "num_attention_heads": spec["heads"],
        "num_hidden_layers": N_LAYERS,
        "num_key_value_heads": spec["kv_heads"],
        "rms_norm_eps": spec["eps"],
        "rope_theta": spec["rope_theta"],
        "rope_scaling": spec["rope_scaling"],
        "scale_emb": spec["scale_emb"],
        "scale_depth": spec["scale_depth"],
        "dim_model_base": spec["dim_model_base"],
        "tie_word_embeddings": spec["tied"],
        "attention_bias": False,
        "attention_dropout": 0.0,
        "pretraining_tp": 1,
        "use_cache": True,
        "torch_dtype": "float32",
        "vocab_size": VOCAB,
    }
    (d / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")


# ---------------------------------------------------------------------------
# GGUF (conventions of llama.cpp convert_hf_to_gguf.py)
# ---------------------------------------------------------------------------
def permute_qk(w: torch.Tensor, n_head: int, n_head_kv: int | None):
    """LlamaModel.permute from convert_hf_to_gguf.py (undo HF's rotate_half layout)."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


def llama3_rope_factors(rp, head_dim):
    base = rp.get("rope_theta", 10000.0)
    freqs = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    factor = rp.get("factor", 8.0)
    low = rp.get("low_freq_factor", 1.0)
    high = rp.get("high_freq_factor", 4.0)
    old = rp.get("original_max_position_embeddings", 8192)
    low_wl, high_wl = old / low, old / high
    out = []
    for f in freqs:
        wl = 2 * math.pi / f
        if wl < high_wl:
            out.append(1)
        elif wl > low_wl:
            out.append(factor)
        else:
            smooth = (old / wl - low) / (high - low)
            out.append(1 / ((1 - smooth) / factor + smooth))
    return torch.tensor(out, dtype=torch.float32)


def copy_tokenizer(w: gguf.GGUFWriter):
    r = gguf.GGUFReader(str(STORIES_GGUF))
    for key, f in r.fields.items():
        if not key.startswith("tokenizer.ggml."):
            continue
        vtype = f.types[0]
        if vtype == gguf.GGUFValueType.ARRAY:
            w.add_key_value(key, f.contents(), vtype, sub_type=f.types[1])
        else:
            w.add_key_value(key, f.contents(), vtype)


HF2GGUF_LAYER = {
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.q_proj.bias": "attn_q.bias",
    "self_attn.k_proj.bias": "attn_k.bias",
    "self_attn.v_proj.bias": "attn_v.bias",
    "self_attn.o_proj.weight": "attn_output.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}


def write_gguf(spec, sd: dict, path: Path):
    kind = spec["kind"]
    arch = {"llama": "llama", "qwen2": "qwen2", "minicpm": "minicpm"}[kind]
    bf16 = spec["dtype"] == "bf16"
    f16 = spec["dtype"] == "f16"
    head_dim = HIDDEN // spec["heads"]
    w = gguf.GGUFWriter(str(path), arch)

    w.add_name(spec["name"])
    w.add_block_count(N_LAYERS)
    w.add_context_length(MAX_POS)
    w.add_embedding_length(HIDDEN)
    w.add_feed_forward_length(spec["ffn"])
    w.add_head_count(spec["heads"])
    w.add_head_count_kv(spec["kv_heads"])
    if kind in ("llama", "qwen2"):
        rp = spec["rope_parameters"]
        if rp["rope_type"] == "linear":
            w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
            w.add_rope_scaling_factor(rp["factor"])
        # llama3: no metadata, handled by the rope_freqs tensor
        w.add_rope_freq_base(rp["rope_theta"])
    else:
        if spec["rope_scaling"] is not None and spec["rope_scaling"]["rope_type"] == "longrope":
            w.add_rope_scaling_type(gguf.RopeScalingType.LONGROPE)
        w.add_rope_freq_base(spec["rope_theta"])
    w.add_layer_norm_rms_eps(spec["eps"])
    if kind in ("llama", "qwen2"):
        # transformers>=5 configs carry head_dim -> converter writes key/value length
        w.add_key_length(head_dim)
        w.add_value_length(head_dim)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_BF16 if bf16 else
                    gguf.LlamaFileType.MOSTLY_F16 if f16 else gguf.LlamaFileType.ALL_F32)
    if kind == "llama":
        w.add_vocab_size(VOCAB)
    # converter writes rope.dimension_count only for llama; we write it for all
    # archs (value == head_dim, which is what llama.cpp assumes anyway)
    w.add_rope_dimension_count(head_dim)
    if kind == "minicpm":
        w.add_embedding_scale(float(spec["scale_emb"]))
        w.add_residual_scale(spec["scale_depth"] / N_LAYERS ** 0.5)
        w.add_logit_scale(HIDDEN / spec["dim_model_base"])
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    copy_tokenizer(w)

    tensors: list[tuple[str, torch.Tensor]] = []
    # extra tensors first (as convert_hf_to_gguf's prepare_tensors does)
    if kind == "llama" and spec["rope_parameters"]["rope_type"] == "llama3":
        tensors.append(("rope_freqs.weight", llama3_rope_factors(spec["rope_parameters"], head_dim)))
    if kind == "minicpm" and spec["rope_scaling"] is not None:
        rs = spec["rope_scaling"]
        tensors.append(("rope_factors_long.weight", torch.tensor(rs["long_factor"], dtype=torch.float32)))
        tensors.append(("rope_factors_short.weight", torch.tensor(rs["short_factor"], dtype=torch.float32)))

    for name in sd:  # state_dict order
        t = sd[name]
        if name == "model.embed_tokens.weight":
            tensors.append(("token_embd.weight", t))
        elif name == "model.norm.weight":
            tensors.append(("output_norm.weight", t))
        elif name == "lm_head.weight":
            if not spec["tied"]:
                tensors.append(("output.weight", t))
        elif name.startswith("model.layers."):
            bid, rest = name[len("model.layers."):].split(".", 1)
            if kind in ("llama", "minicpm"):
                if rest == "self_attn.q_proj.weight":
                    t = permute_qk(t, spec["heads"], spec["heads"])
                elif rest == "self_attn.k_proj.weight":
                    t = permute_qk(t, spec["heads"], spec["kv_heads"])
            tensors.append((f"blk.{bid}.{HF2GGUF_LAYER[rest]}", t))
        else:
            raise KeyError(name)

    for gname, t in tensors:
        a = t.detach().float().contiguous().numpy().astype(np.float32)
        if bf16 and a.ndim >= 2:
            w.add_tensor(gname, gguf.quants.quantize(a, gguf.GGMLQuantizationType.BF16),
                         raw_dtype=gguf.GGMLQuantizationType.BF16)
        elif f16 and a.ndim >= 2:
            # weights are already exactly representable in f16 (stored as F16)
            w.add_tensor(gname, a.astype(np.float16))
        else:
            w.add_tensor(gname, a)

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def llamacpp_logits(gguf_path: Path, ids, kv_f32=True):
    from llama_cpp import Llama
    kw = dict(logits_all=True, n_ctx=256, n_batch=256, n_ubatch=256, n_threads=2,
              n_threads_batch=2, verbose=False, flash_attn=False)
    if kv_f32:
        kw.update(type_k=0, type_v=0)  # GGML_TYPE_F32 KV cache
    llm = Llama(model_path=str(gguf_path), **kw)
    llm.reset()
    llm.eval(ids)
    assert llm.n_tokens == len(ids)
    scores = np.array(llm.scores[: len(ids), :], dtype=np.float32, copy=True)
    assert scores.shape == (len(ids), VOCAB)
    del llm
    return scores


def tol_hint(diff, factor=4, mantissas=(1, 2, 5, 10)):
    """Round factor x the observed difference up to 1 or 2 or 5 x 10^k (at least 1e-4)."""
    x = max(1e-4, factor * diff)
    e = math.floor(math.log10(x))
    for m in mantissas:
        if m * 10 ** e >= x:
            return float(f"{m * 10 ** e:.0e}")
    return x


def make_one(spec, out_root: Path, ids, skip_llamacpp: bool, log):
    name = spec["name"]
    d = out_root / name
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    model = build_model(spec)
    write_hf(spec, model, d)
    sd = state_dict_f32(model)
    write_gguf(spec, sd, d / f"{name}.gguf")

    refs = {}
    arrays = {}
    del model
    f32 = forward_logits(load_reference_model(spec, d, torch.float32), ids)
    arrays["transformers_f32"] = f32
    refs["transformers_f32"] = dict(
        file="logits_transformers_f32.bin",
        dtype_note={"bf16": "transformers forward in float32; the BF16 weights upcast exactly to float32",
                    "f16": "transformers forward in float32; the F16 weights upcast exactly to float32 "
                           "(from_pretrained(dtype=float32) of the sharded folder)",
                    "f32": "transformers forward in float32, F32 weights"}[spec["dtype"]],
        tolerance_hint=1e-4)
    if spec["dtype"] == "bf16":
        bf = forward_logits(load_reference_model(spec, d, torch.bfloat16), ids)
        diff = float(np.abs(bf - f32).max())
        arrays["transformers_bf16"] = bf
        refs["transformers_bf16"] = dict(
            file="logits_transformers_bf16.bin",
            dtype_note="transformers running natively in torch.bfloat16 (weights+activations), logits cast to float32",
            tolerance_hint=tol_hint(diff), max_abs_diff_vs_transformers_f32=diff)
        log(f"{name}: max|transformers_bf16 - transformers_f32| = {diff:.3e}")
    if not skip_llamacpp:
        lc = llamacpp_logits(d / f"{name}.gguf", ids)
        diff = float(np.abs(lc - f32).max())
        arrays["llamacpp"] = lc
        note = ("llama.cpp (llama-cpp-python) on %s.gguf: logits_all, n_ctx=n_batch=n_ubatch=256, "
                "n_threads=2, F32 KV cache, flash_attn off" % name)
        if spec["dtype"] == "bf16":
            note += "; BF16 matrices (ggml CPU converts activations to bf16 for BF16 mat-muls)"
        if spec["dtype"] == "f16":
            note += "; F16 matrices (ggml CPU converts activations to f16 for F16 mat-muls)"
        # F16 fixture: a tighter hint (about 2-4x the observed difference)
        hint = tol_hint(diff, 3, (1, 1.5, 2, 3, 4, 5, 6, 8, 10)) if spec["dtype"] == "f16" else tol_hint(diff)
        refs["llamacpp"] = dict(file="logits_llamacpp.bin", dtype_note=note,
                                tolerance_hint=hint, max_abs_diff_vs_transformers_f32=diff)
        log(f"{name}: max|llamacpp - transformers_f32| = {diff:.3e}")
        if spec["dtype"] == "bf16":
            d2 = float(np.abs(lc - arrays["transformers_bf16"]).max())
            refs["llamacpp"]["max_abs_diff_vs_transformers_bf16"] = d2
            log(f"{name}: max|llamacpp - transformers_bf16| = {d2:.3e}")
        # informational: llama.cpp's default F16 KV cache
        lc16 = llamacpp_logits(d / f"{name}.gguf", ids, kv_f32=False)
        log(f"{name}: (info) max|llamacpp(F16 KV cache default) - transformers_f32| = "
            f"{float(np.abs(lc16 - f32).max()):.3e}")

    for ref, arr in arrays.items():
        assert arr.shape == (len(ids), VOCAB) and arr.dtype == np.float32
        assert np.isfinite(arr).all()
        arr.astype("<f4").tofile(d / refs[ref]["file"])
    log(f"{name}: logits std {float(arrays['transformers_f32'].std()):.3f}, "
        f"argmax distinct over positions {len(set(arrays['transformers_f32'].argmax(-1).tolist()))}")

    ref = {
        "name": name,
        "architecture": spec["architectures"][0] if spec["kind"] == "minicpm"
        else {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM"}[spec["kind"]],
        "gguf": f"{name}.gguf",
        "weights_dtype": {"bf16": "bfloat16", "f16": "float16", "f32": "float32"}[spec["dtype"]],
        "ids": ids,
        "vocab_size": VOCAB,
        "logits": refs,
        "generator": {"script": "tools/make_reference_models.py", "torch": torch.__version__.split("+")[0],
                      "transformers": transformers.__version__},
    }
    text = json.dumps(dict(ref, ids="@IDS@"), indent=2).replace('"@IDS@"', json.dumps(ids))
    assert json.loads(text) == ref
    (d / "reference.json").write_text(text + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--only", nargs="*", help="model names to (re)generate")
    ap.add_argument("--skip-llamacpp", action="store_true")
    ap.add_argument("--check", action="store_true",
                    help="regenerate into a temp dir and compare with --out byte for byte")
    args = ap.parse_args()

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()

    skip = args.skip_llamacpp
    if not skip:
        try:
            import llama_cpp  # noqa: F401
        except Exception as e:  # pragma: no cover
            print(f"WARNING: llama_cpp not importable ({e}); skipping the llamacpp reference")
            skip = True

    specs = [s for s in SPECS if not args.only or s["name"] in args.only]
    ids = make_ids()
    out = args.out
    tmp = None
    if args.check:
        tmp = Path(tempfile.mkdtemp(prefix="refmodels_"))
        out = tmp
    for s in specs:
        make_one(s, out, ids, skip, print)

    if args.check:
        bad = 0
        for s in specs:
            a, b = tmp / s["name"], args.out / s["name"]
            for f in sorted(p.name for p in a.iterdir()):
                same = (b / f).exists() and filecmp.cmp(a / f, b / f, shallow=False)
                print(f"{'OK  ' if same else 'DIFF'} {s['name']}/{f}")
                bad += not same
        shutil.rmtree(tmp)
        sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
