"""The studio as a Ray Serve deployment: each replica loads one `Studio` once and serves its requests.

A request reaches `StudioDeployment.generate`, a streaming method: it yields `Started` (which
replica), a `Step` after each denoising step (and a `Preview` every `preview_every` steps when
asked, for a model that makes them), then `Done` with the studio's own result or `Failed` with the
sentence the local studio gives. Meanwhile the request waits in `@serve.batch`, whose
batch is split the way the local queue splits one (`batching.batch_key`, plus the extend
placement): each compatible group is one `Studio.generate_batch` call, run in a worker thread so
the replica keeps streaming. When a caller cancels its Serve request, that request is dropped at
the next step; the batch stops early only when every request in it was dropped. One request's
failure never fails the others of its batch: a group that fails as a whole is served again one
request at a time.

A deliverable (`StudioDeployment.deliverable`) is rendered whole on the replica, as the local studio
renders it (`Studio.deliverable`: key visual, extend steps, post-processing, exact size), in a worker
thread: its generations go through the studio's own device queue, a `Step` per denoising step of
each, then `Delivered`. The key visuals a caller already holds come with the request and the new
ones go back with the result, so every deliverable of one prompt and seed extends the same key
visual whichever replica serves it.
"""
from __future__ import annotations

import asyncio
import resource
from dataclasses import dataclass, field

from ray import serve

from pipeline.batching import batch_key, fan_out_previews
from pipeline.request import (CANCEL, BatchPartlyFailed, GenerationCancelled, GenerationRequest, GenerationResult,
                              ModelLimits)
from pipeline.serving.events import Delivered, Done, Failed, Preview, Started, Step
from pipeline.serving.options import DEPLOYMENT_NAME

# The first request of an idle replica waits this long for company before its batch starts
# (`ServeOptions.batch_wait_ms` sets each deployment's own).
BATCH_WAIT_S = 0.01


@dataclass(frozen=True)
class Description:
    """What the page needs to know of the deployed model without loading it (`ui.engine.Engine`)."""

    limits: ModelLimits
    modes: tuple[str, ...]
    reference: str
    pipeline_class: str
    device: str
    capacity: int  # requests the deployment serves at once: batch size x most replicas
    previews: bool  # whether the model's runs can be previewed (`Studio.previews`)
    preview_every: int  # steps between previews when the caller names none (`Studio.preview_every`)
    replica: str
    peak_rss_mb: float  # the replica process's peak resident memory, the model loaded
    batch_sizes: tuple[int, ...]  # of this replica's `@serve.batch` calls, in order
    dropped: tuple[tuple[int, int, int], ...]  # (seed, step, total) of each request dropped mid-run


@dataclass(eq=False)
class _Ticket:
    """One request inside the replica: its event stream and whether its caller still wants it."""

    request: GenerationRequest
    loop: asyncio.AbstractEventLoop
    preview_every: int | None = None  # steps between previews; None: no previews
    events: asyncio.Queue = field(default_factory=asyncio.Queue)
    dropped: bool = False  # its caller cancelled the Serve request or went away
    cancelled_at: tuple[int, int] | None = None

    def send(self, event) -> None:
        """Hand an event to the request's stream; safe from the worker thread."""
        self.loop.call_soon_threadsafe(self.events.put_nowait, event)


