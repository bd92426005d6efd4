"""`python -m pipeline generate`: paths out, one-line errors, exact regeneration from a PNG."""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline import conditioning
from pipeline.__main__ import main
from pipeline.conditioning import read_input_image, read_mask
from pipeline.metadata import read_settings

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=300)


def saved_paths(capsys) -> list[Path]:
    return [Path(line) for line in capsys.readouterr().out.splitlines()]


def test_generate_then_regenerate_from_the_image(tiny_folder, tmp_path, capsys):
    model = str(tiny_folder("sana"))
    code = main(["generate", "--prompt", "a large red circle on the left", "--negative", "blur", "--model", model,
                 "--seed", "5", "--steps", "2", "--width", "64", "--height", "32", "--num-images", "2",
                 "--out", str(tmp_path / "first")])
    assert code == 0
    first = saved_paths(capsys)
    assert [path.name for path in first] == ["00001-5.png", "00002-6.png"]

    code = main(["generate", "--from-image", str(first[1]), "--out", str(tmp_path / "again")])
    assert code == 0
    (again,) = saved_paths(capsys)
    assert np.array_equal(np.asarray(Image.open(first[1])), np.asarray(Image.open(again)))


def test_prompts_file_keeps_prompt_order_and_seed(tiny_folder, tmp_path, capsys):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a blue square\n\na green triangle\n")
    code = main(["generate", "--prompts-file", str(prompts), "--model", str(tiny_folder("sana")), "--seed", "9",
                 "--steps", "1", "--width", "32", "--height", "32", "--out", str(tmp_path)])
    assert code == 0
    paths = saved_paths(capsys)
    assert [path.name for path in paths] == ["00001-9.png", "00002-9.png"]
    assert [read_settings(path)["prompt"] for path in paths] == ["a blue square", "a green triangle"]


@pytest.mark.parametrize("args, message", [
    (["--prompt", " "], "error: prompt is empty"),
    (["--prompt", "a cat", "--seed", "-3"], "error: seed must be from 0 to 4294967295, got -3"),
    (["--prompt", "a cat", "--steps", "two"], "error: argument --steps: invalid int value: 'two'"),
    (["--prompt", "a cat", "--width", "33"], "error: width must be a multiple of 32 for this model, got 33"),
    (["--prompts-file", "missing.txt"], "error: cannot read --prompts-file 'missing.txt'"),
])
def test_bad_input_is_one_line_and_exit_2(args, message, tiny_folder, tmp_path, capsys):
    try:
        code = main(["generate", *args, "--model", str(tiny_folder("sana")), "--out", str(tmp_path)])
    except SystemExit as exit_:  # argparse's own type errors end through SystemExit
        code = exit_.code
    assert code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert len(captured.err.splitlines()) == 1 and captured.err.startswith(message)


def test_missing_model_is_one_sentence_and_exit_2(tmp_path):
    env = {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "empty-cache")}
    done = run_cli("generate", "--prompt", "a cat", "--model", "qwen-image", env=env)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: Model 'qwen-image' (Qwen/Qwen-Image) is not on this machine and could not be "
                               "downloaded")
    assert "hf download Qwen/Qwen-Image" in lines[0]


def test_unknown_reference_is_one_sentence(tmp_path, capsys):
    assert main(["generate", "--prompt", "a cat", "--model", str(tmp_path / "nowhere")]) == 2
    assert "is not a preset (embedded, sana-1.6b" in capsys.readouterr().err


def test_generate_with_post_processing_round_trips(tiny_folder, tmp_path, capsys):
    code = main(["generate", "--prompt", "a red circle", "--model", str(tiny_folder("sana")), "--steps", "1",
                 "--width", "32", "--height", "32", "--upscale", "2", "--color", "auto", "--out", str(tmp_path / "a")])
    assert code == 0
    (path,) = saved_paths(capsys)
    stored = read_settings(path)["postprocess"]
    assert (stored["upscale"], stored["color"]) == (2, "auto")
    assert Image.open(path).size == (64, 64)

    assert main(["generate", "--from-image", str(path), "--out", str(tmp_path / "b")]) == 0
    (again,) = saved_paths(capsys)
    assert np.array_equal(np.asarray(Image.open(path)), np.asarray(Image.open(again)))


def test_bad_post_processing_option_is_one_line(tiny_folder, capsys):
    code = main(["generate", "--prompt", "a cat", "--model", str(tiny_folder("sana")), "--color-palette", "#12345"])
    assert code == 2
    assert capsys.readouterr().err == "error: color_palette: '#12345' is not a hex colour '#RRGGBB'\n"


