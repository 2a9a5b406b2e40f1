#!/usr/bin/env python3
"""Integration test of af-server with the official openai client, curl and raw sockets.

  test_server.py --server build/apps/server/af-server --cli build/apps/cli/af-cli \
                 --model ../shared/testdata/models/stories260K-hf

Starts af-server on free loopback ports and checks: chat, completion, streaming, usage, stop,
seeds, logprobs, n, errors (status codes and error objects), --api-key, 8 parallel streaming
clients each getting the text it gets alone, a client killed mid-stream freeing its slot, a burst
beyond capacity answered 503 + Retry-After, malformed requests mixed into load, greedy output equal
to `af-cli run --temp 0`, ids the tokenizer does not assign, HTTP limits (bodies, heads, slow
clients, connection caps, second bind), non-streaming clients that close, reset or half-close having their
generation cancelled, and SIGTERM: graceful, late arrivals 503, streams cut at the deadline ending
with an error event and [DONE], the exit within the grace period, a second SIGTERM exiting at
once. Exits non-zero on the first failure."""
import argparse
import gzip
import http.client
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import wave

import openai

import structured_outputs
import tool_calling

PROMPTS = ["Once upon a time", "The little dog", "Lily and Tom went", "One day, a big",
           "The sun was", "A cat sat", "Tim had a red", "Mom said"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, binary, model, *extra, env=None):
        self.port = free_port()
        self.proc = subprocess.Popen(
            [binary, "-m", model, "--port", str(self.port), "--threads", "1", *extra],
            stderr=subprocess.PIPE, text=True, env=env)
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                if self.request("GET", "/health")[0] == 200:
                    return
            except OSError:
                time.sleep(0.05)
        self.proc.kill()
        raise RuntimeError("af-server did not start: " + self.proc.stderr.read())

    @property
    def base_url(self):
        return f"http://127.0.0.1:{self.port}/v1"

    def request(self, method, path, body=None, headers=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        payload = body if isinstance(body, (bytes, str)) or body is None else json.dumps(body)
        conn.request(method, path, body=payload, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        return resp.status, data, dict(resp.getheaders())

    def metric(self, name):
        text = self.request("GET", "/metrics")[1].decode()
        m = re.search("^" + re.escape(name) + r" (\S+)$", text, re.M)
        return float(m.group(1)) if m else 0.0

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=20)
        self.proc.stderr.close()
        return code


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def expect_error(server, path, body, status, code=None, param=None, headers=None):
    got, data, hdrs = server.request("POST", path, body, headers)
    check(got == status, f"{path} {str(body)[:80]!r}: status {got}, expected {status}: {data[:200]}")
    err = json.loads(data)["error"]
    check(set(err) >= {"message", "type", "param", "code"}, f"error object {err}")
    if code is not None:
        check(err["code"] == code, f"code {err['code']} != {code}")
    if param is not None:
        check(err["param"] == param, f"param {err['param']} != {param}")
    return hdrs


def stream_text(client, prompt, max_tokens=40, **kw):
    text, finish = "", None
    for chunk in client.completions.create(model="m", prompt=prompt, max_tokens=max_tokens,
                                           temperature=0, stream=True, **kw):
        if chunk.choices:
            text += chunk.choices[0].text
            finish = chunk.choices[0].finish_reason or finish
    return text, finish


def test_basics(server, client, args):
    models = client.models.list()
    check(models.data[0].id == os.path.basename(args.model.rstrip("/")), "model id")

    chat = client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "Tell me a story."}], max_tokens=12,
        temperature=0)
    check(chat.object == "chat.completion", "chat object")
    check(chat.choices[0].message.role == "assistant" and chat.choices[0].message.content,
          "chat message")
    check(chat.choices[0].finish_reason in ("stop", "length"), "finish_reason")
    u = chat.usage
    check(u.completion_tokens <= 12 and u.total_tokens == u.prompt_tokens + u.completion_tokens,
          f"usage {u}")

    # Greedy over the API equals af-cli run --temp 0.
    cli = subprocess.run([args.cli, "run", "-m", args.model, "-p", "Once upon a time", "-n", "48",
                          "--temp", "0"], capture_output=True, text=True, check=True).stdout
    comp = client.completions.create(model="m", prompt="Once upon a time", max_tokens=48,
                                     temperature=0)
    check(comp.object == "text_completion", "completion object")
    check(comp.choices[0].text == cli[:-1], f"API {comp.choices[0].text!r} != CLI {cli!r}")
    check(comp.usage.completion_tokens == 48 and comp.choices[0].finish_reason == "length",
          f"completion usage {comp.usage} {comp.choices[0].finish_reason}")

    # Streaming gives the same text, a finish_reason and, when asked, a usage chunk.
    chunks = list(client.completions.create(model="m", prompt="Once upon a time", max_tokens=48,
                                            temperature=0, stream=True,
                                            stream_options={"include_usage": True}))
    check("".join(c.choices[0].text for c in chunks if c.choices) == comp.choices[0].text,
          "streamed text")
    check(chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 48, "usage chunk")
    check(any(c.choices and c.choices[0].finish_reason == "length" for c in chunks),
          "stream finish_reason")
    text = ""
    for c in client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "Tell me a story."}], max_tokens=12,
            temperature=0, stream=True):
        text += c.choices[0].delta.content or ""
    check(text == chat.choices[0].message.content, "streamed chat")

    # Stop strings end the text before them.
    full = comp.choices[0].text
    stop = full[20:24]
    stopped = client.completions.create(model="m", prompt="Once upon a time", max_tokens=48,
                                        temperature=0, stop=["zzzz", stop])
    check(stopped.choices[0].text == full[:full.index(stop)], "stop text")
    check(stopped.choices[0].finish_reason == "stop", "stop finish_reason")
    check(stream_text(client, "Once upon a time", 48, stop=stop) == (full[:full.index(stop)],
                                                                    "stop"), "streamed stop")

    # Seeds reproduce; n gives n choices; logprobs come back.
    def sample(seed, n=1):
        r = client.completions.create(model="m", prompt="Once upon a time", max_tokens=30,
                                      temperature=1.0, seed=seed, n=n)
        return [c.text for c in r.choices]
    a, b, c = sample(123), sample(123), sample(124)
    check(a == b and a != c, "seed reproducibility")
    two = sample(123, n=2)
    check(len(two) == 2 and two[0] == a[0], "n=2")
    lp = client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "Hi"}], max_tokens=5, temperature=0,
        logprobs=True, top_logprobs=3)
    content = lp.choices[0].logprobs.content
    check(len(content) == lp.usage.completion_tokens and len(content[0].top_logprobs) == 3,
          "logprobs")
    check(content[0].logprob == content[0].top_logprobs[0].logprob, "greedy takes the top logprob")
    # Streaming with n = 2: both choices stream, each ends with its own finish_reason, and each
    # equals the non-streamed choice for the same seed.
    texts, finishes = ["", ""], [None, None]
    for c in client.completions.create(model="m", prompt="Once upon a time", max_tokens=30,
                                       temperature=1.0, seed=123, n=2, stream=True):
        for ch in c.choices:
            texts[ch.index] += ch.text
            finishes[ch.index] = ch.finish_reason or finishes[ch.index]
    check(texts == two and finishes == ["length", "length"], f"streamed n=2 {texts} {finishes}")
    legacy = client.completions.create(model="m", prompt="Once upon a time", max_tokens=4,
                                       temperature=0, logprobs=2)
    lp = legacy.choices[0].logprobs
    check(len(lp.tokens) == 4 and len(lp.top_logprobs[0]) == 2 and
          "".join(lp.tokens) == legacy.choices[0].text, f"legacy logprobs {lp}")


def test_sse_framing(server):
    body = json.dumps({"prompt": "Once upon a time", "max_tokens": 10, "temperature": 0,
                       "stream": True})
    out = subprocess.run(["curl", "-sN", "-H", "Content-Type: application/json", "-d", body,
                          server.base_url + "/completions"], capture_output=True, text=True,
                         check=True).stdout
    check(out.endswith("data: [DONE]\n\n"), "stream ends with [DONE]")
    # Events are "data: JSON", or ": comment" keep-alives while the request waits.
    events = [e for e in out.split("\n\n")[:-1] if not e.startswith(": ")]
    check(all(e.startswith("data: ") and "\n" not in e for e in events), f"SSE events: {out!r}")
    check(events[-1] == "data: [DONE]", "last event")
    for e in events[:-1]:
        json.loads(e[len("data: "):])


