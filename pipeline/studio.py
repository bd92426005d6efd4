"""The studio: one object that turns a `GenerationRequest` into finished, reproducible images.

    studio = Studio.load("embedded")
    result = studio.generate(GenerationRequest(prompt="a red circle"), on_step=callback)

Underneath is a stock diffusers pipeline of the model's family. The studio adds what diffusers
does not do: request validation against the model's limits, an LRU cache of LLM prompt
encodings, seeded CPU noise (the same seed gives the same image on any device), cancellation
between steps, a check for NaN / black output, post-processing, and per-stage timings.

Stages of `generate`, each timed in the result:
1. validate  - fill defaults from the model, check every limit; nothing runs on bad input
2. encode    - LLM prompt encoding, cached by (prompt, negative prompt, whether CFG runs, and the
               references' hashes for the families whose encoder sees them)
3. denoise   - the stock pipeline's denoising loop from per-image seeded noise; in the image modes
               from the encoded input picture noised to the strength's sigma (`image_modes`), or
               through the family's own diffusers image pipeline, built once with `from_pipe`;
               reference editing gives the references to the family's call (`references`)
   With `on_preview`, the picture each step predicts is shown on the way (`pipeline.previews`).
4. decode    - the pipeline's latent decoder (tiled for large sizes), checked for NaN/black;
               inpainting and extend then put the kept pixels back exactly
   Extend paints a wide border in passes of stages 3 and 4, each on a larger canvas
   (`conditioning.Extend.passes`).
5. postprocess - the optional chain: denoise -> colour -> upsample

`generate` may be called from many threads: requests that wait for the device together are served
as one forward batch (`pipeline.batching`); `generate_batch` takes a list directly. One request's
bad file or failing post-processing fails that request only, never the others of its batch.
"""
from __future__ import annotations

import logging
import math
import threading
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Callable

import numpy as np
import torch
from PIL import Image

from pipeline import deliverables, image_modes, previews, references, speed
from pipeline.batching import BatchingQueue, batch_key
from pipeline.conditioning import Extend, InputImage, composite
from pipeline.deliverables import Deliverable, Rendered
from pipeline.families import Embeddings, concat_embeddings, encode_prompt, repeat_embeddings
from pipeline.marking import WATERMARK, WATERMARK_METHOD, WATERMARK_MIN_SIDE, add_watermark, check_watermark_available
from pipeline.metadata import image_settings
from pipeline.models import ModelSource, load_pipeline, model_limits, resolve
from pipeline.postprocess import PostprocessChain, StageInputs
from pipeline.safety import SafetyGate, SafetySettings
from pipeline.request import (CANCEL, BatchPartlyFailed, GenerationCancelled, GenerationFailed, GenerationRequest,
                              GenerationResult, StepCallback)

if TYPE_CHECKING:
    from diffusers import DiffusionPipeline

    from pipeline.enhance import Enhancement, PromptEnhancer

log = logging.getLogger(__name__)

# An image whose brightest channel stays below this (0..1 scale) is reported as black.
BLACK_LEVEL = 2 / 255


class _Stop(Exception):
    def __init__(self, step: int):
        self.step = step


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


