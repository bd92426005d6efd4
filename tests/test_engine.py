"""The pipeline object's own behaviour: prompt cache, cancellation, broken output, limits, metadata."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from pipeline.metadata import (MAX_SETTINGS_BYTES, SETTINGS_KEY, image_settings, read_settings, request_from_settings,
                               save_png)
from pipeline.postprocess import MAX_PALETTE_COLOURS, MAX_PATH_CHARS, PostprocessSettings
from pipeline.request import (CANCEL, MAX_PROMPT_CHARS, MAX_SEED, GenerationCancelled, GenerationFailed,
                              GenerationRequest)
from pipeline.studio import Studio


def pixels(result, index: int = 0) -> np.ndarray:
    return np.asarray(result.images[index])


def count_encoder_runs(studio: Studio) -> list:
    runs = []
    studio.pipe.text_encoder.register_forward_hook(lambda module, args, output: runs.append(1))
    return runs


def test_prompt_cache_skips_the_llm_and_keeps_pixels(tiny_folder):
    studio = Studio.load(str(tiny_folder("sana")), device="cpu")
    runs = count_encoder_runs(studio)
    base = GenerationRequest(prompt="a green square", negative_prompt="blurry", seed=1, steps=2, width=32, height=32)
    studio.generate(base)
    assert len(runs) == 2  # the prompt, then the negative prompt
    variants = [base.replace(seed=2), base.replace(steps=3), base.replace(guidance=7.0), base.replace(width=64)]
    cached = [studio.generate(variant) for variant in variants]
    assert len(runs) == 2

    studio.clear_cache()
    uncached = studio.generate(variants[0])
    assert len(runs) == 4
    assert np.array_equal(pixels(cached[0]), pixels(uncached))


def test_prompt_cache_is_bounded(tiny_folder):
    studio = Studio.load(str(tiny_folder("sana")), device="cpu", cache_size=2)
    runs = count_encoder_runs(studio)
    def generate(prompt):
        studio.generate(GenerationRequest(prompt=prompt, steps=1, width=32, height=32))

    for prompt in ("one", "two", "three"):
        generate(prompt)
    assert len(runs) == 6  # prompt + negative prompt each time
    generate("three")
    assert len(runs) == 6
    generate("one")  # evicted by "three"
    assert len(runs) == 8


def test_cancel_between_steps_gives_no_image(sana):
    seen = []

    def stop_after_first(step, total):
        seen.append(step)
        return CANCEL if step == 1 else None

    request = GenerationRequest(prompt="a cat", steps=4, width=32, height=32)
    with pytest.raises(GenerationCancelled, match="cancelled after step 1 of 4"):
        sana.generate(request, on_step=stop_after_first)
    assert seen == [1]
    assert sana.generate(request).images[0].size == (32, 32)  # the studio still works


@pytest.fixture
def broken_decoder(tiny_folder):
    """A fresh studio whose decoder's last layer can be broken without touching the shared one."""
    return Studio.load(str(tiny_folder("sana")), device="cpu")


def test_nan_output_is_an_error(broken_decoder):
    with torch.no_grad():
        broken_decoder.pipe.vae.decoder.conv_out.bias.fill_(float("nan"))
    with pytest.raises(GenerationFailed, match="NaN"):
        broken_decoder.generate(GenerationRequest(prompt="a cat", steps=1, width=32, height=32))


def test_black_output_is_an_error(broken_decoder):
    conv = broken_decoder.pipe.vae.decoder.conv_out
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.fill_(-10.0)  # every pixel clamps to 0
    with pytest.raises(GenerationFailed, match="all-black"):
        broken_decoder.generate(GenerationRequest(prompt="a cat", steps=1, width=32, height=32))


