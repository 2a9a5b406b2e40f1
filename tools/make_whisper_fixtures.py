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

- tiny_ts/ + tiny_longform.json: transformers' sequential long-form generate (return_timestamps,
  return_segments) of a tiny model with all 1501 timestamps (tiny_ts_model) on LONG_CLIPS (the shared clips and a silence joined, ~32 s,
  rebuilt by the test from the same int16 clips) and on jfk alone with timestamps (short-form,
  which seeks within its one padded window the same way): per case the options, the ids and the
  segments (start, end, tokens).

Needs numpy, torch and transformers (5.x).
Usage: tools/make_whisper_fixtures.py [--testdata ../shared/testdata] [--longform-only]
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


# The tiny_ts model's no-speech probabilities are ~2.6e-5..2.9e-5: this skips some windows.
NO_SPEECH_THRESHOLD = 2.75e-5

# The long input: clips and silences (seconds) joined; int16 clips, so the test rebuilds it exactly.
LONG_CLIPS = ["jfk_16k.wav", 1.5, "speech_fox_16k.wav", "speech_alice_16k.wav", "jfk_16k.wav"]
LONGFORM_CASES = [
    ("long_en", "long", {"language": "en"}),
    ("long_detect_condition", "long", {"condition_on_prev_tokens": True}),
    ("long_prompt_condition", "long",
     {"language": "en", "prompt_ids": [7, 20, 21, 22], "condition_on_prev_tokens": True}),
    ("long_no_speech", "long",
     {"language": "en", "no_speech_threshold": NO_SPEECH_THRESHOLD, "logprob_threshold": 0.0}),
    ("short_timestamps_en", "short", {"language": "en"}),
]


def long_audio(testdata):
    parts = []
    for item in LONG_CLIPS:
        if isinstance(item, str):
            parts.append(read_wav16(os.path.join(testdata, "audio", item)))
        else:
            parts.append(np.zeros(int(item * 16000), dtype=np.float32))
    return np.concatenate(parts)


