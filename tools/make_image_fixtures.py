#!/usr/bin/env python3
"""Writes the image fixtures of tests/unit/test_image*.cpp into tests/fixtures/images/.

- inputs/: small synthetic images made with PIL in every mode/format the decoders handle
  (RGBA, palette + tRNS, LA, 16-bit RGB and gray PNG, gray and CMYK JPEG, progressive JPEG, GIF
  with transparency, lossy and lossless WebP, BMP, odd sizes 1x1, 7x300, 641x479).
- configs/<name>/preprocessor_config.json: CLIP 224/336 (and a non-square crop, bilinear and
  lanczos variants), SigLIP 224/384 (and a non-square size), LLaVA-NeXT with grid pinpoints.
- decoded.json: per input (these and ../shared/testdata/images), width, height and the SHA-256 of
  the RGB8 pixels after transformers' convert_to_rgb, hashed as af::modalities::Image::hash() does
  (uint32 LE width, height, then the pixels).
- pixel_values.json + pixel_values.f32: per (config, image) the shape, float64 sum and sum of
  squares, SHA-256 of the full float32 array, and a strided sample of its values.

Needs pillow, numpy and transformers (5.x; its PIL backend is used when torchvision is absent).
Usage: tools/make_image_fixtures.py [--testdata ../shared/testdata]
"""
import argparse
import hashlib
import io
import json
import os
import struct

import numpy as np
from PIL import Image
from transformers import AutoImageProcessor
from transformers.image_transforms import convert_to_rgb

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "images")
SAMPLES = 1024

CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


def clip(edge, crop_h, crop_w, resample=3):
    return {"image_processor_type": "CLIPImageProcessor", "do_convert_rgb": True,
            "do_resize": True, "size": {"shortest_edge": edge}, "resample": resample,
            "do_center_crop": True, "crop_size": {"height": crop_h, "width": crop_w},
            "do_rescale": True, "rescale_factor": 0.00392156862745098, "do_normalize": True,
            "image_mean": CLIP_MEAN, "image_std": CLIP_STD}


