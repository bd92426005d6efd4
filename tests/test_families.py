"""Every supported family, from tiny components of its real classes, through the project's loader."""
from __future__ import annotations

import re
import shutil

import numpy as np
import pytest

from helpers import tiny_models
from pipeline.__main__ import main
from pipeline.models import ModelNotAvailable
from pipeline.request import GenerationRequest
from pipeline.studio import Studio

FAMILIES = list(tiny_models.BUILDERS)
EXPECTED_CLASS = {
    "sana": "SanaPipeline", "sana-sprint": "SanaSprintPipeline", "z-image": "ZImagePipeline",
    "flux2-klein": "Flux2KleinPipeline", "qwen-image": "QwenImagePipeline", "lumina2": "Lumina2Pipeline",
}


TRANSFORMER = "transformer/diffusion_pytorch_model.safetensors"


def pixels(result, index: int = 0) -> np.ndarray:
    return np.asarray(result.images[index])


def small_request(studio: Studio, **changes) -> GenerationRequest:
    multiple = studio.limits.size_multiple
    width = max(32, multiple)
    settings = dict(prompt="a red circle on a blue background", seed=7, steps=2, width=width, height=width * 2)
    return GenerationRequest(**{**settings, **changes})


@pytest.mark.parametrize("family", FAMILIES)
def test_family_generates_reproducibly(family, tiny_studio):
    studio = tiny_studio(family)
    assert type(studio.pipe).__name__ == EXPECTED_CLASS[family]
    steps_seen = []
    request = small_request(studio, steps=3)
    first = studio.generate(request, on_step=lambda step, total: steps_seen.append((step, total)))

    assert first.images[0].size == (request.width, request.height)
    assert steps_seen == [(1, 3), (2, 3), (3, 3)]
    again = studio.generate(request)
    assert np.array_equal(pixels(first), pixels(again))
    other_seed = studio.generate(request.replace(seed=8))
    assert not np.array_equal(pixels(first), pixels(other_seed))
    assert first.settings[0]["seed"] == 7 and first.settings[0]["pipeline"] == EXPECTED_CLASS[family]


@pytest.mark.parametrize("family", FAMILIES)
def test_guidance_changes_the_image(family, tiny_studio):
    studio = tiny_studio(family)
    limits = studio.limits
    assert limits.uses_guidance  # all six tiny models take guidance (CFG, or embedded for Sprint)
    low = studio.generate(small_request(studio, guidance=limits.guidance.default))
    high = studio.generate(small_request(studio, guidance=limits.guidance.max))
    assert np.abs(pixels(low).astype(int) - pixels(high).astype(int)).max() > 0


def test_guidance_distilled_flux2_klein_refuses_guidance(tmp_path):
    tiny_models.flux2_klein(distilled=True).save_pretrained(tmp_path)
    studio = Studio.load(str(tmp_path), device="cpu")
    assert not studio.limits.uses_guidance and not studio.limits.uses_negative_prompt
    with pytest.raises(ValueError, match="guidance does not apply to this model"):
        studio.resolve(GenerationRequest(prompt="a cat", guidance=5.0))
    result = studio.generate(GenerationRequest(prompt="a cat", steps=1, width=32, height=32))
    assert result.images[0].size == (32, 32)


@pytest.mark.parametrize("family", ["sana", "z-image", "lumina2"])
def test_batch_has_one_seed_per_image(family, tiny_studio):
    studio = tiny_studio(family)
    batch = studio.generate(small_request(studio, seed=40, num_images=3))
    assert [record["seed"] for record in batch.settings] == [40, 41, 42]
    assert [record["batch"]["index"] for record in batch.settings] == [0, 1, 2]
    assert not np.array_equal(pixels(batch, 0), pixels(batch, 1))
    alone = studio.generate(small_request(studio, seed=41))
    # Same noise as the batch's second image; batched products may round one level apart.
    assert np.abs(pixels(batch, 1).astype(int) - pixels(alone).astype(int)).max() <= 1


