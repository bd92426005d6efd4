"""Live previews: the picture a run is heading for, shown while it denoises.

The stock pipelines' `callback_on_step_end` hands over the latents after each step
(`callback_on_step_end_tensor_inputs=["latents"]`, the default). From them and the scheduler's
state the tracker predicts the clean latents x0 the step is heading for, in one of two ways:

- flow matching (`FlowMatchEulerDiscreteScheduler`): the latents at noise level sigma are
  x_t = (1 - sigma) * x0 + sigma * noise, and an Euler step moves them along the velocity v the
  model predicted: x_next = x_t + (sigma_next - sigma) * v. The scheduler keeps its `sigmas` and
  `step_index`, so two consecutive latents give v, and x0 = x_next - sigma_next * v (the same as
  x_t - sigma * v). This holds for packed tokens as for spatial latents, and for the latents an
  inpainting pipeline blends after each step: its kept region is the input noised to sigma_next,
  which lies on the same line.
- TrigFlow (`SCMScheduler`, Sana-Sprint): a step predicts x0 = cos(s) * x_s - sin(s) * F and moves
  to x_t = cos(t) * x0 + sin(t) * z with fresh noise z = sigma_data * randn, drawn from the call's
  generators. The callback sees x_t only, so the tracker keeps the generators' states at each
  step's end and draws the same z again from copies of them: x0 = (x_t - sin(t) * z) / cos(t), the
  scheduler's own `denoised` up to rounding, and the run's own generators are left untouched.
The first step has no step before it, so previews start after the second step; the last step's
picture is the result itself, so none is made for it.

Each pipeline class has a rule (`RULES`): its scheduler, and how the clean latents, as its
callback holds them, become the (B, C, h, w) latents its decoder takes, following its own decode:
- Sana, Z-Image, Lumina 2: spatial latents, `/ scaling_factor` (Z-Image and Lumina 2 then
  `+ shift_factor`);
- FLUX.2 klein (and its inpainting pipeline): (B, h/2 * w/2, 4C) tokens in the row-major order of
  the grid of 2 x 2 patches (the order of `_prepare_latent_ids`), batch-normalised by the decoder's
  `bn` running statistics: un-normalised, then unpatchified (`_unpatchify_latents`);
- Qwen-Image (and its image-to-image, inpainting and edit pipelines): (B, h/2 * w/2, 4C) tokens of
  2 x 2 patches (`_unpack_latents`), normalised by the decoder's `latents_mean` and `latents_std`;
  its decoder takes video latents of one frame, (B, C, 1, h, w);
- Sana-Sprint (and its image-to-image pipeline): spatial latents times `sigma_data`,
  `/ sigma_data / scaling_factor`.
Every pipeline class the studio loads or builds with `from_pipe` has a rule; a folder whose scheduler
is another (or a stochastic flow-matching one) runs without previews (`supports_previews`).

The decoder's latents become a picture in one of two ways (`PreviewDecoder`):
- "decoder", for a decoder of at most `CHEAP_DECODER_PARAMETERS` (the embedded model's has about
  0.7 M): the model's own decoder, on the latents averaged to half their side (a quarter of the
  decoder's work), the picture enlarged to full size; within about 5 levels of 255 of the result
  on the embedded model, where the projection is 20 to 40 levels off in colour. It costs about a
  third of one of that model's steps, so by default it previews every third step (`EVERY`);
- "projection", for larger decoders (the hub families'): a linear map from latent channels to RGB
  (one 3 x C matrix and a bias per loaded model) at the decoder's latents' resolution (for FLUX.2,
  that of the unpatchified latents, a quarter of a token), enlarged to the picture's size. The map
  is fitted when the first preview is asked for, by least squares from the latents the model's
  own encoder gives seeded pictures (fields of random colours, smooth and flat) to those pictures'
  colours averaged over each latent pixel's patch; so it needs no table of numbers per family and
  fits any checkpoint. It costs one small matrix product a step, and previews every step.

Making previews reads the latents (and copies of the generators) and never changes them, so the
final pixels are the same with previews on or off.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
from PIL import Image

# `on_preview(step, total, pictures)` of `Studio.generate`: that request's predicted pictures after `step`.
PreviewCallback = Callable[[int, int, list[Image.Image]], object]
# `on_preview(step, total, pictures)` of `Studio.generate_batch`: `pictures()` decodes every image of the batch,
# in request order, so that a step no caller wants decoded costs nothing.
BatchPreviewCallback = Callable[[int, int, Callable[[], list[Image.Image]]], object]

METHODS = ("projection", "decoder")
# A decoder of at most this many parameters makes the previews; a larger one is replaced by a projection.
CHEAP_DECODER_PARAMETERS = 5_000_000
# Steps between previews when the caller names none (`PreviewDecoder.every`). A preview by the
# embedded model's decoder, even at half size, costs about a third of one of its steps (4 ms against
# 13 ms on a CPU core), so it comes every third step, which keeps previews within 10 % of a run
# (`python -m pipeline bench`); a projection is one small matrix product, so it previews every step.
EVERY = {"decoder": 3, "projection": 1}
FLOW, TRIGFLOW = "FlowMatchEulerDiscreteScheduler", "SCMScheduler"
# Decoders of video latents (B, C, frames, h, w); a picture is one frame.
VIDEO_DECODERS = ("AutoencoderKLQwenImage",)
# The projection is fitted on this many seeded pictures of this side, in latent pixels.
FIT_SAMPLES, FIT_SIDE, FIT_SEED = 16, 16, 0
# TrigFlow divides by cos(t); no preview is made from a step that ends this close to pure noise.
MIN_COS = 1e-3


def _scaled(pipe, latents: torch.Tensor, width: int, height: int) -> torch.Tensor:
    return latents / pipe.vae.config.scaling_factor


def _scaled_and_shifted(pipe, latents: torch.Tensor, width: int, height: int) -> torch.Tensor:
    config = pipe.vae.config
    return latents / config.scaling_factor + config.shift_factor


def _flux2_tokens(pipe, latents: torch.Tensor, width: int, height: int) -> torch.Tensor:
    side = pipe.vae_scale_factor * 2  # pixels a token spans
    grid = latents.reshape(latents.shape[0], height // side, width // side, -1).permute(0, 3, 1, 2)  # (B, 4C, h/2, w/2)
    bn, eps = pipe.vae.bn, pipe.vae.config.batch_norm_eps
    std = torch.sqrt(bn.running_var + eps).view(1, -1, 1, 1).to(grid)
    grid = grid * std + bn.running_mean.view(1, -1, 1, 1).to(grid)
    return pipe._unpatchify_latents(grid)  # (B, C, h, w)


def _qwen_image_tokens(pipe, latents: torch.Tensor, width: int, height: int) -> torch.Tensor:
    latents = pipe._unpack_latents(latents, height, width, pipe.vae_scale_factor)[:, :, 0]  # (B, C, h, w)
    config = pipe.vae.config
    mean = torch.tensor(config.latents_mean).view(1, -1, 1, 1).to(latents)
    inverse_std = 1.0 / torch.tensor(config.latents_std).view(1, -1, 1, 1).to(latents)
    return latents / inverse_std + mean  # as the pipeline's own decode rounds it


def _sprint(pipe, latents: torch.Tensor, width: int, height: int) -> torch.Tensor:
    return latents / pipe.scheduler.config.sigma_data / pipe.vae.config.scaling_factor


@dataclass(frozen=True)
class PreviewRule:
    """How one pipeline class's runs are previewed (see the module's docstring)."""

    scheduler: str  # `FLOW` or `TRIGFLOW`: how the clean latents are predicted
    # (pipe, clean latents as its callback holds them, width, height) -> (B, C, h, w) as its decoder takes them
    to_decoder: Callable[[Any, torch.Tensor, int, int], torch.Tensor]


def _rules(classes: tuple[str, ...], rule: PreviewRule) -> dict[str, PreviewRule]:
    return dict.fromkeys(classes, rule)


# Pipeline class -> its rule: each family's text-to-image class, and the classes of its image modes.
RULES: dict[str, PreviewRule] = {
    **_rules(("SanaPipeline",), PreviewRule(FLOW, _scaled)),
    **_rules(("ZImagePipeline", "Lumina2Pipeline"), PreviewRule(FLOW, _scaled_and_shifted)),
    **_rules(("Flux2KleinPipeline", "Flux2KleinInpaintPipeline"), PreviewRule(FLOW, _flux2_tokens)),
    **_rules(("QwenImagePipeline", "QwenImageImg2ImgPipeline", "QwenImageInpaintPipeline", "QwenImageEditPipeline",
              "QwenImageEditPlusPipeline"), PreviewRule(FLOW, _qwen_image_tokens)),
    **_rules(("SanaSprintPipeline", "SanaSprintImg2ImgPipeline"), PreviewRule(TRIGFLOW, _sprint)),
}


def supports_previews(pipe) -> bool:
    """Whether this pipeline's runs can be previewed: a class with a rule, sampling with the rule's
    (deterministic) scheduler, and a latent decoder."""
    rule = RULES.get(type(pipe).__name__)
    scheduler = pipe.scheduler
    return (rule is not None and type(scheduler).__name__ == rule.scheduler
            and not scheduler.config.get("stochastic_sampling", False) and getattr(pipe, "vae", None) is not None)


def check_every(every: int) -> None:
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise ValueError(f"preview_every must be a whole number of steps, at least 1; got {every!r}")


def preview_steps(total: int, every: int = 1) -> list[int]:
    """The steps (1-based) after which a run of `total` steps makes a preview."""
    return [step for step in range(2, total) if step % every == 0]


class PreviewDecoder:
    """The decoder's latents -> pictures, by the model's decoder or a fitted linear projection."""

    def __init__(self, vae, method: str | None = None):
        """`method`: one of `METHODS`, by default chosen by the decoder's size (see the module's docstring)."""
        if method is None:
            parameters = sum(parameter.numel() for parameter in vae.parameters())
            method = "decoder" if parameters <= CHEAP_DECODER_PARAMETERS else "projection"
        if method not in METHODS:
            raise ValueError(f"method must be 'projection' or 'decoder', got {method!r}")
        self.vae, self.method = vae, method
        self.every = EVERY[method]  # steps between previews by default
        self.video = type(vae).__name__ in VIDEO_DECODERS
        self._projection: tuple[torch.Tensor, torch.Tensor] | None = None  # (3, C) matrix, (3,) bias

    def __call__(self, latents: torch.Tensor, width: int, height: int) -> list[Image.Image]:
        """(B, C, h, w) latents as the decoder takes them -> B pictures of width x height."""
        if self.method == "decoder":
            # Half the latents' side, a quarter of the decoder's work; the picture is enlarged below.
            pixels = self._decode(torch.nn.functional.avg_pool2d(latents.float(), 2))  # (B, 3, H / 2, W / 2) in 0..1
        else:
            matrix, bias = self.projection()
            pixels = torch.einsum("rc,bchw->brhw", matrix, latents.float()) + bias[None, :, None, None]
        images = (pixels.clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy() * 255).round().astype(np.uint8)
        return [_sized(Image.fromarray(image), width, height) for image in images]

    @torch.no_grad()
    def _decode(self, latents: torch.Tensor) -> torch.Tensor:
        latents = latents.to(self.vae.dtype)
        if self.video:
            latents = latents[:, :, None]  # (B, C, 1, h, w)
        pixels = self.vae.decode(latents, return_dict=False)[0]  # (B, 3, H, W), or (B, 3, 1, H, W), in -1..1
        if self.video:
            pixels = pixels[:, :, 0]
        return (pixels.float() / 2 + 0.5).clamp(0, 1)

    def projection(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The (3, C) matrix and (3,) bias, fitted on first use (see the module's docstring)."""
        if self._projection is None:
            self._projection = self._fit()
        return self._projection

    @torch.no_grad()
    def _fit(self) -> tuple[torch.Tensor, torch.Tensor]:
        device = next(self.vae.parameters()).device
        pictures = _colour_fields(FIT_SAMPLES, FIT_SIDE * _scale_factor(self.vae))  # (N, 3, S, S) in 0..1
        inputs = (pictures * 2 - 1).to(device, self.vae.dtype)
        encoded = self.vae.encode(inputs[:, :, None] if self.video else inputs)
        latents = getattr(encoded, "latent", None)
        if latents is None:
            latents = encoded.latent_dist.mean
        if self.video:
            latents = latents[:, :, 0]
        latents = latents.float().cpu()  # (N, C, side, side), as the decoder takes them
        targets = torch.nn.functional.avg_pool2d(pictures, pictures.shape[-1] // latents.shape[-1])
        channels = latents.shape[1]
        inputs = torch.cat([latents, torch.ones_like(latents[:, :1])], 1)  # (N, C + 1, side, side)
        inputs = inputs.permute(0, 2, 3, 1).reshape(-1, channels + 1).double()
        targets = targets.permute(0, 2, 3, 1).reshape(-1, 3).double()
        solution = torch.linalg.lstsq(inputs, targets).solution.float()  # (C + 1, 3)
        return solution[:channels].T.contiguous().to(device), solution[channels].to(device)


def _scale_factor(vae) -> int:
    """How many pixels one latent pixel spans on a side."""
    config = vae.config
    if "spatial_compression_ratio" in config:
        return int(config.spatial_compression_ratio)
    if "encoder_block_out_channels" in config:  # a DC-AE halves the size at each block but the first
        return 2 ** (len(config.encoder_block_out_channels) - 1)
    if "temperal_downsample" in config:  # Qwen-Image's decoder halves the size at each of these blocks
        return 2 ** len(config.temperal_downsample)
    return 2 ** (len(config.block_out_channels) - 1)


def _colour_fields(count: int, side: int) -> torch.Tensor:
    """`count` seeded pictures of side x side, each a smooth field between random colours (a 4 x 4
    grid of colours, enlarged) with flat areas and soft edges, as pictures have; (N, 3, S, S) in 0..1."""
    generator = torch.Generator("cpu").manual_seed(FIT_SEED)
    grid = torch.rand(count, 3, 4, 4, generator=generator)
    smooth = torch.nn.functional.interpolate(grid, size=(side, side), mode="bilinear", align_corners=False)
    flat = torch.nn.functional.interpolate(grid, size=(side, side), mode="nearest")
    return torch.cat([smooth[: count // 2], flat[count // 2:]])


Prediction = Callable[[], torch.Tensor]  # computes the clean latents, as the callback holds them, when called


def _flow_prediction(scheduler, entering: torch.Tensor | None, stepped: torch.Tensor) -> Prediction | None:
    index = scheduler.step_index
    if entering is None or index is None or index < 1:
        return None
    sigma, sigma_next = float(scheduler.sigmas[index - 1]), float(scheduler.sigmas[index])
    if sigma == sigma_next:
        return None

    def clean() -> torch.Tensor:
        velocity = (stepped.float() - entering.float()) / (sigma_next - sigma)
        return stepped.float() - sigma_next * velocity

    return clean


def _trigflow_prediction(scheduler, generators: Sequence[torch.Generator], states: list[torch.Tensor] | None,
                         stepped: torch.Tensor) -> Prediction | None:
    index = scheduler.step_index
    if not states or index is None:
        return None
    t = float(scheduler.timesteps[index])  # the time the step reached
    if math.cos(t) < MIN_COS:
        return None

    def clean() -> torch.Tensor:
        from diffusers.utils.torch_utils import randn_tensor

        copies = [_generator_at(generator, state) for generator, state in zip(generators, states)]
        # The draw `SCMScheduler.step` made, from the same states.
        noise = randn_tensor(stepped.shape, generator=copies, device=stepped.device) * scheduler.config.sigma_data
        return (stepped.float() - math.sin(t) * noise.float()) / math.cos(t)

    return clean


def _generator_at(generator: torch.Generator, state: torch.Tensor) -> torch.Generator:
    copy = torch.Generator(generator.device)
    copy.set_state(state)
    return copy


class PreviewTracker:
    """Follows one run's latents step by step and hands `on_preview` the pictures it predicts."""

    def __init__(self, pipe, decoder: PreviewDecoder, width: int, height: int, on_preview: BatchPreviewCallback,
                 generators: Sequence[torch.Generator] = ()):
        """`pipe`: the pipeline that runs (one with `supports_previews`); `generators`: those of its call,
        one per image, which TrigFlow's predictions need (see the module's docstring)."""
        self.pipe, self.rule = pipe, RULES[type(pipe).__name__]
        self.decoder, self.width, self.height = decoder, width, height
        self.on_preview, self.generators = on_preview, list(generators)
        self._entering: torch.Tensor | None = None  # the latents the current step started from
        self._states: list[torch.Tensor] | None = None  # the generators' states when the current step started

    def after_step(self, step: int, total: int, stepped: torch.Tensor, entering_next: torch.Tensor) -> None:
        """After `step` (1-based) of `total`: `stepped` the latents the step made, `entering_next` what
        the next step starts from (the same latents, or those of an inpainting blend)."""
        entering, self._entering = self._entering, entering_next
        states = self._states
        scheduler = self.pipe.scheduler
        if self.rule.scheduler == TRIGFLOW:
            self._states = [generator.get_state() for generator in self.generators]
            predict = _trigflow_prediction(scheduler, self.generators, states, stepped)
        else:
            predict = _flow_prediction(scheduler, entering, stepped)
        if predict is None or step >= total:
            return

        def pictures() -> list[Image.Image]:
            latents = self.rule.to_decoder(self.pipe, predict(), self.width, self.height)  # (B, C, h, w)
            return self.decoder(latents, self.width, self.height)

        self.on_preview(step, total, pictures)


def _sized(image: Image.Image, width: int, height: int) -> Image.Image:
    return image if image.size == (width, height) else image.resize((width, height), Image.Resampling.BILINEAR)
