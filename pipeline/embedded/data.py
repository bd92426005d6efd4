"""Procedural training data for the embedded model: one flat shape on a flat background.

Pictures are square (64x64 for stages 1-3) or any (width, height) (the formats' sizes): positions
are relative to each axis, sizes to the shorter side. Two-object scenes are in `pairs`.

The prompt contract lives here and nowhere else: colours, shapes, positions, sizes,
the phrasings that describe them, and the split of (shape, colour, background, position)
combinations into the ones the model trains on and the tenth it never sees.

Everything is a pure function of its arguments and a `random.Random`, so the same seed gives the
same scenes, prompts and pixels on every machine.
"""
from __future__ import annotations

import itertools
import random
from dataclasses import dataclass

import numpy as np

# RGB exactly as rendered.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "orange": (240, 140, 30),
    "yellow": (235, 215, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "purple": (140, 60, 190),
    "white": (240, 240, 240),
    "black": (20, 20, 20),
}
SHAPES = ("circle", "square", "triangle")
# Shape centre as a fraction of (width, height); the triangle's centre is its centre of mass.
POSITIONS: dict[str, tuple[float, float]] = {
    "left": (0.25, 0.5),
    "right": (0.75, 0.5),
    "top": (0.5, 0.25),
    "bottom": (0.5, 0.75),
    "center": (0.5, 0.5),
}
# Radius of the circle as a fraction of the shorter side; squares and triangles have the circle's area.
# "large" is a little under W/5 so that a large triangle at the top fits inside the picture.
SIZES: dict[str, float] = {"small": 1 / 9, "large": 0.19}
POSITION_JITTER = 1 / 16  # at most W/16 across and H/16 down, either way
SIZE_JITTER = 0.05  # radius varies by up to 5 %
SUPERSAMPLE = 4  # anti-aliasing: coverage is measured on a 4x4 sub-pixel grid

# Words the prompt may use for each value; the first is the canonical name.
SIZE_WORDS = {"small": ("small", "little"), "large": ("large", "big")}
HELD_OUT_FRACTION = 0.1
HELD_OUT_SEED = 3


@dataclass(frozen=True)
class Scene:
    """What one picture shows: the attributes a prompt names."""

    shape: str
    colour: str
    background: str
    position: str
    size: str

    @property
    def combo(self) -> tuple[str, str, str, str]:
        """The (shape, colour, background, position) combination used for the held-out split."""
        return (self.shape, self.colour, self.background, self.position)


def all_combos() -> list[tuple[str, str, str, str]]:
    """Every (shape, colour, background, position) with a shape colour unlike its background."""
    return [
        (shape, colour, background, position)
        for shape, colour, background, position in itertools.product(SHAPES, COLOURS, COLOURS, POSITIONS)
        if colour != background
    ]


def held_out_combos() -> frozenset[tuple[str, str, str, str]]:
    """The tenth of the combinations that training never samples (fixed, seeded choice)."""
    combos = all_combos()
    count = round(len(combos) * HELD_OUT_FRACTION)
    return frozenset(random.Random(HELD_OUT_SEED).sample(combos, count))


def training_combos() -> list[tuple[str, str, str, str]]:
    held_out = held_out_combos()
    return [combo for combo in all_combos() if combo not in held_out]


@dataclass(frozen=True)
class Anchor:
    """Draw `fraction` of the backgrounds as `background`, where that combination is in `combos`.

    Shape colours and background colours come from the same eight, so averaged over colours a
    shape's position and outline leave no trace in the expected picture: to first order the
    denoiser gains nothing from position and shape words. With one background colour more
    frequent, the expected picture given a position word alone shows a blob there. A training
    option under trial, off by default (TRAINING.md).
    """

    background: str
    fraction: float
    combos: frozenset


def sample_scene(rng: random.Random, combos: list[tuple[str, str, str, str]],
                 anchor: Anchor | None = None) -> Scene:
    """A scene of one of `combos`; with `anchor`, its background is sometimes the anchor colour."""
    shape, colour, background, position = rng.choice(combos)
    if anchor is not None and rng.random() < anchor.fraction:
        if (shape, colour, anchor.background, position) in anchor.combos:
            background = anchor.background
    return Scene(shape, colour, background, position, rng.choice(tuple(SIZES)))


# ---------------------------------------------------------------------------------------------
# Prompts
# ---------------------------------------------------------------------------------------------

