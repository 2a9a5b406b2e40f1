#!/usr/bin/env python3
"""Writes tiny random LLaVA fixtures, made with transformers itself, into tests/fixtures/models/.

Models (HF folders, float32 safetensors, each well under 1 MB):
- llava_clip: LlavaForConditionalGeneration (LLaVA-1.5): CLIP tower, patch 14, image_size 30
  (not a multiple of the patch: 2x2 patches + CLS), quick_gelu, Llama text model,
  mlp2x_gelu projector with bias, vision_feature_layer -2, strategy "default".
- llava_siglip: LlavaForConditionalGeneration with a SigLIP tower, patch 16, image_size 40,
  gelu_pytorch_tanh, strategy "full", vision_feature_layer [-2, -1] (concatenated along hidden),
  projector without bias.
- llava_next: LlavaNextForConditionalGeneration: CLIP tower, patch 14, image_size 42 (3x3 patches
  per tile), anyres pinpoints [[42, 84], [84, 42], [84, 84], [126, 42]], image_newline, unpad,
  vision_feature_layer -1, strategy "default".
Each folder holds config.json, model.safetensors, generation_config.json, the processor files
(preprocessor_config.json, processor_config.json, chat_template.jinja) and the tokenizer files:
stories260K's tokenizer (../shared/testdata/models/stories260K-hf) with "<image>" added as id 512.

Reference outputs per model, in the model's folder:
- reference.json:
  "images": per image (name, path relative to the repository root, or "testdata:<file>" for
    ../shared/testdata/images/<file>), "image_size" [height, width] of the decoded image,
    "pixel_values_shape" (the processor's, one image, tile padding stripped), "num_image_tokens"
    (the <image> tokens the processor expands one placeholder to), "features_offset" (in floats,
    into image_features.f32) and "features_shape" [n_tokens, text hidden_size]: what
    get_image_features returns after the projector (LLaVA-NeXT: after pack_image_features, i.e.
    base + unpadded tiles + image_newline), i.e. the rows that replace the placeholders.
  "prompts": for the composition (the llava branch): per prompt the text, the images used, the
    expanded "input_ids" from the processor (one image: the first; two: the last two), "logits_file" (float32 [len(input_ids), vocab_size],
    every position of one forward pass) and "generate_ids" (greedy model.generate, 8 new tokens,
    prompt ids excluded). One prompt with one image and one with two images.
- image_features.f32: the feature rows of every image, concatenated (little-endian float32).
- llava_clip (both files) and llava_next (the mmproj), made with llama.cpp's own converters (LLAMA_CPP, default
  /work/peers/llama.cpp): mmproj-model-f32.gguf (the vision tower + projector, through
  tools/mtmd/legacy-models/convert_image_encoder_to_gguf.py, llama.cpp's LLaVA-1.5 route; its
  convert_hf_to_gguf.py --mmproj takes only pixtral-style LLaVA) and text-model-f32.gguf (the
  language model through convert_hf_to_gguf.py). Random weights are float16-exact because that
  converter stores the patch conv and projector in f16.
- logits_<prompt>.f32: as above.

Images: ../shared/testdata/images/* and tests/fixtures/images/inputs/{odd_641x479.png,
tall_7x300.jpg, pixel_1x1.png} (several sizes and aspects).

Needs torch, transformers 5.x (PIL processor backend), pillow, numpy.
Usage: /work/pyref/bin/python tools/make_llava_fixtures.py [--testdata ../shared/testdata]
"""
import argparse
import json
import os
import shutil
import sys

import numpy as np
import torch
from PIL import Image
from transformers import (AutoProcessor, AutoTokenizer, CLIPImageProcessor, CLIPVisionConfig,
                          LlamaConfig, LlavaConfig, LlavaForConditionalGeneration, LlavaNextConfig,
                          LlavaNextForConditionalGeneration, LlavaNextImageProcessor,
                          LlavaNextProcessor, LlavaProcessor, SiglipImageProcessor,
                          SiglipVisionConfig)
from transformers.image_transforms import convert_to_rgb

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "models")
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
CHAT_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'user' %}USER: {% else %}ASSISTANT: "
    "{% endif %}{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] %}{% if part['type'] == 'image' %}<image>\n{% elif "
    "part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %}{% endif %}"
    "{% if message['role'] != 'user' %}</s>{% endif %} {% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}")
LLAMA_CPP = os.environ.get("LLAMA_CPP", "/work/peers/llama.cpp")
LOCAL_IMAGES = ["odd_641x479.png", "tall_7x300.jpg", "pixel_1x1.png"]


