"""Between the studio's controls and the engine's settings, in both directions.

`build_request` turns control values into a `GenerationRequest` by keyword; `controls_from_settings`
turns the settings stored in a PNG back into control values. Neither knows about gradio: the
engine's `ValueError` sentences pass through unchanged for the handlers to show.
"""
from __future__ import annotations

import re
from pathlib import Path

from pipeline.postprocess import PostprocessSettings
from pipeline.request import GenerationRequest

OFF = "off"
DENOISE_MODES = (("Off", OFF), ("Auto (estimate the noise)", "auto"), ("Strength", "manual"))
COLOR_MODES = (("Off", OFF), ("Auto (white balance + levels)", "auto"), ("Match a reference image", "reference"),
               ("Brand palette", "palette"))
# Radio values are strings so the API documents them plainly; the engine takes the int.
UPSCALE_CHOICES = (("Off", "1"), ("x2", "2"), ("x4", "4"))
PALETTE_SEPARATOR = re.compile(r"[\s,;]+")


def whole(value):
    """A slider's float that holds a whole number, as an int; anything else unchanged.

    Sliders and JSON send 7.0 for 7; the engine wants ints and rejects 7.5 or NaN with its own
    sentence, so nothing is rounded here.
    """
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def parse_palette(text: str | None) -> tuple[str, ...]:
    """'#1E88E5, #FFC107' -> ('#1E88E5', '#FFC107'); the engine checks each colour."""
    return tuple(part for part in PALETTE_SEPARATOR.split(text or "") if part)


def build_postprocess(*, denoise: str, denoise_strength: float, color: str, color_reference: str | None,
                      color_palette: str, color_strength: float, upscale: str,
                      upscaler: str | None) -> PostprocessSettings:
    """The post-processing panel's values as engine settings; ValueError on a bad combination."""
    if color == "reference" and not color_reference:
        raise ValueError("color_reference is needed for 'Match a reference image': upload the reference picture")
    if color == "palette" and not parse_palette(color_palette):
        raise ValueError("color_palette is needed for 'Brand palette': give hex colours like #1E88E5, #FFC107")
    return PostprocessSettings(
        denoise=None if denoise == OFF else "auto" if denoise == "auto" else denoise_strength,
        color=None if color == OFF else color,
        color_reference=color_reference if color == "reference" else None,
        color_palette=parse_palette(color_palette) if color == "palette" else (),
        color_strength=color_strength,
        upscale=int(upscale),
        upscaler=upscaler if int(upscale) != 1 and upscaler else None)


def build_request(*, prompt: str, negative_prompt: str, seed, steps, guidance, width, height, num_images,
                  postprocess: PostprocessSettings) -> GenerationRequest:
    """The request the controls describe; ValueError (naming the field) when a value is out of range."""
    return GenerationRequest(
        prompt=prompt, negative_prompt=negative_prompt or "", seed=whole(seed), steps=whole(steps),
        guidance=guidance, width=whole(width), height=whole(height), num_images=whole(num_images),
        postprocess=postprocess)


def controls_from_settings(settings: dict, request: GenerationRequest) -> dict:
    """Control values, by control name, that regenerate `request` (a stored image's whole batch)."""
    post = request.postprocess
    denoise = OFF if post.denoise is None else "auto" if post.denoise == "auto" else "manual"
    return {
        "prompt": request.prompt,
        "negative_prompt": request.negative_prompt,
        "seed": request.seed,
        "random_seed": False,
        "steps": request.steps,
        "guidance": request.guidance,
        "width": request.width,
        "height": request.height,
        "num_images": request.num_images,
        "denoise": denoise,
        "denoise_strength": post.denoise if denoise == "manual" else 0.5,
        "color": post.color or OFF,
        "color_reference": post.color_reference,
        "color_palette": ", ".join(post.color_palette),
        "color_strength": post.color_strength,
        "upscale": str(post.upscale),
        "upscaler": post.upscaler,
    }


def describe_source(settings: dict) -> str:
    """Where a stored image came from, for the status line."""
    batch = settings.get("batch") or {}
    model = Path(settings.get("model", "?")).name or settings.get("model", "?")
    if batch.get("size", 1) > 1:
        return f"image {batch['index'] + 1} of a batch of {batch['size']} (seed {settings['seed']}) by {model}"
    return f"seed {settings['seed']} by {model}"