class Studio:
    """Owns the tokenizer + LLM text encoder, denoiser, scheduler, decoder and post-processing chain."""

    def __init__(self, source: ModelSource, pipe: DiffusionPipeline, device: str, *,
                 speed_options: speed.SpeedOptions | None = None, cache_size: int = 64, max_batch: int = 4,
                 safety: SafetyGate | None = None, watermark: bool = False,
                 device_wrapper: Callable[[Callable], Callable] | None = None, enhancer: str | None = None):
        """`safety`: the host's content gate, if any; `watermark`: hide `marking.WATERMARK` in every
        picture; `device_wrapper`: applied to the batch runner and the prompt writer, which hold the
        device (a Space's `spaces.GPU`, see `pipeline.hosting`); `enhancer`: the prompt writer's
        reference (`pipeline.enhance.build_enhancer`; None: the model's own), built on first use."""
        if watermark:
            check_watermark_available()
        self.source = source
        self.pipe = pipe
        self.limits = model_limits(source, pipe)
        self.device = device
        self.speed = speed_options or speed.SpeedOptions()
        self.dtype = pipe.transformer.dtype
        self.postprocess_chain = PostprocessChain(device=device)
        self.safety = safety
        self.watermark = watermark
        self._cache: OrderedDict[tuple, Embeddings] = OrderedDict()
        self._cache_size = cache_size
        # Image-mode pipelines built with `from_pipe`, by class name: they share `pipe`'s modules.
        self._mode_pipes: dict[str, DiffusionPipeline] = {}
        self._preview_decoder: previews.PreviewDecoder | None = None
        # diffusers pipelines keep per-call state (scheduler timesteps, guidance scale) on the
        # object, so one call at a time.
        self._lock = threading.Lock()
        # `generate` from many threads: what queues up while the device is busy runs as one batch.
        def run_batch(requests: list[GenerationRequest], on_step: StepCallback | None,
                      on_preview: previews.BatchPreviewCallback | None = None) -> list[GenerationResult]:
            if on_preview is None:
                return self.generate_batch(requests, on_step)
            return self.generate_batch(requests, on_step, on_preview=on_preview)

        self._queue = BatchingQueue(run_batch if device_wrapper is None else device_wrapper(run_batch),
                                    max_batch=max_batch)
        self.enhancer_reference = enhancer
        self._enhancer: PromptEnhancer | None = None
        self._enhancer_lock = threading.Lock()
        self._rewrite = self._rewrite_on_device if device_wrapper is None else device_wrapper(self._rewrite_on_device)

    @classmethod
    def load(cls, reference: str, device: str | None = None, *, speed_options: speed.SpeedOptions | None = None,
             cache_size: int = 64, max_batch: int = 4, like: str | None = None,
             safety: SafetySettings | None = None, watermark: bool = False,
             device_wrapper: Callable[[Callable], Callable] | None = None, enhancer: str | None = None) -> Studio:
        """Resolve and load a model (bf16 on CUDA, fp32 on CPU unless `speed_options` say otherwise).

        `like`: a preset whose settings apply to `reference` (see `models.resolve`); `safety`: turn
        the content gate on with these settings. The other options are the constructor's."""
        device = device or default_device()
        speed.check_device(device)
        options = speed_options or speed.SpeedOptions()
        dtype = options.torch_dtype(device)
        started = time.perf_counter()
        source = resolve(reference, like)
        pipe = speed.apply(load_pipeline(source, dtype), device, options)
        log.info("loaded %s (%s, %s) on %s as %s in %.1f s", reference, source.family.pipeline_class,
                 source.revision, device, str(dtype).removeprefix("torch."), time.perf_counter() - started)
        gate = SafetyGate(safety, device, llm=(pipe.text_encoder, pipe.tokenizer)) if safety is not None else None
        return cls(source, pipe, device, speed_options=options, cache_size=cache_size, max_batch=max_batch,
                   safety=gate, watermark=watermark, device_wrapper=device_wrapper, enhancer=enhancer)

    @property
    def max_batch(self) -> int:
        """The most requests `generate` serves together."""
        return self._queue.max_batch

    @property
    def waiting(self) -> int:
        """Requests given to `generate` that wait for the device."""
        return self._queue.waiting

    @property
    def family(self):
        return self.source.family

    def resolve(self, request: GenerationRequest) -> GenerationRequest:
        """The request with the model's defaults filled in; ValueError if out of limits."""
        return self.limits.resolve(request)

    def validate(self, request: GenerationRequest) -> tuple[GenerationRequest, StageInputs]:
        """Stage 1: the resolved request and the post-processing files it names, loaded.

        ValueError, naming the field, for a value out of limits or a file that cannot be read, so
        that nothing runs for a request that would fail; `safety.PromptRefused` for a prompt the
        host's gate refuses.
        """
        request = self.resolve(request)
        # Colour statistics recorded beside the reference, so that the PNG redoes the colour stage without it.
        request = request.replace(postprocess=self.postprocess_chain.resolve(request.postprocess))
        image_modes.check_supported(self.family, self.pipe, request)
        if self.safety is not None:
            # Not the negative prompt: naming what to avoid ("nsfw, gore") is what a careful visitor does.
            self.safety.check_prompt(*dict.fromkeys((request.prompt, request.encoded_prompt)))
        return request, self.postprocess_chain.prepare(request.postprocess)

    def encode(self, prompt: str, negative_prompt: str, cfg: bool, pictures: tuple = ()) -> Embeddings:
        """Stage 2: the LLM's encoding of the prompt (and negative prompt when CFG runs), cached; with the
        reference pictures (`InputImage`s) for a family whose encoder sees them, keyed by their hashes."""
        if not references.encodes_pictures(self.family.pipeline_class):
            pictures = ()
        key = (prompt, negative_prompt if cfg else "", cfg, tuple(picture.sha256 for picture in pictures))
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        embeddings = encode_prompt(self.family, self.pipe, key[0], key[1], cfg, self.source.encode_options,
                                   [picture.image for picture in pictures])
        self._cache[key] = embeddings
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return embeddings

    def clear_cache(self) -> None:
        self._cache.clear()

    @property
    def enhancer(self) -> PromptEnhancer:
        """The prompt writer, built once on first use; ValueError, one sentence, when it cannot be."""
        with self._enhancer_lock:
            if self._enhancer is None:
                from pipeline.enhance import build_enhancer

                self._enhancer = build_enhancer(self.enhancer_reference, studio=self, device=self.device)
            return self._enhancer

    def enhance(self, prompt: str, seed: int | None = None, task: str = "text",
                should_stop: Callable[[], bool] | None = None) -> Enhancement:
        """`prompt` rewritten as a full description by the prompt writer (`pipeline.enhance`), for a
        request's `enhanced_prompt`. The same (prompt, seed, task) is rewritten once. ValueError for a
        bad prompt or a writer that cannot be built, `safety.PromptRefused` when the host's gate refuses
        the prompt or its rewrite; `EnhanceFailed`, one sentence, when the writer gives nothing usable
        (generate from `prompt` then)."""
        from pipeline.enhance.base import check

        check(prompt, task, seed)  # before waiting for the device
        if self.safety is not None:
            self.safety.check_prompt(prompt)
        enhancer = self.enhancer
        result = enhancer.cached(prompt, task=task, seed=seed) or self._rewrite(prompt, seed, task, should_stop)
        if self.safety is not None:
            self.safety.check_prompt(result.text)
        return result

    def written(self, prompt: str, text: str) -> Enhancement | None:
        """The prompt writer's record of `text` as a rewrite of `prompt` (`PromptEnhancer.written`), for
        the request's `enhancer` fields; None when the writer has not rewritten `prompt` (or is not built)."""
        with self._enhancer_lock:
            enhancer = self._enhancer
        return None if enhancer is None else enhancer.written(prompt, text)

    def vocabulary_notice(self, text: str) -> str | None:
        """For the embedded model, which knows only its prompt contract's words, one sentence naming
        the words of `text` it does not know (`pipeline.enhance.unknown_words_notice`); else None."""
        preset = self.source.preset
        if preset is None or preset.name != "embedded":
            return None
        from pipeline.enhance import unknown_words_notice

        return unknown_words_notice(text)

    def _rewrite_on_device(self, prompt: str, seed: int | None, task: str,
                           should_stop: Callable[[], bool] | None) -> Enhancement:
        # The model's own writer is its text encoder: it runs between batches, never during one.
        with self._lock:
            return self.enhancer.enhance(prompt, task=task, seed=seed, should_stop=should_stop)

    def deliverable(self, request: GenerationRequest, deliverable: Deliverable | str, **options) -> Rendered:
        """`request` drawn as a deliverable of exact pixels (`pipeline.deliverables.render`; `options`:
        fit, anchor, colour, on_step, keys)."""
        return deliverables.render(self, request, deliverable, **options)

    @property
    def previews(self) -> bool:
        """Whether `generate` can show live previews for this model (`pipeline.previews`)."""
        return previews.supports_previews(self.pipe)

    @property
    def preview_every(self) -> int:
        """Steps between live previews when a caller names none: every third step where the model's
        own decoder makes them, every step for a projection (`previews.PreviewDecoder`)."""
        return self.preview_decoder.every if self.previews else 1

    def generate(self, request: GenerationRequest, on_step: StepCallback | None = None, *,
                 on_preview: previews.PreviewCallback | None = None,
                 preview_every: int | None = None) -> GenerationResult:
        """Run every stage; raises ValueError (bad request), GenerationCancelled or GenerationFailed.

        `on_step(step, total)` after each step (CANCEL from it stops the run); `on_preview(step, total,
        pictures)`, if given, after every `preview_every`-th step (by default the model's own
        `preview_every`) but the first and the last, with this request's pictures as the step
        predicts them, for a model with `previews`. Previews change no pixel of the result.

        Safe to call from many threads at once (the web app does): a request that finds the device
        busy waits, and compatible requests that waited together are then served as one batch
        (`pipeline.batching`), each with its own progress, cancellation and errors.
        """
        if preview_every is None:
            preview_every = self.preview_every
        previews.check_every(preview_every)
        request, _ = self.validate(request)  # a bad value or missing file fails before the queue
        if on_preview is None or not self.previews:
            return self._queue.submit(request, on_step)
        return self._queue.submit(request, on_step, on_preview=on_preview, preview_every=preview_every)

    def generate_batch(self, requests: list[GenerationRequest], on_step: StepCallback | None = None,
                       on_preview: previews.BatchPreviewCallback | None = None) -> list[GenerationResult]:
        """Serve several requests at once, one result each, in order.

        Requests with the same steps, guidance, size and input picture (`batching.batch_key`) share
        one forward batch of the denoiser and decoder; each image keeps its own seed, so it matches
        the request served alone up to the rounding of batched matrix products. Every request is
        validated before any runs. `on_preview(step, total, pictures)`: `pictures()` gives the step's
        predicted pictures of a forward batch, in request order (`pipeline.previews`).
        A request that fails on its own (a value out of limits, a file that cannot be read, a
        post-processing stage) does not fail the others: they are served, then `BatchPartlyFailed`
        carries every request's result or error.
        """
        with self._lock:
            started = time.perf_counter()
            validated = [self._validated(request) for request in requests]  # (request, inputs), or the error
            validate_s = time.perf_counter() - started
            outcomes = [item if isinstance(item, Exception) else None for item in validated]
            ready = [index for index, item in enumerate(validated) if not isinstance(item, Exception)]
            for group in _compatible_groups([validated[index][0] for index in ready]):
                indices = [ready[member] for member in group]
                resolved, inputs = zip(*(validated[index] for index in indices))
                results = self._run_group(list(resolved), list(inputs), on_step, on_preview)
                for index, result in zip(indices, results):
                    if isinstance(result, GenerationResult):
                        result.timings = {"validate": validate_s, **result.timings}
                    outcomes[index] = result
            if any(isinstance(outcome, Exception) for outcome in outcomes):
                raise BatchPartlyFailed(outcomes)
            return outcomes

    def _validated(self, request: GenerationRequest) -> tuple[GenerationRequest, StageInputs] | Exception:
        """`validate(request)`, or the error it raised: one request's bad value or file fails it alone."""
        try:
            return self.validate(request)
        except Exception as error:  # noqa: BLE001 - handed to this request's caller only
            return error

    def _run_group(self, requests: list[GenerationRequest], inputs: list[StageInputs], on_step: StepCallback | None,
                   on_preview: previews.BatchPreviewCallback | None) -> list[GenerationResult | Exception]:
        first = requests[0]  # all share steps, guidance, size and input picture
        seeds = [request.seed + index for request in requests for index in range(request.num_images)]
        passes = [] if first.extend is None else first.extend.passes(first.init_image.size, self.limits.size_multiple)
        if first.init_image is not None and image_modes.denoising_steps(first.steps, first.strength) == 0:
            # Strength 0: the input as it is, with nothing run on it.
            picture = image_modes.fitted_inputs(first).image
            originals = [picture.copy() for _ in seeds]
            timings = {"encode": 0.0, "denoise": 0.0, "decode": 0.0}
        elif len(passes) > 1:
            originals, timings = self._extend_in_passes(requests, seeds, passes, on_step, on_preview)
        else:
            fitted = None if first.init_image is None else [image_modes.fitted_inputs(first)] * len(seeds)
            originals, timings = self._generate_images(requests, seeds, fitted, on_step, on_preview)

        results, offset = [], 0
        for request, request_inputs in zip(requests, inputs):
            own = originals[offset:offset + request.num_images]
            offset += request.num_images
            results.append(self._finish(request, request_inputs, own, dict(timings)))
        return results

    def _generate_images(self, requests: list[GenerationRequest], seeds: list[int],
                         fitted: list[image_modes.FittedInputs] | None,
                         on_step: StepCallback | None,
                         on_preview: previews.BatchPreviewCallback | None) -> tuple[list[Image.Image], dict[str, float]]:
        """Stages 2 to 4 for requests that share one forward batch: one picture per seed, and the timings.
        `fitted`: each image's input (the same one, but in extend's later passes), or None."""
        started = time.perf_counter()
        embeddings = self._embeddings(requests)
        encode_s = time.perf_counter() - started
        originals, denoise_s, decode_s = self._pictures(requests[0], embeddings, seeds, fitted, on_step, on_preview)
        return originals, {"encode": encode_s, "denoise": denoise_s, "decode": decode_s}

    def _extend_in_passes(self, requests: list[GenerationRequest], seeds: list[int],
                          passes: list[tuple[int, int, int, int]], on_step: StepCallback | None,
                          on_preview: previews.BatchPreviewCallback | None
                          ) -> tuple[list[Image.Image], dict[str, float]]:
        """Stages 2 to 4 of an extend whose border is painted in `passes` (`Extend.passes`): each pass
        is one forward batch that extends every image's canvas so far by the pass's sides. Progress,
        cancellation and previews count the steps of all passes as one run."""
        first = requests[0]
        started = time.perf_counter()
        embeddings = self._embeddings(requests)
        timings = {"encode": time.perf_counter() - started, "denoise": 0.0, "decode": 0.0}
        each = image_modes.denoising_steps(first.steps, first.strength)
        pictures = [image_modes.placed_picture(first)] * len(seeds)
        for index, sides in enumerate(passes):
            fitted = image_modes.extend_pass(pictures, sides, first.mask_feather)
            width, height = fitted[0].image.size
            request = first.replace(init_image=InputImage(pictures[0], "", pictures[0].size), extend=Extend.by(*sides),
                                    width=width, height=height)
            pictures, denoise_s, decode_s = self._pictures(request, embeddings, seeds, fitted, on_step, on_preview,
                                                           progress=(index * each, len(passes) * each))
            timings["denoise"] += denoise_s
            timings["decode"] += decode_s
        return pictures, timings

    def _embeddings(self, requests: list[GenerationRequest]) -> Embeddings:
        """Stage 2: the prompt encodings of one forward batch, one per image."""
        first = requests[0]
        cfg = self.family.cfg_active(first.guidance, self.pipe)
        if references.one_prompt_per_batch(self.family.pipeline_class):
            # The batch shares one prompt (`batching.batch_key`); the pipeline repeats it per image.
            return self.encode(first.encoded_prompt, first.negative_prompt, cfg, first.references)
        return concat_embeddings([
            repeat_embeddings(self.encode(request.encoded_prompt, request.negative_prompt, cfg, request.references),
                              request.num_images)
            for request in requests], self.family.masks)

    def _pictures(self, request: GenerationRequest, embeddings: Embeddings, seeds: list[int],
                  fitted: list[image_modes.FittedInputs] | None, on_step: StepCallback | None,
                  on_preview: previews.BatchPreviewCallback | None,
                  progress: tuple[int, int] | None = None) -> tuple[list[Image.Image], float, float]:
        """Stages 3 and 4, checked: one 8-bit picture per seed with inpainting's kept pixels put back,
        and the denoise and decode times. `progress`: see `_denoise_and_decode`."""
        pixels, denoise_s, decode_s = self._denoise_and_decode(request, embeddings, seeds, fitted, on_step, on_preview,
                                                               progress)
        # A dark input may rightly give a dark picture; only text-to-image's black output is a failure.
        self._check_output(pixels, check_black=fitted is None or max(
            image_modes.each_once(fitted, lambda item: np.asarray(item.image).max())) >= BLACK_LEVEL * 255)
        originals = [Image.fromarray(image) for image in _to_uint8(pixels)]
        if fitted is not None and fitted[0].mask is not None:
            originals = [composite(image, item.image, item.mask) for image, item in zip(originals, fitted)]
        return originals, denoise_s, decode_s

    def _finish(self, request: GenerationRequest, inputs: StageInputs, originals: list[Image.Image],
                timings: dict[str, float]) -> GenerationResult | Exception:
        """The content gate, stage 5 and the records of one request's images. An error here is
        returned, not raised, so that it fails this request and not the others of its batch."""
        started = time.perf_counter()
        try:
            scores = self.safety.check_images(originals) if self.safety is not None else [None] * len(originals)
            images = originals
            if request.postprocess.enabled:
                images = [self.postprocess_chain(image, request.postprocess, inputs)[0] for image in originals]
            if self.watermark:
                marked = [add_watermark(image) for image in originals]
                images = marked if images is originals else [add_watermark(image) for image in images]
                originals = marked
        except Exception as error:  # noqa: BLE001 - handed to this request's caller only
            return error
        timings = {**timings, "postprocess": time.perf_counter() - started}
        settings = [self._image_settings(request, index, images[index], scores[index])
                    for index in range(request.num_images)]
        return GenerationResult(images=images, settings=settings, timings=timings, originals=originals)

    def _content_record(self, image: Image.Image, score: float | None) -> dict:
        """What the gate checked and how the picture is marked, for its settings (empty when neither)."""
        record = {}
        if self.safety is not None:
            record["safety"] = self.safety.record(score)
        if self.watermark:
            carried = min(image.size) >= WATERMARK_MIN_SIDE
            record["watermark"] = f"{WATERMARK_METHOD}:{WATERMARK.decode()}" if carried else "too small to carry"
        return record

    @torch.no_grad()
    def _denoise_and_decode(self, request: GenerationRequest, embeddings: Embeddings, seeds: list[int],
                            fitted: list[image_modes.FittedInputs] | None,
                            on_step: StepCallback | None,
                            on_preview: previews.BatchPreviewCallback | None,
                            progress: tuple[int, int] | None = None) -> tuple[np.ndarray, float, float]:
        """Stages 3 and 4 through the stock pipeline call, or the family's own image-mode pipeline;
        returns (N, H, W, 3) floats in 0..1. `progress`: (the steps run before this call, the steps
        of the whole run) where this call is part of a longer run; by default, the call's own."""
        # One CPU generator per image: an image depends only on its own seed, on any device.
        generators = [torch.Generator("cpu").manual_seed(seed) for seed in seeds]
        self._set_tiling(request)
        started = time.perf_counter()
        pipe, arguments, steps, blend = self._call_arguments(request, fitted, generators)
        done, total = progress or (0, steps)
        last_step_at = [0.0]
        tracker = None
        if on_preview is not None and previews.supports_previews(pipe):
            tracker = previews.PreviewTracker(pipe, self.preview_decoder, request.width, request.height, on_preview,
                                              generators)

        def step_end(pipe, step: int, timestep, tensors: dict) -> dict:
            if on_step is not None and on_step(done + step + 1, total) == CANCEL:
                raise _Stop(done + step + 1)
            latents = tensors["latents"]
            blended = latents if blend is None else blend(step, latents)
            if tracker is not None:
                tracker.after_step(done + step + 1, total, latents, blended)
            last_step_at[0] = time.perf_counter()
            return {} if blend is None else {"latents": blended}

        width, height, arguments = self._call_size(pipe, request, arguments, generators)
        try:
            output = pipe(
                **embeddings, **self.family.call_kwargs(request.steps, request.guidance), **arguments,
                width=width, height=height, generator=generators, callback_on_step_end=step_end,
                output_type="np")
        except _Stop as stop:
            raise GenerationCancelled(stop.step, total) from None
        finished = time.perf_counter()
        # The decoder runs after the last step's callback.
        decode_started = last_step_at[0] or started
        return np.asarray(output.images), decode_started - started, finished - decode_started

    def _call_arguments(self, request: GenerationRequest, fitted: list[image_modes.FittedInputs] | None,
                        generators: list[torch.Generator]) -> tuple[DiffusionPipeline, dict, int, Callable | None]:
        """(the pipeline to call, its step and input arguments, the steps that run, the per-step latent
        blend or None) for the request's mode."""
        if request.mode == "reference":
            pictures = [picture.image for picture in request.references]
            arguments = references.call_kwargs(self.family.pipeline_class, pictures, len(generators))
            return self.pipe, {"num_inference_steps": request.steps, **arguments}, request.steps, None
        if fitted is None:
            return self.pipe, {"num_inference_steps": request.steps}, request.steps, None
        mode_pipe = self.mode_pipeline(request.mode)
        if mode_pipe is not None:
            inputs = image_modes.from_pipe_kwargs(request, fitted)
            arguments = {"num_inference_steps": request.steps, **inputs}
            return mode_pipe, arguments, image_modes.denoising_steps(request.steps, request.strength), None
        start = image_modes.prepare(self.pipe, self.family, request, fitted, generators, self.dtype)
        return self.pipe, start.call_kwargs(), start.steps, start.blend

    def _call_size(self, pipe: DiffusionPipeline, request: GenerationRequest, arguments: dict,
                   generators: list[torch.Generator]) -> tuple[int, int, dict]:
        """(width, height, arguments) of the call: the request's size, or where the pipeline's own check
        rejects it (`Family.checked_multiple`), that size rounded up with latents of the request's
        shape, the seeded noise the pipeline would have drawn (given latents set the picture's size)."""
        multiple = self.family.checked_multiple
        if not (request.width % multiple or request.height % multiple):
            return request.width, request.height, arguments
        if "latents" not in arguments:
            from diffusers.utils.torch_utils import randn_tensor

            factor = pipe.vae_scale_factor
            shape = (len(generators), pipe.transformer.config.in_channels, request.height // factor,
                     request.width // factor)
            # float32, as Sana's pipelines draw their own.
            noise = randn_tensor(shape, generator=generators, device=pipe._execution_device, dtype=torch.float32)
            arguments = {**arguments, "latents": noise}
        return (math.ceil(request.width / multiple) * multiple, math.ceil(request.height / multiple) * multiple,
                arguments)

    def mode_pipeline(self, mode: str) -> DiffusionPipeline | None:
        """The family's diffusers pipeline for an image mode, built once with `from_pipe` so that it
        shares every module of the text-to-image pipeline; None where the stock call serves the mode."""
        name = image_modes.from_pipe_class(self.family.pipeline_class, mode)
        if name is None:
            return None
        if name not in self._mode_pipes:
            import diffusers

            mode_pipe = getattr(diffusers, name).from_pipe(self.pipe)
            mode_pipe.set_progress_bar_config(disable=True)
            self._mode_pipes[name] = mode_pipe
        return self._mode_pipes[name]

    @property
    def preview_decoder(self) -> previews.PreviewDecoder:
        """What turns a step's predicted latents into pictures: the model's decoder if it is small,
        else a latent-to-RGB projection fitted to it (`pipeline.previews`)."""
        if self._preview_decoder is None:
            self._preview_decoder = previews.PreviewDecoder(self.pipe.vae)
        return self._preview_decoder

    @property
    def modes(self) -> tuple[str, ...]:
        """The modes the loaded model serves, of "text", "image", "inpaint", "extend" and "reference"
        (`GenerationRequest.mode`)."""
        return image_modes.supported_modes(self.family.pipeline_class)

    def _set_tiling(self, request: GenerationRequest) -> None:
        vae = self.pipe.vae
        if hasattr(vae, "enable_tiling"):
            if self.speed.tile(request.width, request.height):
                vae.enable_tiling()
            else:
                vae.disable_tiling()

    @staticmethod
    def _check_output(pixels: np.ndarray, check_black: bool = True) -> None:
        if np.isnan(pixels).any():
            raise GenerationFailed(
                "the decoder produced NaN values (numerical overflow in the model), so there is no image; "
                "try another seed, fewer steps, or fp32")
        if not check_black:
            return
        for index, image in enumerate(pixels):
            if image.max() < BLACK_LEVEL:
                raise GenerationFailed(
                    f"image {index + 1} decoded to an all-black picture, which means the model's output "
                    "collapsed; try another seed or fp32")

    def _image_settings(self, request: GenerationRequest, index: int, image: Image.Image,
                        score: float | None) -> dict:
        return image_settings(
            request, index, model=self.source.reference, revision=self.source.revision,
            pipeline=self.family.pipeline_class, scheduler=type(self.pipe.scheduler).__name__,
            device=self.device, dtype=str(self.dtype).removeprefix("torch."),
            content=self._content_record(image, score))


def _compatible_groups(requests: list[GenerationRequest]) -> list[list[int]]:
    """Indices of requests that can share one forward batch, in first-seen order."""
    groups: dict[tuple, list[int]] = {}
    for index, request in enumerate(requests):
        # Extend settings that give one canvas size may still place the picture differently.
        groups.setdefault((*batch_key(request), request.extend), []).append(index)
    return list(groups.values())


def _to_uint8(pixels: np.ndarray) -> np.ndarray:
    # The same rounding as diffusers' own numpy_to_pil.
    return (pixels * 255).round().astype(np.uint8)
