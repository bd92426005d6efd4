"""Live previews: the picture each step predicts, handed to the caller during the run, changing nothing."""
from __future__ import annotations

import functools
import threading

import numpy as np
import pytest
import torch
from PIL import Image

from helpers.waiting import wait_until
from pipeline import previews
from pipeline.conditioning import read_input_image, read_mask
from pipeline.request import GenerationRequest
from pipeline.studio import Studio

WAIT_S = 60  # upper bound of the joins below; none is a timing assertion


def request(prompt: str = "a red circle", seed: int = 1, steps: int = 5, num_images: int = 1) -> GenerationRequest:
    return GenerationRequest(prompt=prompt, seed=seed, steps=steps, width=32, height=32, num_images=num_images)


class Collected:
    """An `on_preview` that keeps every call."""

    def __init__(self):
        self.calls = []

    def __call__(self, step, total, pictures):
        self.calls.append((step, total, pictures))

    @property
    def steps(self) -> list[int]:
        return [step for step, _, _ in self.calls]


def pixels(image) -> np.ndarray:
    return np.asarray(image, dtype=int)


def count_decodes(studio: Studio, monkeypatch) -> list:
    """Replace the decoder's `decode` by one that records the batch size of each call."""
    calls, decode = [], studio.pipe.vae.decode

    def counted(latents, *args, **kwargs):
        calls.append(latents.shape[0])
        return decode(latents, *args, **kwargs)

    monkeypatch.setattr(studio.pipe.vae, "decode", counted)
    return calls


def test_previews_come_after_every_step_but_the_first_and_last(sana):
    collected = Collected()
    sana.generate(request(steps=5, num_images=2), on_preview=collected, preview_every=1)
    assert collected.steps == [2, 3, 4] == previews.preview_steps(5)
    for step, total, pictures in collected.calls:
        assert total == 5
        assert [picture.size for picture in pictures] == [(32, 32), (32, 32)]
        assert all(picture.mode == "RGB" for picture in pictures)


def test_previews_every_k_steps(sana):
    collected = Collected()
    sana.generate(request(steps=7), on_preview=collected, preview_every=3)
    assert collected.steps == [3, 6] == previews.preview_steps(7, 3)


def test_a_small_decoder_previews_every_third_step_and_a_projection_every_step(sana, embedded):
    # The decoder's previews cost a share of a step (`python -m pipeline bench`); a projection's do not.
    assert (sana.preview_decoder.method, sana.preview_every) == ("decoder", 3)
    assert (embedded.preview_decoder.method, embedded.preview_every) == ("decoder", 3)
    assert previews.PreviewDecoder(sana.pipe.vae, method="projection").every == 1
    collected = Collected()
    embedded.generate(GenerationRequest(prompt="a red circle", seed=1), on_preview=collected)
    assert collected.steps == [3, 6]  # of the embedded preset's 8 steps


@pytest.mark.parametrize("every", [0, -1, 1.5, True])
def test_a_bad_preview_interval_is_refused(sana, every):
    with pytest.raises(ValueError, match=rf"^preview_every must be a whole number of steps, at least 1; got {every!r}$"):
        sana.generate(request(), on_preview=Collected(), preview_every=every)


def test_final_pixels_are_the_same_with_previews_on_and_off(embedded):
    item = GenerationRequest(prompt="a large red circle on the left, blue background", seed=3, steps=6)
    off = embedded.generate(item)
    collected = Collected()
    on = embedded.generate(item, on_preview=collected, preview_every=1)
    assert collected.steps == [2, 3, 4, 5]
    assert np.array_equal(pixels(on.images[0]), pixels(off.images[0]))


def test_previews_off_run_no_extra_decoder_call(tiny_folder, monkeypatch):
    studio = Studio.load(str(tiny_folder("sana")), device="cpu")
    calls = count_decodes(studio, monkeypatch)
    made = []
    monkeypatch.setattr(previews.PreviewDecoder, "__call__",
                        lambda self, latents, width, height: made.append(tuple(latents.shape)) or [])
    studio.generate(request(steps=5))
    assert (calls, made) == ([1], [])  # the final decode only
    calls.clear()
    studio.generate(request(steps=5), on_preview=Collected(), preview_every=1)
    # Steps 2, 3 and 4 each project their (B, C, h, w) latents; the decoder runs for the result only.
    assert calls == [1] and made == [(1, 4, 16, 16)] * 3


