"""Style presets: named prompt templates with a `{prompt}` placeholder.

The shipped list is `assets/styles.json`, an object of style key -> {"title", "prompt",
"negative_prompt"}; "prompt" holds `{prompt}` exactly once, where the user's prompt goes:

    apply("cinematic", "a red car", "")  ->  ("cinematic still of a red car, dramatic ...", "flat lighting, ...")

A host may ship another file of the same form (`load(path)`). Every refusal is one sentence.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from pipeline.files import read_small_text
from pipeline.postprocess import file_name, shown

STYLES_FILE = Path(__file__).resolve().parents[1] / "assets" / "styles.json"
PLACEHOLDER = "{prompt}"
MAX_STYLES_BYTES = 256 * 1024
_FIELDS = ("title", "prompt", "negative_prompt")


@dataclass(frozen=True)
class Style:
    key: str
    title: str
    prompt: str  # holds PLACEHOLDER once
    negative_prompt: str = ""

    def __post_init__(self) -> None:
        for name in _FIELDS:
            if not isinstance(getattr(self, name), str):
                raise ValueError(f"style {self.key!r}: {name} must be text, got {shown(getattr(self, name))}")
        if self.prompt.count(PLACEHOLDER) != 1:
            raise ValueError(f"style {self.key!r}: prompt must hold {PLACEHOLDER} exactly once, got "
                             f"{shown(self.prompt, 60)}")

    def format(self, prompt: str) -> str:
        return self.prompt.replace(PLACEHOLDER, prompt.strip())


def load(path: str | os.PathLike = STYLES_FILE) -> dict[str, Style]:
    """The styles of a file, by key, in file order; ValueError naming the file by its base name."""
    name = file_name(path)
    text = read_small_text(path, "styles file", MAX_STYLES_BYTES, over="is over {limit} bytes")
    try:
        record = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"styles file {name!r} is not valid JSON ({error.msg} at line {error.lineno})") from None
    if not isinstance(record, dict) or not record:
        raise ValueError(f"styles file {name!r} must be a JSON object of style key -> {{title, prompt, "
                         "negative_prompt}}")
    styles = {}
    for key, fields in record.items():
        if not isinstance(fields, dict) or not {"title", "prompt"} <= set(fields) <= set(_FIELDS):
            raise ValueError(f"styles file {name!r}: style {key!r} must be an object of title, prompt and "
                             f"optionally negative_prompt, got {shown(fields)}")
        try:
            styles[key] = Style(key, **fields)
        except ValueError as error:
            raise ValueError(f"styles file {name!r}: {error}") from None
    return styles


@cache
def shipped() -> dict[str, Style]:
    """The styles of `assets/styles.json`, read once."""
    return load(STYLES_FILE)


def get(key: str, styles: dict[str, Style] | None = None) -> Style:
    """The style `key` of `styles` (default: the shipped ones); ValueError naming the choices."""
    styles = shipped() if styles is None else styles
    if not isinstance(key, str) or key.strip() not in styles:
        raise ValueError(f"style {shown(key)} is not one of {', '.join(styles)}")
    return styles[key.strip()]


def apply(key: str | None, prompt: str, negative_prompt: str = "",
          styles: dict[str, Style] | None = None) -> tuple[str, str]:
    """(prompt, negative prompt) with the style applied: the prompt put into its template and its
    negative prompt added after the user's. No style (None or "") leaves both as they are."""
    if key is None or not key.strip():
        return prompt, negative_prompt
    style = get(key, styles)
    negative = ", ".join(part.strip() for part in (negative_prompt, style.negative_prompt) if part.strip())
    return style.format(prompt), negative
