"""A classical checker: does a picture show what its prompt asks for?

No learned parts, so it can judge the model. For a picture and the scene the prompt names:
- background: the colour nearest the mean of the border pixels,
- shape pixels: pixels nearer to any other palette colour than to the background colour,
- shape colour: the palette colour most of those pixels are nearest to,
- position: the nominal position nearest the shape pixels' centroid,
- size: small or large by the shape's area against the geometric mean of the two areas,
- shape: the fill of the bounding box (triangle 1/2, circle pi/4, square 1), split halfway.
Positions are relative to each axis, sizes to the shorter side, so any picture size reads alike.

Two-object pictures (`check_pair`): the shape pixels split into connected blobs; each of the two
largest is read as above. An object is read from the largest blob on its side (the half of the
picture along the pair's axis): its colour, shape and size; its side is right when the largest
blob of its colour lies on that side.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

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

    return _read_blob(labels, mask, background)


def _read_blob(labels: np.ndarray, mask: np.ndarray, background: int) -> Reading:
    """The colour, position, size and shape of the shape pixels `mask` (H, W) of a picture whose
    nearest-palette labels are `labels` (H, W)."""
    height, width = mask.shape
    count = int(mask.sum())
    colour = int(np.bincount(labels[mask], minlength=len(_NAMES)).argmax())
    ys, xs = np.nonzero(mask)
    cx, cy = (xs.mean() + 0.5) / width, (ys.mean() + 0.5) / height
    position = min(POSITIONS, key=lambda p: (POSITIONS[p][0] - cx) ** 2 + (POSITIONS[p][1] - cy) ** 2)

    small, large = (math.pi * (SIZES[s] * min(width, height)) ** 2 for s in ("small", "large"))
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


# ---------------------------------------------------------------------------------------------
# Two objects
# ---------------------------------------------------------------------------------------------

PAIR_ATTRIBUTES = ("colour", "shape", "side", "size")
# Per object; "all" needs these right for both objects (size is reported apart).
PAIR_BINDING = ("colour", "shape", "side")
_SIDE_INDEX = {"left": 0, "right": 1, "top": 0, "bottom": 1}


@dataclass(frozen=True)
class Blob:
    """One connected group of shape pixels: its reading and which half of the picture holds its centre."""

    reading: Reading
    half: int  # 0: left (top) half along the pair's axis, 1: right (bottom)
    pixels: int


def read_blobs(image, axis: str) -> list[Blob]:
    """The two largest blobs of shape pixels (8-connected, at least a few pixels), largest first."""
    pixels = np.asarray(image.convert("RGB") if hasattr(image, "convert") else image, dtype=np.float32)
    height, width, _ = pixels.shape
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    background = int(_nearest_colour(border.mean(axis=0, keepdims=True))[0])
    labels = _nearest_colour(pixels.reshape(-1, 3)).reshape(height, width)
    components, count = ndimage.label(labels != background, structure=np.ones((3, 3)))
    sizes = np.bincount(components.ravel(), minlength=count + 1)[1:]
    blobs = []
    for index in np.argsort(-sizes, kind="stable")[:2]:
        if sizes[index] < _MIN_PIXELS:
            break
        mask = components == index + 1
        reading = _read_blob(labels, mask, background)
        ys, xs = np.nonzero(mask)
        centre = (xs.mean() + 0.5) / width if axis == "horizontal" else (ys.mean() + 0.5) / height
        blobs.append(Blob(reading, int(centre >= 0.5), int(sizes[index])))
    return blobs


def check_pair(image, pair) -> dict[str, bool]:
    """Per-object correctness of a two-object picture against `pair` (a `pairs.Pair`).

    Keys "first colour", "first shape", "first side", "first size", the same for "second",
    "background", and "all": colour, shape and side right for both objects.
    """
    blobs = read_blobs(image, pair.axis)
    result = {"background": read(image).background == pair.background}
    for name, (thing, side) in zip(("first", "second"), pair.placed()):
        half = _SIDE_INDEX[side]
        here = next((blob.reading for blob in blobs if blob.half == half), None)
        own = next((blob for blob in blobs if blob.reading.colour == thing.colour), None)
        result[f"{name} colour"] = here is not None and here.colour == thing.colour
        result[f"{name} shape"] = here is not None and here.shape == thing.shape
        result[f"{name} size"] = here is not None and here.size == thing.size
        result[f"{name} side"] = own is not None and own.half == half
    result["all"] = all(result[f"{name} {attribute}"] for name in ("first", "second") for attribute in PAIR_BINDING)
    return result
