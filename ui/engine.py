"""What the page needs from the engine's pipeline object, written down as a `Protocol`.

`pipeline.studio.Studio` is one. The handlers are typed against `Engine`, not against that class,
so that importing `ui` loads neither torch nor diffusers, and so that the UI's tests can hand the
page a small stand-in of the same shape.

An engine with a prompt writer also has `enhance(prompt, seed=, task=, should_stop=)` ->
`pipeline.enhance.Enhancement`, `written(prompt, text)` (the writer's record of a text it wrote,
or None) and `vocabulary_notice(text)` (a sentence naming the words the model does not know, or
None); the page shows its Enhance button and auto-enhance box only then.

An engine that renders deliverables also has `deliverable(request, deliverable, **options)` ->
`pipeline.deliverables.Rendered`, which `pipeline.campaign.run` calls (`Studio` and
`serving.client.RayStudio` have it); the page shows its Deliverables panel only then.
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable

from pipeline.request import GenerationRequest, GenerationResult, ModelLimits, StepCallback


class ModelSource(Protocol):
    @property
    def reference(self) -> str:
        """The model as the user named it (a preset, a folder or a hub id)."""


class ModelFamily(Protocol):
    @property
    def pipeline_class(self) -> str:
        """The diffusers pipeline class the model runs with, e.g. 'SanaPipeline'."""


@runtime_checkable
class Engine(Protocol):
    """One loaded model: its limits, the modes it serves, where it came from and runs, and `generate`.

    Live previews are optional: an engine that makes them has a true `previews` property and takes
    `generate(..., on_preview=, preview_every=)` (`pipeline.studio.Studio` does); the page looks for both.
    """

    @property
    def limits(self) -> ModelLimits: ...

    @property
    def source(self) -> ModelSource: ...

    @property
    def family(self) -> ModelFamily: ...

    @property
    def device(self) -> str: ...

    @property
    def modes(self) -> tuple[str, ...]:
        """The modes the model serves, of "text", "image", "inpaint", "extend" and "reference" (`GenerationRequest.mode`)."""

    @property
    def max_batch(self) -> int:
        """The most requests `generate` serves together; the page lets that many run at once."""

    def generate(self, request: GenerationRequest, on_step: StepCallback | None = None) -> GenerationResult:
        """The request's images; `on_step(step, total)` after each step, CANCEL from it stops the run."""
