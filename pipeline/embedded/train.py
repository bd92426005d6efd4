"""Train the embedded model from scratch (`python -m pipeline train-embedded --out DIR`).

Eight stages, each resumable from its checkpoint in a state folder; the model is exported to the
output folder in diffusers format as the stages go. Stages 1-3 are here; stages 4-8 (every
format's size and two-object scenes, then binding, then the objects' corners, then a balance of
one-object pictures in every format, then the decoder on the denoiser's own latents) are
`train_formats`. TRAINING.md beside this file has the runs behind these choices and what they
measured.

1. Autoencoder: the AutoencoderDC learns to reconstruct rendered pictures (L1 + MSE).
   Its `scaling_factor` is then set to 1 / std of the latents, so scaled latents have unit std.
2. Denoiser + text encoder, jointly, with the autoencoder frozen. Three choices make the
   denoiser follow position and shape words, which it otherwise ignores:
   - The text encoder's residual branches start at zero (`model.build_text_encoder`), so each
     output starts as its own word and "left" and "right" stay apart.
   - Position warm-up: the first `position_warmup_steps` steps show only black shapes on white
     (the training combinations among them). Shape and background colours come from the same
     eight, so averaged over colours a position word leaves no trace in the expected picture:
     until the denoiser has learnt which colour goes where, reading it gains nothing to first
     order. On black-on-white pictures it gains at once.
   - Shape-edge loss weight: latent pixels that cover an edge of the shape (`latent_edge_mask`,
     about a seventh of them) count 1 + `shape_edge_weight` times in the loss, which is then
     divided by the mean weight. A circle and a square of the same area differ only near their
     outline, a few dozen of 4096 pixels, so with a plain mean the word "circle" or "square"
     barely changes the loss.
   Options under trial, off by default: `text_encoder_frozen_steps`, `text_encoder_lr_scale`,
   `anchor_fraction` (`data.Anchor`).
3. Decoder refinement: the decoder alone trains longer with an edge-weighted loss, because
   shape is read from edges and corners, which stage 1 leaves blurred. The encoder stays frozen,
   so the latent space stage 2 learnt does not move; stage 3 depends on stage 1 only and may run
   in a second process beside stage 2 (`python -m pipeline train-embedded --stages 3`).

Inference conventions this training matches (stock `SanaPipeline`, `FlowMatchEulerDiscreteScheduler`):
- Prompt embeddings come from the pipeline's own `encode_prompt(prompts,
  do_classifier_free_guidance=False, max_sequence_length=MAX_SEQUENCE_LENGTH,
  complex_human_instruction=None)`: lower-cased, <bos> first, padded right to
  MAX_SEQUENCE_LENGTH, with the attention mask passed to the transformer as
  `encoder_attention_mask`. Inference passes the same two arguments (`ENCODE_KWARGS`, inside
  `CALL_KWARGS`, which also turns the pipeline's resolution binning off).
- Caption dropout: 10 % of prompts are replaced by "", which encodes to <bos> alone, exactly as
  the pipeline encodes the empty negative prompt for classifier-free guidance.
- Latents: `vae.encode(x).latent * vae.config.scaling_factor`, x in [-1, 1]; the pipeline decodes
  `latents / scaling_factor`.
- Noise levels: u ~ U(0, 1), sigma = shift * u / (1 + (shift - 1) * u) with shift = 2, the shift
  the scheduler applies to its sigmas; x_t = (1 - sigma) * x0 + sigma * noise.
- Timestep given to the transformer: sigma * num_train_timesteps (1000) * timestep_scale (1),
  which is what the scheduler's timesteps (sigma * 1000 after the shift) become in `__call__`.
- Target: the flow-matching velocity noise - x0; the scheduler's Euler step is
  x_next = x + (sigma_next - sigma) * prediction.
- Stages 1-3 show the transformer 64x64 pictures only (16x16 latents, `sample_size=16`); stage 4
  the formats' sizes, whose latent grids the sin-cos position embedding spans alike.

Every batch is a pure function of (seed, stage, step) and each stage runs its steps through one
resumable loop (`loop.StageLoop`), so a resumed run repeats the batches an uninterrupted run
would have seen and ends with the same weights. Progress is reported through `on_progress`
(`loop.Progress` events); nothing here prints.
"""
from __future__ import annotations

import math
import random
import sys
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from diffusers import SanaPipeline
from diffusers.configuration_utils import FrozenDict
from scipy import ndimage

