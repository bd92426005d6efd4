"""Image-to-image, inpainting and extend: the request, the conventions against diffusers' own pipelines,
every family that has the modes, and the settings that record them."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline import conditioning, image_modes
from pipeline.batching import batch_key
from pipeline.conditioning import Extend, InputImage, Mask, read_input_image, read_mask
from pipeline.metadata import image_settings, read_settings, request_from_settings, save_png
from pipeline.request import CANCEL, GenerationCancelled, GenerationFailed, GenerationRequest
from pipeline.studio import Studio

MODE_FAMILIES = ["sana", "z-image", "lumina2"]
SIZE = 32


def picture(seed: int = 0, size: tuple[int, int] = (48, 40)) -> InputImage:
    """A smooth random picture of another size than the request's, so that fitting is exercised."""
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray(rng.integers(0, 256, (5, 6, 3), dtype=np.uint8))
    return read_input_image(coarse.resize(size, Image.Resampling.BILINEAR), "init_image")


def square_mask(image: InputImage, box=(8, 8, 24, 24)) -> Mask:
    """A rectangle to repaint, given on the 32x32 grid of the fitted picture."""
    pixels = np.zeros((SIZE, SIZE), dtype=np.uint8)
    left, top, right, bottom = box
    pixels[top:bottom, left:right] = 255
    return read_mask(Image.fromarray(pixels).resize(image.size, Image.Resampling.NEAREST), image.size)


def request(**changes) -> GenerationRequest:
    settings = dict(prompt="a red circle on a blue background", seed=7, steps=2, width=SIZE, height=SIZE,
                    init_image=picture(), strength=0.5)
    return GenerationRequest(**{**settings, **changes})


def pixels(result, index: int = 0) -> np.ndarray:
    return np.asarray(result.images[index])


def fitted(item: InputImage) -> np.ndarray:
    return np.asarray(conditioning.fit(item.image, SIZE, SIZE))


def kept_region(mask: Mask, feather: int = 0) -> np.ndarray:
    """(H, W) bool: where the fitted, feathered mask keeps the input."""
    fitted_mask = conditioning.feather(conditioning.fit_mask(mask.image, SIZE, SIZE), feather)
    return np.asarray(fitted_mask) == 0


# The request ---------------------------------------------------------------------------------------


def test_the_mode_follows_from_the_inputs():
    image = picture()
    assert GenerationRequest(prompt="a cat").mode == "text"
    assert request().mode == "image"
    assert request(mask=square_mask(image), init_image=image).mode == "inpaint"


@pytest.mark.parametrize("changes, message", [
    ({"strength": 1.5}, "strength must be from 0 to 1, got 1.5 (nearest: 1)"),
    ({"strength": -0.1}, "strength must be from 0 to 1, got -0.1 (nearest: 0)"),
    ({"strength": float("nan")}, "strength must be a finite number, got nan"),
    ({"strength": "0.5"}, "strength must be a number, got '0.5'"),
    ({"mask_feather": 65}, "mask_feather must be from 0 to 64, got 65 (nearest: 64)"),
    ({"mask_feather": 2.5}, "mask_feather must be a whole number from 0 to 64, got 2.5"),
    ({"init_image": "photo.png"}, "init_image must be an InputImage (conditioning.read_input_image), got str"),
    ({"mask": Image.new("L", (48, 40))}, "mask must be a Mask (conditioning.read_mask), got Image"),
])
def test_image_inputs_are_checked_with_a_sentence(changes, message):
    with pytest.raises(ValueError) as error:
        request(**changes)
    assert str(error.value) == message


def test_a_mask_needs_its_picture_at_the_picture_s_size():
    with pytest.raises(ValueError) as error:
        request(init_image=None, mask=square_mask(picture()))
    assert str(error.value) == "mask needs an init_image: inpainting repaints part of a picture, so give the picture too"
    with pytest.raises(ValueError) as error:
        request(mask=read_mask(Image.new("L", (32, 32), 255), (32, 32)))
    assert str(error.value) == ("mask is 32x32 but init_image is 48x40; read the mask with "
                                "read_mask(source, init_image.size)")


def test_image_requests_batch_only_with_the_same_picture_and_strength():
    image, other = picture(0), picture(1)
    base = request(init_image=image)
    assert batch_key(base) == batch_key(base.replace(seed=99, prompt="another prompt"))
    text = base.replace(init_image=None)
    different = [text, base.replace(init_image=other), base.replace(strength=0.7),
                 base.replace(mask=square_mask(image)), base.replace(mask=square_mask(image), mask_feather=4)]
    keys = [batch_key(item) for item in [base, *different]]
    assert len(set(keys)) == len(keys)
    assert batch_key(text) == (text.steps, text.guidance, text.width, text.height, "text")


