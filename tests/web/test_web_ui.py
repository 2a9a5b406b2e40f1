#!/usr/bin/env python3
"""The chat page af-server serves at /, in a real browser (Debian's headless chromium, driven by
selenium through chromium-driver).

  test_web_ui.py --server build/apps/server/af-server --model ../shared/testdata/models/stories260K-hf \
                 [--vision-model tests/fixtures/models/llava_clip] [--screenshot-dir build/artifacts]

Checks: the page and its assets come with a strict Content-Security-Policy and without the API
key; typing a message and pressing Enter streams a reply equal to the API's greedy reply for the
same settings; the conversation survives a reload (localStorage); Stop ends a reply mid-stream
(the download throttled so the stream is slow) and keeps the partial text; with --api-key the
page asks for the key and works once it is entered; with a vision model, an uploaded image goes
into the request and a reply comes back. Screenshots go to --screenshot-dir (a CI artifact).
Exits non-zero on the first failure."""
import argparse
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROMPT = "Once upon a time"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, binary, model, *extra):
        self.port = free_port()
        self.proc = subprocess.Popen([binary, "-m", model, "--port", str(self.port), "--threads",
                                      "1", *extra], stderr=subprocess.DEVNULL)
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("af-server did not start")

    def get(self, path, headers=None):
        req = urllib.request.Request(self.url + path, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    def greedy_reply(self, max_tokens, key=None):
        body = json.dumps({"messages": [{"role": "user", "content": PROMPT}], "temperature": 0,
                           "max_tokens": max_tokens}).encode()
        headers = {"Content-Type": "application/json"}
        if key:
            headers["Authorization"] = "Bearer " + key
        req = urllib.request.Request(self.url + "/v1/chat/completions", data=body, headers=headers)
        with urllib.request.urlopen(req, timeout=60) as r:
            return json.load(r)["choices"][0]["message"]["content"]

    def stop(self):
        self.proc.terminate()
        self.proc.wait(15)


def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1200,800"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def set_setting(driver, name, value):
    details = driver.find_element(By.ID, "settings")
    if not details.get_attribute("open"):
        details.find_element(By.TAG_NAME, "summary").click()
    field = driver.find_element(By.ID, name)
    field.clear()
    field.send_keys(str(value))
    field.send_keys(Keys.TAB)  # "change" fires on blur


def wait_idle(driver, seconds=60):
    WebDriverWait(driver, seconds).until(
        lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-state") == "idle")


def assistant_texts(driver):
    # One script call reads every message at once: the page re-renders the list while a reply
    # streams, so element handles found first can be stale by the time their text is read.
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('.msg.assistant'), e => e.innerText.trim());")


def send(driver, text):
    box = driver.find_element(By.ID, "prompt")
    box.send_keys(text)
    box.send_keys(Keys.ENTER)


def check(condition, what):
    if not condition:
        raise AssertionError(what)
    print("ok ", what)


def test_page_headers(server):
    for path, kind in (("/", "text/html"), ("/app.js", "text/javascript"), ("/app.css", "text/css")):
        status, headers, body = server.get(path)
        check(status == 200 and headers["Content-Type"].startswith(kind) and body,
              f"GET {path}: 200 {kind}")
        csp = headers.get("Content-Security-Policy", "")
        check("default-src 'none'" in csp and "script-src 'self'" in csp, f"{path}: strict CSP")


def test_no_webui(binary, model):
    server = Server(binary, model, "--no-webui")
    try:
        check(server.get("/")[0] == 404 and server.get("/app.js")[0] == 404, "--no-webui: / is 404")
    finally:
        server.stop()


def test_chat(driver, server, shots):
    expected = server.greedy_reply(48)
    driver.get(server.url + "/")
    WebDriverWait(driver, 30).until(lambda d: d.find_element(By.ID, "model").text == "stories260K-hf")
    check(not driver.find_element(By.ID, "image-label").is_displayed(),
          "text-only model: no image upload")
    set_setting(driver, "temperature", 0)
    set_setting(driver, "max_tokens", 48)
    send(driver, PROMPT)
    WebDriverWait(driver, 30).until(lambda d: assistant_texts(d) and assistant_texts(d)[-1])
    wait_idle(driver)
    reply = assistant_texts(driver)[-1]
    check(reply == expected.strip(),
          f"streamed reply equals the API's greedy reply ({len(reply)} chars): {reply!r} vs {expected!r}")
    check("generated" in driver.find_element(By.ID, "stats").text, "timings shown")
    driver.save_screenshot(os.path.join(shots, "web_ui_chat.png"))

    driver.refresh()
    WebDriverWait(driver, 30).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".msg")) == 2)
    check(assistant_texts(driver)[-1] == reply, "conversation kept across a reload")

    # A second turn goes into the same conversation, with the history sent along.
    send(driver, "The end")
    WebDriverWait(driver, 30).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".msg")) == 4)
    wait_idle(driver)
    check(assistant_texts(driver)[-1] != "", "second turn answered")

    # Stop: throttle the download so the stream lasts, stop after the first tokens.
    driver.find_element(By.ID, "new-chat").click()
    set_setting(driver, "max_tokens", 400)
    driver.set_network_conditions(offline=False, latency=0, download_throughput=2048,
                                  upload_throughput=1 << 20)
    send(driver, PROMPT)
    WebDriverWait(driver, 60).until(lambda d: assistant_texts(d) and len(assistant_texts(d)[-1]) > 5)
    driver.find_element(By.ID, "stop").click()
    wait_idle(driver, 10)
    driver.delete_network_conditions()
    partial = assistant_texts(driver)[-1]
    full = server.greedy_reply(400)
    check(driver.find_element(By.ID, "stats").text == "stopped" and 0 < len(partial) < len(full),
          f"Stop ends the stream ({len(partial)} of {len(full)} chars kept)")
    check(len(driver.find_elements(By.CSS_SELECTOR, "#conversations li")) == 2,
          "two conversations listed")


