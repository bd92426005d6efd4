"""Format presets named by use, mapped to sizes the loaded model can draw.

A format is an aspect ratio. Its size for a model has width and height that are multiples of
the model's size multiple, at most the model's pixel cap and within `AREA_RANGE` of the model's
native pixel count; among those, the sizes within 1 % of the ratio come first, then those within
5 %, then the rest by ratio error; inside a band the size nearest the native pixel count wins.
On a 1024-pixel model every format lands within 1 % of its ratio near one megapixel.

A model trained at one size per format (multi-aspect training with size buckets) names them in
its limits' `format_sizes`, by ratio ("16:9": (88, 48), ...), and those sizes are used as they
are: the embedded model draws each format at about 64x64's pixel count, where it was trained.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

RATIO_BANDS = (0.01, 0.05)
# Sizes far from the native pixel count look wrong (the model was trained near it) and, larger,
# cost time: an exact 9:16 at a multiple of 32 would be 288x512, 36 times the embedded model's.
AREA_RANGE = (1 / 4, 8)
CUSTOM = "custom"


@dataclass(frozen=True)
class Format:
    key: str
    name: str
    width_ratio: float
    height_ratio: float

    @property
    def ratio(self) -> float:
        return self.width_ratio / self.height_ratio

    @property
    def ratio_label(self) -> str:
        """"16:9", "1.91:1", ...: the key of a model's `format_sizes`."""
        return f"{self.width_ratio:g}:{self.height_ratio:g}"


FORMATS = (
    Format("square", "Square post 1:1", 1, 1),
    Format("portrait", "Portrait post 4:5", 4, 5),
    Format("story", "Story 9:16", 9, 16),
    Format("landscape", "Landscape 16:9", 16, 9),
    Format("banner", "Link / ad banner 1.91:1", 1.91, 1),
    Format("photo", "Photo 3:2", 3, 2),
    Format("photo-portrait", "Photo portrait 2:3", 2, 3),
)
FORMATS_BY_KEY = {fmt.key: fmt for fmt in FORMATS}


def format_size(fmt: Format, limits) -> tuple[int, int]:
    """(width, height) of `fmt` for a model with these `ModelLimits`."""
    trained = dict(limits.format_sizes)
    if fmt.ratio_label in trained:
        width, height = trained[fmt.ratio_label]
        return width, height
    multiple, native = limits.size_multiple, limits.default_width * limits.default_height
    low, high = native * AREA_RANGE[0], min(native * AREA_RANGE[1], limits.max_pixels)
    best, best_cost = None, None
    # Wider than this, even the smallest height near the ratio is over the pixel budget.
    widest = math.isqrt(int(high * fmt.ratio)) + 2 * multiple
    for width in range(multiple, widest + 1, multiple):
        # Only the two heights around the exact ratio can be the nearest for this width.
        exact = width / fmt.ratio
        for height in {max(multiple, math.floor(exact / multiple) * multiple), math.ceil(exact / multiple) * multiple}:
            if not low <= width * height <= high:
                continue
            ratio_error = abs(math.log(width / height / fmt.ratio))
            area_error = abs(math.log(width * height / native))
            band = sum(ratio_error > math.log1p(tolerance) for tolerance in RATIO_BANDS)
            # Same distance from native: the larger size, since detail is lost below native.
            cost = (band, area_error, width * height < native, ratio_error)
            if band == len(RATIO_BANDS):
                cost = (band, ratio_error, area_error)
            if best_cost is None or cost < best_cost:
                best, best_cost = (width, height), cost
    return best or (limits.default_width, limits.default_height)


def format_choices(limits) -> list[tuple[str, str]]:
    """Dropdown choices (label with the size, key), then custom."""
    choices = []
    for fmt in FORMATS:
        width, height = format_size(fmt, limits)
        choices.append((f"{fmt.name} ({width}x{height})", fmt.key))
    return [*choices, ("Custom size", CUSTOM)]


def format_for_size(width, height, limits) -> str:
    """The key of the format whose size is exactly (width, height), else `CUSTOM`."""
    for fmt in FORMATS:
        if format_size(fmt, limits) == (width, height):
            return fmt.key
    return CUSTOM
