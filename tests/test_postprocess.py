"""Post-processing: settings validation, bad files, the stages, the chain, the command."""
from __future__ import annotations

import hashlib
import json
import struct
import sys
import zlib

import numpy as np
import pytest
from PIL import Image

import pipeline.postprocess.chain as chain_module
from pipeline import postprocess as pp
from pipeline.__main__ import main as pipeline_main
from pipeline.postprocess import PostprocessChain, PostprocessSettings, StageInputs


def picture(width: int = 48, height: int = 40, seed: int = 0) -> Image.Image:
    """Smooth colour gradients plus texture: every stage has something to change."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width] / max(width, height)
    x = np.stack([xx, yy, 1 - xx * yy], axis=-1) * 200 + rng.normal(0, 12, (height, width, 3)) + 20
    return Image.fromarray(np.clip(x, 0, 255).astype(np.uint8))


def png_header_only(path, width: int, height: int) -> None:
    """A valid PNG that claims width x height pixels but holds almost no data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))


# ---------------------------------------------------------------------------------------------
# Settings

def test_default_settings_are_off_and_round_trip():
    settings = PostprocessSettings()
    assert not settings.enabled
    assert PostprocessSettings.from_dict(settings.to_dict()) == settings


def test_settings_round_trip_through_json(tmp_path):
    ref = tmp_path / "ref.png"
    picture().save(ref)
    for settings in (
        PostprocessSettings(denoise="auto", color="reference", color_reference=str(ref), upscale=2),
        PostprocessSettings(denoise=0.3, color="palette", color_palette=("#112233", "#ABCDEF"), color_strength=0.5),
    ):
        assert settings.enabled
        assert PostprocessSettings.from_dict(json.loads(json.dumps(settings.to_dict()))) == settings
    assert PostprocessSettings(color="reference", color_reference=ref).color_reference == str(ref)


@pytest.mark.parametrize("kwargs, field", [
    ({"denoise": 1.5}, "denoise"),
    ({"denoise": -0.1}, "denoise"),
    ({"denoise": "strong"}, "denoise"),
    ({"denoise": True}, "denoise"),
    ({"color": "sepia"}, "color"),
    ({"color": "auto", "color_strength": 1.2}, "color_strength"),
    ({"color": "auto", "color_strength": float("nan")}, "color_strength"),
    ({"color": "palette", "color_palette": ("#12345G",)}, "color_palette"),
    ({"color": "palette", "color_palette": ("123456",)}, "color_palette"),
    ({"color": "palette", "color_palette": "#123456"}, "color_palette"),
    ({"color": "palette"}, "color_palette"),
    ({"color_palette": ("#123456",)}, "color_palette"),
    ({"color": "reference"}, "color_reference"),
    ({"color": "reference", "color_reference": 3}, "color_reference"),
    ({"upscale": 3}, "upscale"),
    ({"upscale": True}, "upscale"),
    ({"upscale": 2, "upscaler": "model.onnx"}, "upscaler"),
    ({"upscaler": "model.safetensors"}, "upscaler"),
    ({"upscale": 2.0}, "upscale"),
    ({"upscale": None}, "upscale"),
    ({"denoise": 10**400}, "denoise"),
    ({"color": ["auto"]}, "color"),
    ({"color": "auto", "color_strength": "1"}, "color_strength"),
    ({"color": "palette", "color_palette": (["#123456"],)}, "color_palette"),
    ({"color": "reference", "color_reference": ""}, "color_reference"),
    ({"color": "reference", "color_reference": "brand\0.png"}, "color_reference"),
    ({"color": "reference", "color_reference": "brand\ud800.png"}, "color_reference"),
    ({"upscale": 2, "upscaler": "x" * pp.MAX_PATH_CHARS + ".pth"}, "upscaler"),
])
def test_bad_settings_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=f"^{field}"):
        PostprocessSettings(**kwargs)


