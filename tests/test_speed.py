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
    table = capsys.readouterr().out
    assert "stock diffusers __call__" in table and "4 requests as one batch" in table


def test_bench_unknown_arch_is_one_line(capsys):
    assert main(["bench", "--arch", "sdxl", "--device", "cpu"]) == 2
    assert capsys.readouterr().err == "error: unknown architecture 'sdxl'; known: sana-sprint-1.6b, z-image-turbo\n"
