"""Live previews: the picture a run is heading for, shown while it denoises.

With flow matching the latents at noise level sigma are x_t = (1 - sigma) * x0 + sigma * noise,
and an Euler step of the scheduler moves them along the velocity v the model predicted:
x_next = x_t + (sigma_next - sigma) * v. The stock pipelines' `callback_on_step_end` hands over
the latents after each step (`callback_on_step_end_tensor_inputs=["latents"]`, the default) and
the scheduler keeps its `sigmas` and `step_index`, so two consecutive latents give v, and the
prediction of the clean latents is x0 = x_next - sigma_next * v (the same as x_t - sigma * v).
The first step has no latents before it, so previews start after the second step; the last
step's picture is the result itself, so none is made for it.

The predicted latents become a picture in one of two ways (`PreviewDecoder`):
- "decoder", for a decoder of at most `CHEAP_DECODER_PARAMETERS` (the embedded model's has about
  0.7 M): the model's own decoder, on the latents averaged to half their side (a quarter of the
  decoder's work), the picture enlarged to full size; within about 5 levels of 255 of the result
  on the embedded model, where the projection is 20 to 40 levels off in colour;
- "projection", for larger decoders (the hub families'): a linear map from latent channels to RGB
  (one 3 x C matrix and a bias per loaded model) at the latents' resolution, enlarged to the
  picture's size. The map is fitted when the first preview is asked for, by least squares from the latents the model's own
  encoder gives seeded pictures (fields of random colours, smooth and flat) to those pictures'
  colours averaged over each latent pixel's patch; so it needs no table of numbers per family and
  fits any checkpoint. It costs one small matrix product a step.

Previews are for spatial latents (B, C, h, w) under `FlowMatchEulerDiscreteScheduler`; the
families that pack latents into tokens (FLUX.2, Qwen-Image) or sample another way (Sana-Sprint)
run without them. Making previews reads the latents and never changes them, so the final
pixels are the same with previews on or off.
"""
from __future__ import annotations

from typing import Callable

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
SCHEDULER = "FlowMatchEulerDiscreteScheduler"
# The projection is fitted on this many seeded pictures of this side, in latent pixels.
FIT_SAMPLES, FIT_SIDE, FIT_SEED = 16, 16, 0


def supports_previews(pipe) -> bool:
    """Whether this pipeline's runs can be previewed: a flow-matching Euler scheduler, a latent decoder."""
    scheduler = pipe.scheduler
    return (type(scheduler).__name__ == SCHEDULER and not scheduler.config.get("stochastic_sampling", False)
            and getattr(pipe, "vae", None) is not None)


def check_every(every: int) -> None:
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise ValueError(f"preview_every must be a whole number of steps, at least 1; got {every!r}")


def preview_steps(total: int, every: int = 1) -> list[int]:
    """The steps (1-based) after which a run of `total` steps makes a preview."""
    return [step for step in range(2, total) if step % every == 0]


class PreviewDecoder:
    """Predicted clean latents -> pictures, by the model's decoder or a fitted linear projection."""

    def __init__(self, vae, shift: bool, method: str | None = None):
        """`shift`: the decoder undoes `(z - shift_factor) * scaling_factor` (else only the scaling);
        `method`: one of `METHODS`, by default chosen by the decoder's size (see the module's docstring)."""
        if method is None:
            parameters = sum(parameter.numel() for parameter in vae.parameters())
            method = "decoder" if parameters <= CHEAP_DECODER_PARAMETERS else "projection"
        if method not in METHODS:
            raise ValueError(f"method must be 'projection' or 'decoder', got {method!r}")
        self.vae, self.shift, self.method = vae, shift, method
        self._projection: tuple[torch.Tensor, torch.Tensor] | None = None  # (3, C) matrix, (3,) bias

    def __call__(self, latents: torch.Tensor, width: int, height: int) -> list[Image.Image]:
        """(B, C, h, w) normalised latents -> B pictures of width x height."""
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
        config = self.vae.config
        latents = latents.to(self.vae.dtype) / config.scaling_factor
        if self.shift:
            latents = latents + config.shift_factor
        pixels = self.vae.decode(latents, return_dict=False)[0]  # (B, 3, H, W) in -1..1
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
        config = self.vae.config
        encoded = self.vae.encode((pictures * 2 - 1).to(device, self.vae.dtype))
        latents = getattr(encoded, "latent", None)
        if latents is None:
            latents = encoded.latent_dist.mean
        if self.shift:
            latents = latents - config.shift_factor
        latents = (latents * config.scaling_factor).float().cpu()  # (N, C, side, side), as the denoiser makes them
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
    return 2 ** (len(config.block_out_channels) - 1)


def _colour_fields(count: int, side: int) -> torch.Tensor:
    """`count` seeded pictures of side x side, each a smooth field between random colours (a 4 x 4
    grid of colours, enlarged) with flat areas and soft edges, as pictures have; (N, 3, S, S) in 0..1."""
    generator = torch.Generator("cpu").manual_seed(FIT_SEED)
    grid = torch.rand(count, 3, 4, 4, generator=generator)
    smooth = torch.nn.functional.interpolate(grid, size=(side, side), mode="bilinear", align_corners=False)
    flat = torch.nn.functional.interpolate(grid, size=(side, side), mode="nearest")
    return torch.cat([smooth[: count // 2], flat[count // 2:]])


class PreviewTracker:
    """Follows one run's latents step by step and hands `on_preview` the pictures it predicts."""

    def __init__(self, scheduler, decoder: PreviewDecoder, width: int, height: int, on_preview: BatchPreviewCallback):
        self.scheduler, self.decoder, self.width, self.height = scheduler, decoder, width, height
        self.on_preview = on_preview
        self._entering: torch.Tensor | None = None  # the latents the current step started from

    def after_step(self, step: int, total: int, stepped: torch.Tensor, entering_next: torch.Tensor) -> None:
        """After `step` (1-based) of `total`: `stepped` the scheduler's output, `entering_next` what the
        next step starts from (the same latents, or those of an inpainting blend)."""
        entering, self._entering = self._entering, entering_next
        index = self.scheduler.step_index
        if entering is None or step >= total or index is None or stepped.ndim != 4 or index < 1:
            return
        sigmas = self.scheduler.sigmas
        sigma, sigma_next = float(sigmas[index - 1]), float(sigmas[index])
        if sigma == sigma_next:
            return

        def pictures() -> list[Image.Image]:
            velocity = (stepped.float() - entering.float()) / (sigma_next - sigma)  # (B, C, h, w)
            clean = stepped.float() - sigma_next * velocity
            return self.decoder(clean, self.width, self.height)

        self.on_preview(step, total, pictures)


def _sized(image: Image.Image, width: int, height: int) -> Image.Image:
    return image if image.size == (width, height) else image.resize((width, height), Image.Resampling.BILINEAR)
