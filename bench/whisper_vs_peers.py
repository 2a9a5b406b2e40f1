#!/usr/bin/env python3
"""Whisper transcription speed: af-cli transcribe against faster-whisper (CTranslate2) and
whisper.cpp on the same float32 weights, 2 threads, greedy (beam 1, best-of 1, no temperature
fallback), runs alternating between the tools; wall time, real-time factor (wall / audio) and
CPU time (user + system: steadier than wall time on a machine shared with other work).

Inputs: testdata/audio/jfk_16k.wav (11 s) and a 5-minute WAV made at run time from the three
shared clips with 1 s of silence after each, repeated. Wall times are whole processes for
af-cli and whisper-cli (model load included); faster-whisper is timed inside its Python process
from WhisperModel() to the last segment (interpreter start and imports excluded, in its favour).

All three tools get the whole file and do their own long-form decoding (af-cli transcribe: one
process, sequential 30 s windows with timestamp seeking as transformers' long-form generate).
Long-form needs timestamp tokens (transformers refuses it without them, and af-cli forces them
on), so faster-whisper decodes the long file with timestamps too (`without_timestamps=False`:
the same 30 s windows seeking to the last timestamp, the same extra timestamp tokens); jfk (one
window) runs without timestamps in all tools. Input `long_nots` is the same file without
timestamps: faster-whisper's `without_timestamps=True` (fixed 30 s windows, <|notimestamps|>)
against af-cli's `--features faster-whisper` (the same loop, its windows decoded side by side,
`--batch-windows`, default 4; whisper.cpp is not run on it).

  bench/whisper_vs_peers.py --size base [--reps 3] [--threads 2] [--json OUT]
Needs: build/apps/cli/af-cli, AF_MODELS (scripts/fetch_models.sh), /work/peers/whisper-venv
(faster-whisper), whisper.cpp built in /work/peers/whisper.cpp/build (cmake -DGGML_NATIVE=ON)
with a ggml file from bench/whisper_ggml_model.py in /work/peers/whisper.cpp/models-af/SIZE/.
"""
import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import wave

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CLIPS = ["jfk_16k.wav", "speech_alice_16k.wav", "speech_fox_16k.wav"]
RATE = 16000

FW_SCRIPT = r"""
import sys, time, json
from faster_whisper import WhisperModel
path, audio, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
timestamps = sys.argv[4] == "1"
t0, c0 = time.perf_counter(), time.process_time()
m = WhisperModel(path, device="cpu", compute_type="float32", cpu_threads=threads)
segs, info = m.transcribe(audio, language="en", beam_size=1, best_of=1, temperature=0.0,
                          vad_filter=False,
                          condition_on_previous_text=False, without_timestamps=not timestamps)
text = " ".join(s.text.strip() for s in segs)
print(json.dumps({"seconds": time.perf_counter() - t0, "cpu": time.process_time() - c0,
                  "text": text}))
"""


def read_wav(path):
    with wave.open(path) as w:
        assert w.getframerate() == RATE and w.getsampwidth() == 2 and w.getnchannels() == 1, path
        return np.frombuffer(w.readframes(w.getnframes()), np.int16)


def write_wav(path, samples):
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(samples.astype(np.int16).tobytes())


