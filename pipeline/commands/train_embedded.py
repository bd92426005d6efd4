"""`python -m pipeline train-embedded --out DIR`: train the embedded model from scratch.

Eight stages: the autoencoder, then the denoiser with the text encoder, then a longer refinement
of the decoder (pipeline/embedded/train.py says what each does and why), then the denoiser and
text encoder again at every format's size with two-object scenes, then once more with more
two-object scenes for attribute binding, then with the objects' corners weighted, then with more
one-object pictures in every format, then the decoder on the denoiser's own latents (stages
4-8: train_formats.py). Each stage checkpoints to the state folder (--state, default DIR.state)
and resumes from it: run the same command again after an interruption and it repeats exactly
the batches an uninterrupted run would have seen. The model is exported to DIR in diffusers
format as the stages go.

Stage 3 depends on stage 1 only, so it may run in a second process beside stage 2 with
`--stages 1,3`; the run with stage 2 exports the finished model. The default, all eight stages,
makes the shipped model. `--init FOLDER` starts the later stages from a folder the earlier ones
exported: `--stages 4,5,6,7,8 --init FOLDER` from a model of `--stages 1,2,3`, `--stages 8 --init
FOLDER` from one of stages 1-7; the same weights as one run of all of them. On a CPU shared with
other busy processes, `--threads 1` is much faster than 2.
When stderr is not a terminal, progress is printed as plain lines instead of bars.
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict
from pathlib import Path

from pipeline.commands.console import fail, quiet_libraries
from pipeline.embedded.config import POOL_CHUNK, STAGES, TrainConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = TrainConfig()
    parser.add_argument("--out", type=Path, required=True, help="model folder to write (diffusers format)")
    parser.add_argument("--state", type=Path, help="checkpoint folder (default: OUT.state)")
    parser.add_argument("--seed", type=int, default=defaults.seed,
                        help=f"seed of the initial weights and of every batch (default {defaults.seed})")
    parser.add_argument("--vae-steps", type=int, default=defaults.vae_steps,
                        help=f"stage 1 steps (default {defaults.vae_steps})")
    parser.add_argument("--steps", type=int, default=defaults.steps,
                        help=f"stage 2 steps (default {defaults.steps})")
    parser.add_argument("--batch", type=int, default=defaults.batch,
                        help=f"stage 2 batch size (default {defaults.batch})")
    parser.add_argument("--pool-size", type=int, default=defaults.pool_size,
                        help=f"pre-encoded stage-2 training pictures, a multiple of {POOL_CHUNK} "
                             f"(default {defaults.pool_size})")
    parser.add_argument("--refine-steps", type=int, default=defaults.refine_steps,
                        help=f"stage 3 steps (default {defaults.refine_steps})")
    parser.add_argument("--text-encoder-frozen-steps", type=int, default=defaults.text_encoder_frozen_steps,
                        help="first stage-2 steps with the text encoder frozen (under trial; default "
                             f"{defaults.text_encoder_frozen_steps})")
    parser.add_argument("--text-encoder-lr-scale", type=float, default=defaults.text_encoder_lr_scale,
                        help="the text encoder's share of stage 2's learning rate (under trial; default "
                             f"{defaults.text_encoder_lr_scale:g})")
    parser.add_argument("--position-warmup-steps", type=int, default=defaults.position_warmup_steps,
                        help="first stage-2 steps on black shapes on white only "
                             f"(default {defaults.position_warmup_steps})")
    parser.add_argument("--shape-edge-weight", type=float, default=defaults.shape_edge_weight,
                        help="stage-2 loss weight of latent pixels at the shape's edges, on top of 1 "
                             f"(default {defaults.shape_edge_weight:g})")
    parser.add_argument("--anchor-fraction", type=float, default=defaults.anchor_fraction,
                        help="share of stage-2 pictures drawn on a white background (under trial; default "
                             f"{defaults.anchor_fraction:g})")
    parser.add_argument("--format-steps", type=int, default=defaults.format_steps,
                        help=f"stage 4 steps (default {defaults.format_steps})")
    parser.add_argument("--format-lr", type=float, default=defaults.format_lr,
                        help=f"stage 4 peak learning rate (default {defaults.format_lr:g})")
    parser.add_argument("--pair-steps", type=int, default=defaults.pair_steps,
                        help=f"stage 5 steps (default {defaults.pair_steps})")
    parser.add_argument("--pair-lr", type=float, default=defaults.pair_lr,
                        help=f"stage 5 peak learning rate (default {defaults.pair_lr:g})")
    parser.add_argument("--pair-shape-edge-weight", type=float, default=defaults.pair_shape_edge_weight,
                        help=f"stage 5's shape-edge loss weight (default {defaults.pair_shape_edge_weight:g})")
    parser.add_argument("--corner-steps", type=int, default=defaults.corner_steps,
                        help=f"stage 6 steps (default {defaults.corner_steps})")
    parser.add_argument("--corner-weight", type=float, default=defaults.corner_weight,
                        help="stages 6 and 7's loss weight of the objects' corners "
                             f"(default {defaults.corner_weight:g})")
    parser.add_argument("--balance-steps", type=int, default=defaults.balance_steps,
                        help=f"stage 7 steps (default {defaults.balance_steps})")
    parser.add_argument("--sharpen-steps", type=int, default=defaults.sharpen_steps,
                        help=f"stage 8 steps (default {defaults.sharpen_steps})")
    parser.add_argument("--stages", default=",".join(map(str, STAGES)),
                        help="which stages to run, e.g. 1,3 or 1,2,3,4,5 (stage 1 always runs or is read back; "
                             "default all eight: the shipped model)")
    parser.add_argument("--init", type=Path,
                        help="with stages from 4 to 8: the model folder the stages before them exported, to "
                             "start from")
    parser.add_argument("--threads", type=int, default=defaults.threads,
                        help=f"torch CPU threads; 1 on a busy shared CPU (default {defaults.threads})")


def _stages(text: str) -> set[int]:
    try:
        stages = {int(stage) for stage in text.split(",")}
    except ValueError:
        stages = set()
    if not stages or not stages <= set(STAGES):
        raise ValueError(f"--stages must be stage numbers from 1 to 8 separated by commas, such as 1,2,3,4 "
                         f"or 3; got {text!r}")
    return stages


class ProgressLines:
    """Prints the training's progress events as plain lines on stderr (for a log file): each task's
    start and end, and between them its step count and mean loss at most every `interval` seconds."""

    def __init__(self, interval: float = 60.0):
        self.interval = interval
        self.last = {}
        self.losses = {}

    def __call__(self, event) -> None:
        now = time.time()
        losses = self.losses.setdefault(event.task, [])
        if event.loss is not None:
            losses.append(event.loss)
        if event.task in self.last and now - self.last[event.task] < self.interval and event.step < event.total:
            return
        self.last[event.task] = now
        loss = f" loss {sum(losses) / len(losses):.4f}" if losses else ""
        losses.clear()
        print(f"{event.task}: step {event.step}/{event.total}{loss} at {time.strftime('%H:%M:%S')}",
              file=sys.stderr, flush=True)


class ProgressBars:
    """Draws the training's progress events as tqdm bars on stderr, one per task."""

    def __init__(self):
        self.bars = {}

    def __call__(self, event) -> None:
        from tqdm import tqdm

        bar = self.bars.get(event.task)
        if bar is None:
            bar = tqdm(initial=event.step, total=event.total, desc=event.task, mininterval=20,
                       file=sys.stderr)
            self.bars[event.task] = bar
        if event.loss is not None:
            bar.set_postfix(loss=f"{event.loss:.4f}", refresh=False)
        bar.update(event.step - bar.n)
        if event.step == event.total:
            self.bars.pop(event.task).close()


