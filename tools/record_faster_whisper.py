#!/usr/bin/env python3
"""Records faster-whisper's (CTranslate2's) transcripts of the shared clips with the real Whisper
models into tests/fixtures/whisper/faster_whisper.json, which the e2e tests compare af-cli
transcribe against (CI has no faster-whisper).

Options are greedy: beam_size=1, temperature 0 (no fallback), the model's suppress_tokens and
suppress_blank (= begin_suppress_tokens), no VAD, faster-whisper's default previous-text prompt,
once with without_timestamps=True and once with timestamps; "long" holds the same for the clips
joined twice (about 38 s, so several windows), and "beam5" the clips with beam_size=5. Per model/clip/mode it stores the
generated ids (the segments' tokens joined, which is CTranslate2's raw output for one 30 s window,
eos excluded), each segment's text and times, and the detected language with its probability.

faster-whisper pads its log-mel with zeros past the audio's end where transformers'
WhisperFeatureExtractor (and af-cli) take the log-mel of zero samples, so near-ties can fall
differently. "same_features" therefore also records CTranslate2's generate (same model, same
options and prompt) on the transformers features that `af-cli log-mel` prints (equal to
WhisperFeatureExtractor within 1e-5, tests/e2e/test_cli_whisper.cpp): the exact reference.
Needs faster-whisper (1.2.1 was used) and the CTranslate2 models scripts/fetch_models.sh caches:
  tools/record_faster_whisper.py --af-cli build/apps/cli/af-cli [--models AF_MODELS]
      [--testdata DIR] [--out FILE]
"""
import argparse
import json
import os
import subprocess
import sys

import numpy as np

import ctranslate2
import faster_whisper
from faster_whisper import WhisperModel
from faster_whisper.audio import decode_audio

CLIPS = ["jfk_16k.wav", "speech_alice_16k.wav", "speech_fox_16k.wav"]
LONG_CLIPS = CLIPS * 2  # about 38 s
MODELS = {"tiny": "whisper-tiny-ct2", "base": "whisper-base-ct2"}


def transcribe(model, path, without_timestamps, beam_size=1):
    """faster-whisper's defaults (condition_on_previous_text=True) but no fallback and no VAD."""
    segments, info = model.transcribe(
        path, beam_size=beam_size, best_of=1, temperature=0.0,
        without_timestamps=without_timestamps, vad_filter=False,
        condition_on_previous_text=True, suppress_blank=True, suppress_tokens=[-1],
        word_timestamps=False)
    segments = list(segments)
    ids = [t for s in segments for t in s.tokens]
    return {
        "ids": ids,
        "text": "".join(s.text for s in segments).strip(),
        "segments": [{"start": round(s.start, 2), "end": round(s.end, 2), "text": s.text.strip()}
                     for s in segments],
        "language": info.language,
        "language_probability": round(info.language_probability, 4),
    }


def same_features(model, cli, hf_dir, path, prompt):
    """CTranslate2 greedy on the transformers features af-cli log-mel prints."""
    out = subprocess.run([cli, "log-mel", "-m", hf_dir, "--audio", path], check=True,
                         capture_output=True, text=True).stdout
    feats = np.array([[float(v) for v in line.split()] for line in out.splitlines()], np.float32)
    sv = ctranslate2.StorageView.from_array(np.ascontiguousarray(feats[None]))
    r = model.model.generate(sv, [prompt], beam_size=1, suppress_blank=True,
                             suppress_tokens=model.model_suppress_ids, max_length=448,
                             max_initial_timestamp_index=50)
    return r[0].sequences_ids[0]


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default=os.environ.get(
        "AF_MODELS", os.path.expanduser("~/.cache/alloyforge/models")))
    ap.add_argument("--testdata", default=os.path.join(here, "../../shared/testdata"))
    ap.add_argument("--af-cli", required=True, help="af-cli, for the transformers log-mel")
    ap.add_argument("--out", default=os.path.join(here, "../tests/fixtures/whisper/faster_whisper.json"))
    args = ap.parse_args()
    out = {"generator": f"tools/record_faster_whisper.py: faster-whisper {faster_whisper.__version__}, "
                        f"ctranslate2 {ctranslate2.__version__}, compute_type float32, beam 1",
           "models": {}, "long": {}, "beam5": {}}
    for name, folder in MODELS.items():
        model = WhisperModel(os.path.join(args.models, folder), device="cpu",
                             compute_type="float32", cpu_threads=2)
        model.model_suppress_ids = json.load(
            open(os.path.join(args.models, folder, "config.json")))["suppress_ids"]
        hf_dir = os.path.join(args.models, folder[:-len("-ct2")])
        runs = out["models"][name] = {}
        for clip in CLIPS:
            path = os.path.join(args.testdata, "audio", clip)
            runs[clip] = {"no_timestamps": transcribe(model, path, True),
                          "timestamps": transcribe(model, path, False)}
            for mode, run in runs[clip].items():
                # The prompt faster-whisper used: <|startoftranscript|> [<|lang|> <|transcribe|>]
                # [<|notimestamps|>] (its tokenizer's sot_sequence).
                tok = model.hf_tokenizer
                prompt = [tok.token_to_id("<|startoftranscript|>")]
                if model.model.is_multilingual:
                    prompt += [tok.token_to_id(f"<|{run['language']}|>"),
                               tok.token_to_id("<|transcribe|>")]
                if mode == "no_timestamps":
                    prompt.append(tok.token_to_id("<|notimestamps|>"))
                run["same_features"] = {"prompt": prompt,
                                        "ids": same_features(model, args.af_cli, hf_dir, path,
                                                             prompt)}
            print(f"{name} {clip}: {runs[clip]['no_timestamps']['text']!r}", file=sys.stderr)
        # Beam search: faster-whisper's beam_size=5 (patience 1, length_penalty 1).
        out["beam5"][name] = {
            clip: {"no_timestamps": transcribe(model, os.path.join(args.testdata, "audio", clip),
                                               True, beam_size=5),
                   "timestamps": transcribe(model, os.path.join(args.testdata, "audio", clip),
                                            False, beam_size=5)}
            for clip in CLIPS}
        # Over 30 s: faster-whisper's window loop (seek to the last closed timestamp, previous
        # text as the prompt), which `af-cli transcribe --features faster-whisper` follows.
        audio = np.concatenate([decode_audio(os.path.join(args.testdata, "audio", c))
                                for c in LONG_CLIPS])
        out["long"]["clips"] = LONG_CLIPS
        out["long"][name] = {"no_timestamps": transcribe(model, audio, True),
                             "timestamps": transcribe(model, audio, False)}
        print(f"{name} long: {out['long'][name]['timestamps']['text']!r}", file=sys.stderr)
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