def test_values_out_of_range_are_told_the_nearest_valid_one():
    with pytest.raises(ValueError, match=r"^color_strength must be in 0..1, got 1.5 \(nearest: 1\)$"):
        PostprocessSettings(color="auto", color_strength=1.5)
    with pytest.raises(ValueError,
                       match=r"^denoise must be None, 'auto' or a strength in 0..1, got -0.1 \(nearest: 0\)$"):
        PostprocessSettings(denoise=-0.1)


def test_a_palette_is_at_most_sixteen_colours():
    palette = tuple(f"#0000{index:02X}" for index in range(pp.MAX_PALETTE_COLOURS + 1))
    assert pp.MAX_PALETTE_COLOURS == 16
    assert PostprocessSettings(color="palette", color_palette=palette[:16]).color_palette == palette[:16]
    with pytest.raises(ValueError, match="^color_palette has 17 colours; the limit is 16: keep the 16 that matter"):
        PostprocessSettings(color="palette", color_palette=palette)
    with pytest.raises(ValueError, match="^color_palette has 1000000 colours; the limit is 16"):
        PostprocessSettings.from_dict({"color": "palette", "color_palette": ["#123456"] * 1_000_000})


@pytest.mark.parametrize("d, message", [
    (None, "postprocess must be a mapping of settings, got NoneType"),
    ([["color", "auto"]], "postprocess must be a mapping of settings, got list"),
    ({"upscale": None}, "upscale must be one of 1, 2, 4, got None"),
    ({"upscale": "2"}, "upscale must be one of 1, 2, 4, got '2'"),
    ({"denoise": [0.5]}, "denoise must be None, 'auto' or a strength in 0..1, got [0.5]"),
    ({"color": "palette", "color_palette": [["#123456"]]}, "color_palette: ['#123456'] is not a hex colour"),
    ({"color": {"mode": "auto"}}, "color must be None or one of auto, reference, palette, got {'mode': 'auto'}"),
])
def test_from_dict_gives_every_wrong_type_a_sentence(d, message):
    with pytest.raises(ValueError) as error:
        PostprocessSettings.from_dict(d)
    assert str(error.value).startswith(message)


def test_settings_naming_missing_files_still_parse():
    # a PNG's stored settings must parse after the files they name have gone
    for settings in (PostprocessSettings(color="reference", color_reference="no/such/file.png"),
                     PostprocessSettings(upscale=2, upscaler="no/such/model.safetensors")):
        assert PostprocessSettings.from_dict(json.loads(json.dumps(settings.to_dict()))) == settings


@pytest.mark.parametrize("kwargs, message", [
    ({"color": "reference", "color_reference": "no/such/ref.png"}, "color_reference: file not found: 'ref.png'"),
    ({"upscale": 2, "upscaler": "no/such/sr.safetensors"}, "upscaler: file not found: 'sr.safetensors'"),
])
def test_missing_files_are_named_when_the_inputs_are_read(kwargs, message):
    settings = PostprocessSettings(**kwargs)
    with pytest.raises(ValueError, match=message) as error:
        PostprocessChain().prepare(settings)
    assert str(error.value) == message  # the base name only: never the server's folders
    with pytest.raises(ValueError, match=message):
        PostprocessChain()(picture(), settings)


def test_from_dict_refuses_unknown_keys():
    with pytest.raises(ValueError, match="sharpen"):
        PostprocessSettings.from_dict({"sharpen": 1})


def test_learned_upscaling_without_spandrel_is_a_sentence_when_the_request_is_validated(tmp_path, monkeypatch):
    weights = tmp_path / "x2.pth"
    weights.write_bytes(b"weights")
    monkeypatch.setitem(sys.modules, "spandrel", None)  # as on a server without it: importing it fails
    with pytest.raises(ValueError, match="^upscaler: learned upscaling is not available on this server: spandrel "
                                         "cannot be imported"):
        PostprocessChain().prepare(PostprocessSettings(upscale=2, upscaler=str(weights)))


# ---------------------------------------------------------------------------------------------
# Bad files