def run(args: argparse.Namespace) -> int:
    try:
        stages = _stages(args.stages)
        cfg = TrainConfig(
            seed=args.seed, vae_steps=args.vae_steps, steps=args.steps, batch=args.batch,
            pool_size=args.pool_size, refine_steps=args.refine_steps, threads=args.threads,
            text_encoder_frozen_steps=args.text_encoder_frozen_steps,
            text_encoder_lr_scale=args.text_encoder_lr_scale, anchor_fraction=args.anchor_fraction,
            position_warmup_steps=args.position_warmup_steps, shape_edge_weight=args.shape_edge_weight,
            format_steps=args.format_steps, format_lr=args.format_lr, pair_steps=args.pair_steps,
            pair_lr=args.pair_lr, pair_shape_edge_weight=args.pair_shape_edge_weight,
            corner_steps=args.corner_steps, corner_weight=args.corner_weight, balance_steps=args.balance_steps,
            sharpen_steps=args.sharpen_steps,
        )
        if args.init is not None and not stages <= {4, 5, 6, 7, 8}:
            raise ValueError(f"--init starts one of stages 4 to 8 from a trained model: use it with stages "
                             f"from 4 to 8 (such as --stages 7,8), not --stages {args.stages}")
        if args.init is not None and not (args.init / "model_index.json").is_file():
            raise ValueError(f"--init must be a model folder with a model_index.json; {args.init} has none")
    except ValueError as error:
        return fail(str(error))
    state_dir = args.state or args.out.with_name(args.out.name + ".state")

    quiet_libraries(verbose=args.verbose)
    from pipeline.embedded.model import ModelConfig
    from pipeline.embedded.train import train

    model_config = ModelConfig()
    print(f"train config: {asdict(cfg)}\nmodel config: {asdict(model_config)}", flush=True)
    started = time.time()

    def stage_done(stage: int) -> None:
        print(f"stage {stage} done after {time.time() - started:.0f} s", flush=True)

    progress = ProgressBars() if sys.stderr.isatty() else ProgressLines()
    exported = train(cfg, args.out, state_dir, stages, model_config=model_config, init=args.init,
                     on_progress=progress, on_stage_done=stage_done)
    if not exported:
        print("stage 2 not run here: run again with --stages 1,2,3 to export the finished model", flush=True)
        return 0
    print(f"done after {time.time() - started:.0f} s (this run; resumed runs count from their restart)",
          flush=True)
    return 0
