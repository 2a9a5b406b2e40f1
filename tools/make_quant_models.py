#!/usr/bin/env python3
"""Quantized GGUF fixtures: a tiny Qwen2 (hidden 256, so every K-quant applies) converted by
llama.cpp's own quantizer (llama-cpp-python's llama_model_quantize) to each format, with
llama.cpp's logits on each file and transformers' float32 logits as the unquantized reference.

Writes tests/fixtures/models/qwen2_256/:
    <type>.gguf                 llama.cpp-quantized model (q8_0, q4_0, q4_k_m, ...)
    logits_llamacpp_<type>.bin  llama.cpp's logits on that file, float32 [len(ids), vocab]
    logits_transformers_f32.bin transformers' float32 logits
    quant_reference.json        ids, vocab, types, llama.cpp version
and tests/fixtures/quant/qwen2_q8_0.gguf (+ _logits_llamacpp.bin): the qwen2 fixture as
llama.cpp's Q8_0, to check quantize-at-load of its HF folder.
Usage: /work/venv/bin/python tools/make_quant_models.py   (from the repository root)
"""
import ctypes
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_reference_models as mrm  # noqa: E402

mrm.HIDDEN = 256
mrm.N_LAYERS = 2
mrm.N_IDS = 16
SPEC = dict(name="qwen2_256", kind="qwen2", seed=2001, dtype="f32", heads=4, kv_heads=1, ffn=256,
            tied=True, eps=1e-6, rope_parameters={"rope_type": "default", "rope_theta": 1000000.0})
TYPES = {  # file name -> llama.cpp ftype constant
    "q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0", "q4_0": "LLAMA_FTYPE_MOSTLY_Q4_0",
    "q4_1": "LLAMA_FTYPE_MOSTLY_Q4_1", "q5_0": "LLAMA_FTYPE_MOSTLY_Q5_0",
    "q5_1": "LLAMA_FTYPE_MOSTLY_Q5_1", "q2_k": "LLAMA_FTYPE_MOSTLY_Q2_K",
    "q3_k_m": "LLAMA_FTYPE_MOSTLY_Q3_K_M", "q4_k_m": "LLAMA_FTYPE_MOSTLY_Q4_K_M",
    "q5_k_m": "LLAMA_FTYPE_MOSTLY_Q5_K_M", "q6_k": "LLAMA_FTYPE_MOSTLY_Q6_K",
}


def main():
    import llama_cpp
    out = mrm.REPO / "tests" / "fixtures" / "models" / SPEC["name"]
    out.mkdir(parents=True, exist_ok=True)
    ids = mrm.make_ids()
    model = mrm.build_model(SPEC)
    mrm.forward_logits(model, ids).tofile(out / "logits_transformers_f32.bin")
    sd = mrm.state_dict_f32(model)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "f32.gguf"
        mrm.write_gguf(SPEC, sd, src)
        for name, ftype in TYPES.items():
            dst = out / f"{name}.gguf"
            params = llama_cpp.llama_model_quantize_default_params()
            params.ftype = getattr(llama_cpp, ftype)
            params.nthread = 2
            rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(),
                                                ctypes.byref(params))
            assert rc == 0, (name, rc)
            mrm.llamacpp_logits(dst, ids).tofile(out / f"logits_llamacpp_{name}.bin")
            print(name, dst.stat().st_size)
    # The small qwen2 fixture (hidden 64) as llama.cpp's Q8_0, for quantize-at-load tests.
    small = mrm.REPO / "tests" / "fixtures" / "models" / "qwen2"
    small_ids = json.loads((small / "reference.json").read_text())["ids"]
    dst = mrm.REPO / "tests" / "fixtures" / "quant" / "qwen2_q8_0.gguf"
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0
    rc = llama_cpp.llama_model_quantize(str(small / "qwen2.gguf").encode(), str(dst).encode(),
                                        ctypes.byref(params))
    assert rc == 0, rc
    mrm.llamacpp_logits(dst, small_ids).tofile(dst.with_name("qwen2_q8_0_logits_llamacpp.bin"))
    ref = dict(name=SPEC["name"], ids=ids, vocab_size=mrm.VOCAB, types=list(TYPES),
               llama_cpp_python=llama_cpp.__version__,
               generator="tools/make_quant_models.py")
    (out / "quant_reference.json").write_text(json.dumps(ref, indent=1) + "\n")


if __name__ == "__main__":
    main()
