"""The embedded model's prompt writer: a tiny stock `Qwen3ForCausalLM` trained on `writer_data`.

Word-level tokenizer (one token per contract word, `<unk>` for any other) saved as a stock
`PreTrainedTokenizerFast` with a chat template, so the folder loads with
`AutoModelForCausalLM` / `AutoTokenizer` like any local causal LM, and the prompt enhancer
drives it like one. A training sequence is `<bos> description <sep> contract prompt <eos>`;
the loss counts only the part after `<sep>`.

Training is seeded and resumable: batch k is drawn from a `random.Random` seeded by (seed, k), and
the state folder holds the weights, optimizer and step, so a resumed run sees exactly the batches
an uninterrupted run would have.
"""
from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import torch

from . import writer_data
from .writer_config import WriterConfig

WRITER_DIR = Path(__file__).resolve().parents[2] / "assets" / "writer"
SPECIAL_TOKENS = ("<pad>", "<unk>", "<bos>", "<eos>", "<sep>")
CHAT_TEMPLATE = ("{{ bos_token }}{% for m in messages %}{% if m['role'] == 'user' %}{{ m['content'] }}"
                 "{% endif %}{% endfor %}{% if add_generation_prompt %}<sep>{% endif %}")


def build_tokenizer():
    """Word-level tokenizer over `writer_data.vocabulary()`, as a stock PreTrainedTokenizerFast.

    A word is the same token wherever it stands, so copying a word from the description is the
    same operation at every position; decoding joins words with spaces and none before a comma.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tokens = list(SPECIAL_TOKENS) + writer_data.vocabulary()
    tokenizer = Tokenizer(models.WordLevel({token: i for i, token in enumerate(tokens)}, unk_token="<unk>"))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    tokenizer.add_special_tokens(list(SPECIAL_TOKENS))
    wrapped = PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<bos>", eos_token="<eos>",
                                      pad_token="<pad>", unk_token="<unk>")
    wrapped.chat_template = CHAT_TEMPLATE
    return wrapped


def build_model(cfg: WriterConfig, vocab_size: int):
    from transformers import Qwen3Config, Qwen3ForCausalLM

    config = Qwen3Config(vocab_size=vocab_size, hidden_size=cfg.width, intermediate_size=3 * cfg.width,
                         num_hidden_layers=cfg.layers, num_attention_heads=cfg.heads, num_key_value_heads=cfg.heads // 2,
                         head_dim=cfg.width // cfg.heads, max_position_embeddings=128, tie_word_embeddings=True,
                         bos_token_id=2, eos_token_id=3, pad_token_id=0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        return Qwen3ForCausalLM(config)


def encode_batch(tokenizer, pairs: list[tuple[str, str]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask, labels), each (B, T): labels are -100 up to and including <sep>."""
    rows, targets = [], []
    for source, target in pairs:
        prompt = tokenizer.apply_chat_template([{"role": "user", "content": source}], add_generation_prompt=True,
                                               tokenize=False)
        head = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        tail = tokenizer(target, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        rows.append(head + tail)
        targets.append([-100] * len(head) + tail)
    length = max(len(row) for row in rows)
    ids = torch.full((len(rows), length), tokenizer.pad_token_id)
    mask = torch.zeros((len(rows), length), dtype=torch.long)
    labels = torch.full((len(rows), length), -100)
    for i, (row, target) in enumerate(zip(rows, targets)):
        ids[i, :len(row)] = torch.tensor(row)
        mask[i, :len(row)] = 1
        labels[i, :len(row)] = torch.tensor(target)
    return ids, mask, labels


def batch_pairs(cfg: WriterConfig, step: int) -> list[tuple[str, str]]:
    rng = random.Random(cfg.seed * 1_000_003 + step)
    return [writer_data.training_example(rng) for _ in range(cfg.batch)]


def _lr(cfg: WriterConfig, step: int) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * (step - cfg.warmup) / max(cfg.steps - cfg.warmup, 1)))


def train(cfg: WriterConfig, out: Path, state_dir: Path, *, stop_after: int | None = None,
          on_progress: Callable[[int, int, float, float], None] | None = None) -> bool:
    """Train (or resume) and export to `out`; True when all `cfg.steps` are done.

    `stop_after`: stop once this many steps are done in total (an interruption, for tests).
    `on_progress(step, total, loss, seconds)` every 50 steps and at the end.
    """
    torch.set_num_threads(cfg.threads)
    tokenizer = build_tokenizer()
    model = build_model(cfg, len(tokenizer))
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.01)
    step = 0
    state_file = state_dir / "state.pt"
    if state_file.exists():
        state = torch.load(state_file, weights_only=True)
        if state["config"] != asdict(cfg):
            raise ValueError(f"the state in {state_dir} was made with other settings; remove it or use another --state")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step = state["step"]
    started, end = time.perf_counter(), min(cfg.steps, stop_after if stop_after is not None else cfg.steps)
    model.train()
    loss_value = float("nan")
    while step < end:
        ids, mask, labels = encode_batch(tokenizer, batch_pairs(cfg, step))
        for group in optimizer.param_groups:
            group["lr"] = _lr(cfg, step)
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        step += 1
        loss_value = loss.item()
        if on_progress is not None and (step % 50 == 0 or step == end):
            on_progress(step, cfg.steps, loss_value, time.perf_counter() - started)
        if step % cfg.checkpoint_every == 0 or step == end:
            state_dir.mkdir(parents=True, exist_ok=True)
            torch.save({"config": asdict(cfg), "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                        "step": step}, state_file)
    if step < cfg.steps:
        return False
    model.eval()
    model.generation_config.bos_token_id, model.generation_config.eos_token_id = 2, 3
    model.generation_config.pad_token_id = 0
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return True
