"""What the embedded model's prompt writer learns: loose descriptions in, contract prompts out.

A loose description names some of a scene's five attributes in everyday words ("a red circle",
"something small and blue at the top", "green background, triangle"); its target is a prompt in
one of the contract's forms (`WRITER_FORMS`, of `data.EVAL_FORMS`) that keeps every named
attribute and fills in the others. Every word, colour, shape, position and form comes from `pipeline.embedded.data`, so the
writer follows the contract as it grows.

`parse` reads a contract prompt back into a scene; the writer's evaluation uses it to check that
an output is a contract prompt and that it kept what the user said.
"""
from __future__ import annotations

import random
import re
from functools import lru_cache

from . import data

ATTRIBUTES = ("shape", "colour", "background", "position", "size")
# Words a loose description may use besides the contract's own.
LOOSE_WORDS = ("something", "thing", "shape", "object", "and", "in", "with", "on", "background", "the")
EVALUATION_SEED = 4049
# The writer answers in the contract forms that open with the object, so that it settles each
# attribute at the word that names it; a first word that also chose the form ("{bg} background
# with ...") trained far more slowly.
WRITER_FORMS = tuple(form for form in data.EVAL_FORMS if form.startswith("a {size} {colour} {shape}")) or data.EVAL_FORMS
_BACKGROUND_FORMS = ("{bg} background", "on a {bg} background", "a {bg} background", "on {bg}",
                     "with a {bg} background", "background {bg}")


def _position_phrases(position: str) -> list[str]:
    phrases = {phrase for table in data.POSITION_WORDS.values() for phrase in table[position]}
    return sorted(phrases)


def _object_phrase(scene: data.Scene, given: set[str], rng: random.Random) -> str:
    size = rng.choice(data.SIZE_WORDS[scene.size]) if "size" in given else ""
    colour = scene.colour if "colour" in given else ""
    if "shape" in given:
        forms = ["a {size} {colour} {shape}", "{size} {colour} {shape}"]
        if colour:
            forms.append("a {size} {shape} in {colour}")
        if size:
            forms.append("a {colour} {shape}, {size}")
    else:
        forms = ["a {size} {colour} shape", "a {size} {colour} thing", "a {size} {colour} object"]
        if size or colour:
            forms.append("something " + " and ".join(word for word in (size, colour) if word))
    text = rng.choice(forms).format(size=size, colour=colour, shape=scene.shape)
    return " ".join(text.replace(" ,", ",").split())


def loose_description(scene: data.Scene, given: set[str], rng: random.Random) -> str:
    """`scene` described loosely, naming only the attributes in `given` (at least one)."""
    parts = []
    has_object = bool(given & {"shape", "colour", "size"})
    position = rng.choice(_position_phrases(scene.position)) if "position" in given else None
    if has_object:
        phrase = _object_phrase(scene, given, rng)
        if position and rng.random() < 0.6:
            phrase, position = f"{phrase} {position}", None
        parts.append(phrase)
    elif position and rng.random() < 0.5:
        parts.append(f"something {position}")
        position = None
    if position:
        parts.append(position)
    if "background" in given:
        parts.append(rng.choice(_BACKGROUND_FORMS).format(bg=scene.background))
    rng.shuffle(parts)
    text = ", ".join(parts) if rng.random() < 0.7 else " ".join(parts)
    return data.fix_articles(text)


def _given_attributes(rng: random.Random) -> set[str]:
    count = rng.choice((1, 1, 2, 2, 2, 3, 3, 4, 5))
    return set(rng.sample(ATTRIBUTES, count))


def complete(scene: data.Scene, given: set[str], rng: random.Random) -> data.Scene:
    """A scene that keeps `given` attributes of `scene` and draws the others from the training combinations."""
    def matches(combo) -> bool:
        return all(getattr(scene, name) == value for name, value in
                   zip(("shape", "colour", "background", "position"), combo) if name in given)

    combos = [combo for combo in data.training_combos() if matches(combo)]
    combos = combos or [combo for combo in data.all_combos() if matches(combo)]
    shape, colour, background, position = rng.choice(combos)
    size = scene.size if "size" in given else rng.choice(tuple(data.SIZES))
    return data.Scene(shape, colour, background, position, size)