@serve.deployment(name=DEPLOYMENT_NAME)
class StudioDeployment:
    def __init__(self, model: str, device: str | None = None, speed: dict | None = None, max_batch: int = 4,
                 threads: int | None = None, capacity: int | None = None,
                 batch_wait_ms: float = BATCH_WAIT_S * 1000):
        import ray
        import torch

        from pipeline.speed import SpeedOptions
        from pipeline.studio import Studio

        if threads is not None:
            torch.set_num_threads(threads)
        self.studio = Studio.load(model, device=device, speed_options=SpeedOptions(**(speed or {})),
                                  max_batch=max_batch)
        self.replica = ray.get_runtime_context().get_actor_name() or ""
        self.capacity = capacity or max_batch
        self.batch_sizes: list[int] = []
        self.dropped: list[tuple[int, int, int]] = []
        self._batched.set_max_batch_size(max_batch)
        self._batched.set_batch_wait_timeout_s(batch_wait_ms / 1000)

    def describe(self) -> Description:
        studio = self.studio
        return Description(limits=studio.limits, modes=tuple(studio.modes), reference=studio.source.reference,
                           pipeline_class=studio.family.pipeline_class, device=studio.device,
                           capacity=self.capacity, previews=studio.previews,
                           preview_every=studio.preview_every, replica=self.replica,
                           peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                           batch_sizes=tuple(self.batch_sizes), dropped=tuple(self.dropped))

    async def generate(self, request: GenerationRequest, preview_every: int | None = None):
        """Stream one request's events: `Started`, a `Step` per step (with a `Preview` every
        `preview_every` steps when given), then `Done` or `Failed`."""
        ticket = _Ticket(request, asyncio.get_running_loop(), preview_every if self.studio.previews else None)
        task = asyncio.ensure_future(self._batched(ticket))
        task.add_done_callback(lambda done: _report_crash(done, ticket))
        try:
            async for event in self._events(ticket, (Done, Failed)):
                yield event
        finally:  # finished, or the caller cancelled: a batch still running drops it at its next step
            ticket.dropped = True
            task.cancel()

    async def deliverable(self, request: GenerationRequest, deliverable, fit: str = "extend", anchor: str = "center",
                          colour=None, keys: dict | None = None):
        """Stream one deliverable's events (`Studio.deliverable`'s arguments; `keys`: the key visuals
        the caller holds): `Started`, a `Step` per step of each of its generations, then `Delivered`
        with the key visuals it drew, or `Failed`."""
        loop = asyncio.get_running_loop()
        ticket = _Ticket(request, loop)
        held = dict(keys or {})
        known = set(held)

        def on_step(step: int, total: int):
            if ticket.dropped:  # the caller cancelled or went away: stop at this step
                ticket.cancelled_at = (step, total)
                self.dropped.append((request.seed, step, total))
                return CANCEL
            ticket.send(Step(step, total))
            return None

        def render() -> None:
            try:
                rendered = self.studio.deliverable(request, deliverable, fit=fit, anchor=anchor, colour=colour,
                                                   on_step=on_step, keys=held)
            except Exception as error:  # noqa: BLE001 - sent to the caller in the engine's words
                ticket.send(Failed.of(error))
                return
            ticket.send(Delivered(rendered, {name: key for name, key in held.items() if name not in known}))

        loop.run_in_executor(None, render)  # its end is the event it sends
        try:
            async for event in self._events(ticket, (Delivered, Failed)):
                yield event
        finally:  # finished, or the caller cancelled: the render stops at its next step
            ticket.dropped = True

    async def _events(self, ticket: _Ticket, last: tuple[type, ...]):
        """`Started`, then the ticket's events up to and with the first of a type in `last`."""
        yield Started(self.replica)
        while True:
            event = await ticket.events.get()
            yield event
            if isinstance(event, last):
                return

    @serve.batch(max_batch_size=4, batch_wait_timeout_s=BATCH_WAIT_S)
    async def _batched(self, tickets: list[_Ticket]) -> list[None]:
        self.batch_sizes.append(len(tickets))
        await asyncio.to_thread(self._serve, tickets)
        return [None] * len(tickets)

    def _serve(self, tickets: list[_Ticket]) -> None:
        groups: dict[tuple, list[_Ticket]] = {}
        for ticket in tickets:
            # Extend settings that give one canvas size may still place the picture differently.
            groups.setdefault((*batch_key(ticket.request), ticket.request.extend), []).append(ticket)
        for group in groups.values():
            self._serve_group(group, len(tickets))

    def _serve_group(self, group: list[_Ticket], batch_size: int) -> None:
        try:
            outcomes = self._run(group)
        except GenerationCancelled as error:  # every request was dropped; each gets its own step
            outcomes = [GenerationCancelled(*ticket.cancelled_at) if ticket.cancelled_at else error
                        for ticket in group]
        except Exception as error:  # noqa: BLE001 - one request's cause must not fail the others
            if len(group) > 1:  # find whose request failed the run; the others still get their images
                for ticket in group:
                    if ticket.cancelled_at is not None:
                        ticket.send(Failed.of(GenerationCancelled(*ticket.cancelled_at)))
                    else:
                        self._serve_group([ticket], batch_size)
                return
            outcomes = [error]
        for ticket, outcome in zip(group, outcomes):
            ticket.send(Done(outcome, batch_size, len(group)) if isinstance(outcome, GenerationResult)
                        else Failed.of(outcome))

    def _run(self, group: list[_Ticket]) -> list[GenerationResult | Exception]:
        def on_step(step: int, total: int):
            live = False
            for ticket in group:
                if ticket.cancelled_at is None:
                    if ticket.dropped:
                        ticket.cancelled_at = (step, total)
                        self.dropped.append((ticket.request.seed, step, total))
                    else:
                        ticket.send(Step(step, total))
                        live = True
            return None if live else CANCEL

        previews = _previews_for(group) if any(ticket.preview_every for ticket in group) else None
        try:
            results = self.studio.generate_batch([ticket.request for ticket in group], on_step, previews)
        except BatchPartlyFailed as partly:
            results = partly.outcomes
        return [GenerationCancelled(*ticket.cancelled_at) if ticket.cancelled_at else result
                for ticket, result in zip(group, results)]


def _previews_for(group: list[_Ticket]):
    """The group's preview callback: each live request that asked for previews is sent its own images."""
    def receiver(index: int, step: int):
        ticket = group[index]
        wants = (ticket.preview_every and not ticket.dropped and ticket.cancelled_at is None
                 and step % ticket.preview_every == 0)
        return (lambda step, total, images: ticket.send(Preview(step, total, images))) if wants else None

    return fan_out_previews([ticket.request.num_images for ticket in group], receiver)


def _report_crash(task: asyncio.Task, ticket: _Ticket) -> None:
    """A batch call that raised (Serve's own error) fails its request instead of leaving it waiting."""
    if not task.cancelled() and task.exception() is not None:
        ticket.events.put_nowait(Failed.of(task.exception()))


def build(args: dict):
    """The Serve application of `options.ServeOptions.builder_args` (the Serve config's `import_path`)."""
    return StudioDeployment.bind(**args)


def application(options):
    """The Serve application of `options` (a `ServeOptions`), its deployment options applied."""
    return StudioDeployment.options(**options.deployment_options()).bind(**options.builder_args())
