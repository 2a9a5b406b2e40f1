#!/usr/bin/env python3
"""Writes a tiny random Qwen2-Audio, made with transformers itself, into
tests/fixtures/models/qwen2_audio/ (HF folder, float32 safetensors of 357 KB; 1.2 MB with the
reference outputs).

Model: Qwen2AudioForConditionalGeneration with a Qwen2AudioEncoder audio tower (d_model 16, 2
layers, 4 heads, 128 mels, 1500 source positions: the real model's 30 s window), its
multi_modal_projector (linear 16 -> 32) and a Qwen2 text model (hidden 32, 2 layers, 4 heads,
2 KV heads). Tokenizer: Qwen2.5's byte-level BPE (../shared/testdata/tokenizer/hf/qwen2.5: its
pre-tokenizer regex, the 256 byte tokens and its first 250 merges, so ids 0..505 are Qwen2's own)
with <|endoftext|> 506, <|im_start|> 507, <|im_end|> 508, <|audio_bos|> 509, <|AUDIO|> 510 and
<|audio_eos|> 511 as special tokens; Qwen2AudioProcessor's default chat template; a
WhisperFeatureExtractor with Qwen2-Audio's settings (128 mels, 30 s).

reference.json, per clip (speech_fox and speech_alice as "testdata:<file>" for
../shared/testdata/audio/<file>, and "jfk_x3":
jfk_16k.wav three times, 33 s, to show the 30 s truncation):
  "n_samples", "feature_length" (the processor's feature_attention_mask sum),
  "num_audio_tokens" (the <|AUDIO|> tokens one placeholder becomes), "features_offset" (floats
  into audio_features.f32) and "features_shape" [num_audio_tokens, 32]: the projector's rows the
  placeholders get (the model's own forward, masked to the audio's length),
  "input_ids" of the chat prompt (one user turn: the audio then the question; processor
  expanded), "logits_file" (float32 [len(input_ids), vocab], one forward; jfk_x3: the last
  position only, keeping the folder near 1 MB) and "generate_ids"
  (greedy model.generate, 8 new tokens, prompt excluded).
The input features are computed by WhisperFeatureExtractor's float64 NumPy path (what
af::modalities::LogMelExtractor reproduces to 1e-5); the float32 torch path the processor takes
when torch is installed differs by up to ~6e-5 (see tools/make_whisper_fixtures.py).

Needs torch, transformers 5.x, numpy.
Usage: /work/pyref/bin/python tools/make_qwen2_audio_fixtures.py [--testdata ../shared/testdata]
"""
import argparse
import json
import os
import shutil
import wave

import numpy as np
import torch
from transformers import (AutoProcessor, AutoTokenizer, Qwen2AudioConfig,
                          Qwen2AudioForConditionalGeneration, Qwen2AudioProcessor, Qwen2Config,
                          WhisperFeatureExtractor)
from transformers.models.qwen2_audio.configuration_qwen2_audio import Qwen2AudioEncoderConfig
import transformers.models.whisper.feature_extraction_whisper as fe_module

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "models", "qwen2_audio")
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|audio_bos|>", "<|AUDIO|>",
            "<|audio_eos|>"]
N_MERGES = 250
AUDIO_ID = 256 + N_MERGES + 4
QUESTION = "What is said?"


def read_wav16(path):
    with wave.open(path, "rb") as w:
        assert w.getsampwidth() == 2 and w.getnchannels() == 1 and w.getframerate() == 16000
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    return pcm.astype(np.float32) / 32768.0


def make_tokenizer(testdata):
    """Qwen2.5's vocab.json + merges.txt cut to the byte tokens and the first N_MERGES merges
    (merge i makes id 256 + i in Qwen2's vocabulary), loaded as transformers' Qwen2 tokenizer."""
    import tempfile
    src = os.path.join(testdata, "tokenizer", "hf", "qwen2.5")
    with open(os.path.join(src, "vocab.json"), encoding="utf-8") as f:
        vocab = json.load(f)
    with open(os.path.join(src, "merges.txt"), encoding="utf-8") as f:
        merges = [l.rstrip("\n") for l in f if not l.startswith("#version")][:N_MERGES]
    for i, m in enumerate(merges):
        assert vocab["".join(m.split(" "))] == 256 + i, m
    keep = {t: i for t, i in vocab.items() if i < 256 + N_MERGES}
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "vocab.json"), "w", encoding="utf-8") as f:
            json.dump(keep, f, ensure_ascii=False)
        with open(os.path.join(tmp, "merges.txt"), "w", encoding="utf-8") as f:
            f.write("#version: 0.2\n" + "\n".join(merges) + "\n")
        added = {str(256 + N_MERGES + k): {"content": t, "lstrip": False, "normalized": False,
                                           "rstrip": False, "single_word": False,
                                           "special": True}
                 for k, t in enumerate(SPECIALS)}
        with open(os.path.join(tmp, "tokenizer_config.json"), "w") as f:
            json.dump({"tokenizer_class": "Qwen2Tokenizer", "add_bos_token": False,
                       "add_prefix_space": False, "added_tokens_decoder": added,
                       "bos_token": None, "eos_token": "<|im_end|>",
                       "pad_token": "<|endoftext|>", "unk_token": None,
                       "errors": "replace", "model_max_length": 32768}, f)
        tok = AutoTokenizer.from_pretrained(tmp)
    ids = tok.convert_tokens_to_ids(SPECIALS)
    assert ids == list(range(256 + N_MERGES, 256 + N_MERGES + len(SPECIALS))), ids
    return tok


