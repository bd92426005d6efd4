"""Settings of the prompt writer's training, apart from the training code so that reading them
(`python -m pipeline train-writer --help`) loads no torch."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class WriterConfig:
    seed: int = 0
    steps: int = 1500
    batch: int = 64
    lr: float = 3e-3
    warmup: int = 50
    checkpoint_every: int = 250
    width: int = 64
    layers: int = 2
    heads: int = 4
    threads: int = 1