@pytest.mark.parametrize("changes, message", [
    ({"prompt": ""}, "prompt is empty; write 1 to 2000 characters"),
    ({"prompt": " \n\t "}, "prompt is empty; write 1 to 2000 characters"),
    ({"prompt": "x" * 2001}, "prompt has 2001 characters; the limit is 2000"),
    ({"negative_prompt": "y" * 2001}, "negative_prompt has 2001 characters; the limit is 2000"),
    ({"prompt": "a cat\x00"}, "prompt contains the control character U\\+0000 at position 5"),
    ({"prompt": "a cat\x1b[31m"}, "prompt contains the control character U\\+001B"),
    ({"negative_prompt": "bad\ud800"}, "negative_prompt contains a lone surrogate \\(U\\+D800\\)"),
    ({"guidance": float("nan")}, "guidance must be a finite number, got nan"),
    ({"guidance": float("inf")}, "guidance must be a finite number, got inf"),
    ({"seed": -1}, "seed must be from 0 to 4294967295, got -1"),
    ({"seed": 2**32}, "seed must be from 0 to 4294967295, got 4294967296"),
    ({"seed": 1.5}, "seed must be a whole number from 0 to 4294967295"),
    ({"num_images": 9}, "num_images must be from 1 to 8, got 9"),
    ({"num_images": 0}, "num_images must be from 1 to 8, got 0"),
    ({"steps": True}, "steps must be a whole number from 1 to 1000"),
    ({"seed": 2**32 - 1, "num_images": 2}, "seed 4294967295 with 2 images would use seeds up to 4294967296; "
                                            "the last seed must be at most 4294967295"),
])
def test_request_rules(changes, message):
    with pytest.raises(ValueError, match=message):
        GenerationRequest(**{"prompt": "a cat", **changes})


def test_request_allows_the_edges():
    assert GenerationRequest(prompt="a\tcat\non a mat", seed=2**32 - 1).seed == 4294967295
    assert GenerationRequest(prompt="a cat", seed=2**32 - 8, num_images=8).num_images == 8


@pytest.mark.parametrize("changes, message", [
    ({"steps": 0}, "steps must be from 1 to 1000, got 0"),
    ({"steps": 101}, "steps must be from 1 to 100 for this model, got 101"),
    ({"guidance": 0.5}, "guidance must be from 1 to 20 for this model, got 0.5"),
    ({"guidance": 25}, "guidance must be from 1 to 20 for this model, got 25"),
    ({"width": 48}, "width must be a multiple of 32 for this model, got 48 \\(nearest: 64\\)"),
    ({"height": 100}, "height must be a multiple of 32 for this model, got 100 \\(nearest: 96\\)"),
    ({"width": 4096, "height": 2048}, "width x height is 4096x2048 = 8388608 pixels; the limit for this model "
                                      "is 4194304 pixels"),
])
def test_model_limits(sana, changes, message):
    with pytest.raises(ValueError, match=message):
        sana.resolve(GenerationRequest(**{"prompt": "a cat", **changes}))


def test_defaults_come_from_the_model(sana):
    resolved = sana.resolve(GenerationRequest(prompt="a cat"))
    limits = sana.limits
    assert (resolved.steps, resolved.guidance, resolved.width, resolved.height) == (
        limits.steps.default, limits.guidance.default, limits.default_width, limits.default_height)


def test_png_metadata_round_trip(sana, tmp_path):
    request = GenerationRequest(prompt="a red circle, blue background", negative_prompt="noise", seed=12,
                                steps=2, guidance=3.5, width=64, height=32, num_images=2)
    result = sana.generate(request)
    path = save_png(result.images[1], result.settings[1], tmp_path / "image.png")

    settings = read_settings(path)
    assert settings == json.loads(json.dumps(result.settings[1]))
    assert (settings["seed"], settings["model_revision"]) == (13, sana.source.revision)
    assert set(settings["versions"]) >= {"torch", "diffusers", "transformers"}
    with Image.open(path) as image:
        parameters = image.text["parameters"]
    assert parameters.splitlines()[:2] == ["a red circle, blue background", "Negative prompt: noise"]
    assert "Steps: 2, Sampler: FlowMatchEulerDiscreteScheduler, CFG scale: 3.5, Seed: 13, Size: 64x32" in parameters

    again, index = request_from_settings(settings)
    assert (again, index) == (sana.resolve(request), 1)
    assert np.array_equal(pixels(sana.generate(again), index), np.asarray(Image.open(path)))


