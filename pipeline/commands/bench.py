"""`python -m pipeline bench`: the studio against the stock diffusers call, same components, same run.

Every line is the median of `--repeat` timed runs after one warm-up:
- stock:        the diffusers pipeline's own `__call__` with the prompt (what a user would run instead)
- studio cold:  `Studio.generate` with an empty prompt cache (encode + denoise + decode), and per stage
- studio warm:  only the seed changed, so the LLM does not run
- batch of 4:   four compatible requests (different prompts and seeds) as one forward batch, against
                the same four served one by one, in images per second
- image-to-image: `Studio.generate` at strength 0.5 with a warm prompt, from the studio's own
                text-to-image picture of the prompt, as a ratio to the warm text-to-image line; and the
                family's own diffusers image-to-image pipeline (built with `from_pipe`, same components)
                where diffusers has one. A model that refuses image-to-image skips it in one line.
- first image:  a fresh `python -m pipeline generate` process, from start to its first saved image
- peak memory:  this process's peak RSS, and CUDA's peak allocation
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from pipeline.commands.console import fail
from pipeline.commands.options import add_model_arguments, prepare_process


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    parser.add_argument("--arch", help="a real-size architecture with random weights instead of --model "
                                       "(sana-sprint-1.6b, z-image-turbo)")
    parser.add_argument("--width", type=int)
    parser.add_argument("--height", type=int)
    parser.add_argument("--steps", type=int)
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per line (default 5)")
    parser.add_argument("--json", type=Path, help="also write the medians here")
    parser.add_argument("--skip-first-image", action="store_true", help="do not time a fresh process")


def run(args: argparse.Namespace) -> int:
    if args.repeat < 1:
        return fail("--repeat must be at least 1")
    try:
        options = prepare_process(args)
    except ValueError as error:
        return fail(str(error))
    from pipeline.benchmark.measure import BATCH_PROMPTS, arch_studio, format_table, measure
    from pipeline.models import ModelNotAvailable
    from pipeline.request import GenerationRequest
    from pipeline.studio import Studio, default_device

    device = args.device or default_device()
    try:
        if args.arch:
            studio = arch_studio(args.arch, device, options)
        else:
            studio = Studio.load(args.model, device=device, speed_options=options)
        request = studio.resolve(GenerationRequest(
            prompt=BATCH_PROMPTS[0], seed=0, steps=args.steps, width=args.width, height=args.height))
    except (ModelNotAvailable, ValueError) as error:
        return fail(str(error))
    results = measure(studio, request, args.repeat, first_image=not (args.skip_first_image or args.arch))
    results.update(model=args.arch or args.model, device=device, dtype=str(studio.dtype).removeprefix("torch."),
                   width=request.width, height=request.height, steps=request.steps, repeat=args.repeat,
                   speed_options=vars(options))
    print(format_table(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0
