#!/usr/bin/env python3
"""Writes a random-weight mmproj GGUF shaped like LLaVA-1.5's CLIP ViT-L/14-336 encoder, the way
llama.cpp's LLaVA converter (tools/mtmd/legacy-models/convert_image_encoder_to_gguf.py) lays it
out: clip.vision.* keys, "v.*" tower tensors (fc1 named ffn_down, fc2 ffn_up, as it does), the
23 blocks up to vision_feature_layer -2, an mlp2x projector "mm.0"/"mm.2" to 4096 (a 7B text
model). For bench/image_encode_vs_llamacpp.py; the files (~0.6 GB F16, ~0.35 GB Q8_0) are not
committed.

Matrices are stored as --type (f16 or q8_0, quantized with gguf-py as llama.cpp does); the patch
conv stays F16 and norms, biases and embeddings F32, as llama.cpp keeps them.

Usage: PYTHONPATH=/work/peers/llama.cpp/gguf-py /work/pyref/bin/python bench/make_clip_mmproj.py \
           --type q8_0 OUT.gguf
"""
import argparse

import numpy as np
import gguf

HIDDEN, FFN, HEADS, LAYERS, IMAGE, PATCH, TEXT = 1024, 4096, 16, 23, 336, 14, 4096
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--type", choices=["f16", "q8_0"], default="f16")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    w = gguf.GGUFWriter(args.out, "clip")
    w.add_bool("clip.has_text_encoder", False)
    w.add_bool("clip.has_vision_encoder", True)
    w.add_bool("clip.has_llava_projector", True)
    w.add_file_type(1 if args.type == "f16" else 7)
    w.add_description("image encoder for LLaVA")
    w.add_string("clip.projector_type", "mlp")
    w.add_uint32("clip.vision.image_size", IMAGE)
    w.add_uint32("clip.vision.patch_size", PATCH)
    w.add_uint32("clip.vision.embedding_length", HIDDEN)
    w.add_uint32("clip.vision.feed_forward_length", FFN)
    w.add_uint32("clip.vision.projection_dim", 768)
    w.add_uint32("clip.vision.attention.head_count", HEADS)
    w.add_float32("clip.vision.attention.layer_norm_epsilon", 1e-5)
    w.add_uint32("clip.vision.block_count", LAYERS)
    w.add_array("clip.vision.feature_layer", [LAYERS])
    w.add_array("clip.vision.image_mean", CLIP_MEAN)
    w.add_array("clip.vision.image_std", CLIP_STD)
    w.add_bool("clip.use_gelu", False)

    def vec(name, n, scale=0.02, base=0.0):
        w.add_tensor(name, (base + rng.standard_normal(n) * scale).astype(np.float32))

    def mat(name, rows, cols):
        data = (rng.standard_normal((rows, cols)) * 0.02).astype(np.float32)
        if args.type == "f16":
            w.add_tensor(name, data.astype(np.float16))
        else:
            q = gguf.quants.quantize(data, gguf.GGMLQuantizationType.Q8_0)
            w.add_tensor(name, q, raw_shape=q.shape, raw_dtype=gguf.GGMLQuantizationType.Q8_0)

    mat("mm.0.weight", TEXT, HIDDEN)
    vec("mm.0.bias", TEXT)
    mat("mm.2.weight", TEXT, TEXT)
    vec("mm.2.bias", TEXT)
    vec("v.class_embd", HIDDEN)
    w.add_tensor("v.patch_embd.weight",
                 (rng.standard_normal((HIDDEN, 3, PATCH, PATCH)) * 0.02).astype(np.float16))
    w.add_tensor("v.position_embd.weight",
                 (rng.standard_normal(((IMAGE // PATCH) ** 2 + 1, HIDDEN)) * 0.02)
                 .astype(np.float32))
    vec("v.pre_ln.weight", HIDDEN, base=1.0)
    vec("v.pre_ln.bias", HIDDEN)
    for i in range(LAYERS):
        p = f"v.blk.{i}."
        for t in ("attn_q", "attn_k", "attn_v", "attn_out"):
            mat(p + t + ".weight", HIDDEN, HIDDEN)
            vec(p + t + ".bias", HIDDEN)
        for n in ("ln1", "ln2"):
            vec(p + n + ".weight", HIDDEN, base=1.0)
            vec(p + n + ".bias", HIDDEN)
        mat(p + "ffn_down.weight", FFN, HIDDEN)  # fc1, named as llama.cpp's converter names it
        vec(p + "ffn_down.bias", FFN)
        mat(p + "ffn_up.weight", HIDDEN, FFN)  # fc2
        vec(p + "ffn_up.bias", HIDDEN)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


if __name__ == "__main__":
    main()
