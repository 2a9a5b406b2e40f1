#!/usr/bin/env python3
"""Writes the Qwen2-VL / Qwen2.5-VL fixtures of tests/{unit,e2e}/test_qwen2_vl*.cpp into
tests/fixtures/qwen2_vl/.

processor: Qwen2VLImageProcessor (transformers' PIL backend) on ../shared/testdata/images and a
  few of tests/fixtures/images/inputs under several pixel budgets -> processor.json: per (config,
  image) the pixel_values shape, image_grid_thw, float64 sum and sum of squares, SHA-256 of the
  float32 array and its first and last rows' first 8 values; plus the smart_resize sizes of
  synthetic sizes and which aspect ratios it refuses.

models: tiny random Qwen2VLForConditionalGeneration (qwen2_vl: LayerNorm + QuickGELU blocks) and
  Qwen2_5_VLForConditionalGeneration (qwen2_5_vl: RMSNorm + SwiGLU blocks, window attention with
  fullatt_block_indexes), made with transformers in float32 (patch 8, merge 2, small pixel
  budget), saved as HF folders under tests/fixtures/models/<name>/ with reference.json:
  per image the processor's image_grid_thw and the merged features (get_image_features, the rows
  that replace the image pads) in features.f32; per prompt the expanded ids (each image pad
  repeated t*h*w/merge^2 times, as Qwen2VLProcessor expands it), the M-RoPE position_ids
  (get_rope_index, [3][n]) and rope delta, the logits of every position (logits_<prompt>.f32)
  and greedy generate ids (8 new tokens).

video: loads those two saved models and adds a "video" prompt to their reference.json: the clip
  tools/make_video_fixtures.py makes (ffmpeg CLI), sampled by qwen_vl_utils' fetch_video
  (image_patch_size 8) at VIDEO_FPS[kind], Qwen2VLVideoProcessor with the model's
  preprocessor_config.json budget, "<|video_pad|>" repeated t*h*w/merge^2 times, get_rope_index
  with video_grid_thw (and Qwen2.5-VL's second_per_grid_ts, float32 as the processor returns
  it), the merged features (get_video_features, video_features.f32), the logits of every
  position (logits_video.f32) and greedy generate ids. Needs what
  tools/make_video_fixtures.py needs (PyAV, qwen-vl-utils).

Needs pillow, numpy, torch and transformers 5.x (its PIL backend: torchvision absent).
Usage: tools/make_qwen2_vl_fixtures.py [processor] [models] [video] [--testdata ../shared/testdata]
"""
import argparse
import hashlib
import json
import os

import numpy as np
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "qwen2_vl")

# name -> preprocessor_config.json (kept small: the budgets bound the fixture test's work).
PROC_CONFIGS = {
    "small": {"min_pixels": 3136, "max_pixels": 28 * 28 * 64},
    "upscale": {"size": {"shortest_edge": 28 * 28 * 24, "longest_edge": 28 * 28 * 40}},
    "patch16": {"min_pixels": 32 * 32 * 4, "max_pixels": 32 * 32 * 48, "patch_size": 16},
    "merge1_t1": {"min_pixels": 14 * 14 * 4, "max_pixels": 14 * 14 * 100, "merge_size": 1,
                  "temporal_patch_size": 1},
}
FIXTURE_INPUTS = ["pixel_1x1.png", "tall_7x300.jpg", "odd_641x479.png", "rgb.bmp", "rgba.png"]


def processor_config(extra):
    c = {"image_processor_type": "Qwen2VLImageProcessor", "do_convert_rgb": True,
         "do_resize": True, "resample": 3, "do_rescale": True,
         "rescale_factor": 0.00392156862745098, "do_normalize": True,
         "image_mean": [0.48145466, 0.4578275, 0.40821073],
         "image_std": [0.26862954, 0.26130258, 0.27577711],
         "patch_size": 14, "temporal_patch_size": 2, "merge_size": 2}
    c.update(extra)
    return c


