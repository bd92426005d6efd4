"""Measure the embedded model in every format and on two-object prompts.

`score_formats` generates held-out prompts (`data.evaluation_set`) at each format's native size
(`FORMAT_SIZES`) and scores them with the classical checker: the five columns of the square
evaluation per format, against the square format's own figures. `score_pairs` generates the
held-out two-object prompts (`pairs.pair_evaluation_set`) and scores each object's colour, shape,
side and size (`checker.check_pair`), for all prompts and for unseen combinations apart.

Pictures come from `draw`: the studio's own call, at each format's size (the embedded preset's
size multiple is 8).
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from . import FORMAT_SIZES, NATIVE_SIZE, data, pairs
from .checker import PAIR_ATTRIBUTES, PAIR_BINDING, check, check_pair
from .evaluate import COLUMNS, THRESHOLDS, Scored, accuracy

FORMAT_MARGIN = 5  # points of "all five" a format may be below the square format
SQUARE_ALL_THRESHOLD = 85  # the square format's "all five", as the shipped model's
PAIR_BOTH_THRESHOLD = 70  # percent of two-object pictures with both objects right
PAIR_ATTRIBUTE_THRESHOLD = 90  # percent of objects right on each of colour, shape and side


def draw(studio, prompt: str, seed: int, steps: int, guidance: float, size: tuple[int, int]):
    """One picture of `prompt` at `size` (width, height) as the studio draws it: a PIL image."""
    from pipeline.request import GenerationRequest

    width, height = size
    request = GenerationRequest(prompt=prompt, negative_prompt="", seed=seed, steps=steps, guidance=guidance,
                                width=width, height=height, num_images=1)
    return studio.generate(request).images[0]


def format_items(count: int) -> list:
    """The first `count` held-out one-object prompts (`data.evaluation_set`), the same in every format."""
    return data.evaluation_set(max(count, 240))[:count]


def score_formats(studio, count: int, steps: int, guidance: float, formats=tuple(FORMAT_SIZES),
                  on_scored: Callable[[int, int], None] | None = None) -> dict[str, list[Scored]]:
    """Score `count` held-out prompts at each format's size: {format: rows}."""
    items = format_items(count)
    total = len(items) * len(formats)
    results = {}
    for name in formats:
        rows = []
        for scene, prompt, seed, unseen in items:
            started = time.perf_counter()
            image = draw(studio, prompt, seed, steps, guidance, FORMAT_SIZES[name])
            rows.append(Scored(scene, prompt, seed, unseen, check(image, scene), time.perf_counter() - started,
                               image))
            if on_scored is not None:
                on_scored(sum(map(len, results.values())) + len(rows), total)
        results[name] = rows
    return results


def formats_table(results: dict[str, list[Scored]]) -> str:
    """One line per format: the five columns and "all five" on all prompts, then on unseen ones."""
    names = ("background", "colour", "position", "size", "shape", "all five")
    lines = [f"{'format':<8}{'size':>7}{'n':>5}" + "".join(f"{name:>12}" for name in names)
             + f"{'unseen n':>10}{'unseen all':>12}"]
    for name, rows in results.items():
        width, height = FORMAT_SIZES[name]
        acc = accuracy(rows)
        unseen = [row for row in rows if row.unseen]
        lines.append(f"{name:<8}{f'{width}x{height}':>7}{len(rows):>5}"
                     + "".join(f"{acc[column]:>11.1f}%" for column in COLUMNS)
                     + f"{len(unseen):>10}{accuracy(unseen)['all']:>11.1f}%")
    lines.append(f"{'threshold (1:1)':<20}" + "".join(f"{THRESHOLDS[column]:>11d}%" for column in COLUMNS[:-1])
                 + f"{SQUARE_ALL_THRESHOLD:>11d}%")
    lines.append(f"{'threshold (others)':<20}{'':>60}{'1:1 - ' + str(FORMAT_MARGIN):>12}")
    return "\n".join(lines)


def formats_failures(results: dict[str, list[Scored]]) -> list[str]:
    """The format thresholds missed, as sentences: the square format's all five, and every other
    format within FORMAT_MARGIN points of it."""
    missed = []
    square = accuracy(results["1:1"])["all"] if "1:1" in results else None
    if square is not None and square < SQUARE_ALL_THRESHOLD:
        missed.append(f"1:1 all five: {square:.1f}% < {SQUARE_ALL_THRESHOLD}%")
    for name, rows in results.items():
        acc = accuracy(rows)
        if square is not None and acc["all"] < square - FORMAT_MARGIN:
            missed.append(f"{name} all five: {acc['all']:.1f}% < 1:1's {square:.1f}% - {FORMAT_MARGIN}")
    return missed


# ---------------------------------------------------------------------------------------------
# Two objects
# ---------------------------------------------------------------------------------------------


@dataclass
class PairScored:
    pair: pairs.Pair
    prompt: str
    seed: int
    unseen: bool
    score: dict[str, bool]
    image: object  # PIL image