def tiny_ts_model():
    """tiny_ts/: the tiny model's shapes with Whisper's 1501 timestamp tokens (vocab 1612), the
    timestamp embeddings shrunk and given a bias along the final LayerNorm's bias that falls with
    time, so greedy decoding closes many short segments (a random model otherwise repeats one
    text token) and the long-form loop seeks inside its windows."""
    torch.manual_seed(4321)
    torch.set_num_threads(1)
    vocab = 111 + 1501
    cfg = WhisperConfig(vocab_size=vocab, num_mel_bins=80, encoder_layers=2,
                        encoder_attention_heads=2, decoder_layers=2, decoder_attention_heads=2,
                        d_model=16, encoder_ffn_dim=32, decoder_ffn_dim=32,
                        max_source_positions=1500, max_target_positions=64,
                        decoder_start_token_id=101, pad_token_id=100, bos_token_id=100,
                        eos_token_id=100, suppress_tokens=[], begin_suppress_tokens=[])
    model = WhisperForConditionalGeneration(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "encoder.embed_positions" in name:
                continue
            if "layer_norm" in name and name.endswith("weight"):
                p.normal_(1.0, 0.2)
            else:
                p.normal_(0.0, 0.4)
        emb = model.model.decoder.embed_tokens.weight
        emb[111:] *= 0.3
        b = model.model.decoder.layer_norm.bias
        for j in range(1501):
            emb[111 + j] += (3.0 - 0.02 * j) * b / (b @ b)
    model.generation_config = GenerationConfig(
        decoder_start_token_id=101, eos_token_id=100, pad_token_id=100, bos_token_id=100,
        max_length=64, suppress_tokens=[5, 7, 9], begin_suppress_tokens=[100, 11],
        no_timestamps_token_id=110, lang_to_id={"<|en|>": 102, "<|de|>": 103, "<|fr|>": 104},
        task_to_id={"translate": 105, "transcribe": 106}, is_multilingual=True,
        max_initial_timestamp_index=50, alignment_heads=[[1, 0], [1, 1]])
    out_dir = os.path.join(OUT, "tiny_ts")
    model.save_pretrained(out_dir)
    WhisperFeatureExtractor(feature_size=80).save_pretrained(out_dir)
    tiny_ts_tokenizer(out_dir)
    return model


# tiny_ts's text ids 0..99: byte-level BPE symbols (single characters and a few words, no merges),
# so decoded segments read as text and a prompt of these characters encodes.
TEXT_TOKENS = (["\u0120" + w for w in ["the", "a", "speech", "window", "time", "and", "of", "to"]]
               + list("abcdefghijklmnopqrstuvwxyz") + list("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
               + list("0123456789") + ["\u0120", ".", ",", "!", "?", "'", "-", ":"])
SPECIAL_TOKENS = ["<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|de|>", "<|fr|>",
                  "<|translate|>", "<|transcribe|>", "<|startoflm|>", "<|startofprev|>",
                  "<|nospeech|>", "<|notimestamps|>"]


def tiny_ts_tokenizer(out_dir):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, AddedToken
    tokens = TEXT_TOKENS + [f"<|x{i}|>" for i in range(100 - len(TEXT_TOKENS))]
    assert len(tokens) == 100 and len(set(tokens)) == 100
    tok = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = SPECIAL_TOKENS + [f"<|{i * 0.02:.2f}|>" for i in range(1501)]
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    assert tok.token_to_id("<|notimestamps|>") == 110 and tok.token_to_id("<|30.00|>") == 1611
    tok.save(os.path.join(out_dir, "tokenizer.json"))


def longform(testdata):
    model = tiny_ts_model()
    fe = WhisperFeatureExtractor(feature_size=80)
    x = long_audio(testdata)
    fe_module.is_torch_available = lambda: False
    try:
        long_feats = fe(x, sampling_rate=16000, return_tensors="np", truncation=False,
                        padding="longest").input_features
    finally:
        fe_module.is_torch_available = lambda: True
    assert long_feats.shape[-1] == len(x) // 160 > 3000, long_feats.shape
    jfk = read_wav16(os.path.join(testdata, "audio", "jfk_16k.wav"))
    inputs = {"long": torch.from_numpy(long_feats),
              "short": torch.from_numpy(numpy_features(fe, jfk))}
    ref = {"clips": LONG_CLIPS, "samples": len(x), "cases": {}}
    with torch.no_grad():
        for name, which, kw in LONGFORM_CASES:
            args = dict(kw)
            if "prompt_ids" in args:
                args["prompt_ids"] = torch.tensor(args["prompt_ids"])
            out = model.generate(inputs[which], return_timestamps=True, return_segments=True,
                                 temperature=0.0,
                                 **args)
            segments = [{"start": float(s["start"]), "end": float(s["end"]),
                         "tokens": s["tokens"].tolist()} for s in out["segments"][0]]
            ref["cases"][name] = {"input": which, "options": kw,
                                  "ids": out["sequences"][0].tolist(), "segments": segments}
            print(name, len(segments), "segments", [round(s["start"], 2) for s in segments])
    with open(os.path.join(OUT, "tiny_longform.json"), "w") as f:
        json.dump(ref, f, indent=1)


# A ~62 s input for real Whisper tiny.en (tests/e2e/test_cli_whisper.cpp): 13 segments over
# three windows.
REAL_CLIPS = ["jfk_16k.wav", 1.0, "speech_fox_16k.wav", "speech_alice_16k.wav", "jfk_16k.wav", 0.5,
              "speech_alice_16k.wav", "jfk_16k.wav", "speech_fox_16k.wav", "jfk_16k.wav"]


def real_tiny_longform(testdata, model_dir):
    """real_tiny_longform.json: transformers' long-form ids of a converted Whisper tiny.en
    (tools/convert_ct2_whisper.py; the weights are not in the repository) on REAL_CLIPS."""
    model = WhisperForConditionalGeneration.from_pretrained(model_dir).eval()
    fe = WhisperFeatureExtractor.from_pretrained(model_dir)
    global LONG_CLIPS
    saved, LONG_CLIPS = LONG_CLIPS, REAL_CLIPS
    try:
        x = long_audio(testdata)
    finally:
        LONG_CLIPS = saved
    fe_module.is_torch_available = lambda: False
    try:
        feats = fe(x, sampling_rate=16000, return_tensors="np", truncation=False,
                   padding="longest").input_features
    finally:
        fe_module.is_torch_available = lambda: True
    with torch.no_grad():
        out = model.generate(torch.from_numpy(feats), return_timestamps=True,
                             return_segments=True, temperature=0.0)
    ids = [i for i in out["sequences"][0].tolist() if i != model.generation_config.pad_token_id]
    with open(os.path.join(OUT, "real_tiny_longform.json"), "w") as f:
        json.dump({"clips": REAL_CLIPS, "ids": ids}, f)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--testdata", default=os.path.join(ROOT, "..", "shared", "testdata"))
    ap.add_argument("--longform-only", action="store_true",
                    help="only tiny_longform.json, from the tiny model already written")
    ap.add_argument("--real-tiny", help="a converted Whisper tiny.en folder: only "
                    "real_tiny_longform.json")
    args = ap.parse_args()
    os.makedirs(OUT, exist_ok=True)
    if args.real_tiny:
        real_tiny_longform(args.testdata, args.real_tiny)
        return
    if not args.longform_only:
        log_mel_fixtures(args.testdata)
        tiny_model(args.testdata)
    longform(args.testdata)


if __name__ == "__main__":
    main()