@pytest.mark.parametrize("side", [10_000, 30_000])  # PIL warns above 89M pixels, fails above 179M
def test_decompression_bomb_is_refused(tmp_path, side):
    path = tmp_path / "bomb.png"
    png_header_only(path, side, side)
    with pytest.raises(ValueError, match="decompression bomb"):
        pp.load_image(path, "IN")


def test_unreadable_reference_is_refused(tmp_path):
    ref = tmp_path / "ref.png"
    ref.write_bytes(b"not a picture at all")
    settings = PostprocessSettings(color="reference", color_reference=str(ref))
    with pytest.raises(ValueError, match="color_reference: cannot read"):
        PostprocessChain()(picture(), settings)


def test_a_huge_colour_reference_is_refused_before_it_is_decoded(tmp_path):
    # A PNG of one colour at 9400x9400 is a file of a few kilobytes that decodes to 265 MB.
    path = tmp_path / "huge.png"
    png_header_only(path, 9400, 9400)
    settings = PostprocessSettings(color="reference", color_reference=str(path))
    with pytest.raises(ValueError) as error:
        PostprocessChain().prepare(settings)
    assert str(error.value) == ("color_reference: 'huge.png' is 9400x9400 = 88360000 pixels; the limit is 50000000 "
                                "pixels, so use a smaller copy of it")
    assert pp.MAX_REFERENCE_DECODE_PIXELS == 50_000_000


def test_the_colour_stage_works_on_a_reference_shrunk_to_the_cap(tmp_path, monkeypatch):
    assert pp.MAX_REFERENCE_PIXELS == 1024 * 1024
    big = picture(2000, 1200, seed=1)  # 2.4 megapixels
    path = tmp_path / "brand.png"
    big.convert("P", palette=Image.Palette.ADAPTIVE).save(path)
    seen = []
    measure = chain_module.reference_statistics
    monkeypatch.setattr(chain_module, "reference_statistics", lambda reference: seen.append(reference) or measure(reference))

    settings = PostprocessSettings(color="reference", color_reference=str(path))
    inputs = PostprocessChain().prepare(settings)
    PostprocessChain()(picture(), settings, inputs)
    PostprocessChain()(picture(), settings)
    for reference in seen:
        assert reference.mode == "RGB" and reference.width * reference.height <= pp.MAX_REFERENCE_PIXELS
        assert abs(reference.width / reference.height - 2000 / 1200) < 0.01
    assert len(seen) == 2
    # what colour transfer uses, the channel means and spreads, barely moves
    full = np.asarray(Image.open(path).convert("RGB"), dtype=float).reshape(-1, 3) / 255
    mean, std = np.array(inputs.color_statistics.mean), np.array(inputs.color_statistics.std)
    assert np.abs(full.mean(axis=0) - mean).max() < 1.0 / 255
    assert np.abs(full.std(axis=0) - std).max() < 0.15 * full.std(axis=0).min()


@pytest.mark.parametrize("size, expected", [((5000, 1), (1000, 1)), ((1, 5000), (1, 1000)), ((40, 25), (40, 25)),
                                            ((400, 250), (40, 25))])
def test_shrink_keeps_the_aspect_within_the_budget(size, expected):
    assert pp.shrink(Image.new("RGB", size), 1000).size == expected


