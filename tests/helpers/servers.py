"""The studio served on a free local port: in this process (Gradio's server thread) or as
`python app.py` in a child process, for the API and browser tests."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

import ui

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(studio, queue_size: int = ui.DEFAULT_QUEUE_SIZE):
    """(demo, url): the studio page for `studio`, served by Gradio's own thread; `demo.close()` stops it."""
    port = free_port()
    demo = ui.build_demo(studio)
    demo.queue(**ui.queue_options(queue_size)).launch(
        server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, **ui.LAUNCH_OPTIONS)
    return demo, f"http://127.0.0.1:{port}/"


def wait_for_url(url: str, process: subprocess.Popen, log_path: Path, timeout_s: float) -> None:
    """Return once `url` answers; fail the test with the log if `process` exits or `timeout_s` passes."""
    deadline = time.monotonic() + timeout_s
    while True:
        if process.poll() is not None:
            pytest.fail(f"the app exited with {process.returncode}:\n{log_path.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:
            if time.monotonic() > deadline:
                pytest.fail(f"the app did not answer within {timeout_s} s:\n{log_path.read_text()}")
            time.sleep(0.5)


@contextmanager
def app_process(log_path: Path, timeout_s: float, *args: str):
    """`python app.py ARGS` on 127.0.0.1 at a free port, its output in `log_path`; yields its URL
    once it answers, and stops it on exit."""
    port = free_port()
    with open(log_path, "w") as log:
        process = subprocess.Popen([sys.executable, "app.py", "--host", "127.0.0.1", "--port", str(port), *args],
                                   cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                   env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        url = f"http://127.0.0.1:{port}/"
        wait_for_url(url, process, log_path, timeout_s)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