def test_read_settings_refuses_other_files(tmp_path):
    plain = tmp_path / "plain.png"
    Image.new("RGB", (8, 8)).save(plain)
    with pytest.raises(ValueError, match="holds no studio settings"):
        read_settings(plain)
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(ValueError, match="cannot read image"):
        read_settings(text)


@pytest.mark.parametrize("field", ["seed", "steps", "width", "height", "num_images", "guidance"])
@pytest.mark.parametrize("value", ["7", None, [], {}, [7], 10**5000, b"7"],
                         ids=["text", "None", "list", "dict", "nested", "huge", "bytes"])
def test_a_number_field_given_anything_else_is_one_sentence(field, value):
    if value is None and field in ("steps", "guidance", "width", "height"):
        return  # None means "the model's default" there
    with pytest.raises(ValueError) as error:
        GenerationRequest(**{"prompt": "a cat", field: value})
    assert str(error.value).startswith(f"{field} must be ")
    assert len(str(error.value)) < 150


@pytest.mark.parametrize("changes, message", [
    ({"prompt": None}, "prompt must be text, got NoneType"),
    ({"prompt": ["a cat"]}, "prompt must be text, got list"),
    ({"negative_prompt": None}, "negative_prompt must be text, got NoneType"),
    pytest.param({"guidance": 10**400}, "guidance must be a finite number, got " + "1" + "0" * 36 + "...",
                 id="huge guidance"),
    ({"guidance": "4.5"}, "guidance must be a number, got '4.5'"),
    ({"postprocess": {"upscale": 2}}, "postprocess must be a PostprocessSettings, got dict"),
    ({"steps": 0}, "steps must be from 1 to 1000, got 0 (nearest: 1)"),
])
def test_request_sentences(changes, message):
    with pytest.raises(ValueError) as error:
        GenerationRequest(**{"prompt": "a cat", **changes})
    assert str(error.value) == message


def stored(**changes) -> dict:
    """A record as `image_settings` writes it, with `changes`."""
    request = GenerationRequest(prompt="a cat", seed=3, steps=2, guidance=4.5, width=32, height=32)
    settings = image_settings(request, 0, model="embedded", revision="r", pipeline="SanaPipeline", scheduler="S",
                              device="cpu", dtype="float32")
    return json.loads(json.dumps({**settings, **changes}))


def png_with_settings(path, text: str):
    info = PngInfo()
    info.add_text(SETTINGS_KEY, text)
    Image.new("RGB", (8, 8)).save(path, pnginfo=info)
    return path


@pytest.mark.parametrize("text, message", [
    pytest.param("[" * 1000 + "]" * 1000, "'deep.png': settings ", id="nested"),
    pytest.param("[" * 100_000 + "]" * 100_000, "'deep.png': settings chunk is nested too deeply",
                 id="nested deeper"),
    pytest.param('{"format": 1, "seed": ' + "9" * 5000 + "}", "'deep.png': settings chunk is not valid JSON",
                 id="long number"),
    ("{not json", "'deep.png': settings chunk is not valid JSON"),
    ('{"format": true}', "'deep.png': settings are not in format version 1"),
    (json.dumps(stored(seed="3")), "stored seed must be a whole number, got '3'"),
    (json.dumps(stored(model=3)), "stored model must be text, got 3"),
    (json.dumps(stored(batch="first")), "stored batch must be an object, got 'first'"),
    (json.dumps(stored(batch={"seed": 3, "index": True, "size": 1})),
     "stored batch.index must be a whole number, got True"),
    (json.dumps(stored(postprocess=[1])), "stored postprocess must be an object, got [1]"),
    (json.dumps({k: v for k, v in stored().items() if k != "prompt"}),
     "stored settings are incomplete: prompt missing"),
])
def test_read_settings_gives_every_malformed_record_a_sentence(tmp_path, text, message):
    path = png_with_settings(tmp_path / "deep.png", text)
    with pytest.raises(ValueError) as error:
        read_settings(path)
    assert str(error.value).startswith(message)