def siglip(h, w):
    return {"image_processor_type": "SiglipImageProcessor", "do_convert_rgb": True,
            "do_resize": True, "size": {"height": h, "width": w}, "resample": 3,
            "do_rescale": True, "rescale_factor": 0.00392156862745098, "do_normalize": True,
            "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]}


def llava_next():
    c = clip(336, 336, 336)
    c.update({"image_processor_type": "LlavaNextImageProcessor", "do_pad": True,
              "image_grid_pinpoints": [[336, 672], [672, 336], [672, 672], [1008, 336],
                                       [336, 1008]]})
    return c


CONFIGS = {
    "clip224": clip(224, 224, 224),
    "clip336": clip(336, 336, 336),
    "clip_crop_nonsquare": clip(240, 224, 200),
    "clip224_bilinear": clip(224, 224, 224, resample=2),
    "clip224_lanczos": clip(224, 224, 224, resample=1),
    "clip224_box": clip(224, 224, 224, resample=4),
    "clip224_hamming": clip(224, 224, 224, resample=5),
    "siglip224": siglip(224, 224),
    "siglip384": siglip(384, 384),
    "siglip_nonsquare": siglip(160, 256),
    "llava_next": llava_next(),
    # Legacy integer sizes, and the rescale/normalise steps switched off one at a time.
    "clip_legacy_ints": dict(clip(224, 224, 224), size=224, crop_size=200),
    "clip_no_normalize": dict(clip(224, 224, 224), do_normalize=False),
    "siglip_no_rescale": dict(siglip(224, 224), do_rescale=False, image_mean=[127.5] * 3,
                              image_std=[127.5] * 3),
}
# Every config runs on the shared images; these on every synthetic input too.
ALL_INPUT_CONFIGS = ["clip336", "siglip224", "siglip_nonsquare", "llava_next"]


def gradient(w, h, seed):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    r = (x * 255 // max(w - 1, 1)).astype(np.uint8)
    g = (y * 255 // max(h - 1, 1)).astype(np.uint8)
    b = ((x + y) * 7 % 256).astype(np.uint8)
    img = np.stack([r, g, b], -1)
    # A noisy patch so that the resampling sees high frequencies.
    ph, pw = min(h, 24), min(w, 24)
    img[:ph, :pw] = rng.integers(0, 256, (ph, pw, 3), dtype=np.uint8)
    return img


def make_inputs(folder):
    os.makedirs(folder, exist_ok=True)
    rgb = gradient(64, 48, 1)
    alpha = np.tile(np.arange(64, dtype=np.uint8) * 4 + 3, (48, 1))
    alpha[:, 0] = 0
    alpha[:, -1] = 255
    Image.fromarray(np.dstack([rgb, alpha]), "RGBA").save(f"{folder}/rgba.png")
    Image.fromarray(np.dstack([rgb[..., 0], alpha]), "LA").save(f"{folder}/la.png")
    pal = Image.fromarray(rgb).quantize(colors=37, method=Image.Quantize.MEDIANCUT)
    pal.save(f"{folder}/palette.png")
    pal.save(f"{folder}/palette_trns.png", transparency=5)
    wide = (rgb.astype(np.uint16) * 257 + np.uint16(31)).astype(">u2")
    write_png_raw(f"{folder}/rgb16.png", wide, 2, depth=16)
    Image.fromarray((np.arange(48 * 64, dtype=np.uint16).reshape(48, 64) * 7)).save(
        f"{folder}/gray16.png")
    Image.fromarray(rgb[..., 1]).save(f"{folder}/gray.jpg", quality=90)
    Image.fromarray(rgb).convert("CMYK").save(f"{folder}/cmyk.jpg", quality=90)
    Image.fromarray(gradient(641, 479, 2)).save(f"{folder}/odd_641x479.jpg", quality=85)
    Image.fromarray(gradient(641, 479, 3)).save(f"{folder}/odd_641x479.png")
    Image.fromarray(gradient(120, 90, 4)).save(f"{folder}/progressive.jpg", quality=80,
                                               progressive=True, subsampling="4:2:2")
    Image.fromarray(gradient(7, 300, 5)).save(f"{folder}/tall_7x300.jpg", quality=95,
                                              subsampling="4:4:4")
    Image.fromarray(np.array([[[200, 30, 70]]], dtype=np.uint8)).save(f"{folder}/pixel_1x1.png")
    pal.save(f"{folder}/transparent.gif", transparency=3)
    Image.fromarray(rgb).save(f"{folder}/lossy.webp", quality=80)
    Image.fromarray(np.dstack([rgb, alpha]), "RGBA").save(f"{folder}/alpha.webp", lossless=True)
    Image.fromarray(rgb).save(f"{folder}/rgb.bmp")
    Image.fromarray(rgb).save(f"{folder}/rgb_trns.png", transparency=(255, 255, 7))
    Image.fromarray(rgb[..., 2]).save(f"{folder}/gray_trns.png", transparency=7)
    Image.fromarray(rgb[..., 0] > 128).save(f"{folder}/bilevel.png")
    Image.fromarray(rgb[..., 0] // 64 * 64).convert("L").save(f"{folder}/gray2bit.png", bits=2)
    second = Image.fromarray(gradient(64, 48, 9)[::-1].copy())
    Image.fromarray(rgb).save(f"{folder}/animated.gif", save_all=True, append_images=[second],
                              duration=100, loop=0)
    Image.fromarray(rgb).save(f"{folder}/animated.webp", save_all=True, append_images=[second],
                              duration=100, loop=0, quality=80)
    write_png_raw(f"{folder}/interlaced_rgba.png", np.dstack([rgb, alpha]), 6, interlaced=True)
    rgba16 = np.dstack([rgb, alpha]).astype(np.uint16) * 257 + np.uint16(100)
    write_png_raw(f"{folder}/rgba16.png", rgba16.astype(">u2"), 6, depth=16)


def write_png_raw(path, pixels, color_type, depth=8, interlaced=False):
    """A PNG written by hand (PIL writes neither Adam7 nor 16-bit colour): filter 0 rows."""
    import zlib
    h, w = pixels.shape[:2]
    if interlaced:  # Adam7: seven sub-images, empty ones left out
        passes = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4),
                  (1, 0, 2, 2), (0, 1, 1, 2)]
        subs = [pixels[y0::dy, x0::dx] for x0, y0, dx, dy in passes]
    else:
        subs = [pixels]
    raw = b"".join(b"\x00" + sub[y].tobytes() for sub in subs if sub.size
                   for y in range(sub.shape[0]))

    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data +
                struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    ihdr = struct.pack(">IIBBBBB", w, h, depth, color_type, 0, 0, int(interlaced))
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) +
                chunk(b"IEND", b""))


