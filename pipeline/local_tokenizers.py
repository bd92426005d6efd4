"""Tokenizers of the real transformers classes, built here with no download.

Byte-level vocabularies (plus whole-word tokens where a realistic sequence length matters), so
their ids fall in the low part of any text encoder's embedding table. Used for real-size
architectures with random weights (`pipeline.benchmark`) and for the tiny models of the tests.
"""
from __future__ import annotations

# Qwen-family chat template with the `enable_thinking` switch the Z-Image pipeline passes.
QWEN_CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and not enable_thinking %}<think>\n\n</think>\n\n{% endif %}{% endif %}"
)
GEMMA_SPACE = "\u2581"  # SentencePiece's word-boundary mark


def _word_merges(words: list[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """BPE merges that build each word from its characters left to right, and the pieces they make.

    Merges of different words may compete, leaving a word in two or three pieces; every piece is
    still in the vocabulary.
    """
    merges = {}  # piece -> the merge that makes it, in order of first use
    for word in words:
        for end in range(2, len(word) + 1):
            merges.setdefault(word[:end], (word[:end - 1], word[end - 1]))
    return list(merges), list(merges.values())


def gemma_tokenizer(words: tuple[str, ...] | list[str] = ()):
    """A Gemma tokenizer over bytes and printable ASCII, plus whole-word tokens for `words`.

    Words are given with the leading word-boundary mark where they follow a space ("\u2581user").
    """
    from transformers import GemmaTokenizer

    tokens = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>", GEMMA_SPACE]
    tokens += [f"<0x{byte:02X}>" for byte in range(256)] + [chr(code) for code in range(33, 127)]
    pieces, merges = _word_merges(words)
    tokens += [piece for piece in pieces if piece not in tokens]
    return GemmaTokenizer(vocab={token: index for index, token in enumerate(tokens)}, merges=merges)


def qwen_tokenizer():
    """A Qwen2 tokenizer over the 256 byte-level symbols, with Qwen's special tokens and chat template."""
    from tokenizers import pre_tokenizers
    from transformers import Qwen2Tokenizer

    tokens = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"] + sorted(pre_tokenizers.ByteLevel.alphabet())
    tokenizer = Qwen2Tokenizer(vocab={token: index for index, token in enumerate(tokens)}, merges=[],
                               unk_token=None, bos_token=None, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    tokenizer.chat_template = QWEN_CHAT_TEMPLATE
    return tokenizer
