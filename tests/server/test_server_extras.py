#!/usr/bin/env python3
"""af-server's llama-server-compatible extras, through the official openai client and raw HTTP:

  test_server_extras.py --server build/apps/server/af-server \
                        --model ../shared/testdata/models/stories260K-hf

/tokenize (with pieces, add_special, bad fields), /detokenize (round trip, unassigned ids),
/apply-template, /props, /v1/models/{id}, --alias (the id the openai client sees),
--chat-template FILE, CORS (--cors-origin: preflight allowed, disallowed, off by default;
headers on real responses), --timeout, and --access-log with and without --log-prompts.
Exits non-zero on the first failure."""
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


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, binary, model, *extra):
        self.port = free_port()
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen([binary, "-m", model, "--port", str(self.port), "--threads",
                                      "1", *extra], stderr=self.log)
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                if self.request("GET", "/health")[0] == 200:
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("af-server did not start")

    def request(self, method, path, body=None, headers=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        data = json.dumps(body) if isinstance(body, (dict, list)) else body
        conn.request(method, path, body=data, headers=headers or {})
        r = conn.getresponse()
        payload = r.read()
        conn.close()
        try:
            payload = json.loads(payload) if payload else None
        except ValueError:
            payload = payload.decode()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, payload

    def stop(self):
        self.proc.terminate()
        self.proc.wait(15)
        self.log.seek(0)
        return self.log.read().decode(errors="replace")


def check(condition, what):
    if not condition:
        raise AssertionError(what)
    print("ok ", what)


def test_tokenize(s):
    status, _, body = s.request("POST", "/tokenize", {"content": "Hello world"})
    ids = body["tokens"]
    check(status == 200 and ids and all(isinstance(i, int) for i in ids), "/tokenize: ids")
    status, _, body = s.request("POST", "/tokenize", {"content": "Hello world", "with_pieces": True})
    pieces = body["tokens"]
    check([p["id"] for p in pieces] == ids
          and "".join(p["piece"] for p in pieces).strip() == "Hello world",
          "/tokenize with_pieces: ids and pieces")
    _, _, body = s.request("POST", "/tokenize", {"content": "Hello", "add_special": True})
    check(body["tokens"][0] == 1, "/tokenize add_special: BOS first")
    status, _, body = s.request("POST", "/tokenize", {"content": 5})
    check(status == 400 and body["error"]["param"] == "content", "/tokenize: bad content -> 400")
    status, _, body = s.request("POST", "/tokenize", {"with_pieces": True})
    check(status == 400 and body["error"]["code"] == "missing_required_parameter",
          "/tokenize: missing content -> 400")
    status, _, body = s.request("POST", "/detokenize", {"tokens": ids})
    check(status == 200 and body["content"].strip() == "Hello world", "/detokenize round trip")
    status, _, body = s.request("POST", "/detokenize", {"tokens": [1, 99999999]})
    check(status == 400 and body["error"]["param"] == "tokens[1]", "/detokenize: bad id names it")
    status, _, body = s.request("POST", "/detokenize", "not json")
    check(status == 400 and body["error"]["code"] == "invalid_json", "/detokenize: bad JSON -> 400")


def test_alias_template_props(binary, model):
    with tempfile.NamedTemporaryFile("w", suffix=".jinja", delete=False) as f:
        f.write("{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}<assistant>")
        template = f.name
    s = Server(binary, model, "--alias", "storyteller", "--chat-template", template)
    try:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{s.port}/v1", api_key="none")
        check([m.id for m in client.models.list().data] == ["storyteller"], "--alias in /v1/models")
        check(client.models.retrieve("storyteller").id == "storyteller", "/v1/models/{id}")
        try:
            client.models.retrieve("other")
            check(False, "/v1/models/other -> 404")
        except openai.NotFoundError:
            check(True, "/v1/models/other -> 404")
        reply = client.chat.completions.create(model="storyteller", max_tokens=4,
                                               messages=[{"role": "user", "content": "Hi"}])
        check(reply.model == "storyteller", "replies name the alias")
        status, _, body = s.request("POST", "/apply-template",
                                    {"messages": [{"role": "user", "content": "Hi"}]})
        check(status == 200 and body["prompt"] == "<user>Hi<assistant>",
              "/apply-template renders the --chat-template file")
        status, _, body = s.request("GET", "/props")
        check(status == 200 and body["model_alias"] == "storyteller"
              and body["chat_template"].startswith("{% for m in messages %}")
              and body["default_generation_settings"]["n_ctx"] > 0 and body["total_slots"] >= 1,
              "/props: alias, template, context, slots")
        status, _, _ = s.request("POST", "/props", "{}")
        check(status in (400, 404, 405), "/props takes no body")
    finally:
        s.stop()
        os.unlink(template)


def test_cors(binary, model):
    s = Server(binary, model)
    try:
        status, headers, _ = s.request("OPTIONS", "/v1/chat/completions",
                                       headers={"Origin": "http://a.example",
                                                "Access-Control-Request-Method": "POST"})
        check(status == 403 and "access-control-allow-origin" not in headers,
              "CORS off by default: preflight 403 without CORS headers")
    finally:
        s.stop()
    s = Server(binary, model, "--cors-origin", "http://a.example", "--api-key", "k")
    try:
        status, headers, _ = s.request("OPTIONS", "/v1/chat/completions",
                                       headers={"Origin": "http://a.example",
                                                "Access-Control-Request-Method": "POST",
                                                "Access-Control-Request-Headers": "authorization"})
        check(status == 204 and headers.get("access-control-allow-origin") == "http://a.example"
              and "POST" in headers.get("access-control-allow-methods", "")
              and "Authorization" in headers.get("access-control-allow-headers", ""),
              "allowed origin: preflight 204 with CORS headers, before the API key check")
        status, headers, _ = s.request("OPTIONS", "/v1/chat/completions",
                                       headers={"Origin": "http://b.example"})
        check(status == 403 and "access-control-allow-origin" not in headers,
              "other origin: preflight 403 without CORS headers")
        status, headers, _ = s.request("POST", "/v1/completions",
                                       {"prompt": "Once", "max_tokens": 2},
                                       headers={"Origin": "http://a.example",
                                                "Authorization": "Bearer k"})
        check(status == 200 and headers.get("access-control-allow-origin") == "http://a.example",
              "allowed origin: the response carries Access-Control-Allow-Origin")
        status, headers, _ = s.request("POST", "/v1/completions",
                                       {"prompt": "Once", "max_tokens": 2},
                                       headers={"Origin": "http://b.example",
                                                "Authorization": "Bearer k"})
        check("access-control-allow-origin" not in headers, "other origin: no CORS header")
    finally:
        s.stop()


def test_access_log_and_timeout(binary, model):
    s = Server(binary, model, "--access-log", "-", "--timeout", "2")
    try:
        s.request("POST", "/v1/completions", {"prompt": "Secret words", "max_tokens": 3})
        s.request("GET", "/v1/models")
        # --timeout: a request whose body never completes gets 408 after about 2 s.
        sock = socket.create_connection(("127.0.0.1", s.port))
        sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        sock.settimeout(10)
        started = time.time()
        answer = sock.recv(4096).decode(errors="replace")
        sock.close()
        check(answer.startswith("HTTP/1.1 408") and time.time() - started < 6,
              "--timeout 2: a stalled body gets 408 within the limit")
    finally:
        log = s.stop()
    check('"POST /v1/completions" 200 tokens=' in log and "ms" in log and "Secret" not in log,
          "access log: method, path, status, tokens, ms; no prompt text by default")
    check('"GET /v1/models" 200' in log, "access log: every request")
    s = Server(binary, model, "--access-log", "-", "--log-prompts")
    try:
        s.request("POST", "/v1/completions", {"prompt": "Secret words", "max_tokens": 3})
    finally:
        log = s.stop()
    check('prompt="Secret words"' in log, "--log-prompts: the prompt text is logged")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", required=True)
    ap.add_argument("--model", required=True)
    args = ap.parse_args()
    s = Server(args.server, args.model)
    try:
        test_tokenize(s)
    finally:
        s.stop()
    test_alias_template_props(args.server, args.model)
    test_cors(args.server, args.model)
    test_access_log_and_timeout(args.server, args.model)
    print("all extras checks passed")


if __name__ == "__main__":
    sys.exit(main())
