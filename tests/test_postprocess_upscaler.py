"""Learned upscalers through spandrel: tiny randomly initialised models saved the way users get them."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file
from spandrel.architectures.ESRGAN import ESRGAN
from spandrel.architectures.SPAN import SPAN

import pipeline.postprocess.chain as chain_module
from pipeline import postprocess as pp
from pipeline.__main__ import main as pipeline_main
from pipeline.postprocess import PostprocessChain, PostprocessSettings
from test_postprocess import picture


def tiny_esrgan(path, scale: int = 4):
    torch.manual_seed(0)
    model = ESRGAN(num_filters=8, num_blocks=1, scale=scale)
    save_file(model.state_dict(), str(path))
    return path


def tiny_span(path, scale: int = 2):
    torch.manual_seed(0)
    model = SPAN(num_in_ch=3, num_out_ch=3, feature_channels=8, upscale=scale)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


def test_esrgan_safetensors_loads_and_upscales_in_tiles(tmp_path):
    model = pp.load_upscaler(tiny_esrgan(tmp_path / "esrgan.safetensors"))
    assert model.scale == 4
    image = picture(40, 36)
    whole = np.asarray(pp.upscale_learned(image, model, 4, tile=64), dtype=int)
    tiled = np.asarray(pp.upscale_learned(image, model, 4, tile=16), dtype=int)
    assert tiled.shape == whole.shape == (36 * 4, 40 * 4, 3)
    assert whole.std() > 5  # the random model draws something, so seams would show
    # overlapping context makes tiles join exactly; without it the seams show
    assert np.abs(tiled - whole).max() <= 1
    seams = np.asarray(pp.upscale_learned(image, model, 4, tile=16, overlap=0), dtype=int)
    assert np.abs(seams - whole).max() > 10


def test_span_safetensors_gives_the_asked_factor(tmp_path, monkeypatch):
    path = str(tiny_span(tmp_path / "span.safetensors", scale=2))
    loads = []
    load = pp.load_upscaler
    monkeypatch.setattr(chain_module, "load_upscaler", lambda p, device: loads.append(p) or load(p, device))
    chain = PostprocessChain()
    image = picture(30, 20)
    x2, _ = chain(image, PostprocessSettings(upscale=2, upscaler=path))
    x4, timings = chain(image, PostprocessSettings(upscale=4, upscaler=path))  # the x2 model runs twice
    assert x2.size == (60, 40) and x4.size == (120, 80)
    assert "upscale" in timings
    assert loads == [path]  # loaded once, then reused from the chain's cache


def test_prepare_loads_the_upscaler_once_and_the_chain_runs_it(tmp_path):
    chain = PostprocessChain()
    settings = PostprocessSettings(upscale=4, upscaler=str(tiny_esrgan(tmp_path / "esrgan.safetensors")))
    inputs = chain.prepare(settings)
    assert inputs.upscaler.scale == 4 and inputs.color_statistics is None
    assert chain.prepare(settings).upscaler is inputs.upscaler  # from the chain's cache
    out, timings = chain(picture(20, 12), settings, inputs)
    assert list(timings) == ["upscale"]
    assert np.array_equal(np.asarray(out), np.asarray(pp.upscale_learned(picture(20, 12), inputs.upscaler, 4)))


def test_x4_model_asked_for_x2_is_resized(tmp_path):
    model = pp.load_upscaler(tiny_esrgan(tmp_path / "esrgan.safetensors"))
    assert pp.upscale_learned(picture(20, 12), model, 2).size == (40, 24)


def test_plain_state_dict_pth_loads(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "esrgan.pth"
    torch.save(ESRGAN(num_filters=8, num_blocks=1, scale=2).state_dict(), path)
    assert pp.load_upscaler(path).scale == 2


class Payload:
    def __reduce__(self):
        return (print, ("this would run on load",))


def test_pickled_object_pth_is_refused(tmp_path, capsys):
    path = tmp_path / "evil.pth"
    torch.save({"params": Payload()}, path)
    with pytest.raises(ValueError, match="refusing .*pickled"):
        pp.load_upscaler(path)
    assert "this would run" not in capsys.readouterr().out


@pytest.mark.parametrize("name, content", [
    ("broken.safetensors", b"\x08\x00\x00\x00\x00\x00\x00\x00{broken}"),
    ("broken.pth", b"PK not really a zip"),
])
def test_unreadable_weights_are_refused(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ValueError, match=f"upscaler: cannot read .*{name}"):
        pp.load_upscaler(path)


def test_unknown_architecture_is_refused(tmp_path):
    path = tmp_path / "other.safetensors"
    save_file({"weight": torch.zeros(3, 3)}, str(path))
    with pytest.raises(ValueError, match="not a model architecture spandrel knows"):
        pp.load_upscaler(path)


def test_command_uses_a_learned_upscaler_and_refuses_pickles(tmp_path, capsys):
    src, out = tmp_path / "in.png", tmp_path / "out.png"
    picture(20, 16).save(src)
    weights = tiny_esrgan(tmp_path / "esrgan.safetensors")
    assert pipeline_main(["postprocess", str(src), str(out), "--upscale", "4", "--upscaler", str(weights)]) == 0
    with Image.open(out) as saved:
        assert saved.size == (80, 64)

    evil = tmp_path / "evil.pth"
    torch.save({"params": Payload()}, evil)
    assert pipeline_main(["postprocess", str(src), str(out), "--upscale", "2", "--upscaler", str(evil)]) == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and "refusing" in captured.err
    assert "this would run" not in captured.out


def test_the_learned_upscaler_install_leaves_every_other_import_working():
    """spandrel's torchvision is installed without dependencies beside the project's torch: the
    engine's libraries must still import after it, in a fresh process, with no error."""
    import subprocess
    import sys

    code = ("import spandrel, torchvision, transformers, diffusers\n"
            "from transformers import Gemma2Model, Qwen3Model, Qwen2_5_VLForConditionalGeneration\n"
            "from diffusers import SanaPipeline, ZImagePipeline, Flux2KleinPipeline, QwenImagePipeline\n"
            "from pipeline.postprocess import load_upscaler\n"
            "print(torchvision.__version__)")
    done = subprocess.run([sys.executable, "-W", "ignore", "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
