"""What live previews cost: `Studio.generate` with previews (at the model's own interval,
`Studio.preview_every`) against the same run without.

Both runs use a warm prompt (only the same request repeats, so the LLM does not run) and take
turns (`timing.interleaved`); the line is their ratio, previews on / off.
"""
from __future__ import annotations

import torch

from pipeline.benchmark.timing import interleaved, span, spread_warnings


def measure_previews(studio, request, repeat: int) -> dict:
    """{"previews_on": summary, "previews_off": summary, "previews_made": previews a run,
    "previews_every": steps between them, "previews_ratio": on / off}; `previews_ratio` is None for a
    model that makes no previews."""
    if not studio.previews:
        return {"previews_ratio": None}
    synchronize = torch.cuda.synchronize if str(studio.device).startswith("cuda") else (lambda: None)
    made = []

    def on() -> None:
        made.clear()
        studio.generate(request, on_preview=lambda step, total, pictures: made.append(step))

    def off() -> None:
        studio.generate(request)

    timings = interleaved({"previews_off": off, "previews_on": on}, repeat, synchronize)
    summaries = {name: timing.summary() for name, timing in timings.items()}
    return {**summaries, "previews_made": len(made), "previews_every": studio.preview_every,
            "previews_ratio": timings["previews_on"].median / timings["previews_off"].median}


def previews_lines(results: dict) -> list[str]:
    """The bench's line for `measure_previews`' results, then a warning for each wide spread."""
    if results["previews_ratio"] is None:
        return ["live previews: not made by this model"]
    on, off = results["previews_on"], results["previews_off"]
    every = results["previews_every"]
    interval = "every step" if every == 1 else f"every {every} steps"
    line = (f"live previews {interval} ({results['previews_made']} a run): {on['median_s']:.4f} s {span(on)} "
            f"against {off['median_s']:.4f} s {span(off)} without, ratio {results['previews_ratio']:.2f}")
    return [line, *spread_warnings({"previews on": on, "previews off": off})]