def test_a_png_whose_colour_reference_is_gone_still_yields_its_settings(tiny_folder, tmp_path, capsys):
    reference = tmp_path / "brand.png"
    Image.new("RGB", (8, 8), (200, 40, 40)).save(reference)
    assert main(["generate", "--prompt", "a red circle", "--model", str(tiny_folder("sana")), "--steps", "1",
                 "--width", "32", "--height", "32", "--color-reference", str(reference),
                 "--out", str(tmp_path / "a")]) == 0
    (path,) = saved_paths(capsys)
    reference.unlink()

    from pipeline.metadata import request_from_settings
    request, index = request_from_settings(read_settings(path))
    assert (request.prompt, request.postprocess.color, request.postprocess.color_reference, index) == (
        "a red circle", "reference", str(reference), 0)

    assert main(["generate", "--from-image", str(path), "--out", str(tmp_path / "b")]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f"error: color_reference: file not found: {reference.name!r}\n"
    assert not (tmp_path / "b").exists() or not any((tmp_path / "b").iterdir())


# Starting from an image ----------------------------------------------------------------------------

def write_picture(path: Path, seed: int = 0, size: tuple[int, int] = (48, 40)) -> Path:
    """A smooth random picture of another shape than the 32x32 request, so that fitting is exercised."""
    coarse = np.random.default_rng(seed).integers(0, 256, (5, 6, 3), dtype=np.uint8)
    Image.fromarray(coarse).resize(size, Image.Resampling.BILINEAR).save(path)
    return path


def write_mask(path: Path, size: tuple[int, int] = (48, 40)) -> Path:
    """White (repaint) in a box in the middle, black (keep) around it."""
    width, height = size
    pixels = np.zeros((height, width), dtype=np.uint8)
    pixels[height // 4:3 * height // 4, width // 4:3 * width // 4] = 255
    Image.fromarray(pixels).save(path)
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def generate(capsys, model: Path, out: Path, *args: str) -> Path:
    """Run `generate` on the tiny model at 32x32 in 2 steps; the one PNG it saved."""
    code = main(["generate", "--prompt", "a red circle", "--model", str(model), "--seed", "4", "--steps", "2",
                 "--width", "32", "--height", "32", "--out", str(out), *args])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    (path,) = [Path(line) for line in captured.out.splitlines()]
    return path


def fitted_input(path: Path) -> np.ndarray:
    return np.asarray(conditioning.fit(read_input_image(path, "input").image, 32, 32))


def test_image_to_image_is_sized_recorded_and_seeded(tiny_folder, tmp_path, capsys):
    model = tiny_folder("sana")
    source = write_picture(tmp_path / "source.png")
    first = generate(capsys, model, tmp_path / "a", "--init-image", str(source), "--strength", "0.5")
    again = generate(capsys, model, tmp_path / "b", "--init-image", str(source), "--strength", "0.5")
    assert Image.open(first).size == (32, 32)
    settings = read_settings(first)
    assert (settings["mode"], settings["strength"]) == ("image", 0.5)
    assert settings["init_image"] == {"sha256": sha256(source), "width": 48, "height": 40}
    assert np.array_equal(np.asarray(Image.open(first)), np.asarray(Image.open(again)))
    assert not np.array_equal(np.asarray(Image.open(first)), fitted_input(source))


def test_strength_zero_writes_the_fitted_input(tiny_folder, tmp_path, capsys):
    source = write_picture(tmp_path / "source.png")
    path = generate(capsys, tiny_folder("sana"), tmp_path / "out", "--init-image", str(source), "--strength", "0")
    assert np.array_equal(np.asarray(Image.open(path)), fitted_input(source))


def test_inpainting_keeps_every_pixel_outside_the_mask(tiny_folder, tmp_path, capsys):
    source = write_picture(tmp_path / "source.png")
    mask_file = write_mask(tmp_path / "mask.png")
    path = generate(capsys, tiny_folder("sana"), tmp_path / "out", "--init-image", str(source),
                    "--mask", str(mask_file), "--strength", "1")
    kept = np.asarray(conditioning.fit_mask(read_mask(mask_file, (48, 40)).image, 32, 32)) == 0
    assert 0 < kept.sum() < 32 * 32
    result, original = np.asarray(Image.open(path)), fitted_input(source)
    assert np.array_equal(result[kept], original[kept])
    assert not np.array_equal(result[~kept], original[~kept])
    settings = read_settings(path)
    assert (settings["mode"], settings["mask"]["sha256"], settings["mask_feather"]) == (
        "inpaint", sha256(mask_file), 0)


def test_from_image_asks_for_the_inputs_and_regenerates_with_them(tiny_folder, tmp_path, capsys):
    source = write_picture(tmp_path / "source.png")
    mask_file = write_mask(tmp_path / "mask.png")
    other = write_picture(tmp_path / "other.png", seed=1)
    made = generate(capsys, tiny_folder("sana"), tmp_path / "a", "--init-image", str(source),
                    "--mask", str(mask_file), "--mask-feather", "2", "--strength", "0.75")
    name = f"--from-image {made.name!r}"
    from_image = ["generate", "--from-image", str(made), "--out", str(tmp_path / "b")]

    def refused(*args: str) -> str:
        assert main([*from_image, *args]) == 2
        captured = capsys.readouterr()
        assert captured.out == ""
        return captured.err

    assert refused() == (f"error: {name} was made from the input picture {sha256(source)[:12]}... (48x40); "
                         "give that file as --init-image FILE to regenerate it\n")
    assert refused("--init-image", str(source)) == (
        f"error: {name} was made from the mask {sha256(mask_file)[:12]}... (48x40); "
        "give that file as --mask FILE to regenerate it\n")
    assert refused("--init-image", str(other), "--mask", str(mask_file)) == (
        f"error: --init-image 'other.png' is not the input picture {made.name!r} was made from: its SHA-256 begins "
        f"{sha256(other)[:12]}, the settings name {sha256(source)[:12]}... (48x40)\n")
    assert not (tmp_path / "b").exists()

    assert main([*from_image, "--init-image", str(source), "--mask", str(mask_file)]) == 0
    (again,) = saved_paths(capsys)
    assert np.array_equal(np.asarray(Image.open(made)), np.asarray(Image.open(again)))


def test_from_image_of_text_to_image_takes_no_input(tiny_folder, tmp_path, capsys):
    made = generate(capsys, tiny_folder("sana"), tmp_path / "a")
    source = write_picture(tmp_path / "source.png")
    assert main(["generate", "--from-image", str(made), "--init-image", str(source)]) == 2
    assert capsys.readouterr().err == (
        f"error: --from-image {made.name!r} was made without an input picture; leave --init-image out\n")


def test_extend_paints_a_border_around_the_kept_picture_and_regenerates(tiny_folder, tmp_path, capsys):
    source = write_picture(tmp_path / "source.png")
    code = main(["generate", "--prompt", "a red circle", "--model", str(tiny_folder("sana")), "--seed", "4",
                 "--steps", "2", "--init-image", str(source), "--extend-to", "64x32", "--extend-anchor", "left",
                 "--out", str(tmp_path / "a")])
    assert code == 0
    (made,) = saved_paths(capsys)
    result = np.asarray(Image.open(made))
    assert result.shape == (32, 64, 3)
    canvas, border = conditioning.extend(read_input_image(source, "input").image, 64, 32, "left")
    kept = np.asarray(border) == 0
    assert 0 < kept.sum() < 32 * 64
    assert np.array_equal(result[kept], np.asarray(canvas)[kept])
    settings = read_settings(made)
    assert (settings["mode"], settings["extend"]) == ("extend", {"width": 64, "height": 32, "anchor": "left"})

    assert main(["generate", "--from-image", str(made), "--init-image", str(source),
                 "--out", str(tmp_path / "b")]) == 0
    (again,) = saved_paths(capsys)
    assert np.array_equal(result, np.asarray(Image.open(again)))


def bad_inputs(tmp_path: Path) -> dict[str, Path]:
    picture = write_picture(tmp_path / "picture.png")
    text = tmp_path / "notes.txt"
    text.write_text("not a picture")
    truncated = tmp_path / "cut.png"
    truncated.write_bytes(picture.read_bytes()[:len(picture.read_bytes()) // 2])
    return {"picture": picture, "missing": tmp_path / "gone.png", "text": text, "truncated": truncated}


@pytest.mark.parametrize("args, message", [
    (["--init-image", "{missing}"], "error: --init-image: file not found: 'gone.png'"),
    (["--init-image", "{text}"], "error: --init-image: cannot read 'notes.txt' as an image: not a picture format"),
    (["--init-image", "{truncated}"], "error: --init-image: cannot read 'cut.png' as an image: image file is "
                                      "truncated"),
    (["--init-image", "{picture}", "--mask", "{missing}"], "error: --mask: file not found: 'gone.png'"),
    (["--init-image", "{picture}", "--mask", "{text}"], "error: --mask: cannot read 'notes.txt' as an image"),
    (["--init-image", "{picture}", "--mask", "{truncated}"], "error: --mask: cannot read 'cut.png' as an image: "
                                                            "image file is truncated"),
    (["--mask", "{picture}"], "error: --mask needs --init-image: it applies to a picture to start from"),
    (["--strength", "0.5"], "error: --strength needs --init-image: it applies to a picture to start from"),
    (["--init-image", "{picture}", "--mask-feather", "2"],
     "error: --mask-feather needs --mask or --extend-to: it softens the edge of the part repainted"),
    (["--extend-to", "64x32"], "error: --extend-to needs --init-image: it applies to a picture to start from"),
    (["--init-image", "{picture}", "--extend-to", "64by32"],
     "error: --extend-to must be WIDTHxHEIGHT in pixels, e.g. 1024x512, got '64by32'"),
    (["--init-image", "{picture}", "--extend-anchor", "left"],
     "error: --extend-anchor needs --extend-to: it places the picture on the larger canvas"),
    (["--init-image", "{picture}", "--strength", "1.5"], "error: strength must be from 0 to 1, got 1.5 (nearest: 1)"),
])
def test_bad_image_inputs_are_one_line_and_exit_2(args, message, tmp_path, capsys, monkeypatch):
    files = bad_inputs(tmp_path)
    monkeypatch.setattr("pipeline.studio.Studio.load", lambda *args, **kwargs: pytest.fail("the model was loaded"))
    code = main(["generate", "--prompt", "a cat", *[arg.format(**files) for arg in args], "--out", str(tmp_path)])
    assert code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert len(captured.err.splitlines()) == 1 and captured.err.startswith(message)


# Reference editing ---------------------------------------------------------------------------------

def test_references_are_recorded_asked_for_and_named_by_from_image(tiny_folder, tmp_path, capsys):
    first = write_picture(tmp_path / "first.png", size=(96, 64))
    second = write_picture(tmp_path / "second.png", seed=1, size=(64, 64))
    other = write_picture(tmp_path / "other.png", seed=2, size=(64, 64))
    made = generate(capsys, tiny_folder("flux2-klein"), tmp_path / "a", "--reference", str(first),
                    "--reference", str(second))
    settings = read_settings(made)
    assert settings["mode"] == "reference"
    assert settings["references"] == [{"sha256": sha256(first), "width": 96, "height": 64},
                                      {"sha256": sha256(second), "width": 64, "height": 64}]
    name = f"--from-image {made.name!r}"
    wanted = f"{sha256(first)[:12]}... (96x64), {sha256(second)[:12]}... (64x64)"
    from_image = ["generate", "--from-image", str(made), "--out", str(tmp_path / "b")]

    def refused(*args: str) -> str:
        assert main([*from_image, *args]) == 2
        return capsys.readouterr().err

    assert refused() == (f"error: {name} was made from 2 reference pictures ({wanted}) and 0 were given; give "
                         "each as --reference FILE, in order, to regenerate it\n")
    assert refused("--reference", str(first), "--reference", str(other)) == (
        f"error: --reference 'other.png' is not reference 2 of {made.name!r}: its SHA-256 begins "
        f"{sha256(other)[:12]}, the settings name {sha256(second)[:12]}... (64x64)\n")
    assert main([*from_image, "--reference", str(first), "--reference", str(second)]) == 0
    (again,) = saved_paths(capsys)
    assert np.array_equal(np.asarray(Image.open(made)), np.asarray(Image.open(again)))


def test_a_family_without_references_refuses_them_in_one_line(tiny_folder, tmp_path, capsys):
    reference = write_picture(tmp_path / "reference.png", size=(64, 64))
    code = main(["generate", "--prompt", "a red circle", "--model", str(tiny_folder("sana")), "--steps", "2",
                 "--width", "32", "--height", "32", "--out", str(tmp_path / "out"), "--reference", str(reference)])
    assert code == 2
    assert capsys.readouterr().err == ("error: reference editing is not available for Sana models; it works with "
                                       "FLUX.2 klein, Qwen-Image-Edit and Qwen-Image-Edit-Plus models\n")
