#!/usr/bin/env python3
"""Reference outputs for the video path (tests/unit/test_video_processor.cpp).

Makes the same short video the test makes (Debian's ffmpeg CLI, 4 images from testdata/images
scaled to 160x120, 8 frames each at 8 fps, PNG in MOV: lossless RGB, so any decoder sees the
same pixels), runs qwen_vl_utils.fetch_video on it and transformers' Qwen2VLVideoProcessor on
the result, and writes small summaries (shape, grid, SHA-256 of the float32 values, a few
values) to tests/fixtures/video/qwen2_vl_video.json.

torchvision >= 0.22 has no io.read_video, which fetch_video's torchvision backend calls; the
backend is replaced by PyAV with the same frame selection lines (smart_nframes, linspace,
round), so everything after decoding is qwen_vl_utils' and transformers' own code.

Run: /work/pyref/bin/python tools/make_video_fixtures.py [--testdata ../shared/testdata]
(pip: torchvision==0.29.2 av==18.1.1 qwen-vl-utils==0.0.14 --no-deps)
"""
import argparse
import hashlib
import json
import os
import subprocess
import tempfile

import av
import numpy as np
import torch
from qwen_vl_utils import vision_process as vp
from transformers import Qwen2VLVideoProcessor
from transformers.video_utils import VideoMetadata

IMAGES = ["camera.png", "chelsea.jpg", "rocket.jpg", "llama1-logo.png"]


def ffmpeg_command(testdata, out):
    """The command tests/unit/test_video_processor.cpp runs (keep the two in step)."""
    cmd = ["ffmpeg", "-nostdin", "-v", "error", "-y"]
    for name in IMAGES:
        cmd += ["-loop", "1", "-t", "1", "-framerate", "8", "-i", os.path.join(testdata, "images", name)]
    chains = ";".join(f"[{i}]scale=160:120,setsar=1,format=rgb24[s{i}]" for i in range(4))
    graph = chains + ";" + "".join(f"[s{i}]" for i in range(4)) + "concat=n=4:v=1:a=0[v]"
    cmd += ["-filter_complex", graph, "-map", "[v]", "-c:v", "png", "-pix_fmt", "rgb24", out]
    return cmd


def read_video_pyav(ele):
    """_read_video_torchvision with PyAV decoding all frames in place of io.read_video."""
    with av.open(ele["video"]) as container:
        stream = container.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
        video_fps = float(stream.average_rate)
    video = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2)  # TCHW uint8
    total_frames = video.size(0)
    nframes = vp.smart_nframes(ele, total_frames=total_frames, video_fps=video_fps)
    idx = torch.linspace(0, total_frames - 1, nframes).round().long()
    sample_fps = nframes / max(total_frames, 1e-6) * video_fps
    meta = dict(fps=video_fps, frames_indices=idx, total_num_frames=total_frames, video_backend="pyav")
    return video[idx], meta, sample_fps


def summary(values, grid, extra):
    arr = values.numpy().astype("<f4")
    rows = arr.shape[0]
    picks = sorted({0, 1, rows // 2, rows - 1})
    return dict(
        shape=list(arr.shape),
        grid_thw=[int(x) for x in grid],
        sha256=hashlib.sha256(arr.tobytes()).hexdigest(),
        sum=float(arr.astype(np.float64).sum()),
        rows={str(r): [float(x) for x in arr[r, :6]] for r in picks},
        **extra,
    )


def run_file_case(path, ele, processor_kwargs):
    vp.VIDEO_READER_BACKENDS["torchvision"] = read_video_pyav
    vp.FORCE_QWENVL_VIDEO_READER = "torchvision"
    (video, meta), sample_fps = vp.fetch_video(dict(ele, video=path), return_video_sample_fps=True,
                                               return_video_metadata=True)
    proc = Qwen2VLVideoProcessor(**processor_kwargs)
    out = proc(videos=[video], do_sample_frames=False, cap_pixels_per_frame=False, return_tensors="pt")
    md = VideoMetadata(total_num_frames=meta["total_num_frames"], fps=meta["fps"],
                       frames_indices=[int(i) for i in meta["frames_indices"]])
    return summary(out["pixel_values_videos"], out["video_grid_thw"][0], dict(
        frame_indices=[int(i) for i in meta["frames_indices"]],
        frame_size=[int(video.shape[2]), int(video.shape[3])],
        sample_fps=sample_fps,
        second_per_grid_t=proc.temporal_patch_size / md.sampled_fps))


def crops(testdata):
    """The list-of-frames input: the top-left 96x72 of three test images (no resampling)."""
    from PIL import Image
    frames = []
    for name in IMAGES[:3]:
        img = Image.open(os.path.join(testdata, "images", name)).convert("RGB")
        frames.append(np.asarray(img)[:72, :96].copy())
    return frames


def main():
    ap = argparse.ArgumentParser()
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--testdata", default=os.path.join(here, "..", "..", "shared", "testdata"))
    ap.add_argument("--out", default=os.path.join(here, "..", "tests", "fixtures", "video",
                                                  "qwen2_vl_video.json"))
    args = ap.parse_args()
    cases = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "clip.mov")
        subprocess.run(ffmpeg_command(args.testdata, path), check=True)
        cases["file_default"] = run_file_case(path, {"fps": 2.0}, {})
        # Small frames under a tight total budget: downscaled, fps 4 capped at 6 frames.
        budget = {"fps": 4.0, "max_frames": 6, "min_pixels": 3136, "total_pixels": 3136 * 16}
        cases["file_budget"] = run_file_case(path, budget, {"min_pixels": 3136})
    frames = [torch.from_numpy(f).permute(2, 0, 1) for f in crops(args.testdata)]
    proc = Qwen2VLVideoProcessor(min_pixels=3136)
    out = proc(videos=[torch.stack(frames)], do_sample_frames=False, cap_pixels_per_frame=False,
               return_tensors="pt")
    cases["frames"] = summary(out["pixel_values_videos"], out["video_grid_thw"][0],
                              dict(second_per_grid_t=proc.temporal_patch_size / 2.0))
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(dict(generator="tools/make_video_fixtures.py", torch=torch.__version__,
                       cases=cases), f, indent=1)
    print(json.dumps({k: (v["shape"], v["grid_thw"]) for k, v in cases.items()}))


if __name__ == "__main__":
    main()
