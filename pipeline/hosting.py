"""What differs when the studio is hosted as a Hugging Face Space.

A Space sets `SPACE_ID`; on ZeroGPU hardware it also sets `SPACES_ZERO_GPU`, and a GPU is lent
only inside functions decorated with `spaces.GPU`. `on_gpu` gives that decorator there and the
function unchanged anywhere else, so the same code runs on a laptop, in CI and on a Space.
Nothing here touches CUDA.
"""
from __future__ import annotations

import os
from typing import Callable, TypeVar

F = TypeVar("F", bound=Callable)
# Seconds of GPU a ZeroGPU Space asks for per batch: a batch of the largest preset's 1024x1024
# images fits well within it.
GPU_DURATION_S = 120


def on_space() -> bool:
    return bool(os.environ.get("SPACE_ID"))


def on_zero_gpu() -> bool:
    return bool(os.environ.get("SPACES_ZERO_GPU"))


def on_gpu(duration: int = GPU_DURATION_S) -> Callable[[F], F]:
    """`spaces.GPU(duration=...)` on a ZeroGPU Space, else the identity decorator."""
    if not on_zero_gpu():
        return lambda function: function
    import spaces

    return spaces.GPU(duration=duration)
