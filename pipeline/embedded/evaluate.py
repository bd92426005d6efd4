"""Measure how well the embedded model follows prompts (`python -m pipeline evaluate-embedded`).

Generates held-out prompts (`data.evaluation_set`: every unseen combination once, the rest seen
combinations, all four prompt forms with synonyms, fixed seeds) through the studio, scores every
picture with the classical checker, and writes the accuracies as one table, for all prompts and
for unseen combinations alone, against the thresholds the model must meet.

The image tasks start from held-out scenes rendered at 64x64 (`rendered_inputs`) and score the
studio's image modes with the same checker: inpaint (recolour the shape inside its box; a new
background around the box; the pixels outside the mask must be the input's), extend (the square
picture on a 2:1 canvas: the shape where it was, the new border in the background colour; and
the same canvas inpainted at once, for comparison) and vary (strength 0.3, new seeds: all five
attributes kept). `SCORERS` holds them, `image_table` prints one.
"""
from __future__ import annotations

import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

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


# ---------------------------------------------------------------------------------------------
# Working from an image: inpaint, extend and vary on rendered pictures
# ---------------------------------------------------------------------------------------------

IMAGE_SET_SIZE = 48  # pictures per task: a few minutes for all three on a 2-core CPU
BOX_MARGIN = 3  # pixels around the shape's bounding box in the recolour mask
INPAINT_STRENGTH = 1.0  # the masked region is painted from noise; the rest is the input's
VARY_STRENGTH = 0.3
VARY_SEED_OFFSET = 1000  # a variation's seed: the picture's own seed plus this
EXTEND_SIZE = (2 * NATIVE_SIZE, NATIVE_SIZE)  # the square picture on a 2:1 canvas, centred
BORDER_RIGHT = 95  # percent of border pixels nearest the background colour for a right border
AT_ONCE = "at once (compare)"  # extend's row of the border painted in one pass; no threshold applies
_PALETTE_NAMES = tuple(data.COLOURS)
_PALETTE = np.array([data.COLOURS[name] for name in _PALETTE_NAMES], dtype=np.float32)  # (K, 3)


@dataclass(frozen=True)
class Figure:
    """One column of an image task's table: a percent (or a count out of n) and its threshold."""

    name: str
    threshold: str  # as printed: "90%", "all" or ""


IMAGE_FIGURES = {
    "inpaint": (Figure("right colour", ""), Figure("shape kept", ""), Figure("position kept", ""),
                Figure("recoloured", "90%"), Figure("right background", "90%"),
                Figure("outside identical", "all")),
    "extend": (Figure("position kept", ""), Figure("shape kept", ""), Figure("border right", ""),
               Figure("border >= 95%", "95%")),
    "vary": tuple(Figure(f"{name} kept", "") for name in ATTRIBUTES) + (Figure("all five kept", "90%"),),
}


def rendered_inputs(count: int = IMAGE_SET_SIZE, seed: int = 2027):
    """The fixed inputs of the image tasks: (scene, prompt, seed, picture (64, 64, 3) uint8).

    The first `count` held-out prompts' scenes, each rendered with its own seeded jitter.
    """
    items = data.evaluation_set()[:count]
    return [(scene, prompt, item_seed, data.render(scene, NATIVE_SIZE, random.Random(seed + item_seed)))
            for scene, prompt, item_seed, _ in items]


def nearest_colour_names(pixels: np.ndarray) -> np.ndarray:
    """The palette name nearest each pixel: (..., 3) -> (...) of str."""
    distance = ((pixels[..., None, :].astype(np.float32) - _PALETTE) ** 2).sum(axis=-1)  # (..., K)
    return np.array(_PALETTE_NAMES)[distance.argmin(axis=-1)]


def shape_box_mask(picture: np.ndarray, scene: data.Scene, margin: int = BOX_MARGIN) -> np.ndarray:
    """255 on the bounding box of the pixels not of the background colour, grown by `margin`."""
    ys, xs = np.nonzero((picture != np.array(data.COLOURS[scene.background], dtype=np.uint8)).any(axis=-1))
    height, width, _ = picture.shape
    mask = np.zeros((height, width), dtype=np.uint8)  # (H, W)
    mask[max(ys.min() - margin, 0):ys.max() + margin + 1, max(xs.min() - margin, 0):xs.max() + margin + 1] = 255
    return mask


