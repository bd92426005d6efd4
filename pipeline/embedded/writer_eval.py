"""Measure the embedded model's prompt writer (`python -m pipeline evaluate-writer`).

On held-out loose descriptions (`writer_data.evaluation_set`): does each rewrite parse as a
contract prompt, does it keep every attribute the description gave, and does the picture the
embedded model draws from it show those attributes by the classical checker? Plus the median
seconds per rewrite. A rewrite that does not parse counts as a miss in every column.
"""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

from . import writer_data
from .data import Scene

# Percent each measure must reach.
THRESHOLDS = {"parses": 98, "kept": 98, "shown": 90}
LABELS = {"parses": "parses as a contract prompt", "kept": "every given attribute kept",
          "shown": "picture shows the given attributes"}


@dataclass
class WriterRow:
    description: str
    given: frozenset
    rewrite: str
    scene: Scene | None  # what the rewrite says, None when it is not a contract prompt
    kept: bool
    seconds: float
    shown: bool = False


def rewrite_all(enhancer, items, on_done: Callable[[int, int], None] | None = None) -> list[WriterRow]:
    """Rewrite each (description, scene, given, seed) item with `enhancer`, seeded by the item."""
    from pipeline.enhance import EnhanceFailed

    rows = []
    for index, (description, scene, given, seed) in enumerate(items):
        started = time.perf_counter()
        try:
            text = enhancer.enhance(description, seed=seed).text
        except EnhanceFailed:
            text = ""
        seconds = time.perf_counter() - started
        parsed = writer_data.parse(text)
        kept = parsed is not None and all(getattr(parsed, name) == getattr(scene, name) for name in given)
        rows.append(WriterRow(description, given, text, parsed, kept, seconds))
        if on_done is not None:
            on_done(index + 1, len(items))
    return rows


def score_pictures(studio, rows: list[WriterRow], items, steps: int, guidance: float,
                   on_done: Callable[[int, int], None] | None = None) -> None:
    """Draw each parsed rewrite with `studio` and set `shown` where the checker sees every given attribute."""
    from .evaluate import generate_and_score

    for index, (row, (_, _, _, seed)) in enumerate(zip(rows, items)):
        if row.scene is not None:
            (scored,) = generate_and_score(studio, [(row.scene, row.rewrite, seed, False)], steps, guidance)
            row.shown = row.kept and all(scored.score[name] for name in row.given)
        if on_done is not None:
            on_done(index + 1, len(rows))


def summary(rows: list[WriterRow]) -> dict[str, float]:
    count = max(len(rows), 1)
    return {"parses": 100.0 * sum(row.scene is not None for row in rows) / count,
            "kept": 100.0 * sum(row.kept for row in rows) / count,
            "shown": 100.0 * sum(row.shown for row in rows) / count,
            "seconds": statistics.median(row.seconds for row in rows) if rows else 0.0}


def table(values: dict[str, float], pictures: bool = True) -> str:
    lines = ["| measure | value | threshold |", "|---|---|---|"]
    for key, label in LABELS.items():
        if key == "shown" and not pictures:
            continue
        lines.append(f"| {label} | {values[key]:.1f} % | >= {THRESHOLDS[key]} % |")
    lines.append(f"| median seconds per rewrite | {values['seconds']:.3f} | |")
    return "\n".join(lines)


def failures(values: dict[str, float], pictures: bool = True) -> list[str]:
    return [f"{LABELS[key]} {values[key]:.1f} % < {threshold} %" for key, threshold in THRESHOLDS.items()
            if (pictures or key != "shown") and values[key] < threshold]
