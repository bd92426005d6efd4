"""Settings inside PNG files: written with every image, read back to reproduce it.

Each PNG carries three text chunks:
- `studio`: JSON with every setting that made the image (`image_settings`);
- `parameters`: the same in the A1111 text form that other tools display;
- `XML:com.adobe.xmp`: the standard mark of a machine-generated picture (`pipeline.marking`).
"""
from __future__ import annotations

import json
import platform
from dataclasses import dataclass
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import NotRequired, TypedDict

from PIL import Image, UnidentifiedImageError
from PIL.PngImagePlugin import PngInfo

from pipeline import deliverables
from pipeline.brand import ColourReference
from pipeline.conditioning import ANCHORS, Extend, InputImage, Mask, describe
from pipeline.deliverables import Deliverable
from pipeline.marking import XMP_KEY, xmp_packet
from pipeline.postprocess import PostprocessSettings, file_name, shown
from pipeline.postprocess.images import reason
from pipeline.request import GenerationRequest

SETTINGS_KEY = "studio"
FORMAT_VERSION = 1
# Bounds the work of reading a foreign PNG. The largest record this studio writes is about 90 KB:
# two 2,000-character prompts of 4-byte characters, a palette at its cap, and three paths (the
# colour reference, the upscaler, a model folder) at 4,096 characters each, escaped as JSON. A
# deliverable's adds its plan and its brand kit (a kit file is at most 64 KB).
MAX_SETTINGS_BYTES = 256 * 1024


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
    # What the host's content gate checked and how the picture is marked (`Studio`'s content options).
    content: NotRequired[dict]
    # "text", "image", "inpaint", "extend" or "reference" (absent in records older than the image modes: "text").
    mode: NotRequired[str]
    # The image modes: the strength and `conditioning.describe` of the input picture (its SHA-256
    # and size as read; the picture itself is not stored), and for inpainting of the mask too.
    strength: NotRequired[float]
    init_image: NotRequired[dict]
    mask: NotRequired[dict]
    mask_feather: NotRequired[int]
    # Extend: `conditioning.Extend.to_dict` (the canvas size and anchor, or the pixels per side).
    extend: NotRequired[dict]
    # Reference editing: `conditioning.describe` of each reference picture, in order.
    references: NotRequired[list]
    # A deliverable (`deliverable_settings`): the key, title, exact size, fit, anchor and plan of
    # `pipeline.deliverables` and the brand kit's colour statistics; width, height and postprocess
    # are then the deliverable's, and the other fields its key visual's.
    deliverable: NotRequired[dict]
    # The brand kit applied (`brand.Kit.to_dict`: its name and every setting it brought) and the
    # style preset's key; the prompts above already hold what they added.
    kit: NotRequired[dict]
    style: NotRequired[str]
    # The prompt writer's text, encoded instead of `prompt` (the user's own), what wrote it and its
    # settings (`pipeline.enhance.Enhancement`); absent when the prompt was encoded as typed.
    enhanced_prompt: NotRequired[str]
    enhancer: NotRequired[str]
    enhancer_settings: NotRequired[dict]


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
                   scheduler: str, device: str, dtype: str, content: dict | None = None) -> ImageSettings:
    """The record of image `index` of a resolved request: its own seed is `request.seed + index`."""
    record = ImageSettings(**{
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
        "mode": request.mode,
    })
    if request.init_image is not None:
        record.update(strength=request.strength, init_image=describe(request.init_image))
    if request.mask is not None:
        record.update(mask=describe(request.mask), mask_feather=request.mask_feather)
    if request.extend is not None:
        record.update(extend=request.extend.to_dict(), mask_feather=request.mask_feather)
    if request.references:
        record["references"] = [describe(item) for item in request.references]
    if content:
        record["content"] = content
    if request.enhanced_prompt.strip():
        record.update(enhanced_prompt=request.enhanced_prompt, enhancer=request.enhancer,
                      enhancer_settings=dict(request.enhancer_settings))
    return record


def deliverable_settings(rendered: dict, *, kit: dict | None = None, style: str = "") -> ImageSettings:
    """The record of a deliverable's PNG from `deliverables.render`'s settings: its key visual's
    record with the deliverable's size and post-processing, the deliverable (key, title, size, fit,
    anchor, plan, kit colour statistics) as a field of its own, and the kit and style when given."""
    record = ImageSettings(**{**rendered["generations"][0], "width": rendered["width"], "height": rendered["height"],
                              "postprocess": rendered["postprocess"]})
    record["deliverable"] = {name: rendered[name] for name in _DELIVERABLE_FIELDS}
    if kit is not None:
        record["kit"] = kit
    if style:
        record["style"] = style
    return record


