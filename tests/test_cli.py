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
from pipeline.postprocess import load_reference, reference_statistics

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


def test_a_png_whose_colour_reference_is_gone_reproduces_from_its_statistics(tiny_folder, tmp_path, capsys):
    reference = tmp_path / "brand.png"
    write_picture(reference, seed=3)
    assert main(["generate", "--prompt", "a red circle", "--model", str(tiny_folder("sana")), "--steps", "1",
                 "--width", "32", "--height", "32", "--color-reference", str(reference), "--color-strength", "0.8",
                 "--out", str(tmp_path / "a")]) == 0
    (path,) = saved_paths(capsys)
    stored = read_settings(path)["postprocess"]["color_statistics"]
    mean, std = reference_statistics(load_reference(str(reference)))
    assert stored == {"mean": [float(v) for v in mean], "std": [float(v) for v in std], "sha256": sha256(reference),
                      "name": "brand.png"}
    write_picture(tmp_path / "other.png", seed=4)
    (tmp_path / "other.png").replace(reference)  # another picture under the reference's name
    assert main(["generate", "--from-image", str(path), "--out", str(tmp_path / "b")]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (f"error: color_reference 'brand.png' is not the colour reference these settings were made "
                            f"with: its SHA-256 begins {sha256(reference)[:12]}, the settings name {stored['sha256'][:12]}"
                            "... ('brand.png'); give that file, or none to use its stored statistics\n")
    reference.unlink()

    from pipeline.metadata import request_from_settings
    request, index = request_from_settings(read_settings(path))
    post = request.postprocess
    assert (request.prompt, post.color, post.color_reference, post.color_statistics.to_dict(), index) == (
        "a red circle", "reference", str(reference), stored, 0)
    assert main(["generate", "--from-image", str(path), "--out", str(tmp_path / "b")]) == 0
    (again,) = saved_paths(capsys)
    assert np.array_equal(np.asarray(Image.open(again)), np.asarray(Image.open(path)))
    assert read_settings(again)["postprocess"] == read_settings(path)["postprocess"]


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


# Deliverables, brand kits and style presets ---------------------------------------------------------

CIRCLE = "a large red circle in the center, white background"


def test_deliverables_with_a_kit_and_a_style_are_exact_recorded_and_remade_without_the_reference(tmp_path, capsys,
                                                                                               embedded):
    from pipeline import brand, campaign, deliverables, styles
    from pipeline.metadata import request_from_settings, stored_deliverable
    from pipeline.postprocess import PostprocessSettings

    reference = write_picture(tmp_path / "approved.png", seed=5)
    kit = brand.Kit("Harbour", palette=("#1D3557", "#E76F51", "#F4E3B2"),
                    colour_reference=brand.ColourReference.from_file(reference), colour_strength=0.8,
                    style="flat colours", negative_prompt="blurry")
    brand.save(kit, tmp_path / "kit.json")
    assert main(["generate", "--prompt", CIRCLE, "--negative", "rain", "--seed", "3", "--num-images", "2",
                 "--deliverable", "medium-rectangle", "--deliverable", "160x160", "--kit", str(tmp_path / "kit.json"),
                 "--style", "flat-illustration", "--out", str(tmp_path / "a")]) == 0
    paths = saved_paths(capsys)
    assert [path.name for path in paths] == ["00001-3-medium-rectangle.png", "00002-3-160x160.png",
                                             "00003-4-medium-rectangle.png", "00004-4-160x160.png"]
    prompt, negative, post, colour = campaign.compose(CIRCLE, "rain", "flat-illustration", kit, PostprocessSettings())
    assert prompt == styles.apply("flat-illustration", CIRCLE)[0] + ", flat colours"
    for path, (key, seed) in zip(paths, [("medium-rectangle", 3), ("160x160", 3), ("medium-rectangle", 4),
                                         ("160x160", 4)]):
        item = deliverables.parse(key)
        assert Image.open(path).size == item.size
        stored = read_settings(path)
        assert (stored["prompt"], stored["negative_prompt"], stored["seed"]) == (prompt, negative, seed)
        assert (stored["width"], stored["height"], stored["kit"], stored["style"]) == (
            item.width, item.height, kit.to_dict(), "flat-illustration")
        record = stored["deliverable"]
        assert (record["key"], record["fit"], record["anchor"], record["colour_reference"]) == (
            key, "extend", "center", colour.to_dict())
        assert record["plan"] == deliverables.plan(item.size, embedded.limits).to_dict()
        assert stored["postprocess"] == post.to_dict()
    reference.unlink()

    # the page's Reuse: the stored record gives the request and the deliverable that remake the file
    settings = read_settings(paths[2])
    request, index = request_from_settings(settings)
    again = stored_deliverable(settings)
    assert (request.width, request.height, request.seed, request.num_images, index) == (None, None, 4, 1, 0)
    assert (again.deliverable.key, again.kit, again.style) == ("medium-rectangle", kit.to_dict(), "flat-illustration")
    rendered = deliverables.render(embedded, request, again.deliverable, **again.options())
    assert np.array_equal(np.asarray(rendered.image), np.asarray(Image.open(paths[2])))

    assert main(["generate", "--from-image", str(paths[3]), "--out", str(tmp_path / "b")]) == 0
    (remade,) = saved_paths(capsys)
    assert remade.name == "00001-4-160x160.png"
    assert np.array_equal(np.asarray(Image.open(remade)), np.asarray(Image.open(paths[3])))
    assert read_settings(remade) == read_settings(paths[3])


def test_a_cropped_deliverable_and_another_deliverable_of_a_stored_one(tmp_path, capsys):
    assert main(["generate", "--prompt", CIRCLE, "--deliverable", "256x128", "--fit", "crop",
                 "--out", str(tmp_path / "a")]) == 0
    (path,) = saved_paths(capsys)
    stored = read_settings(path)["deliverable"]
    assert Image.open(path).size == (256, 128)
    assert (stored["fit"], stored["plan"]["canvases"], "kit" in read_settings(path)) == ("crop", [], False)
    assert main(["generate", "--from-image", str(path), "--deliverable", "leaderboard", "--fit", "extend",
                 "--out", str(tmp_path / "b")]) == 0
    (other,) = saved_paths(capsys)
    assert Image.open(other).size == (728, 90)
    stored = read_settings(other)
    assert (stored["deliverable"]["key"], stored["deliverable"]["fit"], stored["seed"]) == ("leaderboard", "extend", 0)


@pytest.mark.parametrize("args, message", [
    (["--deliverable", "poster"], "error: deliverable 'poster' is neither a name (square, portrait, "),
    (["--deliverable", "9000x600"], "error: deliverable 9000x600: width must be from 1 to 8192 pixels, got 9000\n"),
    (["--fit", "crop"], "error: --fit needs --deliverable: it says how a deliverable reaches its aspect\n"),
    (["--deliverable", "square", "--fit", "stretch"], "error: argument --fit: invalid choice: 'stretch'"),
    (["--deliverable", "square", "--width", "64"],
     "error: --width: a deliverable sets the size itself; leave --width out\n"),
    (["--deliverable", "square", "--init-image", "{picture}"],
     "error: --deliverable draws from the prompt alone; leave --init-image out\n"),
    (["--kit", "missing.json"], "error: kit 'missing.json': file not found\n"),
    (["--kit", "{plain kit}"], "error: --kit 'plain.json' names no default deliverables; give --deliverable NAME or "
                               "WIDTHxHEIGHT\n"),
    (["--kit", "{bad kit}", "--deliverable", "square"],
     "error: kit 'bad.json': palette: 'red' is not a hex colour '#RRGGBB'\n"),
    (["--style", "noir"], "error: style 'noir' is not one of cinematic, "),
])
def test_bad_deliverable_kit_and_style_flags_are_one_line_and_exit_2(args, message, tmp_path, capsys):
    write_picture(tmp_path / "picture.png")
    (tmp_path / "plain.json").write_text('{"name": "Plain"}', encoding="utf-8")
    (tmp_path / "bad.json").write_text('{"name": "Bad", "palette": ["red"]}', encoding="utf-8")
    files = {"{picture}": "picture.png", "{plain kit}": "plain.json", "{bad kit}": "bad.json"}
    args = [str(tmp_path / files[arg]) if arg in files else arg for arg in args]
    try:
        code = main(["generate", "--prompt", "a cat", *args, "--out", str(tmp_path / "out")])
    except SystemExit as exit_:
        code = exit_.code
    captured = capsys.readouterr()
    assert (code, captured.out) == (2, "")
    assert len(captured.err.splitlines()) == 1 and captured.err.startswith(message), captured.err
    assert not (tmp_path / "out").exists()


def test_from_image_takes_no_kit_or_style(tmp_path, capsys):
    for flag, value in (("--kit", "kit.json"), ("--style", "cinematic")):
        assert main(["generate", "--from-image", str(tmp_path / "made.png"), flag, value]) == 2
        assert capsys.readouterr().err == (f"error: {flag} applies to --prompt or --prompts-file; the prompt stored in "
                                           "'made.png' already holds its kit and style\n")
