"""Speed options and the bench command: behaviour only, never wall-clock limits."""
from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from pipeline import speed
from pipeline.__main__ import main
from pipeline.request import GenerationRequest
from pipeline.speed import SpeedOptions
from pipeline.studio import Studio

REQUEST = GenerationRequest(prompt="a red circle", seed=3, steps=2, width=32, height=32)


def test_compile_falls_back_with_one_log_line(tiny_folder, tiny_studio, monkeypatch, caplog):
    monkeypatch.setattr(speed, "compile_unavailable", lambda device: "no C++ compiler for inductor's CPU code")
    with caplog.at_level(logging.WARNING, logger="pipeline.speed"):
        compiled = Studio.load(str(tiny_folder("sana")), device="cpu", speed_options=SpeedOptions(compile=True))
    assert [record.getMessage() for record in caplog.records] == [
        "torch.compile unavailable (no C++ compiler for inductor's CPU code); the denoiser runs uncompiled"]
    plain = tiny_studio("sana")
    assert np.array_equal(np.asarray(compiled.generate(REQUEST).images[0]), np.asarray(plain.generate(REQUEST).images[0]))


def test_tiled_decode_keeps_the_size(tiny_folder):
    tiled = Studio.load(str(tiny_folder("sana")), device="cpu", speed_options=SpeedOptions(tiled_decode=True))
    assert tiled.generate(REQUEST.replace(width=64)).images[0].size == (64, 32)
    assert tiled.pipe.vae.use_tiling


def test_bad_attention_backend_is_one_sentence(tiny_folder):
    with pytest.raises(ValueError, match="attention_backend 'warp-drive' cannot be used here"):
        Studio.load(str(tiny_folder("sana")), device="cpu", speed_options=SpeedOptions(attention_backend="warp-drive"))


def test_dtype_names():
    with pytest.raises(ValueError, match="dtype must be one of bf16, fp16, fp32, got 'fp8'"):
        SpeedOptions(dtype="fp8")
    assert str(SpeedOptions().torch_dtype("cpu")) == "torch.float32"
    assert str(SpeedOptions().torch_dtype("cuda")) == "torch.bfloat16"


def test_bench_writes_every_key(tiny_folder, tmp_path, capsys):
    out = tmp_path / "bench.json"
    code = main(["bench", "--model", str(tiny_folder("sana")), "--width", "32", "--height", "32", "--steps", "2",
                 "--repeat", "1", "--skip-first-image", "--json", str(out)])
    assert code == 0
    results = json.loads(out.read_text())
    for key in ("stock_s", "studio_cold_s", "studio_warm_s", "encode_s", "sequential_images_per_s",
                "batch4_images_per_s", "first_image_s", "peak_rss_mb", "device", "model", "width", "height", "steps"):
        assert key in results
    assert (results["width"], results["height"], results["steps"], results["device"]) == (32, 32, 2, "cpu")
    assert results["stock_s"] > 0 and results["batch4_images_per_s"] > 0
    assert set(results["spreads"]) == {"stock", "studio_cold", "studio_warm", "encode", "sequential", "batch4",
                                       "img2img", "extend", "extend_once"}
    assert all(spread["min_s"] <= spread["median_s"] <= spread["max_s"] for spread in results["spreads"].values())
    table = capsys.readouterr().out
    assert "stock diffusers __call__" in table and "4 requests as one batch" in table
    assert "median (min-max) of 1, compared runs interleaved" in table
    assert "warning" not in table  # one run has no spread


def run_bench(folder, tmp_path, capsys) -> tuple[dict, str]:
    """`bench` on a tiny model at 32x32, 2 steps, one run each: (its --json results, its table)."""
    out = tmp_path / "bench.json"
    assert main(["bench", "--model", str(folder), "--width", "32", "--height", "32", "--steps", "2", "--repeat", "1",
                 "--skip-first-image", "--json", str(out)]) == 0
    return json.loads(out.read_text()), capsys.readouterr().out


# Z-Image's multiple of 4 leaves a size between 32 and 64 for a first pass; Sana's 32 does not.
@pytest.mark.parametrize("name, stock, passes", [("z-image", "ZImageImg2ImgPipeline", 2), ("sana", None, 1)])
def test_bench_times_image_to_image_and_extend(name, stock, passes, tiny_folder, tmp_path, capsys):
    results, table = run_bench(tiny_folder(name), tmp_path, capsys)
    assert results["img2img_strength"] == 0.5 and results["img2img_skipped"] is None
    assert results["img2img_s"] > 0 and results["img2img_ratio_to_text"] > 0
    assert results["img2img_stock_pipeline"] == stock
    assert "image-to-image 0.5, studio, warm prompt" in table
    if stock is None:
        assert results["img2img_stock_s"] is None and results["img2img_ratio_to_stock"] is None
        assert "no diffusers image-to-image pipeline" in table
    else:
        assert results["img2img_stock_s"] > 0 and results["img2img_ratio_to_stock"] > 0
        assert f"image-to-image 0.5, stock {stock}" in table
        assert "no diffusers image-to-image pipeline" not in table
    # Extend to 2:1 in passes, against the same canvas inpainted at once.
    assert results["extend_skipped"] is None and results["extend_passes"] == passes
    assert results["extend_s"] > 0 and results["extend_once_s"] > 0
    assert results["extend_ratio_to_once"] == results["extend_s"] / results["extend_once_s"]
    assert f"extend to 2:1, studio, {passes} pass{'es' if passes > 1 else ''}" in table
    assert f"{results['extend_ratio_to_once']:.2f} x the same canvas inpainted at once" in table


def test_bench_skips_image_to_image_where_refused(tiny_folder, tmp_path, capsys):
    results, table = run_bench(tiny_folder("flux2-klein"), tmp_path, capsys)
    assert results["img2img_skipped"].startswith("image-to-image is not available for")
    assert results["img2img_s"] is None and results["img2img_stock_s"] is None
    lines = [line for line in table.splitlines() if "image-to-image" in line]
    assert len(lines) == 1 and "skipped" in lines[0]


def test_bench_unknown_arch_is_one_line(capsys):
    assert main(["bench", "--arch", "sdxl", "--device", "cpu"]) == 2
    assert capsys.readouterr().err == "error: unknown architecture 'sdxl'; known: sana-sprint-1.6b, z-image-turbo\n"
