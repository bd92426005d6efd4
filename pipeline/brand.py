"""Brand kits: a brand's name, colours, words and formats in one small JSON file.

    {"name": "Harbour", "palette": ["#1D3557", "#E76F51", "#F4E3B2"],
     "colour_reference": {"name": "approved.png", "sha256": "...", "mean": [...], "std": [...]},
     "colour_strength": 1.0, "style": "flat colours, clean edges", "negative_prompt": "blurry",
     "deliverables": ["square", "story", "link"]}

The colour reference is kept as what colour transfer uses, the reference's per-channel mean and
spread (`ColourReference`, the statistics `postprocess.reference_statistics` computes from the
picture and `postprocess.apply_statistics` applies), with its SHA-256 and name: a kit, and every picture made with it, reproduces after the
reference file is gone. Applying a kit (`apply`) appends its style to the prompt, adds its
negative prompt, and takes over the colour stage: its reference's statistics, then a pull toward
its palette. Every refusal is one sentence naming the file by its base name and the field.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from PIL import Image

from pipeline import deliverables
from pipeline.files import read_small_text
from pipeline.postprocess import (
    HEX_COLOUR,
    MAX_PALETTE_COLOURS,
    PostprocessSettings,
    ReferenceStatistics,
    apply_statistics,
    file_name,
    read_reference_statistics,
    shown,
)

MAX_KIT_BYTES = 64 * 1024
MAX_NAME_CHARS = 100
MAX_TEXT_CHARS = 500
_FIELDS = ("name", "palette", "colour_reference", "colour_strength", "style", "negative_prompt", "deliverables")
_REFERENCE_FIELDS = ("name", "sha256", "mean", "std")


@dataclass(frozen=True)
class ColourReference:
    """A colour reference by its statistics: per-channel mean and standard deviation of its RGB
    values on the 0..1 scale (as `postprocess.reference_statistics` computes them), the file's SHA-256 and
    base name, and how strongly a picture is pulled to it (0..1)."""

    name: str
    sha256: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    strength: float = 1.0

    @classmethod
    def from_file(cls, path: str | os.PathLike, strength: float = 1.0) -> ColourReference:
        """The statistics of a picture read as the colour stage reads a reference."""
        return cls.from_statistics(read_reference_statistics(os.fspath(path)), strength)

    @classmethod
    def from_statistics(cls, statistics: ReferenceStatistics, strength: float = 1.0) -> ColourReference:
        return cls(statistics.name, statistics.sha256, statistics.mean, statistics.std, strength)

    @property
    def statistics(self) -> ReferenceStatistics:
        """The statistics as the post-processing settings store them."""
        return ReferenceStatistics(self.mean, self.std, self.sha256, self.name)

    def apply(self, image: Image.Image) -> Image.Image:
        """Colour transfer to these statistics: the same pixels as `postprocess.match_reference`
        with the reference picture itself."""
        return apply_statistics(image, self.mean, self.std, self.strength)

    def to_dict(self) -> dict:
        """The record for a kit file or a PNG's settings."""
        return {"name": self.name, "sha256": self.sha256, "mean": list(self.mean), "std": list(self.std),
                "strength": self.strength}

    @classmethod
    def from_dict(cls, record: object, what: str = "colour_reference") -> ColourReference:
        if not isinstance(record, dict) or not set(_REFERENCE_FIELDS) <= set(record) <= {*_REFERENCE_FIELDS,
                                                                                          "strength"}:
            raise ValueError(f"{what} must be an object of {', '.join(_REFERENCE_FIELDS)} (and strength), "
                             f"got {shown(record)}")
        for name in ("name", "sha256"):
            if not isinstance(record[name], str):
                raise ValueError(f"{what}.{name} must be text, got {shown(record[name])}")
        values = {}
        for name, low, high in (("mean", 0.0, 1.0), ("std", 0.0, 1.0)):
            value = record[name]
            if (not isinstance(value, list) or len(value) != 3
                    or not all(_is_number(v) and low <= v <= high for v in value)):
                raise ValueError(f"{what}.{name} must be 3 numbers from {low:g} to {high:g} (R, G, B), "
                                 f"got {shown(value)}")
            values[name] = tuple(float(v) for v in value)
        strength = _fraction(f"{what}.strength", record.get("strength", 1.0))
        return cls(record["name"], record["sha256"], values["mean"], values["std"], strength)