from . import ENCODE_KWARGS, NATIVE_SIZE
from . import data
from .config import POOL_CHUNK, STAGES, WARMUP_POOL_SIZE, TrainConfig
from .loop import Progress, ProgressCallback, StageLoop
from .model import ModelConfig, build_pipeline


def train(cfg: TrainConfig, out: Path, state_dir: Path, stages: Collection[int] = STAGES, *,
          model_config: ModelConfig | None = None, init: Path | None = None,
          on_progress: ProgressCallback | None = None,
          on_stage_done: Callable[[int], None] | None = None) -> bool:
    """Run stage 1 and those of stages 2-8 in `stages`, resuming from `state_dir`.

    Stage 1 always runs (or resumes, or is read back finished): the later stages build on it.
    With `init`, a model folder that the stages before the first of 4 to 8 in `stages`
    exported, only stages 4 to 8 run, from that folder's weights: the same weights as a run of
    all the stages. Sets torch's thread count to `cfg.threads`. `on_stage_done(stage)` is called
    as each stage ends. Returns whether the finished model was exported to `out`: only a run
    that includes stage 2 (or starts from `init`) holds a trained denoiser, so without it the
    export is left to the run with stage 2.
    """
    from .train_formats import balance_mix, corner_mix, format_mix, pair_mix, sharpen_decoder, train_formats

    state_dir.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(cfg.threads)
    model_config = model_config or ModelConfig()
    stage_done = on_stage_done or (lambda stage: None)

    if init is not None:
        pipe = SanaPipeline.from_pretrained(init, use_safetensors=True)
    else:
        pipe = build_pipeline(model_config, seed=cfg.seed)
        train_decoder(pipe, cfg, state_dir, out, on_progress)
        stage_done(1)
        if 2 in stages:
            train_denoiser(pipe, cfg, state_dir, out, model_config.shift, on_progress)
            stage_done(2)
        if 3 in stages:
            refine_decoder(pipe, cfg, state_dir, on_progress)
            stage_done(3)
        if 2 not in stages:
            return False
    for stage, mix in ((4, format_mix(cfg)), (5, pair_mix(cfg)), (6, corner_mix(cfg)), (7, balance_mix(cfg))):
        if stage in stages:
            train_formats(pipe, cfg, state_dir, out, model_config.shift, mix, on_progress)
            stage_done(stage)
    if 8 in stages:
        sharpen_decoder(pipe, cfg, state_dir, out, on_progress)
        stage_done(8)
    export(pipe, out)
    return True


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """(B, H, W, 3) uint8 -> (B, 3, H, W) float in [-1, 1]."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1


def lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warm-up, then cosine decay to 5 % of the peak."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(total - warmup, 1)
    return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress))


def set_learning_rate(optimizer: torch.optim.Optimizer, peak: float, step: int, total: int,
                      warmup: int) -> None:
    """`peak` * `lr_factor`, times each group's "scale"; 0 during a group's "frozen_steps"."""
    for group in optimizer.param_groups:
        frozen = step < group.get("frozen_steps", 0)
        group["lr"] = 0.0 if frozen else peak * group.get("scale", 1.0) * lr_factor(step, total, warmup)


def optimizer_step(optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> float:
    """Backpropagate `loss`, clip the gradient norm of all trained parameters to 1, step; the loss."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_([p for group in optimizer.param_groups for p in group["params"]], 1.0)
    optimizer.step()
    return loss.item()


def batch_rng(seed: int, stage: int, step: int) -> random.Random:
    return random.Random(seed * 1_000_003 + stage * 100_000 + step)


def batch_generator(seed: int, stage: int, step: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + stage * 100_000 + step)


def export(pipe, out: Path) -> None:
    """Save `pipe` to `out` in diffusers format, the same bytes wherever the run was resumed."""
    # encode_prompt leaves its padding and truncation on the tokenizer, and tokenizer.json would
    # keep them only when this process ran stage 2; the pipeline passes both on every call.
    pipe.tokenizer.backend_tokenizer.no_padding()
    pipe.tokenizer.backend_tokenizer.no_truncation()
    # A pipeline read from a folder (stage 4 started with `init`) would record where it came from.
    for key in ("is_local", "local_files_only"):
        pipe.tokenizer.init_kwargs.pop(key, None)
    for part in (pipe, pipe.transformer, pipe.vae, pipe.scheduler):
        part._internal_dict = FrozenDict({k: v for k, v in part.config.items() if k != "_name_or_path"})
    pipe.save_pretrained(out, safe_serialization=True)


