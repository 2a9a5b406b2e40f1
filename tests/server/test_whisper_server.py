#!/usr/bin/env python3
"""af-server with a Whisper model as its own -m (no --whisper-model), through the official openai
client and raw HTTP:

  test_whisper_server.py --server build/apps/server/af-server --cli build/apps/cli/af-cli
  (or: AF_SERVER=... AF_CLI=... python -m pytest tests/server/test_whisper_server.py)

The tiny random Whisper fixture (tests/fixtures/whisper/tiny_ts) always; the real whisper-base
(or whisper-tiny) HF folder under AF_MODELS when it is set, skipped otherwise. Checks that
/v1/audio/transcriptions and /translations answer as af-cli transcribe does (word timestamps:
timestamp_granularities[]=word with verbose_json as af-cli --word-timestamps), that
/v1/chat/completions and /v1/completions answer 400 "... is a speech-recognition model" (and the
server stays up), that /v1/models lists the model with the audio modality, and that giving the
same model as -m and --whisper-model is refused at start. Exits non-zero on the first failure."""
import argparse
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

import openai

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = os.path.join(ROOT, "tests", "fixtures", "whisper", "tiny_ts")
BINARIES = {"server": os.environ.get("AF_SERVER", os.path.join(ROOT, "build/apps/server/af-server")),
            "cli": os.environ.get("AF_CLI", os.path.join(ROOT, "build/apps/cli/af-cli"))}


def testdata(*parts):
    base = os.environ.get("AF_TESTDATA") or os.path.join(ROOT, "..", "shared", "testdata")
    return os.path.join(base, *parts)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, model, *extra):
        self.port = free_port()
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen([BINARIES["server"], "-m", model, "--port", str(self.port),
                                      "--threads", "2", *extra], stderr=self.log)
        deadline = time.time() + 60
        while time.time() < deadline and self.proc.poll() is None:
            try:
                if self.request("GET", "/health")[0] == 200:
                    return
            except OSError:
                time.sleep(0.05)
        self.proc.kill()
        self.log.seek(0)
        raise RuntimeError("af-server did not start: " + self.log.read().decode(errors="replace"))

    @property
    def base_url(self):
        return f"http://127.0.0.1:{self.port}/v1"

    def request(self, method, path, body=None, headers=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        data = json.dumps(body) if isinstance(body, (dict, list)) else body
        conn.request(method, path, body=data, headers=headers or {})
        r = conn.getresponse()
        payload = r.read()
        conn.close()
        return r.status, json.loads(payload) if payload else None

    def stop(self):
        self.proc.terminate()
        try:
            return self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return -1


def check(condition, what):
    if not condition:
        raise AssertionError(what)


def cli_text(model, audio, *extra):
    out = subprocess.run([BINARIES["cli"], "transcribe", "-m", model, "--audio", audio, "-t", "2",
                          "--output-format", "json", *extra], capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout)["text"]


def cli_words(model, audio, *extra):
    """af-cli's --word-timestamps words as OpenAI's top-level words (word trimmed, start, end)."""
    out = subprocess.run([BINARIES["cli"], "transcribe", "-m", model, "--audio", audio, "-t", "2",
                          "--task", "transcribe", "--timestamps", "--word-timestamps",
                          "--output-format", "json", *extra],
                         capture_output=True, text=True, check=True)
    return [(w["word"].strip(), w["start"], w["end"])
            for s in json.loads(out.stdout)["segments"] for w in s.get("words", [])]


def check_word_granularity(server, client, model, model_id, audio, language):
    """timestamp_granularities[]=word with verbose_json: top-level words as OpenAI returns them,
    af-cli --word-timestamps' words; without verbose_json a 400."""
    kwargs = {"language": language} if language else {}
    with open(audio, "rb") as f:
        r = client.audio.transcriptions.create(model=model_id, file=f, **kwargs,
                                               response_format="verbose_json",
                                               timestamp_granularities=["word"])
    got = [(w.word, w.start, w.end) for w in r.words]
    want = cli_words(model, audio, *(["--language", language] if language else []))
    check(got and got == want, f"words {got!r} == af-cli's {want!r}")
    check(not getattr(r, "segments", None), "word granularity alone: no segments")
    if model != TINY:
        return  # the rest is the server's, not the model's: once, on the cheap model
    with open(audio, "rb") as f:
        both = client.audio.transcriptions.create(model=model_id, file=f, **kwargs,
                                                  response_format="verbose_json",
                                                  timestamp_granularities=["word", "segment"])
    check(both.segments and [(w.word, w.start, w.end) for w in both.words] == want,
          "word and segment granularities: both")
    try:
        with open(audio, "rb") as f:
            client.audio.transcriptions.create(model=model_id, file=f, response_format="json",
                                               timestamp_granularities=["word"])
        check(False, "word granularity with response_format json should fail")
    except openai.BadRequestError as e:
        check("verbose_json" in str(e), f"openai client's error: {e}")


def serve_whisper(model, language=None):
    """One server on `model`: transcription equal to af-cli's, translation, the text endpoints'
    400 and /v1/models."""
    jfk = testdata("audio", "jfk_16k.wav")
    lang = ["--language", language] if language else []
    server = Server(model)
    model_id = os.path.basename(model.rstrip("/"))
    try:
        client = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)
        with open(jfk, "rb") as f:
            kwargs = {"language": language} if language else {}
            r = client.audio.transcriptions.create(model=model_id, file=f, **kwargs)
        want = cli_text(model, jfk, "--task", "transcribe", *lang)
        check(r.text == want and r.text, f"transcription {r.text!r} == af-cli's {want!r}")
        check_word_granularity(server, client, model, model_id,
                               testdata("audio", "speech_fox_16k.wav"), language)
        with open(jfk, "rb") as f:
            tr = client.audio.translations.create(model=model_id, file=f)
        check(isinstance(tr.text, str), "translation answers text")

        for path, body in [("/v1/chat/completions",
                            {"model": model_id, "messages": [{"role": "user", "content": "hi"}]}),
                           ("/v1/completions", {"model": model_id, "prompt": "hi"})]:
            status, answer = server.request("POST", path, body,
                                            {"Content-Type": "application/json"})
            message = (answer or {}).get("error", {}).get("message", "")
            check(status == 400 and f"'{model_id}' is a speech-recognition model" in message,
                  f"{path}: {status} {answer!r}")
        try:
            client.chat.completions.create(model=model_id,
                                           messages=[{"role": "user", "content": "hi"}])
            check(False, "chat through the openai client should fail")
        except openai.BadRequestError as e:
            check("speech-recognition model" in str(e), f"openai client's error: {e}")

        models = client.models.list().data
        check([m.id for m in models] == [model_id], f"/v1/models: {[m.id for m in models]}")
        status, listed = server.request("GET", "/v1/models")
        check(listed["data"][0]["modalities"] == ["audio"], f"modalities: {listed!r}")
        status, health = server.request("GET", "/health")
        check(status == 200, "the server is up after the 400s")
    finally:
        check(server.stop() == 0, "whisper server exit code")


