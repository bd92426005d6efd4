"""`PostprocessSettings`: which post-processing stages run, and how, and the limits of what they take.

This is what goes into a PNG's metadata, so it is checked for form only and reads no file: a
picture's stored settings always parse, even when the colour reference or upscaler they name has
gone. The files are read by `PostprocessChain.prepare`, which names the missing one. A colour
reference is also kept as its statistics (`ReferenceStatistics`, filled in by
`PostprocessChain.resolve`), so a picture's colour correction is redone after the file is gone.
"""
from __future__ import annotations

import math
import ntpath
import os
import re
import unicodedata
from dataclasses import asdict, dataclass, fields
from pathlib import Path

COLOR_MODES = ("auto", "reference", "palette")
UPSCALE_FACTORS = (1, 2, 4)
UPSCALER_SUFFIXES = (".safetensors", ".pth")
HEX_COLOUR = re.compile(r"#[0-9A-Fa-f]{6}")
SHA256 = re.compile(r"[0-9a-f]{64}")
# A brand palette is a handful of colours; the palette stage compares every pixel with each.
MAX_PALETTE_COLOURS = 16
# The colour reference is refused above this many pixels, read from its header before decoding:
# a small compressed file can claim a huge picture.
MAX_REFERENCE_DECODE_PIXELS = 50_000_000
# The colour stage works on a copy of the reference shrunk to at most this many pixels: its channel
# means and spreads, all that colour transfer uses, barely change.
MAX_REFERENCE_PIXELS = 1024 * 1024
# Linux's PATH_MAX; it also bounds what a path adds to a PNG's stored settings.
MAX_PATH_CHARS = 4096


def shown(value: object, limit: int = 40) -> str:
    """A short, safe rendering of any value for an error sentence: a huge list, a number of
    thousands of digits or a deeply nested structure becomes at most `limit` characters."""
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - int too long to print, nesting too deep: say what it is instead
        text = f"a value of type {type(value).__name__}"
    return text if len(text) <= limit else text[:limit - 3] + "..."


def file_name(path: str | os.PathLike) -> str:
    """The base name of a file, for a message: an upload lives in a server folder such as
    /tmp/gradio/<hash>/ that a visitor has no business seeing. Splits at / and \\ alike."""
    return ntpath.basename(os.fspath(path).rstrip("/\\"))