def test_messages_about_files_name_them_by_their_base_name_only(tmp_path):
    folder = tmp_path / "gradio" / "5f3a9c"  # as an upload's server folder
    folder.mkdir(parents=True)
    text, truncated, directory = folder / "notes.png", folder / "cut.png", folder / "folder.png"
    text.write_text("not a picture")
    picture().save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:80])
    directory.mkdir()
    junk = folder / "junk.safetensors"
    junk.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{broken}")
    bomb = folder / "bomb.png"
    png_header_only(bomb, 30_000, 30_000)
    chain = PostprocessChain()
    messages = []
    for path in (text, truncated, directory, bomb, folder / "gone.png"):
        with pytest.raises(ValueError) as error:
            chain.prepare(PostprocessSettings(color="reference", color_reference=str(path)))
        messages.append((path.name, str(error.value)))
    for path in (junk, folder / "gone.pth", folder / "model.onnx"):
        with pytest.raises(ValueError) as error:
            chain.prepare(PostprocessSettings(upscale=2, upscaler=str(path)))
        messages.append((path.name, str(error.value)))
    for name, message in messages:
        assert f"'{name}'" in message and str(tmp_path) not in message and "5f3a9c" not in message, message
    assert messages[0][1] == ("color_reference: cannot read 'notes.png' as an image: not a picture format the "
                              "studio reads")
    assert messages[4][1] == "color_reference: file not found: 'gone.png'"


def test_bomb_sized_picture_in_memory_is_refused(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 48 * 40 - 1)
    with pytest.raises(ValueError, match="decompression bomb"):
        PostprocessChain()(picture(), PostprocessSettings(color="auto"))


def test_oversized_output_is_refused(monkeypatch):
    monkeypatch.setattr(chain_module, "MAX_OUTPUT_PIXELS", 48 * 40 * 4 - 1)
    with pytest.raises(ValueError, match="upscale"):
        PostprocessChain()(picture(), PostprocessSettings(upscale=2))


# ---------------------------------------------------------------------------------------------
# Stages

def test_zero_strength_changes_nothing(tmp_path):
    image = picture()
    ref = picture(seed=1).transpose(Image.Transpose.ROTATE_90)
    original = np.asarray(image)
    assert np.array_equal(np.asarray(pp.denoise(image, 0.0)), original)
    assert np.array_equal(np.asarray(pp.auto_color(image, 0.0)), original)
    assert np.array_equal(np.asarray(pp.match_reference(image, ref, 0.0)), original)
    assert np.array_equal(np.asarray(pp.match_palette(image, ("#FF0000",), 0.0)), original)


def test_denoise_strength_controls_smoothing():
    image = picture(96, 96)
    roughness = [np.abs(np.diff(np.asarray(pp.denoise(image, s), dtype=float), axis=1)).mean() for s in (0.1, 0.5)]
    assert roughness[1] < 0.7 * roughness[0]


def test_auto_denoise_leaves_a_clean_picture_nearly_alone():
    clean = Image.fromarray(np.asarray(picture(96, 96).resize((24, 24), Image.Resampling.BOX).resize((96, 96))))
    diff = np.abs(np.asarray(pp.denoise(clean), dtype=float) - np.asarray(clean, dtype=float))
    assert diff.mean() < 1.0


def test_reference_match_takes_the_reference_means():
    image, ref = picture(seed=0), picture(seed=1)
    ref = Image.fromarray((np.asarray(ref) * np.array([0.6, 0.9, 1.0])).astype(np.uint8))
    out = np.asarray(pp.match_reference(image, ref), dtype=float)
    assert np.abs(out.mean(axis=(0, 1)) - np.asarray(ref, dtype=float).mean(axis=(0, 1))).max() < 1.5


def test_half_strength_lands_between():
    image = picture()
    full = np.asarray(pp.match_palette(image, ("#0000FF",)), dtype=float)
    half = np.asarray(pp.match_palette(image, ("#0000FF",), 0.5), dtype=float)
    assert np.abs(half - (full + np.asarray(image, dtype=float)) / 2).max() <= 1.0


def test_classical_upscale_size_and_consistency():
    image = picture()
    out = pp.upscale_classical(image, 4)
    assert out.size == (48 * 4, 40 * 4)
    # back-projection: area-downscaling the result gives the input back
    back = np.asarray(out.reduce(4), dtype=float)
    assert np.abs(back - np.asarray(image, dtype=float)).mean() < 1.0


# ---------------------------------------------------------------------------------------------
# Chain