# The four forms of the contract. {pos_*} are filled from the tables below.
EVAL_FORMS = (
    "a {size} {colour} {shape} {pos_on}, {bg} background",
    "a {size} {colour} {shape} {pos_at} on a {bg} background",
    "{bg} background with a {size} {colour} {shape} {pos_in}",
    "{size} {colour} {shape}, {pos_bare}, {bg} background",
)
# More phrasings, used only in training, so that the encoder learns the words, not four templates.
EXTRA_FORMS = (
    "{bg} background, a {size} {colour} {shape} {pos_on}",
    "a {size} {colour} {shape} {pos_at} against a {bg} background",
    "there is a {size} {colour} {shape} {pos_in} on a {bg} background",
    "a {size} {colour} {shape} placed {pos_at}, the background is {bg}",
    "a {bg} background and a {size} {colour} {shape} {pos_on}",
    "{pos_on}, a {size} {colour} {shape}, {bg} background",
    "a {colour} {shape}, {size}, {pos_bare}, on {bg}",
    "{size} {shape} in {colour} {pos_in} with a {bg} background",
    "an image of a {size} {colour} {shape} {pos_on}, {bg} background",
    "{colour} {shape}, {size}, {pos_bare}, {bg} background",
    "a {size} {colour} {shape} {pos_in}, background {bg}",
    "on a {bg} background, a {size} {colour} {shape} sits {pos_at}",
    "{bg} background, {pos_bare}, {size} {colour} {shape}",
    "a {size} {shape}, colour {colour}, {pos_on}, {bg} background",
)
TRAIN_FORMS = EVAL_FORMS + EXTRA_FORMS

POSITION_WORDS: dict[str, dict[str, tuple[str, ...]]] = {
    "pos_on": {
        "left": ("on the left", "on the left side"),
        "right": ("on the right", "on the right side"),
        "top": ("at the top", "on the top"),
        "bottom": ("at the bottom", "on the bottom"),
        "center": ("in the center", "in the middle"),
    },
    "pos_at": {
        "left": ("at the left",),
        "right": ("at the right",),
        "top": ("at the top",),
        "bottom": ("at the bottom",),
        "center": ("at the center", "in the middle"),
    },
    "pos_in": {
        "left": ("on the left", "to the left"),
        "right": ("on the right", "to the right"),
        "top": ("at the top", "near the top"),
        "bottom": ("at the bottom", "near the bottom"),
        "center": ("in the middle", "in the center"),
    },
    "pos_bare": {
        "left": ("left",),
        "right": ("right",),
        "top": ("top",),
        "bottom": ("bottom",),
        "center": ("center", "middle"),
    },
}


def fix_articles(text: str) -> str:
    """Each article set to "a" or "an", as the next word needs."""
    words = text.split(" ")
    for i, word in enumerate(words[:-1]):
        if word in ("a", "an"):
            words[i] = "an" if words[i + 1][0] in "aeiou" else "a"
    return " ".join(words)


def describe(scene: Scene, form: str, rng: random.Random) -> str:
    """Write `scene` as a prompt in `form`, choosing synonyms with `rng`."""
    slots = {name: rng.choice(table[scene.position]) for name, table in POSITION_WORDS.items()}
    text = form.format(
        size=rng.choice(SIZE_WORDS[scene.size]),
        colour=scene.colour,
        shape=scene.shape,
        bg=scene.background,
        **slots,
    )
    return fix_articles(text)


def vocabulary() -> list[str]:
    """Every word and punctuation mark a training prompt can contain, sorted."""
    words = set(COLOURS) | set(SHAPES) | {w for ws in SIZE_WORDS.values() for w in ws} | {",", "a", "an"}
    for form in TRAIN_FORMS:
        words |= {w for w in form.replace(",", " ").split() if not w.startswith("{")}
    for table in POSITION_WORDS.values():
        for phrases in table.values():
            words |= {w for phrase in phrases for w in phrase.split()}
    return sorted(words)


# ---------------------------------------------------------------------------------------------
# Pictures
# ---------------------------------------------------------------------------------------------


def frame(size) -> tuple[int, int]:
    """(width, height) of a picture size given as a square side or as (width, height)."""
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def geometry(scene: Scene, size, rng: random.Random,
              area: tuple[float, float, float, float] | None = None) -> tuple[float, float, float]:
    """Centre (x, y) in pixels and circle radius, jittered but with the whole shape inside.

    Positions are relative to each axis, the radius to the shorter side. `area` (left, top, right,
    bottom in pixels, default the whole picture) is where the shape must lie; a shape too large for
    it is shrunk to fit.
    """
    width, height = frame(size)
    radius = SIZES[scene.size] * min(width, height) * (1 + rng.uniform(-SIZE_JITTER, SIZE_JITTER))
    fx, fy = POSITIONS[scene.position]
    cx = fx * width + rng.uniform(-POSITION_JITTER * width, POSITION_JITTER * width)
    cy = fy * height + rng.uniform(-POSITION_JITTER * height, POSITION_JITTER * height)
    x0, y0, x1, y1 = area or (0, 0, width, height)
    if area is not None:
        left, right, up, down = _extent(scene.shape, 1.0)
        radius = min(radius, (x1 - x0 - 1) / (left + right), (y1 - y0 - 1) / (up + down))
    left, right, up, down = _extent(scene.shape, radius)
    cx = _clamp(cx, x0 + left + 0.5, x1 - 0.5 - right)
    cy = _clamp(cy, y0 + up + 0.5, y1 - 0.5 - down)
    return cx, cy, radius


