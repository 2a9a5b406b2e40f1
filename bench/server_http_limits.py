#!/usr/bin/env python3
"""Probes af-server's HTTP limits with default flags and prints one figure per hardening item of
issue 21 (gzip bomb, chunked body, form-urlencoded body, header flood, half-close, second bind,
slow clients, lowercase `bearer`), so that two builds can be compared:

  bench/server_http_limits.py build/apps/server/af-server ../shared/testdata/models/stories260K-hf

Memory figures are peak RSS (VmHWM) of a fresh server. Needs up to 2.5 GB free for a server
without the limits (the gzip bomb inflates to 512 MiB, which it holds several times over).
"""
import gzip, json, os, re, socket, subprocess, sys, threading, time

BIN, MODEL = sys.argv[1], sys.argv[2]

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); return s.getsockname()[1]

def start(*extra, env=None):
    port = free_port()
    p = subprocess.Popen([BIN, "-m", MODEL, "--port", str(port), "--threads", "1", *extra],
                         stderr=subprocess.PIPE, text=True, env=env)
    for _ in range(300):
        try:
            if exchange(port, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n", timeout=2)[0] == 200:
                return p, port
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(p.stderr.read())

def status_of(buf):
    m = re.match(rb"HTTP/1\.[01] (\d+)", buf)
    return int(m.group(1)) if m else None

def exchange(port, data, timeout=10, half_close=False, src=None):
    s = socket.socket(); s.settimeout(timeout)
    if src: s.bind((src, 0))
    s.connect(("127.0.0.1", port))
    t0 = time.time()
    sender = threading.Thread(target=lambda: _send(s, data, half_close)); sender.start()
    buf = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk: break
            buf += chunk
            head, sep, body = buf.partition(b"\r\n\r\n")
            m = re.search(rb"(?i)content-length: *(\d+)", head)
            if sep and m and len(body) >= int(m.group(1)): break
    except (socket.timeout, ConnectionResetError) as e:
        buf = buf or str(type(e).__name__).encode()
    sender.join(timeout)
    s.close()
    return status_of(buf), buf[:400], time.time() - t0

def _send(s, data, half_close):
    try:
        s.sendall(data)
        if half_close: s.shutdown(socket.SHUT_WR)
    except OSError:
        pass

def hwm(pid):
    return int(re.search(r"VmHWM:\s+(\d+)", open(f"/proc/{pid}/status").read()).group(1)) // 1024

def post(body, headers=b"Content-Type: application/json\r\n", path=b"/v1/completions"):
    return (b"POST " + path + b" HTTP/1.1\r\nHost: x\r\n" + headers +
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)

p, port = start("--parallel", "1")
small = json.dumps({"prompt": "Once", "max_tokens": 4, "temperature": 0}).encode()
try:
    base = hwm(p.pid)
    bomb = gzip.compress(b" " * (512 << 20), 9)
    st, _, dt = exchange(port, post(bomb, b"Content-Type: application/json\r\nContent-Encoding: gzip\r\n"), 60)
    print(f"gzip bomb {len(bomb)>>10} KiB -> 512 MiB: status {st} in {dt:.2f} s, peak RSS {base} -> {hwm(p.pid)} MiB")
    p.kill(); p.wait(); p, port = start("--parallel", "1")
    base = hwm(p.pid)
    body = small[:-1] + b', "pad": "' + b"x" * (16 << 20) + b'"}'
    chunks = b"".join(b"%x\r\n" % len(body[i:i+65536]) + body[i:i+65536] + b"\r\n" for i in range(0, len(body), 65536)) + b"0\r\n\r\n"
    st, _, dt = exchange(port, b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks, 60)
    print(f"chunked 16 MiB: status {st} in {dt:.2f} s, peak RSS {base} -> {hwm(p.pid)} MiB")
    form = small[:-1] + b', "pad": "' + b"x" * (100 << 10) + b'"}'
    st, _, dt = exchange(port, post(form, b"Content-Type: application/x-www-form-urlencoded\r\n"))
    print(f"form-urlencoded 100 KiB: status {st}")
    p.kill(); p.wait(); p, port = start("--parallel", "1")
    base = hwm(p.pid)
    hdr = b"GET /v1/models HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-Pad-%d: %s\r\n" % (i, b"y" * 1000) for i in range(32 << 10)) + b"\r\n"
    st, head, dt = exchange(port, hdr, 60)
    print(f"32 MiB of header lines: status {st} in {dt:.2f} s, peak RSS {base} -> {hwm(p.pid)} MiB")
    st, head, dt = exchange(port, post(small), 10, half_close=True)
    print(f"half-close after the request: status {st} ({head[:40]!r}) in {dt:.2f} s")
    try:
        q = subprocess.Popen([BIN, "-m", MODEL, "--port", str(port), "--threads", "1"], stderr=subprocess.PIPE, text=True)
        rc = q.wait(timeout=10); err = q.stderr.read().strip().splitlines()[-1]
    except subprocess.TimeoutExpired:
        q.terminate(); q.wait(); rc, err = "still running after 10 s (bound the same port)", ""
    print(f"second server on the same port: exit {rc} {err!r}")
    # slowloris: 60 connections, one byte every 2 s
    socks = []
    for i in range(60):
        s = socket.socket(); s.connect(("127.0.0.1", port)); s.sendall(b"P"); socks.append(s)
    stop = [False]
    def drip():
        while not stop[0]:
            time.sleep(2)
            for s in socks:
                try: s.send(b"O")
                except OSError: pass
    th = threading.Thread(target=drip); th.start()
    time.sleep(1)
    lat = []
    for _ in range(3):
        try:
            st, _, dt = exchange(port, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n", 5)
        except OSError as e:
            st, dt = str(e), 5
        lat.append((st, round(dt, 3)))
        time.sleep(0.5)
    stop[0] = True; th.join()
    for s in socks: s.close()
    print(f"/health under 60 slowloris connections: {lat}")
finally:
    p.kill(); p.wait()

p, port = start("--api-key", "sekret")
try:
    st, _, _ = exchange(port, post(small, b"Content-Type: application/json\r\nAuthorization: bearer sekret\r\n"))
    print(f"'Authorization: bearer sekret' (lowercase scheme): status {st}")
finally:
    p.kill(); p.wait()