def make_processor(testdata):
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import (
        Qwen2VLImageProcessorPil, smart_resize)
    from transformers.image_transforms import convert_to_rgb
    cases = []
    images = [("shared", n) for n in sorted(os.listdir(os.path.join(testdata, "images")))]
    images += [("inputs", n) for n in FIXTURE_INPUTS]
    for name, extra in PROC_CONFIGS.items():
        config = processor_config(extra)
        folder = os.path.join(OUT, "configs", name)
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, "preprocessor_config.json"), "w") as f:
            json.dump(config, f, indent=2)
            f.write("\n")
        kwargs = {k: v for k, v in config.items() if k != "image_processor_type"}
        proc = Qwen2VLImageProcessorPil(**kwargs)
        for where, file in images:
            path = os.path.join(testdata, "images", file) if where == "shared" else \
                os.path.join(ROOT, "tests", "fixtures", "images", "inputs", file)
            rgb = convert_to_rgb(Image.open(path))  # PIL: numpy 1x1 inputs read as channels-first
            out = proc(images=[rgb], return_tensors="np")
            pv = out["pixel_values"].astype(np.float32)
            cases.append({"config": name, "where": where, "file": file,
                          "shape": list(pv.shape), "grid_thw": out["image_grid_thw"][0].tolist(),
                          "sum": float(pv.astype(np.float64).sum()),
                          "sumsq": float((pv.astype(np.float64) ** 2).sum()),
                          "sha256": hashlib.sha256(np.ascontiguousarray(pv).tobytes()).hexdigest(),
                          "first": pv[0, :8].tolist(), "last": pv[-1, -8:].tolist()})
    sizes = []
    for h, w in [(1, 1), (10, 10), (27, 29), (42, 14), (14, 42), (70, 70), (98, 42), (479, 641),
                 (1000, 1000), (3000, 20), (1, 200), (2, 400), (768, 1024), (1080, 1920)]:
        for mn, mx in [(3136, 1003520), (3136, 50176), (28 * 28 * 24, 28 * 28 * 40)]:
            rh, rw = smart_resize(h, w, 28, mn, mx)
            sizes.append({"height": h, "width": w, "min_pixels": mn, "max_pixels": mx,
                          "resized": [rh, rw]})
    refused = []
    for h, w in [(1, 201), (2, 401), (401, 2), (1, 1000)]:
        try:
            smart_resize(h, w, 28, 3136, 1003520)
        except ValueError:
            refused.append([h, w])
    assert len(refused) == 4, refused
    with open(os.path.join(OUT, "processor.json"), "w") as f:
        json.dump({"cases": cases, "smart_resize": sizes, "refused": refused}, f, indent=1)
        f.write("\n")
    print(f"processor: {len(cases)} cases, {len(sizes)} sizes")


VOCAB, VISION_START, VISION_END, IMAGE_PAD, VIDEO_PAD = 300, 290, 291, 292, 293
MODEL_IMAGES = [("shared", "chelsea.jpg"), ("inputs", "odd_641x479.png"),
                ("inputs", "tall_7x300.jpg")]


def tiny_config(kind):
    text = {"vocab_size": VOCAB, "hidden_size": 64, "intermediate_size": 96,
            "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
            "max_position_embeddings": 512, "rms_norm_eps": 1e-6, "hidden_act": "silu",
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0,
                                "mrope_section": [2, 3, 3]},
            "bos_token_id": 1, "eos_token_id": 2, "tie_word_embeddings": False}
    if kind == "qwen2_vl":
        from transformers import Qwen2VLConfig as Config
        vision = {"depth": 2, "embed_dim": 32, "hidden_size": 64, "hidden_act": "quick_gelu",
                  "mlp_ratio": 2, "num_heads": 2, "in_channels": 3, "patch_size": 8,
                  "spatial_merge_size": 2, "temporal_patch_size": 2}
    else:
        from transformers import Qwen2_5_VLConfig as Config
        vision = {"depth": 4, "hidden_size": 32, "out_hidden_size": 64, "hidden_act": "silu",
                  "intermediate_size": 48, "num_heads": 2, "in_channels": 3, "patch_size": 8,
                  "spatial_merge_size": 2, "temporal_patch_size": 2, "window_size": 32,
                  "fullatt_block_indexes": [1, 3], "tokens_per_second": 2}
    return Config(text_config=text, vision_config=vision, image_token_id=IMAGE_PAD,
                  video_token_id=VIDEO_PAD, vision_start_token_id=VISION_START,
                  vision_end_token_id=VISION_END, bos_token_id=1, eos_token_id=2,
                  tie_word_embeddings=False)


def image_path(testdata, where, file):
    return os.path.join(testdata, "images", file) if where == "shared" else \
        os.path.join(ROOT, "tests", "fixtures", "images", "inputs", file)