def make_long(testdata, seconds, out_dir):
    """The clips + 1 s silence, repeated to `seconds`."""
    silence = np.zeros(RATE, np.int16)
    unit = np.concatenate([p for c in CLIPS for p in (read_wav(os.path.join(testdata, c)), silence)])
    n = seconds * RATE
    long = np.tile(unit, n // len(unit) + 1)[:n]
    path = os.path.join(out_dir, f"long_{seconds}s.wav")
    write_wav(path, long)
    return path


def cpu_of_children():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def timed(cmd, env=None):
    """(wall s, CPU s of user + system, stdout) of one process."""
    t0, c0 = time.perf_counter(), cpu_of_children()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    seconds, cpu = time.perf_counter() - t0, cpu_of_children() - c0
    if r.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr[-2000:]}")
    return seconds, cpu, r.stdout


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", default="base", choices=["tiny", "base"])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--long-seconds", type=int, default=300)
    ap.add_argument("--models", default=os.environ.get(
        "AF_MODELS", os.path.expanduser("~/.cache/alloyforge/models")))
    ap.add_argument("--testdata", default=os.path.join(ROOT, "../shared/testdata/audio"))
    ap.add_argument("--af-cli", default=os.path.join(ROOT, "build/apps/cli/af-cli"))
    ap.add_argument("--af-args", default="", help="extra af-cli flags, e.g. '--quantize bf16'")
    ap.add_argument("--fw-python", default="/work/peers/whisper-venv/bin/python")
    ap.add_argument("--whisper-cpp", default="/work/peers/whisper.cpp")
    ap.add_argument("--skip", nargs="*", default=[], help="tools to leave out: af fw wcpp")
    ap.add_argument("--inputs", nargs="*", default=["jfk", "long", "long_nots"])
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    hf = os.path.join(args.models, f"whisper-{args.size}")
    ct2 = hf + "-ct2"
    ggml = os.path.join(args.whisper_cpp, "models-af", args.size, "ggml-model-f32.bin")
    wcli = os.path.join(args.whisper_cpp, "build/bin/whisper-cli")
    t = str(args.threads)
    # English given to all three (no language detection: whisper.cpp would encode twice for it).
    # OpenMP's default spin-waiting burns the other thread's core when the machine is busy.
    wcpp_env = dict(os.environ, OMP_WAIT_POLICY="passive")
    af_lang = ["--language", "en"] if args.size == "base" else []  # tiny.en has no language tokens

    tmp = tempfile.mkdtemp(prefix="af_whisper_bench_")
    long_path = make_long(args.testdata, args.long_seconds, tmp)
    inputs = {"jfk": (os.path.join(args.testdata, "jfk_16k.wav"), 11.0),
              "long": (long_path, float(args.long_seconds)),
              "long_nots": (long_path, float(args.long_seconds))}
    with wave.open(inputs["jfk"][0]) as w:
        inputs["jfk"] = (inputs["jfk"][0], w.getnframes() / RATE)

    def af(audio, name):
        nots = ["--features", "faster-whisper"] if name == "long_nots" else []
        s, c, out = timed([args.af_cli, "transcribe", "-m", hf, "--audio", audio, "-t", t] +
                          af_lang + nots + args.af_args.split())
        return s, c, " ".join(out.split())

    def fw(audio, name):
        timestamps = "1" if name == "long" else "0"
        r = subprocess.run([args.fw_python, "-c", FW_SCRIPT, ct2, audio, t, timestamps],
                           capture_output=True, text=True, check=True)
        j = json.loads(r.stdout.strip().splitlines()[-1])
        return j["seconds"], j["cpu"], j["text"]

    def wcpp(audio, name):
        if name == "long_nots":
            return float("nan"), float("nan"), ""
        s, c, out = timed([wcli, "-m", ggml, "-f", audio, "-t", t, "-bs", "1", "-bo", "1", "-nf",
                           "-nt", "-np", "-l", "en"], wcpp_env)
        return s, c, " ".join(out.split())

    tools = {"af": af, "fw": fw, "wcpp": wcpp}
    tools = {k: v for k, v in tools.items() if k not in args.skip}
    results = {}
    for name in args.inputs:
        audio, seconds = inputs[name]
        times = {k: [] for k in tools}
        cpus = {k: [] for k in tools}
        texts = {}
        for rep in range(args.reps):
            for k, fn in tools.items():  # alternating: one run of each tool per round
                s, c, text = fn(audio, name)
                times[k].append(s)
                cpus[k].append(c)
                texts[k] = text
                print(f"{name} rep {rep} {k}: {s:.2f} s wall, {c:.2f} s CPU", file=sys.stderr)
        results[name] = {"audio_seconds": seconds, "tools": {
            k: {"median_s": statistics.median(v), "runs_s": v,
                "median_cpu_s": statistics.median(cpus[k]), "runs_cpu_s": cpus[k],
                "rtf": statistics.median(v) / seconds, "text": texts[k][:200]}
            for k, v in times.items()}}
    label = {"af": "af-cli", "fw": "faster-whisper", "wcpp": "whisper.cpp"}
    print(f"Whisper {args.size}, float32, {args.threads} threads, greedy, median of {args.reps} "
          f"({platform.processor() or platform.machine()}, {time.strftime('%Y-%m-%d %H:%M')})")
    print("| input | tool | wall s | RTF | af speed-up (wall) | CPU s | af speed-up (CPU) |")
    print("|---|---|---|---|---|---|---|")
    for name, r in results.items():
        af_s = r["tools"].get("af", {}).get("median_s")
        for k, v in r["tools"].items():
            tool = label[k]
            af_c = r["tools"].get("af", {}).get("median_cpu_s")
            ratio = f"{v['median_s'] / af_s:.2f}x" if af_s and k != "af" else ""
            cratio = f"{v['median_cpu_s'] / af_c:.2f}x" if af_c and k != "af" else ""
            print(f"| {name} ({r['audio_seconds']:.0f} s) | {tool} {args.af_args} | "
                  f"{v['median_s']:.2f} | {v['rtf']:.3f} | {ratio} | {v['median_cpu_s']:.2f} | "
                  f"{cratio} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"size": args.size, "threads": args.threads, "af_args": args.af_args,
                       "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
