"""The settings of a training run, apart from the training code so that reading them loads no torch.

`pipeline.embedded.train` says what each stage does with them; TRAINING.md has the runs behind
the defaults.
"""
from __future__ import annotations

from dataclasses import dataclass

# autoencoder, denoiser with text encoder, decoder refinement, every format and two objects,
# two objects again (binding), the objects' corners weighted, more one-object pictures in every format,
# the decoder on the denoiser's own latents
STAGES = (1, 2, 3, 4, 5, 6, 7, 8)
POOL_CHUNK = 256  # pictures encoded at a time into stage 2's pools
WARMUP_POOL_SIZE = 1024  # stage 2's pictures of black shapes on white for the position warm-up


@dataclass(frozen=True)
class TrainConfig:
    """Steps, batches and learning rates of the eight stages; the defaults made the shipped model."""

    seed: int = 0
    vae_steps: int = 600
    vae_batch: int = 16
    vae_lr: float = 1e-3
    steps: int = 6000  # denoiser + text encoder
    batch: int = 32
    lr: float = 5e-4
    warmup: int = 100
    caption_dropout: float = 0.1
    # Options under trial for the position/shape problem (TRAINING.md); the shipped model used
    # none of them (0, 1.0, 0.0).
    text_encoder_frozen_steps: int = 0  # stage 2 trains the denoiser alone first
    text_encoder_lr_scale: float = 1.0  # then the text encoder at this fraction of the learning rate
    anchor_background: str = "white"
    anchor_fraction: float = 0.0  # of stage 2's pictures get the anchor background (see data.Anchor)
    # Stage 2 starts with this many steps on black shapes on white (position warm-up, `train`).
    position_warmup_steps: int = 300
    # Stage-2 loss weight of latent pixels near an edge of the shape, on top of 1 (`train`).
    shape_edge_weight: float = 24.0
    pool_size: int = 8192  # pre-encoded training pictures for stage 2 (prompts are redrawn each step)
    refine_steps: int = 1200  # stage 3
    refine_lr: float = 1e-3
    edge_weight: float = 9.0  # loss weight of pixels within one pixel of an edge, on top of 1
    # Stage 4: denoiser and text encoder again, at every format's size bucket, with two-object scenes.
    format_steps: int = 5000
    format_batch: int = 32
    format_lr: float = 3e-4
    square_fraction: float = 0.25  # of stage 4's batches: stage 2's one-object 64x64 scenes
    pair_fraction: float = 0.6  # of the other batches' pictures: two objects
    # Stage 5: stage 4 continued with more two-object pictures and a higher shape-edge weight.
    pair_steps: int = 4000
    pair_lr: float = 2e-4
    pair_square_fraction: float = 0.2
    pair_pair_fraction: float = 0.8
    pair_shape_edge_weight: float = 48.0
    # Stage 6: stage 5 continued with the objects' corners weighted (`train.corner_mask`).
    corner_steps: int = 3000
    corner_lr: float = 2e-4
    corner_pair_fraction: float = 0.7
    corner_weight: float = 96.0
    # Stage 7: stage 6 continued with more one-object pictures in the formats other than the square.
    balance_steps: int = 3000
    balance_lr: float = 1.5e-4
    balance_square_fraction: float = 0.1
    balance_pair_fraction: float = 0.5
    # Stage 8: the decoder alone on latents the finished denoiser made (`train_formats.sharpen_decoder`).
    sharpen_steps: int = 3000
    sharpen_batch: int = 16
    sharpen_lr: float = 3e-4
    sharpen_square_fraction: float = 0.0  # of the batches: one-object 64x64 scenes on top of the formats' seventh
    sharpen_pair_fraction: float = 0.5
    sharpen_denoised: float = 0.7  # of the batches: denoised latents; the others the encoder's
    sharpen_miss_weight: float = 20.0
    checkpoint_every: int = 100
    # torch's CPU threads. On a CPU shared with other busy processes 1 is much faster than 2:
    # OpenMP threads waiting on each other lose their time slices.
    threads: int = 2

    def __post_init__(self):
        counts = ("vae_steps", "vae_batch", "steps", "batch", "refine_steps", "format_steps", "format_batch",
                  "pair_steps", "corner_steps", "balance_steps", "sharpen_steps", "sharpen_batch",
                  "checkpoint_every", "threads")
        for name in counts:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.pool_size < POOL_CHUNK or self.pool_size % POOL_CHUNK:
            raise ValueError(f"pool_size must be a multiple of {POOL_CHUNK}, at least {POOL_CHUNK}, "
                             f"got {self.pool_size}")
        if self.batch > min(self.pool_size, WARMUP_POOL_SIZE):
            raise ValueError(f"batch must be at most {min(self.pool_size, WARMUP_POOL_SIZE)}, the pictures "
                             f"in stage 2's smallest pool, got {self.batch}")
