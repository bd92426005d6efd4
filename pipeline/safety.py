"""Optional content gates for public hosting: a prompt check before any model work and an image
check after decoding. Off unless the host turns them on (`app.py --safety`, env SAFETY=1; on by
default on a Hugging Face Space).

- Prompt: the words and phrases of a list (one per line, `#` comments; the shipped
  `assets/safety/blocked_words.txt` or the host's own), matched as whole words, case-insensitive,
  in the prompt (not in the negative prompt, where naming what to avoid is the point).
- Prompt, optionally (`use_model_llm`): the loaded model's own LLM text encoder is asked whether
  the request is one a public host refuses, and answers yes or no (the probability of "yes"
  against "no" as its next token, compared with `threshold`), as the official demos of Z-Image
  and FLUX.2 do. The encoder's weights are used as they are: a causal LM's own output layer, or
  for an encoder loaded without one, its input embeddings (the families' LLMs tie the two).
- Image: a transformers image classifier loaded by hub id or folder (for example a ViT
  fine-tuned to tell "nsfw" from "normal"); an image whose score for one of `unsafe_labels`
  reaches `threshold` is withheld.

A refusal is one sentence for the visitor that never repeats the prompt, and the log records the
decision without the prompt text. What the gate decided goes into each PNG's settings.
"""
from __future__ import annotations

import logging
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL import Image

log = logging.getLogger(__name__)

BLOCKED_WORDS = Path(__file__).resolve().parents[1] / "assets" / "safety" / "blocked_words.txt"
VERDICT_CACHE_SIZE = 256
WORD = re.compile(r"[^\W_]+")
MODERATION_QUESTION = (
    "You screen requests sent to a public image generator. Answer yes if the request asks for sexual "
    "content, any content sexualising minors, graphic violence or gore, or hateful imagery; otherwise "
    "answer no. Answer with one word, yes or no.")


class PromptRefused(ValueError):
    """The prompt asks for what the host does not serve."""

    def __init__(self):
        super().__init__("prompt refused: this studio's host does not allow what it asks for; please describe "
                         "something else")


class ImageRefused(ValueError):
    """A generated picture was withheld by the image check."""

    def __init__(self, index: int):
        super().__init__(f"image {index + 1} was withheld by this studio's content check; try another prompt "
                         "or seed")
        self.index = index


@dataclass(frozen=True, kw_only=True)
class SafetySettings:
    """What the gate checks. The defaults check prompts against the shipped word list only."""

    words: str | None = str(BLOCKED_WORDS)  # a word list file; None: no prompt check
    use_model_llm: bool = False  # also ask the loaded model's own LLM (needs a chat template)
    image_classifier: str | None = None  # hub id or folder of an image classifier; None: no image check
    unsafe_labels: tuple[str, ...] = ("nsfw",)
    threshold: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold <= 1.0:
            raise ValueError(f"safety threshold must be in (0, 1], got {self.threshold}")


