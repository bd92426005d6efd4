"""`python -m pipeline train-writer --out DIR`: train the embedded model's prompt writer.

A tiny `Qwen3ForCausalLM` learns to turn loose descriptions ("a red circle", "green background,
triangle") into full contract prompts that keep every stated attribute and choose the others
(pipeline/embedded/writer.py). Seeded and resumable: the state folder (--state, default
DIR.state) holds the weights, optimizer and step; run the same command again after an
interruption and it goes on with exactly the batches an uninterrupted run would have seen.
"""
from __future__ import annotations

import argparse
import time
from dataclasses import asdict
from pathlib import Path

from pipeline.commands.console import fail, quiet_libraries


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from pipeline.embedded.writer_config import WriterConfig

    defaults = WriterConfig()
    parser.add_argument("--out", type=Path, required=True, help="folder to write the writer to (transformers format)")
    parser.add_argument("--state", type=Path, help="checkpoint folder (default: OUT.state)")
    parser.add_argument("--seed", type=int, default=defaults.seed, help=f"seed of weights and batches (default {defaults.seed})")
    parser.add_argument("--steps", type=int, default=defaults.steps, help=f"training steps (default {defaults.steps})")
    parser.add_argument("--batch", type=int, default=defaults.batch, help=f"batch size (default {defaults.batch})")
    parser.add_argument("--threads", type=int, default=defaults.threads,
                        help=f"torch CPU threads; 1 on a busy shared CPU (default {defaults.threads})")


def run(args: argparse.Namespace) -> int:
    if args.steps < 1 or args.batch < 1 or args.threads < 1:
        return fail("--steps, --batch and --threads must be at least 1")
    quiet_libraries(verbose=args.verbose)
    from pipeline.embedded.writer import train
    from pipeline.embedded.writer_config import WriterConfig

    cfg = WriterConfig(seed=args.seed, steps=args.steps, batch=args.batch, threads=args.threads)
    state_dir = args.state or args.out.with_name(args.out.name + ".state")
    print(f"writer config: {asdict(cfg)}", flush=True)
    started = time.perf_counter()

    def progress(step: int, total: int, loss: float, seconds: float) -> None:
        print(f"step {step}/{total} loss {loss:.4f} ({seconds:.0f} s)", flush=True)

    try:
        train(cfg, args.out, state_dir, on_progress=progress)
    except ValueError as error:
        return fail(str(error))
    print(f"saved to {args.out} after {time.perf_counter() - started:.0f} s (this run)", flush=True)
    return 0