@pytest.mark.parametrize("settings, message", [
    ([], "stored settings must be an object of fields, got list"),
    ("settings", "stored settings must be an object of fields, got str"),
    (stored(steps=None), "stored steps must be a whole number, got None"),
    (stored(batch={"seed": 3, "index": 0}), "stored batch.size must be a whole number, got None"),
    (stored(batch={"seed": 3, "index": 2, "size": 2}), "stored batch.index 2 is outside the batch of 2"),
    (stored(batch={"seed": 3, "index": 0, "size": 99}), "num_images must be from 1 to 8, got 99 (nearest: 8)"),
    (stored(postprocess={"upscale": None}), "upscale must be one of 1, 2, 4, got None"),
    (stored(postprocess={"color": "palette", "color_palette": [[1]]}), "color_palette: [1] is not a hex colour"),
    (stored(postprocess={"sharpen": 1}), "unknown post-processing settings: 'sharpen'"),
])
def test_request_from_settings_gives_any_junk_a_sentence(settings, message):
    with pytest.raises(ValueError) as error:
        request_from_settings(settings)
    assert str(error.value).startswith(message)


def test_read_settings_names_the_file_by_its_base_name(tmp_path):
    folder = tmp_path / "gradio" / "5f3a9c"
    folder.mkdir(parents=True)
    (folder / "notes.txt").write_text("hello")
    Image.new("RGB", (8, 8)).save(folder / "plain.png")
    png_with_settings(folder / "broken.png", "{")
    for name in ("notes.txt", "plain.png", "broken.png", "gone.png"):
        with pytest.raises(ValueError) as error:
            read_settings(folder / name)
        assert f"'{name}'" in str(error.value) and "5f3a9c" not in str(error.value), str(error.value)


def test_the_largest_settings_this_studio_writes_round_trip(tmp_path):
    """The longest prompts of the widest characters, a palette at its cap, and paths at their cap of
    the characters JSON spells longest all fit the settings chunk, and come back unchanged."""
    long_path = "/" + "\x01" * (MAX_PATH_CHARS - 5) + ".png"
    postprocess = PostprocessSettings(
        color="palette", color_palette=tuple(f"#0000{index:02X}" for index in range(MAX_PALETTE_COLOURS)),
        upscale=4, upscaler=long_path[:-4] + ".pth")
    request = GenerationRequest(prompt="\U0001F600" * MAX_PROMPT_CHARS, negative_prompt='"' * MAX_PROMPT_CHARS,
                                seed=MAX_SEED - 7, steps=1000, guidance=4.5, width=16384, height=16384,
                                num_images=8, postprocess=postprocess)
    settings = image_settings(request, 7, model=long_path, revision="local-0123456789ab", pipeline="SanaPipeline",
                              scheduler="FlowMatchEulerDiscreteScheduler", device="cuda:0", dtype="bfloat16")
    assert len(json.dumps(settings, ensure_ascii=False).encode()) <= MAX_SETTINGS_BYTES
    path = save_png(Image.new("RGB", (8, 8)), settings, tmp_path / "largest.png")
    assert read_settings(path) == json.loads(json.dumps(settings))
    assert request_from_settings(read_settings(path)) == (request, 7)
    reference = PostprocessSettings(color="reference", color_reference=long_path, upscale=4,
                                    upscaler=long_path[:-4] + ".pth")
    settings = image_settings(request.replace(postprocess=reference), 7, model=long_path, revision="r",
                              pipeline="SanaPipeline", scheduler="S", device="cuda:0", dtype="bfloat16")
    assert len(json.dumps(settings, ensure_ascii=False).encode()) <= MAX_SETTINGS_BYTES
    assert read_settings(save_png(Image.new("RGB", (8, 8)), settings, tmp_path / "paths.png")) == settings
