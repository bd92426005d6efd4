"""Reading pictures safely, and the array conversions every stage shares.

Stages compute on float32 (H, W, 3) arrays in 0..1 and hand back 8-bit RGB pictures; `_blend`
is how a stage's strength mixes its result with its input.
"""
from __future__ import annotations

import math
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .settings import file_name


def check_size(image: Image.Image, what: str = "image") -> None:
    """Refuse pictures larger than PIL's decompression-bomb limit."""
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and image.width * image.height > limit:
        raise ValueError(
            f"{what}: {image.width}x{image.height} pixels is over the limit of {limit} (decompression bomb?)"
        )


class _TooLarge(Exception):
    def __init__(self, size: tuple[int, int]):
        self.size = size


def load_image(path: str | Path, what: str = "image", max_pixels: int | None = None) -> Image.Image:
    """Open a picture fully, turning every way it can fail into a ValueError naming `what` and the
    file by its base name only.

    max_pixels: refuse a larger picture from its header, before decoding it; PIL's own
    decompression-bomb limit applies either way.
    """
    name = file_name(path)
    try:
        with warnings.catch_warnings():
            # PIL only warns between 1x and 2x its pixel limit; a bomb is a bomb
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                if max_pixels is not None and image.width * image.height > max_pixels:
                    raise _TooLarge(image.size)
                image.load()
    except _TooLarge as large:
        width, height = large.size
        raise ValueError(f"{what}: {name!r} is {width}x{height} = {width * height} pixels; the limit is "
                         f"{max_pixels} pixels, so use a smaller copy of it") from None
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as e:
        raise ValueError(f"{what}: {name!r} is a decompression bomb: {e}") from None
    except FileNotFoundError:
        raise ValueError(f"{what}: file not found: {name!r}") from None
    except UnidentifiedImageError:
        raise ValueError(f"{what}: cannot read {name!r} as an image: not a picture format the studio reads") from None
    except Exception as e:  # noqa: BLE001 - PIL's decoders raise OSError, SyntaxError, ValueError, EOFError, ...
        raise ValueError(f"{what}: cannot read {name!r} as an image: {reason(e, path)}") from None
    return image


def shrink(image: Image.Image, max_pixels: int) -> Image.Image:
    """`image` made smaller by area averaging to at most `max_pixels`, aspect ratio kept; itself if it fits."""
    pixels = image.width * image.height
    if pixels <= max_pixels:
        return image
    scale = math.sqrt(max_pixels / pixels)
    # a side rounded up to 1 pixel leaves the other side the whole budget, and no more
    width = min(max(1, int(image.width * scale)), max_pixels)
    height = min(max(1, int(image.height * scale)), max_pixels)
    if width * height > max_pixels:  # float rounding at the boundary
        width = max_pixels // height
    return image.resize((width, height), Image.Resampling.BOX)


def reason(error: BaseException, path: str | Path, limit: int = 200) -> str:
    """What went wrong reading `path`, on one line and without the file's folder: an OS error by
    its description, any other message with the path, as given or made absolute, cut down to the
    file's base name."""
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    text = str(error)
    spelled = {os.fspath(path)}
    try:
        spelled |= {os.path.abspath(path), os.path.realpath(path)}
    except (OSError, ValueError):  # a path the file system refuses was not in the message either
        pass
    for full in sorted(spelled, key=len, reverse=True):
        text = text.replace(full, file_name(path))
    return " ".join(text.split())[:limit] or type(error).__name__


def _to_array(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0  # (H, W, 3) in 0..1


def _to_image(x: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8), "RGB")


def _blend(before: np.ndarray, after: np.ndarray, strength: float) -> np.ndarray:
    return before + strength * (after - before)