def other_colour(rng: random.Random, *taken: str) -> str:
    return rng.choice([name for name in data.COLOURS if name not in taken])


def _image_request(prompt: str, seed: int, steps: int, guidance: float, picture: np.ndarray, **changes):
    from PIL import Image

    from pipeline.conditioning import read_input_image, read_mask
    from pipeline.request import GenerationRequest

    init = read_input_image(Image.fromarray(picture), "init_image")
    mask = changes.pop("mask", None)
    if mask is not None:
        changes["mask"] = read_mask(Image.fromarray(mask), init.size)
    return GenerationRequest(prompt=prompt, negative_prompt="", seed=seed, steps=steps, guidance=guidance,
                             num_images=1, init_image=init, **changes)


def score_inpaint(studio, inputs, steps: int, guidance: float, on_scored=None,
                  strength: float = INPAINT_STRENGTH) -> dict[str, dict[str, float]]:
    """Recolour (mask = the shape's box, a new shape colour named) and new background (mask =
    all but the box, a new background named). Rows "recolour" and "new background"."""
    rng = random.Random(0)
    recolour, background = [], []
    for index, (scene, _, seed, picture) in enumerate(inputs):
        box = shape_box_mask(picture, scene)
        form = data.EVAL_FORMS[index % len(data.EVAL_FORMS)]
        for target, mask, results in (
            (replace(scene, colour=other_colour(rng, scene.colour, scene.background)), box, recolour),
            (replace(scene, background=other_colour(rng, scene.colour, scene.background)), 255 - box, background),
        ):
            request = _image_request(data.describe(target, form, rng), seed, steps, guidance, picture,
                                     strength=strength, mask=mask, mask_feather=0)
            image = np.asarray(studio.generate(request).images[0].convert("RGB"))
            score = check(image, target)
            score["identical"] = bool((image[mask == 0] == picture[mask == 0]).all())
            results.append(score)
        if on_scored is not None:
            on_scored(index + 1, len(inputs))
    rows = {}
    for label, results in (("recolour", recolour), ("new background", background)):
        rows[label] = {
            "n": len(results),
            "position kept": _percent(r["position"] for r in results),
            "outside identical": sum(r["identical"] for r in results),
        }
    # Not read for a new background: the box's margin keeps the old background, which the
    # checker counts as shape pixels, so the outline it measures is the box.
    rows["recolour"]["shape kept"] = _percent(r["shape"] for r in recolour)
    rows["recolour"]["right colour"] = _percent(r["colour"] for r in recolour)
    rows["recolour"]["recoloured"] = _percent(r["colour"] and r["shape"] and r["position"] for r in recolour)
    rows["new background"]["right background"] = _percent(r["background"] for r in background)
    return rows


def read_extended(image: np.ndarray, scene: data.Scene, left: int) -> dict[str, float | bool]:
    """An extended canvas against the picture's scene: the shape's position and outline read over
    the whole canvas in the coordinates of the picture (at `left`, full height), and the share of
    border pixels whose nearest palette colour is the background's."""
    height = image.shape[0]
    names = nearest_colour_names(image)  # (H, W)
    shape_pixels = names != scene.background
    ys, xs = np.nonzero(shape_pixels)
    inner = image[:, left:left + height]
    border = np.concatenate([names[:, :left].ravel(), names[:, left + height:].ravel()])
    result = {"border": 100.0 * float((border == scene.background).mean()), "position": False,
              "shape": check(inner, scene)["shape"]}
    if len(xs):
        cx, cy = (xs.mean() + 0.5 - left) / height, (ys.mean() + 0.5) / height
        nearest = min(data.POSITIONS, key=lambda p: (data.POSITIONS[p][0] - cx) ** 2 + (data.POSITIONS[p][1] - cy) ** 2)
        result["position"] = nearest == scene.position
    return result


