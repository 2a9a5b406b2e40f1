#!/usr/bin/env python3
"""Writes the MiniCPM-V 2.6 fixtures of tests/unit/test_minicpmv*.cpp.

MiniCPM-V's modeling code is not inside transformers (trust_remote_code): this tool imports
OpenBMB's published files of openbmb/MiniCPM-V-2_6 (configuration_minicpm.py,
modeling_minicpmv.py, modeling_navit_siglip.py, resampler.py, image_processing_minicpmv.py,
processing_minicpmv.py) from the folder given as OPENBMB_DIR, as a Python package (the folder
must hold an empty __init__.py). They were written for transformers 4.4x; the one patch they need
to import under transformers 5.25 / torch 2.15 is in resampler.py:
  `from typing import Optional, Tuple` -> `from typing import List, Optional, Tuple`
(its `from torch.nn.functional import *` no longer brings `List`). Nothing else is changed; the
model is built and run with the eager SigLIP attention the files pick without flash-attn.

processor: MiniCPMVImageProcessor on ../shared/testdata/images and a few of
  tests/fixtures/images/inputs under two configs (the 2.6 defaults, scale 448 / 9 slices, and the
  tiny model's) -> tests/fixtures/minicpmv/processor.json: per (config, image) the slice grid
  (null when not sliced), tgt_sizes, per-slice pixel_values shapes, the SHA-256 of all slices'
  float32 values concatenated, float64 sum / sum of squares and the first 8 values of each slice,
  plus the placeholder text get_slice_image_placeholder builds.

model: a tiny random MiniCPMV (Qwen2 text 1 layer hidden 128, navit SigLIP 2 layers hidden 32,
  resampler with 8 queries) saved to tests/fixtures/models/minicpmv as an HF folder (bf16 weights:
  the reference runs in float32 on the bf16-rounded weights), with the llava_rt tokenizer plus
  MiniCPM-V's markup tokens. reference.json: per image the processor's tgt_sizes / grid and the
  resampler's rows (features_<image>.f32, [slices * 8, 128]); per prompt the expanded ids
  (MiniCPMVProcessor), image_bound, the logits of every position (logits_<prompt>.f32) and 8
  greedy ids of llm.generate on the prompt's embeddings.

Needs pillow, numpy, torch and transformers 5.x.
Usage: tools/make_minicpmv_fixtures.py OPENBMB_DIR [--testdata ../shared/testdata]
"""
import argparse
import hashlib
import json
import os
import sys

import numpy as np
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROC_OUT = os.path.join(ROOT, "tests", "fixtures", "minicpmv")
MODEL_OUT = os.path.join(ROOT, "tests", "fixtures", "models", "minicpmv")
# pixel_1x1.png is left out: the HF processor infers its (1, 1, 3) array as channels-first and
# then fails normalising the 448x448 upscaled slice ("mean must have 448 elements").
FIXTURE_INPUTS = ["tall_7x300.jpg", "odd_641x479.png", "rgba.png"]
MARKUP = ["</image>", "<slice>", "</slice>", "<image_id>", "</image_id>"]

# The tiny model's slicing: 4x4-patch slices keep the tower's work small.
TINY_SLICE = {"max_slice_nums": 4, "scale_resolution": 56, "patch_size": 14}
QUERY_NUM = 8
GREEDY_TOKENS = 8


def processor_config(slice_cfg, feature_size):
    return {"image_processor_type": "MiniCPMVImageProcessor",
            "auto_map": {"AutoImageProcessor": "image_processing_minicpmv.MiniCPMVImageProcessor",
                         "AutoProcessor": "processing_minicpmv.MiniCPMVProcessor"},
            "processor_class": "MiniCPMVProcessor",
            "max_slice_nums": slice_cfg["max_slice_nums"],
            "scale_resolution": slice_cfg["scale_resolution"],
            "patch_size": slice_cfg["patch_size"], "use_image_id": True,
            "image_feature_size": feature_size, "im_start": "<image>", "im_end": "</image>",
            "slice_start": "<slice>", "slice_end": "</slice>", "unk": "<unk>",
            "im_id_start": "<image_id>", "im_id_end": "</image_id>", "slice_mode": True,
            "norm_mean": [0.5, 0.5, 0.5], "norm_std": [0.5, 0.5, 0.5], "version": 2.6}


