"""Every `python -m pipeline COMMAND`: argument parsing, printing and exit codes live here only.

Each command is one module with the same two functions:

    add_arguments(parser)   declare its options on an argparse parser
    run(args) -> int        do the work and return the exit code

`main` builds the parser (usage errors are one `error:` line and exit 2), adds `--verbose`, sets
up the console for the process (`console.configure`) and calls `run`. A command module is
imported only when it is asked for, so `--help` and bad input answer without loading torch.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from pipeline.commands.console import OneLineParser, configure, fail

# name -> (module, one line of help), in the order `--help` lists them
COMMANDS = {
    "generate": ("pipeline.commands.generate", "Generate PNGs from a prompt (or from a saved image's settings)."),
    "postprocess": ("pipeline.commands.postprocess", "Denoise, colour-correct and upsample an existing picture."),
    "campaign": ("pipeline.commands.campaign", "Every deliverable of every idea in a CSV, with a manifest (and a ZIP)."),
    "bench": ("pipeline.commands.bench", "Time the studio against the stock diffusers call."),
    "serve": ("pipeline.commands.serve", "Deploy the studio on Ray Serve for pages started with --backend ray."),
    "evaluate-postprocess": ("pipeline.commands.evaluate_postprocess",
                             "Measure the post-processing stages against baselines."),
    "evaluate-embedded": ("pipeline.commands.evaluate_embedded", "Measure how well the embedded model follows prompts."),
    "train-embedded": ("pipeline.commands.train_embedded", "Train the embedded model from scratch (resumable)."),
    "enhance": ("pipeline.commands.enhance", "Rewrite a short prompt into a full description of the picture."),
    "train-writer": ("pipeline.commands.train_writer", "Train the embedded model's prompt writer (resumable)."),
    "evaluate-writer": ("pipeline.commands.evaluate_writer", "Measure the embedded model's prompt writer."),
}


def usage() -> str:
    lines = ["usage: python -m pipeline COMMAND [options]   (python -m pipeline COMMAND --help for its options)",
             "", "commands:"]
    lines += [f"  {name:<22} {help_}" for name, (_, help_) in COMMANDS.items()]
    return "\n".join(lines)


def build_parser(name: str) -> argparse.ArgumentParser:
    """The parser of one command: its module's options plus `--verbose`."""
    module = importlib.import_module(COMMANDS[name][0])
    parser = OneLineParser(prog=f"python -m pipeline {name}", description=module.__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    module.add_arguments(parser)
    parser.add_argument("--verbose", action="store_true",
                        help="show library logs, loading bars and full tracebacks")
    return parser


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    name = argv[0]
    if name not in COMMANDS:
        return fail(f"unknown command {name!r}; choose one of {', '.join(COMMANDS)}")
    try:
        args = build_parser(name).parse_args(argv[1:])
    except SystemExit as exit_:  # --help, or a usage error already printed as one line
        return int(exit_.code or 0)
    configure(verbose=args.verbose)
    module = importlib.import_module(COMMANDS[name][0])
    return module.run(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
