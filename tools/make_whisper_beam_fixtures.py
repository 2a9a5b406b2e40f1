#!/usr/bin/env python3
"""Beam-search references for the tiny random Whisper (tests/fixtures/whisper/tiny, written by
tools/make_whisper_fixtures.py): transformers' generate(num_beams=N) ids on jfk_16k.wav's
features, with and without timestamps, into tests/fixtures/whisper/tiny_beam.json
(tests/unit/test_whisper_generate.cpp compares af::models::whisper_generate with them).

Needs numpy, torch and transformers (5.x).
Usage: tools/make_whisper_beam_fixtures.py [--testdata ../shared/testdata]
"""
import argparse
import json
import os
import sys

import torch
import transformers
from transformers import WhisperFeatureExtractor, WhisperForConditionalGeneration

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_whisper_fixtures import OUT, ROOT, numpy_features, read_wav16  # noqa: E402

CASES = [
    ("beam2_en", {"language": "en", "num_beams": 2}),
    ("beam3_detect", {"num_beams": 3}),
    ("beam5_de", {"language": "de", "num_beams": 5}),
    ("beam4_translate", {"language": "en", "task": "translate", "num_beams": 4}),
    ("beam3_timestamps_en", {"language": "en", "num_beams": 3, "return_timestamps": True,
                             "max_new_tokens": 12}),
    ("beam5_timestamps_fr", {"language": "fr", "num_beams": 5, "return_timestamps": True,
                             "max_new_tokens": 12}),
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--testdata", default=os.path.join(ROOT, "..", "shared", "testdata"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    model_dir = os.path.join(OUT, "tiny")
    model = WhisperForConditionalGeneration.from_pretrained(model_dir).eval()
    fe = WhisperFeatureExtractor.from_pretrained(model_dir)
    x = read_wav16(os.path.join(args.testdata, "audio", "jfk_16k.wav"))
    feats = torch.from_numpy(numpy_features(fe, x))
    ref = {"generator": f"tools/make_whisper_beam_fixtures.py, transformers {transformers.__version__}",
           "generate": {}}
    with torch.no_grad():
        for name, kw in CASES:
            kw = dict(kw)
            kw.setdefault("max_new_tokens", 20)
            ids = model.generate(feats, **kw)
            ref["generate"][name] = {"options": kw, "ids": ids[0].tolist()}
            greedy = model.generate(feats, **{k: v for k, v in kw.items() if k != "num_beams"})
            ref["generate"][name]["greedy_ids"] = greedy[0].tolist()
            print(name, ids[0].tolist(), "greedy", greedy[0].tolist(), file=sys.stderr)
    with open(os.path.join(OUT, "tiny_beam.json"), "w") as f:
        json.dump(ref, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