# Subsets that still cover a sliced 1x2 / 2x2 / 3x1 grid, upscaling and alpha: decoding and
# resizing are the C++ test's cost (CI runs it under qemu too).
V2_6_IMAGES = {"camera.png", "tall_7x300.jpg"}
TINY_IMAGES = {"chelsea.jpg", "llama1-logo.png", "tall_7x300.jpg", "odd_641x479.png", "rgba.png"}
PROC_CONFIGS = {
    "v2_6": processor_config({"max_slice_nums": 9, "scale_resolution": 448, "patch_size": 14}, 64),
    "tiny": processor_config(TINY_SLICE, QUERY_NUM),
}


def load_rgb(path):
    """The image as af::modalities::Image decodes it: transformers' convert_to_rgb (alpha
    composited on white). OpenBMB's processor itself calls PIL's convert("RGB"), which drops
    alpha instead; for opaque images the two agree."""
    from transformers.image_transforms import convert_to_rgb
    return convert_to_rgb(Image.open(path))


def image_paths(testdata):
    out = [("shared", n, os.path.join(testdata, "images", n))
           for n in sorted(os.listdir(os.path.join(testdata, "images")))]
    out += [("inputs", n, os.path.join(ROOT, "tests", "fixtures", "images", "inputs", n))
            for n in FIXTURE_INPUTS]
    return out


def make_image_processor(pkg, config):
    kwargs = {k: v for k, v in config.items()
              if k not in ("image_processor_type", "auto_map", "processor_class")}
    return pkg.image_processing_minicpmv.MiniCPMVImageProcessor(**kwargs)


def make_processor_fixture(pkg, testdata):
    cases = []
    for name, config in PROC_CONFIGS.items():
        folder = os.path.join(PROC_OUT, "configs", name)
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, "preprocessor_config.json"), "w") as f:
            json.dump(config, f, indent=2)
            f.write("\n")
        proc = make_image_processor(pkg, config)
        for where, file, path in image_paths(testdata):
            if file not in (V2_6_IMAGES if name == "v2_6" else TINY_IMAGES):
                continue
            image = load_rgb(path)
            out = proc.preprocess(image, return_tensors=None)
            slices = [np.asarray(s, dtype=np.float32) for s in out["pixel_values"][0]]
            flat = np.concatenate([s.ravel() for s in slices])
            grid = proc.get_sliced_grid(image.size, proc.max_slice_nums)
            cases.append({
                "config": name, "where": where, "file": file,
                "grid": grid, "tgt_sizes": np.asarray(out["tgt_sizes"][0]).tolist(),
                "shapes": [list(s.shape) for s in slices],
                "sha256": hashlib.sha256(flat.tobytes()).hexdigest(),
                "sum": float(flat.astype(np.float64).sum()),
                "sum_sq": float((flat.astype(np.float64) ** 2).sum()),
                "first": [s.ravel()[:8].tolist() for s in slices],
                "placeholder": proc.get_slice_image_placeholder(image.size, 0),
            })
    with open(os.path.join(PROC_OUT, "processor.json"), "w") as f:
        json.dump({"cases": cases}, f, indent=1)
        f.write("\n")
    print("processor cases:", len(cases))


def make_tokenizer(out_dir):
    """The llava_rt tokenizer (512 Llama-style BPE + <image>) plus MiniCPM-V's markup tokens."""
    from tokenizers import AddedToken, Tokenizer
    src = os.path.join(ROOT, "tests", "fixtures", "models", "llava_rt")
    tok = Tokenizer.from_file(os.path.join(src, "tokenizer.json"))
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in MARKUP])
    tok.save(os.path.join(out_dir, "tokenizer.json"))
    with open(os.path.join(src, "tokenizer_config.json")) as f:
        cfg = json.load(f)
    cfg["extra_special_tokens"] = ["<image>"] + MARKUP
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
    return tok.get_vocab_size()