def test_tiny_fixture():
    serve_whisper(TINY)


def test_both_flags_refused():
    r = subprocess.run([BINARIES["server"], "-m", TINY, "--whisper-model", TINY, "--port",
                        str(free_port())], capture_output=True, text=True, timeout=60)
    check(r.returncode != 0 and "not both" in r.stderr, f"-m and --whisper-model: {r.stderr!r}")


def test_real_model():
    models = os.environ.get("AF_MODELS")
    path = next((os.path.join(models, n) for n in ("whisper-base", "whisper-tiny")
                 if models and os.path.isdir(os.path.join(models, n))), None)
    if path is None:
        try:
            import pytest
            pytest.skip("AF_MODELS is unset or has no whisper-base / whisper-tiny folder")
        except ImportError:
            print("skip real model: AF_MODELS is unset or has no whisper-base / whisper-tiny")
            return
    serve_whisper(path, "en" if path.endswith("base") else None)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", default=BINARIES["server"])
    ap.add_argument("--cli", default=BINARIES["cli"])
    args = ap.parse_args()
    BINARIES.update(server=args.server, cli=args.cli)
    failed = 0
    for name, fn in [("tiny fixture as -m", test_tiny_fixture),
                     ("-m and --whisper-model refused", test_both_flags_refused),
                     ("real Whisper as -m (AF_MODELS)", test_real_model)]:
        t0 = time.time()
        try:
            fn()
            print(f"ok   {name} ({time.time() - t0:.1f} s)")
        except Exception as e:  # report every test, then fail
            failed += 1
            print(f"FAIL {name}: {type(e).__name__}: {e}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
