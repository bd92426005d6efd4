"""A deliverable's record in a PNG: first-class fields that `stored_deliverable` reads back, and
records of another form refused in one sentence naming the field."""
from __future__ import annotations

import copy

import pytest

from pipeline.brand import ColourReference
from pipeline.deliverables import DELIVERABLES, plan
from pipeline.metadata import deliverable_settings, request_from_settings, stored_deliverable
from pipeline.postprocess import PostprocessSettings
from pipeline.request import ModelLimits, Range

LIMITS = ModelLimits(size_multiple=32, max_pixels=64 * 64 * 4, default_width=64, default_height=64,
                     steps=Range(1, 50, 8), guidance=Range(0.0, 10.0, 2.0), uses_guidance=True,
                     uses_negative_prompt=True)
KEY = {"format": 1, "prompt": "a red car, flat colours", "negative_prompt": "blurry", "seed": 7, "steps": 8,
       "guidance": 2.0, "width": 64, "height": 64, "batch": {"seed": 7, "index": 0, "size": 1}, "model": "embedded",
       "model_revision": "abc", "pipeline": "SanaPipeline", "scheduler": "FlowMatchEulerDiscreteScheduler",
       "postprocess": PostprocessSettings().to_dict(), "device": "cpu", "dtype": "float32", "versions": {},
       "mode": "text"}
COLOUR = ColourReference("approved.png", "ab" * 32, (0.5, 0.4, 0.3), (0.2, 0.2, 0.1), 0.8)


def rendered(key: str = "medium-rectangle", fit: str = "extend") -> dict:
    """`deliverables.render`'s settings of a deliverable, as render makes them."""
    item = DELIVERABLES[key]
    route = plan(item.size, LIMITS, fit)
    post = PostprocessSettings(color="palette", color_palette=("#1D3557",))
    return {"key": item.key, "title": item.title, "width": item.width, "height": item.height, "fit": fit,
            "anchor": "center", "plan": route.to_dict(), "postprocess": post.to_dict(),
            "colour_reference": COLOUR.to_dict(), "generations": [KEY]}


def test_the_record_holds_the_deliverable_kit_and_style_and_reads_back():
    kit = {"name": "Harbour", "palette": ["#1D3557"]}
    record = deliverable_settings(rendered(), kit=kit, style="cinematic")
    assert (record["width"], record["height"], record["kit"], record["style"]) == (300, 250, kit, "cinematic")
    assert record["deliverable"] == {name: value for name, value in rendered().items()
                                     if name not in ("postprocess", "generations")}
    assert record["postprocess"]["color_palette"] == ["#1D3557"] and record["seed"] == 7
    request, index = request_from_settings(record)
    assert (request.width, request.height, request.seed, request.prompt, index) == (None, None, 7, KEY["prompt"], 0)
    assert request.postprocess == PostprocessSettings(color="palette", color_palette=("#1D3557",))
    stored = stored_deliverable(record)
    assert (stored.deliverable, stored.fit, stored.anchor, stored.colour, stored.kit, stored.style) == (
        DELIVERABLES["medium-rectangle"], "extend", "center", COLOUR, kit, "cinematic")
    assert stored.options() == {"fit": "extend", "anchor": "center", "colour": COLOUR}
    plain = deliverable_settings(rendered("square", "crop"))
    assert "kit" not in plain and "style" not in plain and stored_deliverable(plain).colour == COLOUR
    assert stored_deliverable(KEY) is None


def _broken(change) -> dict:
    record = copy.deepcopy(deliverable_settings(rendered()))
    change(record)
    return record


@pytest.mark.parametrize("change, message", [
    (lambda r: r["deliverable"].pop("plan"), "stored deliverable is incomplete: plan missing"),
    (lambda r: r.update(deliverable="square"), "stored deliverable must be an object, got 'square'"),
    (lambda r: r["deliverable"].update(key="poster"), "deliverable 'poster' is neither a name ("),
    (lambda r: r.update(width=320), "stored width and height are 320x250, but deliverable medium-rectangle is 300x250"),
    (lambda r: r["deliverable"].update(height=90),
     "stored deliverable width and height are 300x90, but deliverable medium-rectangle is 300x250"),
    (lambda r: r["deliverable"].update(fit="stretch"), "stored deliverable fit must be one of extend, crop, got "
                                                       "'stretch'"),
    (lambda r: r["deliverable"].update(colour_reference={"name": "x"}),
     "stored deliverable colour_reference must be an object of name, sha256, mean, std (and strength)"),
    (lambda r: r.update(kit="Harbour"), "stored kit must be an object, got 'Harbour'"),
    (lambda r: r.update(style=3), "stored style must be text, got 3"),
])
def test_a_deliverable_record_of_another_form_is_one_sentence(change, message):
    with pytest.raises(ValueError) as error:
        stored_deliverable(_broken(change))
    assert str(error.value).startswith(message)
