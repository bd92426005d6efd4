"""Image-to-image, inpainting and extend (outpainting): through a family's stock text-to-image
call, or through its own diffusers image pipeline built with `from_pipe`.

Sana, Z-Image and Lumina 2 denoise by flow matching, where the latents at noise level sigma are
x_t = (1 - sigma) * x0 + sigma * noise. So a picture is a valid start at any sigma of the
family's own schedule, and the stock `__call__` needs nothing new: given `latents=` (the encoded
input noised to the first sigma kept) and `sigmas=` (the tail of the schedule it would build
itself), it denoises from there. The conventions are those of diffusers' `ZImageImg2ImgPipeline`
and `ZImageInpaintPipeline`, which a test compares pixel for pixel:

- the encoder's latents are normalised as the family's decoder expects them back: `(z -
  shift_factor) * scaling_factor` for Z-Image and Lumina 2, `z * scaling_factor` for Sana's DC-AE;
  the encoder's mean is used (not a sample), so that the seed's generator draws the same noise
  as in text-to-image and strength 1 gives exactly the text-to-image picture;
- strength s keeps the last `steps - int(steps - steps * s)` steps of the schedule (diffusers'
  rule: any strength above 0 runs at least one step); 0 runs none and gives the input back;
- inpainting: after every step the latents outside the mask are replaced by the input noised to
  the next sigma, so that the repainted region grows out of the kept one (`latents = mask *
  latents + (1 - mask) * noised_input`); the studio then composites the kept pixels back exactly;
- extend is inpainting of the canvas that `conditioning.Extend` makes: the picture on a larger
  canvas whose border repeats its edge pixels, the border as the mask. A border wider than
  `conditioning.MAX_PASS_GROWTH` allows is painted in passes (`Extend.passes`, `extend_pass`),
  each extending the canvas so far, so every new strip lies beside a picture that sets its layout.

FLUX.2 klein and Qwen-Image pack their latents into patch tokens with their own normalisation
and Sana-Sprint samples on a TrigFlow schedule, so their modes are diffusers' own pipelines
(`FROM_PIPE`), built once per studio with `from_pipe` from the loaded text-to-image pipeline
(every module shared, no weight loaded twice) and called with the same cached prompt embeddings,
seeded CPU generators and step callback; inpainting's kept pixels are composited back as above.
Those pipelines encode the input by sampling the encoder's posterior with the seed's generator,
so strength 1 is not the text-to-image picture there. Z-Image has `ZImageImg2ImgPipeline` and
`ZImageInpaintPipeline` too, but the studio drives it through the stock call: a test shows the
two give the same pixels, and the stock call keeps strength 1 equal to text-to-image.
Reference editing is FLUX.2 klein's stock call with `image=` and the Qwen-Image-Edit pipelines
(`pipeline.references`).
A mode that no path serves for the loaded family is refused with a sentence (`check_supported`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image

from pipeline import conditioning, references
from pipeline.families import FAMILIES
from pipeline.request import GenerationRequest


def _z_image_sigmas(scheduler, steps: int) -> list[float]:
    from diffusers.pipelines.z_image.pipeline_z_image import get_default_z_image_sigmas

    return get_default_z_image_sigmas(steps)


def _lumina2_sigmas(scheduler, steps: int) -> np.ndarray:
    return np.linspace(1.0, 1 / steps, steps)


def _scheduler_sigmas(scheduler, steps: int) -> np.ndarray:
    # What FlowMatchEulerDiscreteScheduler.set_timesteps(steps) spaces before it shifts them (Sana
    # passes no sigmas of its own).
    return np.linspace(scheduler._sigma_to_t(scheduler.sigma_max), scheduler._sigma_to_t(scheduler.sigma_min),
                       steps) / scheduler.config.num_train_timesteps


def _shift_mu(seq_len: int, config) -> float:
    from diffusers.pipelines.z_image.pipeline_z_image import calculate_shift

    return calculate_shift(seq_len, config.get("base_image_seq_len", 256), config.get("max_image_seq_len", 4096),
                           config.get("base_shift", 0.5), config.get("max_shift", 1.15))


@dataclass(frozen=True)
class LatentConvention:
    """How one family's stock call builds its schedule and reads its latents."""

    # The decoder undoes `(z - shift_factor) * scaling_factor` (else only `* scaling_factor`).
    shift: bool
    # The unshifted sigmas the stock call hands its scheduler for `steps` steps.
    raw_sigmas: Callable[[Any, int], Any]
    # The dynamic-shift `mu` the stock call computes from its latents' shape (B, C, h, w).
    mu: Callable[[tuple, Any], float] | None
    # The stock call draws its noise in float32 (else in the prompt embeddings' dtype).
    float32_noise: bool


