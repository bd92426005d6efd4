"""`python -m pipeline generate`: paths out, one-line errors, exact regeneration from a PNG."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.__main__ import main

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
    from pipeline.metadata import read_settings
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
    from pipeline.metadata import read_settings
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

    from pipeline.metadata import read_settings, request_from_settings
    request, index = request_from_settings(read_settings(path))
    assert (request.prompt, request.postprocess.color, request.postprocess.color_reference, index) == (
        "a red circle", "reference", str(reference), 0)

    assert main(["generate", "--from-image", str(path), "--out", str(tmp_path / "b")]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f"error: color_reference: file not found: {reference.name!r}\n"
    assert not (tmp_path / "b").exists() or not any((tmp_path / "b").iterdir())
