#!/usr/bin/env python3
"""Checks `af-cli quantize` against llama.cpp (through llama-cpp-python).

For every source GGUF and every type: our file (af-cli quantize) and llama.cpp's own
(llama_model_quantize) are compared tensor by tensor (same type chosen? same bytes?), both are
loaded by llama.cpp, and llama.cpp's logits on a fixed id sequence are compared: ours vs its own
quantization, and each vs the unquantized source (the format's usual error). HF folders are
converted too (af-cli quantize HF_FOLDER --type f32/f16/bf16) and compared with the fixture GGUF
that mimics llama.cpp's converter.

Writes a JSON summary (default tests/fixtures/quantize/llamacpp_check.json) so the numbers are
recorded without pip in CI. Usage:
  /work/venv/bin/python tools/check_quantize_llamacpp.py --cli build/apps/cli/af-cli [--big]
--big adds the Qwen2-0.5B-shaped F16 file from tools/make_qwen2_shaped.py (slow: minutes).
"""
import argparse
import ctypes
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
FIX = ROOT / "tests/fixtures/models"
TESTDATA = Path(os.environ.get("AF_TESTDATA", ROOT.parent / "shared/testdata"))
BIG = Path(os.environ.get("AF_BENCH_CACHE", Path.home() / ".cache/alloyforge/bench"))
FTYPES = {"f32": 0, "f16": 1, "bf16": 32, "q4_0": 2, "q4_1": 3, "q8_0": 7, "q5_0": 8, "q5_1": 9,
          "q2_k": 10, "q3_k_m": 12, "q4_k_s": 14, "q4_k_m": 15, "q5_k_m": 17, "q6_k": 18}


def llama_quantize(src: Path, dst: Path, ftype: int):
    import llama_cpp
    p = llama_cpp.llama_model_quantize_default_params()
    p.ftype = ftype
    p.nthread = 2
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(p))
    if rc != 0:
        raise RuntimeError(f"llama_model_quantize {src} -> {dst}: {rc}")


def logits(path: Path, ids):
    from llama_cpp import Llama
    llm = Llama(model_path=str(path), logits_all=True, n_ctx=256, n_batch=256, n_ubatch=256,
                n_threads=2, n_threads_batch=2, verbose=False, flash_attn=False, type_k=0,
                type_v=0)
    llm.reset()
    llm.eval(ids)
    out = np.array(llm.scores[: len(ids), :], dtype=np.float32, copy=True)
    del llm
    return out


def compare_tensors(a: Path, b: Path):
    import gguf
    ra, rb = gguf.GGUFReader(str(a)), gguf.GGUFReader(str(b))
    ta = {t.name: t for t in ra.tensors}
    tb = {t.name: t for t in rb.tensors}
    same_type = same_bytes = 0
    type_diff = []
    for n, t in ta.items():
        u = tb.get(n)
        if u is None:
            type_diff.append(f"{n}: only ours")
            continue
        if t.tensor_type == u.tensor_type:
            same_type += 1
            if np.array_equal(np.asarray(t.data).view(np.uint8), np.asarray(u.data).view(np.uint8)):
                same_bytes += 1
        else:
            type_diff.append(f"{n}: ours {t.tensor_type.name}, llama.cpp {u.tensor_type.name}")
    for n in tb:
        if n not in ta:
            type_diff.append(f"{n}: only llama.cpp")
    types = {}
    for t in ra.tensors:
        types[t.tensor_type.name] = types.get(t.tensor_type.name, 0) + 1
    return dict(tensors=len(ta), same_type=same_type, same_bytes=same_bytes,
                type_differences=type_diff[:10], our_types=types)


