#!/usr/bin/env python3
"""Records faster-whisper's word timestamps (transcribe(word_timestamps=True)) of the shared clips
with the real Whisper models into tests/fixtures/whisper/faster_whisper_words.json, which the e2e
tests compare WhisperTranscribeOptions::word_timestamps against (CI has no faster-whisper).

Options as tools/record_faster_whisper.py: greedy (beam_size=1, temperature 0, no fallback), the
model's suppress_tokens, no VAD, condition_on_previous_text=True, and word_timestamps=True with the
default prepend/append punctuation; per model and clip once with timestamps and once without
(the next window then starts at the last word's end), and "long" the clips joined twice (about
38 s, several windows) with timestamps. Per run: the ids, each segment's start, end, text and its
words (word, start, end, probability) unrounded, as faster-whisper returns them. "split" holds
faster-whisper's Tokenizer.split_to_word_tokens of a few texts (punctuation, accents, emoji,
Japanese; base's tokenizer, text ids + eot) for "en" (spaces) and "ja" (whole characters):
--split-only rewrites just that part.
Needs faster-whisper (1.2.1 was used) and the CTranslate2 models scripts/fetch_models.sh caches:
  tools/record_faster_whisper_words.py [--models AF_MODELS] [--testdata DIR] [--out FILE]
"""
import argparse
import json
import os
import sys

import numpy as np

import ctranslate2
import faster_whisper
from faster_whisper import WhisperModel
from faster_whisper.audio import decode_audio

CLIPS = ["jfk_16k.wav", "speech_alice_16k.wav", "speech_fox_16k.wav"]
LONG_CLIPS = CLIPS * 2  # about 38 s
MODELS = {"tiny": "whisper-tiny-ct2", "base": "whisper-base-ct2"}
SPLIT_TEXTS = [" Hello, world! It's a \"test\" (really)... isn't it?",
               " \u00c7a va? Na\u00efve caf\u00e9 \u2014 d\u00e9j\u00e0 vu!",
               " \U0001f642 emoji \U0001f389 test -- done.",
               "\u3053\u3093\u306b\u3061\u306f\u3001\u4e16\u754c\u3002\u4eca\u65e5\u306f"
               "\u3044\u3044\u5929\u6c17\u3067\u3059\u306d\u3002"]


def record_split(models_dir):
    """split_to_word_tokens of SPLIT_TEXTS with base's tokenizer, for en and ja."""
    from faster_whisper.tokenizer import Tokenizer
    import tokenizers
    hf = tokenizers.Tokenizer.from_file(os.path.join(models_dir, MODELS["base"], "tokenizer.json"))
    out = []
    for text in SPLIT_TEXTS:
        ids = hf.encode(text, add_special_tokens=False).ids
        entry = {"ids": ids}
        for lang in ("en", "ja"):
            tok = Tokenizer(hf, multilingual=True, task="transcribe", language=lang)
            words, word_tokens = tok.split_to_word_tokens(ids + [tok.eot])
            entry[lang] = {"words": words, "tokens": word_tokens}
        out.append(entry)
    return out


def transcribe(model, audio, without_timestamps):
    segments, info = model.transcribe(
        audio, beam_size=1, best_of=1, temperature=0.0, without_timestamps=without_timestamps,
        vad_filter=False, condition_on_previous_text=True, suppress_blank=True,
        suppress_tokens=[-1], word_timestamps=True)
    segments = list(segments)
    return {
        "ids": [t for s in segments for t in s.tokens],
        "language": info.language,
        "segments": [{"start": float(s.start), "end": float(s.end), "text": s.text,
                      "words": [{"word": w.word, "start": float(w.start), "end": float(w.end),
                                 "probability": float(w.probability)} for w in s.words]}
                     for s in segments],
    }


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default=os.environ.get(
        "AF_MODELS", os.path.expanduser("~/.cache/alloyforge/models")))
    ap.add_argument("--testdata", default=os.path.join(here, "../../shared/testdata"))
    ap.add_argument("--out", default=os.path.join(
        here, "../tests/fixtures/whisper/faster_whisper_words.json"))
    ap.add_argument("--split-only", action="store_true")
    args = ap.parse_args()
    if args.split_only:
        out = json.load(open(args.out))
        out["split"] = record_split(args.models)
        with open(args.out, "w") as f:
            json.dump(out, f, indent=1)
            f.write("\n")
        return
    out = {"generator": f"tools/record_faster_whisper_words.py: faster-whisper "
                        f"{faster_whisper.__version__}, ctranslate2 {ctranslate2.__version__}, "
                        f"compute_type float32, beam 1, word_timestamps=True",
           "models": {}, "long": {"clips": LONG_CLIPS}}
    for name, folder in MODELS.items():
        model = WhisperModel(os.path.join(args.models, folder), device="cpu",
                             compute_type="float32", cpu_threads=2)
        runs = out["models"][name] = {}
        for clip in CLIPS:
            path = os.path.join(args.testdata, "audio", clip)
            runs[clip] = {"timestamps": transcribe(model, path, False),
                          "no_timestamps": transcribe(model, path, True)}
            print(f"{name} {clip}: {len(runs[clip]['timestamps']['segments'])} segments",
                  file=sys.stderr)
        audio = np.concatenate([decode_audio(os.path.join(args.testdata, "audio", c))
                                for c in LONG_CLIPS])
        out["long"][name] = {"timestamps": transcribe(model, audio, False)}
    out["split"] = record_split(args.models)
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
