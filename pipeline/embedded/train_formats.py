"""Stages 4-8 of training the embedded model: every format's size, two objects, corners, balance,
and the decoder on the denoiser's own latents.

Stages 1-3 (`train`) train at 64x64 on one-object scenes. Stage 4 continues the denoiser and the
text encoder from there, as multi-aspect training with size buckets does: each batch is drawn at
one of the formats' sizes (`FORMAT_SIZES`, all about 64x64's pixel count, multiples of 8), and
60 % of its pictures show two objects (`pairs`), each with its own colour, shape and size. A
quarter of the batches are stage 2's one-object 64x64 scenes, so that the square format keeps
what it learnt. The transformer's sin-cos position embedding spans the same range along each
axis whatever the grid, so positions relative to each axis read alike in every format.

Pictures are rendered and encoded as each batch is drawn (the autoencoder stays frozen), with
the same shape-edge-weighted flow-matching loss and conventions as stage 2. Every batch is a
pure function of (seed, step), and the stage checkpoints as a folder of one file per module and
per kind of optimizer state (`loop.StageLoop` with `split`).

Stage 5 continues stage 4 with the same batches in another mix (`Mix`): more two-object
pictures, a higher shape-edge weight and its own learning-rate schedule, for attribute binding.
Stage 6 continues stage 5 with the pixels on the objects' corners weighted as well
(`train.corner_mask`): a circle, a square and a triangle of the same bounding box differ only
there, and the denoiser had drawn small squares with rounded corners, read as circles. Stage 7
continues stage 6 with more of the batches at the formats other than the square and more
one-object pictures in them, where the wide formats had fallen behind the square one.

Stage 8 trains the decoder alone again, as stage 3 did, but mostly on latents the finished
denoiser made: each rendered picture is encoded, noised to one of the last noise levels of the
preset's schedule and denoised from there with its prompt, as image-to-image at a low strength
does, and the decoder learns to turn that into the rendered picture. Those latents are where
the pictures the studio shows come from, and their corners are softer than the encoder's.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from . import DEFAULT_GUIDANCE, DEFAULT_STEPS, ENCODE_KWARGS, FORMAT_SIZES, NATIVE_SIZE, data, pairs
from .config import TrainConfig
from .loop import ProgressCallback, StageLoop
from .train import (batch_generator, batch_rng, decoder_loss, decoder_stage, edge_mask, exporter,
                    flow_matching_loss, latent_corner_mask, latent_edge_mask, optimizer_step, set_learning_rate,
                    to_tensor)



@dataclass(frozen=True)
class Mix:
    """What a stage of this kind trains on, and how."""

    stage: int  # 4 to 8: the stage, and its checkpoint's name
    seed: int  # batch_rng's stage number (stages 1-3 use 1 to 5)
    steps: int
    lr: float
    square_fraction: float  # of the batches: stage 2's one-object 64x64 scenes
    pair_fraction: float  # of the other batches' pictures: two objects
    shape_edge_weight: float
    corner_weight: float = 0.0  # loss weight of latent pixels on the objects' corners, on top


def format_mix(cfg: TrainConfig) -> Mix:
    return Mix(4, 6, cfg.format_steps, cfg.format_lr, cfg.square_fraction, cfg.pair_fraction,
               cfg.shape_edge_weight)


def pair_mix(cfg: TrainConfig) -> Mix:
    return Mix(5, 7, cfg.pair_steps, cfg.pair_lr, cfg.pair_square_fraction, cfg.pair_pair_fraction,
               cfg.pair_shape_edge_weight)


def corner_mix(cfg: TrainConfig) -> Mix:
    return Mix(6, 8, cfg.corner_steps, cfg.corner_lr, cfg.pair_square_fraction, cfg.corner_pair_fraction,
               cfg.pair_shape_edge_weight, cfg.corner_weight)


def balance_mix(cfg: TrainConfig) -> Mix:
    return Mix(7, 9, cfg.balance_steps, cfg.balance_lr, cfg.balance_square_fraction, cfg.balance_pair_fraction,
               cfg.pair_shape_edge_weight, cfg.corner_weight)


def format_batch(cfg: TrainConfig, mix: Mix, step: int, combos: list, pair_combos: list):
    """Batch number `step` of `mix`'s stage: ((width, height), images (B, H, W, 3) uint8, prompts).

    Prompts are "" with the caption-dropout probability, as in stage 2.
    """
    rng = batch_rng(cfg.seed, mix.seed, step)
    images, prompts = [], []
    if rng.random() < mix.square_fraction:
        size, pair_fraction = (NATIVE_SIZE, NATIVE_SIZE), 0.0
    else:
        size, pair_fraction = rng.choice(list(FORMAT_SIZES.values())), mix.pair_fraction
    for _ in range(cfg.format_batch):
        if rng.random() < pair_fraction:
            pair = pairs.pair_from_combo(rng.choice(pair_combos), rng)
            images.append(pairs.render_pair(pair, size, rng))
            prompts.append(pairs.training_pair_prompt(pair, rng))
        else:
            scene = data.sample_scene(rng, combos)
            images.append(data.render(scene, size, rng))
            prompts.append(data.describe(scene, rng.choice(data.TRAIN_FORMS), rng))
    prompts = ["" if rng.random() < cfg.caption_dropout else prompt for prompt in prompts]
    return size, images, prompts


def format_loss(pipe, cfg: TrainConfig, mix: Mix, step: int, shift: float, combos: list,
                pair_combos: list) -> torch.Tensor:
    """The flow-matching loss of `mix`'s batch number `step`."""
    _, images, prompts = format_batch(cfg, mix, step, combos, pair_combos)
    x = to_tensor(np.stack(images))  # (B, 3, H, W)
    with torch.no_grad():
        x0 = pipe.vae.encode(x).latent * pipe.vae.config.scaling_factor  # (B, C, H/4, W/4)
    weight = 1 + mix.shape_edge_weight * latent_edge_mask(x, x0.shape[-2:])  # (B, 1, h, w)
    if mix.corner_weight:
        weight = weight + mix.corner_weight * latent_corner_mask(np.stack(images), x0.shape[-2:])
    generator = batch_generator(cfg.seed, mix.seed, step)
    return flow_matching_loss(pipe, x0, weight, prompts, generator, shift)


