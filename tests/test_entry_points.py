"""The entry points (`python -m pipeline ...` and `app.py`): devices that do not exist, and every
speed flag (and its environment variable) reaching the pipeline object."""
from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import app
from pipeline.commands import build_parser, main
from pipeline.commands.options import speed_options
from pipeline.speed import SpeedOptions
from pipeline.studio import Studio

ROOT = Path(__file__).resolve().parents[1]
NO_CUDA = ("error: device 'cuda' needs a CUDA build of torch; this one ({}) is for the CPU only: install torch's "
           "CUDA build on a machine with an NVIDIA GPU, or use cpu").format(torch.__version__)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("device, message", [
    ("cuda", NO_CUDA if torch.version.cuda is None else "error: device 'cuda': torch "),
    ("tpu", "error: device must be cpu or cuda (or cuda:N), got 'tpu'"),
])
def test_a_device_that_is_not_there_is_one_line_and_exit_2(device, message, capsys):
    assert main(["generate", "--prompt", "a red circle", "--device", device]) == 2
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [captured.err.strip()] and captured.err.startswith(message)

    done = subprocess.run([sys.executable, "app.py", "--device", device], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [done.stderr.strip()], done.stderr
    assert done.stderr.startswith(message)


# flag -> the SpeedOptions it asks for; the same through app.py, `generate`, `bench` and the environment
FLAGS = [
    (["--dtype", "bf16"], {"DTYPE": "bf16"}, SpeedOptions(dtype="bf16")),
    (["--compile"], {"COMPILE": "1"}, SpeedOptions(compile=True)),
    (["--attention-backend", "native"], {"ATTENTION_BACKEND": "native"}, SpeedOptions(attention_backend="native")),
    (["--tiled-decode"], {"TILED_DECODE": "1"}, SpeedOptions(tiled_decode=True)),
    (["--cpu-offload"], {"CPU_OFFLOAD": "1"}, SpeedOptions(cpu_offload=True)),
]


@pytest.mark.parametrize("flag, env, expected", FLAGS, ids=[flag[0] for flag, _, _ in FLAGS])
def test_each_speed_flag_is_parsed_alike_by_every_entry_point(flag, env, expected, monkeypatch):
    assert speed_options(app.parse_args(flag)) == expected
    for command in ("generate", "bench"):
        assert speed_options(build_parser(command).parse_args(flag)) == expected
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert speed_options(app.parse_args([])) == expected
    assert speed_options(build_parser("generate").parse_args([])) == expected


def test_app_hands_the_speed_options_and_device_to_the_studio(monkeypatch):
    seen = {}

    def load(reference, device=None, **options):
        seen.update(reference=reference, device=device, **options)
        raise ValueError("stop here")

    monkeypatch.setattr(Studio, "load", load)
    assert app.main(["--model", "m", "--device", "cpu", "--dtype", "bf16", "--tiled-decode", "--batch-size", "2"]) == 2
    wrapper = seen.pop("device_wrapper")
    assert wrapper(len) is len  # off a ZeroGPU Space, the device work runs as it is
    assert seen == {"reference": "m", "device": "cpu", "speed_options": SpeedOptions(dtype="bf16", tiled_decode=True),
                    "max_batch": 2, "safety": None, "watermark": False, "enhancer": None}


def test_dtype_applies_on_cpu(tiny_folder):
    studio = Studio.load(str(tiny_folder("sana")), device="cpu", speed_options=SpeedOptions(dtype="bf16"))
    assert studio.dtype == torch.bfloat16 and studio.pipe.text_encoder.dtype == torch.bfloat16


def test_compile_applies_to_each_denoiser_block(tiny_folder):
    from pipeline.speed import compile_unavailable

    studio = Studio.load(str(tiny_folder("sana")), device="cpu", speed_options=SpeedOptions(compile=True))
    blocks = studio.pipe.transformer.transformer_blocks
    # compiled lazily: wrapped now, traced at the first call
    assert all(block._compiled_call_impl is not None for block in blocks) == (compile_unavailable("cpu") is None)


def test_attention_backend_applies_to_the_denoiser(tiny_folder):
    from diffusers.models.attention_dispatch import AttentionBackendName

    studio = Studio.load(str(tiny_folder("z-image")), device="cpu",
                         speed_options=SpeedOptions(attention_backend="native"))
    backends = {module.processor._attention_backend for module in studio.pipe.transformer.modules()
                if hasattr(getattr(module, "processor", None), "_attention_backend")}
    assert backends == {AttentionBackendName.NATIVE}


def test_cpu_offload_on_a_cpu_falls_back_with_one_log_line(tiny_folder, caplog):
    with caplog.at_level(logging.WARNING, logger="pipeline.speed"):
        studio = Studio.load(str(tiny_folder("sana")), device="cpu", speed_options=SpeedOptions(cpu_offload=True))
    assert [record.getMessage() for record in caplog.records] == [
        "cpu_offload applies to CUDA devices only; the model stays on cpu"]
    assert studio.pipe.transformer.device.type == "cpu"


@pytest.mark.parametrize("args, env, message", [
    (["--port", "99999"], {}, "error: argument --port: port must be from 1 to 65535, got 99999"),
    ([], {"QUEUE_SIZE": "abc"}, "error: argument --queue-size: invalid int value: 'abc'"),
    ([], {"DTYPE": "fp8"}, "error: dtype must be one of bf16, fp16, fp32, got 'fp8'"),
])
def test_bad_app_options_are_one_line_and_exit_2(args, env, message, monkeypatch, capsys):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert app.main(args) == 2
    assert capsys.readouterr().err.startswith(message)


def test_a_port_in_use_is_one_line_and_exit_2():
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([sys.executable, "app.py", "--host", "127.0.0.1", "--port", str(port)], cwd=ROOT,
                              capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: cannot serve the page: Cannot find empty port in range: {port}-{port}. You can "
                      "specify a different port by setting the GRADIO_SERVER_PORT environment variable or passing "
                      "the `server_port` parameter to `launch()`."]
    assert "Traceback" not in done.stderr