def a1111_parameters(settings: ImageSettings) -> str:
    # Other tools redraw from this prompt: the text that was encoded.
    lines = [settings.get("enhanced_prompt") or settings["prompt"]]
    if settings["negative_prompt"]:
        lines.append(f"Negative prompt: {settings['negative_prompt']}")
    lines.append(
        f"Steps: {settings['steps']}, Sampler: {settings['scheduler']}, CFG scale: {settings['guidance']:g}, "
        f"Seed: {settings['seed']}, Size: {settings['width']}x{settings['height']}, "
        f"Model: {settings['model']}, Model hash: {settings['model_revision']}"
        + (f", Denoising strength: {settings['strength']:g}" if "strength" in settings else ""))
    return "\n".join(lines)


def save_png(image: Image.Image, settings: ImageSettings, path: str | Path) -> Path:
    """Save a generated picture with its settings and the XMP mark of a machine-made picture."""
    info = PngInfo()
    info.add_text("parameters", a1111_parameters(settings))
    info.add_text(SETTINGS_KEY, json.dumps(settings, ensure_ascii=False, sort_keys=True))
    info.add_itxt(XMP_KEY, xmp_packet(settings["model"]))
    path = Path(path)
    image.save(path, format="PNG", pnginfo=info)
    return path


def read_settings(path: str | Path) -> ImageSettings:
    """The settings stored in a PNG this studio made; ValueError for any other file.

    Only the chunks ahead of the pixels are read, where `save_png` puts the settings, so no picture
    is decoded for them. Messages name the file by its base name: a visitor's upload lives in a
    server folder.
    """
    name = file_name(path)
    text = _settings_text(path, name)
    if text is None:
        raise ValueError(f"{name!r} holds no studio settings (only PNGs saved by this studio do)")
    if len(text.encode("utf-8", "replace")) > MAX_SETTINGS_BYTES:
        raise ValueError(f"{name!r}: settings chunk is larger than {MAX_SETTINGS_BYTES} bytes")
    try:
        settings = json.loads(text)
    except RecursionError:
        raise ValueError(f"{name!r}: settings chunk is nested too deeply to be settings this studio wrote") from None
    except ValueError as error:  # JSONDecodeError, or a number literal of thousands of digits
        raise ValueError(f"{name!r}: settings chunk is not valid JSON ({shown(str(error), 80)})") from None
    if not isinstance(settings, dict) or not _is_a(settings.get("format"), int) or settings["format"] != FORMAT_VERSION:
        raise ValueError(f"{name!r}: settings are not in format version {FORMAT_VERSION}")
    _check_record(settings)
    return settings


def _settings_text(path: str | Path, name: str) -> str | None:
    try:
        with Image.open(path) as image:
            text = image.info.get(SETTINGS_KEY) if image.format == "PNG" else None
    except FileNotFoundError:
        raise ValueError(f"cannot read image {name!r}: file not found") from None
    except UnidentifiedImageError:
        raise ValueError(f"cannot read image {name!r}: not a picture format the studio reads") from None
    except Exception as error:  # noqa: BLE001 - PIL's PNG reader raises many types for a malformed file
        raise ValueError(f"cannot read image {name!r}: {reason(error, path)}") from None
    return text if isinstance(text, str) else None


# The fields of a stored record that reproduce its image, and the JSON type of each; the record's
# other fields are checked when present.
_REQUIRED_FIELDS = {"prompt": str, "negative_prompt": str, "seed": int, "steps": int, "guidance": (int, float),
                    "width": int, "height": int, "model": str}
_OPTIONAL_FIELDS = {"batch": dict, "postprocess": dict, "model_revision": str, "pipeline": str, "scheduler": str,
                    "device": str, "dtype": str, "versions": dict, "mode": str, "strength": (int, float),
                    "init_image": dict, "mask": dict, "mask_feather": int, "extend": dict, "references": list,
                    "deliverable": dict, "kit": dict, "style": str, "enhanced_prompt": str, "enhancer": str,
                    "enhancer_settings": dict}
