"""What a replica streams back for one request: steps (and previews), then its result or its failure.
A deliverable's request ends with `Delivered` instead of `Done`.

Plain frozen dataclasses, pickled by Ray between the replica and the page's process. An error
travels as its kind and sentence, not as the exception object, so that the page raises the same
exception type with the same sentence the local studio would (`Failed.exception`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pipeline.request import GenerationCancelled, GenerationFailed, GenerationResult

if TYPE_CHECKING:
    from pipeline.deliverables import Rendered


@dataclass(frozen=True)
class Started:
    """The request reached a replica: the Ray actor that serves it."""

    replica: str


@dataclass(frozen=True)
class Step:
    """One denoising step of the request's batch has finished."""

    step: int
    total: int


@dataclass(frozen=True)
class Preview:
    """The request's pictures as `step` predicts them (`pipeline.previews`), when it asked for previews."""

    step: int
    total: int
    pictures: list  # PIL images, one per image of the request


@dataclass(frozen=True)
class Done:
    """The request's images, exactly as the replica's studio made them; how many requests shared its
    `@serve.batch` call, and how many of those its forward batch (the compatible ones)."""

    result: GenerationResult
    batch_size: int
    group_size: int


@dataclass(frozen=True)
class Delivered:
    """The deliverable exactly as the replica's studio rendered it, and the key visuals it drew for
    it (`deliverables.render`'s `keys`, by their request), for the caller to hand to the next one."""

    rendered: Rendered
    keys: dict


@dataclass(frozen=True)
class Failed:
    """The request failed: `kind` names the exception the local studio raises for it."""

    kind: str  # "value", "cancelled" or "failed"
    message: str
    step: int = 0
    total: int = 0

    @classmethod
    def of(cls, error: BaseException) -> Failed:
        if isinstance(error, GenerationCancelled):
            return cls("cancelled", str(error), error.step, error.total)
        if isinstance(error, ValueError):  # a value out of limits, a bad file, a refused prompt
            return cls("value", str(error))
        return cls("failed", str(error) or type(error).__name__)

    def exception(self) -> Exception:
        if self.kind == "cancelled":
            return GenerationCancelled(self.step, self.total)
        if self.kind == "value":
            return ValueError(self.message)
        return GenerationFailed(self.message)
