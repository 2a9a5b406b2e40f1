#!/usr/bin/env python3
"""Cross-checks af-cli transcribe against CTranslate2 (faster-whisper's engine) on the same file.

For each clip: CTranslate2 greedy (beam 1, the model's suppress ids, suppress_blank) on the
log-mel features af-cli log-mel prints, and on faster-whisper's own features; af-cli transcribe's
ids are printed beside them. Equal ids on the same features show the model and decoding agree;
faster-whisper's feature extractor differs from transformers' WhisperFeatureExtractor (its own
padding), so its words can differ on near-ties.
Needs a venv with faster-whisper (ctranslate2). Usage:
  tools/check_whisper_ct2.py CT2_DIR HF_DIR AF_CLI CLIP.wav...
"""
import json
import subprocess
import sys

import ctranslate2
import numpy as np
from faster_whisper.audio import decode_audio
from faster_whisper.feature_extractor import FeatureExtractor


def main():
    ct2_dir, hf_dir, cli, clips = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
    model = ctranslate2.models.Whisper(ct2_dir, device="cpu", compute_type="float32",
                                       intra_threads=2)
    cfg = json.load(open(ct2_dir + "/config.json"))
    gen = json.load(open(hf_dir + "/generation_config.json"))
    prompt = [gen["decoder_start_token_id"], gen["no_timestamps_token_id"]]

    def ct2_ids(feats):
        sv = ctranslate2.StorageView.from_array(np.ascontiguousarray(feats[None], np.float32))
        r = model.generate(sv, [prompt], beam_size=1, suppress_tokens=cfg["suppress_ids"],
                           suppress_blank=True, max_length=448)
        return r[0].sequences_ids[0]

    for clip in clips:
        out = subprocess.run([cli, "log-mel", "-m", hf_dir, "--audio", clip], check=True,
                             capture_output=True, text=True).stdout
        ours = np.array([[float(v) for v in line.split()] for line in out.splitlines()], np.float32)
        fw = FeatureExtractor(feature_size=ours.shape[0])(decode_audio(clip))[:, :3000]
        fw = np.pad(fw, ((0, 0), (0, 3000 - fw.shape[1])))
        ids = subprocess.run([cli, "transcribe", "-m", hf_dir, "--audio", clip, "--output-format",
                              "ids"], check=True, capture_output=True, text=True).stdout.split()
        ids = [int(i) for i in ids if int(i) != gen["eos_token_id"]]
        same = ct2_ids(ours)
        print(f"{clip}: af-cli == ct2 on the same features: {ids == same}; "
              f"faster-whisper features max |diff| {np.abs(fw - ours).max():.3g}, "
              f"ct2 ids on them equal: {ct2_ids(fw) == same}")


if __name__ == "__main__":
    main()
