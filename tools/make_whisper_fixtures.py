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
- tiny/: a random WhisperForConditionalGeneration (d_model 16, 2+2 layers, vocab 120 with its own
  special ids: eot 100, sot 101, <|en|> 102, <|de|> 103, <|fr|> 104, translate 105, transcribe 106,
  notimestamps 110, timestamps from 111), weights drawn wide (std 0.4) so greedy picks are not
  near-ties; config.json, model.safetensors, generation_config.json, preprocessor_config.json.
- tiny_reference.json + tiny_encoder.f32: for jfk_16k.wav (features from the NumPy path), the
  encoder output [1500, 16], decoder logits at every position of fixed ids, and generate()'s greedy
  ids (max_new_tokens 20) for language detection, a forced language, translate, transcribe, and
  with timestamps (12 new tokens, forced and detected language).

Needs numpy, torch and transformers (5.x).
Usage: tools/make_whisper_fixtures.py [--testdata ../shared/testdata]
"""
import argparse
import json
import math
import os
import wave

import numpy as np
import torch
from transformers import GenerationConfig, WhisperConfig, WhisperForConditionalGeneration
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


def numpy_features(fe, x):
    fe_module.is_torch_available = lambda: False
    try:
        return fe(x, sampling_rate=16000, return_tensors="np").input_features
    finally:
        fe_module.is_torch_available = lambda: True


DECODER_IDS = [101, 102, 106, 110, 5, 17, 80, 98, 23, 1]
GENERATE_CASES = [
    ("detect", {}),
    ("language_de", {"language": "de"}),
    ("translate_en", {"language": "en", "task": "translate"}),
    ("transcribe_detect", {"task": "transcribe"}),
    # With timestamps, 12 new tokens: no segment closes (no <|t|><|t|> pair) in these, so
    # generate() returns its first greedy pass; a closed segment would make it seek and decode
    # again, which af::models::whisper_generate does not do yet.
    ("timestamps_en", {"language": "en", "return_timestamps": True, "max_new_tokens": 12}),
    ("timestamps_de", {"language": "de", "return_timestamps": True, "max_new_tokens": 12}),
    ("timestamps_detect", {"return_timestamps": True, "max_new_tokens": 12}),
]


def tiny_model(testdata):
    torch.manual_seed(1234)
    torch.set_num_threads(1)
    cfg = WhisperConfig(vocab_size=120, num_mel_bins=80, encoder_layers=2, encoder_attention_heads=2,
                        decoder_layers=2, decoder_attention_heads=2, d_model=16, encoder_ffn_dim=32,
                        decoder_ffn_dim=32, max_source_positions=1500, max_target_positions=64,
                        decoder_start_token_id=101, pad_token_id=100, bos_token_id=100,
                        eos_token_id=100, suppress_tokens=[], begin_suppress_tokens=[])
    model = WhisperForConditionalGeneration(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "encoder.embed_positions" in name:
                continue  # keep the sinusoids
            if "layer_norm" in name and name.endswith("weight"):
                p.normal_(1.0, 0.2)
            else:
                p.normal_(0.0, 0.4)
    model.generation_config = GenerationConfig(
        decoder_start_token_id=101, eos_token_id=100, pad_token_id=100, bos_token_id=100,
        max_length=64, suppress_tokens=[5, 7, 9], begin_suppress_tokens=[100, 11],
        no_timestamps_token_id=110, lang_to_id={"<|en|>": 102, "<|de|>": 103, "<|fr|>": 104},
        task_to_id={"translate": 105, "transcribe": 106}, is_multilingual=True,
        max_initial_timestamp_index=5)
    out_dir = os.path.join(OUT, "tiny")
    model.save_pretrained(out_dir)
    fe = WhisperFeatureExtractor(feature_size=80)
    fe.save_pretrained(out_dir)

    x = read_wav16(os.path.join(testdata, "audio", "jfk_16k.wav"))
    feats = torch.from_numpy(numpy_features(fe, x))
    ref = {"decoder_ids": DECODER_IDS, "generate": {}}
    with torch.no_grad():
        enc = model.model.encoder(feats).last_hidden_state[0]
        enc.numpy().astype("<f4").tofile(os.path.join(OUT, "tiny_encoder.f32"))
        logits = model(input_features=feats,
                       decoder_input_ids=torch.tensor([DECODER_IDS])).logits[0]
        ref["decoder_logits"] = logits.numpy().tolist()
        for name, kw in GENERATE_CASES:
            kw = dict(kw)
            kw.setdefault("max_new_tokens", 20)
            ids = model.generate(feats, **kw)
            ref["generate"][name] = {"options": kw, "ids": ids[0].tolist()}
    with open(os.path.join(OUT, "tiny_reference.json"), "w") as f:
        json.dump(ref, f)
    print("tiny:", sum(p.numel() for p in model.parameters()), "parameters")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--testdata", default=os.path.join(ROOT, "..", "shared", "testdata"))
    args = ap.parse_args()
    os.makedirs(OUT, exist_ok=True)
    log_mel_fixtures(args.testdata)
    tiny_model(args.testdata)


if __name__ == "__main__":
    main()