def test_the_decoder_method_decodes_each_preview(sana, monkeypatch):
    sana._preview_decoder = previews.PreviewDecoder(sana.pipe.vae, method="decoder")
    calls = count_decodes(sana, monkeypatch)
    collected = Collected()
    try:
        sana.generate(request(steps=5), on_preview=collected, preview_every=1)
    finally:
        sana._preview_decoder = None
    assert calls == [1, 1, 1, 1]  # steps 2, 3 and 4, then the result
    assert [[picture.size for picture in pictures] for _, _, pictures in collected.calls] == [[(32, 32)]] * 3


def test_the_last_preview_is_close_to_the_result(embedded):
    item = GenerationRequest(prompt="a large red circle on the left, blue background", seed=3, steps=8)
    collected = Collected()
    result = embedded.generate(item, on_preview=collected, preview_every=1)
    assert embedded.preview_decoder.method == "decoder"  # a small decoder
    final = pixels(result.images[0])
    errors = [float(np.abs(pixels(pictures[0]) - final).mean()) for _, _, pictures in collected.calls]
    # Mean difference in levels of 255; the prediction converges to the result.
    assert errors[-1] < 6.0, errors
    assert errors[-1] < errors[0], errors


def pooled(image, factor: int) -> np.ndarray:
    array = pixels(image).astype(float)
    height, width, _ = array.shape
    return array.reshape(height // factor, factor, width // factor, factor, 3).mean(axis=(1, 3))


def test_the_fitted_projection_carries_the_colours_of_the_prediction(embedded):
    """The projection fitted to the encoder and decoder, on a run's predicted latents: its colours at
    latent resolution against the decoder's, and against a flat grey that knows nothing."""
    recorded = []
    decoder = previews.PreviewDecoder(embedded.pipe.vae, method="decoder")
    projection = previews.PreviewDecoder(embedded.pipe.vae, method="projection")
    matrix, bias = projection.projection()
    assert matrix.shape == (3, embedded.pipe.vae.config.latent_channels) and bias.shape == (3,)
    def record(latents, width, height):
        recorded.append(latents.clone())
        return decoder(latents, width, height)

    embedded._preview_decoder = record
    try:
        embedded.generate(GenerationRequest(prompt="a large red circle on the left, blue background", seed=3,
                                            steps=8), on_preview=Collected(), preview_every=1)
    finally:
        embedded._preview_decoder = None
    assert len(recorded) == 6
    latents = recorded[-1]  # (1, C, 16, 16)
    by_decoder = pooled(decoder(latents, 64, 64)[0], 8)
    by_projection = pooled(projection(latents, 64, 64)[0], 8)
    error = float(np.abs(by_projection - by_decoder).mean())
    grey = float(np.abs(127.5 - by_decoder).mean())
    assert error < 30 and error < grey / 2, (error, grey)


@pytest.mark.parametrize("name", ["z-image", "lumina2"])
def test_previews_of_the_families_with_a_shifted_decoder(tiny_studio, name):
    studio = tiny_studio(name)
    assert studio.previews
    collected = Collected()
    studio.generate(GenerationRequest(prompt="a red circle", seed=1, steps=4, width=32, height=32),
                    on_preview=collected, preview_every=1)
    assert collected.steps == [2, 3]
    assert [[picture.size for picture in pictures] for _, _, pictures in collected.calls] == [[(32, 32)]] * 2
    # The projection a large decoder of the family would get, fitted through its encoder and decoder.
    projection = previews.PreviewDecoder(studio.pipe.vae, method="projection")
    matrix, bias = projection.projection()
    assert matrix.shape == (3, studio.pipe.vae.config.latent_channels) and bias.shape == (3,)
    assert torch.isfinite(matrix).all() and torch.isfinite(bias).all()
    latents = torch.randn(2, studio.pipe.vae.config.latent_channels, 4, 4, generator=torch.Generator().manual_seed(1))
    assert [picture.size for picture in projection(latents, 32, 32)] == [(32, 32), (32, 32)]


def test_a_model_without_previews_runs_without_them(tiny_folder):
    studio = Studio.load(str(tiny_folder("sana")), device="cpu")
    scheduler = studio.pipe.scheduler
    studio.pipe.scheduler = type(scheduler).from_config(scheduler.config, stochastic_sampling=True)
    assert not studio.previews
    collected = Collected()
    result = studio.generate(request(steps=4), on_preview=collected, preview_every=1)
    assert collected.calls == [] and len(result.images) == 1


def test_each_request_of_a_batch_gets_its_own_previews(tiny_folder, monkeypatch):
    studio = Studio.load(str(tiny_folder("sana")), device="cpu")
    first, second = request("a red circle", 1, steps=4), request("a blue square", 7, steps=4, num_images=2)
    alone = Collected()
    studio.generate(second, on_preview=alone, preview_every=1)

    batches, started, run_batch = [], threading.Event(), studio.generate_batch

    def held(requests, on_step=None, on_preview=None):
        batches.append([item.prompt for item in requests])
        if len(batches) == 1:
            started.set()
            wait_until(lambda: studio.waiting == 2, "two requests to queue")
        return run_batch(requests, on_step, on_preview=on_preview)

    monkeypatch.setattr(studio, "generate_batch", held)
    seen = {"a red circle": Collected(), "a blue square": Collected(), "a green triangle": Collected()}
    third = request("a green triangle", 2, steps=4)
    threads = [threading.Thread(target=studio.generate, args=(item,),
                                kwargs={"on_preview": seen[item.prompt], "preview_every": 1})
               for item in (first, second, third)]
    threads[0].start()
    assert started.wait(WAIT_S), "the first request never started"
    threads[1].start()
    wait_until(lambda: studio.waiting == 1, "the second request to queue")
    threads[2].start()
    wait_until(lambda: studio.waiting == 2, "the third request to queue")
    for thread in threads:
        thread.join(WAIT_S)
    assert batches == [["a red circle"], ["a blue square", "a green triangle"]]
    assert [len(pictures) for _, _, pictures in seen["a blue square"].calls] == [2, 2]
    assert [len(pictures) for _, _, pictures in seen["a green triangle"].calls] == [1, 1]
    for (_, _, batched), (_, _, own) in zip(seen["a blue square"].calls, alone.calls):
        for picture, reference in zip(batched, own):
            assert np.abs(pixels(picture) - pixels(reference)).max() <= 2


def test_every_pipeline_the_studio_runs_has_a_rule():
    from pipeline.families import FAMILIES
    from pipeline.image_modes import FROM_PIPE

    classes = {*FAMILIES, *(name for modes in FROM_PIPE.values() for name in modes.values())}
    assert sorted(classes - set(previews.RULES)) == []


# The families whose callbacks hand over packed tokens (FLUX.2 klein, Qwen-Image) or TrigFlow latents (Sana-Sprint).
PACKED_AND_TRIGFLOW = ("flux2-klein", "qwen-image", "sana-sprint")
WIDE = dict(width=64, height=32)  # not square, so that a token grid read the wrong way round shows


def wide_request(**changes) -> GenerationRequest:
    return GenerationRequest(**{**dict(prompt="a red circle", seed=1, steps=4, num_images=2, **WIDE), **changes})


def same_pixels(first, second) -> bool:
    return all(np.array_equal(pixels(a), pixels(b)) for a, b in zip(first.images, second.images, strict=True))


@pytest.mark.parametrize("name", PACKED_AND_TRIGFLOW)
def test_previews_of_packed_and_trigflow_families_change_no_pixel(tiny_studio, name):
    studio = tiny_studio(name)
    assert studio.previews
    item = wide_request()
    off = studio.generate(item)
    collected = Collected()
    on = studio.generate(item, on_preview=collected, preview_every=1)
    assert collected.steps == [2, 3]
    for _, total, pictures in collected.calls:
        assert total == 4 and [picture.size for picture in pictures] == [(64, 32)] * 2
    assert same_pixels(on, off)


def record_steps(monkeypatch) -> list:
    """Keep the latents every step hands the tracker."""
    stepped, after_step = [], previews.PreviewTracker.after_step

    def recording(self, step, total, latents, entering_next):
        stepped.append(latents.clone())
        return after_step(self, step, total, latents, entering_next)

    monkeypatch.setattr(previews.PreviewTracker, "after_step", recording)
    return stepped


def vary_statistics(vae) -> None:
    """Give the latent statistics that a decoder's own normalisation reads (FLUX.2's batch norm, Qwen-Image's
    mean and std) seeded values away from the tiny models' 0 and 1, so that a rule that skips them shows."""
    generator = torch.Generator().manual_seed(5)
    if hasattr(vae, "bn"):
        vae.bn.running_mean.copy_(torch.randn(vae.bn.running_mean.shape, generator=generator))
        vae.bn.running_var.copy_(torch.rand(vae.bn.running_var.shape, generator=generator) + 0.5)
    if vae.config.get("latents_std") is not None:
        channels = len(vae.config.latents_std)
        vae.register_to_config(latents_mean=torch.randn(channels, generator=generator).tolist(),
                               latents_std=(torch.rand(channels, generator=generator) + 0.5).tolist())


def decoded_and_ruled(studio, item: GenerationRequest, monkeypatch) -> tuple[torch.Tensor, torch.Tensor]:
    """(what the pipeline's own decode gives its decoder, what the family's rule makes of the last step's
    latents) for a run of `item` with previews; the two must be equal."""
    stepped, decoded, decode = record_steps(monkeypatch), [], studio.pipe.vae.decode
    monkeypatch.setattr(studio.pipe.vae, "decode",
                        lambda latents, *args, **kwargs: decoded.append(latents.clone()) or decode(latents, *args, **kwargs))
    studio.generate(item, on_preview=Collected(), preview_every=1)
    assert len(stepped) == item.steps
    final = decoded[-1]  # the pipeline's own decode comes after every step (and preview)
    theirs = final if final.ndim == 4 else final[:, :, 0]  # Qwen-Image decodes one video frame
    pipe = studio.mode_pipeline(item.mode) or studio.pipe
    return theirs, previews.RULES[type(pipe).__name__].to_decoder(pipe, stepped[-1], item.width, item.height)


@pytest.mark.parametrize("name", ["sana", "z-image", "lumina2", *PACKED_AND_TRIGFLOW])
def test_the_rule_hands_the_decoder_what_the_pipeline_decodes(tiny_folder, monkeypatch, name):
    """After the last step the clean prediction is the latents themselves: the family's rule must then
    give exactly what the pipeline's own decode gives its decoder."""
    studio = Studio.load(str(tiny_folder(name)), device="cpu")
    vary_statistics(studio.pipe.vae)
    theirs, ours = decoded_and_ruled(studio, wide_request(steps=3, num_images=1), monkeypatch)
    assert torch.equal(ours, theirs)


def record_clean_predictions(scheduler, monkeypatch) -> list:
    """Keep each step's clean latents as the scheduler itself computes them: SCMScheduler's `denoised`,
    or x_t - sigma * v from the flow-matching step's own inputs."""
    predictions, step = [], scheduler.step

    @functools.wraps(step)  # the pipelines read the step's signature
    def recording(model_output, timestep, sample, *args, **kwargs):
        output = step(model_output, timestep, sample, *args, **kwargs)
        if type(scheduler).__name__ == previews.TRIGFLOW:
            predictions.append(output[1].clone())
        else:
            sigma = scheduler.sigmas[scheduler.step_index - 1]
            predictions.append(sample.float() - sigma * model_output.float())
        return output

    monkeypatch.setattr(scheduler, "step", recording)
    return predictions


# Largest difference between the tracker's clean latents, from consecutive steps' latents (and the replayed
# noise for TrigFlow), and the scheduler's own: rounding only, measured at most 3e-6 where latents reach 14.
CLEAN_TOLERANCE = 2e-5


@pytest.mark.parametrize("name", ["sana", *PACKED_AND_TRIGFLOW])
def test_each_preview_projects_the_steps_own_clean_prediction(tiny_folder, monkeypatch, name):
    studio = Studio.load(str(tiny_folder(name)), device="cpu")
    projection = previews.PreviewDecoder(studio.pipe.vae, method="projection")
    given = []

    def record(latents, width, height):
        given.append(latents.clone())
        return projection(latents, width, height)

    studio._preview_decoder = record
    exact = record_clean_predictions(studio.pipe.scheduler, monkeypatch)
    collected = Collected()
    studio.generate(wide_request(), on_preview=collected, preview_every=1)
    assert collected.steps == [2, 3] and len(exact) == 4
    rule = previews.RULES[type(studio.pipe).__name__]
    for (step, _, pictures), latents in zip(collected.calls, given, strict=True):
        expected = rule.to_decoder(studio.pipe, exact[step - 1], **WIDE)  # (2, C, h, w)
        assert latents.shape == expected.shape
        assert float((latents - expected).abs().max()) < CLEAN_TOLERANCE
        for picture, reference in zip(pictures, projection(expected, **WIDE), strict=True):
            assert np.abs(pixels(picture) - pixels(reference)).max() <= 1


def square_mask(size: tuple[int, int]):
    mask = np.zeros(size[::-1], dtype=np.uint8)
    mask[8:24, 16:48] = 255
    return read_mask(Image.fromarray(mask), size)


# Image modes through diffusers' own pipelines, built with `from_pipe`.
MODE_CASES = [("qwen-image", "image"), ("qwen-image", "inpaint"), ("flux2-klein", "inpaint"), ("sana-sprint", "image")]


@pytest.mark.parametrize("name, mode", MODE_CASES)
def test_previews_of_the_mode_pipelines(tiny_studio, name, mode):
    studio = tiny_studio(name)
    rng = np.random.default_rng(0)
    picture = read_input_image(Image.fromarray(rng.integers(0, 256, (32, 64, 3), dtype=np.uint8)), "init_image")
    item = wide_request(init_image=picture, strength=1.0, mask=square_mask((64, 32)) if mode == "inpaint" else None)
    off = studio.generate(item)
    collected = Collected()
    on = studio.generate(item, on_preview=collected, preview_every=1)
    assert type(studio.mode_pipeline(mode)).__name__ in previews.RULES
    assert collected.steps == [2, 3]
    assert all([picture.size for picture in pictures] == [(64, 32)] * 2 for _, _, pictures in collected.calls)
    assert same_pixels(on, off)


@pytest.mark.parametrize("name", ["flux2-klein", "qwen-image-edit", "qwen-image-edit-plus"])
def test_previews_of_reference_editing(tiny_studio, monkeypatch, name):
    import diffusers.pipelines.qwenimage.pipeline_qwenimage_edit as edit
    import diffusers.pipelines.qwenimage.pipeline_qwenimage_edit_plus as edit_plus

    # The edit pipelines resize every reference to about a megapixel; the tiny models see 1/256 of that area.
    for module in (edit, edit_plus):
        monkeypatch.setattr(module, "calculate_dimensions",
                            lambda area, ratio, original=module.calculate_dimensions: original(area / 256, ratio))
    studio = tiny_studio(name)
    assert studio.previews
    rng = np.random.default_rng(0)
    reference = read_input_image(Image.fromarray(rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)), "reference")
    item = wide_request(prompt="make the circle red", num_images=1, references=(reference,))
    theirs, ours = decoded_and_ruled(studio, item, monkeypatch)
    assert torch.equal(ours, theirs)
    off = studio.generate(item)
    collected = Collected()
    on = studio.generate(item, on_preview=collected, preview_every=1)
    assert collected.steps == [2, 3]
    assert all([picture.size for picture in pictures] == [(64, 32)] for _, _, pictures in collected.calls)
    assert same_pixels(on, off)
