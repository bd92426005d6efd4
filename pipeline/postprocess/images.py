"""Reading pictures safely, and the array conversions every stage shares.

Stages compute on float32 (H, W, 3) arrays in 0..1 and hand back 8-bit RGB pictures; `_blend`
is how a stage's strength mixes its result with its input.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError


def check_size(image: Image.Image, what: str = "image") -> None:
    """Refuse pictures larger than PIL's decompression-bomb limit."""
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and image.width * image.height > limit:
        raise ValueError(
            f"{what}: {image.width}x{image.height} pixels is over the limit of {limit} (decompression bomb?)"
        )


def load_image(path: str | Path, what: str = "image") -> Image.Image:
    """Open a picture fully, turning every way it can fail into a ValueError naming `what`."""
    try:
        with warnings.catch_warnings():
            # PIL only warns between 1x and 2x its pixel limit; a bomb is a bomb
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                image.load()
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as e:
        raise ValueError(f"{what}: {path} is a decompression bomb: {e}") from None
    except FileNotFoundError:
        raise ValueError(f"{what}: file not found: {path}") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise ValueError(f"{what}: cannot read {path} as an image: {e}") from None
    return image


def _to_array(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0  # (H, W, 3) in 0..1


def _to_image(x: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8), "RGB")


def _blend(before: np.ndarray, after: np.ndarray, strength: float) -> np.ndarray:
    return before + strength * (after - before)
