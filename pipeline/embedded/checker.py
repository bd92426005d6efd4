"""A classical checker: does a picture show what its prompt asks for?

No learned parts, so it can judge the model. For a picture and the scene the prompt names:
- background: the colour nearest the mean of the border pixels,
- shape pixels: pixels nearer to any other palette colour than to the background colour,
- shape colour: the palette colour most of those pixels are nearest to,
- position: the nominal position nearest the shape pixels' centroid,
- size: small or large by the shape's area against the geometric mean of the two areas,
- shape: the fill of the bounding box (triangle 1/2, circle pi/4, square 1), split halfway.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .data import COLOURS, POSITIONS, SIZES, Scene

ATTRIBUTES = ("background", "colour", "position", "size", "shape")
_NAMES = tuple(COLOURS)
_PALETTE = np.array([COLOURS[name] for name in _NAMES], dtype=np.float32)  # (K, 3)
# Bounding-box fill of each shape; the decision splits halfway between neighbours.
_FILL = {"triangle": 0.5, "circle": math.pi / 4, "square": 1.0}
_MIN_PIXELS = 4  # fewer shape pixels than this counts as "no shape drawn"


@dataclass(frozen=True)
class Reading:
    """What the checker sees in one picture."""

    background: str
    colour: str | None
    position: str | None
    size: str | None
    shape: str | None

    def score(self, scene: Scene) -> dict[str, bool]:
        """Per-attribute correctness against `scene`, plus "all" for all five at once."""
        result = {
            "background": self.background == scene.background,
            "colour": self.colour == scene.colour,
            "position": self.position == scene.position,
            "size": self.size == scene.size,
            "shape": self.shape == scene.shape,
        }
        result["all"] = all(result.values())
        return result


def _nearest_colour(pixels: np.ndarray) -> np.ndarray:
    """Index of the nearest palette colour for each pixel, (N, 3) -> (N,)."""
    distance = ((pixels[:, None, :] - _PALETTE[None, :, :]) ** 2).sum(axis=-1)  # (N, K)
    return distance.argmin(axis=1)


def read(image) -> Reading:
    """Measure a picture: PIL image or (H, W, 3) uint8 array."""
    pixels = np.asarray(image.convert("RGB") if hasattr(image, "convert") else image, dtype=np.float32)
    height, width, _ = pixels.shape
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])  # (2W + 2H, 3)
    background = int(_nearest_colour(border.mean(axis=0, keepdims=True))[0])

    labels = _nearest_colour(pixels.reshape(-1, 3)).reshape(height, width)
    mask = labels != background
    count = int(mask.sum())
    if count < _MIN_PIXELS:
        return Reading(_NAMES[background], None, None, None, None)

    colour = int(np.bincount(labels[mask], minlength=len(_NAMES)).argmax())
    ys, xs = np.nonzero(mask)
    cx, cy = (xs.mean() + 0.5) / width, (ys.mean() + 0.5) / height
    position = min(POSITIONS, key=lambda p: (POSITIONS[p][0] - cx) ** 2 + (POSITIONS[p][1] - cy) ** 2)

    small, large = (math.pi * (SIZES[s] * width) ** 2 for s in ("small", "large"))
    size = "large" if count > math.sqrt(small * large) else "small"

    box = (xs.max() - xs.min() + 1) * (ys.max() - ys.min() + 1)
    fill = count / box
    if fill < (_FILL["triangle"] + _FILL["circle"]) / 2:
        shape = "triangle"
    elif fill < (_FILL["circle"] + _FILL["square"]) / 2:
        shape = "circle"
    else:
        shape = "square"
    return Reading(_NAMES[background], _NAMES[colour], position, size, shape)


def check(image, scene: Scene) -> dict[str, bool]:
    """Per-attribute correctness of `image` against `scene` (keys: ATTRIBUTES and "all")."""
    return read(image).score(scene)