def test_chain_runs_the_table_in_order_and_times_each_stage():
    assert [stage.name for stage in chain_module.STAGES] == ["denoise", "color", "upscale"]
    image = picture()
    out, timings = PostprocessChain()(image, PostprocessSettings(upscale=2, color="auto", denoise=0.2))
    assert list(timings) == ["denoise", "color", "upscale"]
    assert all(t >= 0 for t in timings.values())
    by_hand = pp.upscale_classical(pp.auto_color(pp.denoise(image, 0.2), 1.0), 2)
    assert out.size == (96, 80)
    assert np.array_equal(np.asarray(out), np.asarray(by_hand))


def test_prepared_inputs_give_the_same_pixels(tmp_path):
    ref = tmp_path / "ref.png"
    picture(seed=1).save(ref)
    settings = PostprocessSettings(color="reference", color_reference=str(ref), color_strength=0.7)
    chain = PostprocessChain()
    inputs = chain.prepare(settings)
    assert isinstance(inputs, StageInputs) and inputs.upscaler is None
    assert inputs.color_statistics == pp.read_reference_statistics(str(ref))
    prepared, _ = chain(picture(), settings, inputs)
    unprepared, _ = chain(picture(), settings)
    by_hand = pp.match_reference(picture(), picture(seed=1), 0.7)
    assert np.array_equal(np.asarray(prepared), np.asarray(by_hand))
    assert np.array_equal(np.asarray(prepared), np.asarray(unprepared))
    with pytest.raises(ValueError, match="prepare"):
        chain(picture(), settings, StageInputs())


def test_a_reference_is_measured_once_and_its_statistics_redo_the_stage(tmp_path):
    ref = tmp_path / "ref.png"
    picture(seed=1).save(ref)
    mean, std = pp.reference_statistics(picture(seed=1))
    assert mean.dtype == std.dtype == np.float32 and mean.shape == std.shape == (3,)
    by_hand = pp.match_reference(picture(), picture(seed=1), 0.7)
    assert np.array_equal(np.asarray(pp.apply_statistics(picture(), mean, std, 0.7)), np.asarray(by_hand))

    resolved = PostprocessChain.resolve(PostprocessSettings(color="reference", color_reference=str(ref),
                                                            color_strength=0.7))
    statistics = resolved.color_statistics
    assert (statistics.name, statistics.sha256) == ("ref.png", hashlib.sha256(ref.read_bytes()).hexdigest())
    assert statistics.mean == tuple(map(float, mean)) and statistics.std == tuple(map(float, std))
    stored = PostprocessSettings.from_dict(json.loads(json.dumps(resolved.to_dict())))
    assert stored == resolved
    ref.unlink()
    assert PostprocessChain.resolve(stored) == stored
    out, _ = PostprocessChain()(picture(), stored)
    assert np.array_equal(np.asarray(out), np.asarray(by_hand))
    alone = PostprocessSettings(color="reference", color_statistics=statistics, color_strength=0.7)
    assert np.array_equal(np.asarray(PostprocessChain()(picture(), alone)[0]), np.asarray(by_hand))

    picture(seed=2).save(ref)  # another picture under the same name
    with pytest.raises(ValueError) as error:
        PostprocessChain().prepare(stored)
    assert str(error.value) == (
        f"color_reference 'ref.png' is not the colour reference these settings were made with: its SHA-256 begins "
        f"{hashlib.sha256(ref.read_bytes()).hexdigest()[:12]}, the settings name {statistics.sha256[:12]}... "
        "('ref.png'); give that file, or none to use its stored statistics")


