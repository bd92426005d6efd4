"""Comparing pictures pixel by pixel: exactly, or within one level per channel (what a batched
forward pass may change against the same request run alone)."""
from __future__ import annotations

import struct
import zlib
from pathlib import Path

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


def bomb_png(path: Path, side: int = 30_000) -> Path:
    """A PNG whose header claims side x side pixels (far past PIL's limit) with almost no data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return path
