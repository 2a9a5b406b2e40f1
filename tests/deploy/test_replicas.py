#!/usr/bin/env python3
"""Two af-server replicas behind nginx (deploy/nginx/af-replicas.conf), on loopback.

  test_replicas.py --server build/apps/server/af-server \
                   --model ../shared/testdata/models/stories260K-hf [--nginx /usr/sbin/nginx]

Checks, through the official openai client talking to nginx:
1. 16 concurrent streams spread over both replicas (least connections).
2. One replica killed (SIGKILL) while those streams run: every stream ends, within a bounded
   time, either complete (a finish_reason and the end of the stream) or with a client-visible
   error; none ends silently truncated, none hangs.
3. After the kill, 16 more concurrent streams all complete on the survivor.
4. Session affinity: requests with the same X-Session-Id header reach the same replica, and
   different ids reach both replicas.
Exits non-zero on the first failure."""
import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import openai

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROMPTS = ["Once upon a time", "The little dog", "Lily and Tom went", "One day, a big",
           "The sun was", "A cat sat", "Tim had a red", "Mom said"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url, deadline_s=30):
    end = time.time() + deadline_s
    while time.time() < end:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer 200 within {deadline_s} s")


def start_replica(server, model, port):
    proc = subprocess.Popen([server, "-m", model, "--port", str(port), "--threads", "1",
                             "--parallel", "8"], stderr=subprocess.DEVNULL)
    wait_http(f"http://127.0.0.1:{port}/health")
    return proc


def start_nginx(nginx, prefix, listen, replicas):
    with open(os.path.join(ROOT, "deploy", "nginx", "af-replicas.conf")) as f:
        conf = f.read()
    conf = (conf.replace("@PREFIX@", prefix).replace("@LISTEN@", f"127.0.0.1:{listen}")
            .replace("@REPLICA1@", replicas[0]).replace("@REPLICA2@", replicas[1]))
    if os.geteuid() == 0:
        conf = "user root;\n" + conf  # the workers write temp files under the test's folder
    path = os.path.join(prefix, "nginx.conf")
    with open(path, "w") as f:
        f.write(conf)
    subprocess.run([nginx, "-t", "-p", prefix, "-c", path], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    proc = subprocess.Popen([nginx, "-p", prefix, "-c", path, "-g", "daemon off;"],
                            stderr=subprocess.PIPE)
    wait_http(f"http://127.0.0.1:{listen}/health")
    return proc


class Stream:
    """One streaming chat completion in a thread; records how it ended."""

    def __init__(self, client, prompt, max_tokens):
        self.outcome = None  # "complete", "error: ..." or "truncated"
        self.chunks = 0
        self.upstream = None  # host:port of the replica that answered (nginx's X-Upstream)
        self.first_chunk = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(client, prompt, max_tokens))
        self.thread.start()

    def _run(self, client, prompt, max_tokens):
        try:
            finish = None
            raw = client.chat.completions.with_raw_response.create(
                model="m", messages=[{"role": "user", "content": prompt}],
                max_tokens=max_tokens, temperature=0, stream=True)
            self.upstream = raw.headers.get("x-upstream", "").split(", ")[-1]
            for chunk in raw.parse():
                self.chunks += 1
                self.first_chunk.set()
                if chunk.choices and chunk.choices[0].finish_reason:
                    finish = chunk.choices[0].finish_reason
            self.outcome = "complete" if finish else "truncated"
        except Exception as e:  # noqa: BLE001 (any client-visible error is a clean end)
            self.outcome = f"error: {type(e).__name__}"
        finally:
            self.first_chunk.set()


def run_wave(client, n, max_tokens, during=None):
    streams = [Stream(client, PROMPTS[i % len(PROMPTS)], max_tokens) for i in range(n)]
    if during:
        during(streams)
    deadline = time.time() + 120
    for s in streams:
        s.thread.join(max(0.0, deadline - time.time()))
    hung = [i for i, s in enumerate(streams) if s.thread.is_alive()]
    if hung:
        raise AssertionError(f"streams {hung} still running after 120 s")
    return streams


def upstream_of(port, session):
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/chat/completions",
        data=b'{"messages":[{"role":"user","content":"Hi"}],"max_tokens":2}',
        headers={"Content-Type": "application/json", "X-Session-Id": session})
    with urllib.request.urlopen(req, timeout=30) as r:
        assert r.status == 200, r.status
        return r.headers["X-Upstream"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--nginx", default=shutil.which("nginx") or "/usr/sbin/nginx")
    args = ap.parse_args()

    prefix = tempfile.mkdtemp(prefix="af-replicas-")
    os.chmod(prefix, 0o755)
    ports = [free_port(), free_port()]
    listen = free_port()
    replicas = [start_replica(args.server, args.model, p) for p in ports]
    nginx = start_nginx(args.nginx, prefix, listen, [f"127.0.0.1:{p}" for p in ports])
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{listen}/v1", api_key="none",
                           max_retries=0, timeout=60)
    try:
        # 4. Affinity first, while both replicas are up.
        for session in ("alice", "bob", "carol", "dave"):
            seen = {upstream_of(listen, session) for _ in range(5)}
            assert len(seen) == 1, f"session {session} reached {seen}"
        spread = {upstream_of(listen, f"s{i}") for i in range(16)}
        assert len(spread) == 2, f"16 session ids all reached {spread}"
        print("ok  session affinity: same X-Session-Id -> same replica; ids spread over both")

        # 1. Both replicas serve a wave of 16 streams.
        streams = run_wave(client, 16, 64)
        bad = [s.outcome for s in streams if s.outcome != "complete"]
        assert not bad, f"with both replicas up: {bad}"
        print("ok  16 concurrent streams through nginx, all complete")

        # 2. Kill one replica while 16 streams run.
        def kill_when_streaming(wave):
            # As soon as any stream produces, so the killed replica has streams in flight.
            deadline = time.time() + 30
            while not any(s.chunks for s in wave) and time.time() < deadline:
                time.sleep(0.001)
            replicas[0].send_signal(signal.SIGKILL)
            running = [s.upstream for s in wave if s.outcome is None]
            print(f"    killed replica 1 with {len(running)} streams running on {running}")

        streams = run_wave(client, 16, 400, during=kill_when_streaming)
        outcomes = [s.outcome for s in streams]
        truncated = [i for i, o in enumerate(outcomes) if o == "truncated"]
        assert not truncated, f"streams {truncated} ended without finish_reason or error"
        complete = sum(o == "complete" for o in outcomes)
        errors = [o for o in outcomes if o.startswith("error")]
        assert complete >= 1, f"no stream completed: {outcomes}"
        print(f"ok  replica killed mid-run: {complete} complete, {len(errors)} clean errors "
              f"({sorted(set(errors))}), none truncated or hung")

        # 3. The survivor serves everything that comes after.
        streams = run_wave(client, 16, 64)
        bad = [s.outcome for s in streams if s.outcome != "complete"]
        assert not bad, f"after the kill: {bad}"
        survivor = f"127.0.0.1:{ports[1]}"
        after = {upstream_of(listen, f"s{i}").split(", ")[-1] for i in range(8)}
        assert after == {survivor}, f"after the kill requests reached {after}"
        print("ok  after the kill: 16 concurrent streams complete on the survivor; sessions moved")
    finally:
        nginx.terminate()
        for r in replicas:
            if r.poll() is None:
                r.terminate()
        for p in [nginx, *replicas]:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(prefix, ignore_errors=True)
    print("all replica checks passed")


if __name__ == "__main__":
    sys.exit(main())