# The conventions, against diffusers' own image-to-image and inpainting pipelines ---------------------


@pytest.fixture
def posterior_mean(monkeypatch):
    """diffusers' Z-Image pipelines sample the encoder's posterior with the seed's generator before
    drawing the noise; the studio takes its mean and leaves the generator to the noise (so that
    strength 1 is text-to-image). Giving diffusers the mean too makes the two runs comparable."""
    from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution

    monkeypatch.setattr(DiagonalGaussianDistribution, "sample", lambda self, generator=None: self.mode())


@pytest.mark.parametrize("strength", [0.5, 1.0])
@pytest.mark.parametrize("mode", ["image", "inpaint"])
def test_z_image_matches_diffusers_own_image_pipelines(mode, strength, tiny_studio, posterior_mean):
    """The studio's path through the stock ZImagePipeline call gives the pixels of ZImageImg2ImgPipeline /
    ZImageInpaintPipeline built with from_pipe from the same components, exactly. diffusers does not
    put the kept pixels back after decoding, so its inpainting is composited with the same mask first."""
    from diffusers import ZImageImg2ImgPipeline, ZImageInpaintPipeline

    studio = tiny_studio("z-image")
    image = picture()
    mask = square_mask(image, box=(6, 10, 22, 26)) if mode == "inpaint" else None
    ours = studio.resolve(request(init_image=image, mask=mask, strength=strength))
    fitted_image = conditioning.fit(image.image, SIZE, SIZE)
    common = dict(prompt=ours.prompt, image=fitted_image, strength=strength, num_inference_steps=ours.steps,
                  guidance_scale=ours.guidance, width=SIZE, height=SIZE, output_type="pil",
                  generator=[torch.Generator("cpu").manual_seed(ours.seed)])
    if mode == "image":
        theirs = ZImageImg2ImgPipeline.from_pipe(studio.pipe)(**common).images[0]
    else:
        fitted_mask = conditioning.fit_mask(mask.image, SIZE, SIZE)
        decoded = ZImageInpaintPipeline.from_pipe(studio.pipe)(**common, mask_image=fitted_mask).images[0]
        theirs = Image.composite(decoded, fitted_image, fitted_mask)
    result = studio.generate(ours)
    assert np.array_equal(np.asarray(theirs), pixels(result))
    assert not np.array_equal(pixels(result), fitted(image))  # the denoiser did run


# Every family that has the modes -------------------------------------------------------------------


@pytest.mark.parametrize("family", MODE_FAMILIES)
def test_image_to_image_is_seeded_and_sized(family, tiny_studio):
    studio = tiny_studio(family)
    steps_seen = []
    first = studio.generate(request(), on_step=lambda step, total: steps_seen.append((step, total)))
    assert first.images[0].size == (SIZE, SIZE)
    assert steps_seen == [(1, 1)]  # strength 0.5 of 2 steps runs the last one
    assert np.array_equal(pixels(first), pixels(studio.generate(request())))
    assert not np.array_equal(pixels(first), pixels(studio.generate(request(seed=8))))
    assert not np.array_equal(pixels(first), pixels(studio.generate(request(init_image=picture(1)))))


@pytest.mark.parametrize("family", MODE_FAMILIES)
def test_strength_zero_gives_the_input_and_one_gives_text_to_image(family, tiny_studio):
    studio = tiny_studio(family)
    runs = []
    hook = studio.pipe.transformer.register_forward_hook(lambda *args: runs.append(1))
    try:
        untouched = studio.generate(request(strength=0.0, num_images=2))
    finally:
        hook.remove()
    assert runs == []
    assert all(np.array_equal(pixels(untouched, index), fitted(picture())) for index in range(2))
    from_noise = studio.generate(request(strength=1.0))
    assert np.array_equal(pixels(from_noise), pixels(studio.generate(request(strength=1.0, init_image=None))))