def train_formats(pipe, cfg: TrainConfig, state_dir: Path, out: Path, shift: float, mix: Mix,
                  on_progress: ProgressCallback | None = None) -> None:
    """Stage 4, 5, 6 or 7 (`mix`): transformer and text encoder at every format's size with two-object scenes."""
    transformer, text_encoder = pipe.transformer, pipe.text_encoder
    optimizer = torch.optim.AdamW(
        [{"params": list(transformer.parameters())}, {"params": list(text_encoder.parameters())}],
        lr=mix.lr, weight_decay=0.0)
    modules = {"transformer": transformer, "text_encoder": text_encoder}
    loop = StageLoop(state_dir / f"stage{mix.stage}", mix.steps, modules, optimizer,
                     checkpoint_every=cfg.checkpoint_every, split=True)
    if loop.done:
        return
    pipe.vae.requires_grad_(False)
    pipe.vae.eval()
    combos, pair_combos = data.training_combos(), pairs.training_pair_combos()
    transformer.train()
    text_encoder.train()

    def step(index: int) -> float:
        set_learning_rate(optimizer, mix.lr, index, mix.steps, cfg.warmup)
        return optimizer_step(optimizer, format_loss(pipe, cfg, mix, index, shift, combos, pair_combos))

    loop.run(step, task={4: "formats", 5: "pairs", 6: "corners", 7: "balance"}[mix.stage], on_progress=on_progress,
             on_checkpoint=exporter(pipe, out, transformer, text_encoder))
    transformer.eval()
    text_encoder.eval()


# ---------------------------------------------------------------------------------------------
# Stage 8: the decoder on the denoiser's own latents
# ---------------------------------------------------------------------------------------------

SHARPEN_SEED = 10  # batch_rng's stage number
SHARPEN_STARTS = (4, 5, 6)  # of the preset's DEFAULT_STEPS: noise levels 0.60, 0.45 and 0.25