def score_pairs(studio, count: int, steps: int, guidance: float, size: tuple[int, int] = (NATIVE_SIZE, NATIVE_SIZE),
                on_scored: Callable[[int, int], None] | None = None) -> list[PairScored]:
    """Generate and score the first `count` held-out two-object prompts at `size`."""
    items = pairs.pair_evaluation_set(max(count, 240))[:count]
    rows = []
    for pair, prompt, seed, unseen in items:
        image = draw(studio, prompt, seed, steps, guidance, size)
        rows.append(PairScored(pair, prompt, seed, unseen, check_pair(image, pair), image))
        if on_scored is not None:
            on_scored(len(rows), len(items))
    return rows


def pair_accuracy(rows: list[PairScored]) -> dict[str, float]:
    """Percent right: each attribute over both objects, the background, and both objects right."""
    count = max(len(rows), 1)
    result = {attribute: 100.0 * sum(row.score[f"{name} {attribute}"] for row in rows for name in ("first", "second"))
              / (2 * count) for attribute in PAIR_ATTRIBUTES}
    result["background"] = 100.0 * sum(row.score["background"] for row in rows) / count
    result["both right"] = 100.0 * sum(row.score["all"] for row in rows) / count
    return result


PAIR_COLUMNS = (*PAIR_ATTRIBUTES, "background", "both right")


def pairs_table(rows: list[PairScored]) -> str:
    """All prompts, unseen combinations, seen ones; per-object attributes and both objects right."""
    lines = [f"{'':<18}{'n':>5}" + "".join(f"{name:>12}" for name in PAIR_COLUMNS)]
    for label, subset in (("all prompts", rows), ("unseen combos", [row for row in rows if row.unseen]),
                          ("seen combos", [row for row in rows if not row.unseen])):
        acc = pair_accuracy(subset)
        lines.append(f"{label:<18}{len(subset):>5}" + "".join(f"{acc[column]:>11.1f}%" for column in PAIR_COLUMNS))
    thresholds = [f"{PAIR_ATTRIBUTE_THRESHOLD}%" if column in PAIR_BINDING else "" for column in PAIR_COLUMNS]
    thresholds[-1] = f"{PAIR_BOTH_THRESHOLD}%"
    lines.append(f"{'threshold (all)':<18}{'':>5}" + "".join(f"{value:>12}" for value in thresholds))
    return "\n".join(lines)


def pairs_failures(rows: list[PairScored]) -> list[str]:
    acc = pair_accuracy(rows)
    missed = [f"{attribute}: {acc[attribute]:.1f}% < {PAIR_ATTRIBUTE_THRESHOLD}%" for attribute in PAIR_BINDING
              if acc[attribute] < PAIR_ATTRIBUTE_THRESHOLD]
    if acc["both right"] < PAIR_BOTH_THRESHOLD:
        missed.append(f"both right: {acc['both right']:.1f}% < {PAIR_BOTH_THRESHOLD}%")
    return missed


# ---------------------------------------------------------------------------------------------
# The grid
# ---------------------------------------------------------------------------------------------


def showcase(studio, steps: int, guidance: float, per_row: int = 2, formats=tuple(FORMAT_SIZES)) -> list[list]:
    """Per format, the first `per_row` held-out one-object prompts and the first `per_row`
    two-object prompts, drawn at the format's size: rows of (image, prompt)."""
    singles = format_items(per_row)
    doubles = pairs.pair_evaluation_set()[:per_row]
    rows = []
    for name in formats:
        size = FORMAT_SIZES[name]
        rows.append([(draw(studio, prompt, seed, steps, guidance, size), f"{name}: {prompt}")
                     for _, prompt, seed, _ in [*singles, *doubles]])
    return rows


def save_showcase(rows: list[list], path: str, scale: int = 3) -> None:
    """The pictures upscaled `scale` times (nearest neighbour), one row per format, each centred in
    a cell as large as the largest format and captioned with its prompt."""
    import textwrap

    from PIL import Image, ImageDraw

    cell_width = max(width for width, _ in FORMAT_SIZES.values()) * scale
    cell_height = max(height for _, height in FORMAT_SIZES.values()) * scale
    caption = 46  # pixels under each cell for three lines of text
    columns = max(len(row) for row in rows)
    grid = Image.new("RGB", (columns * cell_width, len(rows) * (cell_height + caption)), "white")
    draw_text = ImageDraw.Draw(grid)
    for row_index, row in enumerate(rows):
        for column, (image, text) in enumerate(row):
            x, y = column * cell_width, row_index * (cell_height + caption)
            tile = image.convert("RGB").resize((image.width * scale, image.height * scale), Image.NEAREST)
            grid.paste(tile, (x + (cell_width - tile.width) // 2, y + (cell_height - tile.height) // 2))
            lines = "\n".join(textwrap.wrap(text, width=cell_width // 6)[:3])
            draw_text.multiline_text((x + 3, y + cell_height + 2), lines, fill="black", spacing=2)
    grid.save(path)