@pytest.mark.parametrize("family", MODE_FAMILIES)
@pytest.mark.parametrize("feather", [0, 3])
def test_inpainting_keeps_every_pixel_outside_the_mask(family, feather, tiny_studio):
    studio = tiny_studio(family)
    image = picture()
    mask = square_mask(image)
    result = studio.generate(request(init_image=image, mask=mask, mask_feather=feather, strength=1.0))
    kept = kept_region(mask, feather)
    assert 0 < kept.sum() < SIZE * SIZE
    assert np.array_equal(pixels(result)[kept], fitted(image)[kept])
    assert not np.array_equal(pixels(result)[~kept], fitted(image)[~kept])
    again = studio.generate(request(init_image=image, mask=mask, mask_feather=feather, strength=1.0))
    assert np.array_equal(pixels(result), pixels(again))


@pytest.mark.parametrize("family", MODE_FAMILIES)
def test_inpainting_ends_on_the_inputs_own_latents_outside_the_mask(family, tiny_studio, monkeypatch):
    studio = tiny_studio(family)
    image = picture()
    inpaint = request(init_image=image, mask=square_mask(image), strength=1.0)
    blended = []  # the latents each step hands on, after the blend
    make_blend = image_modes._blender

    def recording_blender(*args):
        blend = make_blend(*args)

        def recorded(step, latents):
            blended.append(blend(step, latents))
            return blended[-1]
        return recorded

    monkeypatch.setattr(image_modes, "_blender", recording_blender)
    studio.generate(inpaint)
    fitted = image_modes.fitted_inputs(inpaint)
    x0 = image_modes.encode_image(studio.pipe, image_modes.CONVENTIONS[studio.family.pipeline_class], fitted.image)
    outside = (image_modes.latent_mask(fitted.mask, x0.shape[2:]) == 0).expand_as(x0)  # (1, C, h, w)
    assert len(blended) == inpaint.steps and outside.any() and not outside.all()
    last = blended[-1]
    assert torch.equal(last[outside], x0[outside])  # exactly the input's, where nothing is repainted
    assert not torch.equal(last[~outside], x0[~outside])


@pytest.mark.parametrize("family", MODE_FAMILIES)
@pytest.mark.parametrize("mode", ["image", "inpaint"])
def test_cancel_works_in_the_image_modes(family, mode, tiny_studio):
    studio = tiny_studio(family)
    image = picture()
    changes = {"strength": 1.0, "mask": square_mask(image) if mode == "inpaint" else None}
    with pytest.raises(GenerationCancelled, match="cancelled after step 1 of 2"):
        studio.generate(request(init_image=image, **changes), on_step=lambda step, total: CANCEL)
    assert studio.generate(request(init_image=image, **changes)).images[0].size == (SIZE, SIZE)


@pytest.mark.parametrize("family", MODE_FAMILIES)
def test_nan_output_is_an_error_in_the_image_modes(family, tiny_folder):
    studio = Studio.load(str(tiny_folder(family)), device="cpu")
    with torch.no_grad():
        studio.pipe.vae.decoder.conv_out.bias.fill_(float("nan"))
    image = picture()
    for mask in (None, square_mask(image)):
        with pytest.raises(GenerationFailed, match="NaN"):
            studio.generate(request(init_image=image, mask=mask))


def test_a_dark_input_may_give_a_dark_picture(sana):
    dark = read_input_image(Image.new("RGB", (SIZE, SIZE)), "init_image")
    assert sana.generate(request(init_image=dark, strength=0.0)).images[0].getextrema() == ((0, 0),) * 3


def test_image_requests_are_batched_apart(sana):
    one, two = picture(0), picture(1)
    requests = [request(init_image=one, seed=3), request(init_image=two, seed=3), request(init_image=None, seed=3),
                request(init_image=one, seed=4, prompt="a blue square")]
    forwards = []
    hook = sana.pipe.transformer.register_forward_hook(lambda *args: forwards.append(1))
    try:
        together = sana.generate_batch(requests)
        batched_forwards = len(forwards)
        alone = [sana.generate(item) for item in requests]
    finally:
        hook.remove()
    # Three groups: the first picture's two requests (1 step), the second picture's (1), text (2 steps).
    assert batched_forwards == len(forwards) - batched_forwards - 1
    for batched, single in zip(together, alone):
        assert np.abs(pixels(batched).astype(int) - pixels(single).astype(int)).max() <= 1
    assert not np.array_equal(pixels(together[0]), pixels(together[1]))


# Settings ------------------------------------------------------------------------------------------


