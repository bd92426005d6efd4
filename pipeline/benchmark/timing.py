"""Timing runs that are compared with each other: interleaved, summarised with their spread.

Runs that are compared take turns (A B A B ...), after one warm-up each, so that a change in the
machine's load during the bench falls on every run alike instead of on whichever ran last. Each run
is summarised by its median and its spread, (max - min) / median; a spread wider than SPREAD_LIMIT
means the machine was too busy for the ratios between these runs to be results.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Callable

SPREAD_LIMIT = 0.20


@dataclass(frozen=True)
class Timing:
    """Seconds of the timed repeats of one run."""

    seconds: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def spread(self) -> float:
        """(max - min) / median: 0 for identical repeats."""
        return (max(self.seconds) - min(self.seconds)) / self.median if self.median > 0 else 0.0

    def summary(self) -> dict:
        return {"median_s": self.median, "min_s": min(self.seconds), "max_s": max(self.seconds),
                "spread": self.spread}


def interleaved(runs: dict[str, Callable[[], object]], repeat: int,
                synchronize: Callable[[], None] = lambda: None) -> dict[str, Timing]:
    """Time every run `repeat` times, taking turns in the order given, after one warm-up of each."""
    for run in runs.values():
        run()
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeat):
        for name, run in runs.items():
            synchronize()
            started = time.perf_counter()
            run()
            synchronize()
            seconds[name].append(time.perf_counter() - started)
    return {name: Timing(tuple(values)) for name, values in seconds.items()}


def spread_warnings(spreads: dict[str, dict]) -> list[str]:
    """One warning line per run whose spread (from `Timing.summary`) is wider than SPREAD_LIMIT."""
    wide = [(name, summary["spread"]) for name, summary in spreads.items() if summary["spread"] > SPREAD_LIMIT]
    if not wide:
        return []
    lines = [f"warning: {name} varied by {spread:.0%} between its fastest and slowest run (over "
             f"{SPREAD_LIMIT:.0%})" for name, spread in wide]
    return lines + ["warning: the machine was busy or its speed changed during the bench; ratios involving these "
                    "lines are not results: rerun on an idle machine, or with more --repeat"]


def span(summary: dict, scale: Callable[[float], float] = lambda seconds: seconds, digits: int = 4) -> str:
    """"(min-max)" of a `Timing.summary`, in the unit `scale` gives (the faster end first for a rate)."""
    low, high = sorted((scale(summary["min_s"]), scale(summary["max_s"])))
    return f"({low:.{digits}f}-{high:.{digits}f})"