@pytest.mark.parametrize("statistics, message", [
    ({"mean": [0.5, 0.5], "std": [0.1] * 3, "sha256": "0" * 64},
     "color_statistics.mean must be 3 numbers from 0 to 1 (R, G, B), got [0.5, 0.5]"),
    ({"mean": [0.5] * 3, "std": [0.1, 2, 0.1], "sha256": "0" * 64},
     "color_statistics.std must be 3 numbers from 0 to 1 (R, G, B), got [0.1, 2, 0.1]"),
    ({"mean": [0.5] * 3, "std": [0.1] * 3, "sha256": "abc"},
     "color_statistics.sha256 must be 64 hexadecimal digits, got 'abc'"),
    ({"mean": [0.5] * 3, "std": [0.1] * 3}, "color_statistics must be an object of mean, std, sha256 and name"),
])
def test_stored_statistics_of_another_form_are_one_sentence(statistics, message):
    with pytest.raises(ValueError) as error:
        PostprocessSettings.from_dict({"color": "reference", "color_statistics": statistics})
    assert str(error.value).startswith(message)
    with pytest.raises(ValueError, match=r"^color_reference \(or its stored color_statistics\) is needed exactly"):
        PostprocessSettings(color=None, color_statistics=PostprocessSettings.from_dict(
            {"color": "reference", "color_statistics": {"mean": [0.5] * 3, "std": [0.1] * 3,
                                                        "sha256": "0" * 64}}).color_statistics)


def test_chain_with_nothing_enabled_returns_the_picture():
    image = picture()
    out, timings = PostprocessChain()(image, PostprocessSettings())
    assert timings == {}
    assert np.array_equal(np.asarray(out), np.asarray(image))


def test_chain_keeps_alpha():
    image = picture().convert("RGBA")
    image.putalpha(Image.fromarray(np.tile(np.arange(48, dtype=np.uint8) * 5, (40, 1))))
    out, _ = PostprocessChain()(image, PostprocessSettings(color="auto", upscale=2))
    assert out.mode == "RGBA" and out.size == (96, 80)
    assert np.abs(np.asarray(out.getchannel("A"), dtype=float)[:, ::2] - np.arange(48) * 5).mean() < 3


def test_chain_is_deterministic(tmp_path):
    settings = PostprocessSettings(denoise="auto", color="palette", color_palette=("#1D3557", "#E76F51"), upscale=2)
    first, _ = PostprocessChain()(picture(), settings)
    second, _ = PostprocessChain()(picture(), settings)
    assert np.array_equal(np.asarray(first), np.asarray(second))


# ---------------------------------------------------------------------------------------------
# Command

def test_command_writes_the_picture_and_its_settings(tmp_path, capsys):
    src, out = tmp_path / "in.png", tmp_path / "out.png"
    picture().save(src)
    code = pipeline_main(["postprocess", str(src), str(out), "--denoise", "auto", "--color-palette",
                          "#1D3557, #E76F51", "--color-strength", "0.5", "--upscale", "2"])
    assert code == 0
    assert capsys.readouterr().out.strip() == str(out)
    with Image.open(out) as saved:
        assert saved.size == (96, 80)
        settings = PostprocessSettings.from_dict(json.loads(saved.text["postprocess"]))
    assert settings == PostprocessSettings(denoise="auto", color="palette", color_palette=("#1D3557", "#E76F51"),
                                           color_strength=0.5, upscale=2)


@pytest.mark.parametrize("args, message", [
    (["--denoise", "lots"], "denoise"),
    (["--denoise", "1.5"], "denoise"),
    (["--color-strength", "2"], "color_strength"),
    (["--color-palette", "#12,#345678"], "hex colour"),
    (["--color-reference", "missing.png"], "color_reference"),
    (["--upscale", "3"], "upscale"),
    (["--upscale", "2", "--upscaler", "missing.pth"], "upscaler"),
])
def test_command_bad_input_is_one_line_and_exit_2(tmp_path, capsys, args, message):
    src = tmp_path / "in.png"
    picture().save(src)
    assert pipeline_main(["postprocess", str(src), str(tmp_path / "out.png"), *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error:") and message in err
    assert not (tmp_path / "out.png").exists()


def test_command_refuses_a_bomb(tmp_path, capsys):
    src = tmp_path / "bomb.png"
    png_header_only(src, 30_000, 30_000)
    assert pipeline_main(["postprocess", str(src), str(tmp_path / "out.png"), "--upscale", "2"]) == 2
    assert "decompression bomb" in capsys.readouterr().err
