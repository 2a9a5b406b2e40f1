#!/usr/bin/env python3
"""Reference bytes for af::quant from llama.cpp's own reference quantizer.

Calls quantize_row_<type>_ref / dequantize_row_<type> in the libggml-base.so that pip's
llama-cpp-python ships, on a fixed input with awkward blocks (zeros, constants, all-positive,
tiny, outliers, exact ties), and writes tests/fixtures/quant/:
  input_f32.bin          4 rows x 512 float32
  <type>.bin             the quantized rows as llama.cpp writes them
  <type>_dequant.bin     llama.cpp's dequantization of those bytes (float32)
It also checks that gguf-py's numpy dequantizer (and quantizer, where it has one) agrees.
Run with /work/venv/bin/python tools/make_quant_fixtures.py.
"""
import ctypes
import glob
import os
import sys

import numpy as np

ROWS, COLS = int(os.environ.get("AF_QUANT_ROWS", 4)), 512
# name, ggml type id, block elements, block bytes
TYPES = [
    ("q4_0", 2, 32, 18), ("q4_1", 3, 32, 20), ("q5_0", 6, 32, 22), ("q5_1", 7, 32, 24),
    ("q8_0", 8, 32, 34), ("q2_K", 10, 256, 84), ("q3_K", 11, 256, 110), ("q4_K", 12, 256, 144),
    ("q5_K", 13, 256, 176), ("q6_K", 14, 256, 210), ("q8_K", 15, 256, 292),
]


def make_input():
    if os.environ.get("AF_QUANT_STRESS"):  # a larger one-off check, not committed
        rng = np.random.default_rng(int(os.environ["AF_QUANT_STRESS"]))
        x = rng.standard_normal((ROWS, COLS)) * np.exp(rng.uniform(-8, 3, (ROWS, 1)))
        x *= np.where(rng.uniform(size=(ROWS, COLS)) < 0.01, 30, 1)
        return x.astype(np.float32)
    rng = np.random.default_rng(1234)
    x = np.zeros((ROWS, COLS), dtype=np.float32)
    x[0] = rng.standard_normal(COLS)
    x[1] = (rng.standard_t(3, COLS) * 0.02)
    r2 = rng.standard_normal(COLS).astype(np.float32) * 0.1
    r2[0:32] = 0.0                       # an all-zero block
    r2[32:64] = 0.25                     # a constant block
    r2[64:96] = np.abs(r2[64:96]) + 0.5  # all positive (min > 0)
    r2[96:128] = -np.abs(r2[96:128]) - 0.5
    r2[128:160] *= 1e-20                 # below the group epsilon
    r2[256:512] = 0.0                    # an all-zero super-block
    x[2] = r2
    r3 = rng.uniform(-1, 1, COLS).astype(np.float32)
    r3[::7] = np.round(r3[::7] * 8) / 8  # exact ties for rounding
    r3[300] = 40.0                       # an outlier
    x[3] = r3
    return x.astype(np.float32)


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = os.path.join(root, "tests", "fixtures", "quant")
    os.makedirs(out, exist_ok=True)
    import llama_cpp
    libdir = os.path.join(os.path.dirname(llama_cpp.__file__), "lib")
    lib = ctypes.CDLL(glob.glob(os.path.join(libdir, "libggml-base.so*"))[0])
    x = make_input()
    x.tofile(os.path.join(out, "input_f32.bin"))
    import gguf
    from gguf import quants
    for name, tid, bk, bb in TYPES:
        q = np.zeros(ROWS * COLS // bk * bb, dtype=np.uint8)
        qfn = getattr(lib, f"quantize_row_{name}_ref")
        qfn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
        for r in range(ROWS):
            row = np.ascontiguousarray(x[r])
            qfn(row.ctypes.data, q[r * COLS // bk * bb:].ctypes.data, COLS)
        dq = np.zeros(ROWS * COLS, dtype=np.float32)
        dfn = getattr(lib, f"dequantize_row_{name}")
        dfn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
        dfn(q.ctypes.data, dq.ctypes.data, ROWS * COLS)
        q.tofile(os.path.join(out, f"{name}.bin"))
        dq.tofile(os.path.join(out, f"{name}_dequant.bin"))
        qtype = gguf.GGMLQuantizationType(tid)
        if name != "q8_K":
            py = quants.dequantize(q.reshape(ROWS, -1), qtype).reshape(-1).astype(np.float32)
            same = np.array_equal(py.view(np.uint32), dq.view(np.uint32))
            print(f"{name}: gguf-py dequantize bit-identical to ggml: {same}")
            if not same:
                sys.exit(f"{name}: gguf-py and ggml dequantize disagree")
            try:
                pq = quants.quantize(x, qtype).reshape(-1)
                print(f"{name}: gguf-py quantize same bytes as ggml: {np.array_equal(pq, q)}")
            except NotImplementedError:
                pass
    print("wrote", out)


if __name__ == "__main__":
    main()
