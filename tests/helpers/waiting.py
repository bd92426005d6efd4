"""Polling for tests that wait on other threads or processes; a bound on the wait, not a timing assertion."""
from __future__ import annotations

import time

import pytest


def wait_until(condition, what: str, timeout_s: float = 120, poll_s: float = 0.02) -> None:
    """Return once `condition()` is true; fail the test naming `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(poll_s)
