"""The embedded model's components, built from configs: a stock diffusers `SanaPipeline`.

Gemma-2 text encoder (2 layers, width 128), Sana transformer (8 layers, width 128, patch 2) and
a DC-AE latent decoder (3 blocks, 4x compression, 4 latent channels), with a word-per-token BPE
tokenizer trained with `tokenizers` on the prompt grammar and loaded as the stock
`GemmaTokenizer`. Nothing here is custom at inference time: the saved folder loads with
`SanaPipeline.from_pretrained(folder, use_safetensors=True)`.
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass

import torch
from diffusers import AutoencoderDC, FlowMatchEulerDiscreteScheduler, SanaPipeline, SanaTransformer2DModel
from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers
from transformers import Gemma2Config, Gemma2Model, GemmaTokenizer

from . import MAX_SEQUENCE_LENGTH, NATIVE_SIZE
from . import data

SPECIAL_TOKENS = ("<pad>", "<eos>", "<bos>", "<unk>", "<mask>")  # GemmaTokenizer's default ids 0..4
# Characters an unknown word falls back to, so that no prompt becomes <unk>.
ALPHABET = list("abcdefghijklmnopqrstuvwxyz0123456789▁,.;:!?'-()/&")


@dataclass(frozen=True)
class ModelConfig:
    width: int = 128  # text encoder hidden size = transformer width = cross-attention width
    text_layers: int = 2
    transformer_layers: int = 8
    head_dim: int = 32
    patch_size: int = 2
    # 3 blocks -> 2**(3-1) = 4x compression. The decoder is wider than the encoder: sharp edges
    # are what shape recognition needs, and only the decoder runs at inference.
    vae_encoder_channels: tuple[int, ...] = (16, 32, 64)
    vae_decoder_channels: tuple[int, ...] = (24, 48, 96)
    vae_decoder_layers: tuple[int, ...] = (1, 1, 2)
    latent_channels: int = 4
    shift: float = 2.0  # flow-matching timestep shift, same in training and in the scheduler


def build_tokenizer(seed: int = 0) -> GemmaTokenizer:
    """A BPE tokenizer whose merges make every grammar word one token, as a stock GemmaTokenizer.

    GemmaTokenizer turns spaces into "▁" and runs BPE over the whole string. The merges are learnt
    on prompts split into "▁word" and "," pieces, so no merge crosses a word or a comma. The
    post-processor puts <bos> first, which gives the empty prompt one attended token.
    """
    rng = random.Random(seed)
    corpus = [
        data.describe(data.sample_scene(rng, data.all_combos()), form, rng)
        for form in data.TRAIN_FORMS
        for _ in range(50)
    ]
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.normalizer = normalizers.Replace(" ", "▁")
    bpe.pre_tokenizer = pre_tokenizers.Split(Regex("▁?[^▁,]+|,|▁"), behavior="isolated")
    trainer = trainers.BpeTrainer(
        vocab_size=4096, special_tokens=list(SPECIAL_TOKENS), initial_alphabet=ALPHABET, show_progress=False
    )
    bpe.train_from_iterator(corpus, trainer)
    merges = json.loads(bpe.to_str())["model"]["merges"]  # [[left, right], ...] in merge order
    tokenizer = GemmaTokenizer(
        vocab=bpe.get_vocab(),
        merges=[tuple(pair) for pair in merges],
        add_bos_token=True,
        add_eos_token=False,
    )
    tokenizer.padding_side = "right"
    return tokenizer


def build_text_encoder(config: ModelConfig, vocab_size: int) -> Gemma2Model:
    """A small Gemma-2 whose residual branches start at zero, so each output starts as its token.

    Gemma-2 normalises each attention and MLP output to unit size before adding it to the
    residual stream (`post_attention_layernorm`, `post_feedforward_layernorm`). At the default
    initialisation the token's own embedding is about a quarter of that size, so after two
    layers every output is mostly context and prompts differing in one word look alike
    (TRAINING.md has what that did to position words). These norms scale by
    (1 + weight), so a weight of -1 zeroes the branch; training grows the branches from there,
    while the words stay distinct. Only the initial weights change: the saved model is a
    stock Gemma2Model.
    """
    encoder = Gemma2Model(
        Gemma2Config(
            vocab_size=vocab_size,
            hidden_size=config.width,
            intermediate_size=2 * config.width,
            num_hidden_layers=config.text_layers,
            num_attention_heads=config.width // config.head_dim,
            num_key_value_heads=config.width // config.head_dim,
            head_dim=config.head_dim,
            max_position_embeddings=2 * MAX_SEQUENCE_LENGTH,
            sliding_window=MAX_SEQUENCE_LENGTH,
            query_pre_attn_scalar=config.head_dim,  # Gemma-2 default (256) would mis-scale 32-dim heads
            pad_token_id=0,
            eos_token_id=1,
            bos_token_id=2,
        )
    )
    with torch.no_grad():
        for layer in encoder.layers:
            layer.post_attention_layernorm.weight.fill_(-1.0)
            layer.post_feedforward_layernorm.weight.fill_(-1.0)
    return encoder


def build_transformer(config: ModelConfig) -> SanaTransformer2DModel:
    heads = config.width // config.head_dim
    return SanaTransformer2DModel(
        in_channels=config.latent_channels,
        out_channels=config.latent_channels,  # == in_channels: no learned-sigma half to chunk off
        num_attention_heads=heads,
        attention_head_dim=config.head_dim,
        num_layers=config.transformer_layers,
        num_cross_attention_heads=heads,
        cross_attention_head_dim=config.head_dim,
        cross_attention_dim=config.width,
        caption_channels=config.width,
        sample_size=NATIVE_SIZE // latent_factor(config),  # latent side; sizes the position embedding
        patch_size=config.patch_size,
        interpolation_scale=1,  # not None, so the transformer has a sin-cos position embedding
    )


def latent_factor(config: ModelConfig) -> int:
    return 2 ** (len(config.vae_decoder_channels) - 1)


def build_vae(config: ModelConfig) -> AutoencoderDC:
    blocks = len(config.vae_decoder_channels)
    return AutoencoderDC(
        in_channels=3,
        latent_channels=config.latent_channels,
        attention_head_dim=config.head_dim,
        encoder_block_types="ResBlock",
        decoder_block_types="ResBlock",
        encoder_block_out_channels=config.vae_encoder_channels,
        decoder_block_out_channels=config.vae_decoder_channels,
        encoder_layers_per_block=(1,) * blocks,
        decoder_layers_per_block=config.vae_decoder_layers,
        encoder_qkv_multiscales=((),) * blocks,
        decoder_qkv_multiscales=((),) * blocks,
        scaling_factor=1.0,  # set from the trained encoder's latent std before stage 2
    )


def build_pipeline(config: ModelConfig, seed: int = 0) -> SanaPipeline:
    """Fresh, untrained components in a stock SanaPipeline (each seeded before it is built)."""
    tokenizer = build_tokenizer(seed)
    torch.manual_seed(seed)
    text_encoder = build_text_encoder(config, len(tokenizer))
    torch.manual_seed(seed + 1)
    transformer = build_transformer(config)
    torch.manual_seed(seed + 2)
    vae = build_vae(config)
    scheduler = FlowMatchEulerDiscreteScheduler(shift=config.shift)
    return SanaPipeline(
        tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, transformer=transformer, scheduler=scheduler
    )
