"""Two-object scenes for the embedded model: two shapes side by side or one above the other.

The two-object prompt contract lives here: each object has its own colour, shape and size; the
pair is left/right or top/bottom; the two colours differ from each other and from the
background. As in `data`, a tenth of the combinations (objects, background, axis) are held out
of training, and everything is a pure function of its arguments and a `random.Random`.
"""
from __future__ import annotations

import itertools
import random
from dataclasses import dataclass

import numpy as np

from . import data

# The sides of each axis: the first object is at the first side (left or top).
AXES: dict[str, tuple[str, str]] = {"horizontal": ("left", "right"), "vertical": ("top", "bottom")}
HELD_OUT_SEED = 4
# Share of training prompts that name an object without its size ("a red circle on the left").
SIZELESS_FRACTION = 0.25
PAIR_GAP = 2  # pixels between the two halves the objects are kept in


@dataclass(frozen=True)
class Thing:
    """One object of a two-object scene."""

    shape: str
    colour: str
    size: str


@dataclass(frozen=True)
class Pair:
    """What a two-object picture shows: `first` at the left (or top), `second` at the right (or bottom)."""

    first: Thing
    second: Thing
    background: str
    axis: str

    @property
    def combo(self) -> tuple[str, str, str, str, str, str]:
        """(first shape, first colour, second shape, second colour, background, axis): the held-out unit."""
        return (self.first.shape, self.first.colour, self.second.shape, self.second.colour,
                self.background, self.axis)

    def placed(self) -> list[tuple[Thing, str]]:
        """Each object with its side."""
        return list(zip((self.first, self.second), AXES[self.axis]))

    def scene(self, index: int) -> data.Scene:
        """Object `index` (0 or 1) as a one-object scene at its side."""
        thing, side = self.placed()[index]
        return data.Scene(thing.shape, thing.colour, self.background, side, thing.size)


def all_pair_combos() -> list[tuple[str, str, str, str, str, str]]:
    """Every combination whose two colours differ from each other and from the background."""
    return [
        (shape_a, colour_a, shape_b, colour_b, background, axis)
        for shape_a, shape_b in itertools.product(data.SHAPES, repeat=2)
        for colour_a, colour_b, background in itertools.permutations(data.COLOURS, 3)
        for axis in AXES
    ]


def held_out_pair_combos() -> frozenset:
    """The tenth of the two-object combinations that training never samples (fixed, seeded choice)."""
    combos = all_pair_combos()
    return frozenset(random.Random(HELD_OUT_SEED).sample(combos, round(len(combos) * data.HELD_OUT_FRACTION)))


def training_pair_combos() -> list:
    held_out = held_out_pair_combos()
    return [combo for combo in all_pair_combos() if combo not in held_out]


def pair_from_combo(combo, rng: random.Random) -> Pair:
    shape_a, colour_a, shape_b, colour_b, background, axis = combo
    sizes = tuple(data.SIZES)
    return Pair(Thing(shape_a, colour_a, rng.choice(sizes)), Thing(shape_b, colour_b, rng.choice(sizes)),
                background, axis)


# ---------------------------------------------------------------------------------------------
# Prompts
# ---------------------------------------------------------------------------------------------

# {a} and {b} are the objects in the order the prompt names them ("a small red circle"),
# {a_on}/{a_at}/{a_in} their positions from data.POSITION_WORDS.
PAIR_EVAL_FORMS = (
    "{a} {a_on} and {b} {b_on}, {bg} background",
    "{a} {a_at} and {b} {b_at} on a {bg} background",
    "{bg} background with {a} {a_in} and {b} {b_in}",
    "{a_on}, {a}, and {b_on}, {b}, {bg} background",
)
PAIR_EXTRA_FORMS = (
    "{bg} background, {a} {a_on} and {b} {b_on}",
    "{a} {a_at} and {b} {b_at} against a {bg} background",
    "there is {a} {a_in} and {b} {b_in} on a {bg} background",
    "on a {bg} background, {a} sits {a_at} and {b} {b_at}",
    "an image of {a} {a_on} and {b} {b_on}, {bg} background",
    "{a} {a_in} with {b} {b_in}, background {bg}",
    "a {bg} background and {a} {a_on}, {b} {b_on}",
    "{a} {a_on}, {b} {b_on}, on {bg}",
)
PAIR_TRAIN_FORMS = PAIR_EVAL_FORMS + PAIR_EXTRA_FORMS