@dataclass(frozen=True)
class ReferenceStatistics:
    """What colour transfer takes from a reference picture: the per-channel mean and standard
    deviation of its RGB values on the 0..1 scale (`colour.reference_statistics`), with the file's
    SHA-256 and base name to tell which picture they came from."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    sha256: str
    name: str = ""

    def __post_init__(self):
        for name in ("mean", "std"):
            value = getattr(self, name)
            if (isinstance(value, (str, bytes)) or not isinstance(value, (tuple, list)) or len(value) != 3
                    or not all(_is_number(v) and 0.0 <= v <= 1.0 for v in value)):
                raise ValueError(f"color_statistics.{name} must be 3 numbers from 0 to 1 (R, G, B), got {shown(value)}")
            object.__setattr__(self, name, tuple(float(v) for v in value))
        if not isinstance(self.sha256, str) or not SHA256.fullmatch(self.sha256):
            raise ValueError(f"color_statistics.sha256 must be 64 hexadecimal digits, got {shown(self.sha256)}")
        if not isinstance(self.name, str) or len(self.name) > MAX_PATH_CHARS:
            raise ValueError(f"color_statistics.name must be a file name, got {shown(self.name)}")

    def to_dict(self) -> dict:
        return {"mean": list(self.mean), "std": list(self.std), "sha256": self.sha256, "name": self.name}

    @classmethod
    def from_dict(cls, d: object) -> ReferenceStatistics:
        names = {f.name for f in fields(cls)}
        if not isinstance(d, dict) or not {"mean", "std", "sha256"} <= set(d) <= names:
            raise ValueError(f"color_statistics must be an object of mean, std, sha256 and name, got {shown(d)}")
        return cls(**d)


@dataclass(frozen=True)
class PostprocessSettings:
    """Which post-processing stages run, and how. The defaults turn everything off.

    denoise: None (off), "auto" (noise level estimated from the image) or a strength 0..1.
    color: None, "auto", "reference" (needs color_reference, its statistics color_statistics, or
        both) or "palette" (needs color_palette).
    color_strength: 0..1, blend of the colour-corrected picture with its input.
    upscale: 1, 2 or 4; upscaler: a .safetensors/.pth super-resolution model, None = classical.
    """

    denoise: float | str | None = None
    color: str | None = None
    color_reference: str | None = None
    color_palette: tuple[str, ...] = ()
    color_strength: float = 1.0
    upscale: int = 1
    upscaler: str | None = None
    color_statistics: ReferenceStatistics | None = None

    def __post_init__(self):
        if self.denoise is not None and not (isinstance(self.denoise, str) and self.denoise == "auto"):
            _check_fraction("denoise", self.denoise, "None, 'auto' or a strength in 0..1")
        if self.color is not None and not (isinstance(self.color, str) and self.color in COLOR_MODES):
            raise ValueError(f"color must be None or one of {', '.join(COLOR_MODES)}, got {shown(self.color)}")
        _check_fraction("color_strength", self.color_strength, "in 0..1")
        self._check_palette()
        self._check_paths()
        self._check_upscale()

    def _check_palette(self) -> None:
        palette = self.color_palette
        if isinstance(palette, str) or not isinstance(palette, (tuple, list)):
            raise ValueError(f"color_palette must be a sequence of '#RRGGBB' strings, got {shown(palette)}")
        if len(palette) > MAX_PALETTE_COLOURS:
            raise ValueError(f"color_palette has {len(palette)} colours; the limit is {MAX_PALETTE_COLOURS}: "
                             f"keep the {MAX_PALETTE_COLOURS} that matter most")
        object.__setattr__(self, "color_palette", tuple(palette))
        for colour in self.color_palette:
            if not isinstance(colour, str) or not HEX_COLOUR.fullmatch(colour):
                raise ValueError(f"color_palette: {shown(colour)} is not a hex colour '#RRGGBB'")
        if (self.color == "palette") != bool(self.color_palette):
            raise ValueError("color_palette is needed exactly when color='palette'")

    def _check_paths(self) -> None:
        if isinstance(self.color_statistics, dict):
            object.__setattr__(self, "color_statistics", ReferenceStatistics.from_dict(self.color_statistics))
        if self.color_statistics is not None and not isinstance(self.color_statistics, ReferenceStatistics):
            raise ValueError(f"color_statistics must be ReferenceStatistics, got {shown(self.color_statistics)}")
        given = self.color_reference is not None or self.color_statistics is not None
        if (self.color == "reference") != given:
            raise ValueError("color_reference (or its stored color_statistics) is needed exactly when "
                             "color='reference'")
        for name in ("color_reference", "upscaler"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, _path_text(name, value))  # str, so metadata stays JSON

    def _check_upscale(self) -> None:
        upscale = self.upscale
        if isinstance(upscale, bool) or not isinstance(upscale, int) or upscale not in UPSCALE_FACTORS:
            raise ValueError(f"upscale must be one of {', '.join(map(str, UPSCALE_FACTORS))}, got {shown(upscale)}")
        if self.upscaler is not None:
            if upscale == 1:
                raise ValueError("upscaler is only used with upscale 2 or 4")
            if Path(self.upscaler).suffix.lower() not in UPSCALER_SUFFIXES:
                raise ValueError(f"upscaler must be a {' or '.join(UPSCALER_SUFFIXES)} file, "
                                 f"got {file_name(self.upscaler)!r}")

    @property
    def enabled(self) -> bool:
        return self.denoise is not None or self.color is not None or self.upscale > 1

    def to_dict(self) -> dict:
        """JSON-safe form, for PNG metadata."""
        d = asdict(self)
        d["color_palette"] = list(self.color_palette)
        d["color_statistics"] = None if self.color_statistics is None else self.color_statistics.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> PostprocessSettings:
        """The settings `to_dict` made (JSON from a PNG, say); ValueError naming the field for anything else."""
        if not isinstance(d, dict):
            raise ValueError(f"postprocess must be a mapping of settings, got {type(d).__name__}")
        names = {f.name for f in fields(cls)}
        unknown = sorted(shown(key) for key in d if key not in names)
        if unknown:
            raise ValueError(f"unknown post-processing settings: {', '.join(unknown)}; "
                             f"known: {', '.join(sorted(names))}")
        return cls(**d)  # __post_init__ validates, and turns a JSON list palette and statistics into their types


def _is_number(x) -> bool:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return False
    try:
        return math.isfinite(x)
    except OverflowError:  # an int too large for a float
        return False


def _check_fraction(name: str, value, allowed: str) -> None:
    if not _is_number(value):
        raise ValueError(f"{name} must be {allowed}, got {shown(value)}")
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be {allowed}, got {shown(value)} (nearest: {min(max(value, 0), 1)})")


def _path_text(name: str, value) -> str:
    """`value` as a path string that a file system and a PNG's UTF-8 text both take."""
    text = os.fspath(value) if isinstance(value, os.PathLike) else value
    if not isinstance(text, str):
        raise ValueError(f"{name} must be a file path, got {shown(value)}")
    if not text:
        raise ValueError(f"{name} is an empty path; give the file's path")
    if len(text) > MAX_PATH_CHARS:
        raise ValueError(f"{name} is a path of {len(text)} characters; the limit is {MAX_PATH_CHARS}")
    for position, char in enumerate(text):
        if char == "\0" or unicodedata.category(char) == "Cs":
            raise ValueError(f"{name} contains U+{ord(char):04X} at position {position}, which no file name "
                             "can hold here; rename the file")
    return text