def make_config():
    audio = Qwen2AudioEncoderConfig(d_model=16, encoder_layers=2, encoder_attention_heads=4,
                                    encoder_ffn_dim=32, num_mel_bins=128,
                                    max_source_positions=1500)
    text = Qwen2Config(vocab_size=256 + N_MERGES + len(SPECIALS), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                       rms_norm_eps=1e-6, tie_word_embeddings=False, eos_token_id=AUDIO_ID - 2)
    return Qwen2AudioConfig(audio_config=audio, text_config=text, audio_token_index=AUDIO_ID)


def randomise(model, seed):
    # Visible random values everywhere (transformers' init leaves norms at 1/0), so a wrong
    # weight or a skipped op shows in the features and logits.
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            scale = 0.02 if "embed_tokens" in name else (0.3 if p.dim() > 1 else 0.1)
            noise = torch.randn(p.shape, generator=g) * scale
            p.copy_(1.0 + noise if "norm" in name and name.endswith("weight") else noise)


def numpy_features(processor, audio):
    fe_module.is_torch_available = lambda: False
    try:
        return torch.from_numpy(processor.feature_extractor(
            audio, sampling_rate=16000, return_attention_mask=True, padding="max_length",
            return_tensors="np")["input_features"])
    finally:
        fe_module.is_torch_available = lambda: True


def clip_case(model, processor, name, audio, folder, all_logits):
    conversation = [{"role": "user", "content": [{"type": "audio", "audio": "clip"},
                                                 {"type": "text", "text": QUESTION}]}]
    text = processor.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)
    inputs = processor(text=text, audio=[audio], sampling_rate=16000, return_tensors="pt")
    inputs["input_features"] = numpy_features(processor, audio)
    ids = inputs["input_ids"][0].tolist()
    n_tokens = ids.count(AUDIO_ID)
    with torch.no_grad():
        out = model(**inputs, output_hidden_states=True)
        logits = out.logits[0].numpy().astype(np.float32)
        gen = model.generate(**inputs, max_new_tokens=8, do_sample=False)
        embeds = model.get_input_embeddings()(inputs["input_ids"])
        # The rows that replaced the placeholders: the text model's input at those positions.
        feats = out.hidden_states[0][0][inputs["input_ids"][0] == AUDIO_ID].numpy()
    assert feats.shape == (n_tokens, 32), feats.shape
    assert not np.allclose(feats, embeds[0][inputs["input_ids"][0] == AUDIO_ID].numpy())
    if not all_logits:
        logits = logits[-1:]  # the last position only: keeps the folder near 1 MB
    logits.tofile(os.path.join(folder, f"logits_{name}.f32"))
    return {"name": name, "n_samples": len(audio),
            "feature_length": int(inputs["feature_attention_mask"].sum()),
            "num_audio_tokens": n_tokens, "text": text, "input_ids": ids,
            "logits_file": f"logits_{name}.f32", "logits_shape": list(logits.shape),
            "generate_ids": gen[0, len(ids):].tolist()}, feats


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--testdata", default=os.path.join(ROOT, "..", "shared", "testdata"))
    args = ap.parse_args()
    testdata = os.path.abspath(args.testdata)
    torch.set_num_threads(1)
    torch.manual_seed(4321)
    model = Qwen2AudioForConditionalGeneration(make_config()).eval()
    randomise(model, 4321)
    shutil.rmtree(OUT, ignore_errors=True)
    os.makedirs(OUT)
    model.save_pretrained(OUT, safe_serialization=True)
    fe = WhisperFeatureExtractor(feature_size=128, sampling_rate=16000, hop_length=160,
                                 chunk_length=30, n_fft=400, padding_value=0.0,
                                 return_attention_mask=True)
    Qwen2AudioProcessor(feature_extractor=fe, tokenizer=make_tokenizer(testdata)).save_pretrained(OUT)
    model = Qwen2AudioForConditionalGeneration.from_pretrained(OUT, dtype=torch.float32).eval()
    processor = AutoProcessor.from_pretrained(OUT)
    jfk = read_wav16(os.path.join(testdata, "audio", "jfk_16k.wav"))
    clips = [("testdata:speech_fox_16k.wav", "fox",
              read_wav16(os.path.join(testdata, "audio", "speech_fox_16k.wav")), True),
             ("testdata:speech_alice_16k.wav", "alice",
              read_wav16(os.path.join(testdata, "audio", "speech_alice_16k.wav")), True),
             ("jfk_x3", "jfk_x3", np.concatenate([jfk, jfk, jfk]), False)]
    entries, rows, offset = [], [], 0
    for source, name, audio, all_logits in clips:
        entry, feats = clip_case(model, processor, name, audio, OUT, all_logits)
        entry.update(source=source, features_offset=offset, features_shape=list(feats.shape))
        entries.append(entry)
        rows.append(feats.reshape(-1))
        offset += feats.size
    np.concatenate(rows).astype("<f4").tofile(os.path.join(OUT, "audio_features.f32"))
    with open(os.path.join(OUT, "reference.json"), "w") as f:
        json.dump({"audio_token_id": AUDIO_ID, "vocab_size": 256 + N_MERGES + len(SPECIALS),
                   "text_hidden_size": 32,
                   "clips": entries}, f, indent=1)
    total = sum(os.path.getsize(os.path.join(OUT, f)) for f in os.listdir(OUT))
    print(f"qwen2_audio: {total} bytes, tokens {[e['num_audio_tokens'] for e in entries]}")


if __name__ == "__main__":
    main()
