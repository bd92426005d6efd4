"""Exact deliverables on the embedded model: exact pixels, nothing stretched, the same pixels again."""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from helpers.pixels import levels
from pipeline import deliverables
from pipeline.deliverables import DELIVERABLES, MAX_EXTEND_STEP, MAX_KEY_ASPECT, parse, plan, render
from pipeline.embedded.data import COLOURS
from pipeline.request import GenerationRequest, ModelLimits, Range

CIRCLE = GenerationRequest(prompt="a large red circle in the center, white background", seed=0)
ROUND = 0.08  # the circle's bounding box: width / height within 8 % of 1
_PALETTE = np.array(list(COLOURS.values()), dtype=np.int64)  # (K, 3)


def shape_box_aspect(image: Image.Image) -> float:
    """Width / height of the bounding box of every pixel whose nearest drawing colour is not the
    background's (the colour nearest the mean of the picture's border)."""
    pixels = levels(image)  # (H, W, 3)
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    background = np.argmin(((_PALETTE - border.mean(axis=0)) ** 2).sum(axis=1))
    # Each distinct colour once: a 1080x1920 picture holds far fewer colours than pixels.
    packed, where = np.unique(pixels @ np.array([65536, 256, 1]), return_inverse=True)  # (C,), (H, W)
    colours = np.stack([packed // 65536, packed // 256 % 256, packed % 256], axis=1)  # (C, 3)
    nearest = np.argmin(((colours[:, None, :] - _PALETTE) ** 2).sum(axis=-1), axis=1)[where.reshape(-1)]
    nearest = nearest.reshape(pixels.shape[:2])  # (H, W)
    ys, xs = np.nonzero(nearest != background)
    assert xs.size > 0, "no shape was drawn"
    return (xs.max() - xs.min() + 1) / (ys.max() - ys.min() + 1)


@pytest.fixture(scope="module")
def rendered(embedded):
    """`rendered(key)` -> the circle drawn as that deliverable, made once per module."""
    done, keys = {}, {}

    def get(key: str):
        if key not in done:
            done[key] = render(embedded, CIRCLE, key, keys=keys)
        return done[key]

    return get


@pytest.mark.parametrize("key", list(DELIVERABLES))
def test_every_deliverable_has_its_exact_pixels_and_a_round_circle(key, rendered):
    result = rendered(key)
    deliverable = DELIVERABLES[key]
    assert result.image.size == (deliverable.width, deliverable.height)
    aspect = shape_box_aspect(result.image)
    assert abs(aspect - 1) <= ROUND, f"{key}: the circle's box is {aspect:.3f} wide per unit of height"
    assert result.settings["width"] == deliverable.width and result.settings["height"] == deliverable.height
    # One record per studio call: the key visual, then each extend step.
    assert len(result.settings["generations"]) == 1 + len(result.settings["plan"]["canvases"])


def test_the_measure_sees_a_stretched_picture(rendered):
    square = rendered("square").image
    stretched = square.resize((1080, 540))
    assert abs(shape_box_aspect(stretched) - 1) > 0.5


def test_a_banner_is_the_key_visual_extended_to_the_side(rendered):
    settings = rendered("leaderboard").settings
    key = tuple(settings["plan"]["key"])
    assert max(key) / min(key) <= MAX_KEY_ASPECT
    steps = settings["generations"]
    assert [step["mode"] for step in steps] == ["text"] + ["extend"] * (len(steps) - 1)
    assert len(steps) >= 3, "728x90 is 8:1: several extend steps of at most MAX_EXTEND_STEP each"


def test_same_inputs_give_the_same_pixels(embedded, rendered):
    again = render(embedded, CIRCLE, "leaderboard")
    assert np.array_equal(levels(again.image), levels(rendered("leaderboard").image))


def test_crop_fit_draws_only_the_key_visual(embedded):
    result = render(embedded, CIRCLE, "portrait", fit="crop")
    assert result.image.size == (1080, 1350)
    assert len(result.settings["generations"]) == 1
    assert abs(shape_box_aspect(result.image) - 1) <= ROUND


LIMITS = {
    "multiple 32, 64 px": ModelLimits(default_width=64, default_height=64, size_multiple=32, max_pixels=512 * 512,
                                      steps=Range(1, 50, 8), guidance=Range(1, 10, 2), uses_guidance=True,
                                      uses_negative_prompt=True),
    "multiple 8, 64 px": ModelLimits(default_width=64, default_height=64, size_multiple=8, max_pixels=512 * 512,
                                     steps=Range(1, 50, 8), guidance=Range(1, 10, 2), uses_guidance=True,
                                     uses_negative_prompt=True),
    "multiple 16, 1024 px": ModelLimits(default_width=1024, default_height=1024, size_multiple=16,
                                        max_pixels=2048 * 2048, steps=Range(1, 50, 8), guidance=Range(1, 10, 2),
                                        uses_guidance=True, uses_negative_prompt=True),
}


@pytest.mark.parametrize("name", list(LIMITS))
@pytest.mark.parametrize("size", [d.size for d in DELIVERABLES.values()] + [(1000, 61), (61, 1000), (777, 333)])
def test_plans_keep_to_the_model_limits_and_the_exact_aspect(name, size):
    limits = LIMITS[name]
    steps = plan(size, limits)
    multiple, native = limits.size_multiple, limits.default_width * limits.default_height
    key_w, key_h = steps.key
    assert key_w % multiple == 0 and key_h % multiple == 0 and key_w * key_h <= native
    assert max(key_w / key_h, key_h / key_w) <= MAX_KEY_ASPECT
    previous = steps.key
    for width, height in steps.canvases:
        assert width % multiple == 0 and height % multiple == 0 and width * height <= limits.max_pixels
        grown = max(width / previous[0], height / previous[1])
        assert grown <= MAX_EXTEND_STEP * 1.1, f"a step grows the picture {grown:.2f} times"
        previous = (width, height)
    left, top, right, bottom = steps.crop
    assert 0 <= left < right <= previous[0] + 1e-9 and 0 <= top < bottom <= previous[1] + 1e-9
    assert math.isclose((right - left) / (bottom - top), size[0] / size[1], rel_tol=1e-9)
    if steps.canvases:  # the box leaves out less than one size multiple of the painted border
        assert (previous[0] - (right - left)) + (previous[1] - (bottom - top)) < multiple


def test_parse_names_sizes_and_refusals():
    assert parse("story").size == (1080, 1920)
    assert parse(" Leaderboard ").key == "leaderboard"
    assert parse("640x480").size == (640, 480) and parse("640x480").key == "640x480"
    assert [d.key for d in deliverables.parse_list("square; story,728x90")] == ["square", "story", "728x90"]
    with pytest.raises(ValueError, match=r"^deliverable 'poster' is neither a name \(square, portrait, "):
        parse("poster")
    with pytest.raises(ValueError, match=r"^deliverable 9000x100: width must be from 1 to 8192 pixels, got 9000$"):
        parse("9000x100")
    with pytest.raises(ValueError, match=r"^deliverable 1700x100 is 17.0 to 1; the limit is 16 to 1$"):
        parse("1700x100")
    with pytest.raises(ValueError, match=r"^deliverables is empty; name at least one"):
        deliverables.parse_list(" ; ")


def test_safe_zones_lie_inside_their_deliverable():
    assert DELIVERABLES["story"].safe_zones, "a story has top and bottom bands"
    for deliverable in DELIVERABLES.values():
        for zone in deliverable.safe_zones:
            assert 0 <= zone.left < zone.right <= deliverable.width
            assert 0 <= zone.top < zone.bottom <= deliverable.height


def test_requests_a_deliverable_cannot_serve_are_one_sentence(embedded):
    with pytest.raises(ValueError, match=r"^a deliverable sets the size itself; leave width and height out"):
        render(embedded, CIRCLE.replace(width=64, height=64), "square")
    with pytest.raises(ValueError, match=r"^fit must be one of extend, crop, got 'stretch'$"):
        render(embedded, CIRCLE, "square", fit="stretch")
    no_extend = SimpleNamespace(limits=embedded.limits, modes=("text", "image"))
    with pytest.raises(ValueError, match=r"^deliverable story needs extend \(outpainting\), which this model cannot "
                                         r"do; use fit 'crop' instead$"):
        render(no_extend, CIRCLE, "story")
