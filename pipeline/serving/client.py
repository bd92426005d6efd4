"""The page's engine when the model runs on a Ray Serve deployment (`python app.py --backend ray`).

`RayStudio` has the shape of `ui.engine.Engine`, so the page does not know where the model runs.
Each generation is one streaming Serve request: its steps (and live previews, when asked for) come
back as they are made, a CANCEL from `on_step` cancels the Serve request, and the result holds the
replica's own PNG pixels and settings. A deliverable is one such request too (`RayStudio.deliverable`),
rendered whole on the replica, so the page's Deliverables panel and `pipeline.campaign.run` serve
both back ends alike. Requests are checked against the model's limits in this process first, so a
bad value gets the engine's sentence without leaving it.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pipeline import deliverables
from pipeline.request import CANCEL, GenerationCancelled, GenerationFailed, GenerationRequest, GenerationResult
from pipeline.serving.events import Delivered, Done, Failed, Preview, Started, Step
from pipeline.serving.options import APP_NAME

if TYPE_CHECKING:
    from pipeline.brand import ColourReference
    from pipeline.deliverables import Deliverable, Rendered

REPLICA_LOST = "the model server stopped while serving this request, so there is no image; try again"
# How long connecting waits for the deployment to answer.
DESCRIBE_TIMEOUT_S = 120


@dataclass(frozen=True)
class RemoteSource:
    """The deployed model as its host named it (`ui.engine.ModelSource`)."""

    reference: str


@dataclass(frozen=True)
class RemoteFamily:
    """The diffusers pipeline class the deployed model runs with (`ui.engine.ModelFamily`)."""

    pipeline_class: str


class RayStudio:
    """The studio deployed on Ray Serve, reached through a deployment handle."""

    def __init__(self, handle, description):
        self.handle = handle
        self.description = description
        self.limits = description.limits
        self.modes = description.modes
        self.previews = description.previews
        self.source = RemoteSource(description.reference)
        self.family = RemoteFamily(description.pipeline_class)
        self.device = f"{description.device} (Ray Serve)"
        # As many page requests at once as the deployment serves at once.
        self.max_batch = description.capacity
        # Of each result, in arrival order: the size of the `@serve.batch` call it was served in, and
        # of its forward batch (the compatible requests of that call).
        self.batch_sizes: list[int] = []
        self.group_sizes: list[int] = []
        self._lock = threading.Lock()

    @classmethod
    def connect(cls, app_name: str = APP_NAME) -> RayStudio:
        """The deployed application `app_name` of the cluster this process has joined."""
        from ray import serve

        handle = serve.get_app_handle(app_name)
        return cls(handle, handle.describe.remote().result(timeout_s=DESCRIBE_TIMEOUT_S))

    @classmethod
    def join(cls, address: str, app_name: str = APP_NAME, *, verbose: bool = False) -> RayStudio:
        """Join the cluster at `address` and reach its deployed studio; ConnectionError, in one sentence,
        when there is no cluster or no studio deployed on it."""
        from pipeline.serving.cluster import connect

        try:
            connect(address, verbose=verbose)
        except Exception as error:  # noqa: BLE001 - Ray's many ways of not finding a cluster
            raise ConnectionError(f"cannot join the Ray cluster at {address}: {_last_line(error)}") from None
        try:
            return cls.connect(app_name)
        except Exception as error:  # noqa: BLE001 - no application, or no replica that answers
            raise ConnectionError(f"no studio deployment {app_name!r} answers on the Ray cluster at {address} "
                                  f"({_last_line(error)}); start one with python -m pipeline serve") from None

    def describe(self):
        """A fresh `deployment.Description` from the replica Serve routes the call to."""
        return self.handle.describe.remote().result(timeout_s=DESCRIBE_TIMEOUT_S)

    def resolve(self, request: GenerationRequest) -> GenerationRequest:
        """The request with the model's defaults filled in; ValueError, in the engine's words, if out of limits."""
        request = self.limits.resolve(request)
        if request.mode not in self.modes:
            raise ValueError(f"the {request.mode} mode is not available for this model; it serves "
                             f"{', '.join(self.modes)}")
        return request

    def generate(self, request: GenerationRequest, on_step=None, *, on_preview=None, preview_every: int | None = None,
                 on_start=None) -> GenerationResult:
        """The request's images from a replica; `on_step(step, total)` after each step, CANCEL from it
        cancels the request; `on_preview(step, total, pictures)` as `Studio.generate` calls it, for a
        model with `previews`; `on_start(replica)` with the Ray actor name of the replica serving it.
        Raises what the local studio raises: ValueError, GenerationCancelled or GenerationFailed (also
        when the replica serving it stops)."""
        if preview_every is None:
            preview_every = self.description.preview_every
        # `previews.check_every`'s rule and sentence; that module loads torch, which this process does not need.
        if isinstance(preview_every, bool) or not isinstance(preview_every, int) or preview_every < 1:
            raise ValueError(f"preview_every must be a whole number of steps, at least 1; got {preview_every!r}")
        request = self.resolve(request)
        every = preview_every if on_preview is not None and self.previews else None
        stream = self.handle.options(stream=True).generate.remote(request, every)
        done = _follow(stream, Done, on_step, on_preview, on_start)
        with self._lock:
            self.batch_sizes.append(done.batch_size)
            self.group_sizes.append(done.group_size)
        return done.result

    def deliverable(self, request: GenerationRequest, deliverable: Deliverable | str, *, fit: str = "extend",
                    anchor: str = "center", colour: ColourReference | None = None, on_step=None,
                    keys: dict | None = None) -> Rendered:
        """`request` drawn as a deliverable of exact pixels by a replica, with the pixels and settings
        `Studio.deliverable` gives for the same arguments; `on_step(step, total)` after each step of
        each of its generations, CANCEL from it cancels the render; `keys`: a dict the caller keeps
        to reuse key visuals across the deliverables of one prompt and seed (sent to the replica and
        filled with those it draws). Raises what the local studio raises, as `generate` does."""
        deliverable, _ = deliverables.check(request, deliverable, self.limits, self.modes, fit, anchor)
        stream = self.handle.options(stream=True).deliverable.remote(request, deliverable, fit, anchor, colour, keys)
        delivered = _follow(stream, Delivered, on_step)
        if keys is not None:
            keys.update(delivered.keys)
        return delivered.rendered


def _follow(stream, ending: type, on_step, on_preview=None, on_start=None):
    """The `ending` event of a replica's stream, its steps, previews and start reported on the way;
    GenerationCancelled when `on_step` answers CANCEL (the Serve request is cancelled), and the local
    studio's exception for `Failed`, a Ray error or a stream that ends without its result."""
    import ray

    try:
        for event in stream:
            if isinstance(event, Step):
                if on_step is not None and on_step(event.step, event.total) == CANCEL:
                    stream.cancel()
                    raise GenerationCancelled(event.step, event.total)
            elif isinstance(event, Preview):
                if on_preview is not None:
                    on_preview(event.step, event.total, event.pictures)
            elif isinstance(event, ending):
                return event
            elif isinstance(event, Failed):
                raise event.exception()
            elif isinstance(event, Started):
                if on_start is not None:
                    on_start(event.replica)
            else:
                raise GenerationFailed(f"the model server sent {type(event).__name__}, not an image")
    except ray.exceptions.RayError as error:
        raise GenerationFailed(_sentence(error)) from None
    raise GenerationFailed(REPLICA_LOST)


def _sentence(error: Exception) -> str:
    import ray

    if isinstance(error, (ray.exceptions.ActorDiedError, ray.exceptions.ActorUnavailableError,
                          ray.exceptions.RayActorError)):
        return REPLICA_LOST
    return f"the model server could not serve this request: {_last_line(error)}"


def _last_line(error: Exception) -> str:
    """The last line of an error's message (where Ray puts the cause), or its type's name."""
    text = str(error).strip()
    return " ".join(text.splitlines()[-1].split()) if text else type(error).__name__
