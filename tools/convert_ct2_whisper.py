#!/usr/bin/env python3
"""Converts a CTranslate2 Whisper model (model.bin + config.json + tokenizer.json, as
faster-whisper uses) into a Hugging Face WhisperForConditionalGeneration folder AlloyForge loads.

model.bin layout (CTranslate2 binary version 6, read here field by field): uint32 version,
uint16-length name "WhisperSpec\\0", uint32 spec revision, uint32 variable count; per variable a
uint16-length NUL-terminated name, uint8 rank, uint32 dims[rank], uint8 dtype (0 f32, 1 i8, 2 i16,
3 i32, 4 f16, 5 bf16), uint32 byte count, the bytes; then uint32 alias count and (alias, target)
name pairs. Fused projections are split back (self-attention linear_0 = q|k|v, cross-attention
linear_1 = k|v); int8 weights are refused (float models only).

The HF config/generation config are derived from the tensor shapes and CTranslate2's config.json
(lang_ids, suppress_ids, suppress_ids_begin, alignment_heads: the cross-attention heads word
timestamps read, stored as transformers' generation_config "alignment_heads") plus the
tokenizer's special tokens.
Usage: tools/convert_ct2_whisper.py CT2_DIR OUT_DIR
"""
import json
import os
import shutil
import struct
import sys

import numpy as np
from safetensors.numpy import save_file

DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}