def image_hash(rgb):
    h, w, _ = rgb.shape
    return hashlib.sha256(struct.pack("<II", w, h) + rgb.tobytes()).hexdigest()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--testdata", default=os.path.join(ROOT, "..", "shared", "testdata"))
    args = parser.parse_args()
    inputs = os.path.join(OUT, "inputs")
    make_inputs(inputs)
    for name, config in CONFIGS.items():
        os.makedirs(f"{OUT}/configs/{name}", exist_ok=True)
        with open(f"{OUT}/configs/{name}/preprocessor_config.json", "w") as f:
            json.dump(config, f, indent=2)
            f.write("\n")

    shared = sorted(os.listdir(os.path.join(args.testdata, "images")))
    images = [("shared", n) for n in shared] + [("inputs", n) for n in sorted(os.listdir(inputs))]
    decoded = []
    for where, name in images:
        path = os.path.join(args.testdata, "images", name) if where == "shared" else \
            os.path.join(inputs, name)
        rgb = convert_to_rgb(Image.open(path), return_numpy=True)
        decoded.append({"where": where, "file": name, "width": rgb.shape[1],
                        "height": rgb.shape[0], "sha256": image_hash(rgb),
                        "sum": int(rgb.astype(np.int64).sum())})
    with open(f"{OUT}/decoded.json", "w") as f:
        json.dump(decoded, f, indent=1)
        f.write("\n")

    # PIL's Image.resize of one decoded image to sizes that enlarge and shrink each axis.
    source = convert_to_rgb(Image.open(os.path.join(inputs, "progressive.jpg")), return_numpy=True)
    resized = []
    for filt in (1, 2, 3, 4, 5):
        for w, h in [(200, 40), (40, 200), (121, 89), (119, 91), (60, 45), (240, 180), (1, 1),
                     (7, 300), (300, 7), (120, 45), (33, 90)]:
            out = np.array(Image.fromarray(source).resize((w, h), resample=filt))
            resized.append({"filter": filt, "width": w, "height": h, "sha256": image_hash(out)})
    with open(f"{OUT}/resize.json", "w") as f:
        json.dump({"file": "progressive.jpg", "cases": resized}, f, indent=1)
        f.write("\n")

    cases, blob = [], io.BytesIO()
    for cname in CONFIGS:
        proc = AutoImageProcessor.from_pretrained(f"{OUT}/configs/{cname}")
        assert type(proc).__name__.endswith("Pil"), type(proc).__name__
        for where, name in images:
            if where != "shared" and cname not in ALL_INPUT_CONFIGS:
                continue
            path = os.path.join(args.testdata, "images", name) if where == "shared" else \
                os.path.join(inputs, name)
            pv = np.asarray(proc(images=Image.open(path), return_tensors="np")["pixel_values"][0])
            assert pv.dtype == np.float32, pv.dtype
            flat = pv.reshape(-1)
            stride = max(1, flat.size // SAMPLES)
            sample = flat[::stride]
            cases.append({"config": cname, "where": where, "file": name,
                          "shape": list(pv.shape), "sum": float(flat.astype(np.float64).sum()),
                          "sumsq": float((flat.astype(np.float64) ** 2).sum()),
                          "sha256": hashlib.sha256(flat.tobytes()).hexdigest(),
                          "stride": stride, "offset": blob.tell() // 4, "count": sample.size})
            blob.write(sample.astype("<f4").tobytes())
    with open(f"{OUT}/pixel_values.f32", "wb") as f:
        f.write(blob.getvalue())
    with open(f"{OUT}/pixel_values.json", "w") as f:
        json.dump(cases, f, indent=1)
        f.write("\n")
    print(f"{len(decoded)} decoded images, {len(cases)} pixel-value cases")


if __name__ == "__main__":
    main()