CONVENTIONS: dict[str, LatentConvention] = {
    "SanaPipeline": LatentConvention(shift=False, raw_sigmas=_scheduler_sigmas, mu=None, float32_noise=True),
    "ZImagePipeline": LatentConvention(
        shift=True, raw_sigmas=_z_image_sigmas, float32_noise=True,
        mu=lambda shape, config: _shift_mu((shape[2] // 2) * (shape[3] // 2), config)),
    # Lumina 2's call takes the channel count as its sequence length; followed as it is.
    "Lumina2Pipeline": LatentConvention(shift=True, raw_sigmas=_lumina2_sigmas, float32_noise=False,
                                        mu=lambda shape, config: _shift_mu(shape[1], config)),
}
_SCHEDULER = "FlowMatchEulerDiscreteScheduler"
_MODE_NAMES = {"image": "image-to-image", "inpaint": "inpainting", "extend": "extend (outpainting)"}


# Families whose image modes are diffusers' own pipelines: mode -> the class built with `from_pipe`.
# Extend is inpainting of the extended canvas.
FROM_PIPE: dict[str, dict[str, str]] = {
    "SanaSprintPipeline": {"image": "SanaSprintImg2ImgPipeline"},
    "QwenImagePipeline": {"image": "QwenImageImg2ImgPipeline", "inpaint": "QwenImageInpaintPipeline",
                          "extend": "QwenImageInpaintPipeline"},
    "Flux2KleinPipeline": {"inpaint": "Flux2KleinInpaintPipeline", "extend": "Flux2KleinInpaintPipeline"},
}


def supported_modes(pipeline_class: str) -> tuple[str, ...]:
    """The modes a family serves, "text" first where it serves text-to-image."""
    if pipeline_class in CONVENTIONS:
        return "text", "image", "inpaint", "extend"
    support = references.SUPPORT.get(pipeline_class)
    if support is not None and not support.text_to_image:
        return ("reference",)
    return "text", *FROM_PIPE.get(pipeline_class, {}), *(("reference",) if support is not None else ())


def from_pipe_class(pipeline_class: str, mode: str) -> str | None:
    """The diffusers pipeline class that serves `mode` for this family, or None for the stock call."""
    return FROM_PIPE.get(pipeline_class, {}).get(mode)


def check_supported(family, pipe, request: GenerationRequest) -> None:
    """ValueError, in a sentence naming the families that can, unless this model can serve the request's mode."""
    references.check(family.pipeline_class, family.name, request.mode, [item.size for item in request.references])
    if request.mode in ("text", "reference") or from_pipe_class(family.pipeline_class, request.mode) is not None:
        return
    what = _MODE_NAMES[request.mode]
    if family.pipeline_class not in CONVENTIONS:
        able = [other.name + (" (and the embedded model)" if other.pipeline_class == "SanaPipeline" else "")
                for other in FAMILIES.values() if request.mode in supported_modes(other.pipeline_class)]
        raise ValueError(f"{what} is not available for {family.name} models; it works with "
                         f"{', '.join(able[:-1])} and {able[-1]} models")
    if type(pipe.scheduler).__name__ != _SCHEDULER:
        raise ValueError(f"{what} needs the flow-matching scheduler {_SCHEDULER}; this model uses "
                         f"{type(pipe.scheduler).__name__}")


def denoising_steps(steps: int, strength: float) -> int:
    """How many of `steps` run at `strength`: diffusers' img2img rule, at least 1 for strength > 0."""
    return steps - int(max(steps - min(steps * strength, steps), 0))


@dataclass(frozen=True)
class FittedInputs:
    """A request's input picture (and mask) at the requested size."""

    image: Image.Image  # RGB, width x height
    mask: Image.Image | None  # L, feathered; 255 = repaint


def fitted_inputs(request: GenerationRequest) -> FittedInputs:
    """The init image cover-cropped to the request's size, and its mask fitted the same way and feathered;
    when extending, the canvas (of the request's size, as validated) and its border as the mask, feathered."""
    if request.extend is not None:
        canvas, border = request.extend.canvas(request.init_image.image)
        return FittedInputs(canvas, conditioning.feather(border, request.mask_feather))
    image = conditioning.fit(request.init_image.image, request.width, request.height)
    if request.mask is None:
        return FittedInputs(image, None)
    mask = conditioning.fit_mask(request.mask.image, request.width, request.height)
    return FittedInputs(image, conditioning.feather(mask, request.mask_feather))


def placed_picture(request: GenerationRequest) -> Image.Image:
    """An extend request's picture at its size on the canvas (scaled as `conditioning.extend` scales it)."""
    picture = request.init_image.image
    size, _, _ = request.extend.placement(picture.size)
    return picture if size == picture.size else picture.resize(size, Image.Resampling.LANCZOS)


def each_once(items: list, make: Callable[[Any], Any]) -> list:
    """`make(item)` for each of `items`, in order, made once for an object given several times (a
    batch's images share one input picture but in extend's later passes)."""
    made: dict[int, Any] = {}
    for item in items:
        if id(item) not in made:
            made[id(item)] = make(item)
    return [made[id(item)] for item in items]


def extend_pass(pictures: list[Image.Image], sides: tuple[int, int, int, int], mask_feather: int) -> list[FittedInputs]:
    """One pass of an extend (`conditioning.Extend.passes`): each picture with `sides` (left, top,
    right, bottom) added, the new border as the feathered mask."""
    def extended(picture: Image.Image) -> FittedInputs:
        canvas, border = conditioning.extend_by(picture, *sides)
        return FittedInputs(canvas, conditioning.feather(border, mask_feather))

    return each_once(pictures, extended)


@dataclass(frozen=True)
class ImageStart:
    """Where a batch of input pictures starts denoising, as arguments for the stock call."""

    latents: torch.Tensor  # (N, C, h, w): the input noised to the first sigma kept
    sigmas: Any  # the schedule's tail, or None for the family's full schedule
    steps: int  # the steps that run
    blend: Callable[[int, torch.Tensor], torch.Tensor] | None  # inpainting: step index, latents -> latents

    def call_kwargs(self) -> dict[str, Any]:
        kwargs = {"latents": self.latents, "num_inference_steps": self.steps}
        return kwargs if self.sigmas is None else {**kwargs, "sigmas": self.sigmas}


@torch.no_grad()
def encode_image(pipe, convention: LatentConvention, image: Image.Image) -> torch.Tensor:
    """The picture as the denoiser's clean latents x0, normalised as the family's decoder expects: (1, C, h, w)."""
    vae = pipe.vae
    pixels = pipe.image_processor.preprocess(image).to(device=pipe._execution_device, dtype=vae.dtype)  # (1, 3, H, W)
    encoded = vae.encode(pixels)
    latents = encoded.latent_dist.mode() if hasattr(encoded, "latent_dist") else encoded.latent
    if convention.shift:
        latents = latents - vae.config.shift_factor
    return latents * vae.config.scaling_factor


def schedule(pipe, convention: LatentConvention, steps: int, kept: int, shape: tuple) -> tuple[Any, torch.Tensor]:
    """The schedule that runs `kept` of `steps` steps: (the `sigmas=` for the stock call, None when every
    step runs and its own schedule applies; the shifted sigmas it will step through, ending in 0).
    Worked out on a fresh scheduler of the pipeline's config, leaving the pipeline's own as it is."""
    scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config)
    raw = convention.raw_sigmas(scheduler, steps)
    tail = None if kept == steps else raw[steps - kept:]
    mu = convention.mu(shape, scheduler.config) if convention.mu is not None else None
    if tail is None and convention.raw_sigmas is _scheduler_sigmas:
        scheduler.set_timesteps(steps, mu=mu)  # as the stock call does when given no sigmas
    else:
        scheduler.set_timesteps(sigmas=raw if tail is None else tail, mu=mu)
    return tail, scheduler.sigmas


def prepare(pipe, family, request: GenerationRequest, fitted: list[FittedInputs], generators: list[torch.Generator],
            dtype: torch.dtype) -> ImageStart:
    """Stage 3's start in an image mode: each image's input (`fitted`, one per generator, sharing
    one mask) encoded and noised with its seeded CPU noise, the truncated schedule, and for
    inpainting the per-step blend. `dtype`: the prompt embeddings'."""
    from diffusers.utils.torch_utils import randn_tensor

    convention = CONVENTIONS[family.pipeline_class]
    x0 = torch.cat(each_once(fitted, lambda item: encode_image(pipe, convention, item.image)))  # (N, C, h, w)
    shape = tuple(x0.shape)
    noise = randn_tensor(shape, generator=generators, device=x0.device,
                         dtype=torch.float32 if convention.float32_noise else dtype)  # (N, C, h, w)
    x0 = x0.to(noise.dtype)
    kept = denoising_steps(request.steps, request.strength)
    tail, sigmas = schedule(pipe, convention, request.steps, kept, shape)
    sigmas = sigmas.to(noise.device)
    latents = sigmas[0] * noise + (1.0 - sigmas[0]) * x0  # as FlowMatchEulerDiscreteScheduler.scale_noise
    mask = fitted[0].mask
    blend = None if mask is None else _blender(latent_mask(mask, shape[2:]).to(noise), x0, noise, sigmas)
    return ImageStart(latents=latents, sigmas=tail, steps=kept, blend=blend)


def latent_mask(mask: Image.Image, size: tuple[int, int]) -> torch.Tensor:
    """(1, 1, h, w): 1 on every latent cell that a repainted (or feathered) pixel of the L mask touches."""
    pixels = torch.from_numpy(np.asarray(mask, dtype=np.float32))[None, None]  # (1, 1, H, W)
    return (torch.nn.functional.adaptive_max_pool2d(pixels, tuple(size)) > 0).float()


def _blender(mask: torch.Tensor, x0: torch.Tensor, noise: torch.Tensor, sigmas: torch.Tensor):
    def blend(step: int, latents: torch.Tensor) -> torch.Tensor:
        sigma = sigmas[step + 1]  # the level the step just reached; 0 after the last
        kept = sigma * noise + (1.0 - sigma) * x0
        return (1 - mask) * kept + mask * latents

    return blend


def from_pipe_kwargs(request: GenerationRequest, fitted: list[FittedInputs]) -> dict[str, Any]:
    """The input arguments of diffusers' image-mode pipeline call: each image's fitted picture (or
    extended canvas), the strength, and the feathered mask (one for all) for inpainting and extend.
    The picture is given once per image: pipelines that sample the encoder's posterior then do it
    with each image's own generator, so that an image depends on its own seed only, as alone."""
    kwargs = {"image": [item.image for item in fitted], "strength": request.strength}
    return kwargs if fitted[0].mask is None else {**kwargs, "mask_image": fitted[0].mask}