def text_config():
    return LlamaConfig(vocab_size=513, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                       rms_norm_eps=1e-5, tie_word_embeddings=False, bos_token_id=1,
                       eos_token_id=2, pad_token_id=0)


def clip_vision(image_size, layers=3):
    return CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=layers,
                            num_attention_heads=4, image_size=image_size, patch_size=14,
                            projection_dim=32, hidden_act="quick_gelu", layer_norm_eps=1e-5)


def clip_processor(size):
    return CLIPImageProcessor(size={"shortest_edge": size},
                              crop_size={"height": size, "width": size}, do_center_crop=True,
                              resample=3, image_mean=CLIP_MEAN, image_std=CLIP_STD)


def make_tokenizer(testdata):
    tok = AutoTokenizer.from_pretrained(os.path.join(testdata, "models", "stories260K-hf"))
    tok.add_special_tokens({"additional_special_tokens": ["<image>"]})
    assert tok.convert_tokens_to_ids("<image>") == 512
    return tok


def spec_clip():
    cfg = LlavaConfig(vision_config=clip_vision(30), text_config=text_config(),
                      image_token_id=512, projector_hidden_act="gelu",
                      vision_feature_select_strategy="default", vision_feature_layer=-2,
                      image_seq_length=4, multimodal_projector_bias=True)
    proc = lambda tok: LlavaProcessor(image_processor=clip_processor(30), tokenizer=tok,
                                      patch_size=14, vision_feature_select_strategy="default",
                                      num_additional_image_tokens=1, chat_template=CHAT_TEMPLATE)
    return cfg, LlavaForConditionalGeneration, proc


def spec_siglip():
    vision = SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                                num_attention_heads=4, image_size=40, patch_size=16,
                                hidden_act="gelu_pytorch_tanh", layer_norm_eps=1e-6)
    cfg = LlavaConfig(vision_config=vision, text_config=text_config(), image_token_id=512,
                      projector_hidden_act="gelu", vision_feature_select_strategy="full",
                      vision_feature_layer=[-2, -1], image_seq_length=4,
                      multimodal_projector_bias=False)
    improc = SiglipImageProcessor(size={"height": 40, "width": 40}, resample=3,
                                  image_mean=[0.5] * 3, image_std=[0.5] * 3)
    proc = lambda tok: LlavaProcessor(image_processor=improc, tokenizer=tok, patch_size=16,
                                      vision_feature_select_strategy="full",
                                      num_additional_image_tokens=0, chat_template=CHAT_TEMPLATE)
    return cfg, LlavaForConditionalGeneration, proc


def spec_next():
    pinpoints = [[42, 84], [84, 42], [84, 84], [126, 42]]
    cfg = LlavaNextConfig(vision_config=clip_vision(42), text_config=text_config(),
                          image_token_id=512, projector_hidden_act="gelu",
                          vision_feature_select_strategy="default", vision_feature_layer=-1,
                          image_grid_pinpoints=pinpoints, multimodal_projector_bias=True)
    improc = LlavaNextImageProcessor(size={"shortest_edge": 42},
                                     crop_size={"height": 42, "width": 42},
                                     image_grid_pinpoints=pinpoints, resample=3,
                                     image_mean=CLIP_MEAN, image_std=CLIP_STD, do_pad=True)
    proc = lambda tok: LlavaNextProcessor(image_processor=improc, tokenizer=tok, patch_size=14,
                                          vision_feature_select_strategy="default",
                                          num_additional_image_tokens=1,
                                          chat_template=CHAT_TEMPLATE)
    return cfg, LlavaNextForConditionalGeneration, proc


