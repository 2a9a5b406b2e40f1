#!/usr/bin/env python3
"""Tiny random Phi-3 models (transformers' Phi3ForCausalLM) + reference logits for AlloyForge.

Written to ``tests/fixtures/phi3/<name>/`` (fixed seeds, deterministic):

    config.json, model.safetensors   save_pretrained (fused qkv_proj / gate_up_proj, HF names)
    <name>.gguf                      GGUF (arch "phi3", F32) written with gguf-py following
                                     llama.cpp's converter (conversion/phi.py Phi3MiniModel):
                                     attn_qkv / ffn_up (= fused gate_up) unpermuted,
                                     rope_factors_{long,short}, rope.scaling.attn_factor,
                                     rope.dimension_count = rotary dims; tokenizer.ggml.* from
                                     stories260K.gguf (512 tokens, as the vocabulary here)
    reference.json                   {"name", "architecture", "ids", "vocab_size",
                                      "logits": {"transformers_f32": {...}}, "generate": {...}}
    logits_transformers_f32.bin      float32 [len(ids), vocab]: ALL positions of one forward
                                      pass over "ids" (no BOS added), eager attention
    logits_short_transformers_f32.bin  the same over ids[:short.length] (short factors)
    logits_llamacpp.bin              llama.cpp on <name>.gguf over "ids" (n_ctx 256 > the
                                     original context: long factors; no sliding window, which
                                     llama.cpp's phi3 loader turns off), F32 KV cache, with
                                     --llamacpp-dump (tools/llamacpp_dump_logits.cpp built)
    <name>.q8_0.gguf, logits_llamacpp_q8_0.bin   (phi3_partial) llama-quantize's Q8_0 of
                                     <name>.gguf and llama.cpp's logits on it, with
                                     --llama-quantize

"generate" holds the greedy continuation (`generate(do_sample=False)`) of generate.prompt.

Models:
    phi3_longrope   LongRoPE with short/long factors; max_position_embeddings 4x
                    original_max_position_embeddings (attention factor sqrt(1 + ln 4 / ln 48)),
                    and a prompt of 80 ids past original_max_position_embeddings = 48, so
                    transformers uses the long factors for the whole pass.
    phi3_partial    Phi-4-mini style: partial_rotary_factor 0.75 with LongRoPE (long factors,
                    attention factor) and grouped-query attention.
    phi3_swa        Phi-3-mini-4k style sliding_window (8) over 24 ids (three windows), written
                    to the GGUF as phi3.attention.sliding_window; original context 16 so the
                    whole pass (and generate from 18 ids) uses the long factors. The tool checks
                    transformers' mask empirically: row window-1 equals the no-window logits and
                    row window differs, i.e. key j is visible to query p iff p - j < window.

Usage (repository root):
    /work/pyref/bin/python tools/make_phi3_models.py [--llamacpp-dump /work/peers/phi3/dump_logits
        --llama-quantize /work/peers/llama.cpp/build/bin/llama-quantize] [--only NAME ...]
"""
from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
from pathlib import Path

import gguf
import numpy as np
import torch
import transformers
from transformers import Phi3Config, Phi3ForCausalLM

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "tests" / "fixtures" / "phi3"
STORIES_GGUF = Path("/work/shared/testdata/models/stories260K/stories260K.gguf")
VOCAB = 512
HIDDEN = 64
N_IDS = 80
IDS_SEED = 20250101
GEN_PROMPT = 52  # ids[:52] -> past original_max_position_embeddings as well
GEN_NEW = 12
SHORT_IDS = 40  # ids[:40] stay within original_max_position_embeddings: short factors

SPECS = [
    dict(name="phi3_longrope", seed=1901, heads=4, kv_heads=4, ffn=96, partial=1.0,
         orig=48, max_pos=192,
         short=[1.0, 1.02, 1.1, 1.25, 1.5, 1.9, 2.4, 3.0],
         long=[1.0, 1.3, 2.0, 3.2, 5.0, 7.5, 11.0, 16.0]),
    dict(name="phi3_partial", seed=1902, heads=4, kv_heads=2, ffn=80, partial=0.75,
         orig=48, max_pos=192,
         short=[1.0, 1.05, 1.2, 1.5, 2.0, 2.6],
         long=[1.0, 1.4, 2.2, 3.5, 5.5, 8.0]),
    dict(name="phi3_swa", seed=1903, heads=4, kv_heads=2, ffn=80, partial=1.0,
         orig=16, max_pos=64, window=8, n_ids=24, gen_prompt=18, short_ids=None,
         short=[1.0, 1.02, 1.1, 1.25, 1.5, 1.9, 2.4, 3.0],
         long=[1.0, 1.3, 2.0, 3.2, 5.0, 7.5, 11.0, 16.0]),
]