def example(rng: random.Random) -> tuple[str, str]:
    """One training pair (loose description, contract prompt)."""
    scene = data.sample_scene(rng, data.all_combos())
    given = _given_attributes(rng)
    if rng.random() < 0.1:  # an already complete prompt in any trained phrasing is written in a contract form
        source, given = data.describe(scene, rng.choice(data.TRAIN_FORMS), rng), set(ATTRIBUTES)
    else:
        source = loose_description(scene, given, rng)
    target = complete(scene, given, rng)
    return source, data.describe(target, rng.choice(WRITER_FORMS), rng)


def evaluation_set(count: int = 200, seed: int = EVALUATION_SEED) -> list[tuple[str, data.Scene, frozenset, int]]:
    """Held-out loose descriptions: (description, scene, given attributes, seed).

    Scenes are the embedded model's own held-out evaluation scenes; training never sees these
    descriptions (`training_example` skips them).
    """
    rng = random.Random(seed)
    items = []
    for index, (scene, _, _, _) in enumerate(data.evaluation_set(count)):
        given = _given_attributes(rng)
        items.append((loose_description(scene, given, rng), scene, frozenset(given), seed + index))
    return items


@lru_cache(maxsize=1)
def _held_out_texts() -> frozenset[str]:
    return frozenset(text for text, _, _, _ in evaluation_set())


def training_example(rng: random.Random) -> tuple[str, str]:
    """`example`, drawn again while its description is one of the evaluation set's."""
    while True:
        source, target = example(rng)
        if source not in _held_out_texts():
            return source, target


def vocabulary() -> list[str]:
    """Every word and punctuation mark a description or a contract prompt can contain, sorted."""
    words = set(data.vocabulary()) | set(LOOSE_WORDS)
    for form in _BACKGROUND_FORMS:
        words |= {w for w in form.split() if not w.startswith("{")}
    return sorted(words)


@lru_cache(maxsize=1)
def _contract_patterns() -> list[re.Pattern]:
    def alternation(values) -> str:
        return "(?:" + "|".join(re.escape(v) for v in sorted(values, key=len, reverse=True)) + ")"

    size_words = {word: size for size, words in data.SIZE_WORDS.items() for word in words}
    patterns = []
    for form in data.EVAL_FORMS:
        regex = re.escape(form)
        for slot, values in (("size", size_words), ("colour", data.COLOURS), ("shape", data.SHAPES),
                             ("bg", data.COLOURS)):
            regex = regex.replace(re.escape("{" + slot + "}"), f"(?P<{slot}>{alternation(values)})")
        for slot, table in data.POSITION_WORDS.items():
            phrases = {phrase for values in table.values() for phrase in values}
            regex = regex.replace(re.escape("{" + slot + "}"), f"(?P<pos>{alternation(phrases)})")
        regex = regex.replace(r"a\ ", r"an?\ ")
        patterns.append(re.compile(regex))
    return patterns


def parse(prompt: str) -> data.Scene | None:
    """The scene a contract prompt describes, or None if `prompt` is in none of the contract's forms."""
    size_words = {word: size for size, words in data.SIZE_WORDS.items() for word in words}
    text = " ".join(prompt.strip().lower().split())
    for pattern in _contract_patterns():
        match = pattern.fullmatch(text)
        if match is None:
            continue
        position = next(position for table in data.POSITION_WORDS.values() for position, phrases in table.items()
                        if match["pos"] in phrases)
        if match["colour"] == match["bg"]:  # a shape the colour of its background is not a contract scene
            return None
        # "in the middle" / "center" name one position in every table, so the first hit is the answer.
        return data.Scene(match["shape"], match["colour"], match["bg"], position, size_words[match["size"]])
    return None
