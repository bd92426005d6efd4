"""Reference editing: FLUX.2 klein's in-context references through the loaded pipeline, and the
Qwen-Image-Edit / Edit-Plus families; size, seeds, the references' effect, the loaded modules, the
prompt cache, cancel, the NaN check, and the sentences for the families that cannot."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline.conditioning import InputImage, read_input_image
from pipeline.metadata import request_from_settings
from pipeline.request import CANCEL, GenerationCancelled, GenerationFailed, GenerationRequest
from pipeline.studio import Studio

SIZE = 32
FAMILIES = ("flux2-klein", "qwen-image-edit", "qwen-image-edit-plus")
PROMPT = "make the circle red"


@pytest.fixture(autouse=True)
def small_edit_areas(monkeypatch):
    """The Qwen-Image-Edit pipelines resize every reference to about a megapixel; the tiny models see
    1/256 of that area, through the same function the studio reads, so both resize alike."""
    import diffusers.pipelines.qwenimage.pipeline_qwenimage_edit as edit
    import diffusers.pipelines.qwenimage.pipeline_qwenimage_edit_plus as edit_plus

    for module in (edit, edit_plus):
        original = module.calculate_dimensions
        monkeypatch.setattr(module, "calculate_dimensions",
                            lambda area, ratio, original=original: original(area / 256, ratio))


def reference(seed: int = 0, size: tuple[int, int] = (96, 64)) -> InputImage:
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray(rng.integers(0, 256, (4, 6, 3), dtype=np.uint8))
    return read_input_image(coarse.resize(size, Image.Resampling.BILINEAR), "reference")


def request(family: str, **changes) -> GenerationRequest:
    count = 2 if family == "qwen-image-edit-plus" else 1
    settings = dict(prompt=PROMPT, seed=3, steps=2, width=SIZE, height=SIZE,
                    references=tuple(reference(seed) for seed in range(count)))
    return GenerationRequest(**{**settings, **changes})


def pixels(result, index: int = 0) -> np.ndarray:
    return np.asarray(result.images[index])


@pytest.mark.parametrize("family", FAMILIES)
def test_references_are_seeded_sized_and_used(family, tiny_studio):
    studio = tiny_studio(family)
    first = studio.generate(request(family))
    assert first.images[0].size == (SIZE, SIZE)
    assert first.settings[0]["mode"] == "reference"
    assert np.array_equal(pixels(first), pixels(studio.generate(request(family))))
    assert not np.array_equal(pixels(first), pixels(studio.generate(request(family, seed=4))))
    other = request(family)
    other = other.replace(references=(reference(9), *other.references[1:]))
    assert not np.array_equal(pixels(first), pixels(studio.generate(other)))


@pytest.mark.parametrize("family", FAMILIES)
def test_the_loaded_modules_serve_the_references(family, tiny_studio):
    studio = tiny_studio(family)
    modules, mode_pipes = dict(studio.pipe.components), dict(studio._mode_pipes)
    encoded, denoised = [], []
    hooks = [studio.pipe.transformer.register_forward_hook(lambda *args: denoised.append(1))]
    original_encode = studio.pipe.vae.encode

    def encode(*args, **kwargs):
        encoded.append(1)
        return original_encode(*args, **kwargs)

    studio.pipe.vae.encode = encode
    try:
        studio.generate(request(family, seed=11))
    finally:
        del studio.pipe.vae.encode
        for hook in hooks:
            hook.remove()
    assert encoded and denoised  # the loaded decoder encoded the references, the loaded denoiser ran
    assert studio.mode_pipeline("reference") is None and studio._mode_pipes == mode_pipes  # no pipeline built
    assert all(studio.pipe.components[name] is module for name, module in modules.items())


@pytest.mark.parametrize("family", ["qwen-image-edit", "qwen-image-edit-plus"])
def test_edit_pipelines_give_the_stock_calls_pixels(family, tiny_studio):
    """The cached embeddings (the encoder shown the references) are those the stock call makes."""
    studio = tiny_studio(family)
    asked = request(family, negative_prompt="blurry", guidance=4.0)
    ours = studio.generate(asked)
    pictures = [item.image for item in asked.references]
    stock = studio.pipe(image=pictures[0] if family == "qwen-image-edit" else pictures, prompt=PROMPT,
                        negative_prompt="blurry", true_cfg_scale=4.0, width=SIZE, height=SIZE,
                        num_inference_steps=2, generator=[torch.Generator("cpu").manual_seed(3)], output_type="pil")
    assert np.array_equal(pixels(ours), np.asarray(stock.images[0]))


@pytest.mark.parametrize("family, cached", [("flux2-klein", True), ("qwen-image-edit", False)])
def test_the_prompt_cache_keys_on_the_references_where_the_encoder_sees_them(family, cached, tiny_studio):
    studio = tiny_studio(family)
    studio.clear_cache()
    studio.generate(request(family, prompt="a new instruction"))
    studio.generate(request(family, prompt="a new instruction", references=(reference(5),)))
    assert len(studio._cache) == (1 if cached else 2)


def test_a_batch_of_edits_gives_each_seed_its_own_picture(tiny_studio):
    studio = tiny_studio("qwen-image-edit")
    batch = studio.generate(request("qwen-image-edit", num_images=2))
    assert not np.array_equal(pixels(batch, 0), pixels(batch, 1))
    alone = studio.generate(request("qwen-image-edit", seed=4))
    assert np.abs(pixels(batch, 1).astype(int) - pixels(alone).astype(int)).max() <= 1


@pytest.mark.parametrize("family", FAMILIES)
def test_cancel_works(family, tiny_studio):
    studio = tiny_studio(family)
    with pytest.raises(GenerationCancelled, match="cancelled after step 1 of 2"):
        studio.generate(request(family), on_step=lambda step, total: CANCEL)


@pytest.mark.parametrize("family", FAMILIES)
def test_nan_output_is_an_error(family, tiny_folder):
    studio = Studio.load(str(tiny_folder(family)), device="cpu")
    with torch.no_grad():
        for parameter in studio.pipe.vae.decoder.parameters():
            parameter.fill_(float("nan"))
    with pytest.raises(GenerationFailed, match="NaN"):
        studio.generate(request(family))


@pytest.mark.parametrize("family", ["sana", "sana-sprint", "z-image", "qwen-image", "lumina2"])
def test_other_families_refuse_references_with_a_sentence(family, tiny_studio):
    studio = tiny_studio(family)
    assert "reference" not in studio.modes
    with pytest.raises(ValueError) as error:
        studio.generate(request("flux2-klein"))
    name = studio.family.name
    assert str(error.value) == (f"reference editing is not available for {name} models; it works with "
                                "FLUX.2 klein, Qwen-Image-Edit and Qwen-Image-Edit-Plus models")


def test_edit_families_need_references_and_take_their_number(tiny_studio):
    studio = tiny_studio("qwen-image-edit")
    assert studio.modes == ("reference",)
    with pytest.raises(ValueError) as error:
        studio.generate(GenerationRequest(prompt=PROMPT, steps=2, width=SIZE, height=SIZE))
    assert str(error.value) == ("Qwen-Image-Edit models edit reference pictures; give 1 to 1 references with the "
                                "instruction as the prompt")
    with pytest.raises(ValueError) as error:
        studio.generate(request("qwen-image-edit", references=(reference(0), reference(1))))
    assert str(error.value) == "references has 2 pictures; Qwen-Image-Edit models take at most 1"
    assert tiny_studio("flux2-klein").modes == ("text", "inpaint", "extend", "reference")


def test_references_a_family_cannot_read_are_refused_before_any_run(tiny_studio):
    with pytest.raises(ValueError) as error:
        tiny_studio("flux2-klein").generate(request("flux2-klein", references=(reference(0), reference(1, (48, 64)))))
    assert str(error.value) == "reference 2 is 48x64; FLUX.2 klein models need at least 64 pixels on each side"
    with pytest.raises(ValueError) as error:
        tiny_studio("qwen-image-edit").generate(request("qwen-image-edit", references=(reference(0, (900, 100)),)))
    assert str(error.value) == "reference 1 is 900x100; its long side may be at most 8 times its short side"


def test_a_request_takes_references_or_an_init_image():
    with pytest.raises(ValueError, match="^references go without an init_image"):
        request("flux2-klein", init_image=reference(1))
    with pytest.raises(ValueError, match="^references has 5 pictures; the limit is 4$"):
        request("flux2-klein", references=tuple(reference(seed) for seed in range(5)))
    with pytest.raises(ValueError, match="^reference 1 must be an InputImage"):
        request("flux2-klein", references=(Image.new("RGB", (64, 64)),))


def test_the_settings_record_and_restore_the_references(tiny_studio):
    studio = tiny_studio("qwen-image-edit-plus")
    asked = request("qwen-image-edit-plus")
    result = studio.generate(asked)
    record = result.settings[0]
    assert record["references"] == [{"sha256": item.sha256, "width": 96, "height": 64} for item in asked.references]
    again, index = request_from_settings(record, references=asked.references)
    assert index == 0 and again.mode == "reference"
    assert np.array_equal(pixels(studio.generate(again)), pixels(result))
    with pytest.raises(ValueError) as error:
        request_from_settings(record, references=asked.references[:1])
    assert str(error.value).startswith("this picture was made from 2 references, and 1 was given; give reference 2 (")
    wrong = (asked.references[0], reference(7))
    with pytest.raises(ValueError) as error:
        request_from_settings(record, references=wrong)
    assert str(error.value).startswith(f"reference 2 is not the picture this one was made from: its SHA-256 begins "
                                       f"{wrong[1].sha256[:12]}, the settings name {asked.references[1].sha256[:12]}")
