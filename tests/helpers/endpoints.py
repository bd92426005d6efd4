"""A stand-in OpenAI-compatible chat-completions server on 127.0.0.1, for the prompt writer's tests.

`mode` says how it answers: "ok" (a completion whose text is `reply`), "slow" (the same after
`delay_s`), "malformed" (JSON without choices) or "error" (HTTP 500). It records every request's
headers and body.
"""
from __future__ import annotations

import json
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class ChatServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, mode: str, reply: str, delay_s: float):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.mode, self.reply, self.delay_s = mode, reply, delay_s
        self.requests: list[tuple[dict, dict]] = []  # (headers, body)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class _Handler(BaseHTTPRequestHandler):
    server: ChatServer

    def log_message(self, format, *args):  # keep the test output clean
        pass

    def do_POST(self):
        length = int(self.headers.get("Content-Length", 0))
        body = json.loads(self.rfile.read(length))
        self.server.requests.append((dict(self.headers), body))
        mode = self.server.mode
        if mode == "slow":
            time.sleep(self.server.delay_s)
        if mode == "error":
            self._send(500, {"error": "boom"})
        elif mode == "malformed":
            self._send(200, {"id": "x", "object": "chat.completion"})
        else:
            self._send(200, {"id": "x", "object": "chat.completion",
                             "choices": [{"index": 0, "message": {"role": "assistant", "content": self.server.reply}}]})

    def _send(self, status: int, payload: dict):
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        try:
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up first (timeout tests)
            pass


@contextmanager
def chat_server(mode: str = "ok", reply: str = "a small red circle at the top, blue background", delay_s: float = 2.0):
    """A running `ChatServer`; stopped (within a few seconds) on exit."""
    server = ChatServer(mode, reply, delay_s)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