def read_ct2(path):
    with open(path, "rb") as f:
        data = f.read()
    pos = 0

    def take(fmt):
        nonlocal pos
        v = struct.unpack_from(fmt, data, pos)
        pos += struct.calcsize(fmt)
        return v

    def string():
        nonlocal pos
        (n,) = take("<H")
        s = data[pos:pos + n].rstrip(b"\0").decode()
        pos += n
        return s

    (version,) = take("<I")
    assert version >= 5, f"CTranslate2 binary version {version} not supported"
    spec = string()
    assert spec == "WhisperSpec", spec
    take("<I")  # revision
    (count,) = take("<I")
    tensors = {}
    for _ in range(count):
        name = string()
        (rank,) = take("<B")
        dims = take(f"<{rank}I") if rank else ()
        (dtype,) = take("<B")
        (nbytes,) = take("<I")
        if dtype == 5:
            raw = np.frombuffer(data, np.uint16, nbytes // 2, pos).astype(np.uint32) << 16
            arr = raw.view(np.float32)
        else:
            arr = np.frombuffer(data, DTYPES[dtype], nbytes // np.dtype(DTYPES[dtype]).itemsize, pos)
        pos += nbytes
        tensors[name] = arr.reshape(dims) if rank else arr
    (n_alias,) = take("<I")
    for _ in range(n_alias):
        alias, target = string(), string()
        tensors[alias] = tensors[target]
    return tensors


def f32(a):
    assert a.dtype != np.int8, "int8-quantized CTranslate2 weights are not supported"
    return np.ascontiguousarray(a.astype(np.float32))


def convert(ct2_dir, out_dir):
    t = read_ct2(os.path.join(ct2_dir, "model.bin"))
    ct2_cfg = json.load(open(os.path.join(ct2_dir, "config.json")))
    d = t["encoder/conv1/weight"].shape[0]
    n_mels = t["encoder/conv1/weight"].shape[1]
    enc_layers = sum(1 for k in t if k.startswith("encoder/layer_") and k.endswith("self_attention/linear_1/weight"))
    dec_layers = sum(1 for k in t if k.startswith("decoder/layer_") and k.endswith("self_attention/linear_1/weight"))
    heads = int(np.asarray(t.get("encoder/num_heads", [d // 64])).reshape(-1)[0])
    vocab = t["decoder/embeddings/weight"].shape[0]
    hf = {}
    hf["model.encoder.conv1.weight"] = f32(t["encoder/conv1/weight"])
    hf["model.encoder.conv1.bias"] = f32(t["encoder/conv1/bias"])
    hf["model.encoder.conv2.weight"] = f32(t["encoder/conv2/weight"])
    hf["model.encoder.conv2.bias"] = f32(t["encoder/conv2/bias"])
    hf["model.encoder.embed_positions.weight"] = f32(t["encoder/position_encodings/encodings"])
    hf["model.decoder.embed_tokens.weight"] = f32(t["decoder/embeddings/weight"])
    hf["model.decoder.embed_positions.weight"] = f32(t["decoder/position_encodings/encodings"])

    def norm(dst, src):
        hf[dst + ".weight"] = f32(t[src + "/gamma"])
        hf[dst + ".bias"] = f32(t[src + "/beta"])

    def linear(dst, src, bias=True):
        hf[dst + ".weight"] = f32(t[src + "/weight"])
        if bias:
            hf[dst + ".bias"] = f32(t[src + "/bias"])

    def split(dst_names, src, has_bias):
        w = f32(t[src + "/weight"])
        b = f32(t[src + "/bias"]) if src + "/bias" in t else None
        for i, name in enumerate(dst_names):
            hf[name + ".weight"] = np.ascontiguousarray(w[i * d:(i + 1) * d])
            if has_bias[i]:
                hf[name + ".bias"] = np.ascontiguousarray(b[i * d:(i + 1) * d])

    for side, n_layers in (("encoder", enc_layers), ("decoder", dec_layers)):
        for i in range(n_layers):
            src, dst = f"{side}/layer_{i}", f"model.{side}.layers.{i}"
            norm(dst + ".self_attn_layer_norm", src + "/self_attention/layer_norm")
            split([dst + ".self_attn.q_proj", dst + ".self_attn.k_proj", dst + ".self_attn.v_proj"],
                  src + "/self_attention/linear_0", [True, False, True])
            linear(dst + ".self_attn.out_proj", src + "/self_attention/linear_1")
            if side == "decoder":
                norm(dst + ".encoder_attn_layer_norm", src + "/attention/layer_norm")
                linear(dst + ".encoder_attn.q_proj", src + "/attention/linear_0")
                split([dst + ".encoder_attn.k_proj", dst + ".encoder_attn.v_proj"],
                      src + "/attention/linear_1", [False, True])
                linear(dst + ".encoder_attn.out_proj", src + "/attention/linear_2")
            norm(dst + ".final_layer_norm", src + "/ffn/layer_norm")
            linear(dst + ".fc1", src + "/ffn/linear_0")
            linear(dst + ".fc2", src + "/ffn/linear_1")
        norm(f"model.{side}.layer_norm", f"{side}/layer_norm")

    tok = json.load(open(os.path.join(ct2_dir, "tokenizer.json")))
    special = {a["content"]: a["id"] for a in tok["added_tokens"]}
    eot, sot = special["<|endoftext|>"], special["<|startoftranscript|>"]
    no_ts = special["<|notimestamps|>"]
    langs = {c: i for c, i in special.items() if i in set(ct2_cfg.get("lang_ids", []))}
    multilingual = vocab >= 51865
    ffn = hf["model.encoder.layers.0.fc1.weight"].shape[0]
    config = {
        "architectures": ["WhisperForConditionalGeneration"], "model_type": "whisper",
        "vocab_size": vocab, "num_mel_bins": n_mels, "d_model": d,
        "encoder_layers": enc_layers, "decoder_layers": dec_layers,
        "encoder_attention_heads": heads, "decoder_attention_heads": heads,
        "encoder_ffn_dim": ffn, "decoder_ffn_dim": ffn,
        "max_source_positions": hf["model.encoder.embed_positions.weight"].shape[0],
        "max_target_positions": hf["model.decoder.embed_positions.weight"].shape[0],
        "activation_function": "gelu", "scale_embedding": False, "tie_word_embeddings": True,
        "decoder_start_token_id": sot, "eos_token_id": eot, "bos_token_id": eot,
        "pad_token_id": eot, "torch_dtype": "float32"}
    gen = {
        "decoder_start_token_id": sot, "eos_token_id": eot, "bos_token_id": eot,
        "pad_token_id": eot, "no_timestamps_token_id": no_ts, "max_length": 448,
        "max_initial_timestamp_index": 50, "is_multilingual": multilingual,
        "suppress_tokens": ct2_cfg.get("suppress_ids", []),
        "begin_suppress_tokens": ct2_cfg.get("suppress_ids_begin", []),
        "return_timestamps": False}
    if ct2_cfg.get("alignment_heads"):
        gen["alignment_heads"] = [[int(l), int(h)] for l, h in ct2_cfg["alignment_heads"]]
    if multilingual:
        gen["lang_to_id"] = langs
        gen["task_to_id"] = {"transcribe": special["<|transcribe|>"],
                             "translate": special["<|translate|>"]}
        # As OpenAI's HF checkpoints: the language slot left to detection, then <|transcribe|>.
        # Without it generate() prompts <|startoftranscript|><|en|><|notimestamps|> with no task
        # token when the language is detected, and Whisper base repeats one word to max_length.
        gen["forced_decoder_ids"] = [[1, None], [2, special["<|transcribe|>"]]]
    os.makedirs(out_dir, exist_ok=True)
    # Written aside and renamed, so a reader of a shared cache never sees half a file.
    weights = os.path.join(out_dir, "model.safetensors")
    save_file(hf, weights + ".tmp")
    os.replace(weights + ".tmp", weights)
    json.dump(config, open(os.path.join(out_dir, "config.json"), "w"), indent=1)
    json.dump(gen, open(os.path.join(out_dir, "generation_config.json"), "w"), indent=1)
    json.dump({"feature_extractor_type": "WhisperFeatureExtractor", "feature_size": n_mels,
               "sampling_rate": 16000, "hop_length": 160, "chunk_length": 30, "n_fft": 400,
               "padding_value": 0.0}, open(os.path.join(out_dir, "preprocessor_config.json"), "w"),
              indent=1)
    shutil.copy(os.path.join(ct2_dir, "tokenizer.json"), os.path.join(out_dir, "tokenizer.json"))
    print(f"{out_dir}: d_model {d}, {enc_layers}+{dec_layers} layers, {heads} heads, vocab {vocab},"
          f" multilingual {multilingual}")


if __name__ == "__main__":
    convert(sys.argv[1], sys.argv[2])
