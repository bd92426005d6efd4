"""Train the embedded model from scratch: `python -m pipeline.embedded.train --out DIR`.

Three stages, each resumable from its checkpoint in the state folder (`--state`, default
`DIR.state`); the model is exported to DIR in diffusers format as the stages go.

1. Autoencoder: the AutoencoderDC learns to reconstruct rendered pictures (L1 + MSE).
   Its `scaling_factor` is then set to 1 / std of the latents, so scaled latents have unit std.
2. Denoiser + text encoder, jointly, with the autoencoder frozen, 6000 steps. Three choices make
   the denoiser follow position and shape words; without the first two a 4000-step run followed
   colour and size words only (position 18.8 %, chance level), and its loss did not change when
   "left" was swapped for "right".
   - The text encoder's residual branches start at zero (`model.build_text_encoder`), so each
     output starts as its own word. From Gemma-2's default initialisation, the trained
     encoder's outputs for "left" and "right" prompts differed by a sixth of their norm at the
     position word, against more than their whole norm for two colour words.
   - Position warm-up: the first `position_warmup_steps` steps show only black shapes on white
     (the training combinations among them). Shape and background colours come from the same
     eight, so averaged over colours a position word leaves no trace in the expected picture:
     until the denoiser has learnt which colour goes where, reading it gains nothing to first
     order. On black-on-white pictures it gains at once. With both choices, the export at step
     750 already placed all of the first 48 held-out prompts right (`python -m pipeline
     evaluate-embedded --model DIR --limit 48`); with the zero branches alone the denoiser
     began to react to position words between steps 550 and 1250. After 4000 steps both runs
     follow background, colour, position and size words on all 240 held-out prompts; shape is
     57.1 % with the warm-up and 49.2 % without.
   - Shape-edge loss weight: latent pixels that cover an edge of the shape (`latent_edge_mask`,
     about a seventh of them) count 1 + `shape_edge_weight` times in the loss, which is then
     divided by the mean weight. A circle and a square of the same area differ only near their
     outline, a few dozen of 4096 pixels, so with a plain mean the word "circle" or "square"
     barely changes the loss. Without the weight, a run resumed to 6000 steps drew both as the
     same rounded square: with the same seed, the bounding-box fill of its pictures was 0.853 for
     "circle" prompts and 0.856 for "square" ones, and shape was 68.3 % (triangles were right).
     With weight 24, the fills at step 3600 were 0.769 and 0.869, and after 6000 steps shape
     was 84.2 % at guidance 3 and 85.8 % at guidance 2 (80.0 % at 4); weight 8 gave fills of
     0.775 and 0.877 at step 3600 and shape 79.2 % at guidance 3. Higher guidance rounds the
     squares again, hence the preset's guidance of 2. The shipped model is the weight-24 run.
   Shape words are learnt last, from about step 2000 on. Options under trial, off by default:
   `text_encoder_frozen_steps`, `text_encoder_lr_scale`, `anchor_fraction` (`data.Anchor`).
3. Decoder refinement: the decoder alone trains longer with an edge-weighted loss, because
   shape is read from edges and corners, which stage 1 leaves blurred. The encoder stays frozen,
   so the latent space stage 2 learnt does not move; stage 3 depends on stage 1 only and may run
   in a second process beside stage 2 (`--stages 3`).

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
- The transformer sees 64x64 pictures only (16x16 latents, `sample_size=16`).

Every batch is a pure function of (seed, stage, step), so a resumed run repeats the batches an
uninterrupted run would have seen. On a CPU shared with other busy processes, `--threads 1` is
much faster than 2: OpenMP threads waiting on each other lose their time slices.
"""
from __future__ import annotations