_DELIVERABLE_FIELDS = ("key", "title", "width", "height", "fit", "anchor", "plan", "colour_reference")
_MODES = ("text", "image", "inpaint", "extend", "reference")
_WHAT = {"init_image": "input picture", "mask": "mask"}
_BATCH_FIELDS = ("seed", "index", "size")
_TYPE_NAMES = {str: "text", int: "a whole number", (int, float): "a number", dict: "an object", list: "a list"}


def _check_record(settings: object) -> None:
    """ValueError, naming the field, unless `settings` has every field a record needs, each of its type."""
    if not isinstance(settings, dict):
        raise ValueError(f"stored settings must be an object of fields, got {type(settings).__name__}")
    missing = [field for field in _REQUIRED_FIELDS if field not in settings]
    if missing:
        raise ValueError(f"stored settings are incomplete: {', '.join(missing)} missing")
    for field, kind in (*_REQUIRED_FIELDS.items(), *_OPTIONAL_FIELDS.items()):
        if field in settings and not _is_a(settings[field], kind):
            raise ValueError(f"stored {field} must be {_TYPE_NAMES[kind]}, got {shown(settings[field])}")
    batch = settings.get("batch")
    if batch is not None:
        for field in _BATCH_FIELDS:
            if not _is_a(batch.get(field), int):
                raise ValueError(f"stored batch.{field} must be a whole number, got {shown(batch.get(field))}")


def _is_a(value: object, kind: type | tuple) -> bool:
    return isinstance(value, kind) and not isinstance(value, bool)  # JSON true is no number


def request_from_settings(settings: ImageSettings, init_image: InputImage | None = None,
                          mask: Mask | None = None,
                          references: tuple[InputImage, ...] = ()) -> tuple[GenerationRequest, int]:
    """The request that reproduces the image the settings describe, and the image's index in it.

    An image from a batch is reproduced by running its whole batch again: batched matrix products
    may round differently from a single image's, and the promise is identical pixels. Settings of
    any other form are a ValueError naming the field.

    A picture made from an input picture (and a mask) records only their hashes and sizes, so
    they are given here: a ValueError sentence when one that the settings name is missing or
    is another file than the one recorded. So are the references of reference editing, in order.

    A deliverable's record gives the request `deliverables.render` takes (no width and height: the
    deliverable sets them); `stored_deliverable` gives the rest of what renders it again.
    """
    _check_record(settings)
    mode = settings.get("mode", "text")
    if mode not in _MODES:
        raise ValueError(f"stored mode must be one of {', '.join(_MODES)}, got {shown(mode)}")
    inputs = _stored_inputs(settings, mode, init_image, mask)
    inputs.update(_stored_references(settings, mode, tuple(references)))
    batch = settings.get("batch")
    if batch is None:
        batch = {"seed": settings["seed"], "index": 0, "size": 1}
    postprocess = settings.get("postprocess")
    sized = "deliverable" not in settings
    request = GenerationRequest(
        prompt=settings["prompt"], negative_prompt=settings["negative_prompt"], seed=batch["seed"],
        steps=settings["steps"], guidance=settings["guidance"], width=settings["width"] if sized else None,
        height=settings["height"] if sized else None, num_images=batch["size"],
        postprocess=PostprocessSettings.from_dict({} if postprocess is None else postprocess),
        enhanced_prompt=settings.get("enhanced_prompt", ""), enhancer=settings.get("enhancer", ""),
        enhancer_settings=settings.get("enhancer_settings", {}), **inputs)
    index = batch["index"]
    if not 0 <= index < request.num_images:
        raise ValueError(f"stored batch.index {shown(index)} is outside the batch of {request.num_images}")
    return request, index


@dataclass(frozen=True)
class StoredDeliverable:
    """What renders a deliverable's PNG again besides its request: `deliverables.render(studio,
    request, stored.deliverable, **stored.options())`; and the kit and style it was made with."""

    deliverable: Deliverable
    fit: str
    anchor: str
    colour: ColourReference | None = None
    kit: dict | None = None
    style: str = ""

    def options(self) -> dict:
        return {"fit": self.fit, "anchor": self.anchor, "colour": self.colour}


