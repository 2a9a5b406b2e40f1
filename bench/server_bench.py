#!/usr/bin/env python3
"""Aggregate generation throughput of af-server at several numbers of concurrent clients.

  bench/server_bench.py --server build/apps/server/af-server -m MODEL [--clients 1,4,8,16]
                        [--max-tokens 128] [--requests 2] [--parallel 16] [--threads 0]
  bench/server_bench.py --url http://127.0.0.1:8080 ...   (an already running OpenAI-compatible
                                                          server, e.g. llama-cpp-python's)

Each client sends --requests completions one after another (distinct prompts, temperature 0,
max_tokens fixed); aggregate tokens/s = completion tokens of all clients / wall time. Only the
Python standard library is used. Not a test: numbers depend on the machine and its load.
"""
import argparse
import http.client
import json
import signal
import socket
import subprocess
import threading
import time
import urllib.parse

PROMPTS = ["Once upon a time", "The little dog", "Lily and Tom went", "One day, a big",
           "The sun was", "A cat sat", "Tim had a red", "Mom said", "The bird flew",
           "Sam found a", "In the park", "The old man", "Anna wanted to", "A big storm",
           "The toy car", "Ben and Mia"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def complete(host, port, prompt, max_tokens, model):
    conn = http.client.HTTPConnection(host, port, timeout=600)
    body = json.dumps({"model": model, "prompt": prompt, "max_tokens": max_tokens,
                       "temperature": 0})
    conn.request("POST", "/v1/completions", body, {"Content-Type": "application/json"})
    resp = conn.getresponse()
    data = json.loads(resp.read())
    conn.close()
    if resp.status != 200:
        raise RuntimeError(f"HTTP {resp.status}: {data}")
    return data["usage"]["completion_tokens"]


def run_level(host, port, clients, requests, max_tokens, model):
    tokens = [0] * clients

    def client(i):
        for r in range(requests):
            prompt = PROMPTS[(i * requests + r) % len(PROMPTS)]
            tokens[i] += complete(host, port, prompt, max_tokens, model)
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    t0 = time.time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.time() - t0
    return sum(tokens), seconds


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", help="af-server binary (started here)")
    ap.add_argument("-m", "--model", help="model path for af-server")
    ap.add_argument("--url", help="use a running server instead")
    ap.add_argument("--clients", default="1,4,8,16")
    ap.add_argument("--requests", type=int, default=2, help="requests per client")
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--parallel", type=int, default=16)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--ctx-size", type=int, default=0)
    args = ap.parse_args()

    proc = None
    if args.url:
        u = urllib.parse.urlparse(args.url)
        host, port = u.hostname, u.port or 80
    else:
        host, port = "127.0.0.1", free_port()
        cmd = [args.server, "-m", args.model, "--port", str(port), "--parallel",
               str(args.parallel), "--threads", str(args.threads)]
        if args.ctx_size:
            cmd += ["--ctx-size", str(args.ctx_size)]
        proc = subprocess.Popen(cmd, stderr=subprocess.DEVNULL)
        deadline = time.time() + 300
        while True:
            try:
                conn = http.client.HTTPConnection(host, port, timeout=5)
                conn.request("GET", "/health")
                if conn.getresponse().status == 200:
                    break
            except OSError:
                if time.time() > deadline or proc.poll() is not None:
                    raise SystemExit("af-server did not start")
                time.sleep(0.2)
    try:
        complete(host, port, "warm up", 8, "bench")
        results = []
        for clients in [int(c) for c in args.clients.split(",")]:
            tokens, seconds = run_level(host, port, clients, args.requests, args.max_tokens,
                                        "bench")
            results.append((clients, tokens, seconds))
            base = results[0][1] / results[0][2]
            rate = tokens / seconds
            print(f"clients {clients:3d}: {tokens:6d} tokens in {seconds:7.2f} s = "
                  f"{rate:9.1f} tok/s aggregate ({rate / base:.2f}x of {results[0][0]} client)",
                  flush=True)
    finally:
        if proc:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)


if __name__ == "__main__":
    main()