def load_minicpmv_tokenizer(pkg, out_dir):
    import shutil
    import tempfile
    from transformers import AutoTokenizer
    with tempfile.TemporaryDirectory() as tmp:  # without config.json's auto_map (no prompt)
        for name in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copy(os.path.join(out_dir, name), tmp)
        base = AutoTokenizer.from_pretrained(tmp)
    # What transformers tokenizes with (LlamaTokenizer rewrites the Metaspace prepend_scheme to
    # "first": no "▁" after special tokens) is what the fixture's tokenizer.json must say.
    base.save_pretrained(out_dir)

    # MiniCPMVTokenizerFast's id properties, on the fixture's (Llama-style) tokenizer.
    class Wrapped(type(base)):
        pass
    for name, token in [("im_start_id", "<image>"), ("im_end_id", "</image>"),
                        ("slice_start_id", "<slice>"), ("slice_end_id", "</slice>"),
                        ("im_id_start_id", "<image_id>"), ("im_id_end_id", "</image_id>")]:
        setattr(Wrapped, name, property(lambda self, t=token: self.convert_tokens_to_ids(t)))
    Wrapped.bos_id = property(lambda self: self.bos_token_id)
    Wrapped.eos_id = property(lambda self: self.eos_token_id)
    base.__class__ = Wrapped
    return base