def stored_deliverable(settings: ImageSettings) -> StoredDeliverable | None:
    """The deliverable a stored record was made as (None for any other picture); ValueError naming
    the field for a record of another form."""
    _check_record(settings)
    record = settings.get("deliverable")
    if record is None:
        return None
    missing = [name for name in _DELIVERABLE_FIELDS if name not in record]
    if missing:
        raise ValueError(f"stored deliverable is incomplete: {', '.join(missing)} missing")
    item = deliverables.parse(record["key"])
    sizes = {"width and height": (settings["width"], settings["height"]),
             "deliverable width and height": (record["width"], record["height"])}
    for name, size in sizes.items():
        if size != item.size:
            raise ValueError(f"stored {name} are {shown(size[0])}x{shown(size[1])}, but deliverable {item.key} is "
                             f"{item.width}x{item.height}")
    for name, allowed in (("fit", deliverables.FITS), ("anchor", ANCHORS)):
        if record[name] not in allowed:
            raise ValueError(f"stored deliverable {name} must be one of {', '.join(allowed)}, got {shown(record[name])}")
    colour = record["colour_reference"]
    colour = None if colour is None else ColourReference.from_dict(colour, "stored deliverable colour_reference")
    return StoredDeliverable(item, record["fit"], record["anchor"], colour, settings.get("kit"),
                             settings.get("style", ""))


def _stored_inputs(settings: dict, mode: str, init_image: InputImage | None, mask: Mask | None) -> dict:
    """The request's image-mode fields for a record of `mode`, with the given pictures checked against it."""
    given = {"init_image": init_image, "mask": mask}
    needed = {"text": (), "image": ("init_image",), "inpaint": ("init_image", "mask"), "extend": ("init_image",),
              "reference": ()}[mode]
    for name, item in given.items():
        if item is not None and name not in needed:
            raise ValueError(f"this picture was made without {'an input picture' if name == 'init_image' else 'a mask'}"
                             f"; leave {name} out")
    for name in needed:
        record = settings.get(name)
        if not isinstance(record, dict) or not isinstance(record.get("sha256"), str):
            raise ValueError(f"stored {name} must be an object with the picture's sha256, got {shown(record)}")
        size = f"{record.get('width')}x{record.get('height')}"
        if given[name] is None:
            raise ValueError(f"this picture was made from the {_WHAT[name]} {record['sha256'][:12]}... ({size}), which "
                             f"its settings do not contain; give that {_WHAT[name]} as {name} to reproduce it")
        if given[name].sha256 != record["sha256"]:
            raise ValueError(f"{name} is not the {_WHAT[name]} this picture was made from: its SHA-256 begins "
                             f"{given[name].sha256[:12]}, the settings name {record['sha256'][:12]}... ({size})")
    fields = {name: given[name] for name in needed}
    if "strength" in settings and mode != "text":
        fields["strength"] = settings["strength"]
    if "mask_feather" in settings and mode in ("inpaint", "extend"):
        fields["mask_feather"] = settings["mask_feather"]
    if mode == "extend":
        fields["extend"] = Extend.from_dict(settings.get("extend"))
    return fields



def _stored_references(settings: dict, mode: str, given: tuple[InputImage, ...]) -> dict:
    """The request's references for a record of `mode`, each given picture checked against the record's."""
    if mode != "reference":
        if given:
            raise ValueError("this picture was made without references; leave references out")
        return {}
    records = settings.get("references")
    if not isinstance(records, list) or not records or not all(
            isinstance(record, dict) and isinstance(record.get("sha256"), str) for record in records):
        raise ValueError(f"stored references must be a list of objects with each picture's sha256, "
                         f"got {shown(records)}")
    if len(given) < len(records):
        missing = records[len(given)]
        raise ValueError(f"this picture was made from {len(records)} references, and {len(given)} was given; give "
                         f"reference {len(given) + 1} ({missing['sha256'][:12]}..., {missing.get('width')}x"
                         f"{missing.get('height')}) too, in order")
    if len(given) > len(records):
        raise ValueError(f"this picture was made from {len(records)} references, and {len(given)} were given; "
                         f"leave out the last {len(given) - len(records)}")
    for position, (item, record) in enumerate(zip(given, records), 1):
        if item.sha256 != record["sha256"]:
            named = f" ({item.name})" if item.name else ""
            raise ValueError(f"reference {position}{named} is not the picture this one was made from: its SHA-256 "
                             f"begins {item.sha256[:12]}, the settings name {record['sha256'][:12]}... "
                             f"({record.get('width')}x{record.get('height')})")
    return {"references": given}
