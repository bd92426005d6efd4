"""GPU speed options of the pipeline object, each off or automatic by default and each measured by
`python -m pipeline bench`.

- dtype: bf16 on CUDA and fp32 on CPU unless chosen.
- compile: `torch.compile` of the denoiser's repeated transformer block only ("regional"
  compilation), so start-up pays for compiling one block, not the whole model. Where
  compilation is unavailable the denoiser runs uncompiled, with one log line saying why.
- attention_backend: one of diffusers' attention backends (e.g. "native", "flash",
  "_native_cudnn", "sage"), set on the denoiser.
- tiled_decode: decode latents in tiles; by default only above `TILED_DECODE_PIXELS`.
- cpu_offload: keep only the running component on the GPU (small GPUs; slower); on a CPU the
  model simply stays there, with one log line.

Options that cannot apply on this machine fall back with one log line rather than failing, so
one configuration (a Space's settings, say) serves on any hardware; a device that does not exist
is an error (`check_device`).
"""
from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from diffusers import DiffusionPipeline

log = logging.getLogger(__name__)

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
# Above this many pixels the decoder works in tiles so memory stays bounded.
TILED_DECODE_PIXELS = 1536 * 1536


@dataclass(frozen=True)
class SpeedOptions:
    dtype: str | None = None  # "bf16", "fp16" or "fp32"; None: bf16 on CUDA, fp32 on CPU
    compile: bool = False
    attention_backend: str | None = None
    tiled_decode: bool | None = None  # None: tile above TILED_DECODE_PIXELS
    cpu_offload: bool = False

    def __post_init__(self) -> None:
        if self.dtype is not None and self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")

    def torch_dtype(self, device: str) -> torch.dtype:
        if self.dtype is not None:
            return DTYPES[self.dtype]
        return torch.bfloat16 if device.startswith("cuda") else torch.float32

    def tile(self, width: int, height: int) -> bool:
        return self.tiled_decode if self.tiled_decode is not None else width * height > TILED_DECODE_PIXELS


def check_device(device: str) -> None:
    """ValueError, in one sentence saying what to install or choose, unless torch can run on `device`."""
    kind = device.split(":", 1)[0]
    if kind not in ("cpu", "cuda"):
        raise ValueError(f"device must be cpu or cuda (or cuda:N), got {device!r}")
    if kind == "cuda" and not torch.cuda.is_available():
        if torch.version.cuda is None:
            raise ValueError(f"device {device!r} needs a CUDA build of torch; this one ({torch.__version__}) is for "
                             "the CPU only: install torch's CUDA build on a machine with an NVIDIA GPU, or use cpu")
        raise ValueError(f"device {device!r}: torch {torch.__version__} sees no CUDA GPU; check the NVIDIA driver "
                         "and CUDA_VISIBLE_DEVICES, or use cpu")


def compile_unavailable(device: str) -> str | None:
    """Why torch.compile cannot work here, or None when it can."""
    if not torch._dynamo.is_dynamo_supported():
        return "torch.compile does not support this Python build"
    if device.startswith("cuda"):
        try:
            import triton  # noqa: F401  (inductor's GPU code generator)
        except ImportError:
            return "Triton is not installed"
    elif not any(shutil.which(compiler) for compiler in ("c++", "g++", "clang++")):
        return "no C++ compiler for inductor's CPU code"
    return None


def compile_denoiser(transformer, device: str) -> bool:
    """Compile the denoiser's repeated block in place; False (and one log line) when unavailable."""
    reason = compile_unavailable(device)
    if reason is not None:
        log.warning("torch.compile unavailable (%s); the denoiser runs uncompiled", reason)
        return False
    if getattr(transformer, "_repeated_blocks", None):
        transformer.compile_repeated_blocks(fullgraph=True)
    else:  # Sana's denoiser declares no repeated block; its blocks are all alike.
        for block in transformer.transformer_blocks:
            block.compile(fullgraph=True)
    return True


def apply(pipe: DiffusionPipeline, device: str, options: SpeedOptions) -> DiffusionPipeline:
    """Place the loaded pipeline on `device` with the chosen options."""
    if options.cpu_offload and device.startswith("cuda"):
        pipe.enable_model_cpu_offload(device=device)
    else:
        if options.cpu_offload:
            log.warning("cpu_offload applies to CUDA devices only; the model stays on %s", device)
        pipe.to(device)
    if options.attention_backend is not None:
        try:
            pipe.transformer.set_attention_backend(options.attention_backend)
        except (ValueError, RuntimeError, ImportError) as error:
            raise ValueError(f"attention_backend {options.attention_backend!r} cannot be used here: {error}") from None
    if options.compile:
        compile_denoiser(pipe.transformer, device)
    return pipe