def build_model(pkg, vocab, out_dir, torch):
    from safetensors.torch import save_file
    cfg = pkg.configuration_minicpm.MiniCPMVConfig(
        vocab_size=vocab, hidden_size=128, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
        rms_norm_eps=1e-6, rope_theta=10000.0, tie_word_embeddings=True, bos_token_id=1,
        eos_token_id=2, query_num=QUERY_NUM, image_size=56, drop_vision_last_layer=False,
        batch_vision_input=True, use_image_id=True, vision_batch_size=16,
        slice_config=dict(TINY_SLICE),
        vision_config={"hidden_size": 32, "image_size": 140, "intermediate_size": 64,
                       "model_type": "siglip", "num_attention_heads": 2, "num_hidden_layers": 2,
                       "patch_size": 14})
    cfg.architectures = ["MiniCPMV"]
    cfg.auto_map = {"AutoConfig": "configuration_minicpm.MiniCPMVConfig",
                    "AutoModel": "modeling_minicpmv.MiniCPMV",
                    "AutoModelForCausalLM": "modeling_minicpmv.MiniCPMV"}
    torch.manual_seed(0)
    model = pkg.modeling_minicpmv.MiniCPMV(cfg).eval()
    gen = torch.Generator().manual_seed(1234)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight") or ".ln_" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=gen))
            elif p.dim() == 1:
                p.copy_(0.05 * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(torch.randn(p.shape, generator=gen) / np.sqrt(p.shape[-1]))
            p.copy_(p.to(torch.bfloat16).to(torch.float32))  # what the bf16 file holds
    model.llm.tie_weights()
    state = {k: v.to(torch.bfloat16).contiguous() for k, v in model.state_dict().items()
             if k != "llm.lm_head.weight" and not k.endswith("pos_embed")}
    save_file(state, os.path.join(out_dir, "model.safetensors"), metadata={"format": "pt"})
    cfg.save_pretrained(out_dir)
    return model


def make_model_fixture(pkg, testdata):
    import torch
    os.makedirs(MODEL_OUT, exist_ok=True)
    vocab = make_tokenizer(MODEL_OUT)
    model = build_model(pkg, vocab, MODEL_OUT, torch)
    pconf = PROC_CONFIGS["tiny"]
    with open(os.path.join(MODEL_OUT, "preprocessor_config.json"), "w") as f:
        json.dump(pconf, f, indent=2)
        f.write("\n")
    image_proc = make_image_processor(pkg, pconf)
    tok = load_minicpmv_tokenizer(pkg, MODEL_OUT)
    proc = pkg.processing_minicpmv.MiniCPMVProcessor.__new__(
        pkg.processing_minicpmv.MiniCPMVProcessor)
    proc.image_processor, proc.tokenizer, proc.version = image_proc, tok, 2.6

    images = {"chelsea": os.path.join(testdata, "images", "chelsea.jpg"),
              "logo": os.path.join(testdata, "images", "llama1-logo.png"),
              "small": os.path.join(ROOT, "tests", "fixtures", "images", "inputs",
                                    "tall_7x300.jpg")}
    ref = {"query_num": QUERY_NUM, "images": {}, "prompts": {}}
    for key, path in images.items():
        pil = load_rgb(path)
        out = image_proc.preprocess(pil, return_tensors="pt")
        data = {"pixel_values": out["pixel_values"], "tgt_sizes": out["tgt_sizes"],
                "input_ids": torch.zeros(1, 1, dtype=torch.long), "image_bound": [[]]}
        with torch.no_grad():
            _, vision = model.get_vllm_embedding(data)
        feats = vision[0].float().numpy()
        feats.astype("<f4").tofile(os.path.join(MODEL_OUT, f"features_{key}.f32"))
        ref["images"][key] = {"file": os.path.relpath(path, ROOT if "fixtures" in path else
                                                      testdata),
                              "grid": image_proc.get_sliced_grid(pil.size,
                                                                 image_proc.max_slice_nums),
                              "tgt_sizes": out["tgt_sizes"][0].tolist(),
                              "rows": int(feats.shape[0] * feats.shape[1])}

    prompts = {"one_image": ("(<image>./</image>)\nWhat is it?", ["chelsea"]),
               "two_images": ("A (<image>./</image>) B (<image>./</image>)",
                              ["logo", "small"])}
    for key, (text, keys) in prompts.items():
        pils = [load_rgb(images[k]) for k in keys]
        inputs = proc(text, [pils], return_tensors="pt")
        data = {"input_ids": inputs["input_ids"], "pixel_values": inputs["pixel_values"],
                "tgt_sizes": inputs["tgt_sizes"], "image_bound": inputs["image_bound"]}
        with torch.no_grad():
            embeds, _ = model.get_vllm_embedding(data)
            n = embeds.shape[1]
            logits = model.llm(inputs_embeds=embeds,
                               position_ids=torch.arange(n).unsqueeze(0)).logits[0]
        logits.float().numpy().astype("<f4").tofile(
            os.path.join(MODEL_OUT, f"logits_{key}.f32"))
        ids = inputs["input_ids"][0].tolist()
        # Greedy continuation as MiniCPMV._decode runs it (llm.generate on the embeddings); no
        # end-of-sequence stop, so all GREEDY_TOKENS come from the random model's argmax.
        model.llm.generation_config.eos_token_id = None
        with torch.no_grad():
            greedy = model.llm.generate(inputs_embeds=embeds,
                                        attention_mask=torch.ones(1, n, dtype=torch.long),
                                        max_new_tokens=GREEDY_TOKENS, do_sample=False,
                                        pad_token_id=0)[0].tolist()
        ref["prompts"][key] = {"text": text, "images": keys, "ids": ids,
                               "image_bound": inputs["image_bound"][0].tolist(),
                               "argmax": logits.argmax(-1).tolist(), "greedy": greedy}
        print(key, "tokens", n)
    with open(os.path.join(MODEL_OUT, "reference.json"), "w") as f:
        json.dump(ref, f, indent=1)
        f.write("\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("openbmb_dir", help="folder (a package) holding OpenBMB's MiniCPM-V files")
    ap.add_argument("--testdata", default=os.path.join(ROOT, "..", "shared", "testdata"))
    ap.add_argument("--only", choices=["processor", "model"])
    args = ap.parse_args()
    folder = os.path.abspath(args.openbmb_dir)
    sys.path.insert(0, os.path.dirname(folder))
    import importlib
    pkg_name = os.path.basename(folder)
    pkg = importlib.import_module(pkg_name)
    for mod in ["configuration_minicpm", "modeling_minicpmv", "image_processing_minicpmv",
                "processing_minicpmv"]:
        setattr(pkg, mod, importlib.import_module(f"{pkg_name}.{mod}"))
    if args.only in (None, "processor"):
        make_processor_fixture(pkg, args.testdata)
    if args.only in (None, "model"):
        make_model_fixture(pkg, args.testdata)


if __name__ == "__main__":
    main()
