"""What a caller asks for and what it gets back.

`GenerationRequest` is validated when it is built, before any model work: every rule raises a
`ValueError` whose message names the field and the allowed values. Rules that depend on the
model (step and guidance ranges, size multiple, pixel cap) live in `ModelLimits.check`.
Fields left as `None` are filled from the model's defaults by `ModelLimits.resolve`.
"""
from __future__ import annotations

import dataclasses
import math
import unicodedata
from dataclasses import dataclass, field
from typing import Any, Callable

from pipeline.conditioning import MAX_FEATHER, Extend, InputImage, Mask
from pipeline.postprocess import PostprocessSettings, shown
from pipeline.references import MAX_REFERENCES

# Returned by an `on_step(step, total)` callback to stop the run after the current step.
CANCEL = "cancel"
# Progress of a run: called after each denoising step with (step, total); returning CANCEL stops it.
StepCallback = Callable[[int, int], object]

MAX_PROMPT_CHARS = 2000
MAX_SEED = 2**32 - 1
MAX_IMAGES = 8
DEFAULT_STRENGTH = 0.6
# Line breaks and tabs are ordinary in pasted prompts; every other control character is not.
_ALLOWED_CONTROL = {"\n", "\r", "\t"}


def _check_text(name: str, text: Any, *, allow_empty: bool) -> None:
    if not isinstance(text, str):
        raise ValueError(f"{name} must be text, got {type(text).__name__}")
    if not allow_empty and not text.strip():
        raise ValueError(f"{name} is empty; write 1 to {MAX_PROMPT_CHARS} characters describing the image")
    if len(text) > MAX_PROMPT_CHARS:
        raise ValueError(f"{name} has {len(text)} characters; the limit is {MAX_PROMPT_CHARS}")
    for position, char in enumerate(text):
        category = unicodedata.category(char)
        if category == "Cs":
            raise ValueError(f"{name} contains a lone surrogate (U+{ord(char):04X}) at position {position}; "
                             "only valid Unicode text is allowed")
        if category == "Cc" and char not in _ALLOWED_CONTROL:
            raise ValueError(f"{name} contains the control character U+{ord(char):04X} at position {position}; "
                             "only printable text, tabs and line breaks are allowed")


def _check_int(name: str, value: Any, low: int, high: int) -> None:
    # bool is an int subclass: True must not pass as 1.
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be a whole number from {low} to {high}, got {shown(value)}")
    if not low <= value <= high:
        nearest = min(max(value, low), high)
        raise ValueError(f"{name} must be from {low} to {high}, got {shown(value)} (nearest: {nearest})")


