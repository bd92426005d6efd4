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
- live previews: `Studio.generate` with previews at the model's own interval against none, same run, as a ratio
- first image:  a fresh `python -m pipeline generate` process, from start to its first saved image
- peak memory:  this process's peak RSS, and CUDA's peak allocation
The runs compared with each other take turns (stock, cold, warm, encoding; one by one, batch;
studio and stock image-to-image), and every line shows its min-max beside the median; a line
whose spread is wider than 20 % gets a warning, as its ratios say more about the machine's load
than about the code.

`--backend ray` compares the studio on Ray Serve with the studio in this process instead, on a
local cluster: one request through one replica against the local studio (what the Ray hop adds),
and `--requests` concurrent requests on `--replicas` replicas against one (what replicas bring).
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
    serving = parser.add_argument_group("Ray Serve (README: Scaling out)")
    serving.add_argument("--backend", choices=("local", "ray"), default="local",
                         help="ray: time the studio deployed on a local Ray cluster against this process's")
    serving.add_argument("--replicas", type=int, default=2, help="replicas compared with one (default 2)")
    serving.add_argument("--requests", type=int, default=8, help="concurrent requests of the throughput runs "
                                                                 "(default 8)")
    serving.add_argument("--max-batch", type=int, default=4, help="batch size of each replica (default 4)")
    serving.add_argument("--batch-wait-ms", type=float, default=10,
                         help="how long a lone request waits for others to batch with (default 10, as serve's)")
    serving.add_argument("--gpus-per-replica", type=float, default=0,
                         help="GPUs each replica holds; the two deployments hold 1 + --replicas replicas at once "
                              "(default 0)")


def run(args: argparse.Namespace) -> int:
    if args.repeat < 1:
        return fail("--repeat must be at least 1")
    if args.backend == "ray" and (args.replicas < 2 or args.requests < 1 or args.arch):
        return fail("--backend ray compares 2 or more --replicas with one, on --model, with 1 or more --requests")
    try:
        options = prepare_process(args)
    except ValueError as error:
        return fail(str(error))
    from pipeline.benchmark.measure import BATCH_PROMPTS, arch_studio, format_table, measure
    from pipeline.benchmark.previews import measure_previews, previews_lines
    from pipeline.models import ModelNotAvailable
    from pipeline.request import GenerationRequest
    from pipeline.studio import Studio, default_device

    device = args.device or default_device()
    if args.backend == "ray":
        return run_serving(args, options, device)
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
    results.update(measure_previews(studio, request, args.repeat))
    results.update(model=args.arch or args.model, device=device, dtype=str(studio.dtype).removeprefix("torch."),
                   width=request.width, height=request.height, steps=request.steps, repeat=args.repeat,
                   speed_options=vars(options))
    print(format_table(results))
    print("\n".join(previews_lines(results)))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


def run_serving(args: argparse.Namespace, options, device: str) -> int:
    """`bench --backend ray`: a local cluster, two deployments and a local studio, each on one CPU thread."""
    import os

    from pipeline.serving.cluster import LOOPBACK_ENVIRONMENT

    os.environ.update(LOOPBACK_ENVIRONMENT)
    import ray
    import torch

    from pipeline.benchmark.measure import BATCH_PROMPTS
    from pipeline.benchmark.serving import deployments, format_serving, measure_serving
    from pipeline.commands.serve import quiet_ray
    from pipeline.models import ModelNotAvailable
    from pipeline.request import GenerationRequest
    from pipeline.serving.cluster import connect
    from pipeline.studio import Studio

    torch.set_num_threads(1)
    quiet_ray(verbose=args.verbose)
    try:
        local = Studio.load(args.model, device=device, speed_options=options, max_batch=args.max_batch)
        request = local.resolve(GenerationRequest(
            prompt=BATCH_PROMPTS[0], seed=0, steps=args.steps, width=args.width, height=args.height))
    except (ModelNotAvailable, ValueError) as error:
        return fail(str(error))
    connect(num_cpus=1 + args.replicas, verbose=args.verbose)
    try:
        one, many = deployments(args.model, args.replicas, args.max_batch, args.gpus_per_replica,
                                device=args.device, speed=vars(options), batch_wait_ms=args.batch_wait_ms)
        results = measure_serving(local, one, many, request, args.replicas, args.requests, args.repeat)
    finally:
        ray.shutdown()  # the cluster this command started, Serve with it
    results.update(model=args.model, device=device, width=request.width, height=request.height, steps=request.steps)
    header = (f"model {args.model} on {device}, {request.width}x{request.height}, {request.steps} steps, one thread "
              f"per replica and for the local studio, median (min-max) of {args.repeat}, compared runs interleaved")
    print(format_serving(results, header))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0