@torch.no_grad()
def denoised_latents(pipe, latents: torch.Tensor, prompts: list[str], sigmas: torch.Tensor,
                     generator: torch.Generator) -> torch.Tensor:
    """`latents` (B, C, h, w, scaled) noised to `sigmas[0]` and denoised through the rest of `sigmas`
    (ending in 0) with `prompts` at the preset's guidance, as the pipeline's Euler steps do."""
    noise = torch.randn(latents.shape, generator=generator)
    x = (1 - sigmas[0]) * latents + sigmas[0] * noise
    embeds, mask, negative_embeds, negative_mask = pipe.encode_prompt(
        prompts, do_classifier_free_guidance=True, negative_prompt=[""] * len(prompts),
        device=torch.device("cpu"), **ENCODE_KWARGS)
    embeds, mask = torch.cat([negative_embeds, embeds]), torch.cat([negative_mask, mask])
    timesteps_per_sigma = pipe.scheduler.config.num_train_timesteps * pipe.transformer.config.timestep_scale
    for sigma, next_sigma in zip(sigmas[:-1], sigmas[1:]):
        unconditional, conditional = pipe.transformer(
            torch.cat([x, x]), encoder_hidden_states=embeds, encoder_attention_mask=mask,
            timestep=(sigma * timesteps_per_sigma).expand(2 * len(x)), return_dict=False)[0].chunk(2)
        x = x + (next_sigma - sigma) * (unconditional + DEFAULT_GUIDANCE * (conditional - unconditional))
    return x


def sharpen_decoder(pipe, cfg: TrainConfig, state_dir: Path, out: Path,
                    on_progress: ProgressCallback | None = None) -> None:
    """Stage 8: the decoder alone on latents the denoiser made (`cfg.sharpen_denoised` of the
    batches) or the encoder made, edge-weighted L1 + MSE, with pixels whose colour is still off
    (by more than a quarter of the range summed over the channels) weighted
    `cfg.sharpen_miss_weight` more."""
    vae = pipe.vae
    optimizer, loop = decoder_stage(vae, state_dir / "stage8.pt", cfg.sharpen_steps, cfg.sharpen_lr, cfg)
    if loop.done:
        return
    pipe.transformer.eval()
    pipe.text_encoder.eval()
    combos, pair_combos = data.training_combos(), pairs.training_pair_combos()
    batches = replace(cfg, format_batch=cfg.sharpen_batch, caption_dropout=0.0)
    mix = Mix(8, SHARPEN_SEED, cfg.sharpen_steps, cfg.sharpen_lr, cfg.sharpen_square_fraction,
              cfg.sharpen_pair_fraction, 0.0)
    scaling = vae.config.scaling_factor
    pipe.scheduler.set_timesteps(DEFAULT_STEPS)
    sigmas = pipe.scheduler.sigmas  # the preset's schedule, ending in 0

    def step(index: int) -> float:
        set_learning_rate(optimizer, cfg.sharpen_lr, index, cfg.sharpen_steps, cfg.warmup)
        _, images, prompts = format_batch(batches, mix, index, combos, pair_combos)
        x = to_tensor(np.stack(images))
        generator = batch_generator(cfg.seed, SHARPEN_SEED, index)
        with torch.no_grad():
            latents = vae.encode(x).latent
            start = SHARPEN_STARTS[int(torch.randint(len(SHARPEN_STARTS), (1,), generator=generator))]
            if torch.rand(1, generator=generator) < cfg.sharpen_denoised:
                latents = denoised_latents(pipe, latents * scaling, prompts, sigmas[start:], generator) / scaling
        decoded = vae.decode(latents).sample
        missed = ((decoded - x).abs().sum(1, keepdim=True) > 0.5).float()  # (B, 1, H, W), [-1, 1] units
        weight = 1 + cfg.edge_weight * edge_mask(x) + cfg.sharpen_miss_weight * missed
        return optimizer_step(optimizer, decoder_loss(decoded, x, weight))

    loop.run(step, task="sharpen decoder", on_progress=on_progress, on_checkpoint=exporter(pipe, out, vae.decoder))
    vae.decoder.eval()
