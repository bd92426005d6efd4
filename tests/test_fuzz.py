"""Anything a visitor can send is refused with one sentence: a `ValueError` with a message, never
another exception type. Property-based, with hypothesis; bounded and with no example database."""
from __future__ import annotations

import io
import json
import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from pipeline.metadata import SETTINGS_KEY, image_settings, read_settings, request_from_settings
from pipeline.postprocess import MAX_REFERENCE_PIXELS, PostprocessChain, PostprocessSettings, load_reference
from pipeline.request import GenerationRequest

FUZZ = settings(max_examples=100, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12)
# What a Python caller can pass besides JSON: bytes, tuples, numbers beyond any float, objects.
junk = json_values | st.binary(max_size=8) | st.tuples(json_values) | st.just(10**5000) | st.just(-10**400) \
    | st.just(object()) | st.just(Path("x.png")) | st.sampled_from([math.nan, math.inf, "auto", "palette", 2, 4])

REQUEST_FIELDS = ["prompt", "negative_prompt", "seed", "steps", "guidance", "width", "height", "num_images",
                  "postprocess"]
POSTPROCESS_FIELDS = ["denoise", "color", "color_reference", "color_palette", "color_strength", "upscale", "upscaler"]


def refused_with_a_sentence(call) -> object:
    """`call()`'s value, or None when it raised a ValueError with a message; any other exception fails."""
    try:
        return call()
    except ValueError as error:
        message = str(error)
        assert message.strip() and "\n" not in message and len(message) < 600, message
        return None


@FUZZ
@given(st.dictionaries(st.sampled_from(REQUEST_FIELDS), junk, max_size=4))
def test_any_request_fields(fields):
    fields = {"prompt": "a red circle", **fields}
    try:
        GenerationRequest(**fields)
    except ValueError as error:  # the sentence names the field at fault
        assert any(str(error).startswith(name) or f" {name}" in str(error) for name in fields), str(error)


@FUZZ
@given(st.dictionaries(st.sampled_from(POSTPROCESS_FIELDS) | st.text(max_size=8), junk, max_size=5) | junk)
def test_any_postprocess_settings(d):
    settings = refused_with_a_sentence(lambda: PostprocessSettings.from_dict(d))
    if settings is not None:
        assert PostprocessSettings.from_dict(json.loads(json.dumps(settings.to_dict()))) == settings


def a_record() -> dict:
    request = GenerationRequest(prompt="a cat", negative_prompt="blur", seed=3, steps=2, guidance=4.5, width=32,
                                height=32, num_images=2)
    return json.loads(json.dumps(image_settings(request, 1, model="embedded", revision="r", pipeline="SanaPipeline",
                                                scheduler="S", device="cpu", dtype="float32")))


RECORD_FIELDS = list(a_record())


@FUZZ
@given(st.dictionaries(st.sampled_from(RECORD_FIELDS + ["batch.seed", "batch.index", "batch.size"]
                                       + [f"postprocess.{name}" for name in POSTPROCESS_FIELDS]), junk, max_size=4),
       st.lists(st.sampled_from(RECORD_FIELDS), max_size=3), junk)
def test_any_stored_settings(changes, removed, whole):
    record = a_record()
    for name, value in changes.items():
        if "." in name:
            part, key = name.split(".")
            if isinstance(record.get(part), dict):
                record[part] = {**record[part], key: value}
        else:
            record[name] = value
    for name in removed:
        record.pop(name, None)
    refused_with_a_sentence(lambda: request_from_settings(record))
    refused_with_a_sentence(lambda: request_from_settings(whole))


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("uploads")


def png_with_text(path: Path, text: str) -> Path:
    info = PngInfo()
    info.add_text(SETTINGS_KEY, text)
    Image.new("RGB", (4, 4)).save(path, pnginfo=info)
    return path


valid_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=200)


@FUZZ
@given(valid_text | json_values.map(json.dumps) | st.integers(0, 5000).map(lambda depth: "[" * depth + "]" * depth)
       | st.builds(lambda changes: json.dumps({**a_record(), **changes}),
                   st.dictionaries(st.sampled_from(RECORD_FIELDS), json_values, max_size=3)))
def test_any_text_in_a_png_settings_chunk(folder, text):
    path = png_with_text(folder / "upload.png", text)
    settings = refused_with_a_sentence(lambda: read_settings(path))
    if settings is not None:
        refused_with_a_sentence(lambda: request_from_settings(settings))


def a_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (24, 16), (30, 120, 200)).save(buffer, format="PNG")
    return buffer.getvalue()


PNG = a_png()


@FUZZ
@given(st.integers(0, len(PNG)), st.lists(st.tuples(st.integers(0, len(PNG) - 1), st.integers(0, 255)), max_size=3),
       st.binary(max_size=64))
def test_any_bytes_as_an_uploaded_picture(folder, keep, flips, tail):
    """A PNG cut short, with bytes changed, or followed by junk: read as a colour reference, as a
    picture whose settings to reuse or as a learned upscaler, it is what was asked for or a sentence."""
    data = bytearray(PNG[:keep])
    for position, value in flips:
        if position < len(data):
            data[position] = value
    picture, weights = folder / "upload.png", folder / "upload.pth"
    for path in (picture, weights):
        path.write_bytes(bytes(data) + tail)
    reference = refused_with_a_sentence(lambda: load_reference(str(picture)))
    if reference is not None:
        assert reference.mode == "RGB" and reference.width * reference.height <= MAX_REFERENCE_PIXELS
    refused_with_a_sentence(lambda: read_settings(picture))
    refused_with_a_sentence(lambda: PostprocessChain().prepare(PostprocessSettings(upscale=2, upscaler=str(weights))))
