"""`python -m pipeline evaluate-embedded`: how well the embedded model follows prompts.

Generates the fixed held-out prompt set (every unseen combination once, the rest seen
combinations, all four prompt forms with synonyms, fixed seeds) through the studio at the
model's default steps and guidance, scores every picture with the classical checker and prints
one table of accuracies, for all prompts and for unseen combinations alone, with the median
seconds per picture and the thresholds missed.

`--task inpaint|extend|vary` works from pictures instead: held-out scenes rendered at 64x64
(seeded), repainted (recolour the shape inside its box, a new background around it), extended
to 2:1, or varied at strength 0.3 with new seeds, each scored by the same checker and printed
as one table with its thresholds.

`--task formats` scores the first 120 held-out prompts at each format's native size (the same
five columns, one line per format, every format within 5 points of the square one);
`--task two-objects` scores 240 held-out two-object prompts (each object's colour, shape, side
and size, both objects right, unseen combinations apart), at 64x64 or at each `--format`.
"""
from __future__ import annotations

import argparse
import statistics

from pipeline.commands.console import fail, quiet_libraries
from pipeline.embedded import DEFAULT_GUIDANCE, DEFAULT_STEPS, FORMAT_SIZES, NATIVE_SIZE

IMAGE_TASKS = ("inpaint", "extend", "vary")
FORMAT_COUNT = 120  # held-out prompts per format
PAIR_COUNT = 240  # held-out two-object prompts


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="embedded",
                        help="the embedded preset, or a folder written by `python -m pipeline train-embedded "
                             "--out DIR`, run with the embedded preset's settings (default: embedded)")
    parser.add_argument("--task", default="text", choices=("text", "formats", "two-objects", *IMAGE_TASKS),
                        help="text: prompts to pictures at 64x64 (default); formats: at every format's size; "
                             "two-objects: two-object prompts; inpaint, extend, vary: from rendered pictures")
    parser.add_argument("--limit", type=int,
                        help="score only the first N prompts or pictures (a fast subset; by default 240 "
                             f"prompts, {FORMAT_COUNT} per format with --task formats, 48 pictures for the "
                             "image tasks)")
    parser.add_argument("--format", help="formats to score, separated by commas, such as 1:1,16:9 "
                                         f"(of {', '.join(FORMAT_SIZES)}; --task formats: all, --task "
                                         "two-objects: 1:1)")
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS)
    parser.add_argument("--guidance", type=float, default=DEFAULT_GUIDANCE)
    parser.add_argument("--strength", type=float,
                        help="--task inpaint, extend or vary: the strength (default 1 for inpaint and extend, "
                             "painted from noise; 0.3 for vary)")
    parser.add_argument("--grid", help="also save the first 16 pictures as a captioned grid PNG here (--task "
                                       "formats: two one-object and two two-object prompts per format)")
    parser.add_argument("--device", default="cpu")


def _print_progress(done: int, total: int) -> None:
    if done % 20 == 0:
        print(f"  {done}/{total}", flush=True)


def run(args: argparse.Namespace) -> int:
    if args.limit is not None and args.limit < 1:
        return fail("--limit must be at least 1")
    if args.strength is not None and args.task not in IMAGE_TASKS:
        return fail(f"--strength is for --task {', '.join(IMAGE_TASKS)}, not --task {args.task}")
    formats = (args.format or "").split(",") if args.format else None
    unknown = [name for name in formats or () if name not in FORMAT_SIZES]
    if unknown:
        return fail(f"--format must name formats from {', '.join(FORMAT_SIZES)}; got {unknown[0]!r}")

    from pipeline.embedded import data
    from pipeline.embedded.evaluate import failures, generate_and_score, save_grid, table
    from pipeline.models import ModelNotAvailable
    from pipeline.studio import Studio

    quiet_libraries(verbose=args.verbose)
    try:
        studio = Studio.load(args.model, device=args.device, like="embedded")
    except (ModelNotAvailable, ValueError) as error:
        return fail(str(error))
    if args.task == "formats":
        return _run_formats(studio, args, formats or tuple(FORMAT_SIZES))
    if args.task == "two-objects":
        return _run_pairs(studio, args, formats or ("1:1",))
    if args.task != "text":
        return _run_image_task(studio, args)
    items = data.evaluation_set()[: args.limit]
    try:
        generate_and_score(studio, items[:1], args.steps, args.guidance)  # warm-up, not timed
    except ValueError as error:  # steps or guidance out of the model's limits
        return fail(str(error))
    print(f"model {args.model}: {len(items)} held-out prompts, {args.steps} steps, "
          f"guidance {args.guidance:g}, {NATIVE_SIZE}x{NATIVE_SIZE}, {args.device}", flush=True)
    rows = generate_and_score(studio, items, args.steps, args.guidance, on_scored=_print_progress)
    print(table(rows))
    print(f"median seconds per image: {statistics.median(row.seconds for row in rows):.3f}")
    missed = failures(rows)
    print("thresholds: all met" if not missed else "thresholds missed: " + "; ".join(missed))
    if args.grid:
        save_grid(rows[:16], args.grid)
        print(f"grid saved to {args.grid}")
    return 0