import argparse
import math
import random
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from . import ENCODE_KWARGS, NATIVE_SIZE
from . import data
from .model import ModelConfig, build_pipeline


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 0
    vae_steps: int = 600
    vae_batch: int = 16
    vae_lr: float = 1e-3
    steps: int = 6000  # denoiser + text encoder
    batch: int = 32
    lr: float = 5e-4
    warmup: int = 100
    caption_dropout: float = 0.1
    # Options under trial for the position/shape problem (see the module docstring); the shipped
    # model used none of them (0, 1.0, 0.0).
    text_encoder_frozen_steps: int = 0  # stage 2 trains the denoiser alone first
    text_encoder_lr_scale: float = 1.0  # then the text encoder at this fraction of the learning rate
    anchor_background: str = "white"
    anchor_fraction: float = 0.0  # of stage 2's pictures get the anchor background (see data.Anchor)
    # Stage 2 starts with this many steps on black shapes on white (see the module docstring).
    position_warmup_steps: int = 300
    # Stage-2 loss weight of latent pixels near an edge of the shape, on top of 1 (see the docstring).
    shape_edge_weight: float = 24.0
    pool_size: int = 8192  # pre-encoded training pictures for stage 2 (prompts are redrawn each step)
    refine_steps: int = 1200  # stage 3
    refine_lr: float = 1e-3
    edge_weight: float = 9.0  # loss weight of pixels within one pixel of an edge, on top of 1
    checkpoint_every: int = 100
    threads: int = 2


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """(B, H, W, 3) uint8 -> (B, 3, H, W) float in [-1, 1]."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1


def lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warm-up, then cosine decay to 5 % of the peak."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(total - warmup, 1)
    return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress))


def batch_rng(seed: int, stage: int, step: int) -> random.Random:
    return random.Random(seed * 1_000_003 + stage * 100_000 + step)


def batch_generator(seed: int, stage: int, step: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + stage * 100_000 + step)


def save_state(path: Path, state: dict) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)  # atomic: a crash mid-save leaves the previous checkpoint


def export(pipe, out: Path) -> None:
    pipe.save_pretrained(out, safe_serialization=True)


def train_decoder(pipe, cfg: TrainConfig, state_dir: Path, out: Path) -> None:
    """Stage 1: the autoencoder, then its scaling_factor."""
    vae = pipe.vae
    path = state_dir / "stage1.pt"
    optimizer = torch.optim.AdamW(vae.parameters(), lr=cfg.vae_lr, weight_decay=0.0)
    start = 0
    if path.exists():
        state = torch.load(path, weights_only=False)
        vae.load_state_dict(state["vae"])
        optimizer.load_state_dict(state["optimizer"])
        start = state["step"]
        if state.get("done"):
            vae.register_to_config(scaling_factor=state["scaling_factor"])
            return
    combos = data.training_combos()
    vae.train()
    bar = tqdm(range(start, cfg.vae_steps), initial=start, total=cfg.vae_steps, desc="decoder", mininterval=20)
    for step in bar:
        for group in optimizer.param_groups:
            group["lr"] = cfg.vae_lr * lr_factor(step, cfg.vae_steps, cfg.warmup)
        images, _, _ = data.training_batch(batch_rng(cfg.seed, 1, step), NATIVE_SIZE, cfg.vae_batch, combos)
        x = to_tensor(images)  # (B, 3, 64, 64)
        y = vae.decode(vae.encode(x).latent).sample  # (B, 3, 64, 64)
        loss = (y - x).abs().mean() + ((y - x) ** 2).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        optimizer.step()
        bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
        if (step + 1) % cfg.checkpoint_every == 0 and step + 1 < cfg.vae_steps:
            save_state(path, {"vae": vae.state_dict(), "optimizer": optimizer.state_dict(), "step": step + 1})
    vae.eval()
    scaling_factor = latent_scaling_factor(vae, cfg, combos)
    vae.register_to_config(scaling_factor=scaling_factor)
    save_state(
        path,
        {
            "vae": vae.state_dict(),
            "optimizer": optimizer.state_dict(),
            "step": cfg.vae_steps,
            "done": True,
            "scaling_factor": scaling_factor,
        },
    )
    export(pipe, out)


@torch.no_grad()
def latent_scaling_factor(vae, cfg: TrainConfig, combos) -> float:
    """1 / std of the latents over 1024 pictures, so that scaled latents have unit std."""
    rng = batch_rng(cfg.seed, 3, 0)
    images, _, _ = data.training_batch(rng, NATIVE_SIZE, 1024, combos)
    latents = torch.cat([vae.encode(to_tensor(chunk)).latent for chunk in np.split(images, 16)])
    return float(1.0 / latents.std())


@torch.no_grad()
def latent_pool(vae, rng: random.Random, size: int, combos: list, anchor: data.Anchor | None = None,
                desc: str = "encode pool") -> tuple[torch.Tensor, torch.Tensor, list[data.Scene]]:
    """Pre-encode `size` pictures of `combos`: scaled latents (N, C, h, w), their edge masks
    (N, 1, h, w; `latent_edge_mask`) and their scenes."""
    scenes, latents, edges = [], [], []
    for _ in tqdm(range(size // 256), desc=desc, mininterval=20):
        images, _, batch_scenes = data.training_batch(rng, NATIVE_SIZE, 256, combos, anchor)
        x = to_tensor(images)
        latent = vae.encode(x).latent * vae.config.scaling_factor
        latents.append(latent)
        edges.append(latent_edge_mask(x, latent.shape[-2:]))
        scenes += batch_scenes
    return torch.cat(latents), torch.cat(edges), scenes


def stage2_pools(vae, cfg: TrainConfig) -> tuple[tuple, tuple | None]:
    """The main pool of training pictures and the warm-up pool of black shapes on white (or None)."""
    combos = data.training_combos()
    anchor = data.Anchor(cfg.anchor_background, cfg.anchor_fraction, frozenset(combos)) if cfg.anchor_fraction else None
    main = latent_pool(vae, batch_rng(cfg.seed, 4, 0), cfg.pool_size, combos, anchor)
    if not cfg.position_warmup_steps:
        return main, None
    black_on_white = [combo for combo in combos if combo[1:3] == ("black", "white")]
    warmup = latent_pool(vae, batch_rng(cfg.seed, 4, 1), 1024, black_on_white, desc="encode warm-up pool")
    return main, warmup


def train_denoiser(pipe, cfg: TrainConfig, state_dir: Path, out: Path, shift: float) -> None:
    """Stage 2: transformer and text encoder together; the autoencoder is frozen."""
    transformer, text_encoder = pipe.transformer, pipe.text_encoder
    optimizer = torch.optim.AdamW(
        [{"params": list(transformer.parameters()), "scale": 1.0},
         {"params": list(text_encoder.parameters()), "scale": cfg.text_encoder_lr_scale,
          "frozen_steps": cfg.text_encoder_frozen_steps}],
        lr=cfg.lr, weight_decay=0.0)
    path = state_dir / "stage2.pt"
    start = 0
    if path.exists():
        state = torch.load(path, weights_only=False)
        transformer.load_state_dict(state["transformer"])
        text_encoder.load_state_dict(state["text_encoder"])
        optimizer.load_state_dict(state["optimizer"])
        start = state["step"]
    if start >= cfg.steps:
        return
    pipe.vae.requires_grad_(False)
    main_pool, warmup_pool = stage2_pools(pipe.vae, cfg)
    timesteps_per_sigma = pipe.scheduler.config.num_train_timesteps * transformer.config.timestep_scale
    device = torch.device("cpu")
    transformer.train()
    text_encoder.train()
    bar = tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, desc="denoiser", mininterval=20)
    for step in bar:
        for group in optimizer.param_groups:
            frozen = step < group.get("frozen_steps", 0)
            group["lr"] = 0.0 if frozen else cfg.lr * group["scale"] * lr_factor(step, cfg.steps, cfg.warmup)
        rng = batch_rng(cfg.seed, 2, step)
        generator = batch_generator(cfg.seed, 2, step)
        pool, edges, scenes = warmup_pool if step < cfg.position_warmup_steps else main_pool
        index = rng.sample(range(len(scenes)), cfg.batch)
        prompts = [
            "" if rng.random() < cfg.caption_dropout else data.describe(scenes[i], rng.choice(data.TRAIN_FORMS), rng)
            for i in index
        ]
        x0 = pool[index]  # (B, C, h, w)
        noise = torch.randn(x0.shape, generator=generator)
        u = torch.rand(cfg.batch, generator=generator)
        sigma = shift * u / (1 + (shift - 1) * u)  # (B,)
        s = sigma[:, None, None, None]
        xt = (1 - s) * x0 + s * noise

        embeds, mask, _, _ = pipe.encode_prompt(
            prompts, do_classifier_free_guidance=False, device=device, **ENCODE_KWARGS
        )  # (B, L, D), (B, L)
        prediction = transformer(
            xt,
            encoder_hidden_states=embeds,
            encoder_attention_mask=mask,
            timestep=sigma * timesteps_per_sigma,
            return_dict=False,
        )[0]
        weight = 1 + cfg.shape_edge_weight * edges[index]  # (B, 1, h, w)
        loss = (weight * (prediction - (noise - x0)) ** 2).mean() / weight.mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for group in optimizer.param_groups for p in group["params"]], 1.0)
        optimizer.step()
        bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
        if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.steps:
            save_state(
                path,
                {
                    "transformer": transformer.state_dict(),
                    "text_encoder": text_encoder.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "step": step + 1,
                },
            )
            transformer.eval()
            text_encoder.eval()
            export(pipe, out)
            transformer.train()
            text_encoder.train()
    transformer.eval()
    text_encoder.eval()


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


def refine_decoder(pipe, cfg: TrainConfig, state_dir: Path) -> None:
    """Stage 3: the decoder alone, edge-weighted L1 + MSE, on latents of the frozen encoder."""
    vae = pipe.vae
    decoder = vae.decoder
    optimizer = torch.optim.AdamW(decoder.parameters(), lr=cfg.refine_lr, weight_decay=0.0)
    path = state_dir / "stage3.pt"
    start = 0
    if path.exists():
        state = torch.load(path, weights_only=False)
        decoder.load_state_dict(state["decoder"])
        optimizer.load_state_dict(state["optimizer"])
        start = state["step"]
    if start >= cfg.refine_steps:
        return
    vae.requires_grad_(False)
    decoder.requires_grad_(True)
    decoder.train()
    combos = data.training_combos()
    bar = tqdm(range(start, cfg.refine_steps), initial=start, total=cfg.refine_steps, desc="refine decoder",
               mininterval=20)
    for step in bar:
        for group in optimizer.param_groups:
            group["lr"] = cfg.refine_lr * lr_factor(step, cfg.refine_steps, cfg.warmup)
        images, _, _ = data.training_batch(batch_rng(cfg.seed, 5, step), NATIVE_SIZE, cfg.vae_batch, combos)
        x = to_tensor(images)  # (B, 3, 64, 64)
        with torch.no_grad():
            z = vae.encode(x).latent  # (B, C, 16, 16)
        y = vae.decode(z).sample
        weight = 1 + cfg.edge_weight * edge_mask(x)  # (B, 1, 64, 64)
        loss = (weight * ((y - x).abs() + (y - x) ** 2)).mean() / weight.mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(decoder.parameters(), 1.0)
        optimizer.step()
        bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
        if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.refine_steps:
            save_state(path, {"decoder": decoder.state_dict(), "optimizer": optimizer.state_dict(), "step": step + 1})
    decoder.eval()


def main(argv: list[str] | None = None) -> int:
    defaults = TrainConfig()
    parser = argparse.ArgumentParser(prog="python -m pipeline.embedded.train", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="model folder to write (diffusers format)")
    parser.add_argument("--state", type=Path, help="checkpoint folder (default: OUT.state)")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--vae-steps", type=int, default=defaults.vae_steps)
    parser.add_argument("--steps", type=int, default=defaults.steps)
    parser.add_argument("--batch", type=int, default=defaults.batch)
    parser.add_argument("--pool-size", type=int, default=defaults.pool_size)
    parser.add_argument("--refine-steps", type=int, default=defaults.refine_steps)
    parser.add_argument("--text-encoder-frozen-steps", type=int, default=defaults.text_encoder_frozen_steps)
    parser.add_argument("--text-encoder-lr-scale", type=float, default=defaults.text_encoder_lr_scale)
    parser.add_argument("--position-warmup-steps", type=int, default=defaults.position_warmup_steps,
                        help="first stage-2 steps on black shapes on white only")
    parser.add_argument("--shape-edge-weight", type=float, default=defaults.shape_edge_weight,
                        help="stage-2 loss weight of latent pixels at the shape's edges, on top of 1")
    parser.add_argument("--anchor-fraction", type=float, default=defaults.anchor_fraction,
                        help="share of stage-2 pictures drawn on a white background")
    parser.add_argument("--stages", default="1,2,3", help="which stages to run, e.g. 3 (stage 1 must be done)")
    parser.add_argument("--threads", type=int, default=defaults.threads)
    args = parser.parse_args(argv)
    cfg = TrainConfig(
        seed=args.seed, vae_steps=args.vae_steps, steps=args.steps, batch=args.batch, pool_size=args.pool_size,
        refine_steps=args.refine_steps, threads=args.threads,
        text_encoder_frozen_steps=args.text_encoder_frozen_steps, text_encoder_lr_scale=args.text_encoder_lr_scale,
        anchor_fraction=args.anchor_fraction, position_warmup_steps=args.position_warmup_steps,
        shape_edge_weight=args.shape_edge_weight,
    )
    stages = {int(stage) for stage in args.stages.split(",")}
    state_dir = args.state or args.out.with_name(args.out.name + ".state")
    state_dir.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(cfg.threads)

    model_config = ModelConfig()
    print(f"train config: {asdict(cfg)}\nmodel config: {asdict(model_config)}", flush=True)
    started = time.time()
    pipe = build_pipeline(model_config, seed=cfg.seed)
    train_decoder(pipe, cfg, state_dir, args.out)  # always: later stages build on it
    print(f"stage 1 done after {time.time() - started:.0f} s", flush=True)
    if 2 in stages:
        train_denoiser(pipe, cfg, state_dir, args.out, shift=model_config.shift)
        print(f"stage 2 done after {time.time() - started:.0f} s", flush=True)
    if 3 in stages:
        refine_decoder(pipe, cfg, state_dir)
        print(f"stage 3 done after {time.time() - started:.0f} s", flush=True)
    if 2 not in stages:
        # This process holds no trained denoiser; the run with stage 2 (or a rerun) exports it all.
        print("stage 2 not run here: run again with --stages 1,2,3 to export the finished model", flush=True)
        return 0
    export(pipe, args.out)
    print(f"done after {time.time() - started:.0f} s (this run; resumed runs count from their restart)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