def test_settings_record_the_mode_and_each_input(sana, tmp_path):
    image = picture()
    mask = square_mask(image)
    result = sana.generate(request(init_image=image, mask=mask, mask_feather=2, strength=0.75))
    settings = result.settings[0]
    assert (settings["mode"], settings["strength"], settings["mask_feather"]) == ("inpaint", 0.75, 2)
    assert settings["init_image"] == {"sha256": image.sha256, "width": 48, "height": 40}
    assert settings["mask"] == conditioning.describe(mask)
    path = save_png(result.images[0], settings, tmp_path / "inpainted.png")
    assert read_settings(path) == json.loads(json.dumps(settings))
    with Image.open(path) as saved:
        assert "Denoising strength: 0.75" in saved.text["parameters"]

    text = sana.generate(request(init_image=None)).settings[0]
    assert text["mode"] == "text" and not {"strength", "init_image", "mask", "mask_feather"} & set(text)


def test_settings_of_an_image_mode_need_their_inputs_back(sana, tmp_path):
    image = picture()
    mask = square_mask(image)
    result = sana.generate(request(init_image=image, mask=mask, mask_feather=2, strength=0.75))
    settings = read_settings(save_png(result.images[0], result.settings[0], tmp_path / "inpainted.png"))

    with pytest.raises(ValueError) as error:
        request_from_settings(settings)
    assert str(error.value) == (
        f"this picture was made from the input picture {image.sha256[:12]}... (48x40), which its settings do not "
        "contain; give that input picture as init_image to reproduce it")
    other = picture(1)
    with pytest.raises(ValueError, match=f"init_image is not the input picture this picture was made from: "
                                         f"its SHA-256 begins {other.sha256[:12]}"):
        request_from_settings(settings, init_image=other, mask=mask)
    with pytest.raises(ValueError, match="this picture was made from the mask"):
        request_from_settings(settings, init_image=image)

    again, index = request_from_settings(settings, init_image=image, mask=mask)
    assert (again.mode, again.strength, again.mask_feather, index) == ("inpaint", 0.75, 2, 0)
    assert np.array_equal(pixels(sana.generate(again)), pixels(result))


def test_settings_of_text_to_image_take_no_input():
    text = GenerationRequest(prompt="a cat", seed=3, steps=2, guidance=4.5, width=SIZE, height=SIZE)
    settings = json.loads(json.dumps(image_settings(text, 0, model="m", revision="r", pipeline="SanaPipeline",
                                                    scheduler="S", device="cpu", dtype="float32")))
    assert request_from_settings(settings) == (text, 0)
    with pytest.raises(ValueError, match="this picture was made without an input picture; leave init_image out"):
        request_from_settings(settings, init_image=picture())
    with pytest.raises(ValueError, match="stored mode must be one of text, image, inpaint, extend, reference, got 'sketch'"):
        request_from_settings({**settings, "mode": "sketch"})


def test_composite_puts_the_kept_pixels_back_exactly():
    generated = Image.new("RGB", (4, 1), (200, 10, 10))
    original = Image.fromarray(np.array([[[1, 2, 3], [4, 5, 6], [7, 8, 9], [10, 11, 12]]], dtype=np.uint8))
    mask = Image.fromarray(np.array([[0, 0, 128, 255]], dtype=np.uint8))
    result = np.asarray(conditioning.composite(generated, original, mask))
    assert result[0, :2].tolist() == [[1, 2, 3], [4, 5, 6]] and result[0, 3].tolist() == [200, 10, 10]
    assert 7 < result[0, 2, 0] < 200
    with pytest.raises(ValueError, match="composite: the generated picture, the original and the mask must have one"):
        conditioning.composite(generated, original.resize((2, 1)), mask)


def test_the_embedded_model_paints_into_a_picture(embedded):
    """The shipped model (Sana) inpaints what the prompt asks where the mask says, and nothing else."""
    background = read_input_image(Image.new("RGB", (64, 64), (30, 60, 200)), "init_image")
    repaint = np.zeros((64, 64), dtype=np.uint8)
    repaint[16:48, 16:48] = 255
    mask = read_mask(Image.fromarray(repaint), background.size)
    result = embedded.generate(GenerationRequest(prompt="a red circle", init_image=background, mask=mask,
                                                 strength=1.0, width=64, height=64))
    painted = np.asarray(result.images[0]).astype(int)
    assert (painted[repaint == 0] == (30, 60, 200)).all()
    r, g, b = painted[32, 32]
    assert r > 150 and g < 100 and b < 100, painted[32, 32]


# Extend (outpainting) ------------------------------------------------------------------------------

EXTEND_FAMILIES = ["sana", "z-image"]


