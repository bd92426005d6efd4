"""The bench's way of comparing runs: interleaved turns, the spread of each run, and the warning
when a spread is too wide for its ratios to be results."""
from __future__ import annotations

import pytest

from pipeline.__main__ import main
from pipeline.benchmark.serving import format_serving
from pipeline.benchmark.timing import SPREAD_LIMIT, Timing, interleaved, span, spread_warnings


def test_compared_runs_take_turns_after_one_warm_up_each():
    order = []
    timings = interleaved({"a": lambda: order.append("a"), "b": lambda: order.append("b")}, repeat=3)
    assert order == ["a", "b"] + ["a", "b"] * 3
    assert {name: len(timing.seconds) for name, timing in timings.items()} == {"a": 3, "b": 3}


def test_median_and_spread():
    timing = Timing((1.0, 1.3, 1.1))
    assert timing.median == 1.1
    assert timing.spread == pytest.approx(0.3 / 1.1)
    assert timing.summary() == {"median_s": 1.1, "min_s": 1.0, "max_s": 1.3, "spread": timing.spread}
    assert Timing((2.0, 2.0)).spread == 0
    assert span(timing.summary()) == "(1.0000-1.3000)"
    assert span(timing.summary(), lambda seconds: 4 / seconds, 2) == "(3.08-4.00)"  # a rate: slowest first


def test_a_spread_wider_than_the_limit_is_warned_about():
    assert SPREAD_LIMIT == 0.20
    narrow, wide = Timing((1.0, 1.1, 1.2)).summary(), Timing((1.0, 1.1, 1.5)).summary()
    assert spread_warnings({"steady": narrow}) == []
    lines = spread_warnings({"steady": narrow, "noisy": wide})
    assert lines[0] == "warning: noisy varied by 45% between its fastest and slowest run (over 20%)"
    assert len(lines) == 2 and lines[1].startswith("warning: the machine was busy")


def serving_results(spread_of_ray: float) -> dict:
    def summary(median, spread):
        return {"median_s": median, "min_s": median * (1 - spread / 2), "max_s": median * (1 + spread / 2),
                "spread": spread}

    return {"local_s": 0.2, "ray_s": 0.22, "ray_hop_ratio": 1.1, "one_replica_images_per_s": 4.0,
            "replicas_images_per_s": 7.0, "throughput_ratio": 1.75, "replicas": 2, "requests": 8, "repeat": 5,
            "replica_peak_rss_mb": 600.0,
            "spreads": {"local": summary(0.2, 0.05), "ray": summary(0.22, spread_of_ray),
                        "one": summary(2.0, 0.1), "many": summary(8 / 7, 0.1)}}


def test_the_serving_table_gives_both_ratios_and_warns_on_a_wide_spread():
    table = format_serving(serving_results(0.1), "header")
    assert "1.10 x local: the Ray hop adds +10%" in table and "1.75 x 1 replica" in table
    assert "0.2200 s (0.2090-0.2310)" in table and "warning" not in table
    noisy = format_serving(serving_results(0.5), "header")
    assert "warning: one request, through Ray Serve varied by 50% between its fastest and slowest run" in noisy


def test_bench_on_ray_needs_two_replicas(capsys):
    assert main(["bench", "--backend", "ray", "--replicas", "1"]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: --backend ray compares 2 or more --replicas with one, on --model, with 1 or more --requests")