def read_word_list(path: str | Path) -> tuple[tuple[str, ...], ...]:
    """Each entry of a word list as its sequence of lower-case words; ValueError naming an unreadable file."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"safety word list {str(path)!r} cannot be read: {error}") from None
    entries = (tuple(WORD.findall(line.split("#", 1)[0].lower())) for line in lines)
    return tuple(entry for entry in entries if entry)


class SafetyGate:
    """Checks prompts and pictures against the host's settings; holds the loaded classifier only."""

    def __init__(self, settings: SafetySettings, device: str = "cpu", llm: tuple | None = None):
        """`llm`: the loaded model's (text encoder, tokenizer), used when `settings.use_model_llm`."""
        self.settings = settings
        self.device = device
        self.phrases = read_word_list(settings.words) if settings.words else ()
        self.llm = None
        if settings.use_model_llm:
            if llm is None or getattr(llm[1], "chat_template", None) is None:
                raise ValueError("safety: this model's LLM cannot answer the safety question (its tokenizer has "
                                 "no chat template); leave use_model_llm off")
            self.llm = llm
        # The LLM's verdicts by prompt: a request is checked when it is given and again when its
        # batch runs, and popular prompts recur; the answer for a text never changes.
        self._verdicts: OrderedDict[str, float] = OrderedDict()
        self._verdicts_lock = threading.Lock()  # visitors' threads check prompts at once
        self._classifier = None
        if settings.image_classifier:
            self._classifier = _load_classifier(settings.image_classifier, device)
            labels = set(self._classifier[1].config.id2label.values())
            if not labels & set(settings.unsafe_labels):
                raise ValueError(f"safety image classifier {settings.image_classifier!r} has labels "
                                 f"{sorted(labels)}, none of them in {list(settings.unsafe_labels)}")

    def check_prompt(self, *texts: str) -> None:
        """PromptRefused when any text holds a listed word or phrase."""
        for text in texts:
            words = WORD.findall(text.lower())
            for phrase in self.phrases:
                if any(tuple(words[start:start + len(phrase)]) == phrase for start in range(len(words))):
                    log.info("prompt refused by the word list")
                    raise PromptRefused()
            if self.llm is not None and text.strip():
                probability = self._yes_probability(text)
                if probability >= self.settings.threshold:
                    log.info("prompt refused by the model's LLM (yes %.2f)", probability)
                    raise PromptRefused()

    def _yes_probability(self, text: str) -> float:
        with self._verdicts_lock:
            if text in self._verdicts:
                self._verdicts.move_to_end(text)
                return self._verdicts[text]
        probability = yes_probability(*self.llm, text)
        with self._verdicts_lock:
            self._verdicts[text] = probability
            while len(self._verdicts) > VERDICT_CACHE_SIZE:
                self._verdicts.popitem(last=False)
        return probability

    def unsafe_scores(self, images: list[Image.Image]) -> list[float]:
        """Each picture's highest score for an unsafe label (0 for every picture without a classifier)."""
        if self._classifier is None:
            return [0.0] * len(images)
        import torch

        processor, model = self._classifier
        unsafe = [index for index, label in model.config.id2label.items() if label in self.settings.unsafe_labels]
        with torch.no_grad():
            inputs = processor(images=[image.convert("RGB") for image in images], return_tensors="pt")
            probabilities = model(**inputs.to(model.device)).logits.float().softmax(dim=-1)  # (N, labels)
        return probabilities[:, unsafe].max(dim=-1).values.tolist()

    def check_images(self, images: list[Image.Image]) -> list[float]:
        """The unsafe scores; ImageRefused for the first picture at or over the threshold."""
        scores = self.unsafe_scores(images)
        for index, score in enumerate(scores):
            if score >= self.settings.threshold:
                log.info("image withheld by the image check (score %.2f)", score)
                raise ImageRefused(index)
        return scores

    def record(self, score: float | None = None) -> dict:
        """What the gate checked for one picture, for its PNG settings."""
        checks = [name for name, on in (("word list", self.phrases), ("model LLM", self.llm)) if on]
        record = {"prompt": " + ".join(checks) or "off",
                  "image": self.settings.image_classifier or "off"}
        if score is not None and self._classifier is not None:
            record["image_score"] = round(score, 4)
        return record


def _load_classifier(reference: str, device: str):
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    try:
        processor = AutoImageProcessor.from_pretrained(reference)
        model = AutoModelForImageClassification.from_pretrained(reference, use_safetensors=True)
    except (OSError, ValueError) as error:
        raise ValueError(f"safety image classifier {reference!r} cannot be loaded ({type(error).__name__}); "
                         "give a local folder or a hub id available on this machine") from None
    return processor, model.to(device).eval()


def _first_tokens(tokenizer, words: tuple[str, ...]) -> list[int]:
    return sorted({tokenizer.encode(word, add_special_tokens=False)[0] for word in words})


def _chat(tokenizer, messages: list[dict]) -> str:
    """The chat template applied; Gemma's template refuses a system turn, so it goes in the user's."""
    try:
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True,
                                             enable_thinking=False)
    except Exception:  # noqa: BLE001 - jinja's TemplateError, raised by the template's own check
        system, user = messages
        merged = [{"role": "user", "content": f"{system['content']}\n\nRequest: {user['content']}"}]
        return tokenizer.apply_chat_template(merged, tokenize=False, add_generation_prompt=True)


def yes_probability(text_encoder, tokenizer, prompt: str) -> float:
    """How surely the LLM answers "yes" to `MODERATION_QUESTION` about `prompt`: P(yes) / (P(yes) + P(no))
    over the first token of its answer."""
    import torch

    text = _chat(tokenizer, [{"role": "system", "content": MODERATION_QUESTION}, {"role": "user", "content": prompt}])
    inputs = tokenizer(text, return_tensors="pt", add_special_tokens=False).to(text_encoder.device)
    with torch.no_grad():
        output = text_encoder(**inputs, output_hidden_states=True)
        logits = getattr(output, "logits", None)
        if logits is not None:
            last = logits[0, -1]  # (vocab,)
        else:  # a base model: its output layer is its input embedding matrix
            last = output.last_hidden_state[0, -1] @ text_encoder.get_input_embeddings().weight.T  # (vocab,)
    yes = torch.logsumexp(last[_first_tokens(tokenizer, ("yes", "Yes"))].float(), dim=0)
    no = torch.logsumexp(last[_first_tokens(tokenizer, ("no", "No"))].float(), dim=0)
    return torch.sigmoid(yes - no).item()