def _check_number(name: str, value: Any) -> float:
    """`value` as a float; ValueError unless it is a finite int or float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number, got {shown(value)}")
    try:
        number = float(value)
    except OverflowError:  # an int beyond any float
        number = math.inf
    if not math.isfinite(number):
        raise ValueError(f"{name} must be a finite number, got {shown(value)}")
    return number


@dataclass(frozen=True)
class GenerationRequest:
    """One call to the studio. `None` means "the model's default".

    The mode follows from the inputs (`mode`): text-to-image without `init_image`; image-to-image
    from `init_image` (fitted to width x height by `conditioning.fit`), of which `strength` (0..1)
    is the share of the denoising schedule that runs, 0 giving the fitted input back and 1 a
    picture from pure noise; inpainting when a `mask` (white = repaint, read with
    `conditioning.read_mask` at the init image's size) goes with it, softened by `mask_feather`
    pixels where the result is composited back onto the input. Extend (outpainting) when `extend`
    goes with it: the picture is put on a larger canvas (`Extend.canvas`) and its new border is
    inpainted, the picture's own pixels kept exactly (with a `mask_feather`, those farther than
    it from the picture's edge); the canvas is the output's size, so width and height follow from
    `extend` (left out, or equal to it). Reference editing when `references` (1 to
    MAX_REFERENCES pictures, each read with `conditioning.read_input_image` and kept at its own
    aspect) are given without an init_image: the prompt is the instruction, for the families that
    take references (`pipeline.references`). `strength` and `mask_feather` are kept but unused in
    the modes they do not apply to.
    """

    prompt: str
    negative_prompt: str = ""
    seed: int = 0
    steps: int | None = None
    guidance: float | None = None
    width: int | None = None
    height: int | None = None
    num_images: int = 1
    postprocess: PostprocessSettings = field(default_factory=PostprocessSettings)
    init_image: InputImage | None = None
    strength: float = DEFAULT_STRENGTH
    mask: Mask | None = None
    mask_feather: int = 0  # pixels
    extend: Extend | None = None
    references: tuple[InputImage, ...] = ()
    # The prompt writer's text (`pipeline.enhance`), encoded instead of `prompt` when not empty;
    # `prompt` stays the user's own. `enhancer` and `enhancer_settings` say what wrote it (no secrets).
    enhanced_prompt: str = ""
    enhancer: str = ""
    enhancer_settings: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_text("prompt", self.prompt, allow_empty=False)
        _check_text("enhanced_prompt", self.enhanced_prompt, allow_empty=True)
        if not isinstance(self.enhancer, str) or not isinstance(self.enhancer_settings, dict):
            raise ValueError("enhancer must be text and enhancer_settings an object of settings")
        _check_text("negative_prompt", self.negative_prompt, allow_empty=True)
        _check_int("seed", self.seed, 0, MAX_SEED)
        _check_int("num_images", self.num_images, 1, MAX_IMAGES)
        if self.seed + self.num_images - 1 > MAX_SEED:
            raise ValueError(f"seed {self.seed} with {self.num_images} images would use seeds up to "
                             f"{self.seed + self.num_images - 1}; the last seed must be at most {MAX_SEED}")
        if self.steps is not None:
            _check_int("steps", self.steps, 1, 1000)
        for name in ("width", "height"):
            value = getattr(self, name)
            if value is not None:
                _check_int(name, value, 1, 16384)
        if self.guidance is not None:
            object.__setattr__(self, "guidance", _check_number("guidance", self.guidance))
        if not isinstance(self.postprocess, PostprocessSettings):
            raise ValueError(f"postprocess must be a PostprocessSettings, got {type(self.postprocess).__name__}")
        self._check_image_inputs()

    def _check_image_inputs(self) -> None:
        if self.init_image is not None and not isinstance(self.init_image, InputImage):
            raise ValueError(f"init_image must be an InputImage (conditioning.read_input_image), "
                             f"got {type(self.init_image).__name__}")
        strength = _check_number("strength", self.strength)
        if not 0 <= strength <= 1:
            raise ValueError(f"strength must be from 0 to 1, got {shown(self.strength)} "
                             f"(nearest: {min(max(strength, 0.0), 1.0):g})")
        object.__setattr__(self, "strength", strength)
        _check_int("mask_feather", self.mask_feather, 0, MAX_FEATHER)
        self._check_extend()
        self._check_references()
        if self.mask is None:
            return
        if not isinstance(self.mask, Mask):
            raise ValueError(f"mask must be a Mask (conditioning.read_mask), got {type(self.mask).__name__}")
        if self.init_image is None:
            raise ValueError("mask needs an init_image: inpainting repaints part of a picture, so give the picture too")
        if self.mask.image.size != self.init_image.size:
            raise ValueError(f"mask is {self.mask.image.width}x{self.mask.image.height} but init_image is "
                             f"{self.init_image.size[0]}x{self.init_image.size[1]}; read the mask with "
                             "read_mask(source, init_image.size)")

    def _check_extend(self) -> None:
        if self.extend is None:
            return
        if not isinstance(self.extend, Extend):
            raise ValueError(f"extend must be an Extend (conditioning.Extend.to or .by), "
                             f"got {type(self.extend).__name__}")
        if self.init_image is None:
            raise ValueError("extend needs an init_image: outpainting puts a picture on a larger canvas, so give the "
                             "picture too")
        if self.mask is not None:
            raise ValueError("extend makes its own mask (the new border); give either a mask or extend, not both")
        width, height = self.extend_size
        for name, value, target in (("width", self.width, width), ("height", self.height, height)):
            if value is not None and value != target:
                raise ValueError(f"{name} is {value} but extend makes a {width}x{height} canvas; leave {name} out "
                                 f"or set it to {target}")

    def _check_references(self) -> None:
        if isinstance(self.references, list):
            object.__setattr__(self, "references", tuple(self.references))
        if not isinstance(self.references, tuple):
            raise ValueError(f"references must be a list of InputImage, got {type(self.references).__name__}")
        if not self.references:
            return
        if len(self.references) > MAX_REFERENCES:
            raise ValueError(f"references has {len(self.references)} pictures; the limit is {MAX_REFERENCES}")
        for position, item in enumerate(self.references, 1):
            if not isinstance(item, InputImage):
                raise ValueError(f"reference {position} must be an InputImage (conditioning.read_input_image), "
                                 f"got {type(item).__name__}")
        if self.init_image is not None:
            raise ValueError("references go without an init_image: reference editing makes a new picture from "
                             "the references, so give either references or an init_image, not both")

    @property
    def encoded_prompt(self) -> str:
        """The text the model encodes: the enhanced prompt when there is one, else the prompt."""
        return self.enhanced_prompt if self.enhanced_prompt.strip() else self.prompt

    @property
    def extend_size(self) -> tuple[int, int] | None:
        """(width, height) of the extended canvas, or None outside the extend mode."""
        return None if self.extend is None else self.extend.size(self.init_image.size)

    @property
    def mode(self) -> str:
        """What the inputs make of the request: "text", "image" (image-to-image), "inpaint", "extend" or
        "reference"."""
        if self.init_image is None:
            return "reference" if self.references else "text"
        if self.extend is not None:
            return "extend"
        return "image" if self.mask is None else "inpaint"

    def replace(self, **changes: Any) -> GenerationRequest:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class Range:
    """A closed interval of allowed values and the value used when a request leaves it out."""

    min: float
    max: float
    default: float

    def __post_init__(self) -> None:
        if not self.min <= self.default <= self.max:
            raise ValueError(f"range default {self.default} is outside {self.min}..{self.max}")

    def __contains__(self, value: float) -> bool:
        return self.min <= value <= self.max


@dataclass(frozen=True, kw_only=True)
class ModelLimits:
    """What one model accepts, and what it does when a request leaves a setting out."""

    default_width: int
    default_height: int
    size_multiple: int
    max_pixels: int
    steps: Range
    guidance: Range  # a single point (min == max) for models that take no guidance
    uses_guidance: bool
    uses_negative_prompt: bool
    # A model trained at one size per format (multi-aspect size buckets) names them by ratio,
    # (("1:1", (64, 64)), ("16:9", (88, 48)), ...); the page's formats and the deliverables' key
    # visuals use them as they are. Empty: sizes follow from the multiple and the native size.
    format_sizes: tuple[tuple[str, tuple[int, int]], ...] = ()

    def resolve(self, request: GenerationRequest) -> GenerationRequest:
        """The request with every `None` replaced by this model's default (the canvas size when it
        extends a picture), then checked."""
        default_width, default_height = request.extend_size or (self.default_width, self.default_height)
        resolved = request.replace(
            steps=self.steps.default if request.steps is None else request.steps,
            guidance=self.guidance.default if request.guidance is None else request.guidance,
            width=default_width if request.width is None else request.width,
            height=default_height if request.height is None else request.height,
        )
        self.check(resolved)
        return resolved

    def check(self, request: GenerationRequest) -> None:
        if request.steps not in self.steps:
            raise ValueError(f"steps must be from {self.steps.min:g} to {self.steps.max:g} for this model, "
                             f"got {request.steps}")
        if self.uses_guidance:
            if request.guidance not in self.guidance:
                raise ValueError(f"guidance must be from {self.guidance.min:g} to {self.guidance.max:g} "
                                 f"for this model, got {request.guidance:g}")
        elif request.guidance != self.guidance.default:
            raise ValueError(f"guidance does not apply to this model; leave it at {self.guidance.default:g}")
        if request.negative_prompt.strip() and not self.uses_negative_prompt:
            raise ValueError("negative_prompt does not apply to this model; leave it empty")
        if request.extend is not None and (request.width % self.size_multiple or request.height % self.size_multiple):
            raise ValueError(f"extend makes a {request.width}x{request.height} canvas, but width and height must be "
                             f"multiples of {self.size_multiple} for this model (nearest: "
                             f"{self.nearest_size(request.width)}x{self.nearest_size(request.height)})")
        for name in ("width", "height"):
            value = getattr(request, name)
            if value % self.size_multiple:
                raise ValueError(f"{name} must be a multiple of {self.size_multiple} for this model, got {value} "
                                 f"(nearest: {self.nearest_size(value)})")
        pixels = request.width * request.height
        if pixels > self.max_pixels:
            raise ValueError(f"width x height is {request.width}x{request.height} = {pixels} pixels; "
                             f"the limit for this model is {self.max_pixels} pixels")

    def nearest_size(self, value: int) -> int:
        return max(self.size_multiple, round(value / self.size_multiple) * self.size_multiple)


@dataclass
class GenerationResult:
    """Images of one call, each with the exact settings that reproduce it, and stage timings."""

    images: list  # PIL images, in seed order
    settings: list[dict]  # one `metadata.ImageSettings` record per image, JSON-ready
    timings: dict[str, float]  # seconds per stage, in the order the stages ran
    originals: list  # the decoded images before post-processing (the same objects when it is off)


class GenerationCancelled(Exception):
    """The step callback asked to stop; no image was produced."""

    def __init__(self, step: int, total: int):
        super().__init__(f"cancelled after step {step} of {total}; no image was produced")
        self.step = step
        self.total = total


class GenerationFailed(RuntimeError):
    """The model ran but its output is unusable (NaN or an all-black picture)."""


class BatchPartlyFailed(Exception):
    """Some requests of a batch failed on their own and the others were served.

    `outcomes` holds, in the batch's order, each request's `GenerationResult` or the exception
    that request failed with, so that each caller gets its own.
    """

    def __init__(self, outcomes: list[GenerationResult | Exception]):
        failed = [(index, outcome) for index, outcome in enumerate(outcomes) if isinstance(outcome, Exception)]
        super().__init__(f"{len(failed)} of {len(outcomes)} requests failed: " + "; ".join(
            f"request {index + 1}: {outcome}" for index, outcome in failed))
        self.outcomes = outcomes
