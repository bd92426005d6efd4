"""`python -m pipeline campaign FILE.csv --out DIR`: every deliverable of every idea, with a manifest.

FILE.csv has a header row and one row per idea: prompt, negative, deliverables, variants, seed,
steps, guidance, kit, style, fit (README: Deliverables and campaigns). Every file is written to
DIR with `manifest.csv` (file, deliverable, size, prompt, seed and every setting), and with --zip
one `campaign.zip` of them all. Prints one saved path per line, then the manifest (and the ZIP).
A bad row prints one `error:` line naming its line, the other rows still run, and the exit code
is 2. `--from-manifest DIR/manifest.csv` makes every file of a manifest again, pixel for pixel,
into --out (default: the manifest's folder).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline.commands.console import EXIT_BAD_INPUT, fail
from pipeline.commands.options import add_model_arguments, prepare_process


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("campaign", nargs="?", type=Path, metavar="FILE.csv", help="the ideas, one row each")
    parser.add_argument("--from-manifest", type=Path, metavar="MANIFEST",
                        help="make every file of a manifest.csv written here again, with identical pixels")
    parser.add_argument("--out", type=Path, metavar="DIR",
                        help="output folder (default: outputs/NAME for FILE.csv, the manifest's folder for "
                             "--from-manifest)")
    parser.add_argument("--zip", action="store_true", help="also write one ZIP of the files and the manifest")
    add_model_arguments(parser, default_model=None, default_help="embedded, or the manifest's model")


def _plan(args: argparse.Namespace, uses_negative_prompt: bool = True):
    """(model reference, jobs, row errors, output folder, source file name) of the command line."""
    from pipeline import campaign

    if (args.campaign is None) == (args.from_manifest is None):
        raise ValueError("give a campaign FILE.csv or --from-manifest MANIFEST, one of the two")
    if args.from_manifest is not None:
        jobs, models, errors = campaign.read_manifest(args.from_manifest)
        reference = args.model or (models[0] if models else "embedded")
        if args.model is None:
            kept = [(job, model) for job, model in zip(jobs, models) if model == reference]
            errors += [campaign.RowError(job.line, f"made with model {model!r}, not {reference!r}; run it with "
                                                   f"--model {model}")
                       for job, model in zip(jobs, models) if model != reference]
            jobs = [job for job, _ in kept]
        return reference, jobs, errors, args.out or args.from_manifest.parent, args.from_manifest.name
    jobs, errors = campaign.read_campaign(args.campaign, uses_negative_prompt)
    out = args.out or Path("outputs") / args.campaign.stem
    return args.model or "embedded", jobs, errors, out, args.campaign.name


def _progress_bar(total: int):
    """An `on_file` callback that prints each path and, on a terminal, draws a bar of files; its closer."""
    bar = None
    if sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(total=total, unit="file", file=sys.stderr, leave=False)

    def on_file(done: int, total: int, path: Path) -> None:
        if bar is not None:
            bar.update(1)
        print(path, flush=True)

    return on_file, (bar.close if bar is not None else lambda: None)


def run(args: argparse.Namespace) -> int:
    try:
        reference, jobs, errors, out, source = _plan(args)
        options = prepare_process(args)
    except ValueError as error:
        return fail(str(error))

    from pipeline import campaign
    from pipeline.models import ModelNotAvailable
    from pipeline.studio import Studio

    try:
        studio = Studio.load(reference, device=args.device, speed_options=options)
    except (ModelNotAvailable, ValueError) as error:
        return fail(str(error))
    if args.campaign is not None and not studio.limits.uses_negative_prompt:
        _, jobs, errors, _, _ = _plan(args, uses_negative_prompt=False)

    on_file, close_bar = _progress_bar(len(jobs))
    try:
        rows, failed = campaign.run(studio, jobs, out, on_file=on_file)
    finally:
        close_bar()
    if rows:
        print(campaign.write_manifest(rows, out / campaign.MANIFEST_NAME), flush=True)
        if args.zip:
            print(campaign.write_zip(out, [row["file"] for row in rows], out / campaign.ZIP_NAME), flush=True)
    for error in sorted(errors + failed, key=lambda error: error.line):
        fail(f"{source} {error}")
    return EXIT_BAD_INPUT if errors or failed else 0
