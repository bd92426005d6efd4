"""Prompt writers: turn a short request into a full description of the picture before encoding.

One seam, `PromptEnhancer.enhance(prompt, task=, seed=, should_stop=) -> Enhancement`, and three
backends:

- `LanguageModelEnhancer` over the loaded pipeline's own text encoder, viewed as a causal LM
  that shares its weights (`causal_lm_view`), or over a separate local causal LM
  (`LanguageModelEnhancer.load`); the embedded model's writer is one of these.
- `EndpointEnhancer`: an OpenAI-compatible chat-completions endpoint (Ollama, vLLM, llama.cpp).

Every backend's text is cleaned (think tags, wrapping quotes, whitespace), capped and validated
like a prompt; a failure, a timeout or a cancellation raises `EnhanceFailed` with a one-sentence
message, so the caller can go on with the user's own prompt. The same (prompt, task, seed) is
rewritten once per enhancer (a bounded LRU cache).
"""
from pipeline.enhance.base import Enhancement, EnhanceFailed, PromptEnhancer, clean
from pipeline.enhance.endpoint import API_KEY_ENV, EndpointEnhancer
from pipeline.enhance.vocabulary import unknown_words, unknown_words_notice

__all__ = ["API_KEY_ENV", "Enhancement", "EnhanceFailed", "EndpointEnhancer", "LanguageModelEnhancer",
           "PromptEnhancer", "build_enhancer", "causal_lm_view", "clean", "default_enhancer", "embedded_writer",
           "unknown_words", "unknown_words_notice"]

# What needs torch and transformers is imported on first use, so that the page (which never
# imports torch) can catch `EnhanceFailed` and show the vocabulary notice.
_LAZY = {"LanguageModelEnhancer": "language_model", "causal_lm_view": "language_model",
         "build_enhancer": "choose", "default_enhancer": "choose", "embedded_writer": "choose"}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
