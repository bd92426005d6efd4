"""Stand-ins for the studio behind the page: the real studio, watched and held where a test needs it.

Shaped after `ui.engine.Engine`, like the studio it wraps (anything not defined here is the
wrapped studio's)."""
from __future__ import annotations

import threading
from types import SimpleNamespace

from PIL import Image

from pipeline.metadata import image_settings
from pipeline.models import PRESETS
from pipeline.request import GenerationCancelled, GenerationResult, ModelLimits

WAIT_S = 120  # the longest a held run waits for its test; not a timing assertion
EVERY_MODE = ("text", "image", "inpaint", "extend")


class FakeStudio:
    """A studio of the embedded model's shape (`ui.engine.Engine`) that serves `modes`, draws a
    black picture and records the requests it was given."""

    def __init__(self, limits: ModelLimits = PRESETS["embedded"].limits, modes: tuple[str, ...] = EVERY_MODE):
        self.limits = limits
        self.modes = modes
        self.source = SimpleNamespace(reference="embedded")
        self.family = SimpleNamespace(pipeline_class="SanaPipeline")
        self.device = "cpu"
        self.max_batch = 4
        self.requests = []

    def generate(self, request, on_step=None) -> GenerationResult:
        request = self.limits.resolve(request)
        self.requests.append(request)
        images = [Image.new("RGB", (request.width, request.height)) for _ in range(request.num_images)]
        settings = [image_settings(request, index, model="embedded", revision="r", pipeline="SanaPipeline",
                                   scheduler="S", device="cpu", dtype="float32") for index in range(len(images))]
        return GenerationResult(images=images, settings=settings, timings={"denoise": 0.0}, originals=images)


class SpyStudio:
    """The real studio, recording the requests it is given, each step it runs and how each run ended.

    `hold`: every run waits for this event before it starts. `pause_at`: the first run to reach
    that step is held there (before the page hears of the step) until `release` is set.
    `max_batch`: what the page is told the studio serves at once.
    """

    def __init__(self, studio, *, hold: threading.Event | None = None, pause_at: int | None = None,
                 max_batch: int | None = None):
        self.studio, self.hold, self.pause_at = studio, hold, pause_at
        self.max_batch = max_batch or studio.max_batch
        self.requests, self.steps, self.outcomes = [], [], []
        self.paused, self.release = threading.Event(), threading.Event()

    def __getattr__(self, name):
        return getattr(self.studio, name)

    @property
    def modes(self) -> tuple[str, ...]:
        return self.studio.modes

    def generate(self, request, on_step=None):
        self.requests.append(request)
        if self.hold is not None and not self.hold.wait(WAIT_S):
            raise RuntimeError("the test never released the run")

        def spy(step, total):
            self.steps.append(step)
            if step == self.pause_at and not self.release.is_set():
                self.paused.set()
                if not self.release.wait(WAIT_S):
                    raise RuntimeError("the test never released the run")
            return on_step(step, total)

        try:
            result = self.studio.generate(request, on_step=spy)
        except GenerationCancelled as cancelled:
            self.outcomes.append(("cancelled", cancelled.step, cancelled.total))
            raise
        self.outcomes.append(("done", request.steps, request.steps))
        return result
