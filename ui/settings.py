"""Between the generate controls' values and the engine's settings, in both directions.

`read_pictures` reads the "Start from an image" panel's pictures with `pipeline.conditioning`
(`read_references` its reference pictures), and `read_extend` its outpainting (a format's size for the model, an anchor); `build_request` turns the
values (by control name, see `ui.controls.CONTROLS`), those pictures and that outpainting into a
`GenerationRequest`; `controls_from_request` turns a stored picture's request back into values
(`extend_controls` its outpainting), and `pictures_to_upload` names the input pictures it was made
from. None knows about gradio: the engine's `ValueError` sentences pass through unchanged for the
handlers to show.
"""
from __future__ import annotations

import dataclasses
import json
import ntpath
import re
from pathlib import Path

import numpy as np
from typing import Any, Mapping

from PIL import Image

from pipeline.conditioning import Extend, InputImage, Mask, read_input_image, read_mask
from pipeline.references import MAX_REFERENCES
from pipeline.postprocess import PostprocessSettings, ReferenceStatistics
from pipeline.request import GenerationRequest, ModelLimits
from ui.controls import (COLOR_STATISTICS, CONTROL_NAMES, EXTEND_ANCHOR, EXTEND_TO, INPUT_PICTURE, MASK, OFF,
                         POSTPROCESS, REFERENCES, defaults, in_section)
from ui.formats import FORMATS_BY_KEY, format_for_size, format_size

# The pictures of the "Start from an image" panel, read by `read_pictures` before the request is built.
PICTURE_CONTROLS = (INPUT_PICTURE, MASK, REFERENCES)
# The controls that are `GenerationRequest` fields of the same name; the post-processing panel's
# controls make its `postprocess` field, and random_seed chooses the seed.
REQUEST_CONTROLS = tuple(field.name for field in dataclasses.fields(GenerationRequest)
                         if field.name in CONTROL_NAMES and field.name not in PICTURE_CONTROLS)
POSTPROCESS_CONTROLS = tuple(control.name for control in in_section(POSTPROCESS))
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


def build_postprocess(values: Mapping[str, Any]) -> PostprocessSettings:
    """The post-processing panel's values as engine settings; ValueError on a bad combination."""
    denoise, color, upscale = values["denoise"], values["color"], int(values["upscale"])
    # Without the picture, the statistics Reuse settings restored stand for it.
    statistics = None
    if color == "reference" and not values["color_reference"]:
        statistics = read_statistics(values.get(COLOR_STATISTICS))
        if statistics is None:
            raise ValueError("color_reference is needed for 'Match a reference image': upload the reference picture")
    if color == "palette" and not parse_palette(values["color_palette"]):
        raise ValueError("color_palette is needed for 'Brand palette': give hex colours like #1E88E5, #FFC107")
    # A hidden control's leftover value does not leak into the settings.
    return PostprocessSettings(
        denoise=None if denoise == OFF else "auto" if denoise == "auto" else values["denoise_strength"],
        color=None if color == OFF else color,
        color_reference=values["color_reference"] if color == "reference" else None,
        color_palette=parse_palette(values["color_palette"]) if color == "palette" else (),
        color_strength=values["color_strength"],
        color_statistics=statistics,
        upscale=upscale,
        upscaler=values["upscaler"] if upscale != 1 and values["upscaler"] else None)


def read_statistics(text: str | None) -> ReferenceStatistics | None:
    """The colour statistics control's JSON as engine statistics; None when empty, ValueError when unreadable."""
    if not (text or "").strip():
        return None
    try:
        return ReferenceStatistics.from_dict(json.loads(text))
    except json.JSONDecodeError:
        raise ValueError("color_statistics must be a JSON object of mean, std, sha256 and name") from None