@pytest.mark.parametrize("family", FAMILIES)
def test_compatible_requests_share_one_batch(family, tiny_studio):
    studio = tiny_studio(family)
    requests = [small_request(studio, prompt="a red circle", seed=3),
                small_request(studio, prompt="a much longer prompt about a small blue square at the top", seed=4,
                              num_images=2)]
    forwards = []
    hook = studio.pipe.transformer.register_forward_hook(lambda *args: forwards.append(1))
    try:
        batched = studio.generate_batch(requests)
        batched_forwards = len(forwards)
        alone = [studio.generate(request) for request in requests]
    finally:
        hook.remove()
    assert len(forwards) == 3 * batched_forwards  # one batch, then two runs of the same length
    for together, single in zip(batched, alone):
        assert [record["seed"] for record in together.settings] == [record["seed"] for record in single.settings]
        for index in range(len(single.images)):
            difference = np.abs(pixels(together, index).astype(int) - pixels(single, index).astype(int))
            assert difference.max() <= 1


@pytest.mark.parametrize("family", FAMILIES)
def test_studio_matches_the_stock_call(family, tiny_studio):
    """The studio's cached encoding and seeded noise reproduce the stock diffusers call's pixels."""
    import inspect

    import torch

    studio = tiny_studio(family)
    request = studio.resolve(small_request(studio))
    pipe = studio.pipe
    stock_kwargs = dict(studio.family.call_kwargs(request.steps, request.guidance))
    if "negative_prompt" in inspect.signature(type(pipe).__call__).parameters:
        stock_kwargs["negative_prompt"] = request.negative_prompt
    stock = pipe(prompt=request.prompt, num_inference_steps=request.steps, width=request.width,
                 height=request.height, generator=torch.Generator("cpu").manual_seed(request.seed),
                 output_type="pil", **stock_kwargs).images[0]
    assert np.array_equal(np.asarray(stock), pixels(studio.generate(request)))


@pytest.mark.parametrize("damage, message", [
    (lambda folder: (folder / "model_index.json").write_text("{not json"),
     "model_index.json is not valid JSON (JSONDecodeError: Expecting property name"),
    (lambda folder: (folder / "model_index.json").write_text('["SanaPipeline"]'),
     "model_index.json is not a diffusers model index"),
    (lambda folder: (folder / TRANSFORMER).write_bytes((folder / TRANSFORMER).read_bytes()[:5000]),
     f"the transformer weights {TRANSFORMER} cannot be read"),
    (lambda folder: (folder / TRANSFORMER).write_bytes(b""), f"the transformer weights {TRANSFORMER} cannot be read"),
    (lambda folder: (folder / "vae" / "diffusion_pytorch_model.safetensors").unlink(),
     "the vae has no .safetensors weights in vae/"),
], ids=["index not JSON", "index not an object", "weights cut short", "weights empty", "weights missing"])
def test_a_broken_model_folder_is_one_sentence(damage, message, tiny_folder, tmp_path, capsys):
    folder = shutil.copytree(tiny_folder("sana"), tmp_path / "model")
    capsys.readouterr()  # the tiny model's saving bars, when this test made it
    damage(folder)
    with pytest.raises(ModelNotAvailable, match=re.escape(message)):
        Studio.load(str(folder), device="cpu")
    assert main(["generate", "--prompt", "a cat", "--model", str(folder), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith(f"error: Model {str(folder)!r}") and message in err


def test_a_component_that_diffusers_cannot_load_is_one_sentence(tiny_folder, tmp_path):
    folder = shutil.copytree(tiny_folder("sana"), tmp_path / "model")
    (folder / "transformer" / "config.json").write_text("{junk")
    with pytest.raises(ModelNotAvailable, match=r"cannot be loaded as a SanaPipeline \(OSError: .*config.json"):
        Studio.load(str(folder), device="cpu")


@pytest.mark.parametrize("family, pipeline_class", [("qwen-image-edit", "QwenImageEditPipeline"),
                                                    ("qwen-image-edit-plus", "QwenImageEditPlusPipeline")])
def test_an_edit_folder_loads_as_its_own_family(family, pipeline_class, tiny_studio):
    """Their processor (the Qwen2-VL one, built locally) is saved and loaded back with the rest."""
    studio = tiny_studio(family)
    assert type(studio.pipe).__name__ == pipeline_class
    assert type(studio.pipe.processor).__name__ == "Qwen2VLProcessor"
    assert studio.modes == ("reference",)
    assert studio.limits.default_width == 1024 and studio.limits.size_multiple == 2 * studio.pipe.vae_scale_factor
