#!/usr/bin/env python3
"""Writes the Whisper fixtures of tests/unit/test_log_mel.cpp and tests/e2e/test_whisper.cpp into
tests/fixtures/whisper/.

- log_mel.json + log_mel.f32: transformers' WhisperFeatureExtractor (80 and 128 mels) on the shared
  16 kHz clips (../shared/testdata/audio) and on synthetic tones (formulas in the json, regenerated
  by the test): per case the shape, the float64 sum of every mel row, and the values at a stride
  (all values would be ~1 MB per case). The reference is the extractor's float64 NumPy path (the
  one it takes without torch); its float32 torch path differs from it by up to ~6e-5 on pure tones
  (float32 STFT rounding in low-power bins), recorded per case as "torch_max_diff".
- fe80/, fe128/: the extractors' preprocessor_config.json (for af-cli log-mel).

Needs numpy, torch and transformers (5.x).
Usage: tools/make_whisper_fixtures.py [--testdata ../shared/testdata]
"""
import argparse
import json
import math
import os
import wave

import numpy as np
import transformers.models.whisper.feature_extraction_whisper as fe_module
from transformers import WhisperFeatureExtractor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "whisper")
STRIDE = 59  # prime, so the sample walks through every mel row and frame phase
CLIPS = ["jfk_16k.wav", "speech_fox_16k.wav", "speech_alice_16k.wav"]
# (name, seconds, [(amplitude, hz), ...]): x[i] = sum(a * sin(2 pi hz i / 16000)), float64 -> f32.
TONES = [
    ("tone_440", 2.0, [(0.5, 440.0)]),
    ("tone_mix", 5.0, [(0.3, 150.0), (0.2, 3000.0), (0.05, 7900.0)]),
    ("tone_short", 0.3, [(0.9, 1000.0)]),
    ("tone_long_truncated", 31.0, [(0.25, 523.25)]),
    ("silence", 1.0, []),
]


def read_wav16(path):
    with wave.open(path, "rb") as w:
        assert w.getsampwidth() == 2 and w.getnchannels() == 1 and w.getframerate() == 16000
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    return pcm.astype(np.float32) / 32768.0


def tone(seconds, parts):
    n = int(16000 * seconds)
    i = np.arange(n, dtype=np.float64)
    x = np.zeros(n, dtype=np.float64)
    for amp, hz in parts:
        x += amp * np.sin(2 * math.pi * hz * i / 16000.0)
    return x.astype(np.float32)


def log_mel_fixtures(testdata):
    cases, blob = [], []
    inputs = [("clip", c, read_wav16(os.path.join(testdata, "audio", c))) for c in CLIPS]
    inputs += [("tone", (name, sec, parts), tone(sec, parts)) for name, sec, parts in TONES]
    for n_mels in (80, 128):
        fe = WhisperFeatureExtractor(feature_size=n_mels)
        fe.save_pretrained(os.path.join(OUT, f"fe{n_mels}"))
        for kind, what, x in inputs:
            torch_feats = fe(x, sampling_rate=16000, return_tensors="np").input_features[0]
            fe_module.is_torch_available = lambda: False
            try:
                feats = fe(x, sampling_rate=16000, return_tensors="np").input_features[0]
            finally:
                fe_module.is_torch_available = lambda: True
            assert feats.dtype == np.float32
            sample = feats.reshape(-1)[::STRIDE]
            case = {"n_mels": n_mels, "n_frames": feats.shape[1], "offset": sum(len(b) for b in blob),
                    "count": len(sample), "row_sums": feats.astype(np.float64).sum(axis=1).tolist(),
                    "torch_max_diff": float(np.abs(torch_feats - feats).max())}
            if kind == "clip":
                case["clip"] = what
            else:
                case["tone"] = {"name": what[0], "seconds": what[1],
                                "parts": [list(p) for p in what[2]]}
            cases.append(case)
            blob.append(sample.astype("<f4"))
    with open(os.path.join(OUT, "log_mel.f32"), "wb") as f:
        for b in blob:
            f.write(b.tobytes())
    with open(os.path.join(OUT, "log_mel.json"), "w") as f:
        json.dump({"stride": STRIDE, "cases": cases}, f, indent=1)
    print("log_mel:", len(cases), "cases")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--testdata", default=os.path.join(ROOT, "..", "shared", "testdata"))
    args = ap.parse_args()
    os.makedirs(OUT, exist_ok=True)
    log_mel_fixtures(args.testdata)


if __name__ == "__main__":
    main()
