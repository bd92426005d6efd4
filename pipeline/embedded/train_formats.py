"""Stage 4 of training the embedded model: every format's size, and two objects.

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
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from . import FORMAT_SIZES, NATIVE_SIZE, data, pairs
from .config import TrainConfig
from .loop import ProgressCallback, StageLoop
from .train import (batch_generator, batch_rng, exporter, flow_matching_loss, latent_edge_mask,
                    optimizer_step, set_learning_rate, to_tensor)

STAGE_SEED = 6  # batch_rng's stage number for stage 4 (stages 1-3 use 1 to 5)


def format_batch(cfg: TrainConfig, step: int, combos: list, pair_combos: list):
    """Stage 4's batch number `step`: ((width, height), images (B, H, W, 3) uint8, prompts).

    Prompts are "" with the caption-dropout probability, as in stage 2.
    """
    rng = batch_rng(cfg.seed, STAGE_SEED, step)
    images, prompts = [], []
    if rng.random() < cfg.square_fraction:
        size, pair_fraction = (NATIVE_SIZE, NATIVE_SIZE), 0.0
    else:
        size, pair_fraction = rng.choice(list(FORMAT_SIZES.values())), cfg.pair_fraction
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


def format_loss(pipe, cfg: TrainConfig, step: int, shift: float, combos: list, pair_combos: list) -> torch.Tensor:
    """The flow-matching loss of stage 4's batch number `step`."""
    _, images, prompts = format_batch(cfg, step, combos, pair_combos)
    x = to_tensor(np.stack(images))  # (B, 3, H, W)
    with torch.no_grad():
        x0 = pipe.vae.encode(x).latent * pipe.vae.config.scaling_factor  # (B, C, H/4, W/4)
    edges = latent_edge_mask(x, x0.shape[-2:])
    generator = batch_generator(cfg.seed, STAGE_SEED, step)
    return flow_matching_loss(pipe, x0, edges, prompts, generator, shift, cfg.shape_edge_weight)


def train_formats(pipe, cfg: TrainConfig, state_dir: Path, out: Path, shift: float,
                  on_progress: ProgressCallback | None = None) -> None:
    """Stage 4: transformer and text encoder at every format's size with two-object scenes."""
    transformer, text_encoder = pipe.transformer, pipe.text_encoder
    optimizer = torch.optim.AdamW(
        [{"params": list(transformer.parameters())}, {"params": list(text_encoder.parameters())}],
        lr=cfg.format_lr, weight_decay=0.0)
    modules = {"transformer": transformer, "text_encoder": text_encoder}
    loop = StageLoop(state_dir / "stage4", cfg.format_steps, modules, optimizer,
                     checkpoint_every=cfg.checkpoint_every, split=True)
    if loop.done:
        return
    pipe.vae.requires_grad_(False)
    pipe.vae.eval()
    combos, pair_combos = data.training_combos(), pairs.training_pair_combos()
    transformer.train()
    text_encoder.train()

    def step(index: int) -> float:
        set_learning_rate(optimizer, cfg.format_lr, index, cfg.format_steps, cfg.warmup)
        return optimizer_step(optimizer, format_loss(pipe, cfg, index, shift, combos, pair_combos))

    loop.run(step, task="formats", on_progress=on_progress,
             on_checkpoint=exporter(pipe, out, transformer, text_encoder))
    transformer.eval()
    text_encoder.eval()
