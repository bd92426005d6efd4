"""The studio served on a free local port: in this process (Gradio's server thread) or as
`python app.py` in a child process, for the API and browser tests; and its events called over raw
HTTP, by fn_index, as any caller can (a private event is only left off the API page)."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
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


# -- raw HTTP, as any caller may speak it: the routes gradio serves for every event --------------

def get_json(url: str, timeout_s: float = 30):
    with urllib.request.urlopen(url, timeout=timeout_s) as response:
        return json.load(response)


def post_json(url: str, body: dict, timeout_s: float = 30) -> tuple[int, object]:
    """(status, parsed body) of a JSON POST; an HTTP error status is returned, not raised."""
    request = urllib.request.Request(url, data=json.dumps(body, allow_nan=True).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        with error:
            text = error.read().decode(errors="replace")
        try:
            return error.code, json.loads(text)
        except ValueError:
            return error.code, text


def fn_index(url: str, *, api_name: str | None = None, trigger: tuple[str, str] | None = None) -> int:
    """The fn_index of an event, found in the page's /config by its API name, or by the elem_id of
    the component that triggers it and the trigger, e.g. ("reuse-file", "upload")."""
    config = get_json(url + "config")
    ids = {component["id"]: component.get("props", {}).get("elem_id") for component in config["components"]}
    for dependency in config["dependencies"]:
        if api_name is not None and dependency.get("api_name") == api_name:
            return dependency["id"]
        if trigger is not None and any((ids.get(target), event) == trigger for target, event in dependency["targets"]):
            return dependency["id"]
    raise LookupError(f"no event {api_name or trigger} in {url}config")


def upload(url: str, path: Path) -> dict:
    """`path` sent through /gradio_api/upload, as the browser and gradio_client do: the file payload
    that names it."""
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"{Path(path).name}\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode() + Path(path).read_bytes() + \
        f"\r\n--{boundary}--\r\n".encode()
    request = urllib.request.Request(url + "gradio_api/upload", data=body,
                                     headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    with urllib.request.urlopen(request, timeout=60) as response:
        [server_path] = json.load(response)
    return {"path": server_path, "orig_name": Path(path).name, "meta": {"_type": "gradio.FileData"}}


class QueuedCall:
    """One event joined through /gradio_api/queue/join, its messages read from the session's
    /gradio_api/queue/data stream. `close()` drops the connection, as a closed browser tab does."""

    def __init__(self, url: str, fn_index_: int, data: list, *, session_hash: str | None = None,
                 timeout_s: float = 120):
        self.url, self.timeout_s = url, timeout_s
        self.session_hash = session_hash or uuid.uuid4().hex
        status, answer = post_json(url + "gradio_api/queue/join", {
            "data": data, "fn_index": fn_index_, "session_hash": self.session_hash, "event_data": None,
            "trigger_id": None}, timeout_s)
        self.joined = status == 200
        self.refusal = None if self.joined else answer  # e.g. {"detail": "Queue is full. ..."} with 503
        self.event_id = answer["event_id"] if self.joined else None
        self.messages: list[dict] = []
        self._stream = None
        if self.joined:
            self._stream = urllib.request.urlopen(
                f"{url}gradio_api/queue/data?session_hash={self.session_hash}", timeout=timeout_s)

    def next_message(self) -> dict | None:
        """The next message of this event (None once the stream ends)."""
        for raw in self._stream:
            line = raw.decode().strip()
            if line.startswith("data:"):
                message = json.loads(line.removeprefix("data:"))
                if message.get("event_id") in (None, self.event_id):
                    self.messages.append(message)
                    return message
        return None

    def wait_for(self, msg: str) -> dict:
        """Read until a message of kind `msg` ("process_starts", "progress", "process_completed")."""
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            message = self.next_message()
            if message is None:
                raise AssertionError(f"the stream ended before {msg!r}: {self.messages}")
            if message.get("msg") == msg:
                return message
            if message.get("msg") == "process_completed":
                raise AssertionError(f"the event completed before {msg!r}: {message}")
        raise AssertionError(f"no {msg!r} within {self.timeout_s} s")

    def result(self) -> tuple[bool, dict]:
        """(success, output) of the completed event; output is {"data": [...]} or {"error": ...}."""
        if not self.joined:
            return False, {"error": self.refusal}
        try:
            message = self.wait_for("process_completed")
        finally:
            self.close()
        return bool(message.get("success")), message.get("output") or {}

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None


def call_event(url: str, fn_index_: int, data: list, **options) -> tuple[bool, dict]:
    """(success, output) of one event called over the queue with `data`, as any HTTP client may."""
    return QueuedCall(url, fn_index_, data, **options).result()


def run_predict(url: str, fn_index_: int, data: list, session_hash: str | None = None) -> tuple[int, object]:
    """An event called through /gradio_api/run/predict, outside the queue: (status, answer)."""
    return post_json(url + "gradio_api/run/predict", {
        "data": data, "fn_index": fn_index_, "session_hash": session_hash or uuid.uuid4().hex})


def endpoint_call(url: str, api_name: str, **values) -> tuple[int, list]:
    """(fn_index, data) to call the endpoint `api_name` over raw HTTP: every input at the API
    page's default but those given in `values` (by parameter name), session states null."""
    config = get_json(url + "config")
    dependency = next(d for d in config["dependencies"] if d.get("api_name") == api_name)
    kinds = {component["id"]: component["type"] for component in config["components"]}
    parameters = get_json(url + "gradio_api/info")["named_endpoints"]["/" + api_name]["parameters"]
    unknown = set(values) - {parameter["parameter_name"] for parameter in parameters}
    if unknown:
        raise KeyError(f"/{api_name} has no parameter {', '.join(sorted(unknown))}")
    given = iter(values.get(parameter["parameter_name"], parameter.get("parameter_default"))
                 for parameter in parameters)
    return dependency["id"], [None if kinds[input_] == "state" else next(given) for input_ in dependency["inputs"]]