def rel_rms(x, ref):
    return float(np.sqrt(np.mean((x - ref) ** 2)) / np.sqrt(np.mean(ref ** 2)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cli", type=Path, default=ROOT / "build/apps/cli/af-cli")
    ap.add_argument("--out", type=Path, default=ROOT / "tests/fixtures/quantize/llamacpp_check.json")
    ap.add_argument("--big", action="store_true")
    ap.add_argument("--types", nargs="*", default=["q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "q6_k",
                                                   "q4_k_m", "q4_k_s", "q5_k_m", "q3_k_m", "q2_k",
                                                   "f16", "bf16"])
    a = ap.parse_args()
    sources = [("qwen2", FIX / "qwen2/qwen2.gguf"),
               ("llama_f16_sharded", FIX / "llama_f16_sharded/llama_f16_sharded.gguf"),
               ("stories260K", TESTDATA / "models/stories260K/stories260K.gguf")]
    if a.big:
        sources.append(("qwen2_shaped_f16", BIG / "qwen2_shaped-f16.gguf"))
    rng = np.random.default_rng(0)
    result = {"date": time.strftime("%Y-%m-%d"), "llama_cpp_python": __import__("llama_cpp").__version__,
              "note": "logits: llama.cpp (llama-cpp-python) on each file, F32 KV cache, 2 threads; "
                      "rel_rms = RMS(diff) / RMS(reference)", "gguf": {}, "hf": {}}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for label, src in sources:
            if not src.exists():
                print(f"skip {label}: {src} missing", file=sys.stderr)
                continue
            import gguf
            vocab = len(gguf.GGUFReader(str(src)).fields["tokenizer.ggml.tokens"].data)
            ids = [int(i) for i in rng.integers(3, min(vocab, 500), size=24)]
            base = logits(src, ids)
            entries = {}
            for t in a.types:
                ours, theirs = tmp / f"{label}-{t}-ours.gguf", tmp / f"{label}-{t}-llama.gguf"
                subprocess.run([str(a.cli), "quantize", str(src), str(ours), "--type", t],
                               check=True, capture_output=True)
                llama_quantize(src, theirs, FTYPES[t])
                e = compare_tensors(ours, theirs)
                lo, lt = logits(ours, ids), logits(theirs, ids)
                e.update(max_abs_diff_ours_vs_llamacpp=float(np.abs(lo - lt).max()),
                         rel_rms_ours_vs_source=rel_rms(lo, base),
                         rel_rms_llamacpp_vs_source=rel_rms(lt, base),
                         file_bytes_ours=ours.stat().st_size,
                         file_bytes_llamacpp=theirs.stat().st_size)
                entries[t] = e
                print(label, t, json.dumps({k: v for k, v in e.items() if k != "type_differences"}),
                      flush=True)
                ours.unlink()
                theirs.unlink()
            result["gguf"][label] = entries
        # HF folders -> GGUF, against the fixture GGUFs written with the converter's conventions.
        for label, folder, ref, t, vocab in [
                ("qwen2", FIX / "qwen2", FIX / "qwen2/qwen2.gguf", "f32", True),
                ("llama_bf16", FIX / "llama_bf16", FIX / "llama_bf16/llama_bf16.gguf", "bf16", True),
                ("llama_f16_sharded", FIX / "llama_f16_sharded",
                 FIX / "llama_f16_sharded/llama_f16_sharded.gguf", "f16", True),
                ("stories260K-hf", TESTDATA / "models/stories260K-hf",
                 TESTDATA / "models/stories260K/stories260K.gguf", "f32", False)]:
            if not folder.exists():
                continue
            ours = tmp / f"hf-{label}.gguf"
            cmd = [str(a.cli), "quantize", str(folder), str(ours), "--type", t]
            if vocab:
                cmd += ["--vocab-from", str(ref)]
            subprocess.run(cmd, check=True, capture_output=True)
            e = compare_tensors(ours, ref)
            ids = [int(i) for i in rng.integers(3, 500, size=24)]
            e["max_abs_diff_logits_vs_reference_gguf"] = float(np.abs(logits(ours, ids) - logits(ref, ids)).max())
            e["command"] = " ".join(["af-cli"] + cmd[1:]).replace(str(ROOT) + "/", "").replace(str(TESTDATA), "$AF_TESTDATA")
            result["hf"][label] = e
            print("hf", label, json.dumps(e), flush=True)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    sys.exit(main())