def make_config(spec):
    return Phi3Config(
        vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=spec["ffn"], num_hidden_layers=2,
        num_attention_heads=spec["heads"], num_key_value_heads=spec["kv_heads"],
        max_position_embeddings=spec["max_pos"], original_max_position_embeddings=spec["orig"],
        rms_norm_eps=1e-5, tie_word_embeddings=False, bos_token_id=1, eos_token_id=2,
        pad_token_id=0, partial_rotary_factor=spec["partial"],
        sliding_window=spec.get("window"),
        rope_parameters={"rope_type": "longrope", "rope_theta": 10000.0,
                         "short_factor": spec["short"], "long_factor": spec["long"],
                         "original_max_position_embeddings": spec["orig"],
                         "partial_rotary_factor": spec["partial"]},
        attn_implementation="eager")


def build(spec):
    torch.manual_seed(spec["seed"])
    model = Phi3ForCausalLM(make_config(spec))
    g = torch.Generator().manual_seed(spec["seed"] * 7 + 3)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.08 * torch.randn(p.shape, generator=g))
    return model.eval()


def copy_tokenizer(w):
    r = gguf.GGUFReader(str(STORIES_GGUF))
    for key, f in r.fields.items():
        if key.startswith("tokenizer.ggml."):
            if f.types[0] == gguf.GGUFValueType.ARRAY:
                w.add_key_value(key, f.contents(), f.types[0], sub_type=f.types[1])
            else:
                w.add_key_value(key, f.contents(), f.types[0])


GGUF_LAYER = {
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.qkv_proj.weight": "attn_qkv.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}


