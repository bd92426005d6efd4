"""`PostprocessSettings`: which post-processing stages run, and how.

This is what goes into a PNG's metadata, so it is checked for form only and reads no file: a
picture's stored settings always parse, even when the colour reference or upscaler they name has
gone. The files are read by `PostprocessChain.prepare`, which names the missing one.
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path

COLOR_MODES = ("auto", "reference", "palette")
UPSCALE_FACTORS = (1, 2, 4)
UPSCALER_SUFFIXES = (".safetensors", ".pth")
HEX_COLOUR = re.compile(r"#[0-9A-Fa-f]{6}")


@dataclass(frozen=True)
class PostprocessSettings:
    """Which post-processing stages run, and how. The defaults turn everything off.

    denoise: None (off), "auto" (noise level estimated from the image) or a strength 0..1.
    color: None, "auto", "reference" (needs color_reference) or "palette" (needs color_palette).
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

    def __post_init__(self):
        if self.denoise is not None and self.denoise != "auto":
            if not _is_number(self.denoise) or not 0.0 <= self.denoise <= 1.0:
                raise ValueError(f"denoise must be None, 'auto' or a strength in 0..1, got {self.denoise!r}")
        if self.color is not None and self.color not in COLOR_MODES:
            raise ValueError(f"color must be None or one of {', '.join(COLOR_MODES)}, got {self.color!r}")
        if not _is_number(self.color_strength) or not 0.0 <= self.color_strength <= 1.0:
            raise ValueError(f"color_strength must be in 0..1, got {self.color_strength!r}")
        self._check_palette()
        self._check_paths()

        if isinstance(self.upscale, bool) or self.upscale not in UPSCALE_FACTORS:
            raise ValueError(f"upscale must be one of {', '.join(map(str, UPSCALE_FACTORS))}, got {self.upscale!r}")
        if self.upscaler is not None:
            if self.upscale == 1:
                raise ValueError("upscaler is only used with upscale 2 or 4")
            if Path(self.upscaler).suffix.lower() not in UPSCALER_SUFFIXES:
                raise ValueError(f"upscaler must be a {' or '.join(UPSCALER_SUFFIXES)} file, got {self.upscaler}")

    def _check_palette(self) -> None:
        if isinstance(self.color_palette, str) or not isinstance(self.color_palette, (tuple, list)):
            raise ValueError(f"color_palette must be a sequence of '#RRGGBB' strings, got {self.color_palette!r}")
        object.__setattr__(self, "color_palette", tuple(self.color_palette))
        for colour in self.color_palette:
            if not isinstance(colour, str) or not HEX_COLOUR.fullmatch(colour):
                raise ValueError(f"color_palette: {colour!r} is not a hex colour '#RRGGBB'")
        if (self.color == "palette") != bool(self.color_palette):
            raise ValueError("color_palette is needed exactly when color='palette'")

    def _check_paths(self) -> None:
        if (self.color == "reference") != (self.color_reference is not None):
            raise ValueError("color_reference is needed exactly when color='reference'")
        for name in ("color_reference", "upscaler"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, (str, os.PathLike)):
                raise ValueError(f"{name} must be a file path, got {value!r}")
            if value is not None:
                object.__setattr__(self, name, os.fspath(value))  # str, so metadata stays JSON

    @property
    def enabled(self) -> bool:
        return self.denoise is not None or self.color is not None or self.upscale > 1

    def to_dict(self) -> dict:
        """JSON-safe form, for PNG metadata."""
        d = asdict(self)
        d["color_palette"] = list(self.color_palette)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> PostprocessSettings:
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown post-processing settings: {', '.join(sorted(unknown))}")
        return cls(**d)  # __post_init__ validates, and turns a JSON list palette into a tuple


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