def test_api_key(driver, binary, model):
    server = Server(binary, model, "--api-key", "sesame")
    try:
        status, _, _ = server.get("/")
        check(status == 200, "with --api-key the page itself needs no key")
        check(server.get("/v1/models")[0] == 401, "with --api-key the API does")
        driver.get(server.url + "/")
        driver.execute_script("localStorage.clear()")
        driver.refresh()
        WebDriverWait(driver, 30).until(lambda d: "API key" in d.find_element(By.ID, "model").text)
        set_setting(driver, "api_key", "sesame")
        WebDriverWait(driver, 30).until(lambda d: d.find_element(By.ID, "model").text == "stories260K-hf")
        set_setting(driver, "max_tokens", 16)
        send(driver, PROMPT)
        WebDriverWait(driver, 30).until(lambda d: assistant_texts(d) and assistant_texts(d)[-1])
        wait_idle(driver)
        check(driver.find_element(By.ID, "error").get_attribute("hidden") is not None,
              "with the key entered the page chats")
    finally:
        server.stop()


def test_image(driver, binary, model, shots):
    server = Server(binary, model)
    try:
        driver.get(server.url + "/")
        driver.execute_script("localStorage.clear()")
        driver.refresh()
        WebDriverWait(driver, 30).until(lambda d: d.find_element(By.ID, "image-label").is_displayed())
        image = os.path.join(os.environ.get("AF_TESTDATA", os.path.join(ROOT, "..", "shared", "testdata")),
                             "images", "chelsea.jpg")
        driver.find_element(By.ID, "image").send_keys(os.path.abspath(image))
        WebDriverWait(driver, 10).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#attachments img"))
        set_setting(driver, "max_tokens", 8)
        send(driver, "What is this?")
        WebDriverWait(driver, 60).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".msg")) == 2)
        wait_idle(driver)
        error = driver.find_element(By.ID, "error")
        check(error.get_attribute("hidden") is not None, "image message answered without error: "
              + error.text)
        check(driver.find_elements(By.CSS_SELECTOR, ".msg.user img"), "image shown in the message")
        driver.save_screenshot(os.path.join(shots, "web_ui_image.png"))
    finally:
        server.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--vision-model")
    ap.add_argument("--screenshot-dir", default=os.path.join(ROOT, "build", "artifacts"))
    args = ap.parse_args()
    os.makedirs(args.screenshot_dir, exist_ok=True)

    server = Server(args.server, args.model)
    driver = browser()
    try:
        test_page_headers(server)
        test_no_webui(args.server, args.model)
        test_chat(driver, server, args.screenshot_dir)
        test_api_key(driver, args.server, args.model)
        if args.vision_model:
            test_image(driver, args.server, args.vision_model, args.screenshot_dir)
    except Exception:
        driver.save_screenshot(os.path.join(args.screenshot_dir, "web_ui_failure.png"))
        raise
    finally:
        driver.quit()
        server.stop()
    print(f"all web page checks passed; screenshots in {args.screenshot_dir}")


if __name__ == "__main__":
    sys.exit(main())
