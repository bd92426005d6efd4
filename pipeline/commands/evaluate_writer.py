"""`python -m pipeline evaluate-writer`: how well the embedded model's prompt writer works.

Rewrites the fixed held-out loose descriptions (pipeline/embedded/writer_data.py), each seeded
by its index, and prints one table: the share of rewrites that parse as a contract prompt, that
keep every attribute the description gave, and whose picture, drawn by the embedded model at
its default settings, shows those attributes by the classical checker; and the median seconds
per rewrite. `--no-pictures` skips the drawing.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.commands.console import fail, quiet_libraries


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--writer", type=Path, help="writer folder (default: assets/writer)")
    parser.add_argument("--model", default="embedded", help="the image model that draws the rewrites (default: embedded)")
    parser.add_argument("--limit", type=int, help="use only the first N descriptions (of 200)")
    parser.add_argument("--no-pictures", action="store_true", help="score the text only")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")


def _progress(done: int, total: int) -> None:
    if done % 50 == 0 or done == total:
        print(f"  {done}/{total}", flush=True)


def run(args: argparse.Namespace) -> int:
    if args.limit is not None and args.limit < 1:
        return fail("--limit must be at least 1")
    quiet_libraries(verbose=args.verbose)
    import torch

    from pipeline.embedded import DEFAULT_GUIDANCE, DEFAULT_STEPS, writer_data, writer_eval
    from pipeline.embedded.writer import WRITER_DIR
    from pipeline.enhance.choose import embedded_writer
    from pipeline.models import ModelNotAvailable
    from pipeline.studio import Studio

    torch.set_num_threads(args.threads)
    try:
        enhancer = embedded_writer(args.writer)
        studio = None if args.no_pictures else Studio.load(args.model, device="cpu", like="embedded")
    except (ModelNotAvailable, ValueError) as error:
        return fail(str(error))
    items = writer_data.evaluation_set()[: args.limit]
    enhancer.enhance(items[0][0], seed=0)  # warm-up, not timed (the items use other seeds)
    print(f"writer {args.writer or WRITER_DIR}: {len(items)} held-out descriptions", flush=True)
    rows = writer_eval.rewrite_all(enhancer, items, on_done=_progress)
    if studio is not None:
        print(f"drawing with {args.model}, {DEFAULT_STEPS} steps, guidance {DEFAULT_GUIDANCE:g}", flush=True)
        writer_eval.score_pictures(studio, rows, items, DEFAULT_STEPS, DEFAULT_GUIDANCE, on_done=_progress)
    for row in rows[:5]:
        print(f"  {row.description!r} -> {row.rewrite!r}")
    values = writer_eval.summary(rows)
    print(writer_eval.table(values, pictures=studio is not None))
    missed = writer_eval.failures(values, pictures=studio is not None)
    print("thresholds: all met" if not missed else "thresholds missed: " + "; ".join(missed))
    return 0
