"""Which prompt writer to use: a reference given by the user, or a loaded pipeline's default."""
from __future__ import annotations

from pathlib import Path

from pipeline.enhance.base import PromptEnhancer
from pipeline.enhance.endpoint import EndpointEnhancer
from pipeline.enhance.language_model import LanguageModelEnhancer

# The reference that means "the loaded model's own default writer".
OWN = "own"
# The embedded writer's prompts are under 20 words; a cooler sample keeps its rare slips rarer.
WRITER_OPTIONS = {"max_new_tokens": 40, "temperature": 0.5, "top_p": 0.9}


def build_enhancer(reference: str | None, *, studio=None, endpoint_model: str | None = None,
                   device: str = "cpu") -> PromptEnhancer:
    """The writer named by `reference`.

    None or "own": the studio's default (`default_enhancer`); an http(s) URL: an OpenAI-compatible
    endpoint serving `endpoint_model` (or the model named after '#' in the URL); anything else: a
    local causal-LM folder or hub id. ValueError, one sentence, when it cannot be built.
    """
    if reference is None or reference == OWN:
        if studio is None:
            raise ValueError("the model's own prompt writer needs a loaded model")
        return default_enhancer(studio)
    if reference.startswith(("http://", "https://")):
        base, _, fragment = reference.partition("#")
        model = endpoint_model or fragment
        if not model:
            raise ValueError("name the endpoint's model after '#' in the URL, e.g. http://127.0.0.1:11434/v1#qwen3:4b")
        return EndpointEnhancer(base, model)
    return LanguageModelEnhancer.load(reference, device=device)


def default_enhancer(studio) -> PromptEnhancer:
    """The loaded model's own writer: the shipped writer for the embedded model, else the
    pipeline's text encoder as a causal LM (weights shared). ValueError when it has none."""
    preset = studio.source.preset
    if preset is not None and preset.name == "embedded":
        return embedded_writer()
    name = f"{studio.source.reference} text encoder"
    return LanguageModelEnhancer.from_pipeline(studio.pipe, name)


def embedded_writer(folder: Path | None = None) -> LanguageModelEnhancer:
    """The embedded model's writer (`python -m pipeline train-writer`), from `folder` or assets/writer."""
    from pipeline.embedded.writer import WRITER_DIR

    folder = folder or WRITER_DIR
    if not (folder / "config.json").exists():
        raise ValueError(f"the embedded model's prompt writer is missing from {folder}; "
                         "train it with `python -m pipeline train-writer --out assets/writer`")
    return LanguageModelEnhancer.load(folder, device="cpu", name="embedded writer", **WRITER_OPTIONS)
