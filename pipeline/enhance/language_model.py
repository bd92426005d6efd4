"""A causal LM as the prompt writer: the pipeline's own text encoder, or a separate local model.

The pipelines keep their encoder as a bare decoder (`Gemma2Model` for Sana and Lumina 2,
`Qwen3Model` for Z-Image), whose output layer is tied to its input embeddings. `causal_lm_view`
builds the family's `...ForCausalLM` around that very module, on the meta device, and points its
output layer at the embedding matrix: no weight is copied or created, and the pipeline's module
is neither replaced nor changed. FLUX.2 klein's `Qwen3ForCausalLM` and Qwen-Image's
`Qwen2_5_VLForConditionalGeneration` generate as they are.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import torch
from transformers import StoppingCriteria, StoppingCriteriaList

from pipeline.enhance.base import EnhanceFailed, PromptEnhancer
from pipeline.enhance.instructions import END_OF_TURN, chat_text

# Bare decoder class -> the causal-LM class whose `model` it is.
_CAUSAL_LM = {"Gemma2Model": "Gemma2ForCausalLM", "GemmaModel": "GemmaForCausalLM",
              "Qwen3Model": "Qwen3ForCausalLM", "Qwen2Model": "Qwen2ForCausalLM"}
MAX_NEW_TOKENS = 200
MAX_SECONDS = 60.0
TEMPERATURE = 0.7
TOP_P = 0.9


def causal_lm_view(text_encoder):
    """A causal LM that runs `text_encoder`'s own weights (no new weight tensors).

    ValueError, one sentence, for an encoder that cannot generate: one of an unknown class, or
    whose output layer is not tied to its embeddings (its weights were not loaded with it).
    """
    if hasattr(text_encoder, "generate") and hasattr(text_encoder, "lm_head"):
        return text_encoder
    name = type(text_encoder).__name__
    if name not in _CAUSAL_LM:
        raise ValueError(f"the text encoder {name} cannot write prompts; choose a separate prompt writer")
    config = text_encoder.config
    if not getattr(config, "tie_word_embeddings", False):
        raise ValueError(f"the text encoder {name} has no output layer of its own weights; "
                         "choose a separate prompt writer")
    import transformers

    with torch.device("meta"):
        view = getattr(transformers, _CAUSAL_LM[name])(config)
    view.model = text_encoder
    view.lm_head.weight = text_encoder.embed_tokens.weight
    view.train(text_encoder.training)
    return view


class _Bounds(StoppingCriteria):
    """Stop on a deadline or when `should_stop()` says so, and remember which (`reason`)."""

    def __init__(self, max_seconds: float, should_stop: Callable[[], bool] | None, clock: Callable[[], float]):
        self.max_seconds, self.should_stop, self.clock = max_seconds, should_stop, clock
        self.reason: str | None = None
        self.started = clock()

    def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.Tensor:
        if self.should_stop is not None and self.should_stop():
            self.reason = "cancelled"
        elif self.clock() - self.started > self.max_seconds:
            self.reason = "timeout"
        return torch.full((input_ids.shape[0],), self.reason is not None, dtype=torch.bool, device=input_ids.device)


class LanguageModelEnhancer(PromptEnhancer):
    """Rewrites prompts with a causal LM and its tokenizer: greedy, or sampled from `seed`.

    `max_new_tokens` and `max_seconds` bound each rewrite; `clock` is the time source of the
    latter (monotonic seconds).
    """

    def __init__(self, model, tokenizer, *, name: str, max_new_tokens: int = MAX_NEW_TOKENS,
                 max_seconds: float = MAX_SECONDS, temperature: float = TEMPERATURE, top_p: float = TOP_P,
                 clock: Callable[[], float] = time.monotonic, cache_size: int | None = None):
        super().__init__(**({} if cache_size is None else {"cache_size": cache_size}))
        self.model, self.tokenizer, self.name = model, tokenizer, name
        self.max_new_tokens, self.max_seconds = max_new_tokens, max_seconds
        self.temperature, self.top_p, self.clock = temperature, top_p, clock
        vocab = tokenizer.get_vocab()
        stops = {tokenizer.eos_token_id} | {vocab[token] for token in END_OF_TURN if token in vocab}
        self.stop_ids = sorted(i for i in stops if i is not None)
        if not self.stop_ids:
            raise ValueError(f"the prompt writer {name}'s tokenizer names no end-of-text token")

    @classmethod
    def load(cls, reference: str | Path, *, device: str = "cpu", name: str | None = None,
             **options) -> LanguageModelEnhancer:
        """A separate causal LM from a folder or hub id (safetensors only, never remote code)."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(str(reference), trust_remote_code=False)
            model = AutoModelForCausalLM.from_pretrained(str(reference), use_safetensors=True,
                                                         trust_remote_code=False).to(device).eval()
        except (OSError, ValueError) as error:
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise ValueError(f"cannot load the prompt writer {str(reference)!r}: {first}") from None
        return cls(model, tokenizer, name=name or Path(str(reference)).name or str(reference), **options)

    @classmethod
    def from_pipeline(cls, pipe, name: str, **options) -> LanguageModelEnhancer:
        """The pipeline's own text encoder and tokenizer as the writer (weights shared)."""
        return cls(causal_lm_view(pipe.text_encoder), pipe.tokenizer, name=name, **options)

    def settings(self) -> dict:
        return {"max_new_tokens": self.max_new_tokens, "max_seconds": self.max_seconds,
                "temperature": self.temperature, "top_p": self.top_p}

    def _rewrite(self, prompt: str, task: str, seed: int | None, should_stop) -> str:
        model_type = getattr(self.model.config, "model_type", "")
        text = chat_text(self.tokenizer, model_type, task, prompt)
        inputs = self.tokenizer(text, return_tensors="pt", add_special_tokens=False)
        device = self.model.get_input_embeddings().weight.device
        ids, mask = inputs["input_ids"].to(device), inputs["attention_mask"].to(device)
        new = self.generate(ids, mask, seed, should_stop)
        return self.tokenizer.decode(new, skip_special_tokens=True)

    def generate(self, ids: torch.Tensor, mask: torch.Tensor, seed: int | None, should_stop=None) -> list[int]:
        """The new token ids after `ids` (1, T), within the token and time bounds."""
        bounds = _Bounds(self.max_seconds, should_stop, self.clock)
        if seed is None:  # greedy; the model's own sampling defaults do not apply
            sampling = {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
        else:
            sampling = {"do_sample": True, "temperature": self.temperature, "top_p": self.top_p, "top_k": None}
        with torch.random.fork_rng(devices=[ids.device] if ids.device.type == "cuda" else []), torch.inference_mode():
            if seed is not None:  # the sample depends on the seed alone, not on the process's RNG
                torch.manual_seed(seed)
            output = self.model.generate(
                input_ids=ids, attention_mask=mask, max_new_tokens=self.max_new_tokens, eos_token_id=self.stop_ids,
                pad_token_id=self.stop_ids[0], stopping_criteria=StoppingCriteriaList([bounds]), **sampling)
        if bounds.reason == "cancelled":
            raise EnhanceFailed("Prompt enhancement was cancelled.")
        if bounds.reason == "timeout":
            raise EnhanceFailed(f"The prompt writer {self.name} took longer than {self.max_seconds:g} s.")
        return [int(token) for token in output[0, ids.shape[1]:] if int(token) not in self.stop_ids]
