"""Comparing pictures pixel by pixel: exactly, or within one level per channel (what a batched
forward pass may change against the same request run alone)."""
from __future__ import annotations

import numpy as np
from PIL import Image


def levels(image) -> np.ndarray:
    """The picture (a PIL image, a path or an array) as an int array of its RGB levels."""
    if isinstance(image, np.ndarray):
        return image.astype(int)
    if not isinstance(image, Image.Image):
        with Image.open(image) as opened:
            return np.asarray(opened.convert("RGB"), dtype=int)
    return np.asarray(image.convert("RGB"), dtype=int)


def largest_difference(first, second) -> int:
    """The largest difference of one channel of one pixel, in levels (0 when identical)."""
    first, second = levels(first), levels(second)
    assert first.shape == second.shape, f"sizes differ: {first.shape} and {second.shape}"
    return int(np.abs(first - second).max())


def assert_within_one_level(actual, expected) -> None:
    """Every channel of every pixel of `actual` within one level of `expected`'s."""
    difference = largest_difference(actual, expected)
    assert difference <= 1, f"pictures differ by up to {difference} levels in a channel"