# The legacy converter expects transformers 4's CLIPVisionModel (weights under .vision_model);
# transformers 5 flattened it. This runs the converter unchanged with the model wrapped back.
CONVERTER_SHIM = """
import runpy, sys, torch, transformers
load = transformers.CLIPVisionModel.from_pretrained
class Wrapped(torch.nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.vision_model = inner
transformers.CLIPVisionModel.from_pretrained = lambda *a, **k: Wrapped(load(*a, **k))
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def make_mmproj(model, cfg, processor, folder, name):
    """mmproj-model-f32.gguf: llama.cpp's LLaVA-1.5 route (docs/multimodal/llava.md): the CLIP
    tower as an HF CLIPVisionModel folder (config.json with vision_feature_layer), the projector
    as llava.projector, converted by tools/mtmd/legacy-models/convert_image_encoder_to_gguf.py
    (--clip-model-is-vision --use-f32; it keeps the last feature layer's blocks only)."""
    import subprocess
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        tower = model.model.vision_tower
        tower.save_pretrained(tmp, safe_serialization=True)
        with open(os.path.join(tmp, "config.json")) as f:
            vcfg = json.load(f)
        vcfg["vision_feature_layer"] = cfg.vision_feature_layer
        vcfg["_name_or_path"] = name  # general.name, instead of the temp folder's
        if hasattr(cfg, "image_grid_pinpoints"):  # LLaVA-NeXT, as llava_surgery_v2.py writes it
            vcfg.update(image_grid_pinpoints=cfg.image_grid_pinpoints, image_aspect_ratio="anyres",
                        mm_patch_merge_type="spatial_unpad")
        with open(os.path.join(tmp, "config.json"), "w") as f:
            json.dump(vcfg, f)
        proj = {k: v.clone() for k, v in model.model.multi_modal_projector.state_dict().items()}
        proj = {"multi_modal_projector." + k: v for k, v in proj.items()}
        if hasattr(model.model, "image_newline"):
            proj["image_newline"] = model.model.image_newline.detach().clone()
        torch.save(proj, os.path.join(tmp, "llava.projector"))
        improc = processor.image_processor
        subprocess.run(
            [sys.executable, "-c", CONVERTER_SHIM,
             os.path.join(LLAMA_CPP, "tools", "mtmd", "legacy-models",
                          "convert_image_encoder_to_gguf.py"),
             "-m", tmp, "--llava-projector", os.path.join(tmp, "llava.projector"),
             "--output-dir", tmp, "--clip-model-is-vision", "--use-f32",
             "--image-mean", *map(str, improc.image_mean), "--image-std",
             *map(str, improc.image_std)],
            check=True, stdout=subprocess.DEVNULL,
            env=dict(os.environ, PYTHONPATH=os.path.join(LLAMA_CPP, "gguf-py")))
        shutil.copy(os.path.join(tmp, "mmproj-model-f32.gguf"),
                    os.path.join(folder, "mmproj-model-f32.gguf"))


def make_text_gguf(model, folder):
    """text-model-f32.gguf: the language model saved as an HF LlamaForCausalLM folder (with the
    tokenizer files) and converted by llama.cpp's convert_hf_to_gguf.py, as llama.cpp's LLaVA
    docs do after splitting the checkpoint."""
    import subprocess
    import tempfile
    from transformers import LlamaForCausalLM
    with tempfile.TemporaryDirectory() as parent:
        tmp = os.path.join(parent, "llava_clip_text")  # general.name comes from the folder name
        lm = LlamaForCausalLM(model.config.text_config)
        lm.model.load_state_dict(model.model.language_model.state_dict())
        lm.lm_head.load_state_dict(model.lm_head.state_dict())
        lm.save_pretrained(tmp, safe_serialization=True)
        for f in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copy(os.path.join(folder, f), tmp)
        out = os.path.join(folder, "text-model-f32.gguf")
        subprocess.run([sys.executable, os.path.join(LLAMA_CPP, "convert_hf_to_gguf.py"), tmp,
                        "--outtype", "f32", "--outfile", out], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       env=dict(os.environ, PYTHONPATH=os.path.join(LLAMA_CPP, "gguf-py")))


SPECS = {"llava_clip": spec_clip, "llava_siglip": spec_siglip, "llava_next": spec_next}


def randomise(model, seed):
    # transformers' init leaves norms at 1/0 and tiny std: use visible random values everywhere so
    # a wrong weight or a skipped op shows in the features.
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            scale = 0.02 if "embed" in name else (0.15 if p.dim() > 1 else 0.1)
            noise = torch.randn(p.shape, generator=g) * scale
            value = 1.0 + noise if "norm" in name and name.endswith("weight") else noise
            # float16-exact values: llama.cpp's mmproj converter stores the patch conv and the
            # projector in f16 whatever it is asked, so the mmproj holds the same weights.
            p.copy_(value.half().float())


def image_list(testdata):
    out = []
    for f in sorted(os.listdir(os.path.join(testdata, "images"))):
        out.append(("testdata:" + f, os.path.join(testdata, "images", f)))
    for f in LOCAL_IMAGES:
        rel = os.path.join("tests", "fixtures", "images", "inputs", f)
        out.append((rel, os.path.join(ROOT, rel)))
    return out


def load_rgb(path):
    return convert_to_rgb(Image.open(path))


def image_features(model, processor, image, is_next):
    inputs = processor(images=[image], text="<image>", return_tensors="pt")
    n_tokens = int((inputs["input_ids"] == 512).sum())
    with torch.no_grad():
        if is_next:
            out = model.get_image_features(pixel_values=inputs["pixel_values"],
                                           image_sizes=inputs["image_sizes"])
        else:
            out = model.get_image_features(pixel_values=inputs["pixel_values"])
    feats = out.pooler_output if hasattr(out, "pooler_output") else out
    feats = torch.cat(list(feats), dim=0).numpy().astype(np.float32)
    assert feats.shape[0] == n_tokens, (feats.shape, n_tokens)
    pv = inputs["pixel_values"][0]
    if is_next:
        n_tiles = len(torch.nonzero(pv.flatten(1).abs().sum(1) > 0))  # padding tiles are zeros
        pv_shape = [n_tiles] + list(pv.shape[1:])
    else:
        pv_shape = list(pv.shape)
    return feats, n_tokens, pv_shape


def prompts_for(processor, model, images, folder):
    out = []
    cases = [("one_image", "USER: <image>\nWhat is this? ASSISTANT:", images[:1]),
             ("two_images", "USER: <image>\nand <image>\nCompare them. ASSISTANT:", images[-2:])]
    for name, text, imgs in cases:
        inputs = processor(images=[load_rgb(p) for _, p in imgs], text=text, return_tensors="pt")
        with torch.no_grad():
            logits = model(**inputs).logits[0].numpy().astype(np.float32)
            gen = model.generate(**inputs, max_new_tokens=8, do_sample=False)
        ids = inputs["input_ids"][0].tolist()
        logits.tofile(os.path.join(folder, f"logits_{name}.f32"))
        out.append({"name": name, "text": text, "images": [n for n, _ in imgs],
                    "input_ids": ids, "logits_file": f"logits_{name}.f32",
                    "logits_shape": list(logits.shape), "argmax": logits.argmax(-1).tolist(),
                    "generate_ids": gen[0, len(ids):].tolist()})
    return out


def build(name, testdata, seed):
    cfg, cls, make_proc = SPECS[name]()
    torch.manual_seed(seed)
    model = cls(cfg).eval()
    randomise(model, seed)
    folder = os.path.join(OUT, name)
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    model.save_pretrained(folder, safe_serialization=True)
    processor = make_proc(make_tokenizer(testdata))
    processor.save_pretrained(folder)
    # Reload as a user would, so the references come from what is on disk.
    model = cls.from_pretrained(folder, dtype=torch.float32).eval()
    processor = AutoProcessor.from_pretrained(folder)
    images = image_list(testdata)
    entries, rows, offset = [], [], 0
    for img_name, path in images:
        image = load_rgb(path)
        feats, n_tokens, pv_shape = image_features(model, processor, image, name == "llava_next")
        entries.append({"name": img_name, "image_size": [image.height, image.width],
                        "pixel_values_shape": pv_shape, "num_image_tokens": n_tokens,
                        "features_offset": offset, "features_shape": list(feats.shape)})
        rows.append(feats.reshape(-1))
        offset += feats.size
    np.concatenate(rows).astype("<f4").tofile(os.path.join(folder, "image_features.f32"))
    reference = {"name": name, "architecture": cfg.architectures or [cls.__name__],
                 "image_token_id": 512, "vocab_size": cfg.text_config.vocab_size,
                 "text_hidden_size": cfg.text_config.hidden_size, "images": entries,
                 "prompts": prompts_for(processor, model, images, folder)}
    with open(os.path.join(folder, "reference.json"), "w") as f:
        json.dump(reference, f, indent=1)
    if name == "llava_clip":
        make_mmproj(model, cfg, processor, folder, name)
        make_text_gguf(model, folder)
    if name == "llava_next":
        make_mmproj(model, cfg, processor, folder, name)
    total = sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder))
    print(f"{name}: {total} bytes, tokens per image "
          f"{[e['num_image_tokens'] for e in entries]}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--testdata", default=os.path.join(ROOT, "..", "shared", "testdata"))
    ap.add_argument("--only", nargs="*", default=list(SPECS))
    args = ap.parse_args()
    torch.set_num_threads(1)
    for name in args.only:
        build(name, os.path.abspath(args.testdata), 1234 + list(SPECS).index(name))


if __name__ == "__main__":
    main()
