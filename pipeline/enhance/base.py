"""The prompt-writer seam: what every backend returns, how its text is cleaned, and the cache."""
from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from pipeline.request import MAX_PROMPT_CHARS, GenerationRequest

TASKS = ("text", "edit")
CACHE_SIZE = 256
# A rewrite longer than this many words is cut at the last sentence end before it (the system
# prompts ask for under about 120).
MAX_WORDS = 160
_THINK = re.compile(r"<think>.*?(</think>|$)", re.DOTALL | re.IGNORECASE)
_LABEL = re.compile(r"^(enhanced prompt|prompt|description|rewritten prompt)\s*:\s*", re.IGNORECASE)
_QUOTES = {'"': '"', "'": "'", "\u201c": "\u201d", "`": "`"}


class EnhanceFailed(Exception):
    """The prompt writer gave no usable text; the message is one sentence for the user."""


@dataclass(frozen=True)
class Enhancement:
    """A rewritten prompt, the enhancer that wrote it and its settings (no secrets), for metadata."""

    text: str
    enhancer: str
    settings: dict = field(default_factory=dict)

    def request_fields(self) -> dict:
        """The `GenerationRequest` fields that carry this rewrite: `request.replace(**fields)`."""
        return {"enhanced_prompt": self.text, "enhancer": self.enhancer, "enhancer_settings": dict(self.settings)}


def clean(text: str) -> str:
    """The writer's answer as a prompt: no think blocks, label, wrapping quotes or extra whitespace,
    at most MAX_WORDS words and MAX_PROMPT_CHARS characters."""
    text = _THINK.sub(" ", text).replace("</think>", " ")
    text = " ".join(text.split())
    text = _LABEL.sub("", text)
    if len(text) >= 2 and text[0] in _QUOTES and text[-1] == _QUOTES[text[0]] and text.count(text[0]) <= 2:
        text = text[1:-1].strip()
    words = text.split(" ")
    if len(words) > MAX_WORDS:
        text = " ".join(words[:MAX_WORDS])
        end = max(text.rfind(". "), text.rfind("! "), text.rfind("? "))
        text = text[:end + 1] if end > len(text) // 2 else text
    if len(text) > MAX_PROMPT_CHARS:
        text = text[:MAX_PROMPT_CHARS].rsplit(" ", 1)[0]
    return text


def check(prompt: str, task: str = "text", seed: int | None = None) -> None:
    """ValueError, naming the argument, for what no writer is asked: the prompt rules of a request,
    a seed out of range, an unknown task. Checked before any model work."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
    GenerationRequest(prompt=prompt, **({} if seed is None else {"seed": seed}))


class PromptEnhancer:
    """Base of every backend: validation, cleaning and the cache around `_rewrite`.

    A backend sets `name` (shown and stored: never a secret) and `settings()`, and implements
    `_rewrite(prompt, task, seed, should_stop) -> str`, raising `EnhanceFailed` on failure.
    """

    name: str = "enhancer"

    def __init__(self, cache_size: int = CACHE_SIZE):
        self._cache: OrderedDict[tuple, Enhancement] = OrderedDict()
        self._cache_size = cache_size
        self._cache_lock = threading.Lock()

    def settings(self) -> dict:
        return {}

    def _rewrite(self, prompt: str, task: str, seed: int | None,
                 should_stop: Callable[[], bool] | None) -> str:
        raise NotImplementedError

    def cached(self, prompt: str, *, task: str = "text", seed: int | None = None) -> Enhancement | None:
        """What `enhance` gave for the same (prompt, task, seed), or None when it has not run."""
        with self._cache_lock:
            return self._cache.get((prompt, task, seed))

    def written(self, prompt: str, text: str) -> Enhancement | None:
        """This writer's rewrite of `prompt` that `text` is, or else its newest rewrite of `prompt` with
        `text` and its settings marked edited (a person changed the text); None when it has not
        rewritten `prompt`. So that a picture drawn from a rewrite records what wrote it."""
        with self._cache_lock:
            rewrites = [result for (source, _, _), result in self._cache.items() if source == prompt]
        for result in reversed(rewrites):
            if result.text == text:
                return result
        if not rewrites:
            return None
        newest = rewrites[-1]
        return Enhancement(text=text, enhancer=newest.enhancer, settings={**newest.settings, "edited": True})

    def enhance(self, prompt: str, *, task: str = "text", seed: int | None = None,
                should_stop: Callable[[], bool] | None = None) -> Enhancement:
        """`prompt` rewritten as a full description; ValueError for bad input, EnhanceFailed when
        the writer gives nothing usable (then use `prompt` as it is)."""
        check(prompt, task, seed)
        key = (prompt, task, seed)
        with self._cache_lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        text = clean(self._rewrite(prompt, task, seed, should_stop))
        if not text:
            raise EnhanceFailed(f"The prompt writer {self.name} returned no text.")
        try:
            GenerationRequest(prompt=text)
        except ValueError as error:
            raise EnhanceFailed(f"The prompt writer {self.name} returned text that is not a valid prompt "
                                f"({error}).") from None
        result = Enhancement(text=text, enhancer=self.name, settings={**self.settings(), "task": task, "seed": seed})
        with self._cache_lock:
            self._cache[key] = result
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return result

    def clear_cache(self) -> None:
        with self._cache_lock:
            self._cache.clear()