def exporter(pipe, out: Path, *training: torch.nn.Module) -> Callable[[], None]:
    """A checkpoint callback that exports `pipe` to `out` with the `training` modules in eval mode."""
    def export_checkpoint() -> None:
        for module in training:
            module.eval()
        export(pipe, out)
        for module in training:
            module.train()

    return export_checkpoint


# ---------------------------------------------------------------------------------------------
# Stage 1: the autoencoder
# ---------------------------------------------------------------------------------------------


def train_decoder(pipe, cfg: TrainConfig, state_dir: Path, out: Path,
                  on_progress: ProgressCallback | None = None) -> None:
    """Stage 1: the autoencoder, then its scaling_factor."""
    vae = pipe.vae
    optimizer = torch.optim.AdamW(vae.parameters(), lr=cfg.vae_lr, weight_decay=0.0)
    loop = StageLoop(state_dir / "stage1.pt", cfg.vae_steps, {"vae": vae}, optimizer,
                     checkpoint_every=cfg.checkpoint_every)
    if loop.done:
        vae.register_to_config(scaling_factor=loop.state["scaling_factor"])
        return
    combos = data.training_combos()
    vae.train()

    def step(index: int) -> float:
        set_learning_rate(optimizer, cfg.vae_lr, index, cfg.vae_steps, cfg.warmup)
        images, _, _ = data.training_batch(batch_rng(cfg.seed, 1, index), NATIVE_SIZE, cfg.vae_batch, combos)
        x = to_tensor(images)  # (B, 3, 64, 64)
        y = vae.decode(vae.encode(x).latent).sample  # (B, 3, 64, 64)
        return optimizer_step(optimizer, (y - x).abs().mean() + ((y - x) ** 2).mean())

    def finish() -> dict:
        vae.eval()
        scaling_factor = latent_scaling_factor(vae, cfg, combos)
        vae.register_to_config(scaling_factor=scaling_factor)
        return {"scaling_factor": scaling_factor}

    loop.run(step, task="decoder", on_progress=on_progress, finish=finish)
    export(pipe, out)


@torch.no_grad()
def latent_scaling_factor(vae, cfg: TrainConfig, combos) -> float:
    """1 / std of the latents over 1024 pictures, so that scaled latents have unit std."""
    rng = batch_rng(cfg.seed, 3, 0)
    images, _, _ = data.training_batch(rng, NATIVE_SIZE, 1024, combos)
    latents = torch.cat([vae.encode(to_tensor(chunk)).latent for chunk in np.split(images, 16)])
    return float(1.0 / latents.std())


# ---------------------------------------------------------------------------------------------
# Stage 2: the denoiser and the text encoder
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LatentPool:
    """Pre-encoded training pictures: scaled latents, their edge masks and their scenes."""

    latents: torch.Tensor  # (N, C, h, w)
    edges: torch.Tensor  # (N, 1, h, w), `latent_edge_mask`
    scenes: list[data.Scene]