def make_model(kind, testdata):
    import torch
    from transformers import AutoModelForImageTextToText
    from transformers.image_transforms import convert_to_rgb
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import \
        Qwen2VLImageProcessorPil
    torch.manual_seed(14 if kind == "qwen2_vl" else 25)
    config = tiny_config(kind)
    model = AutoModelForImageTextToText.from_config(config).float().eval()
    # Random init leaves norms at 1/0: perturb every parameter so each one matters. Weights are
    # rounded to bfloat16 and stored so (half the fixture size); the reference runs in float32.
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
            p.copy_(p.bfloat16().float())
    folder = os.path.join(ROOT, "tests", "fixtures", "models", kind)
    os.makedirs(folder, exist_ok=True)
    # A bf16 copy of the weights only: model.to(bfloat16) would also round the rotary inv_freq
    # buffers the float32 reference then uses.
    model.save_pretrained(folder, state_dict={k: v.bfloat16()
                                              for k, v in model.state_dict().items()})
    pconf = processor_config({"min_pixels": 16 * 16 * 2, "max_pixels": 16 * 16 * 12,
                              "patch_size": 8})
    with open(os.path.join(folder, "preprocessor_config.json"), "w") as f:
        json.dump(pconf, f, indent=2)
        f.write("\n")
    proc = Qwen2VLImageProcessorPil(**{k: v for k, v in pconf.items()
                                       if k != "image_processor_type"})
    ref = {"images": [], "prompts": []}
    feats = []
    offset = 0
    inputs = {}
    for where, file in MODEL_IMAGES:
        img = convert_to_rgb(Image.open(image_path(testdata, where, file)))
        out = proc(images=[img], return_tensors="pt")
        inputs[file] = out
        with torch.no_grad():
            f = model.model.get_image_features(out["pixel_values"], out["image_grid_thw"])
        f = f.pooler_output if hasattr(f, "pooler_output") else f
        f = torch.cat(list(f), 0) if isinstance(f, (list, tuple)) else f
        f = f.float().numpy()
        feats.append(f.reshape(-1))
        ref["images"].append({"where": where, "file": file,
                              "grid_thw": out["image_grid_thw"][0].tolist(),
                              "features_offset": offset, "features_shape": list(f.shape)})
        offset += f.size
    np.concatenate(feats).astype("<f4").tofile(os.path.join(folder, "features.f32"))
    prompts = {"one_image": ([5, 6, 7], ["chelsea.jpg"], [8, 9, 10, 11]),
               "two_images": ([5, 6], ["odd_641x479.png", "tall_7x300.jpg"], [12, 13, 14])}
    for name, (head, files, tail) in prompts.items():
        ids = list(head)
        grids = []
        for i, file in enumerate(files):
            grid = inputs[file]["image_grid_thw"]
            n = int(grid.prod()) // 4
            ids += [VISION_START] + [IMAGE_PAD] * n + [VISION_END] + ([20 + i] if i == 0 else [])
            grids.append(grid)
        ids += tail
        input_ids = torch.tensor([ids])
        pixel_values = torch.cat([inputs[f]["pixel_values"] for f in files], 0)
        grid_thw = torch.cat(grids, 0)
        mm = {"mm_token_type_ids": (input_ids == IMAGE_PAD).int()}
        with torch.no_grad():
            pos, deltas = model.model.get_rope_index(input_ids, (input_ids == IMAGE_PAD).int(),
                                                     image_grid_thw=grid_thw,
                                                     attention_mask=torch.ones_like(input_ids))
            logits = model(input_ids=input_ids, pixel_values=pixel_values,
                           image_grid_thw=grid_thw, **mm).logits[0].float().numpy()
            gen = model.generate(input_ids=input_ids, pixel_values=pixel_values,
                                 image_grid_thw=grid_thw, max_new_tokens=8, do_sample=False, **mm,
                                 attention_mask=torch.ones_like(input_ids))
        logits.astype("<f4").tofile(os.path.join(folder, f"logits_{name}.f32"))
        ref["prompts"].append({"name": name, "images": files, "input_ids": ids,
                               "position_ids": pos[:, 0, :].tolist(),
                               "rope_delta": int(deltas.reshape(-1)[0]),
                               "logits_file": f"logits_{name}.f32",
                               "generate_ids": gen[0, len(ids):].tolist()})
    with open(os.path.join(folder, "reference.json"), "w") as f:
        json.dump(ref, f, indent=1)
        f.write("\n")
    print(kind, "images", [i["grid_thw"] for i in ref["images"]],
          "prompt lengths", [len(p["input_ids"]) for p in ref["prompts"]])


VIDEO_FPS = {"qwen2_vl": 2.0, "qwen2_5_vl": 3.0}  # 3: 12 frames, second_per_grid_t 2/3


def sample_clip(testdata, fps):
    """fetch_video on tools/make_video_fixtures.py's clip: (frames TCHW, sample_fps, indices)."""
    import subprocess
    import sys
    import tempfile
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from make_video_fixtures import ffmpeg_command, read_video_pyav
    from qwen_vl_utils import vision_process as vp
    vp.VIDEO_READER_BACKENDS["torchvision"] = read_video_pyav
    vp.FORCE_QWENVL_VIDEO_READER = "torchvision"
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "clip.mov")
        subprocess.run(ffmpeg_command(testdata, path), check=True)
        (video, meta), sample_fps = vp.fetch_video(
            {"video": path, "fps": fps}, image_patch_size=8, return_video_sample_fps=True,
            return_video_metadata=True)
    return video, sample_fps, [int(i) for i in meta["frames_indices"]]