def score_extend(studio, inputs, steps: int, guidance: float, on_scored=None,
                 strength: float = INPAINT_STRENGTH) -> dict[str, dict[str, float]]:
    """Each square picture extended to 2:1 (`Extend.to`, centred, painted in passes), its prompt
    unchanged; and for comparison (row AT_ONCE, no threshold), the same canvas and border
    inpainted at once."""
    from PIL import Image

    from pipeline.conditioning import Extend, extend

    width, height = EXTEND_SIZE
    left = (width - height) // 2
    extended, at_once = [], []
    for index, (scene, prompt, seed, picture) in enumerate(inputs):
        canvas, border = extend(Image.fromarray(picture), width, height)
        requests = (
            (extended, _image_request(prompt, seed, steps, guidance, picture, strength=strength,
                                      extend=Extend.to(width, height))),
            (at_once, _image_request(prompt, seed, steps, guidance, np.asarray(canvas), strength=strength,
                                     mask=np.asarray(border), width=width, height=height)),
        )
        for results, request in requests:
            results.append(read_extended(np.asarray(studio.generate(request).images[0].convert("RGB")), scene, left))
        if on_scored is not None:
            on_scored(index + 1, len(inputs))
    rows = {}
    for label, results in ((f"{NATIVE_SIZE}x{NATIVE_SIZE} to {width}x{height}", extended), (AT_ONCE, at_once)):
        rows[label] = {
            "n": len(results),
            "position kept": _percent(r["position"] for r in results),
            "shape kept": _percent(r["shape"] for r in results),
            "border right": sum(r["border"] for r in results) / max(len(results), 1),
            "border >= 95%": _percent(r["border"] >= BORDER_RIGHT for r in results),
        }
    return rows


def score_vary(studio, inputs, steps: int, guidance: float, on_scored=None,
               strength: float = VARY_STRENGTH) -> dict[str, dict[str, float]]:
    """Image-to-image at `strength` from each picture with a new seed, its prompt unchanged."""
    results = []
    for index, (scene, prompt, seed, picture) in enumerate(inputs):
        request = _image_request(prompt, seed + VARY_SEED_OFFSET, steps, guidance, picture, strength=strength)
        results.append(check(studio.generate(request).images[0], scene))
        if on_scored is not None:
            on_scored(index + 1, len(inputs))
    row = {"n": len(results)}
    row.update({f"{name} kept": _percent(r[name] for r in results) for name in ATTRIBUTES})
    row["all five kept"] = _percent(r["all"] for r in results)
    return {f"strength {strength:g}": row}


SCORERS = {"inpaint": score_inpaint, "extend": score_extend, "vary": score_vary}
STRENGTHS = {"inpaint": INPAINT_STRENGTH, "extend": INPAINT_STRENGTH, "vary": VARY_STRENGTH}  # each task's default


def image_table(task: str, rows: dict[str, dict[str, float]]) -> str:
    """One task's table: a line per row, then the thresholds. "outside identical" is a count of n."""
    figures = IMAGE_FIGURES[task]
    widths = [max(len(figure.name) + 2, 9) for figure in figures]
    lines = [f"{task:<18}{'n':>5}" + "".join(f"{figure.name:>{w}}" for figure, w in zip(figures, widths))]
    for label, row in rows.items():
        cells = []
        for figure, w in zip(figures, widths):
            value = row.get(figure.name)
            if value is None:
                cells.append(f"{'-':>{w}}")
            elif figure.name == "outside identical":
                count = f"{value}/{row['n']}"
                cells.append(f"{count:>{w}}")
            else:
                cells.append(f"{value:>{w - 1}.1f}%")
        lines.append(f"{label:<18}{row['n']:>5}" + "".join(cells))
    lines.append(f"{'threshold':<18}{'':>5}" + "".join(f"{figure.threshold:>{w}}" for figure, w in zip(figures, widths)))
    return "\n".join(lines)


def image_failures(task: str, rows: dict[str, dict[str, float]]) -> list[str]:
    """The thresholds an image task's rows miss, as sentences."""
    missed = []
    for label, row in rows.items():
        if label == AT_ONCE:
            continue
        for figure in IMAGE_FIGURES[task]:
            if not figure.threshold or figure.name not in row:
                continue
            value = row[figure.name]
            if figure.threshold == "all" and value < row["n"]:
                missed.append(f"{label} {figure.name}: {value}/{row['n']}")
            elif figure.threshold.endswith("%") and value < int(figure.threshold[:-1]):
                missed.append(f"{label} {figure.name}: {value:.1f}% < {figure.threshold}")
    return missed


def _percent(flags) -> float:
    flags = list(flags)
    return 100.0 * sum(bool(flag) for flag in flags) / max(len(flags), 1)


if __name__ == "__main__":  # the same as `python -m pipeline evaluate-embedded`
    from pipeline.commands import main

    sys.exit(main(["evaluate-embedded", *sys.argv[1:]]))