def square_picture(seed: int = 0) -> InputImage:
    """A picture that is already 32x32, so that extending it keeps it at its own scale."""
    return picture(seed, size=(SIZE, SIZE))


def extend_request(extend: Extend, **changes) -> GenerationRequest:
    return request(**{"init_image": square_picture(), "extend": extend, "strength": 1.0, "width": None,
                      "height": None, **changes})


def test_extend_is_its_own_mode_and_gives_the_canvas_size():
    extended = extend_request(Extend.to(64, 32, anchor="left"))
    assert extended.mode == "extend" and extended.extend_size == (64, 32)
    assert extend_request(Extend.by(top=16, bottom=16)).extend_size == (32, 64)
    assert extend_request(Extend.to(64, 32), width=64, height=32).extend_size == (64, 32)


@pytest.mark.parametrize("changes, message", [
    ({"init_image": None}, "extend needs an init_image: outpainting puts a picture on a larger canvas, so give the "
                           "picture too"),
    ({"mask": "square"}, "extend makes its own mask (the new border); give either a mask or extend, not both"),
    ({"width": 32}, "width is 32 but extend makes a 64x32 canvas; leave width out or set it to 64"),
    ({"extend": (64, 32)}, "extend must be an Extend (conditioning.Extend.to or .by), got tuple"),
])
def test_extend_requests_are_checked_with_a_sentence(changes, message):
    if changes.get("mask") == "square":
        changes["mask"] = square_mask(square_picture())
    settings = dict(init_image=square_picture(), extend=Extend.to(64, 32), width=None, height=None)
    with pytest.raises(ValueError) as error:
        request(**{**settings, **changes})
    assert str(error.value) == message


@pytest.mark.parametrize("extend, message", [
    (dict(width=64), "extend: give both width and height of the canvas, or neither (then the sides)"),
    (dict(width=64, height=32, left=4), "extend: give either the canvas size or the pixels per side, not both"),
    (dict(), "extend: give the canvas width and height, or at least 1 pixel on one side"),
    (dict(right=3000), "right must be from 0 to 2048 pixels, got 3000 (nearest: 2048)"),
    (dict(width=64, height=32, anchor="middle"), "extend: anchor must be one of center, top, bottom, left, right, "
                                                 "top-left, top-right, bottom-left, bottom-right, got 'middle'"),
])
def test_extend_settings_are_checked_with_a_sentence(extend, message):
    with pytest.raises(ValueError) as error:
        Extend(**extend)
    assert str(error.value) == message


@pytest.mark.parametrize("family", EXTEND_FAMILIES)
def test_extend_keeps_the_picture_exactly_and_paints_the_border(family, tiny_studio):
    studio = tiny_studio(family)
    original = np.asarray(square_picture().image)
    result = studio.generate(extend_request(Extend.to(64, 32, anchor="left")))
    assert result.images[0].size == (64, 32)
    painted = pixels(result)
    assert np.array_equal(painted[:, :SIZE], original)
    edge = np.repeat(original[:, -1:], SIZE, axis=1)  # the canvas's replicated border before denoising
    assert not np.array_equal(painted[:, SIZE:], edge)
    assert np.array_equal(painted, pixels(studio.generate(extend_request(Extend.to(64, 32, anchor="left")))))
    assert not np.array_equal(painted, pixels(studio.generate(extend_request(Extend.to(64, 32, anchor="left"),
                                                                             seed=8))))
    # The same canvas given by sides is the same request.
    assert np.array_equal(painted, pixels(studio.generate(extend_request(Extend.by(right=32)))))


@pytest.mark.parametrize("family", EXTEND_FAMILIES)
def test_extend_keeps_the_picture_where_its_anchor_puts_it(family, tiny_studio):
    studio = tiny_studio(family)
    original = np.asarray(square_picture().image)
    result = studio.generate(extend_request(Extend.to(32, 64, anchor="center")))
    assert result.images[0].size == (32, 64)
    assert np.array_equal(pixels(result)[16:48], original)


@pytest.mark.parametrize("family", EXTEND_FAMILIES)
def test_an_extend_target_the_model_cannot_make_is_refused_with_the_nearest_size(family, tiny_studio):
    studio = tiny_studio(family)
    multiple = studio.limits.size_multiple
    width = 2 * multiple + 1
    with pytest.raises(ValueError) as error:
        studio.generate(extend_request(Extend.to(width, SIZE)))
    assert str(error.value) == (f"extend makes a {width}x{SIZE} canvas, but width and height must be multiples of "
                                f"{multiple} for this model (nearest: {2 * multiple}x{SIZE})")