def painted(editor: Mapping[str, Any] | None) -> Image.Image | None:
    """The mask editor's value ({"background", "layers", "composite"}, layers as PIL pictures) as one
    brush layer: white where any layer is painted, transparent elsewhere; None when nothing is.

    Only the layers' transparency counts, so the brush colour does not matter, and the background
    (the input picture shown under the brush) never becomes part of the mask.
    """
    layers = [layer for layer in (editor or {}).get("layers") or () if isinstance(layer, Image.Image)]
    alphas = [np.asarray(layer.convert("RGBA").getchannel("A")) for layer in layers]  # (H, W) each
    if len({alpha.shape for alpha in alphas}) > 1:
        raise ValueError("mask: its layers differ in size; paint them on one picture")
    coverage = np.maximum.reduce(alphas) if alphas else None
    if coverage is None or not coverage.any():
        return None
    brush = Image.new("RGBA", coverage.shape[::-1], (255, 255, 255, 0))
    brush.putalpha(Image.fromarray(coverage))
    return brush


def read_pictures(values: Mapping[str, Any]) -> tuple[InputImage | None, Mask | None]:
    """The input picture (a file path) and the painted mask, read and checked; ValueError in a
    sentence naming the input, and the file by its base name only."""
    path, brush = values.get(INPUT_PICTURE), painted(values.get(MASK))
    if not path:
        if brush is not None:
            raise ValueError("mask needs an init_image: upload the picture to repaint under Start from an image")
        return None, None
    init_image = read_input_image(path, INPUT_PICTURE)
    mask = None if brush is None else read_mask(brush, init_image.size, MASK)
    return init_image, mask


def read_references(values: Mapping[str, Any]) -> tuple[InputImage, ...]:
    """The reference pictures (file paths, in upload order), read and checked; ValueError in a sentence
    naming the reference by its position and its file by its base name only."""
    paths = values.get(REFERENCES) or ()
    if isinstance(paths, str):
        paths = (paths,)
    if len(paths) > MAX_REFERENCES:
        raise ValueError(f"references has {len(paths)} pictures; the limit is {MAX_REFERENCES}")
    return tuple(read_input_image(path, f"reference {position}") for position, path in enumerate(paths, 1))


def read_extend(values: Mapping[str, Any], limits: ModelLimits) -> Extend | None:
    """The outpainting the controls ask for: a canvas of the chosen format's size for this model,
    the picture at the chosen anchor; None when extend_to is off."""
    key = values.get(EXTEND_TO, OFF)
    if key == OFF:
        return None
    if key not in FORMATS_BY_KEY:
        raise ValueError(f"extend_to must be {OFF!r} or a format, one of {', '.join(map(repr, FORMATS_BY_KEY))}; "
                         f"got {key!r}")
    width, height = format_size(FORMATS_BY_KEY[key], limits)
    return Extend.to(width, height, values.get(EXTEND_ANCHOR, "center"))


def build_request(values: Mapping[str, Any], init_image: InputImage | None = None,
                  mask: Mask | None = None, extend: Extend | None = None,
                  references: tuple[InputImage, ...] = ()) -> GenerationRequest:
    """The request the controls describe, from the pictures `read_pictures` read, the outpainting
    `read_extend` read and the references `read_references` read (the seed as given: random_seed is
    the handler's); ValueError (naming the field) when a value is out of range. With `extend`, width
    and height are its canvas's."""
    postprocess = build_postprocess(values)
    fields = {name: whole(values[name]) for name in REQUEST_CONTROLS}
    fields["negative_prompt"] = fields["negative_prompt"] or ""
    if extend is not None:
        fields["width"], fields["height"] = extend.width, extend.height
    return GenerationRequest(**fields, postprocess=postprocess, init_image=init_image, mask=mask, extend=extend,
                             references=references)


def extend_controls(extend: Extend | None, limits: ModelLimits) -> dict[str, str]:
    """extend_to and extend_anchor that make `extend` again: the format of its canvas size for this
    model; off when there is none (or none of that size, or it extends by sides)."""
    key = OFF if extend is None or extend.width is None else format_for_size(extend.width, extend.height, limits)
    if key not in FORMATS_BY_KEY:
        return {EXTEND_TO: OFF, EXTEND_ANCHOR: defaults()[EXTEND_ANCHOR]}
    return {EXTEND_TO: key, EXTEND_ANCHOR: extend.anchor}