def _run_image_task(studio, args: argparse.Namespace) -> int:
    from pipeline.embedded.evaluate import (IMAGE_SET_SIZE, SCORERS, STRENGTHS, image_failures, image_table,
                                            rendered_inputs)

    inputs = rendered_inputs(args.limit or IMAGE_SET_SIZE)
    strength = STRENGTHS[args.task] if args.strength is None else args.strength
    print(f"model {args.model}: {args.task} on {len(inputs)} rendered {NATIVE_SIZE}x{NATIVE_SIZE} pictures at "
          f"strength {strength:g}, {args.steps} steps, guidance {args.guidance:g}, {args.device}", flush=True)
    try:
        rows = SCORERS[args.task](studio, inputs, args.steps, args.guidance, on_scored=_print_progress,
                                  strength=strength)
    except ValueError as error:  # steps, guidance or strength out of their limits
        return fail(str(error))
    print(image_table(args.task, rows))
    missed = image_failures(args.task, rows)
    print("thresholds: all met" if not missed else "thresholds missed: " + "; ".join(missed))
    return 0


def _run_formats(studio, args: argparse.Namespace, formats) -> int:
    from pipeline.embedded.evaluate_formats import formats_failures, formats_table, score_formats

    count = args.limit or FORMAT_COUNT
    print(f"model {args.model}: {count} held-out prompts in each of {len(formats)} formats, {args.steps} steps, "
          f"guidance {args.guidance:g}, {args.device}", flush=True)
    try:
        results = score_formats(studio, count, args.steps, args.guidance, formats, on_scored=_print_progress)
    except ValueError as error:  # steps or guidance out of the model's limits
        return fail(str(error))
    print(formats_table(results))
    seconds = [row.seconds for rows in results.values() for row in rows]
    print(f"median seconds per image: {statistics.median(seconds):.3f}")
    missed = formats_failures(results)
    print("thresholds: all met" if not missed else "thresholds missed: " + "; ".join(missed))
    if args.grid:
        from pipeline.embedded.evaluate_formats import save_showcase, showcase

        save_showcase(showcase(studio, args.steps, args.guidance, formats=formats), args.grid)
        print(f"grid of two one-object and two two-object prompts per format saved to {args.grid}")
    return 0


def _run_pairs(studio, args: argparse.Namespace, formats) -> int:
    from pipeline.embedded.evaluate_formats import pairs_failures, pairs_table, score_pairs

    count = args.limit or PAIR_COUNT
    missed = []
    for name in formats:
        width, height = FORMAT_SIZES[name]
        print(f"model {args.model}: {count} held-out two-object prompts at {width}x{height} ({name}), "
              f"{args.steps} steps, guidance {args.guidance:g}, {args.device}", flush=True)
        try:
            rows = score_pairs(studio, count, args.steps, args.guidance, (width, height), on_scored=_print_progress)
        except ValueError as error:
            return fail(str(error))
        print(pairs_table(rows))
        missed += [f"{name} {sentence}" for sentence in pairs_failures(rows)]
        if args.grid:
            from pipeline.embedded.evaluate import save_grid

            save_grid(rows[:16], args.grid)
            print(f"grid saved to {args.grid}")
    print("thresholds: all met" if not missed else "thresholds missed: " + "; ".join(missed))
    return 0