def write_gguf(spec, model, path: Path):
    """As llama.cpp's Phi3MiniModel converter writes it (F32)."""
    head_dim = HIDDEN // spec["heads"]
    rope_dims = int(spec["partial"] * HIDDEN) // spec["heads"]
    scale = spec["max_pos"] / spec["orig"]
    w = gguf.GGUFWriter(str(path), "phi3")
    # Not "phi3...": llama.cpp then expects Phi-3's own special tokens in the vocabulary.
    w.add_name(spec["name"].replace("phi3_", "tiny_"))
    w.add_context_length(spec["max_pos"])
    w.add_rope_scaling_orig_ctx_len(spec["orig"])
    w.add_embedding_length(HIDDEN)
    w.add_feed_forward_length(spec["ffn"])
    w.add_block_count(2)
    w.add_head_count(spec["heads"])
    w.add_head_count_kv(spec["kv_heads"])
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_dimension_count(rope_dims)
    w.add_rope_freq_base(10000.0)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    w.add_sliding_window(spec.get("window", 0))
    w.add_rope_scaling_attn_factors(math.sqrt(1 + math.log(scale) / math.log(spec["orig"])))
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    copy_tokenizer(w)
    assert rope_dims <= head_dim
    tensors = [("rope_factors_long.weight", torch.tensor(spec["long"])),
               ("rope_factors_short.weight", torch.tensor(spec["short"]))]
    for name, t in model.state_dict().items():
        if name == "model.embed_tokens.weight":
            tensors.append(("token_embd.weight", t))
        elif name == "model.norm.weight":
            tensors.append(("output_norm.weight", t))
        elif name == "lm_head.weight":
            tensors.append(("output.weight", t))
        else:
            bid, rest = name[len("model.layers."):].split(".", 1)
            tensors.append((f"blk.{bid}.{GGUF_LAYER[rest]}", t))
    for name, t in tensors:
        w.add_tensor(name, t.detach().float().contiguous().numpy().astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def llamacpp_logits(dump, gguf_path: Path, ids):
    out = gguf_path.parent / "logits_llamacpp.bin"
    subprocess.run([dump, str(gguf_path), str(out)] + [str(i) for i in ids], check=True,
                   stderr=subprocess.DEVNULL)
    return np.fromfile(out, dtype="<f4").reshape(len(ids), VOCAB)


def window_semantics(model, ids, logits, window):
    """Which keys transformers' sliding window hides, measured rather than assumed: with
    p - j < window, row window-1 still sees every key (equal to the no-window logits) and row
    window is the first to lose one (key 0); with p - j <= window, row window would be equal too."""
    with torch.no_grad():
        model.config.sliding_window = None
        full = model(torch.tensor([ids]), use_cache=False).logits[0].float().numpy()
        model.config.sliding_window = window
    inside = float(np.abs(full[:window] - logits[:window]).max())
    first_hidden = float(np.abs(full[window] - logits[window]).max())
    assert inside == 0.0 and first_hidden > 1e-3, (inside, first_hidden)
    return {"window": window, "rule": "key j visible to query p iff 0 <= p - j < window",
            "max_abs_diff_vs_no_window_rows_below_window": inside,
            "max_abs_diff_vs_no_window_row_window": first_hidden,
            "max_abs_diff_vs_no_window_all_rows": float(np.abs(full - logits).max())}


def make_one(spec, all_ids, dump):
    d = OUT / spec["name"]
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    build(spec).save_pretrained(d, safe_serialization=True)
    model = Phi3ForCausalLM.from_pretrained(d, dtype=torch.float32, attn_implementation="eager")
    model.eval()
    write_gguf(spec, model, d / f"{spec['name']}.gguf")
    ids = all_ids[:spec.get("n_ids", N_IDS)]
    short_ids = spec.get("short_ids", SHORT_IDS)
    gen_prompt = spec.get("gen_prompt", GEN_PROMPT)
    with torch.no_grad():
        logits = model(torch.tensor([ids]), use_cache=False).logits[0].float().numpy()
        if short_ids:
            short = model(torch.tensor([ids[:short_ids]]), use_cache=False).logits[0].float().numpy()
        prompt = ids[:gen_prompt]
        out = model.generate(torch.tensor([prompt]), max_new_tokens=GEN_NEW, do_sample=False,
                             min_new_tokens=GEN_NEW, pad_token_id=0)
    new = out[0, len(prompt):].tolist()
    assert logits.shape == (len(ids), VOCAB) and np.isfinite(logits).all()
    logits.astype("<f4").tofile(d / "logits_transformers_f32.bin")
    ref = {
        "name": spec["name"], "architecture": "Phi3ForCausalLM", "gguf": f"{spec['name']}.gguf",
        "ids": "@IDS@",
        "vocab_size": VOCAB,
        "logits": {"transformers_f32": {
            "file": "logits_transformers_f32.bin", "tolerance_hint": 1e-4,
            "dtype_note": "transformers forward in float32 (eager), one pass over all ids"}},
        "generate": {"prompt_length": gen_prompt, "new_ids": new,
                     "note": "generate(do_sample=False) over ids[:prompt_length]"},
        "generator": {"script": "tools/make_phi3_models.py",
                      "torch": torch.__version__.split("+")[0],
                      "transformers": transformers.__version__},
    }
    if short_ids:
        short.astype("<f4").tofile(d / "logits_short_transformers_f32.bin")
        ref["short"] = {
            "length": short_ids, "file": "logits_short_transformers_f32.bin",
            "note": "one pass over ids[:length], within original_max_position_embeddings: "
                    "transformers uses short_factor (and still the attention factor)"}
    if spec.get("window"):
        ref["sliding_window"] = window_semantics(model, ids, logits, spec["window"])
    if dump:
        lc = llamacpp_logits(dump, d / f"{spec['name']}.gguf", ids)
        diff = float(np.abs(lc - logits).max())
        ref["logits"]["llamacpp"] = {
            "file": "logits_llamacpp.bin", "tolerance_hint": 1e-4,
            "max_abs_diff_vs_transformers_f32": diff,
            "dtype_note": "llama.cpp (tools/llamacpp_dump_logits.cpp) on the GGUF, n_ctx=n_batch="
                          "n_ubatch=256, 2 threads, F32 KV cache, flash attention off"}
        if spec.get("window"):
            # llama.cpp's phi3 loader reads the key but turns the window off (its TODO about the
            # converters), so it attends to every key: equal within the window only.
            within = float(np.abs(lc[:spec["window"]] - logits[:spec["window"]]).max())
            ref["logits"]["llamacpp"]["max_abs_diff_vs_transformers_f32_within_window"] = within
            ref["logits"]["llamacpp"]["window_note"] = (
                "llama.cpp ignores phi3.attention.sliding_window (swa_type NONE in its phi3 "
                "loader) and attends to every key")
        print(f"{spec['name']}: max|llamacpp - transformers_f32| = {diff:.3e}")
    text = json.dumps(ref, indent=2).replace('"@IDS@"', json.dumps(ids))
    (d / "reference.json").write_text(text + "\n")
    print(f"{spec['name']}: logits std {logits.std():.3f}, "
          f"argmax distinct {len(set(logits.argmax(-1).tolist()))}, generate {new}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--llamacpp-dump", help="built tools/llamacpp_dump_logits.cpp")
    ap.add_argument("--llama-quantize", help="llama.cpp's llama-quantize (needs --llamacpp-dump)")
    ap.add_argument("--only", nargs="+", help="remake only these fixtures")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    transformers.logging.set_verbosity_error()
    g = torch.Generator().manual_seed(IDS_SEED)
    ids = torch.randint(3, VOCAB, (N_IDS,), generator=g).tolist()
    for spec in SPECS:
        if args.only and spec["name"] not in args.only:
            continue
        make_one(spec, ids, args.llamacpp_dump)
        if spec["name"] == "phi3_partial" and args.llama_quantize and args.llamacpp_dump:
            d = OUT / spec["name"]
            q8 = d / f"{spec['name']}.q8_0.gguf"
            subprocess.run([args.llama_quantize, str(d / f"{spec['name']}.gguf"), str(q8), "q8_0"],
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            out = d / "logits_llamacpp_q8_0.bin"
            subprocess.run([args.llamacpp_dump, str(q8), str(out)] + [str(i) for i in ids],
                           check=True, stderr=subprocess.DEVNULL)
            lc = np.fromfile(out, dtype="<f4").reshape(len(ids), VOCAB)
            f32 = np.fromfile(d / "logits_transformers_f32.bin", dtype="<f4").reshape(len(ids), VOCAB)
            print(f"{spec['name']}: max|llamacpp q8_0 - transformers_f32| = {np.abs(lc - f32).max():.3e}")


if __name__ == "__main__":
    main()
