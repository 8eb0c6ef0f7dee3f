"""Fixtures for the planner tests: a real HTTP server speaking the OpenAI chat-completions API.

`FakeVLM` runs http.server on 127.0.0.1 with an ephemeral port in a thread. Each POST to
/v1/chat/completions takes the next step of a script (or the default step when the script is empty):

  ("good", text)               200 with a normal chat-completions envelope around `text`
  ("slow", delay_s, text)      the same after `delay_s` (interruptible on shutdown)
  ("status", code, retry_after[, body])  an HTTP error (429 / 500 / 400), optional Retry-After header
                               and body (default: a generic OpenAI-style error object)
  ("alternate", code, text)    every other call fails: odd-numbered POSTs (1st, 3rd, ...) answer HTTP
                               `code`, even-numbered ones answer `text` (a flaky VLM behind a proxy)
  ("truncated",)               200 with a JSON envelope cut in the middle
  ("envelope", body)           200 with an arbitrary body (malformed envelopes)
  ("huge", n_bytes)            200 with an n-byte body
  ("length", text)             200 with finish_reason "length" (cut off by max_tokens)

Every request body is recorded (parsed JSON) for assertions about prompts and images.
"""

from __future__ import annotations

import json
import socket
import threading
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np
import pytest


def envelope(text: str, finish: str = "stop") -> bytes:
    return json.dumps({
        "id": "chatcmpl-test", "object": "chat.completion", "model": "fake-vl",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}],
    }).encode()


class FakeVLM:
    def __init__(self) -> None:
        self.script: deque = deque()
        self.default = ("good", "ok")
        self.requests: list[dict] = []
        self.posts = 0  # POSTs answered so far (the "alternate" step counts them)
        self.lock = threading.Lock()
        self.closing = threading.Event()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self):
                super().setup()
                # Headers and body go out as separate writes: without TCP_NODELAY, Nagle plus the
                # client's delayed ACK adds ~40 ms to every reply (a stand-in artefact, not the link's).
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def log_message(self, *args):  # keep pytest output clean
                pass

            def _send(self, code: int, body: bytes, headers: dict | None = None) -> None:
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                try:
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (deadline): expected in the slow cases

            def do_GET(self):  # noqa: N802 - http.server naming
                if self.path.endswith("/models"):
                    self._send(200, json.dumps({"data": [{"id": "fake-vl"}]}).encode())
                else:
                    self._send(404, b"{}")

            def do_POST(self):  # noqa: N802 - http.server naming
                n = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(n)
                with fake.lock:
                    fake.requests.append(json.loads(body))
                    fake.posts += 1
                    n_post = fake.posts
                    step = fake.script.popleft() if fake.script else fake.default
                kind = step[0]
                if kind == "good":
                    self._send(200, envelope(step[1]))
                elif kind == "length":
                    self._send(200, envelope(step[1], finish="length"))
                elif kind == "slow":
                    if fake.closing.wait(step[1]):
                        return
                    self._send(200, envelope(step[2]))
                elif kind == "status":
                    headers = {"Retry-After": str(step[2])} if len(step) > 2 and step[2] is not None else None
                    body = step[3] if len(step) > 3 else b'{"error": {"message": "scripted failure"}}'
                    self._send(step[1], body, headers)
                elif kind == "alternate":
                    if n_post % 2 == 1:
                        self._send(step[1], b'{"error": {"message": "scripted every-other-call failure"}}')
                    else:
                        self._send(200, envelope(step[2]))
                elif kind == "truncated":
                    self._send(200, envelope('{"bbox_2d": [1, 2, 3, 4]}')[:40])
                elif kind == "envelope":
                    self._send(200, step[1])
                elif kind == "huge":
                    self._send(200, b" " * step[1])
                else:
                    raise ValueError(f"unknown script step {step!r}")

        class Server(ThreadingHTTPServer):
            def handle_error(self, request, client_address):
                pass  # clients hanging up on slow/huge replies is the point of those cases

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), name="fake-vlm", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def push(self, *steps) -> None:
        with self.lock:
            self.script.extend(steps)

    def start(self) -> FakeVLM:
        self.thread.start()
        return self

    def close(self) -> None:
        self.closing.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture
def fake_vlm():
    vlm = FakeVLM().start()
    yield vlm
    vlm.close()


def scene_image(width: int = 640, height: int = 480) -> np.ndarray:
    """A small synthetic tabletop: red square, green disc, blue triangle, yellow bar on a grey table."""
    img = np.full((height, width, 3), (120, 140, 150), np.uint8)
    sx, sy = width / 640, height / 480
    cv2.rectangle(img, (int(100 * sx), int(200 * sy)), (int(150 * sx), int(250 * sy)), (30, 30, 220), -1)
    cv2.circle(img, (int(320 * sx), int(150 * sy)), int(25 * sx), (40, 180, 40), -1)
    tri = np.array([[500 * sx, 300 * sy], [560 * sx, 300 * sy], [530 * sx, 250 * sy]], np.int32)
    cv2.fillPoly(img, [tri], (210, 70, 20))
    cv2.rectangle(img, (int(300 * sx), int(330 * sy)), (int(325 * sx), int(390 * sy)), (30, 210, 220), -1)
    return img


@pytest.fixture
def head_image() -> np.ndarray:
    return scene_image()
