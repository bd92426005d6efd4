"""Settings inside PNG files: written with every image, read back to reproduce it.

Each PNG carries two text chunks:
- `studio`: JSON with every setting that made the image (`image_settings`);
- `parameters`: the same in the A1111 text form that other tools display.
"""
from __future__ import annotations

import json
import platform
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TypedDict

from PIL import Image
from PIL.PngImagePlugin import PngInfo

from pipeline.postprocess import PostprocessSettings
from pipeline.request import GenerationRequest

SETTINGS_KEY = "studio"
FORMAT_VERSION = 1
MAX_SETTINGS_BYTES = 64 * 1024


class BatchRecord(TypedDict):
    seed: int  # the seed of the batch's first image
    index: int  # this image's place in the batch
    size: int


class ImageSettings(TypedDict):
    """Everything that made one image, as stored in its PNG (`studio` chunk, JSON)."""

    format: int
    prompt: str
    negative_prompt: str
    seed: int
    steps: int
    guidance: float
    width: int
    height: int
    batch: BatchRecord
    model: str
    model_revision: str
    pipeline: str
    scheduler: str
    postprocess: dict  # PostprocessSettings.to_dict()
    device: str
    dtype: str
    versions: dict[str, str]


@cache
def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for package in ("torch", "diffusers", "transformers", "pillow"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = "missing"
    return versions


def image_settings(request: GenerationRequest, index: int, *, model: str, revision: str, pipeline: str,
                   scheduler: str, device: str, dtype: str) -> ImageSettings:
    """The record of image `index` of a resolved request: its own seed is `request.seed + index`."""
    return ImageSettings(**{
        "format": FORMAT_VERSION,
        "prompt": request.prompt,
        "negative_prompt": request.negative_prompt,
        "seed": request.seed + index,
        "steps": request.steps,
        "guidance": request.guidance,
        "width": request.width,
        "height": request.height,
        "batch": {"seed": request.seed, "index": index, "size": request.num_images},
        "model": model,
        "model_revision": revision,
        "pipeline": pipeline,
        "scheduler": scheduler,
        "postprocess": request.postprocess.to_dict(),
        "device": device,
        "dtype": dtype,
        "versions": library_versions(),
    })


def a1111_parameters(settings: ImageSettings) -> str:
    lines = [settings["prompt"]]
    if settings["negative_prompt"]:
        lines.append(f"Negative prompt: {settings['negative_prompt']}")
    lines.append(
        f"Steps: {settings['steps']}, Sampler: {settings['scheduler']}, CFG scale: {settings['guidance']:g}, "
        f"Seed: {settings['seed']}, Size: {settings['width']}x{settings['height']}, "
        f"Model: {settings['model']}, Model hash: {settings['model_revision']}")
    return "\n".join(lines)


def save_png(image: Image.Image, settings: ImageSettings, path: str | Path) -> Path:
    info = PngInfo()
    info.add_text("parameters", a1111_parameters(settings))
    info.add_text(SETTINGS_KEY, json.dumps(settings, ensure_ascii=False, sort_keys=True))
    path = Path(path)
    image.save(path, format="PNG", pnginfo=info)
    return path


def read_settings(path: str | Path) -> ImageSettings:
    """The settings stored in a PNG this studio made; ValueError for any other file."""
    try:
        with Image.open(path) as image:
            text = image.text.get(SETTINGS_KEY) if image.format == "PNG" else None
    except (OSError, Image.DecompressionBombError) as error:
        raise ValueError(f"cannot read image {str(path)!r}: {error}") from None
    if text is None:
        raise ValueError(f"{str(path)!r} holds no studio settings (only PNGs saved by this studio do)")
    if len(text) > MAX_SETTINGS_BYTES:
        raise ValueError(f"{str(path)!r}: settings chunk is larger than {MAX_SETTINGS_BYTES} bytes")
    try:
        settings = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{str(path)!r}: settings chunk is not valid JSON ({error})") from None
    if not isinstance(settings, dict) or settings.get("format") != FORMAT_VERSION:
        raise ValueError(f"{str(path)!r}: settings are not in format version {FORMAT_VERSION}")
    return settings


def request_from_settings(settings: ImageSettings) -> tuple[GenerationRequest, int]:
    """The request that reproduces the image the settings describe, and the image's index in it.

    An image from a batch is reproduced by running its whole batch again: batched matrix products
    may round differently from a single image's, and the promise is identical pixels.
    """
    try:
        batch = settings.get("batch") or {"seed": settings["seed"], "index": 0, "size": 1}
        request = GenerationRequest(
            prompt=settings["prompt"], negative_prompt=settings["negative_prompt"], seed=batch["seed"],
            steps=settings["steps"], guidance=settings["guidance"], width=settings["width"],
            height=settings["height"], num_images=batch["size"],
            postprocess=PostprocessSettings.from_dict(settings.get("postprocess") or {}))
        index = batch["index"]
    except (KeyError, TypeError) as error:
        raise ValueError(f"stored settings are incomplete ({error})") from None
    if not isinstance(index, int) or not 0 <= index < request.num_images:
        raise ValueError(f"stored batch index {index!r} is outside the batch of {request.num_images}")
    return request, index