def _clamp(value: float, low: float, high: float) -> float:
    return min(max(value, low), high)


def _triangle_sides(radius: float) -> tuple[float, float]:
    """Side and height of the equilateral triangle with the area of a circle of `radius`."""
    side = radius * float(np.sqrt(4 * np.pi / np.sqrt(3)))
    return side, side * float(np.sqrt(3)) / 2


def _extent(shape: str, radius: float) -> tuple[float, float, float, float]:
    """Distance from the centre to the shape's left, right, top and bottom edges."""
    if shape == "circle":
        return radius, radius, radius, radius
    if shape == "square":
        half = radius * float(np.sqrt(np.pi)) / 2
        return half, half, half, half
    side, height = _triangle_sides(radius)
    return side / 2, side / 2, 2 * height / 3, height / 3


def coverage(shape: str, cx: float, cy: float, radius: float, size) -> np.ndarray:
    """Fraction of each pixel covered by the shape, (height, width) float32 in [0, 1]."""
    width, height = frame(size)
    x = ((np.arange(width * SUPERSAMPLE, dtype=np.float32) + 0.5) / SUPERSAMPLE)[None, :]  # sub-pixel centres
    y = ((np.arange(height * SUPERSAMPLE, dtype=np.float32) + 0.5) / SUPERSAMPLE)[:, None]
    if shape == "circle":
        inside = (x - cx) ** 2 + (y - cy) ** 2 <= radius**2
    elif shape == "square":
        half = radius * float(np.sqrt(np.pi)) / 2
        inside = (np.abs(x - cx) <= half) & (np.abs(y - cy) <= half)
    elif shape == "triangle":
        side, tri_height = _triangle_sides(radius)
        apex = cy - 2 * tri_height / 3
        inside = (y >= apex) & (y <= apex + tri_height) & (np.abs(x - cx) <= (y - apex) / tri_height * side / 2)
    else:
        raise ValueError(f"shape must be one of {SHAPES}, got {shape!r}")
    return inside.reshape(height, SUPERSAMPLE, width, SUPERSAMPLE).mean(axis=(1, 3), dtype=np.float32)


def paint(picture: np.ndarray, alpha: np.ndarray, colour: str) -> np.ndarray:
    """`picture` (H, W, 3) float32 with `colour` laid over it by coverage `alpha` (H, W, 1)."""
    return picture * (1 - alpha) + np.array(COLOURS[colour], dtype=np.float32) * alpha


def render(scene: Scene, size, rng: random.Random) -> np.ndarray:
    """The picture of `scene` at `size` (side or (width, height)): (H, W, 3) uint8, anti-aliased edges."""
    width, height = frame(size)
    cx, cy, radius = geometry(scene, size, rng)
    alpha = coverage(scene.shape, cx, cy, radius, size)[..., None]  # (H, W, 1)
    background = np.broadcast_to(np.array(COLOURS[scene.background], dtype=np.float32), (height, width, 3))
    return np.rint(paint(background, alpha, scene.colour)).astype(np.uint8)


def training_batch(rng: random.Random, size, batch: int, combos: list | None = None,
                   anchor: Anchor | None = None):
    """`batch` scenes from the training combinations: (images (B, H, W, 3) uint8, prompts, scenes)."""
    combos = training_combos() if combos is None else combos
    scenes = [sample_scene(rng, combos, anchor) for _ in range(batch)]
    images = np.stack([render(scene, size, rng) for scene in scenes])
    prompts = [describe(scene, rng.choice(TRAIN_FORMS), rng) for scene in scenes]
    return images, prompts, scenes


def evaluation_set(count: int = 240, seed: int = 2026) -> list[tuple[Scene, str, int, bool]]:
    """The fixed held-out prompt set: (scene, prompt, seed, unseen combination?).

    Every held-out combination appears once; the rest are seen combinations. Prompts cycle through
    the four contract forms with synonyms drawn at random; seeds are the item's index plus `seed`.
    """
    rng = random.Random(seed)
    unseen = sorted(held_out_combos())
    seen = rng.sample(training_combos(), max(count - len(unseen), 0))
    combos = [(combo, True) for combo in unseen] + [(combo, False) for combo in seen]
    rng.shuffle(combos)
    items = []
    for index, (combo, is_unseen) in enumerate(combos[:count]):
        scene = Scene(*combo, size=rng.choice(tuple(SIZES)))
        prompt = describe(scene, EVAL_FORMS[index % len(EVAL_FORMS)], rng)
        items.append((scene, prompt, seed + index, is_unseen))
    return items