def controls_from_request(request: GenerationRequest) -> dict[str, Any]:
    """Control values, by control name, that regenerate `request` (a stored image's whole batch).

    The input picture, the mask, the colour reference and the upscaler are left empty: the paths a
    picture's settings name are files of the machine that made it, and a path given to a component
    is a file the page serves. `files_to_upload` and `pictures_to_upload` name what the visitor has
    to give again.
    """
    post = request.postprocess
    denoise = OFF if post.denoise is None else "auto" if post.denoise == "auto" else "manual"
    return {
        **defaults(),
        **{name: getattr(request, name) for name in REQUEST_CONTROLS},
        INPUT_PICTURE: None,
        MASK: None,
        REFERENCES: None,
        "denoise": denoise,
        "denoise_strength": post.denoise if denoise == "manual" else defaults()["denoise_strength"],
        "color": post.color or OFF,
        "color_palette": ", ".join(post.color_palette),
        "color_strength": post.color_strength,
        "upscale": str(post.upscale),
        COLOR_STATISTICS: "" if post.color_statistics is None else json.dumps(post.color_statistics.to_dict()),
    }


def files_to_upload(post: PostprocessSettings) -> list[str]:
    """What the settings used from files that Reuse settings does not restore, e.g.
    ["the colour reference 'brand.png'"]; only the file's base name, never its folder."""
    # A colour reference whose statistics are stored is not needed again.
    reference = post.color_reference if post.color_statistics is None else None
    files = [("the colour reference", reference), ("the learned upscaler", post.upscaler)]
    # ntpath splits at both / and \, so a path written on Windows loses its folders too.
    return [f"{what} {ntpath.basename(path)!r}" for what, path in files if path]


def pictures_to_upload(settings: Mapping[str, Any]) -> list[str]:
    """The input pictures a stored image was made from, as a sentence names them: by the start of
    their SHA-256 and their size (the settings hold no picture and the page reads no path from them),
    e.g. ["the input picture 1a2b3c4d5e6f... (512x512)"]."""
    named = [("the input picture", settings.get(INPUT_PICTURE)), ("the mask", settings.get(MASK))]
    return [f"{what} {record['sha256'][:12]}... ({record.get('width')}x{record.get('height')})"
            for what, record in named if isinstance(record, dict) and isinstance(record.get("sha256"), str)]


def references_to_upload(settings: Mapping[str, Any]) -> list[str]:
    """The reference pictures a stored image was made from, in order, as a sentence names them,
    e.g. ["reference 1 1a2b3c4d5e6f... (512x512)"]."""
    records = settings.get(REFERENCES)
    if not isinstance(records, list):
        return []
    return [f"reference {position} {record['sha256'][:12]}... ({record.get('width')}x{record.get('height')})"
            for position, record in enumerate(records, 1)
            if isinstance(record, dict) and isinstance(record.get("sha256"), str)]


def without_folders(message: str, path: str) -> str:
    """`message` with each mention of `path` cut to its base name: a sentence names an uploaded
    file by its name, never by the folder the server keeps it in."""
    name = ntpath.basename(str(path))
    for spelling in (str(path), repr(str(path))[1:-1]):
        message = message.replace(spelling, name)
    return message


def describe_source(settings: dict) -> str:
    """Where a stored image came from, for the status line."""
    batch = settings.get("batch") or {}
    model = Path(settings.get("model", "?")).name or settings.get("model", "?")
    if batch.get("size", 1) > 1:
        return f"image {batch['index'] + 1} of a batch of {batch['size']} (seed {settings['seed']}) by {model}"
    return f"seed {settings['seed']} by {model}"
