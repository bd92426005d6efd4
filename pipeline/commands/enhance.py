"""`python -m pipeline enhance --prompt TEXT`: print the prompt rewritten as a full description.

The writer is the model's own (--model; for the embedded model its shipped writer, for a hub
model its text encoder as a causal LM, sharing its weights), a local causal LM (--enhancer
FOLDER or hub id) or an OpenAI-compatible endpoint (--enhancer URL#MODEL; the key, if it needs
one, is read from the environment variable ENHANCER_API_KEY). Prints one line; a failure is one
`error:` line and exit code 1. For the embedded model, words it does not know are named on
stderr in one `notice:` line.
"""
from __future__ import annotations

import argparse
import os
import sys

from pipeline.commands.console import EXIT_FAILED, fail, quiet_libraries
from pipeline.commands.options import add_model_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--prompt", required=True, help="the prompt to rewrite")
    parser.add_argument("--enhancer", default=os.environ.get("ENHANCER"),
                        help="a causal-LM folder or hub id, or an OpenAI-compatible URL#MODEL "
                             "(env ENHANCER; default: the model's own writer)")
    parser.add_argument("--seed", type=int, help="sample with this seed (default: greedy)")
    parser.add_argument("--task", default="text", choices=("text", "edit"),
                        help="text: describe a picture (default); edit: write an edit instruction")
    add_model_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from pipeline.request import GenerationRequest, MAX_SEED

    try:
        GenerationRequest(prompt=args.prompt)
        if args.seed is not None and not 0 <= args.seed <= MAX_SEED:
            raise ValueError(f"--seed must be from 0 to {MAX_SEED}, got {args.seed}")
    except ValueError as error:
        return fail(str(error))

    quiet_libraries(verbose=args.verbose)
    from pipeline.enhance import EnhanceFailed, build_enhancer, unknown_words_notice
    from pipeline.models import ModelNotAvailable

    device = args.device or "cpu"
    try:
        studio = None
        if args.enhancer is None:
            from pipeline.studio import Studio

            studio = Studio.load(args.model, device=args.device)
        enhancer = build_enhancer(args.enhancer, studio=studio, device=device)
    except (ModelNotAvailable, ValueError) as error:
        return fail(str(error))
    try:
        result = enhancer.enhance(args.prompt, task=args.task, seed=args.seed)
    except EnhanceFailed as error:
        return fail(str(error), EXIT_FAILED)
    print(result.text, flush=True)
    if args.model == "embedded":
        notice = unknown_words_notice(result.text)
        if notice:
            print(f"notice: {notice}", file=sys.stderr)
    return 0