def test_errors(server, client):
    with_msgs = {"messages": [{"role": "user", "content": "x"}]}
    expect_error(server, "/v1/chat/completions", "{not json", 400, "invalid_json")
    expect_error(server, "/v1/chat/completions", {"messages": "x"}, 400, "invalid_type", "messages")
    expect_error(server, "/v1/chat/completions", {**with_msgs, "temperature": "x"}, 400,
                 "invalid_type", "temperature")
    expect_error(server, "/v1/completions", {"prompt": "a " * 600}, 400,
                 "context_length_exceeded", "prompt")
    expect_error(server, "/v1/completions", {"prompt": "a", "max_tokens": 100000}, 400,
                 "context_length_exceeded", "prompt")
    expect_error(server, "/v1/completions", {"prompt": [1, 99999]}, 400)
    expect_error(server, "/v1/completions", b"{" + b" " * (9 << 20) + b"}", 413)
    expect_error(server, "/v1/nope", {}, 404)
    expect_error(server, "/v1/completions", {"prompt": ["a"] * 16, "n": 16}, 400, "invalid_value",
                 "n")
    # Unknown fields are ignored, as llama.cpp's and vLLM's servers do.
    status, _, _ = server.request("POST", "/v1/chat/completions",
                                  {**with_msgs, "max_tokens": 2, "frobnicate": [1]})
    check(status == 200, "unknown field ignored")
    try:
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}],
                                       n=0)
        check(False, "n=0 accepted")
    except openai.BadRequestError as e:
        check(e.status_code == 400 and e.body["param"] == "n", f"client error {e.body}")


def test_parallel_streams(server, client):
    alone = [stream_text(client, p, 60)[0] for p in PROMPTS]
    t0 = time.time()
    single = stream_text(client, PROMPTS[0], 60)[0]
    single_s = time.time() - t0
    results = [None] * len(PROMPTS)

    def worker(i):
        results[i] = stream_text(client, PROMPTS[i], 60)[0]
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(PROMPTS))]
    t0 = time.time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    together_s = time.time() - t0
    check(results == alone, f"parallel != alone:\n{results}\n{alone}")
    tokens = 60 * len(PROMPTS)
    print(f"  8 streams: {tokens / together_s:.0f} tok/s aggregate vs "
          f"{60 / single_s:.0f} tok/s one client alone (wall clock, stories260K)")
    check(single == alone[0], "single")


def test_kill_mid_stream(server):
    cancelled_before = server.metric('af_generations_total{finish_reason="cancelled"}')
    body = json.dumps({"prompt": "Once upon a time", "max_tokens": 400, "temperature": 0,
                       "stream": True, "logit_bias": {"2": -100}}).encode()
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    got = b""
    while got.count(b"data: ") < 3:
        got += sock.recv(4096)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    sock.close()  # RST: the client is gone
    deadline = time.time() + 5
    while time.time() < deadline:
        if (server.metric('af_generations_total{finish_reason="cancelled"}') > cancelled_before
                and server.metric("af_slots_busy") == 0):
            break
        time.sleep(0.01)
    check(server.metric('af_generations_total{finish_reason="cancelled"}') > cancelled_before,
          "killed client's generation was cancelled")
    check(server.metric("af_slots_busy") == 0, "slot freed")


def raw_post(port, path, body, stream=False):
    """Sends a POST on a fresh connection (Connection: close, so that reading to the end
    reads one response) and returns the socket, response unread."""
    data = json.dumps({**body, "stream": stream}).encode()
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 f"Connection: close\r\nContent-Length: {len(data)}\r\n\r\n".encode() + data)
    return sock


def read_all(sock, timeout=30):
    sock.settimeout(timeout)
    out = b""
    try:
        while True:
            got = sock.recv(65536)
            if not got:
                break
            out += got
    except (ConnectionResetError, socket.timeout):
        pass
    sock.close()
    return out


def wait_slots_free(server, within):
    deadline = time.time() + within
    while time.time() < deadline:
        if server.metric("af_slots_busy") == 0 and server.metric("af_queue_depth") == 0:
            return True
        time.sleep(0.01)
    return False


# Enough work for a 1-slot server with LONG_CTX to be busy for seconds: 8 choices of 2000
# tokens each (EOS banned), computed one after the other (stories260K makes ~5000 tokens/s).
LONG_CTX = ("--parallel", "1", "--ctx-size", "2048")
LONG = {"prompt": "Once upon a time", "max_tokens": 2000, "temperature": 0, "n": 8,
        "logit_bias": {"2": -100}}


def test_disconnect_frees_slot(args):
    """A non-streaming client that goes away (close, or reset) has its generation cancelled:
    its choices end "cancelled" in the metrics, most of its tokens are never generated, and the
    next request on the 1-slot server is answered at once instead of after the abandoned one."""
    server = Server(args.server, args.model, *LONG_CTX)
    try:
        disconnect_frees_slot(server)
    finally:
        check(server.stop() == 0, "exit code")


def disconnect_frees_slot(server):
    for how in ("close", "reset"):
        cancelled = server.metric('af_generations_total{finish_reason="cancelled"}')
        generated = server.metric("af_generated_tokens_total")
        sock = raw_post(server.port, "/v1/completions", LONG)
        deadline = time.time() + 10
        while server.metric("af_slots_busy") == 0 and time.time() < deadline:
            time.sleep(0.005)
        check(server.metric("af_slots_busy") == 1, "the long request runs")
        t0 = time.time()
        if how == "reset":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
        sock.close()
        status, data, _ = server.request("POST", "/v1/completions",
                                         {"prompt": "Hi", "max_tokens": 4, "temperature": 0})
        took = time.time() - t0
        print(f"  client {how}: the next request answered {took:.2f} s after the disconnect")
        check(status == 200 and json.loads(data)["usage"]["completion_tokens"] == 4,
              f"next request {status} {data[:200]}")
        check(took < 1.0, f"the abandoned request held the slot for {took:.2f} s ({how})")
        check(wait_slots_free(server, 2), "slots free")
        check(server.metric('af_generations_total{finish_reason="cancelled"}') - cancelled == 8,
              f"all 8 choices of the abandoned request cancelled ({how})")
        check(server.metric("af_generated_tokens_total") - generated < 8 * 2000 // 4,
              f"the abandoned request was generated on ({how})")
        check(server.metric('af_http_requests_total{path="/v1/completions",status="499"}') > 0,
              "the abandoned request is counted as 499")


def test_half_close_long(args):
    """A client that half-closes after its request is not taken for gone while its answer can
    still reach it (it gets the whole answer); when the HTTP layer cannot write to a
    half-closed connection (cpp-httplib 0.11), the generation is cancelled at once instead of
    running for nobody (it ran to its end, 8 s, on 7a16acc)."""
    server = Server(args.server, args.model, *LONG_CTX)
    try:
        sock = raw_post(server.port, "/v1/completions", LONG)
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(2)
        try:
            first = sock.recv(65536)
        except socket.timeout:
            first = b""
        if first:
            out = first + read_all(sock, timeout=60)
            head, _, body = out.partition(b"\r\n\r\n")
            check(head.startswith(b"HTTP/1.1 200"), f"half-closed answer {out[:300]!r}")
            if b"chunked" in head.lower():
                chunks, rest = b"", body
                while rest:
                    size, _, rest = rest.partition(b"\r\n")
                    chunks, rest = chunks + rest[:int(size, 16)], rest[int(size, 16) + 2:]
                body = chunks
            usage = json.loads(body)["usage"]
            check(usage["completion_tokens"] == 8 * 2000, f"answer usage {usage}")
        else:
            sock.close()
            check(wait_slots_free(server, 1), "a half-closed client that cannot be answered "
                  "still holds the slot")
        status, _, _ = server.request("POST", "/v1/completions",
                                      {"prompt": "Hi", "max_tokens": 2})
        check(status == 200, "served after a half-closed client")
    finally:
        check(server.stop() == 0, "exit code")


def sse_events(raw):
    """The data events of a raw chunked SSE response (the chunk framing dropped)."""
    body = raw.partition(b"\r\n\r\n")[2]
    text, rest, size = b"", body, b""
    while rest:
        size, sep, rest = rest.partition(b"\r\n")
        if not sep or not size.strip():
            break
        n = int(size, 16)
        if n == 0:
            break
        text, rest = text + rest[:n], rest[n + 2:]
    events = [e[6:] for e in text.decode(errors="replace").split("\n\n")
              if e.startswith("data: ")]
    return events, size.strip() == b"0"


