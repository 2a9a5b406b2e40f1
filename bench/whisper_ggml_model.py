#!/usr/bin/env python3
"""Makes the ggml file whisper.cpp loads from an AlloyForge/HF Whisper folder, through whisper.cpp's
own models/convert-h5-to-ggml.py (run, not copied) with its use-f32 option: the same float32
weights af-cli uses (the CTranslate2 originals are float16, so its float16 round trip is exact).
That script wants vocab.json + added_tokens.json (written here from tokenizer.json) and the
OpenAI repo's whisper/assets/mel_filters.npz (computed here with transformers' Slaney
mel_filter_bank, which is what WhisperFeatureExtractor uses). Nothing is downloaded.
Needs torch + transformers (e.g. /work/pyref/bin/python):
  bench/whisper_ggml_model.py HF_DIR WHISPER_CPP_DIR OUT_DIR   # -> OUT_DIR/ggml-model-f32.bin
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
from transformers.audio_utils import mel_filter_bank


def main():
    hf_dir, wcpp, out_dir = (os.path.abspath(p) for p in sys.argv[1:4])
    os.makedirs(out_dir, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        model = os.path.join(tmp, "model")
        os.makedirs(model)
        for name in ("config.json", "generation_config.json", "model.safetensors"):
            os.symlink(os.path.join(hf_dir, name), os.path.join(model, name))
        tok = json.load(open(os.path.join(hf_dir, "tokenizer.json")))
        json.dump(tok["model"]["vocab"], open(os.path.join(model, "vocab.json"), "w"))
        json.dump({a["content"]: a["id"] for a in tok["added_tokens"]},
                  open(os.path.join(model, "added_tokens.json"), "w"))
        assets = os.path.join(tmp, "whisper", "whisper", "assets")
        os.makedirs(assets)
        filters = {f"mel_{n}": mel_filter_bank(num_frequency_bins=201, num_mel_filters=n,
                                               min_frequency=0.0, max_frequency=8000.0,
                                               sampling_rate=16000, norm="slaney",
                                               mel_scale="slaney").T.astype(np.float32)
                   for n in (80, 128)}
        np.savez(os.path.join(assets, "mel_filters.npz"), **filters)
        subprocess.run([sys.executable, os.path.join(wcpp, "models", "convert-h5-to-ggml.py"),
                        model, os.path.join(tmp, "whisper"), out_dir, "use-f32"], check=True,
                       stdout=subprocess.DEVNULL)
    print(os.path.join(out_dir, "ggml-model-f32.bin"))


if __name__ == "__main__":
    main()
