"""`PostprocessChain`: runs the enabled stages in the fixed order denoise -> colour -> upsample.

Every stage has one signature, `stage(image, settings, inputs) -> image`, on an RGB picture;
`inputs` holds what was read from files (`StageInputs`), loaded by `PostprocessChain.prepare`
before any stage runs, so a missing file is reported before any expensive work.
"""
from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from .colour import auto_color, match_palette, match_reference
from .denoising import denoise
from .images import check_size, load_image, reason, shrink
from .settings import MAX_REFERENCE_DECODE_PIXELS, MAX_REFERENCE_PIXELS, PostprocessSettings, file_name
from .upscale import load_upscaler, upscale_classical, upscale_learned

# Input pictures above PIL's own bomb limit are refused; outputs are capped so that x4 on a
# large picture cannot exhaust memory.
MAX_OUTPUT_PIXELS = 8192 * 8192


@dataclass(frozen=True)
class StageInputs:
    """What the stages read from files: the picture named by `color_reference` (RGB, at most
    MAX_REFERENCE_PIXELS) and the model loaded from `upscaler`, each None when the settings name
    no file."""

    color_reference: Image.Image | None = None
    upscaler: object | None = None  # a spandrel ImageModelDescriptor


def load_reference(path: str) -> Image.Image:
    """The colour reference in RGB, refused above MAX_REFERENCE_DECODE_PIXELS before it is decoded and
    shrunk to at most MAX_REFERENCE_PIXELS before any stage turns it into floats: colour transfer
    uses its channel means and spreads only, so a huge reference costs its decoding and no more."""
    image = load_image(path, "color_reference", max_pixels=MAX_REFERENCE_DECODE_PIXELS)
    if image.mode != "RGB":
        try:
            image = image.convert("RGB")
        except ValueError as e:  # a few rare modes (e.g. "La") have no conversion
            raise ValueError(f"color_reference: cannot use {file_name(path)!r}: {e}") from None
    return shrink(image, MAX_REFERENCE_PIXELS)


def _denoise(image: Image.Image, settings: PostprocessSettings, inputs: StageInputs) -> Image.Image:
    return denoise(image, None if settings.denoise == "auto" else float(settings.denoise))


def _colour(image: Image.Image, settings: PostprocessSettings, inputs: StageInputs) -> Image.Image:
    if settings.color == "auto":
        return auto_color(image, settings.color_strength)
    if settings.color == "reference":
        return match_reference(image, inputs.color_reference, settings.color_strength)
    return match_palette(image, settings.color_palette, settings.color_strength)


def _upscale(image: Image.Image, settings: PostprocessSettings, inputs: StageInputs) -> Image.Image:
    if inputs.upscaler is None:
        return upscale_classical(image, settings.upscale)
    return upscale_learned(image, inputs.upscaler, settings.upscale)


@dataclass(frozen=True)
class Stage:
    """One step of the chain: its key in the timings, whether the settings turn it on, the step."""

    name: str
    runs: Callable[[PostprocessSettings], bool]
    apply: Callable[[Image.Image, PostprocessSettings, StageInputs], Image.Image]


# Noise is removed before it can skew the colour statistics or be enlarged; upsampling comes
# last, so the other stages work on the small picture.
STAGES = (
    Stage("denoise", lambda settings: settings.denoise is not None, _denoise),
    Stage("color", lambda settings: settings.color is not None, _colour),
    Stage("upscale", lambda settings: settings.upscale > 1, _upscale),
)


class PostprocessChain:
    """Runs the enabled stages of `STAGES` in order, timing each.

    Holds only loaded learned upscalers (a small LRU keyed by file, size and modification
    time), never per-request state, so one chain serves every request.
    """

    def __init__(self, device: str = "cpu", max_upscalers: int = 2):
        self.device = device
        self.max_upscalers = max_upscalers
        self._upscalers: OrderedDict[tuple, object] = OrderedDict()

    def upscaler(self, path: str):
        """The learned upscaler in `path`, loaded once while the file stays the same."""
        try:
            stat = Path(path).stat()
        except FileNotFoundError:
            raise ValueError(f"upscaler: file not found: {file_name(path)!r}") from None
        except (OSError, ValueError) as e:
            raise ValueError(f"upscaler: cannot read {file_name(path)!r}: {reason(e, path)}") from None
        key = (str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)
        if key in self._upscalers:
            self._upscalers.move_to_end(key)
            return self._upscalers[key]
        model = self._upscalers[key] = load_upscaler(path, self.device)
        while len(self._upscalers) > self.max_upscalers:
            self._upscalers.popitem(last=False)
        return model

    def prepare(self, settings: PostprocessSettings) -> StageInputs:
        """Read the files the settings name, the learned upscaler through the chain's cache.

        A missing, unreadable or oversized file is a ValueError naming the field and the file (by
        its base name), so a caller can check a request's files before any expensive work.
        """
        reference = None
        if settings.color_reference is not None:
            reference = load_reference(settings.color_reference)
        upscaler = self.upscaler(settings.upscaler) if settings.upscaler is not None else None
        return StageInputs(color_reference=reference, upscaler=upscaler)

    def __call__(
        self, image: Image.Image, settings: PostprocessSettings, inputs: StageInputs | None = None
    ) -> tuple[Image.Image, dict[str, float]]:
        """Return the processed picture and the seconds each stage that ran took.

        inputs: what `prepare(settings)` returned; read here when None.
        """
        # 1. Check the picture's size and the inputs
        check_size(image)
        out_pixels = image.width * image.height * settings.upscale**2
        if out_pixels > MAX_OUTPUT_PIXELS:
            raise ValueError(
                f"upscale: x{settings.upscale} of {image.width}x{image.height} would be over "
                f"{MAX_OUTPUT_PIXELS} pixels"
            )
        if inputs is None:
            inputs = self.prepare(settings)
        if (inputs.color_reference is None) != (settings.color_reference is None) or (
            (inputs.upscaler is None) != (settings.upscaler is None)
        ):
            raise ValueError("inputs do not match the settings: pass what prepare(settings) returned")

        # 2. Run the enabled stages on the colour channels
        alpha = image.getchannel("A") if "A" in image.getbands() else None
        rgb = image.convert("RGB")
        timings: dict[str, float] = {}
        for stage in STAGES:
            if stage.runs(settings):
                start = time.perf_counter()
                rgb = stage.apply(rgb, settings, inputs)
                timings[stage.name] = time.perf_counter() - start
        # 3. Put the alpha channel back, at the new size
        if alpha is not None:
            if alpha.size != rgb.size:
                alpha = alpha.resize(rgb.size, Image.Resampling.LANCZOS)
            rgb.putalpha(alpha)
        return rgb, timings
