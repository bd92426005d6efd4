"""Command line: `python -m pipeline COMMAND ...`.

Each command lives in its own module and exposes `main(argv) -> int`; it is imported only
when asked for, so `--help` and bad input answer without loading torch.
"""
import importlib
import sys

COMMANDS = {
    "generate": ("pipeline.cli", "Generate PNGs from a prompt (or from a saved image's settings)."),
    "postprocess": ("pipeline.postprocess_cli", "Denoise, colour-correct and upsample an existing picture."),
    "evaluate-postprocess": ("pipeline.evaluate_postprocess", "Measure the post-processing stages against baselines."),
    "evaluate-embedded": ("pipeline.embedded.evaluate", "Measure how well the embedded model follows prompts."),
    "bench": ("pipeline.bench", "Time the studio against the stock diffusers call."),
}


def usage() -> str:
    lines = ["usage: python -m pipeline COMMAND [options]", "", "commands:"]
    lines += [f"  {name:<22} {help_}" for name, (_, help_) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    if argv[0] not in COMMANDS:
        print(f"error: unknown command {argv[0]!r}; choose one of {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[argv[0]][0])
    return module.main(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
