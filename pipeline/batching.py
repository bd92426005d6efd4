"""Requests from many threads, served in batches: what queues up while the device is busy runs together.

The web app hands each visitor's request to `Studio.generate` from its own worker thread. Here
each request becomes a ticket in a shared waiting line. Whichever caller finds the device free
takes the oldest ticket and every waiting ticket compatible with it (same steps, guidance,
size and input picture: `batch_key`), up to `max_batch`, and serves them with one `generate_batch`
call. A request that finds the device idle runs at once, alone, with no added wait; batches form
only under load.

Each caller keeps its own progress, cancellation and errors: the batch's step callback reports
the step to every ticket in it, a ticket whose callback answers `CANCEL` is dropped from the
result (its caller gets `GenerationCancelled`) and the run stops early only when every ticket in
it has been cancelled. A request with a bad value fails on its own, before it joins the line; a
request that fails inside the batch (a file gone bad since, a post-processing stage) gets its own
error from `BatchPartlyFailed` while the others get their images; and a batch that fails as a
whole for any other reason (the NaN/black check, a device error) is served again one request at
a time, so that one visitor's request never fails another's. Live previews are each caller's own
too: a batch is previewed only when a ticket asks for it (the runner is then given `on_preview=`),
a step is decoded only when a ticket wants that step, and each ticket is handed its own pictures.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from pipeline.request import (CANCEL, BatchPartlyFailed, GenerationCancelled, GenerationRequest, GenerationResult,
                              StepCallback)

if TYPE_CHECKING:
    from pipeline.previews import PreviewCallback

# Serves requests together: one result each, in order, or BatchPartlyFailed with each one's outcome. A
# runner that makes previews also takes `on_preview=` (`pipeline.previews.BatchPreviewCallback`).
BatchRunner = Callable[..., list[GenerationResult]]


def batch_key(request: GenerationRequest) -> tuple:
    """Requests with equal keys can share one forward batch: the same steps, guidance, size and mode,
    in the image modes the same input picture, strength, mask and feather (by their hashes), and in
    reference editing the same references and encoded prompt (some edit pipelines take one prompt a batch)."""
    key = (request.steps, request.guidance, request.width, request.height, request.mode)
    if request.init_image is not None:
        key += (request.init_image.sha256, request.strength)
    if request.mask is not None:
        key += (request.mask.sha256, request.mask_feather)
    if request.references:
        key += (tuple(picture.sha256 for picture in request.references), request.encoded_prompt,
                request.negative_prompt)
    return key


@dataclass(eq=False)
class _Ticket:
    request: GenerationRequest  # resolved: defaults filled in, limits checked
    on_step: StepCallback | None
    on_preview: PreviewCallback | None = None
    preview_every: int = 1
    result: GenerationResult | None = None
    error: BaseException | None = None
    cancelled_at: tuple[int, int] | None = None  # (step, total) when its caller cancelled
    done: threading.Event = field(default_factory=threading.Event)

    @property
    def key(self) -> tuple:
        return batch_key(self.request)


class BatchingQueue:
    """Serves `submit` calls from any number of threads through `run_batch`, one batch at a time."""

    def __init__(self, run_batch: BatchRunner, max_batch: int = 4):
        if max_batch < 1:
            raise ValueError(f"batch size must be at least 1, got {max_batch}")
        self.run_batch = run_batch
        self.max_batch = max_batch
        self._waiting: list[_Ticket] = []
        self._waiting_lock = threading.Lock()
        self._device = threading.Lock()

    @property
    def waiting(self) -> int:
        """Requests queued for the device, not yet running."""
        with self._waiting_lock:
            return len(self._waiting)

    def submit(self, request: GenerationRequest, on_step: StepCallback | None = None, *,
               on_preview: PreviewCallback | None = None, preview_every: int = 1) -> GenerationResult:
        """Serve one resolved request, possibly inside a batch with others; blocks until it is done.
        `on_preview(step, total, pictures)` after every `preview_every`-th previewed step, with this
        request's own pictures."""
        ticket = _Ticket(request, on_step, on_preview, preview_every)
        with self._waiting_lock:
            self._waiting.append(ticket)
        while not ticket.done.is_set():
            with self._device:
                if ticket.done.is_set():  # served by another caller's batch while this one waited
                    break
                self._serve(self._take())
        if ticket.error is not None:
            raise ticket.error
        return ticket.result

    def _take(self) -> list[_Ticket]:
        """The oldest waiting ticket and the waiting tickets compatible with it, oldest first."""
        with self._waiting_lock:
            key = self._waiting[0].key
            batch = [ticket for ticket in self._waiting if ticket.key == key][:self.max_batch]
            self._waiting = [ticket for ticket in self._waiting if ticket not in batch]
        return batch

    def _serve(self, batch: list[_Ticket]) -> None:
        try:
            self._run(batch)
        except GenerationCancelled as error:
            for ticket in batch:
                ticket.error = error
        except Exception as error:  # noqa: BLE001 - its caller re-raises it
            if len(batch) == 1:
                batch[0].error = error
            else:
                for ticket in batch:  # find whose request failed the run; the others still get their images
                    if ticket.cancelled_at is not None:
                        ticket.error = GenerationCancelled(*ticket.cancelled_at)
                    else:
                        self._serve([ticket])
        except BaseException as error:  # noqa: BLE001 - an interrupt: handed to every caller, who re-raise it
            for ticket in batch:
                ticket.error = error
        finally:
            for ticket in batch:
                ticket.done.set()

    def _run(self, batch: list[_Ticket]) -> None:
        def on_step(step: int, total: int):
            live = False
            for ticket in batch:
                if ticket.cancelled_at is None:
                    if ticket.on_step is not None and ticket.on_step(step, total) == CANCEL:
                        ticket.cancelled_at = (step, total)
                    else:
                        live = True
            return None if live else CANCEL

        requests = [ticket.request for ticket in batch]
        try:
            if any(ticket.on_preview is not None for ticket in batch):
                results = self.run_batch(requests, on_step, on_preview=_previews_for(batch))
            else:
                results = self.run_batch(requests, on_step)
        except GenerationCancelled:
            if any(ticket.cancelled_at is None for ticket in batch):
                raise
            results = [None] * len(batch)  # every caller cancelled; each gets its own step below
        except BatchPartlyFailed as partly:
            results = partly.outcomes
        for ticket, result in zip(batch, results):
            if ticket.cancelled_at is not None:
                ticket.error = GenerationCancelled(*ticket.cancelled_at)
            elif isinstance(result, Exception):
                ticket.error = result
            else:
                ticket.result = result


def _previews_for(batch: list[_Ticket]):
    """The batch's preview callback: each live ticket that asked for previews gets its own images."""
    def receiver(index: int, step: int):
        ticket = batch[index]
        wants = ticket.on_preview is not None and ticket.cancelled_at is None and step % ticket.preview_every == 0
        return ticket.on_preview if wants else None

    return fan_out_previews([ticket.request.num_images for ticket in batch], receiver)


def fan_out_previews(counts: list[int], receiver: Callable[[int, int], Callable | None]):
    """One batch's `on_preview(step, total, pictures)` for requests of `counts` images each, in order:
    `receiver(index, step)` is request `index`'s `(step, total, its pictures)` callback for this step, or
    None when it wants none; a step is decoded once, and only when some request wants it."""
    offsets = [sum(counts[:index]) for index in range(len(counts))]

    def on_preview(step: int, total: int, pictures) -> None:
        wanted = [(send, offset, count) for index, (offset, count) in enumerate(zip(offsets, counts))
                  if (send := receiver(index, step)) is not None]
        if wanted:
            images = pictures()
            for send, offset, count in wanted:
                send(step, total, images[offset:offset + count])

    return on_preview
