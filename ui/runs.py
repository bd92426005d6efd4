"""Whether the visitor still wants the generation their request asked for.

Three things say no, and a run stops at the next step (the studio's `on_step` callback returns
CANCEL) or, still waiting in the queue, never starts:

- the session's Cancel (the `cancel` event, from the button or `client.predict(api_name="/cancel")`):
  every request of that session queued before it is cancelled, running or still waiting;
- gradio cancelling the event's task (its /cancel route, which the page's Cancel button and
  gradio_client's `job.cancel()` call): the handler awaits the run in a worker thread, so the
  cancellation reaches it at once and the thread is told to stop;
- the visitor's connection closing: gradio's queue then marks the event dead (and drops the
  session's requests still waiting), but lets a running handler run on, so the run asks the queue.

A run with live previews hands each preview from its worker thread to the event (`Previews`),
which yields the newest one to the page; a preview that a newer one overtakes is skipped.
"""
from __future__ import annotations

import asyncio
import math
import threading
import time
from dataclasses import dataclass
from typing import Any, AsyncIterator, Callable, TypeVar

import anyio
from gradio.context import LocalContext

T = TypeVar("T")


@dataclass
class RunControl:
    """Per browser session: when it last pressed Cancel (monotonic seconds)."""

    cancelled_at: float = -math.inf

    def cancel(self) -> None:
        self.cancelled_at = time.monotonic()

    def cancels(self, queued_at: float) -> bool:
        """Whether a request queued at `queued_at` was cancelled."""
        return queued_at < self.cancelled_at


class Run:
    """One generate request of one session, from the moment gradio hands it to the page.

    Made inside the event (it finds its entry in gradio's queue through gradio's context, as
    `gr.Progress` does); outside a queued event it counts as queued when made and never drops.
    """

    def __init__(self, control: RunControl):
        self.control = control
        self._event = queue_event()
        self.queued_at = self._event.enqueue_time if self._event is not None else time.monotonic()
        self._abandoned = threading.Event()

    @property
    def wanted(self) -> bool:
        """False once the request was cancelled, its task cancelled or its visitor gone."""
        if self._abandoned.is_set() or self.control.cancels(self.queued_at):
            return False
        return self._event is None or self._event.alive

    async def in_thread(self, work: Callable[..., T], *args) -> T:
        """`work(*args)` in a worker thread; if gradio cancels this task meanwhile, the run is marked
        unwanted so that `work` can stop, and the cancellation goes on at once."""
        try:
            return await anyio.to_thread.run_sync(work, *args, abandon_on_cancel=True)
        finally:
            self._abandoned.set()


class Previews:
    """The newest preview of one run: put by the worker thread, taken by the event's coroutine."""

    def __init__(self):
        self._loop = asyncio.get_running_loop()
        self._arrived = asyncio.Event()
        self._latest: tuple[int, int, Any] | None = None

    def put(self, step: int, total: int, pictures) -> None:
        """From the worker thread: the pictures the run predicts after `step` of `total`."""
        self._latest = (step, total, pictures)
        self._loop.call_soon_threadsafe(self._arrived.set)

    async def until_done(self, task: asyncio.Future) -> AsyncIterator[tuple[int, int, Any]]:
        """Each newest (step, total, pictures) as it arrives, until `task` is done."""
        while not task.done():
            arrived = asyncio.ensure_future(self._arrived.wait())
            try:
                await asyncio.wait({task, arrived}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                arrived.cancel()
            if self._arrived.is_set() and not task.done():
                self._arrived.clear()
                yield self._latest


def queue_event():
    """Gradio's queue entry of the event being processed, or None outside a queued event."""
    blocks, event_id = LocalContext.blocks.get(None), LocalContext.event_id.get(None)
    queue = getattr(blocks, "_queue", None)
    if queue is None or event_id is None:
        return None
    for job in queue.active_jobs:
        for event in job or ():
            if event._id == event_id:
                return event
    return None