def sigterm_with_streams(args, grace, n_streams, max_tokens, during=None, ctx=2048):
    """Starts a 1-slot server with the given grace period, n_streams streams of max_tokens and a
    client that sends its request body slowly; sends SIGTERM once every stream is admitted,
    calls during() 0.1 s later, and returns (seconds from the signal to the exit, each stream's
    ending: "length" or "error"). Checks the exit code and that every stream ends properly: its
    chunked body complete, [DONE] last, before it a finish_reason or an error event, never a
    "cancelled" finish_reason."""
    server = Server(args.server, args.model, "--parallel", "1", "--ctx-size", str(ctx),
                    "--shutdown-grace", str(grace))
    body = {**LONG, "n": 1, "max_tokens": max_tokens}
    streams = [raw_post(server.port, "/v1/completions", body, stream=True)
               for _ in range(n_streams)]
    slow = socket.create_connection(("127.0.0.1", server.port))
    slow.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
    raws = [b""] * n_streams

    def reader(i):
        raws[i] = streams[i].recv(1)  # its headers came: it is admitted
        raws[i] += read_all(streams[i])
    readers = [threading.Thread(target=reader, args=(i,)) for i in range(n_streams)]
    for r in readers:
        r.start()
    deadline = time.time() + 10
    while not all(raws) and time.time() < deadline:
        time.sleep(0.005)
    t0 = time.time()
    server.proc.send_signal(signal.SIGTERM)
    if during:
        time.sleep(0.1)
        during(server)
    code = server.proc.wait(timeout=60)
    took = time.time() - t0
    server.proc.stderr.close()
    check(code == 0, f"exit code {code}")
    for r in readers:
        r.join()
    endings = []
    for raw in raws:
        events, complete = sse_events(raw)
        check(complete, f"chunked body ends with its last chunk: ...{raw[-200:]!r}")
        check(events and events[-1] == "[DONE]", f"stream ends with [DONE]: {events[-3:]}")
        last = json.loads(events[-2])
        if "error" in last:
            check(last["error"]["code"] == "shutting_down", f"error event {last}")
            endings.append("error")
        else:
            check(last["choices"][0]["finish_reason"] == "length", f"finished stream {last}")
            endings.append("length")
        check(all('"cancelled"' not in e for e in events), "no cancelled finish_reason")
    read_all(slow, timeout=1)
    return took, endings


def test_sigterm_late_arrival(args):
    """SIGTERM: a request arriving after the signal gets 503 JSON, streams in flight finish, a
    client sending its request slowly does not hold the exit (it did for the 30 s read
    timeout), and the process exits within the grace period."""
    def late_arrival(server):
        status, data, headers = server.request("POST", "/v1/completions", {"prompt": "a"})
        check(status == 503 and json.loads(data)["error"]["code"] == "shutting_down",
              f"late arrival: {status} {data[:200]}")
        check("Retry-After" in headers, "late arrival Retry-After")
    grace = 5.0  # the stream (2000 tokens, about 0.5 s) finishes long before 4 s
    took, endings = sigterm_with_streams(args, grace, 1, 2000, late_arrival)
    print(f"  exit {took:.2f} s after SIGTERM (grace {grace} s), streams {endings}")
    check(endings == ["length"], f"the in-flight stream finished: {endings}")
    check(took <= grace + 0.5, f"exit took {took:.2f} s, grace {grace} s")


def test_sigterm_cancels_at_deadline(args):
    """SIGTERM with more work queued than the grace period allows: what still runs at
    grace - min(1 s, grace/2) ends with an error event and [DONE], and the exit comes within
    the grace period."""
    # cancels at 2 s; the 8 x 8000 tokens take ten times longer. 8, not more: the queue holds 8
    # (max(8, 4 x 1 slot)), and a stream not yet taken into the slot would count against it
    grace = 3.0
    took, endings = sigterm_with_streams(args, grace, 8, 8000, ctx=8192)
    print(f"  exit {took:.2f} s after SIGTERM (grace {grace} s), streams {endings}")
    check("error" in endings, f"streams cut by the deadline end with an error event: {endings}")
    check(took <= grace + 0.5, f"exit took {took:.2f} s, grace {grace} s")


def test_sigterm_racing_requests(args):
    """Streams requested over and over while SIGTERM arrives: each gets a complete stream
    ([DONE] and the chunked terminator), or 503 JSON, or no response at all (the listener or
    its connection closed before a byte was sent); never 200 headers and then the end."""
    server = Server(args.server, args.model, "--parallel", "1", "--shutdown-grace", "2")
    outcomes = []
    stop = threading.Event()

    def client():
        while not stop.is_set():
            try:
                sock = raw_post(server.port, "/v1/completions",
                                {"prompt": "Once upon a time", "max_tokens": 50,
                                 "temperature": 0}, stream=True)
            except OSError:
                return  # refused: the listener is closed
            outcomes.append(read_all(sock, timeout=10))
    clients = [threading.Thread(target=client) for _ in range(4)]
    for c in clients:
        c.start()
    time.sleep(0.3)
    server.proc.send_signal(signal.SIGTERM)
    code = server.proc.wait(timeout=30)
    stop.set()
    for c in clients:
        c.join()
    server.proc.stderr.close()
    check(code == 0, f"exit code {code}")
    counts = {"complete": 0, "503": 0, "none": 0}
    for raw in outcomes:
        if not raw:
            counts["none"] += 1
        elif raw.startswith(b"HTTP/1.1 503"):
            body = raw.partition(b"\r\n\r\n")[2]
            check(body.startswith(b"{"), f"503 body: {raw!r}")
            err = json.loads(body)["error"]
            check(err["code"] == "shutting_down", f"503 {err}")
            counts["503"] += 1
        else:
            check(raw.startswith(b"HTTP/1.1 200"), f"response {raw[:200]!r}")
            events, complete = sse_events(raw)
            check(complete and events[-1] == "[DONE]", f"200 cut short: ...{raw[-200:]!r}")
            counts["complete"] += 1
    print(f"  {len(outcomes)} requests around the signal: {counts}")
    check(counts["complete"] > 0 and counts["503"] > 0, f"outcomes {counts}")


def sigterm_busy_request_thread(args, grace, signals):
    """Starts a server with a request thread busy in CPU work (tokenizing a 4 MiB prompt takes
    seconds; tokenization now polls the shutdown, and the exit timer covers any work that does
    not), sends SIGTERM `signals` times 0.2 s
    apart and returns (seconds from the first signal to the exit, the server's log)."""
    server = Server(args.server, args.model, "--parallel", "1", "--shutdown-grace", str(grace))
    sock = raw_post(server.port, "/v1/completions",
                    {"prompt": "Once upon a time " * (4 << 16), "max_tokens": 1})
    time.sleep(0.5)  # the body is read; the handler is tokenizing
    t0 = time.time()
    for i in range(signals):
        if i:
            time.sleep(0.2)
        server.proc.send_signal(signal.SIGTERM)
    code = server.proc.wait(timeout=60)
    took = time.time() - t0
    log = server.proc.stderr.read()
    server.proc.stderr.close()
    sock.close()
    check(code == 0, f"exit code {code}")
    return took, log


def test_sigterm_busy_request_thread(args):
    """A busy request thread does not hold the exit past the grace period (it held it until
    its work ended: 20 s with the default 10 s grace on 7a16acc)."""
    grace = 1.0
    took, log = sigterm_busy_request_thread(args, grace, 1)
    forced = "exiting without it" in log
    print(f"  exit {took:.2f} s after SIGTERM (grace {grace} s)"
          f"{', past the busy thread' if forced else ''}")
    check(took <= grace + 0.5, f"exit took {took:.2f} s, grace {grace} s")


def test_second_sigterm(args):
    """A second SIGTERM exits at once, whatever the grace period and the threads are doing: here
    8 streams of 8000 tokens that the 30 s grace period would let run for about 20 s."""
    server = Server(args.server, args.model, "--parallel", "1", "--ctx-size", "8192",
                    "--shutdown-grace", "30")
    body = {**LONG, "n": 1, "max_tokens": 8000}
    streams = [raw_post(server.port, "/v1/completions", body, stream=True) for _ in range(8)]
    deadline = time.time() + 10
    while server.metric("af_slots_busy") == 0 and time.time() < deadline:
        time.sleep(0.005)
    t0 = time.time()
    server.proc.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    server.proc.send_signal(signal.SIGTERM)
    code = server.proc.wait(timeout=60)
    took = time.time() - t0
    log = server.proc.stderr.read()
    server.proc.stderr.close()
    for sock in streams:
        sock.close()
    print(f"  exit {took:.2f} s after the first SIGTERM, 0.2 s after the second")
    check(code == 0, f"exit code {code}")
    check(took <= 0.2 + 0.5, f"exit took {took:.2f} s")
    check("second signal" in log, f"log: {log[-300:]}")


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"^VmRSS:\s+(\d+)", f.read(), re.M).group(1))