@torch.no_grad()
def latent_pool(vae, rng: random.Random, size: int, combos: list, anchor: data.Anchor | None = None,
                task: str = "encode pool", on_progress: ProgressCallback | None = None) -> LatentPool:
    """Pre-encode `size` pictures of `combos`, POOL_CHUNK at a time."""
    scenes, latents, edges = [], [], []
    if on_progress is not None:
        on_progress(Progress(task, 0, size // POOL_CHUNK))
    for index in range(size // POOL_CHUNK):
        images, _, batch_scenes = data.training_batch(rng, NATIVE_SIZE, POOL_CHUNK, combos, anchor)
        x = to_tensor(images)
        latent = vae.encode(x).latent * vae.config.scaling_factor
        latents.append(latent)
        edges.append(latent_edge_mask(x, latent.shape[-2:]))
        scenes += batch_scenes
        if on_progress is not None:
            on_progress(Progress(task, index + 1, size // POOL_CHUNK))
    return LatentPool(torch.cat(latents), torch.cat(edges), scenes)


def stage2_pools(vae, cfg: TrainConfig,
                 on_progress: ProgressCallback | None = None) -> tuple[LatentPool, LatentPool | None]:
    """The main pool of training pictures and the warm-up pool of black shapes on white (or None)."""
    combos = data.training_combos()
    anchor = None
    if cfg.anchor_fraction:
        anchor = data.Anchor(cfg.anchor_background, cfg.anchor_fraction, frozenset(combos))
    main = latent_pool(vae, batch_rng(cfg.seed, 4, 0), cfg.pool_size, combos, anchor, on_progress=on_progress)
    if not cfg.position_warmup_steps:
        return main, None
    black_on_white = [combo for combo in combos if combo[1:3] == ("black", "white")]
    warmup = latent_pool(vae, batch_rng(cfg.seed, 4, 1), WARMUP_POOL_SIZE, black_on_white,
                         task="encode warm-up pool", on_progress=on_progress)
    return main, warmup


def train_denoiser(pipe, cfg: TrainConfig, state_dir: Path, out: Path, shift: float,
                   on_progress: ProgressCallback | None = None) -> None:
    """Stage 2: transformer and text encoder together; the autoencoder is frozen."""
    transformer, text_encoder = pipe.transformer, pipe.text_encoder
    optimizer = torch.optim.AdamW(
        [{"params": list(transformer.parameters()), "scale": 1.0},
         {"params": list(text_encoder.parameters()), "scale": cfg.text_encoder_lr_scale,
          "frozen_steps": cfg.text_encoder_frozen_steps}],
        lr=cfg.lr, weight_decay=0.0)
    modules = {"transformer": transformer, "text_encoder": text_encoder}
    loop = StageLoop(state_dir / "stage2.pt", cfg.steps, modules, optimizer,
                     checkpoint_every=cfg.checkpoint_every)
    if loop.done:
        return
    pipe.vae.requires_grad_(False)
    main_pool, warmup_pool = stage2_pools(pipe.vae, cfg, on_progress)
    transformer.train()
    text_encoder.train()

    def step(index: int) -> float:
        set_learning_rate(optimizer, cfg.lr, index, cfg.steps, cfg.warmup)
        pool = warmup_pool if index < cfg.position_warmup_steps else main_pool
        return optimizer_step(optimizer, denoiser_loss(pipe, cfg, pool, index, shift))

    loop.run(step, task="denoiser", on_progress=on_progress,
             on_checkpoint=exporter(pipe, out, transformer, text_encoder))
    transformer.eval()
    text_encoder.eval()


def denoiser_loss(pipe, cfg: TrainConfig, pool: LatentPool, step: int, shift: float) -> torch.Tensor:
    """The shape-edge-weighted flow-matching loss of stage 2's batch number `step`, drawn from `pool`."""
    rng = batch_rng(cfg.seed, 2, step)
    generator = batch_generator(cfg.seed, 2, step)
    index = rng.sample(range(len(pool.scenes)), cfg.batch)
    prompts = [
        "" if rng.random() < cfg.caption_dropout
        else data.describe(pool.scenes[i], rng.choice(data.TRAIN_FORMS), rng)
        for i in index
    ]
    weight = 1 + cfg.shape_edge_weight * pool.edges[index]
    return flow_matching_loss(pipe, pool.latents[index], weight, prompts, generator, shift)


def flow_matching_loss(pipe, x0: torch.Tensor, weight: torch.Tensor, prompts: list[str],
                       generator: torch.Generator, shift: float) -> torch.Tensor:
    """The flow-matching loss on scaled latents `x0` (B, C, h, w), each latent pixel counted `weight`
    (B, 1, h, w) times and the sum divided by the mean weight: noise and noise levels drawn from
    `generator`."""
    noise = torch.randn(x0.shape, generator=generator)
    u = torch.rand(x0.shape[0], generator=generator)
    sigma = shift * u / (1 + (shift - 1) * u)  # (B,)
    s = sigma[:, None, None, None]
    xt = (1 - s) * x0 + s * noise

    embeds, mask, _, _ = pipe.encode_prompt(
        prompts, do_classifier_free_guidance=False, device=torch.device("cpu"), **ENCODE_KWARGS
    )  # (B, L, D), (B, L)
    timesteps_per_sigma = pipe.scheduler.config.num_train_timesteps * pipe.transformer.config.timestep_scale
    prediction = pipe.transformer(
        xt,
        encoder_hidden_states=embeds,
        encoder_attention_mask=mask,
        timestep=sigma * timesteps_per_sigma,
        return_dict=False,
    )[0]
    return (weight * (prediction - (noise - x0)) ** 2).mean() / weight.mean()


def edge_mask(x: torch.Tensor) -> torch.Tensor:
    """1 where a pixel is within one pixel of a colour change, else 0: (B, 3, H, W) -> (B, 1, H, W)."""
    change = torch.zeros_like(x[:, :1])
    dx = (x[..., :, 1:] - x[..., :, :-1]).abs().sum(1, keepdim=True) > 0.02  # (B, 1, H, W-1)
    dy = (x[..., 1:, :] - x[..., :-1, :]).abs().sum(1, keepdim=True) > 0.02  # (B, 1, H-1, W)
    change[..., :, 1:] += dx
    change[..., :, :-1] += dx
    change[..., 1:, :] += dy
    change[..., :-1, :] += dy
    return torch.nn.functional.max_pool2d((change > 0).float(), 3, stride=1, padding=1)


def latent_edge_mask(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """1 where a latent pixel covers a pixel of `edge_mask`, else 0: (B, 3, H, W) -> (B, 1, *size)."""
    return torch.nn.functional.adaptive_max_pool2d(edge_mask(x), size)


def corner_mask(images: np.ndarray) -> torch.Tensor:
    """1 on the corners of each object's bounding box, else 0: (B, H, W, 3) uint8 -> (B, 1, H, W).

    An object is a group of touching pixels of other colours than the background (the colour of
    the first pixel: shapes never reach it); its corners are the pixels of its bounding box
    outside the ellipse inscribed in that box. That is where a circle, a square and a triangle of
    the same box differ, so the corners decide which of them a picture shows.
    """
    masks = np.zeros(images.shape[:3], dtype=np.float32)
    for picture, mask in zip(images, masks):
        objects, _ = ndimage.label((picture != picture[0, 0]).any(axis=-1), structure=np.ones((3, 3)))
        for box in ndimage.find_objects(objects):
            rows, columns = box
            y = np.arange(rows.start, rows.stop)[:, None] + 0.5
            x = np.arange(columns.start, columns.stop)[None, :] + 0.5
            cy, cx = (rows.start + rows.stop) / 2, (columns.start + columns.stop) / 2
            ry, rx = (rows.stop - rows.start) / 2, (columns.stop - columns.start) / 2
            mask[box] = np.maximum(mask[box], (((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 > 1))
    return torch.from_numpy(masks)[:, None]


def latent_corner_mask(images: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """1 where a latent pixel covers a pixel of `corner_mask`, else 0: (B, H, W, 3) -> (B, 1, *size)."""
    return torch.nn.functional.adaptive_max_pool2d(corner_mask(images), size)


# ---------------------------------------------------------------------------------------------
# Stage 3: the decoder, refined
# ---------------------------------------------------------------------------------------------


def decoder_stage(vae, path: Path, steps: int, lr: float, cfg: TrainConfig):
    """The optimizer and resumable loop of a stage that trains the decoder alone (stages 3 and 8);
    unless the stage is done, the rest of the autoencoder is frozen and the decoder set to train."""
    decoder = vae.decoder
    optimizer = torch.optim.AdamW(decoder.parameters(), lr=lr, weight_decay=0.0)
    loop = StageLoop(path, steps, {"decoder": decoder}, optimizer, checkpoint_every=cfg.checkpoint_every)
    if not loop.done:
        vae.requires_grad_(False)
        decoder.requires_grad_(True)
        decoder.train()
    return optimizer, loop


def decoder_loss(decoded: torch.Tensor, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """L1 + MSE of `decoded` against `x` (B, 3, H, W), each pixel counted `weight` (B, 1, H, W) times."""
    error = (decoded - x).abs()
    return (weight * (error + error**2)).mean() / weight.mean()


def refine_decoder(pipe, cfg: TrainConfig, state_dir: Path,
                   on_progress: ProgressCallback | None = None) -> None:
    """Stage 3: the decoder alone, edge-weighted L1 + MSE, on latents of the frozen encoder."""
    vae = pipe.vae
    optimizer, loop = decoder_stage(vae, state_dir / "stage3.pt", cfg.refine_steps, cfg.refine_lr, cfg)
    if loop.done:
        return
    combos = data.training_combos()

    def step(index: int) -> float:
        set_learning_rate(optimizer, cfg.refine_lr, index, cfg.refine_steps, cfg.warmup)
        images, _, _ = data.training_batch(batch_rng(cfg.seed, 5, index), NATIVE_SIZE, cfg.vae_batch, combos)
        x = to_tensor(images)  # (B, 3, 64, 64)
        with torch.no_grad():
            z = vae.encode(x).latent  # (B, C, 16, 16)
        weight = 1 + cfg.edge_weight * edge_mask(x)  # (B, 1, 64, 64)
        return optimizer_step(optimizer, decoder_loss(vae.decode(z).sample, x, weight))

    loop.run(step, task="refine decoder", on_progress=on_progress)
    vae.decoder.eval()


if __name__ == "__main__":  # the older spelling of `python -m pipeline train-embedded`
    from pipeline.commands import main

    sys.exit(main(["train-embedded", *sys.argv[1:]]))