def make_video(kind, testdata):
    import torch
    from transformers import AutoModelForImageTextToText, Qwen2VLVideoProcessor
    folder = os.path.join(ROOT, "tests", "fixtures", "models", kind)
    model = AutoModelForImageTextToText.from_pretrained(folder, dtype=torch.float32).eval()
    with open(os.path.join(folder, "preprocessor_config.json")) as f:
        pconf = json.load(f)
    proc = Qwen2VLVideoProcessor(**{k: pconf[k] for k in (
        "min_pixels", "max_pixels", "patch_size", "temporal_patch_size", "merge_size")})
    video, sample_fps, indices = sample_clip(testdata, VIDEO_FPS[kind])
    out = proc(videos=[video], do_sample_frames=False, cap_pixels_per_frame=False,
               return_tensors="pt")
    grid = out["video_grid_thw"]
    prompt = [5, 6, VISION_START, VIDEO_PAD, VISION_END, 8, 9, 10]
    n = int(grid.prod()) // proc.merge_size ** 2
    ids = prompt[:3] + [VIDEO_PAD] * n + prompt[4:]
    input_ids = torch.tensor([ids])
    mm = {"mm_token_type_ids": (input_ids == VIDEO_PAD).int() * 2}
    extra = {}
    if kind == "qwen2_5_vl":  # Qwen2_5_VLProcessor: a list of floats, a float32 tensor in "pt"
        extra["second_per_grid_ts"] = torch.tensor([proc.temporal_patch_size / sample_fps])
    ones = torch.ones_like(input_ids)
    with torch.no_grad():
        pos, deltas = model.model.get_rope_index(input_ids, mm["mm_token_type_ids"],
                                                 video_grid_thw=grid, attention_mask=ones,
                                                 **extra)
        logits = model(input_ids=input_ids, pixel_values_videos=out["pixel_values_videos"],
                       video_grid_thw=grid, **mm, **extra).logits[0].float().numpy()
        feats = model.model.get_video_features(out["pixel_values_videos"], grid)
        feats = feats.pooler_output if hasattr(feats, "pooler_output") else feats
        feats = torch.cat(list(feats), 0) if isinstance(feats, (list, tuple)) else feats
        gen = model.generate(input_ids=input_ids, pixel_values_videos=out["pixel_values_videos"],
                             video_grid_thw=grid, max_new_tokens=8, do_sample=False, **mm,
                             **extra, attention_mask=ones)
    logits.astype("<f4").tofile(os.path.join(folder, "logits_video.f32"))
    feats.float().numpy().astype("<f4").tofile(os.path.join(folder, "video_features.f32"))
    with open(os.path.join(folder, "reference.json")) as f:
        ref = json.load(f)
    ref["video"] = {"clip": "tools/make_video_fixtures.py", "fps": VIDEO_FPS[kind],
                    "frame_indices": indices, "sample_fps": sample_fps,
                    "second_per_grid_t": proc.temporal_patch_size / sample_fps,
                    "grid_thw": grid[0].tolist(), "prompt_ids": prompt, "input_ids": ids,
                    "position_ids": pos[:, 0, :].tolist(),
                    "rope_delta": int(deltas.reshape(-1)[0]), "logits_file": "logits_video.f32",
                    "features_file": "video_features.f32", "features_shape": list(feats.shape),
                    "generate_ids": gen[0, len(ids):].tolist()}
    with open(os.path.join(folder, "reference.json"), "w") as f:
        json.dump(ref, f, indent=1)
        f.write("\n")
    print(kind, "video", indices, "grid", grid[0].tolist(), "tokens", len(ids),
          "time positions", sorted(set(pos[0, 0, 3:3 + n].tolist())))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("what", nargs="*", default=["processor"])
    parser.add_argument("--testdata", default=os.path.join(ROOT, "..", "shared", "testdata"))
    args = parser.parse_args()
    if "processor" in args.what:
        make_processor(args.testdata)
    if "models" in args.what:
        for kind in ("qwen2_vl", "qwen2_5_vl"):
            make_model(kind, args.testdata)
    if "video" in args.what:
        for kind in ("qwen2_vl", "qwen2_5_vl"):
            make_video(kind, args.testdata)


if __name__ == "__main__":
    main()
