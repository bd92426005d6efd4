"""Options shared by the entry points that load a model: the model, the device and the speed options.

Every option also reads an environment variable, so a host can set them once (a Space's
settings, a container's environment); a flag on the command line wins.
"""
from __future__ import annotations

import argparse
import os

from pipeline.commands.console import allow_compile_fallback, quiet_libraries

DTYPE_CHOICES = ("bf16", "fp16", "fp32")
TRUE = ("1", "true", "yes", "on")


def env_flag(name: str) -> bool:
    """Whether the environment variable `name` is set to a true value (1, true, yes, on)."""
    return os.environ.get(name, "").strip().lower() in TRUE


def add_model_arguments(parser: argparse.ArgumentParser, *, default_model: str | None = "embedded",
                        default_help: str = "embedded") -> None:
    """--model, --device and the speed options."""
    parser.add_argument("--model", default=os.environ.get("MODEL", default_model),
                        help=f"preset name, local diffusers folder or hub id (env MODEL; default: {default_help})")
    parser.add_argument("--device", default=os.environ.get("DEVICE"),
                        help="cpu or cuda (env DEVICE; default: cuda when available)")
    add_speed_arguments(parser)


def add_enhancer_argument(parser) -> None:
    """--enhancer: which prompt writer rewrites prompts (`pipeline.enhance.build_enhancer`)."""
    parser.add_argument("--enhancer", default=os.environ.get("ENHANCER"), metavar="REF|URL",
                        help="the prompt writer: a causal-LM folder or hub id, or an OpenAI-compatible URL#MODEL "
                             "whose key, if it needs one, is read from ENHANCER_API_KEY (env ENHANCER; default: "
                             "the model's own writer)")


def add_speed_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("speed and memory (README: Speed)")
    group.add_argument("--dtype", choices=DTYPE_CHOICES, default=os.environ.get("DTYPE"),
                       help="weights' precision (env DTYPE; default bf16 on CUDA, fp32 on CPU)")
    group.add_argument("--compile", action="store_true", default=env_flag("COMPILE"),
                       help="torch.compile the denoiser's repeated block: slower start, faster steps (env COMPILE=1)")
    group.add_argument("--attention-backend", default=os.environ.get("ATTENTION_BACKEND"),
                       help="a diffusers attention backend, e.g. native, flash, _native_cudnn, sage "
                            "(env ATTENTION_BACKEND)")
    group.add_argument("--tiled-decode", action="store_true", default=env_flag("TILED_DECODE"),
                       help="always decode latents in tiles (default: only above 1536x1536; env TILED_DECODE=1)")
    group.add_argument("--cpu-offload", action="store_true", default=env_flag("CPU_OFFLOAD"),
                       help="keep only the running component on the GPU: for small GPUs, slower (env CPU_OFFLOAD=1)")


def speed_options(args: argparse.Namespace):
    """The `SpeedOptions` the parsed speed flags ask for; ValueError on a bad value."""
    from pipeline.speed import SpeedOptions

    return SpeedOptions(dtype=args.dtype, compile=args.compile, attention_backend=args.attention_backend,
                        tiled_decode=True if args.tiled_decode else None, cpu_offload=args.cpu_offload)


def prepare_process(args: argparse.Namespace):
    """The speed options the flags ask for, with this process set up to load a model with them.

    Libraries are quieted unless --verbose, and --compile gets torch.compile's eager fallback.
    ValueError on a bad value, before anything heavy is imported.
    """
    options = speed_options(args)
    quiet_libraries(verbose=args.verbose)
    if options.compile:
        allow_compile_fallback()
    return options
