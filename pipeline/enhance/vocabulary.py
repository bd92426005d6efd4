"""Which words of a prompt the embedded model knows: its vocabulary is the prompt contract.

The embedded model was trained on prompts made of `pipeline.embedded.data`'s words only; any
other word reaches its encoder as letters it has never seen, and the picture shows noise. The
notice says so before any compute, naming the unknown words and what the model does know.
"""
from __future__ import annotations

import random
import re

_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")
_MAX_LISTED = 8


def unknown_words(prompt: str) -> list[str]:
    """The distinct words of `prompt` (lower case, in order) that no contract prompt contains."""
    from pipeline.embedded import data

    known = set(data.vocabulary())
    seen = []
    for word in _WORD.findall(prompt.lower()):
        if word not in known and word not in seen:
            seen.append(word)
    return seen


def unknown_words_notice(prompt: str) -> str | None:
    """One sentence naming the words of `prompt` the embedded model does not know and what it
    knows, or None when it knows them all."""
    from pipeline.embedded import data

    words = unknown_words(prompt)
    if not words:
        return None
    listed = ", ".join(f'"{word}"' for word in words[:_MAX_LISTED])
    more = f" and {len(words) - _MAX_LISTED} more" if len(words) > _MAX_LISTED else ""
    sizes = ", ".join(word for words_ in data.SIZE_WORDS.values() for word in words_)
    example = data.describe(data.Scene("circle", "red", "blue", "top", "small"), data.EVAL_FORMS[0],
                            random.Random(0))
    return (f"The embedded model does not know {listed}{more}: it draws one {', '.join(data.SHAPES[:-1])} or "
            f"{data.SHAPES[-1]} in {', '.join(data.COLOURS)} on a background of one of those colours, "
            f"{sizes}, at the {', '.join(p for p in data.POSITIONS if p != 'center')} or center, "
            f"as in \"{example}\".")
