"""Measure how well the embedded model follows prompts (`python -m pipeline evaluate-embedded`).

Generates held-out prompts (`data.evaluation_set`: every unseen combination once, the rest seen
combinations, all four prompt forms with synonyms, fixed seeds) through the studio, scores every
picture with the classical checker, and writes the accuracies as one table, for all prompts and
for unseen combinations alone, against the thresholds the model must meet.
"""
from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from . import NATIVE_SIZE, data
from .checker import ATTRIBUTES, check

# Accuracy each column must reach, in percent.
THRESHOLDS = {"background": 98, "colour": 95, "position": 90, "size": 85, "shape": 85, "all": 75}
UNSEEN_ALL_THRESHOLD = 65
COLUMNS = (*ATTRIBUTES, "all")


@dataclass
class Scored:
    scene: data.Scene
    prompt: str
    seed: int
    unseen: bool
    score: dict[str, bool]
    seconds: float
    image: object  # PIL image


def accuracy(rows: list[Scored]) -> dict[str, float]:
    """Percent of rows right on each column (ATTRIBUTES and "all")."""
    return {column: 100.0 * sum(row.score[column] for row in rows) / max(len(rows), 1) for column in COLUMNS}


def generate_and_score(studio, items, steps: int, guidance: float,
                       on_scored: Callable[[int, int], None] | None = None) -> list[Scored]:
    """Generate each (scene, prompt, seed, unseen) item with `studio` and score it.

    `on_scored(done, total)` is called after each picture. ValueError for steps or guidance out
    of the model's limits.
    """
    from pipeline.request import GenerationRequest

    rows = []
    for scene, prompt, seed, unseen in items:
        request = GenerationRequest(
            prompt=prompt, negative_prompt="", seed=seed, steps=steps, guidance=guidance,
            width=NATIVE_SIZE, height=NATIVE_SIZE, num_images=1,
        )
        started = time.perf_counter()
        image = studio.generate(request).images[0]
        seconds = time.perf_counter() - started
        rows.append(Scored(scene, prompt, seed, unseen, check(image, scene), seconds, image))
        if on_scored is not None:
            on_scored(len(rows), len(items))
    return rows


def table(rows: list[Scored]) -> str:
    """The accuracy table: all prompts, unseen combinations, thresholds."""
    names = ("background", "colour", "position", "size", "shape", "all five")
    lines = [f"{'':<18}{'n':>5}" + "".join(f"{name:>12}" for name in names)]
    for label, subset in (("all prompts", rows), ("unseen combos", [row for row in rows if row.unseen])):
        acc = accuracy(subset)
        lines.append(f"{label:<18}{len(subset):>5}"
                     + "".join(f"{acc[column]:>11.1f}%" for column in COLUMNS))
    lines.append(f"{'threshold (all)':<18}{'':>5}"
                 + "".join(f"{THRESHOLDS[column]:>11d}%" for column in COLUMNS))
    lines.append(f"{'threshold (unseen)':<18}{'':>5}" + f"{'':>12}" * 5 + f"{UNSEEN_ALL_THRESHOLD:>11d}%")
    return "\n".join(lines)


def failures(rows: list[Scored]) -> list[str]:
    """The thresholds these rows miss, as sentences (empty when all are met)."""
    missed = []
    acc = accuracy(rows)
    for column in COLUMNS:
        if acc[column] < THRESHOLDS[column]:
            missed.append(f"{column}: {acc[column]:.1f}% < {THRESHOLDS[column]}%")
    unseen = [row for row in rows if row.unseen]
    if unseen and accuracy(unseen)["all"] < UNSEEN_ALL_THRESHOLD:
        missed.append(f"unseen all five: {accuracy(unseen)['all']:.1f}% < {UNSEEN_ALL_THRESHOLD}%")
    return missed


def save_grid(rows: list[Scored], path: str, columns: int = 4, scale: int = 4) -> None:
    """The pictures upscaled `scale` times (nearest neighbour) in a grid, each with its prompt."""
    import textwrap

    from PIL import Image, ImageDraw

    tile = NATIVE_SIZE * scale
    caption = 34  # pixels under each tile for two lines of text
    count = len(rows)
    grid = Image.new("RGB", (columns * tile, -(-count // columns) * (tile + caption)), "white")
    draw = ImageDraw.Draw(grid)
    for index, row in enumerate(rows):
        x, y = (index % columns) * tile, (index // columns) * (tile + caption)
        grid.paste(row.image.convert("RGB").resize((tile, tile), Image.NEAREST), (x, y))
        text = "\n".join(textwrap.wrap(row.prompt, width=tile // 6)[:2])
        draw.multiline_text((x + 3, y + tile + 2), text, fill="black", spacing=2)
    grid.save(path)


if __name__ == "__main__":  # the same as `python -m pipeline evaluate-embedded`
    from pipeline.commands import main

    sys.exit(main(["evaluate-embedded", *sys.argv[1:]]))