def test_burst(server):
    """More requests than slots + queue at once, malformed ones mixed in: every request gets
    exactly one answer, 200 / 503 with Retry-After / 400, and the server stays healthy."""
    good = {"prompt": "Once upon a time", "max_tokens": 300, "temperature": 0,
            "logit_bias": {"2": -100}}
    bodies = []
    for i in range(40):
        bodies.append(b"{oops" if i % 5 == 4 else json.dumps(good).encode())
    answers = [None] * len(bodies)

    def worker(i):
        try:
            answers[i] = server.request("POST", "/v1/completions", bodies[i],
                                        {"Content-Type": "application/json"})
        except OSError as e:
            answers[i] = (e, b"", {})
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(bodies))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    statuses = [a[0] for a in answers]
    errors = [(i, a[0]) for i, a in enumerate(answers) if not isinstance(a[0], int)]
    check(not errors, f"requests without an answer: {errors}")
    for i, (status, data, headers) in enumerate(answers):
        if i % 5 == 4:
            check(status == 400, f"malformed got {status}")
        elif status == 503:
            check("Retry-After" in headers, "Retry-After")
            check(json.loads(data)["error"]["code"] == "server_overloaded", "overload code")
        else:
            check(status == 200, f"status {status}")
            check(json.loads(data)["usage"]["completion_tokens"] == 300, "complete answer")
    check(statuses.count(503) > 0, f"no 503 in a burst beyond capacity: {statuses}")
    check(statuses.count(200) > 0, "some requests served")
    check(server.request("GET", "/health")[0] == 200, "healthy after the burst")
    check(server.metric("af_slots_busy") == 0 and server.metric("af_queue_depth") == 0, "idle")


def test_burst_memory(server):
    """Repeated bursts do not grow the server's memory: after the first one (slot caches and
    thread stacks committed), more bursts return to the same resident size."""
    test_burst(server)
    baseline = rss_kib(server.proc.pid)
    for _ in range(3):
        test_burst(server)
    after = rss_kib(server.proc.pid)
    check(after <= baseline * 1.1 + 4096, f"RSS grew from {baseline} KiB to {after} KiB")


def test_api_key(args):
    server = Server(args.server, args.model, "--api-key", "sekret", "--parallel", "1")
    try:
        try:
            openai.OpenAI(base_url=server.base_url, api_key="wrong",
                          max_retries=0).models.list()
            check(False, "wrong key accepted")
        except openai.AuthenticationError as e:
            check(e.status_code == 401, "401")
        expect_error(server, "/v1/completions", {"prompt": "a"}, 401, "invalid_api_key")
        ok = openai.OpenAI(base_url=server.base_url, api_key="sekret", max_retries=0)
        check(ok.completions.create(model="m", prompt="a", max_tokens=2).choices, "right key")
        check(server.request("GET", "/health")[0] == 200, "health needs no key")
    finally:
        check(server.stop() == 0, "exit code")


def write_holed_model(model, dest, holes):
    """A copy of the HF folder `model` whose tokenizer.json lacks the ids `holes` (holes of the id
    space, or padding rows past it) while the embedding keeps all its rows."""
    import shutil
    for name in os.listdir(model):
        if name != "tokenizer.json":
            shutil.copy(os.path.join(model, name), dest)
    with open(os.path.join(model, "tokenizer.json")) as f:
        tok = json.load(f)
    vocab = tok["model"]["vocab"]
    removed = {p for p, i in vocab.items() if i in holes}
    tok["model"]["vocab"] = {p: i for p, i in vocab.items() if i not in holes}
    tok["model"]["merges"] = [m for m in tok["model"]["merges"]
                              if not ({*m.split(" "), m.replace(" ", "")} & removed)]
    with open(os.path.join(dest, "tokenizer.json"), "w") as f:
        json.dump(tok, f)


def test_unassigned_ids(server, args):
    """Ids the tokenizer does not assign: 400 in prompts, never generated nor among top_logprobs
    (they used to abort the process at admission or in the SSE writer)."""
    import tempfile
    # The ids the model's greedy continuation picks become holes.
    status, data, _ = server.request("POST", "/v1/completions", {
        "prompt": "Once upon a time", "max_tokens": 8, "temperature": 0, "logprobs": 5})
    check(status == 200, f"status {status}: {data[:200]}")
    picked = {t for t in json.loads(data)["choices"][0]["logprobs"]["tokens"]}
    with tempfile.TemporaryDirectory() as dest:
        with open(os.path.join(args.model, "tokenizer.json")) as f:
            vocab = json.load(f)["model"]["vocab"]
        holes = {i for p, i in vocab.items() if p.replace("\u2581", " ") in picked and i > 2} | {511}
        write_holed_model(args.model, dest, holes)
        holed = Server(args.server, dest, "--parallel", "2")
        try:
            for hole in sorted(holes)[:2]:
                expect_error(holed, "/v1/completions", {"prompt": [1, hole], "max_tokens": 2},
                             400, "invalid_value", "prompt")
            for stream in (False, True):
                status, data, _ = holed.request("POST", "/v1/completions", {
                    "prompt": "Once upon a time", "max_tokens": 16, "temperature": 0,
                    "logprobs": 20, "stream": stream})
                check(status == 200, f"stream={stream}: status {status}: {data[:200]}")
                check(b"Generation failed" not in data, f"stream={stream}: {data[:300]}")
            check(holed.proc.poll() is None, "the server died")
        finally:
            holed.stop()


def test_graceful_sigterm(args):
    server = Server(args.server, args.model, "--parallel", "1")
    client = openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0)
    result = {}

    def long_request():
        result["text"] = stream_text(client, "Once upon a time", 400,
                                     logit_bias={"2": -100})
    t = threading.Thread(target=long_request)
    t.start()
    time.sleep(0.05)
    code = server.stop()
    t.join()
    check(code == 0, f"exit code {code}")
    check(result.get("text", ("", None))[1] == "length", f"in-flight request finished: {result}")


# --- The HTTP front: limits on bodies, heads, time and connections (docs/SERVER.md, "Limits") ---