def _thing_words(thing: Thing, rng: random.Random, sized: bool) -> str:
    if not sized:
        return f"a {thing.colour} {thing.shape}"
    return f"a {rng.choice(data.SIZE_WORDS[thing.size])} {thing.colour} {thing.shape}"


def describe_pair(pair: Pair, form: str, rng: random.Random, *, second_first: bool = False,
                  sized: tuple[bool, bool] = (True, True)) -> str:
    """Write `pair` as a prompt in `form`, naming the second object first if `second_first`.

    `sized` says for each object (first, second) whether the prompt names its size.
    """
    named = pair.placed()
    flags = list(sized)
    if second_first:
        named, flags = named[::-1], flags[::-1]
    slots = {"bg": pair.background}
    for key, (thing, side), flag in zip("ab", named, flags):
        slots[key] = _thing_words(thing, rng, flag)
        for slot in ("on", "at", "in"):
            slots[f"{key}_{slot}"] = rng.choice(data.POSITION_WORDS[f"pos_{slot}"][side])
    return data.fix_articles(form.format(**slots))


def training_pair_prompt(pair: Pair, rng: random.Random) -> str:
    """A training prompt: any form, either object named first, sizes sometimes left out."""
    form = rng.choice(PAIR_TRAIN_FORMS)
    second_first = rng.random() < 0.5
    sized = (rng.random() >= SIZELESS_FRACTION, rng.random() >= SIZELESS_FRACTION)
    return describe_pair(pair, form, rng, second_first=second_first, sized=sized)


# ---------------------------------------------------------------------------------------------
# Pictures
# ---------------------------------------------------------------------------------------------


def render_pair(pair: Pair, size, rng: random.Random) -> np.ndarray:
    """The picture of `pair` at `size` (side or (width, height)): (H, W, 3) uint8.

    Each object is placed as a one-object scene at its side (positions relative to each axis,
    sizes to the shorter side) and kept inside its own half, a pixel away from the middle, so
    the two never touch; a shape too large for its half is shrunk to fit.
    """
    width, height = data.frame(size)
    gap = PAIR_GAP / 2
    if pair.axis == "horizontal":
        halves = ((0, 0, width / 2 - gap, height), (width / 2 + gap, 0, width, height))
    else:
        halves = ((0, 0, width, height / 2 - gap), (0, height / 2 + gap, width, height))
    picture = np.broadcast_to(np.array(data.COLOURS[pair.background], dtype=np.float32), (height, width, 3))
    for index, half in enumerate(halves):
        scene = pair.scene(index)
        cx, cy, radius = data.geometry(scene, size, rng, area=half)
        alpha = data.coverage(scene.shape, cx, cy, radius, size)[..., None]  # (H, W, 1)
        picture = data.paint(picture, alpha, scene.colour)
    return np.rint(picture).astype(np.uint8)


def pair_evaluation_set(count: int = 240, seed: int = 2028) -> list[tuple[Pair, str, int, bool]]:
    """The fixed held-out two-object prompt set: (pair, prompt, seed, unseen combination?).

    Half are held-out combinations, half seen ones; prompts cycle through the four contract forms,
    name both sizes and name the left (top) or the right (bottom) object first at random; seeds
    are the item's index plus `seed`.
    """
    rng = random.Random(seed)
    unseen_count = count // 2
    unseen = rng.sample(sorted(held_out_pair_combos()), unseen_count)
    seen = rng.sample(training_pair_combos(), count - unseen_count)
    combos = [(combo, True) for combo in unseen] + [(combo, False) for combo in seen]
    rng.shuffle(combos)
    items = []
    for index, (combo, is_unseen) in enumerate(combos):
        pair = pair_from_combo(combo, rng)
        form = PAIR_EVAL_FORMS[index % len(PAIR_EVAL_FORMS)]
        prompt = describe_pair(pair, form, rng, second_first=rng.random() < 0.5)
        items.append((pair, prompt, seed + index, is_unseen))
    return items