@dataclass(frozen=True)
class Kit:
    """A brand kit: see the module. `deliverables` are keys of `deliverables.DELIVERABLES` or WxH."""

    name: str
    palette: tuple[str, ...] = ()
    colour_reference: ColourReference | None = None
    colour_strength: float = 1.0
    style: str = ""
    negative_prompt: str = ""
    deliverables: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        _check(self)

    def to_dict(self) -> dict:
        return {"name": self.name, "palette": list(self.palette),
                "colour_reference": None if self.colour_reference is None else self.colour_reference.to_dict(),
                "colour_strength": self.colour_strength, "style": self.style,
                "negative_prompt": self.negative_prompt, "deliverables": list(self.deliverables)}

    @classmethod
    def from_dict(cls, record: object) -> Kit:
        """A kit from its JSON object; ValueError naming the field."""
        if not isinstance(record, dict):
            raise ValueError(f"a kit is a JSON object of {', '.join(_FIELDS)}, got {type(record).__name__}")
        unknown = sorted(shown(key) for key in record if key not in _FIELDS)
        if unknown:
            raise ValueError(f"unknown fields {', '.join(unknown)}; a kit has {', '.join(_FIELDS)}")
        if "name" not in record:
            raise ValueError("name is missing; every kit has a name")
        fields_ = dict(record)
        for name in ("palette", "deliverables"):
            if name in fields_:
                if not isinstance(fields_[name], list):
                    raise ValueError(f"{name} must be a list, got {shown(fields_[name])}")
                fields_[name] = tuple(fields_[name])
        if fields_.get("colour_reference") is not None:
            fields_["colour_reference"] = ColourReference.from_dict(fields_["colour_reference"])
        return cls(**fields_)


def _check(kit: Kit) -> None:
    if not isinstance(kit.name, str) or not kit.name.strip() or len(kit.name) > MAX_NAME_CHARS:
        raise ValueError(f"name must be text of 1 to {MAX_NAME_CHARS} characters, got {shown(kit.name)}")
    if len(kit.palette) > MAX_PALETTE_COLOURS:
        raise ValueError(f"palette has {len(kit.palette)} colours; the limit is {MAX_PALETTE_COLOURS}")
    for colour in kit.palette:
        if not isinstance(colour, str) or not HEX_COLOUR.fullmatch(colour):
            raise ValueError(f"palette: {shown(colour)} is not a hex colour '#RRGGBB'")
    if kit.colour_reference is not None and not isinstance(kit.colour_reference, ColourReference):
        raise ValueError(f"colour_reference must be a ColourReference, got {type(kit.colour_reference).__name__}")
    object.__setattr__(kit, "colour_strength", _fraction("colour_strength", kit.colour_strength))
    for name in ("style", "negative_prompt"):
        value = getattr(kit, name)
        if not isinstance(value, str) or len(value) > MAX_TEXT_CHARS:
            raise ValueError(f"{name} must be text of at most {MAX_TEXT_CHARS} characters, got {shown(value)}")
    for name in kit.deliverables:
        deliverables.parse(name)


def load(path: str | os.PathLike) -> Kit:
    """Read a kit file; ValueError in one sentence naming the file by its base name."""
    name = file_name(path)
    text = read_small_text(path, "kit", MAX_KIT_BYTES, over="is {size} bytes; a kit file is at most {limit} bytes",
                           not_utf8="; save it as a UTF-8 JSON file")
    try:
        record = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"kit {name!r} is not valid JSON ({error.msg} at line {error.lineno})") from None
    except RecursionError:
        raise ValueError(f"kit {name!r} is nested too deeply to be a kit") from None
    try:
        return Kit.from_dict(record)
    except ValueError as error:
        raise ValueError(f"kit {name!r}: {error}") from None


def save(kit: Kit, path: str | os.PathLike) -> Path:
    """Write a kit file (UTF-8 JSON, indented) and return its path."""
    path = Path(path)
    path.write_text(json.dumps(kit.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def apply(kit: Kit, prompt: str, negative_prompt: str,
          postprocess: PostprocessSettings) -> tuple[str, str, PostprocessSettings, ColourReference | None]:
    """(prompt, negative prompt, post-processing, colour reference) with the kit applied: its style
    appended to the prompt, its negative prompt added, and the colour stage its own (the palette
    pull when it has a palette; its reference's statistics go to `deliverables.render`)."""
    prompt = join(prompt, kit.style)
    negative_prompt = join(negative_prompt, kit.negative_prompt)
    if kit.palette:
        postprocess = replace(postprocess, color="palette", color_palette=kit.palette, color_reference=None,
                              color_strength=kit.colour_strength)
    elif kit.colour_reference is not None:
        postprocess = replace(postprocess, color=None, color_palette=(), color_reference=None)
    reference = kit.colour_reference
    if reference is not None:
        reference = replace(reference, strength=kit.colour_strength)
    return prompt, negative_prompt, postprocess, reference


def join(*parts: str) -> str:
    """Non-empty prompt parts joined by ", "."""
    return ", ".join(part.strip() for part in parts if part and part.strip())


def _is_number(value: object) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


def _fraction(name: str, value: object) -> float:
    if not _is_number(value) or not 0 <= value <= 1:
        raise ValueError(f"{name} must be a number from 0 to 1, got {shown(value)}")
    return float(value)
