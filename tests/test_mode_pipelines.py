"""The image modes that are diffusers' own pipelines (Sana-Sprint, Qwen-Image, FLUX.2 klein), built
with `from_pipe` from the loaded text-to-image pipeline: shared modules, size, seeds, strength 0,
exact kept pixels, extend, cancel, the NaN check, and the sentences for what a family cannot do."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline import conditioning
from pipeline.conditioning import Extend, InputImage, Mask, read_input_image, read_mask
from pipeline.request import CANCEL, GenerationCancelled, GenerationFailed, GenerationRequest
from pipeline.studio import Studio

SIZE = 32
# family -> {mode: the diffusers class that serves it}
SERVED = {
    "sana-sprint": {"image": "SanaSprintImg2ImgPipeline"},
    "qwen-image": {"image": "QwenImageImg2ImgPipeline", "inpaint": "QwenImageInpaintPipeline",
                   "extend": "QwenImageInpaintPipeline"},
    "flux2-klein": {"inpaint": "Flux2KleinInpaintPipeline", "extend": "Flux2KleinInpaintPipeline"},
}
CASES = [(family, mode) for family, modes in SERVED.items() for mode in modes if mode != "extend"]
EXTEND_CASES = [family for family, modes in SERVED.items() if "extend" in modes]


def picture(seed: int = 0, size: tuple[int, int] = (48, 40)) -> InputImage:
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray(rng.integers(0, 256, (5, 6, 3), dtype=np.uint8))
    return read_input_image(coarse.resize(size, Image.Resampling.BILINEAR), "init_image")


def square_mask(image: InputImage) -> Mask:
    pixels = np.zeros((SIZE, SIZE), dtype=np.uint8)
    pixels[8:24, 8:24] = 255
    return read_mask(Image.fromarray(pixels).resize(image.size, Image.Resampling.NEAREST), image.size)


def request(mode: str, **changes) -> GenerationRequest:
    image = changes.pop("init_image", picture())
    settings = dict(prompt="a red circle on a blue background", seed=7, steps=2, width=SIZE, height=SIZE,
                    init_image=image, strength=1.0 if mode == "inpaint" else 0.5,
                    mask=square_mask(image) if mode == "inpaint" else None)
    return GenerationRequest(**{**settings, **changes})


def pixels(result, index: int = 0) -> np.ndarray:
    return np.asarray(result.images[index])


def fitted(item: InputImage) -> np.ndarray:
    return np.asarray(conditioning.fit(item.image, SIZE, SIZE))


@pytest.mark.parametrize("family, mode", CASES)
def test_the_mode_pipeline_shares_every_module(family, mode, tiny_studio):
    studio = tiny_studio(family)
    mode_pipe = studio.mode_pipeline(mode)
    assert type(mode_pipe).__name__ == SERVED[family][mode]
    assert studio.mode_pipeline(mode) is mode_pipe  # built once per studio
    ours, theirs = studio.pipe.components, mode_pipe.components
    assert set(theirs) == set(ours)
    for name, module in ours.items():
        assert theirs[name] is module, name
    studio.generate(request(mode))
    assert all(mode_pipe.components[name] is module for name, module in ours.items())


@pytest.mark.parametrize("family, mode", CASES)
def test_the_mode_is_seeded_and_sized(family, mode, tiny_studio):
    studio = tiny_studio(family)
    steps_seen = []
    first = studio.generate(request(mode), on_step=lambda step, total: steps_seen.append((step, total)))
    assert first.images[0].size == (SIZE, SIZE)
    assert steps_seen == ([(1, 1)] if mode == "image" else [(1, 2), (2, 2)])
    assert first.settings[0]["mode"] == mode
    assert np.array_equal(pixels(first), pixels(studio.generate(request(mode))))
    assert not np.array_equal(pixels(first), pixels(studio.generate(request(mode, seed=8))))
    assert not np.array_equal(pixels(first), fitted(picture()))


@pytest.mark.parametrize("family, mode", CASES)
def test_strength_zero_gives_the_input_without_running(family, mode, tiny_studio):
    studio = tiny_studio(family)
    runs = []
    hook = studio.pipe.transformer.register_forward_hook(lambda *args: runs.append(1))
    try:
        untouched = studio.generate(request(mode, strength=0.0, num_images=2))
    finally:
        hook.remove()
    assert runs == []
    assert all(np.array_equal(pixels(untouched, index), fitted(picture())) for index in range(2))


@pytest.mark.parametrize("family", [family for family, modes in SERVED.items() if "inpaint" in modes])
@pytest.mark.parametrize("feather", [0, 3])
def test_inpainting_keeps_every_pixel_outside_the_mask(family, feather, tiny_studio):
    studio = tiny_studio(family)
    image = picture()
    mask = square_mask(image)
    result = studio.generate(request("inpaint", mask_feather=feather))
    kept = np.asarray(conditioning.feather(conditioning.fit_mask(mask.image, SIZE, SIZE), feather)) == 0
    assert 0 < kept.sum() < SIZE * SIZE
    assert np.array_equal(pixels(result)[kept], fitted(image)[kept])
    assert not np.array_equal(pixels(result)[~kept], fitted(image)[~kept])


@pytest.mark.parametrize("family", EXTEND_CASES)
def test_extend_keeps_the_picture_exactly(family, tiny_studio):
    studio = tiny_studio(family)
    square = picture(size=(SIZE, SIZE))
    extended = request("image", init_image=square, extend=Extend.to(64, SIZE, anchor="right"), strength=1.0,
                       width=None, height=None)
    result = studio.generate(extended)
    assert result.images[0].size == (64, SIZE)
    assert np.array_equal(pixels(result)[:, SIZE:], np.asarray(square.image))
    assert np.array_equal(pixels(result), pixels(studio.generate(extended)))
    assert result.settings[0]["extend"] == {"width": 64, "height": SIZE, "anchor": "right"}


@pytest.mark.parametrize("family, mode", CASES)
def test_cancel_works(family, mode, tiny_studio):
    studio = tiny_studio(family)
    with pytest.raises(GenerationCancelled, match="cancelled after step 1 of 2"):
        studio.generate(request(mode, strength=1.0), on_step=lambda step, total: CANCEL)
    assert studio.generate(request(mode)).images[0].size == (SIZE, SIZE)


@pytest.mark.parametrize("family, mode", CASES)
def test_nan_output_is_an_error(family, mode, tiny_folder):
    studio = Studio.load(str(tiny_folder(family)), device="cpu")
    with torch.no_grad():
        for parameter in studio.pipe.vae.decoder.parameters():
            parameter.fill_(float("nan"))
    with pytest.raises(GenerationFailed, match="NaN"):
        studio.generate(request(mode))


@pytest.mark.parametrize("family, mode, message", [
    ("flux2-klein", "image", "image-to-image is not available for FLUX.2 klein models; it works with Sana (and the "
                             "embedded model), Sana-Sprint, Z-Image, Qwen-Image and Lumina 2 models"),
    ("sana-sprint", "inpaint", "inpainting is not available for Sana-Sprint models; it works with Sana (and the "
                               "embedded model), Z-Image, FLUX.2 klein, Qwen-Image and Lumina 2 models"),
])
def test_a_mode_the_family_lacks_is_refused_with_a_sentence(family, mode, message, tiny_studio):
    studio = tiny_studio(family)
    assert mode not in studio.modes
    with pytest.raises(ValueError) as error:
        studio.generate(request(mode))
    assert str(error.value) == message


def test_sana_sprint_cannot_extend(tiny_studio):
    studio = tiny_studio("sana-sprint")
    with pytest.raises(ValueError, match=r"^extend \(outpainting\) is not available for Sana-Sprint models; it works "
                                         r"with Sana \(and the embedded model\), Z-Image, FLUX.2 klein, Qwen-Image "
                                         r"and Lumina 2 models$"):
        studio.generate(request("image", init_image=picture(size=(SIZE, SIZE)), extend=Extend.by(right=32),
                                width=None, height=None))


def test_each_family_names_its_modes(tiny_studio):
    modes = {family: tiny_studio(family).modes for family in ("sana", "z-image", "lumina2", *SERVED)}
    assert modes == {"sana": ("text", "image", "inpaint", "extend"), "z-image": ("text", "image", "inpaint", "extend"),
                     "lumina2": ("text", "image", "inpaint", "extend"), "sana-sprint": ("text", "image"),
                     "qwen-image": ("text", "image", "inpaint", "extend"),
                     "flux2-klein": ("text", "inpaint", "extend", "reference")}


@pytest.mark.parametrize("family, mode", CASES)
def test_a_batch_gives_each_seed_its_own_picture(family, mode, tiny_studio):
    studio = tiny_studio(family)
    batch = studio.generate(request(mode, num_images=2))
    alone = studio.generate(request(mode, seed=8))
    assert not np.array_equal(pixels(batch, 0), pixels(batch, 1))
    assert np.abs(pixels(batch, 1).astype(int) - pixels(alone).astype(int)).max() <= 1
