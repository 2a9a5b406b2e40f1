#!/usr/bin/env python3
"""Fixtures for `af-cli quantize HF_FOLDER OUT --type f32` (HF -> GGUF conversion), checked
against llama.cpp.

Cases (all converted with `af-cli quantize ... --type f32`):
  llama32_tied  a new tiny Llama-3.2-style model made here with transformers: BF16 weights, tied
                embeddings, llama3 RoPE scaling in the transformers-4 config format (top-level
                rope_theta + "rope_scaling"), the stories260K tokenizer.json (converted by
                af-cli itself, no --vocab-from)
  llama_gqa     tests/fixtures/models/llama_gqa (llama3 RoPE in transformers-5 "rope_parameters")
  minicpm       tests/fixtures/models/minicpm (MiniCPMForCausalLM: scale_emb, scale_depth,
                dim_model_base)
  minicpm4      tests/fixtures/models/minicpm4 (the same plus LongRoPE short/long factors, with
                max_position_embeddings == original_max_position_embeddings)
The last three have no tokenizer.json: their vocabulary comes from --vocab-from <their .gguf>.

For each case the converted file is loaded by llama.cpp (llama-cpp-python: logits_all,
n_ctx=n_batch=n_ubatch=256, 2 threads, F32 KV cache, flash attention off) and its logits on the
first N_IDS ids of the case are stored, so the C++ test (tests/e2e/test_cli_convert.cpp) needs no
pip. Writes tests/fixtures/convert/:
  llama32_tied/{config.json, model.safetensors, tokenizer.json, tokenizer_config.json}
  reference.json                       per case: folder, vocab_from, ids, files, measured numbers
  <case>_transformers_f32.bin          (llama32_tied only; the others have theirs in models/)
  <case>_llamacpp.bin                  raw little-endian float32 [N_IDS, vocab]

Usage (from the repository root, after building af-cli):
  /work/venv/bin/python tools/make_convert_fixtures.py --cli build/apps/cli/af-cli
Deterministic (fixed seeds, one torch thread); about 5 s.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

import gguf
import transformers
from transformers import LlamaConfig, LlamaForCausalLM

# llama.cpp's logits of a GGUF file (F32 KV cache, 2 threads), as the quantize check records them.
from check_quantize_llamacpp import logits as llamacpp_logits

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "tests/fixtures/models"
OUT = ROOT / "tests/fixtures/convert"
STORIES_HF = Path("/work/shared/testdata/models/stories260K-hf")
N_IDS = 32
VOCAB = 512


def make_llama32_tied(d: Path):
    """A tiny Llama-3.2-shaped model: transformers builds it, save_pretrained writes it; the config
    is then rewritten in the transformers-4 layout the released Llama-3.x configs use."""
    rope = {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 32.0, "low_freq_factor": 1.0,
            "high_freq_factor": 8.0, "original_max_position_embeddings": 256}
    cfg = LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                      rms_norm_eps=1e-5, tie_word_embeddings=True, bos_token_id=1,
                      eos_token_id=2, rope_parameters=dict(rope), attn_implementation="eager")
    torch.manual_seed(3201)
    model = LlamaForCausalLM(cfg)
    g = torch.Generator().manual_seed(3202)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
    model = model.to(torch.bfloat16)
    model.save_pretrained(d, safe_serialization=True)
    for extra in ("generation_config.json",):
        (d / extra).unlink(missing_ok=True)
    c = json.loads((d / "config.json").read_text())
    params = c.pop("rope_parameters")
    c["rope_theta"] = params.pop("rope_theta")
    c["rope_scaling"] = params
    c.pop("head_dim", None)  # Llama-3.2 configs have head_dim; 3.1 ones do not: test the latter
    (d / "config.json").write_text(json.dumps(c, indent=2, sort_keys=True) + "\n")
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copyfile(STORIES_HF / f, d / f)


@torch.no_grad()
def transformers_logits(d: Path, ids):
    m = LlamaForCausalLM.from_pretrained(d, dtype=torch.float32, attn_implementation="eager")
    m.eval()
    assert m.config.rope_parameters["rope_type"] == "llama3", m.config.rope_parameters
    return m(torch.tensor([ids]), use_cache=False).logits[0].float().numpy().astype(np.float32)


def same_tensors(a: Path, b: Path):
    ra, rb = gguf.GGUFReader(str(a)), gguf.GGUFReader(str(b))
    ta = {t.name: t for t in ra.tensors}
    tb = {t.name: t for t in rb.tensors}
    if set(ta) != set(tb):
        return False
    return all(ta[n].tensor_type == tb[n].tensor_type and
               np.array_equal(np.asarray(ta[n].data), np.asarray(tb[n].data)) for n in ta)


def top1(a, b):
    return int((a.argmax(-1) == b.argmax(-1)).sum())


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cli", type=Path, required=True, help="af-cli binary")
    ap.add_argument("--out", type=Path, default=OUT)
    a = ap.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    transformers.logging.set_verbosity_error()

    out = a.out
    if (out / "llama32_tied").exists():
        shutil.rmtree(out / "llama32_tied")
    (out / "llama32_tied").mkdir(parents=True)
    make_llama32_tied(out / "llama32_tied")
    ids32 = torch.randint(3, VOCAB, (N_IDS,), generator=torch.Generator().manual_seed(3203)).tolist()

    cases = {
        "llama32_tied": dict(folder="tests/fixtures/convert/llama32_tied", vocab_from=None,
                             ids=ids32),
        "llama_gqa": dict(folder="tests/fixtures/models/llama_gqa",
                          vocab_from="tests/fixtures/models/llama_gqa/llama_gqa.gguf"),
        "minicpm": dict(folder="tests/fixtures/models/minicpm",
                        vocab_from="tests/fixtures/models/minicpm/minicpm.gguf"),
        "minicpm4": dict(folder="tests/fixtures/models/minicpm4",
                         vocab_from="tests/fixtures/models/minicpm4/minicpm4.gguf"),
    }
    reference = {"note": ("llama.cpp (llama-cpp-python %s) on the file af-cli quantize FOLDER --type "
                          "f32 wrote: logits_all, n_ctx=n_batch=n_ubatch=256, n_threads=2, F32 KV "
                          "cache, flash_attn off; raw float32 [len(ids), vocab]" %
                          __import__("llama_cpp").__version__),
                 "generator": {"script": "tools/make_convert_fixtures.py",
                               "torch": torch.__version__.split("+")[0],
                               "transformers": transformers.__version__},
                 "cases": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name, case in cases.items():
            folder = ROOT / case["folder"]
            if case.get("ids") is None:
                ref = json.loads((folder / "reference.json").read_text())
                case["ids"] = ref["ids"][:N_IDS]
                tf = np.fromfile(folder / "logits_transformers_f32.bin", dtype="<f4")
                tf = tf.reshape(-1, VOCAB)[:N_IDS]
                case["transformers_f32"] = f"{case['folder']}/logits_transformers_f32.bin"
            else:
                tf = transformers_logits(folder, case["ids"])
                case["transformers_f32"] = f"tests/fixtures/convert/{name}_transformers_f32.bin"
                tf.astype("<f4").tofile(out / f"{name}_transformers_f32.bin")
            gg = Path(tmp) / f"{name}.gguf"
            cmd = [str(a.cli), "quantize", str(folder), str(gg), "--type", "f32"]
            if case["vocab_from"]:
                cmd += ["--vocab-from", str(ROOT / case["vocab_from"])]
            subprocess.run(cmd, check=True, capture_output=True)
            lc = llamacpp_logits(gg, case["ids"])
            assert lc.shape == (N_IDS, VOCAB) and np.isfinite(lc).all()
            lc.astype("<f4").tofile(out / f"{name}_llamacpp.bin")
            case["llamacpp"] = f"tests/fixtures/convert/{name}_llamacpp.bin"
            case["vocab_size"] = VOCAB
            case["llamacpp_max_abs_diff_vs_transformers_f32"] = float(np.abs(lc - tf).max())
            case["llamacpp_top1_agree_vs_transformers_f32"] = top1(lc, tf)
            if case["vocab_from"]:
                # The fixture GGUF follows convert_hf_to_gguf.py's conventions.
                case["same_tensors_as_vocab_from_gguf"] = same_tensors(gg, ROOT / case["vocab_from"])
            case["logit_std"] = float(tf.std())
            print(name, json.dumps({k: v for k, v in case.items() if k != "ids"}), flush=True)
            reference["cases"][name] = case
    text = json.dumps(reference, indent=1)
    (out / "reference.json").write_text(text + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    sys.exit(main())
