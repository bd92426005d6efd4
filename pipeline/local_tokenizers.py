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


# Qwen2.5-VL marks a picture in the text with these tokens; the processor repeats the pad token once
# per merged vision patch.
QWEN_VISION_TOKENS = ("<|vision_start|>", "<|image_pad|>", "<|vision_end|>", "<|video_pad|>")


def qwen_vl_tokenizer():
    """`qwen_tokenizer` plus Qwen2.5-VL's vision tokens, for the Qwen-Image-Edit pipelines' processor."""
    from transformers import AddedToken

    tokenizer = qwen_tokenizer()
    tokenizer.add_special_tokens({"additional_special_tokens": [AddedToken(token, special=True)
                                                               for token in QWEN_VISION_TOKENS]})
    return tokenizer


def qwen_vl_processor(max_pixels: int = 28 * 28 * 64):
    """A Qwen2-VL processor (the Qwen-Image-Edit pipelines' `processor`): `qwen_vl_tokenizer` and an image
    processor of Qwen2.5-VL's settings (14-pixel patches merged 2x2), showing the encoder at most `max_pixels`."""
    from transformers import Qwen2VLImageProcessor, Qwen2VLProcessor, Qwen2VLVideoProcessor

    image_processor = Qwen2VLImageProcessor(patch_size=14, temporal_patch_size=2, merge_size=2,
                                            min_pixels=28 * 28 * 4, max_pixels=max_pixels)
    return Qwen2VLProcessor(image_processor=image_processor, tokenizer=qwen_vl_tokenizer(),
                            video_processor=Qwen2VLVideoProcessor(), chat_template=QWEN_CHAT_TEMPLATE)