def raw_request(port, data, timeout=10, half_close=False, src=None):
    """Sends raw bytes (from a second thread, so a server that answers before reading them all
    cannot deadlock the test) and reads one response. Returns (status, headers, body, seconds);
    status is None when the connection closed without an answer."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                    source_address=(src, 0) if src else None)
    t0 = time.time()

    def send():
        try:
            sock.sendall(data)
            if half_close:
                sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
    sender = threading.Thread(target=send)
    sender.start()
    buf = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            buf += chunk
            head, sep, body = buf.partition(b"\r\n\r\n")
            m = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
            if sep and m and len(body) >= int(m.group(1)):
                break
    except (ConnectionResetError, socket.timeout):
        pass
    elapsed = time.time() - t0
    sender.join()
    sock.close()
    head, _, body = buf.partition(b"\r\n\r\n")
    m = re.match(rb"HTTP/1\.[01] (\d+)", head)
    headers = {}
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.decode("latin-1").partition(":")
        headers[k.strip().lower()] = v.strip()
    return (int(m.group(1)) if m else None), headers, body, elapsed


def http_post(path, body, headers=b"Content-Type: application/json\r\n"):
    return (b"POST " + path + b" HTTP/1.1\r\nHost: x\r\n" + headers + b"Content-Length: " +
            str(len(body)).encode() + b"\r\n\r\n" + body)


def error_code(body):
    return json.loads(body)["error"]["code"]


def peak_rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"^VmHWM:\s+(\d+)", f.read(), re.M).group(1)) / 1024


SMALL = json.dumps({"prompt": "Once", "max_tokens": 2, "temperature": 0}).encode()


def padded(n):
    """A valid completion request of about n bytes (an ignored field holds the padding)."""
    return SMALL[:-1] + b', "pad": "' + b"x" * n + b'"}'


def test_body_limits(args):
    """One limit on the decoded body whatever the framing: chunked, gzip (a bomb stops at the
    limit, in memory and time), length-less; form-urlencoded bodies are not capped at 8 KiB."""
    server = Server(args.server, args.model, "--parallel", "1", "--max-body-bytes", str(1 << 20))
    try:
        body = padded(2 << 20)
        chunked = b"".join(b"%x\r\n" % len(body[i:i + 65536]) + body[i:i + 65536] + b"\r\n"
                           for i in range(0, len(body), 65536)) + b"0\r\n\r\n"
        status, _, data, _ = raw_request(server.port, (
            b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n" + chunked))
        check(status == 413 and error_code(data) == "request_too_large", f"chunked: {status}")

        before = peak_rss_mib(server.proc.pid)
        bomb = gzip.compress(b" " * (256 << 20), 9)  # about 256 KiB
        status, _, data, seconds = raw_request(server.port, http_post(
            b"/v1/completions", bomb,
            b"Content-Type: application/json\r\nContent-Encoding: gzip\r\n"), timeout=30)
        grown = peak_rss_mib(server.proc.pid) - before
        check(status == 413 and error_code(data) == "request_too_large", f"gzip bomb: {status}")
        check(grown < 32, f"gzip bomb raised the peak RSS by {grown:.0f} MiB")
        check(seconds < 5, f"gzip bomb took {seconds:.1f} s")

        status, _, data, _ = raw_request(server.port, (
            b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\r\n" +
            body), half_close=True)
        check(status == 413 and error_code(data) == "request_too_large", f"length-less: {status}")

        status, _, data, _ = raw_request(server.port, http_post(
            b"/v1/completions", gzip.compress(padded(100 << 10)),
            b"Content-Type: application/json\r\nContent-Encoding: gzip\r\n"))
        check(status == 200, f"small gzip body: {status} {data[:200]}")
        status, _, data, _ = raw_request(server.port, http_post(
            b"/v1/completions", SMALL, b"Content-Type: application/json\r\nContent-Encoding: zstd\r\n"))
        check(status == 415 and error_code(data) == "unsupported_media_type",
              f"unknown Content-Encoding: {status} {data[:200]}")
        status, _, data, _ = raw_request(server.port, http_post(
            b"/v1/completions", padded(100 << 10),
            b"Content-Type: application/x-www-form-urlencoded\r\n"))
        check(status == 200, f"100 KiB form-urlencoded body: {status} {data[:200]}")
        status, _, data, _ = raw_request(server.port, (
            b"GET /health HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" +
            chunked))
        check(status == 400 and error_code(data) == "unexpected_body", f"GET with body: {status}")
        check(server.request("GET", "/health")[0] == 200, "healthy")
    finally:
        check(server.stop() == 0, "exit code")


def test_header_limits(server):
    """2 MiB of header lines, or more lines than allowed, get 431 without the memory."""
    before = peak_rss_mib(server.proc.pid)
    flood = b"".join(b"X-Pad-%d: %s\r\n" % (i, b"y" * 1000) for i in range(2048))
    status, _, data, _ = raw_request(server.port,
                                     b"GET /v1/models HTTP/1.1\r\nHost: x\r\n" + flood + b"\r\n")
    check(status == 431 and error_code(data) == "request_header_fields_too_large",
          f"2 MiB of headers: {status} {data[:200]}")
    many = b"".join(b"X-%d: y\r\n" % i for i in range(101))
    status, _, data, _ = raw_request(server.port,
                                     b"GET /v1/models HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n")
    check(status == 431, f"101 header lines: {status}")
    check(peak_rss_mib(server.proc.pid) - before < 16, "header floods raised the peak RSS")
    check(server.request("GET", "/health")[0] == 200, "healthy")


def test_slow_clients(args):
    """200 connections from one address dripping a request head byte by byte do not hold the
    server: /health from the same address answers within 1 s meanwhile (new connections take the
    places of the slow ones beyond the per-client cap), and each slow one gets 408 after
    --header-timeout or is closed. A body that stops arriving gets 408 after --request-timeout."""
    server = Server(args.server, args.model, "--parallel", "1", "--header-timeout", "2",
                    "--request-timeout", "3")
    socks = []
    try:
        for _ in range(200):
            s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            s.sendall(b"P")
            socks.append(s)
        stop = threading.Event()

        def drip():
            while not stop.wait(0.5):
                for s in socks:
                    try:
                        s.send(b"O")
                    except OSError:
                        pass
        dripper = threading.Thread(target=drip)
        dripper.start()
        try:
            time.sleep(1)  # the slow ones are evictable from now on
            for src in ("127.0.0.1", "127.0.0.2", "127.0.0.1"):
                status, _, _, seconds = raw_request(
                    server.port, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n", timeout=5, src=src)
                check(status == 200 and seconds < 1, f"/health: {status} in {seconds:.2f} s")
                time.sleep(0.3)
            time.sleep(1.5)
        finally:
            stop.set()
            dripper.join()
        timed_out = refused = closed = 0
        for s in socks:
            try:
                data = s.recv(4096)
                timed_out += data.startswith(b"HTTP/1.1 408") and b'"request_timeout"' in data
                refused += data.startswith(b"HTTP/1.1 429")
                closed += data == b""
            except OSError:
                closed += 1
        check(timed_out + refused + closed == len(socks) and timed_out > 0,
              f"of {len(socks)} slow heads {timed_out} got 408, {refused} 429 as they connected "
              f"(over the per-client cap), {closed} were closed")

        status, _, data, seconds = raw_request(server.port, (
            b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"pro"))
        check(status == 408 and error_code(data) == "request_timeout", f"slow body: {status}")
        check(2.5 < seconds < 6, f"slow body answered after {seconds:.1f} s")
        name = 'af_http_requests_total{path="other",status="408"}'
        check(server.metric(name) == timed_out, f"{name} = {server.metric(name)}")
        check(server.request("GET", "/health")[0] == 200, "healthy")
    finally:
        for s in socks:
            s.close()
        check(server.stop() == 0, "exit code")


def test_sigterm_with_slow_body(args):
    """A body that is still arriving does not hold up a shutdown until --request-timeout."""
    server = Server(args.server, args.model, "--parallel", "1")
    s = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    try:
        s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 99\r\n\r\n{")
        time.sleep(0.3)
        t0 = time.time()
        code = server.stop()
        check(code == 0 and time.time() - t0 < 2, f"exit {code} after {time.time() - t0:.1f} s")
    finally:
        s.close()


def test_connection_caps(args):
    """Beyond the per-client cap a connection gets 429, beyond the total cap 503 (both with
    Retry-After), when every connection is busy with a request; other clients are not affected by
    one client's cap. A connection that has waited over a second for a request head gives its
    place to a new one instead."""
    server = Server(args.server, args.model, "--max-connections-per-client", "4",
                    "--max-connections", "7", "--keep-alive-timeout", "60")
    held = []
    try:
        def hold(src):
            """A connection known to be admitted (it got an answer), then busy with a request
            whose body has not all arrived."""
            s = socket.create_connection(("127.0.0.1", server.port), timeout=5,
                                         source_address=(src, 0))
            held.append(s)
            s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = b""
            while not answer.endswith(b"}"):
                chunk = s.recv(4096)
                if not chunk:
                    break
                answer += chunk
            if not answer.startswith(b"HTTP/1.1 200"):
                return False
            s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 99\r\n\r\n{")
            return True
        for _ in range(4):
            check(hold("127.0.0.3"), "held connection")
        status, headers, data, _ = raw_request(
            server.port, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n", src="127.0.0.3")
        check(status == 429 and error_code(data) == "too_many_connections" and
              "retry-after" in headers, f"over the per-client cap: {status}")
        for _ in range(2):
            check(hold("127.0.0.4"), "held connection")
        status, _, _, _ = raw_request(server.port, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n",
                                      src="127.0.0.5")
        check(status == 200, f"another client below both caps: {status}")
        # The server counts that client's connection until it sees it closed.
        deadline = time.time() + 5
        while not hold("127.0.0.4"):
            held.pop().close()
            check(time.time() < deadline, "a closed connection was not released")
            time.sleep(0.1)
        status, headers, data, _ = raw_request(
            server.port, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n", src="127.0.0.5")
        check(status == 503 and error_code(data) == "too_many_connections" and
              "retry-after" in headers, f"over the total cap: {status}")
        for s in held:
            s.close()
        held.clear()
        time.sleep(0.5)
        check(server.request("GET", "/health")[0] == 200, "connections released")
        for status in (429, 503):
            name = f'af_http_requests_total{{path="other",status="{status}"}}'
            check(server.metric(name) >= 1, f"{name} = {server.metric(name)}")

        idle = [socket.create_connection(("127.0.0.1", server.port), timeout=5,
                                         source_address=("127.0.0.6", 0)) for _ in range(4)]
        held.extend(idle)
        time.sleep(1.5)
        status, _, _, _ = raw_request(server.port, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n",
                                      src="127.0.0.6")
        check(status == 200, f"a new connection in place of an idle one: {status}")
        check(idle[0].recv(100) == b"", "the longest idle connection was closed")
    finally:
        for s in held:
            s.close()
        check(server.stop() == 0, "exit code")


def test_half_close(server):
    """A client that shuts down its sending side after the request still gets the answer."""
    status, _, data, _ = raw_request(server.port, http_post(b"/v1/completions", SMALL),
                                     half_close=True)
    check(status == 200 and json.loads(data)["choices"], f"half-closed client: {status}")


def test_second_bind(args, server):
    """A second server on a port already listened on fails instead of sharing it."""
    proc = subprocess.run([args.server, "-m", args.model, "--port", str(server.port),
                           "--threads", "1"], capture_output=True, text=True, timeout=60)
    check(proc.returncode == 1 and "Address already in use" in proc.stderr,
          f"second bind: exit {proc.returncode}, {proc.stderr[-200:]}")
    check(server.request("GET", "/health")[0] == 200, "first server still serves")


def test_api_key_sources(args):
    """--api-key-file and AF_API_KEY keep the key out of the command line; the Bearer scheme is
    case-insensitive."""
    with tempfile.NamedTemporaryFile("w", suffix=".key") as f:
        f.write("from-file\n")
        f.flush()
        server = Server(args.server, args.model, "--parallel", "1", "--api-key-file", f.name)
    env = dict(os.environ, AF_API_KEY="from-env")
    env_server = Server(args.server, args.model, "--parallel", "1", env=env)
    try:
        for s, key in ((server, "from-file"), (env_server, "from-env")):
            with open(f"/proc/{s.proc.pid}/cmdline", "rb") as c:
                check(key.encode() not in c.read(), "key in the command line")
            expect_error(s, "/v1/completions", {"prompt": "a"}, 401, "invalid_api_key")
            for scheme in ("Bearer", "bearer", "BEARER"):
                status = s.request("POST", "/v1/completions", SMALL,
                                   {"Authorization": f"{scheme} {key}"})[0]
                check(status == 200, f"'{scheme} {key}': {status}")
    finally:
        check(server.stop() == 0 and env_server.stop() == 0, "exit code")


def test_template_limits(args):
    """A chat template past --template-max-* answers 500 naming the option; the server stays up."""
    server = Server(args.server, args.model, "--parallel", "1", "--template-max-steps", "5")
    try:
        chat = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}
        for body in (chat, {**chat, "stream": True}):
            status, data, _ = server.request("POST", "/v1/chat/completions", body)
            check(status == 500, f"template over budget: {status} {data[:200]}")
            err = json.loads(data)["error"]
            check(err["code"] == "template_limit_exceeded" and err["type"] == "server_error",
                  f"error object {err}")
            check("--template-max-steps" in err["message"] and "5 evaluation steps" in
                  err["message"], f"message {err['message']}")
        check(server.request("GET", "/health")[0] == 200, "/health after template errors")
        status, data, _ = server.request("POST", "/v1/completions", SMALL)
        check(status == 200 and json.loads(data)["choices"], f"completion after: {status}")
    finally:
        check(server.stop() == 0, "exit code")


def test_images(args, text_server):
    """image_url parts on the tiny LLaVA fixture: greedy text equal to `af-cli run --image`,
    streaming and n=2 alike, usage counting image tokens and the cached image, bad and remote
    images 400 with the server still answering, /v1/models listing the modalities."""
    import base64
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    model = os.path.join(root, "fixtures", "models", "llava_clip")
    image = os.path.join(os.path.dirname(os.path.abspath(args.model)), "..", "images",
                         "camera.png")
    with open(image, "rb") as f:
        url = "data:image/png;base64," + base64.b64encode(f.read()).decode()
    want = subprocess.run([args.cli, "run", "-m", model, "-t", "1", "--temp", "0", "-n", "8",
                           "--image", image, "-p", "USER: <image>\nWhat is this? ASSISTANT:"],
                          capture_output=True, text=True, check=True).stdout.rstrip("\n")
    server = Server(args.server, model, "--parallel", "1")
    try:
        client = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)
        models = json.loads(server.request("GET", "/v1/models")[1])["data"][0]
        check(models["modalities"] == ["text", "image"], f"modalities {models}")
        text_models = json.loads(text_server.request("GET", "/v1/models")[1])["data"][0]
        check(text_models["modalities"] == ["text"], f"text modalities {text_models}")
        content = [{"type": "image_url", "image_url": {"url": url}},
                   {"type": "text", "text": "What is this?"}]
        messages = [{"role": "user", "content": content}]
        r = client.chat.completions.create(model="m", messages=messages, max_tokens=8,
                                           temperature=0)
        check(r.choices[0].message.content == want, f"{r.choices[0].message.content!r} != {want!r}")
        check(r.usage.prompt_tokens == 33, f"prompt_tokens {r.usage.prompt_tokens} (4 image rows)")
        again = client.chat.completions.create(model="m", messages=messages, max_tokens=8,
                                               temperature=0)
        cached = again.usage.prompt_tokens_details.cached_tokens
        check(cached == 32, f"second ask: cached_tokens {cached}, expected 32")
        streamed = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(
            model="m", messages=messages, max_tokens=8, temperature=0, stream=True) if c.choices)
        check(streamed == want, f"stream {streamed!r} != {want!r}")
        both = client.chat.completions.create(model="m", messages=messages, max_tokens=8,
                                              temperature=0, n=2)
        check([c.message.content for c in both.choices] == [want, want], f"n=2 {both.choices}")
        bad = [{"type": "image_url", "image_url": {"url": "data:image/png;base64,aGVsbG8="}}]
        for part, param in ((bad, "messages[0].content"),
                            ([{"type": "image_url",
                               "image_url": {"url": "https://example.com/a.png"}}],
                             "messages[0].content"),
                            ([{"type": "image_url", "image_url": {"url": "file:///etc/passwd"}}],
                             "messages[0].content")):
            expect_error(server, "/v1/chat/completions",
                         {"messages": [{"role": "user", "content": part}]}, 400,
                         "invalid_image", param)
        expect_error(text_server, "/v1/chat/completions",
                     {"messages": [{"role": "user", "content": content}]}, 400,
                     "unsupported_value")
        r = client.chat.completions.create(model="m", messages=messages, max_tokens=8,
                                           temperature=0)
        check(r.choices[0].message.content == want, "the server answers after bad images")
    finally:
        check(server.stop() == 0, "llava server exit code")


def test_audio(args, text_server):
    """input_audio parts on the tiny Qwen2-Audio fixture (tools/make_qwen2_audio_fixtures.py):
    greedy text equal to `af-cli run --audio` on the chat template's text, usage counting the
    audio tokens and the cached audio, bad base64 / format / undecodable audio 400, audio to a
    text-only model 400, a part over --max-audio-bytes 413, the server still answering."""
    import base64
    import wave
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    model = os.path.join(root, "fixtures", "models", "qwen2_audio")
    with open(os.path.join(model, "reference.json")) as f:
        ref = next(c for c in json.load(f)["clips"] if c["name"] == "fox")
    wav = os.path.join(os.path.dirname(os.path.abspath(args.model)), "..", "audio",
                       "speech_fox_16k.wav")
    with open(wav, "rb") as f:
        data = base64.b64encode(f.read()).decode()
    want = subprocess.run([args.cli, "run", "-m", model, "-t", "1", "--temp", "0", "-n", "8",
                           "--ignore-eos", "--audio", wav, "-p", ref["text"]],
                          capture_output=True, text=True, check=True).stdout.rstrip("\n")
    server = Server(args.server, model, "--parallel", "1", "--max-audio-bytes", "1200000")
    try:
        client = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)
        models = json.loads(server.request("GET", "/v1/models")[1])["data"][0]
        check(models["modalities"] == ["text", "audio"], f"modalities {models}")
        content = [{"type": "input_audio", "input_audio": {"data": data, "format": "wav"}},
                   {"type": "text", "text": "What is said?"}]
        messages = [{"role": "user", "content": content}]
        r = client.chat.completions.create(model="m", messages=messages, max_tokens=8,
                                           temperature=0)
        check(r.choices[0].message.content == want, f"{r.choices[0].message.content!r} != {want!r}")
        n = len(ref["input_ids"])
        check(r.usage.prompt_tokens == n, f"prompt_tokens {r.usage.prompt_tokens}, expected {n}")
        again = client.chat.completions.create(model="m", messages=messages, max_tokens=8,
                                               temperature=0)
        cached = again.usage.prompt_tokens_details.cached_tokens
        check(cached == n - 1, f"second ask: cached_tokens {cached}, expected {n - 1}")
        encodes = server.metric("af_image_encodes_total")
        check(encodes == 1.0, f"the audio was encoded {encodes} times, expected once")
        cases = (({"data": "!!!!", "format": "wav"}, "invalid_audio"),
                 ({"data": "aGVsbG8=", "format": "wav"}, "invalid_audio"),
                 ({"data": data, "format": "flac"}, "invalid_value"),
                 ({"data": data}, "missing_required_parameter"))
        for part, code in cases:
            expect_error(server, "/v1/chat/completions",
                         {"messages": [{"role": "user", "content": [
                             {"type": "input_audio", "input_audio": part}]}]}, 400, code)
        big = base64.b64encode(b"RIFF" + bytes(1300000)).decode()
        expect_error(server, "/v1/chat/completions",
                     {"messages": [{"role": "user", "content": [
                         {"type": "input_audio", "input_audio": {"data": big, "format": "wav"}}]}]},
                     413, "audio_too_large")
        expect_error(text_server, "/v1/chat/completions",
                     {"messages": [{"role": "user", "content": content}]}, 400,
                     "unsupported_value")

        def wav_part(pcm):  # 16 kHz mono 16-bit WAV bytes, as an input_audio part
            import io
            import wave
            buf = io.BytesIO()
            with wave.open(buf, "wb") as w:
                w.setnchannels(1)
                w.setsampwidth(2)
                w.setframerate(16000)
                w.writeframes(pcm)
            return [{"type": "input_audio", "input_audio": {
                "data": base64.b64encode(buf.getvalue()).decode(), "format": "wav"}},
                {"type": "text", "text": "What is said?"}]
        # No samples: 400 invalid_audio; under one audio token (320 samples): 400 invalid_value.
        for pcm, code in ((b"", "invalid_audio"), (bytes(2 * 320), "invalid_value")):
            expect_error(server, "/v1/chat/completions",
                         {"messages": [{"role": "user", "content": wav_part(pcm)}]}, 400, code)
        # Silence is audio; 33 s is truncated to the 30 s window (750 tokens), as transformers.
        text_tokens = n - ref["num_audio_tokens"]
        with wave.open(wav, "rb") as w:
            fox = w.readframes(w.getnframes())
        for pcm, tokens in ((bytes(2 * 16000), 25), (fox * 10, 750)):
            r = client.chat.completions.create(model="m", max_tokens=2, temperature=0, messages=[
                {"role": "user", "content": wav_part(pcm)}])
            check(r.usage.prompt_tokens == text_tokens + tokens,
                  f"prompt_tokens {r.usage.prompt_tokens}, expected {text_tokens + tokens}")
        r = client.chat.completions.create(model="m", messages=messages, max_tokens=8,
                                           temperature=0)
        check(r.choices[0].message.content == want, "the server answers after bad audio")
        streamed = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(
            model="m", messages=messages, max_tokens=8, temperature=0, stream=True) if c.choices)
        check(streamed == want, f"stream {streamed!r} != {want!r}")
        text_only = client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "What is said?"}], max_tokens=2)
        # The template's text alone: no "Audio 1: <|audio_bos|>...<|audio_eos|>" span, no rows.
        check(text_only.usage.prompt_tokens == 44,
              f"a text-only chat: prompt_tokens {text_only.usage.prompt_tokens}, expected 44")
    finally:
        check(server.stop() == 0, "qwen2_audio server exit code")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WHISPER = os.path.join(ROOT, "tests", "fixtures", "whisper", "tiny_ts")


def testdata(*parts):
    base = os.environ.get("AF_TESTDATA") or os.path.join(ROOT, "..", "shared", "testdata")
    return os.path.join(base, *parts)


def multipart(parts):
    """A multipart/form-data body from (name, filename or None, bytes) parts."""
    boundary = "afboundary7MA4YWxkTrZu0gW"
    out = b""
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += (f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n").encode() + data
        out += b"\r\n"
    return out + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def test_audio_transcriptions(args):
    """/v1/audio/transcriptions and /translations with the tiny random Whisper (tiny_ts): the
    openai client's answers equal af-cli transcribe's; multipart errors 400, limits 413."""
    jfk_path = testdata("audio", "jfk_16k.wav")
    with open(jfk_path, "rb") as f:
        jfk = f.read()
    server = Server(args.server, args.model, "--whisper-model", WHISPER, "--max-audio-seconds",
                    "20", "--max-body-bytes", "1000000")
    try:
        client = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)
        def cli_json(*extra):
            out = subprocess.run([args.cli, "transcribe", "-m", WHISPER, "--audio", jfk_path, "-t",
                                  "1", "--output-format", "json", *extra], capture_output=True,
                                 text=True, check=True)
            return json.loads(out.stdout)
        want = cli_json("--task", "transcribe")  # the endpoint's task
        want_segments = cli_json("--task", "transcribe", "--timestamps", "--language", "en")
        with open(jfk_path, "rb") as f:
            r = client.audio.transcriptions.create(model="whisper-1", file=f)
        check(r.text == want["text"] and r.text, f"json text {r.text!r} == af-cli's")
        with open(jfk_path, "rb") as f:
            r = client.audio.transcriptions.create(model="whisper-1", file=f,
                                                   response_format="verbose_json", language="en")
        check(r.language == "en" and r.duration == 11.0 and len(r.segments) > 1,
              "verbose_json: language, duration, segments")
        check([s.text for s in r.segments] == [s["text"] for s in want_segments["segments"]],
              "verbose_json segments equal af-cli's")
        with open(jfk_path, "rb") as f:
            srt = client.audio.transcriptions.create(model="whisper-1", file=f,
                                                     response_format="srt")
        check(srt.startswith("1\n00:00:00,"), f"srt: {srt[:40]!r}")
        with open(jfk_path, "rb") as f:
            vtt = client.audio.transcriptions.create(model="whisper-1", file=f,
                                                     response_format="vtt")
        check(vtt.startswith("WEBVTT\n\n00:00:00."), f"vtt: {vtt[:40]!r}")
        with open(jfk_path, "rb") as f:
            tr = client.audio.translations.create(model="whisper-1", file=f)
        check(isinstance(tr.text, str), "translation answers text")
        # curl, the way the OpenAI docs show it.
        out = subprocess.run(["curl", "-s", "-F", f"file=@{jfk_path}", "-F", "model=whisper-1",
                              "-F", "response_format=text",
                              server.base_url + "/audio/transcriptions"],
                             capture_output=True, text=True, check=True).stdout
        check(out == want["text"] + "\n", f"curl text {out!r}")

        def post(parts):
            body, ctype = multipart(parts)
            return server.request("POST", "/v1/audio/transcriptions", body,
                                  {"Content-Type": ctype})

        for parts, status, what in [
                ([("model", None, b"whisper-1")], 400, "no file part"),
                ([("file", "a.wav", jfk), ("file", "b.wav", jfk)], 400, "two file parts"),
                ([("file", "a.txt", b"this is not audio at all")], 400, "not audio"),
                ([("file", "empty.wav", b"")], 400, "empty file"),
                ([("file", "cut.wav", jfk[:44])], 400, "header only: no samples"),
                ([("file", "a.wav", jfk), ("temperature", None, b"1.7")], 400, "temperature > 1"),
                ([("file", "a.wav", jfk), ("temperature", None, b"hot")], 400, "temperature text"),
                ([("file", "a.wav", jfk), ("response_format", None, b"xml")], 400, "format"),
                ([("file", "big.wav", jfk * 3)], 413, "body over --max-body-bytes")]:
            status_got, body = post(parts)[:2]
            check(status_got == status, f"{what}: {status_got} {body[:200]!r}")
            check("error" in json.loads(body), f"{what}: an OpenAI error object")
        # temperature in 0..1 samples at it (before: anything but 0 was a 400).
        status_got, body = post([("file", "a.wav", jfk), ("temperature", None, b"0.7")])[:2]
        check(status_got == 200 and "text" in json.loads(body), f"temperature 0.7: {status_got}")
        with wave.open(jfk_path, "rb") as w:
            params, frames = w.getparams(), w.readframes(w.getnframes())
        buf = io.BytesIO()
        with wave.open(buf, "wb") as w:  # 22 s: over --max-audio-seconds 20, under the body limit
            w.setparams(params)
            w.writeframes(frames + frames)
        status_got, body = post([("file", "long.wav", buf.getvalue())])[:2]
        check(status_got == 413 and json.loads(body)["error"]["code"] == "audio_too_long",
              f"22 s file over --max-audio-seconds: {status_got} {body[:200]!r}")
        status_got, body = server.request("POST", "/v1/audio/transcriptions", b"{}",
                                          {"Content-Type": "application/json"})[:2]
        check(status_got == 400, f"JSON body: {status_got}")
        r = client.audio.transcriptions.create(model="whisper-1", file=("jfk.wav", jfk))
        check(r.text == want["text"], "answers after bad requests")
    finally:
        check(server.stop() == 0, "whisper server exit code")


def cosine_distance(a, b):
    dot = sum(x * y for x, y in zip(a, b))
    na = sum(x * x for x in a) ** 0.5
    nb = sum(y * y for y in b) ** 0.5
    return 1 - dot / (na * nb)


def test_embeddings(args):
    """/v1/embeddings on the tiny BertModel fixture (an encoder-only server) against the vectors
    sentence-transformers computed (tools/make_embedding_fixtures.py)."""
    folder = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "models",
                          "bert_tiny")
    ref = json.load(open(os.path.join(folder, "reference.json")))
    server = Server(args.server, folder)
    try:
        client = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)
        sentences = ref["sentences"]
        # The openai client asks for base64 and decodes it with numpy.
        got = client.embeddings.create(model="m", input=sentences)
        check(len(got.data) == len(sentences), "one embedding per input")
        for i, item in enumerate(got.data):
            check(item.index == i, "indexes in order")
            d = cosine_distance(item.embedding, ref["embeddings"][i])
            check(d < 1e-5, f"input {i}: cosine distance {d}")
        check(got.usage.prompt_tokens == sum(len(ids) for ids in ref["ids"]), "usage")
        as_float = client.embeddings.create(model="m", input=sentences[0], encoding_format="float")
        check(max(abs(x - y) for x, y in zip(as_float.data[0].embedding, got.data[0].embedding))
              < 1e-6, "float and base64 agree")
        by_ids = client.embeddings.create(model="m", input=ref["ids"][:2], encoding_format="float")
        for i in range(2):
            check(cosine_distance(by_ids.data[i].embedding, ref["embeddings"][i]) < 1e-5,
                  f"token-id input {i}")
        one_list = client.embeddings.create(model="m", input=ref["ids"][2], encoding_format="float")
        check(cosine_distance(one_list.data[0].embedding, ref["embeddings"][2]) < 1e-5,
              "one list of token ids")
        short = client.embeddings.create(model="m", input=sentences[0], dimensions=8,
                                         encoding_format="float").data[0].embedding
        head = ref["embeddings"][0][:8]
        norm = sum(x * x for x in head) ** 0.5
        check(len(short) == 8 and max(abs(x - y / norm) for x, y in zip(short, head)) < 1e-5,
              "dimensions truncates and renormalises")
        for body, param in [({"input": "x", "dimensions": 33}, "dimensions"),
                            ({"input": ["ok", "word " * 200]}, "input[1]"),
                            ({"input": [[2, 3], [2, 99999, 3]]}, "input[1]"),
                            ({"input": []}, "input"),
                            ({"input": "x", "encoding_format": "int8"}, "encoding_format")]:
            expect_error(server, "/v1/embeddings", body, 400, param=param)
        status, data, _ = server.request("POST", "/v1/embeddings", {"input": ["ok", "word " * 200]})
        check("input[1]" in json.loads(data)["error"]["message"], "the error names the input")
        try:
            client.embeddings.create(model="m", input="x", dimensions=64)
            check(False, "dimensions beyond the model: expected 400")
        except openai.BadRequestError:
            pass
        expect_error(server, "/v1/chat/completions",
                     {"messages": [{"role": "user", "content": "hi"}]}, 400,
                     code="model_not_supported")
        check(server.request("GET", "/metrics")[0] == 200, "/metrics without a scheduler")
    finally:
        check(server.stop() == 0, "embedding server exits cleanly on SIGTERM")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", required=True)
    ap.add_argument("--cli", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--only", help="run only the tests whose name contains this")
    args = ap.parse_args()
    t_start = time.time()

    main_server = Server(args.server, args.model, "--parallel", "8")
    testdata = os.path.dirname(os.path.dirname(os.path.abspath(args.model.rstrip("/"))))
    tools_server = Server(args.server,
                          tool_calling.model_with_qwen_template(args.model, testdata),
                          "--parallel", "2", "--ctx-size", "2048")
    tools_client = openai.OpenAI(base_url=tools_server.base_url, api_key="unused",
                                 max_retries=0)
    client = openai.OpenAI(base_url=main_server.base_url, api_key="unused", max_retries=0)
    small = Server(args.server, args.model, "--parallel", "1")
    tests = [("basics", lambda: test_basics(main_server, client, args)),
             ("sse framing", lambda: test_sse_framing(main_server)),
             ("errors", lambda: test_errors(main_server, client)),
             ("8 parallel streams", lambda: test_parallel_streams(main_server, client)),
             ("client killed mid-stream", lambda: test_kill_mid_stream(small)),
             ("non-streaming client gone frees its slot",
              lambda: test_disconnect_frees_slot(args)),
             ("half-closed client, long request", lambda: test_half_close_long(args)),
             ("burst beyond capacity", lambda: test_burst(small)),
             ("memory back to baseline after bursts", lambda: test_burst_memory(small)),
             ("api key", lambda: test_api_key(args)),
             ("unassigned token ids", lambda: test_unassigned_ids(small, args)),
             ("api key file, AF_API_KEY, bearer", lambda: test_api_key_sources(args)),
             ("body limits: chunked, gzip bomb, form", lambda: test_body_limits(args)),
             ("header limits (431)", lambda: test_header_limits(small)),
             ("slow clients (408), /health answers", lambda: test_slow_clients(args)),
             ("connection caps (429, 503)", lambda: test_connection_caps(args)),
             ("SIGTERM with a body arriving", lambda: test_sigterm_with_slow_body(args)),
             ("half-closed client answered", lambda: test_half_close(small)),
             ("second bind fails", lambda: test_second_bind(args, small)),
             ("chat-template limits: 500, server stays up", lambda: test_template_limits(args)),
             ("graceful SIGTERM", lambda: test_graceful_sigterm(args)),
             ("SIGTERM: late arrival 503, slow client, exit within grace",
              lambda: test_sigterm_late_arrival(args)),
             ("SIGTERM: streams cut at the deadline end with an error event",
              lambda: test_sigterm_cancels_at_deadline(args)),
             ("SIGTERM: a busy request thread does not hold the exit",
              lambda: test_sigterm_busy_request_thread(args)),
             ("second SIGTERM exits at once", lambda: test_second_sigterm(args)),
             ("requests racing SIGTERM: complete, 503 or nothing",
              lambda: test_sigterm_racing_requests(args)),
             ("images: data URLs, usage, cache, bad images 400",
              lambda: test_images(args, small)),
             ("audio: input_audio parts, usage, cache, bad audio 400, 413",
              lambda: test_audio(args, small)),
             ("audio: transcriptions, translations, multipart errors, limits",
              lambda: test_audio_transcriptions(args)),
             ("embeddings: openai client, base64, ids, dimensions, 400s",
              lambda: test_embeddings(args)),
             ("json_schema: 50 seeds validate", lambda: structured_outputs.test_json_schema_seeds(client)),
             ("json_schema: streaming equals non-streaming",
              lambda: structured_outputs.test_json_schema_streaming(client)),
             ("json_schema: length cut, json_object",
              lambda: structured_outputs.test_json_schema_length_and_object(client)),
             ("json_schema: bad schemas 400 naming the keyword",
              lambda: structured_outputs.test_json_schema_errors(small, expect_error)),
             ("tools: required over 50 seeds", lambda: tool_calling.test_required_seeds(tools_client)),
             ("tools: named function, streaming delta.tool_calls",
              lambda: tool_calling.test_named_and_streaming(tools_client)),
             ("tools: history with tool messages, auto, none",
              lambda: tool_calling.test_history_and_auto(tools_client)),
             ("tools: bad tools 400", lambda: tool_calling.test_tool_errors(tools_server, expect_error))]
    if args.only:
        tests = [(name, fn) for name, fn in tests if args.only in name]
    failed = 0
    try:
        for name, fn in tests:
            t0 = time.time()
            try:
                fn()
                print(f"ok   {name} ({time.time() - t0:.1f} s)")
            except Exception as e:  # report every test, then fail
                failed += 1
                print(f"FAIL {name}: {type(e).__name__}: {e}")
        for s in (main_server, small, tools_server):
            alive = s.proc.poll() is None
            if not alive:
                failed += 1
                print("FAIL a server died")
            elif s.stop() != 0:
                failed += 1
                print("FAIL non-zero exit code after SIGTERM")
    finally:
        for s in (main_server, small, tools_server):
            if s.proc.poll() is None:
                s.proc.kill()
    print(f"{len(tests) - failed}/{len(tests)} passed in {time.time() - t_start:.1f} s")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