def test_extend_cancels_between_steps(sana):
    with pytest.raises(GenerationCancelled, match="cancelled after step 1 of 2"):
        sana.generate(extend_request(Extend.by(left=32)), on_step=lambda step, total: CANCEL)


@pytest.mark.parametrize("family", ["z-image", "flux2-klein"])  # the stock call, and diffusers' inpaint pipeline
def test_a_wide_extend_runs_in_passes_each_a_plain_extend_of_the_last(family, tiny_studio):
    studio = tiny_studio(family)
    (_, _, right, _), (_, _, rest, _) = Extend.by(right=32).passes((SIZE, SIZE), studio.limits.size_multiple)
    assert right + rest == 32 and 1.3 < (SIZE + right) / SIZE < 1.5  # 2:1 in two passes
    progress, previewed = [], []
    result = studio.generate(extend_request(Extend.by(right=32)), on_step=lambda *step: progress.append(step),
                             on_preview=lambda step, total, pictures: previewed.append((step, total, pictures[0].size)),
                             preview_every=1)
    assert result.images[0].size == (64, SIZE) and result.settings[0]["extend"] == Extend.by(right=32).to_dict()
    assert progress == [(1, 4), (2, 4), (3, 4), (4, 4)]
    # A step predicts a picture from the one before it in its pass; the run's last is the result.
    assert previewed == ([(2, 4, (SIZE + right, SIZE))] if studio.previews else [])
    first = studio.generate(extend_request(Extend.by(right=right)))
    first_pass = read_input_image(first.images[0], "first pass")
    second = studio.generate(extend_request(Extend.by(right=rest), init_image=first_pass))
    assert np.array_equal(pixels(result), pixels(second))
    assert np.array_equal(pixels(result)[:, :SIZE], np.asarray(square_picture().image))
    again, _ = request_from_settings(result.settings[0], init_image=square_picture())  # the passes follow from it
    assert np.array_equal(pixels(studio.generate(again)), pixels(result))
    # Two images: each extends its own first pass in the second, as alone.
    pair = studio.generate(extend_request(Extend.by(right=32), num_images=2))
    alone = studio.generate(extend_request(Extend.by(right=32), seed=8))
    assert np.abs(pixels(pair, 1).astype(int) - pixels(alone).astype(int)).max() <= 1
    assert np.abs(pixels(pair, 0).astype(int) - pixels(result).astype(int)).max() <= 1
    with pytest.raises(GenerationCancelled, match="cancelled after step 3 of 4"):
        studio.generate(extend_request(Extend.by(right=32)), on_step=lambda step, total: CANCEL if step == 3 else None)


def test_settings_record_the_extend_and_reproduce_it(sana, tmp_path):
    extended = extend_request(Extend.to(64, 32, anchor="right"), mask_feather=2)
    result = sana.generate(extended)
    settings = result.settings[0]
    assert (settings["mode"], settings["mask_feather"], settings["width"], settings["height"]) == ("extend", 2, 64, 32)
    assert settings["extend"] == {"width": 64, "height": 32, "anchor": "right"}
    assert settings["init_image"] == conditioning.describe(square_picture())
    stored = read_settings(save_png(result.images[0], settings, tmp_path / "extended.png"))
    with pytest.raises(ValueError, match="this picture was made from the input picture"):
        request_from_settings(stored)
    again, _ = request_from_settings(stored, init_image=square_picture())
    assert again.extend == Extend.to(64, 32, anchor="right") and again.mode == "extend"
    with pytest.raises(ValueError, match="^stored extend must be an object of width, height and anchor, or left, "
                                         "top, right and bottom, got {'depth': 3}$"):
        request_from_settings({**stored, "extend": {"depth": 3}}, init_image=square_picture())
    assert np.array_equal(pixels(sana.generate(again)), pixels(result))
    by_sides = sana.generate(extend_request(Extend.by(top=8, bottom=24))).settings[0]
    assert by_sides["extend"] == {"left": 0, "top": 8, "right": 0, "bottom": 24}


def test_extend_requests_batch_apart_by_anchor(sana):
    left, right = extend_request(Extend.to(64, 32, anchor="left")), extend_request(Extend.to(64, 32, anchor="right"))
    together = sana.generate_batch([left, right])
    assert np.array_equal(pixels(together[0])[:, :SIZE], np.asarray(square_picture().image))
    assert np.array_equal(pixels(together[1])[:, SIZE:], np.asarray(square_picture().image))
