"""`PostprocessChain`: runs the enabled stages in the fixed order denoise -> colour -> upsample.

Every stage has one signature, `stage(image, settings, inputs) -> image`, on an RGB picture;
`inputs` holds what was read from files (`StageInputs`), loaded by `PostprocessChain.prepare`
before any stage runs, so a missing file is reported before any expensive work. A colour
reference reaches the colour stage as its statistics (`ReferenceStatistics`): read from the file
when it is there, the ones the settings store when it is gone (`PostprocessChain.resolve`).
"""
from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from PIL import Image

from .colour import apply_statistics, auto_color, match_palette, reference_statistics
from .denoising import denoise
from .images import check_size, load_image, reason, shrink
from .settings import (
    MAX_REFERENCE_DECODE_PIXELS,
    MAX_REFERENCE_PIXELS,
    PostprocessSettings,
    ReferenceStatistics,
    file_name,
)
from .upscale import load_upscaler, upscale_classical, upscale_learned

# Input pictures above PIL's own bomb limit are refused; outputs are capped so that x4 on a
# large picture cannot exhaust memory.
MAX_OUTPUT_PIXELS = 8192 * 8192


@dataclass(frozen=True)
class StageInputs:
    """What the stages take from files: the colour reference's statistics (from the picture named by
    `color_reference`, or those the settings store when it is gone) and the model loaded from
    `upscaler`, each None when the settings need none."""

    color_statistics: ReferenceStatistics | None = None
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


def read_reference_statistics(path: str) -> ReferenceStatistics:
    """The statistics colour transfer takes from the reference picture in `path` (read by
    `load_reference`), with the file's SHA-256 and base name; ValueError naming the file."""
    mean, std = reference_statistics(load_reference(path))
    try:
        with open(path, "rb") as file:
            digest = hashlib.file_digest(file, "sha256").hexdigest()
    except OSError as e:
        raise ValueError(f"color_reference: cannot read {file_name(path)!r}: {reason(e, path)}") from None
    return ReferenceStatistics(tuple(map(float, mean)), tuple(map(float, std)), digest, file_name(path))


def _denoise(image: Image.Image, settings: PostprocessSettings, inputs: StageInputs) -> Image.Image:
    return denoise(image, None if settings.denoise == "auto" else float(settings.denoise))


def _colour(image: Image.Image, settings: PostprocessSettings, inputs: StageInputs) -> Image.Image:
    if settings.color == "auto":
        return auto_color(image, settings.color_strength)
    if settings.color == "reference":
        statistics = inputs.color_statistics
        return apply_statistics(image, statistics.mean, statistics.std, settings.color_strength)
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

    @staticmethod
    def resolve(settings: PostprocessSettings) -> PostprocessSettings:
        """The settings with their colour reference's statistics in `color_statistics`, so that what
        records them (a PNG's metadata) redoes the colour stage without the file.

        The file is read when it is there, and refused in one sentence when the settings already
        store the statistics of another file (SHA-256); when it is gone, the stored statistics
        stand for it, and without them it is a ValueError naming the missing file.
        """
        if settings.color != "reference" or settings.color_reference is None:
            return settings
        stored = settings.color_statistics
        if stored is not None and not Path(settings.color_reference).exists():
            return settings
        read = read_reference_statistics(settings.color_reference)
        if stored is not None and stored.sha256 != read.sha256:
            raise ValueError(f"color_reference {read.name!r} is not the colour reference these settings were made "
                             f"with: its SHA-256 begins {read.sha256[:12]}, the settings name {stored.sha256[:12]}..."
                             f"{f' ({stored.name!r})' if stored.name else ''}; give that file, or none to use its "
                             "stored statistics")
        return replace(settings, color_statistics=read)

    def prepare(self, settings: PostprocessSettings) -> StageInputs:
        """Read the files the settings name (see `resolve`), the learned upscaler through the chain's cache.

        A missing, unreadable or oversized file is a ValueError naming the field and the file (by
        its base name), so a caller can check a request's files before any expensive work.
        """
        statistics = self.resolve(settings).color_statistics
        upscaler = self.upscaler(settings.upscaler) if settings.upscaler is not None else None
        return StageInputs(color_statistics=statistics, upscaler=upscaler)

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
        if (inputs.color_statistics is None) != (settings.color != "reference") or (
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
