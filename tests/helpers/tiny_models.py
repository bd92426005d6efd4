"""Tiny random models of every supported family, built from configs of the real classes.

Nothing is downloaded: tokenizers are the project's own locally built byte-level ones
(`pipeline.local_tokenizers`), components are seeded before construction, saved with `save_pretrained`,
and loaded back by the project's own loader in the tests.
"""
from __future__ import annotations

from pathlib import Path

import torch

from pipeline.local_tokenizers import QWEN_VISION_TOKENS, gemma_tokenizer, qwen_tokenizer, qwen_vl_processor

TEXT_VOCAB = 512  # covers both tokenizers


def _seeded(build):
    torch.manual_seed(0)
    return build()


def _gemma2_encoder(hidden: int = 16):
    from transformers import Gemma2Config, Gemma2Model

    config = Gemma2Config(vocab_size=TEXT_VOCAB, hidden_size=hidden, intermediate_size=32, num_hidden_layers=2,
                          num_attention_heads=2, num_key_value_heads=1, head_dim=8, attn_implementation="eager")
    return _seeded(lambda: Gemma2Model(config))


def _qwen3_config(layers: int):
    from transformers import Qwen3Config

    return Qwen3Config(vocab_size=TEXT_VOCAB, hidden_size=16, intermediate_size=32, num_hidden_layers=layers,
                       num_attention_heads=2, num_key_value_heads=1, head_dim=8, max_position_embeddings=512)


def _dc_ae():
    from diffusers import AutoencoderDC

    return _seeded(lambda: AutoencoderDC(
        in_channels=3, latent_channels=4, attention_head_dim=2,
        encoder_block_types=("ResBlock", "EfficientViTBlock"), decoder_block_types=("ResBlock", "EfficientViTBlock"),
        encoder_block_out_channels=(8, 8), decoder_block_out_channels=(8, 8),
        encoder_qkv_multiscales=((), (5,)), decoder_qkv_multiscales=((), (5,)),
        encoder_layers_per_block=(1, 1), decoder_layers_per_block=(1, 1),
        downsample_block_type="conv", upsample_block_type="interpolate",
        decoder_norm_types="rms_norm", decoder_act_fns="silu", scaling_factor=0.41))


def _sana_transformer(sprint: bool):
    from diffusers import SanaTransformer2DModel

    extra = {"qk_norm": "rms_norm_across_heads", "guidance_embeds": True} if sprint else {}
    return _seeded(lambda: SanaTransformer2DModel(
        patch_size=1, in_channels=4, out_channels=4, num_layers=1, num_attention_heads=2, attention_head_dim=4,
        num_cross_attention_heads=2, cross_attention_head_dim=4, cross_attention_dim=8, caption_channels=16,
        sample_size=32, **extra))


def _kl_vae(latent_channels: int, blocks: int, **extra):
    from diffusers import AutoencoderKL

    return _seeded(lambda: AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * blocks,
        up_block_types=("UpDecoderBlock2D",) * blocks, block_out_channels=(8,) * blocks, layers_per_block=1,
        latent_channels=latent_channels, norm_num_groups=4, sample_size=32, **extra))


def sana():
    from diffusers import FlowMatchEulerDiscreteScheduler, SanaPipeline

    return SanaPipeline(tokenizer=gemma_tokenizer(), text_encoder=_gemma2_encoder(), vae=_dc_ae(),
                        transformer=_sana_transformer(sprint=False),
                        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0))


def sana_sprint():
    from diffusers import SanaSprintPipeline, SCMScheduler

    return SanaSprintPipeline(tokenizer=gemma_tokenizer(), text_encoder=_gemma2_encoder(), vae=_dc_ae(),
                              transformer=_sana_transformer(sprint=True), scheduler=SCMScheduler())


def z_image():
    from diffusers import FlowMatchEulerDiscreteScheduler, ZImagePipeline, ZImageTransformer2DModel
    from transformers import Qwen3Model

    def build_transformer():
        model = ZImageTransformer2DModel(
            all_patch_size=(2,), all_f_patch_size=(1,), in_channels=4, dim=32, n_layers=1, n_refiner_layers=1,
            n_heads=2, n_kv_heads=2, norm_eps=1e-5, qk_norm=True, cap_feat_dim=16, rope_theta=256.0,
            t_scale=1000.0, axes_dims=[8, 4, 4], axes_lens=[256, 32, 32])
        # Padding tokens start as torch.empty; give them defined values so runs are reproducible.
        with torch.no_grad():
            model.x_pad_token.fill_(1.0)
            model.cap_pad_token.fill_(1.0)
        return model

    return ZImagePipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(), vae=_kl_vae(4, 2, scaling_factor=0.36, shift_factor=0.11),
        text_encoder=_seeded(lambda: Qwen3Model(_qwen3_config(2))), tokenizer=qwen_tokenizer(),
        transformer=_seeded(build_transformer))


def flux2_klein(distilled: bool = False):
    from diffusers import AutoencoderKLFlux2, FlowMatchEulerDiscreteScheduler, Flux2KleinPipeline, Flux2Transformer2DModel
    from transformers import Qwen3ForCausalLM

    transformer = _seeded(lambda: Flux2Transformer2DModel(
        patch_size=1, in_channels=4, num_layers=1, num_single_layers=1, attention_head_dim=16, num_attention_heads=2,
        joint_attention_dim=48, timestep_guidance_channels=256, axes_dims_rope=[4, 4, 4, 4], guidance_embeds=False))
    vae = _seeded(lambda: AutoencoderKLFlux2(
        sample_size=32, in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",),
        up_block_types=("UpDecoderBlock2D",), block_out_channels=(4,), layers_per_block=1, latent_channels=1,
        norm_num_groups=1, use_quant_conv=False, use_post_quant_conv=False))
    # 28 layers so the pipeline's default hidden-state taps (9, 18, 27) exist, as in the real 4B encoder;
    # three taps of width 16 make the 48-wide joint attention input.
    text_encoder = _seeded(lambda: Qwen3ForCausalLM(_qwen3_config(28)))
    return Flux2KleinPipeline(scheduler=FlowMatchEulerDiscreteScheduler(), vae=vae, text_encoder=text_encoder,
                              tokenizer=qwen_tokenizer(), transformer=transformer, is_distilled=distilled)


def _qwen_image_components(vision_token_ids: dict[str, int] | None = None) -> dict:
    """Transformer, decoder and Qwen2.5-VL encoder of the Qwen-Image pipelines; `vision_token_ids` tells
    the encoder which token ids mark a picture (the edit pipelines show it the reference images)."""
    from diffusers import AutoencoderKLQwenImage, FlowMatchEulerDiscreteScheduler, QwenImageTransformer2DModel
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    transformer = _seeded(lambda: QwenImageTransformer2DModel(
        patch_size=2, in_channels=16, out_channels=4, num_layers=1, attention_head_dim=16, num_attention_heads=2,
        joint_attention_dim=16, guidance_embeds=False, axes_dims_rope=(8, 4, 4)))
    vae = _seeded(lambda: AutoencoderKLQwenImage(
        base_dim=24, z_dim=4, dim_mult=[1, 2, 4], num_res_blocks=1, temperal_downsample=[False, True],
        latents_mean=[0.0] * 4, latents_std=[1.0] * 4))
    config = Qwen2_5_VLConfig(
        text_config={"hidden_size": 16, "intermediate_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2,
                     "num_key_value_heads": 2, "vocab_size": TEXT_VOCAB, "rope_theta": 1000000.0,
                     "rope_scaling": {"mrope_section": [1, 1, 2], "rope_type": "default", "type": "default"}},
        vision_config={"depth": 1, "hidden_size": 16, "intermediate_size": 16, "num_heads": 2, "out_hidden_size": 16},
        hidden_size=16, vocab_size=TEXT_VOCAB, **(vision_token_ids or {}))
    text_encoder = _seeded(lambda: Qwen2_5_VLForConditionalGeneration(config).eval())
    return {"scheduler": FlowMatchEulerDiscreteScheduler(), "vae": vae, "text_encoder": text_encoder,
            "transformer": transformer}


def qwen_image():
    from diffusers import QwenImagePipeline

    return QwenImagePipeline(tokenizer=qwen_tokenizer(), **_qwen_image_components())


def _qwen_image_edit(pipeline_class: str):
    import diffusers

    processor = qwen_vl_processor()
    start, pad, end, video = processor.tokenizer.convert_tokens_to_ids(list(QWEN_VISION_TOKENS))
    components = _qwen_image_components({"vision_start_token_id": start, "image_token_id": pad,
                                         "vision_end_token_id": end, "video_token_id": video})
    return getattr(diffusers, pipeline_class)(tokenizer=processor.tokenizer, processor=processor, **components)


def qwen_image_edit():
    return _qwen_image_edit("QwenImageEditPipeline")


def qwen_image_edit_plus():
    return _qwen_image_edit("QwenImageEditPlusPipeline")


def lumina2():
    from diffusers import FlowMatchEulerDiscreteScheduler, Lumina2Pipeline, Lumina2Transformer2DModel

    transformer = _seeded(lambda: Lumina2Transformer2DModel(
        sample_size=4, patch_size=2, in_channels=4, hidden_size=16, num_layers=1, num_attention_heads=2,
        num_kv_heads=1, multiple_of=16, ffn_dim_multiplier=None, norm_eps=1e-5, scaling_factor=1.0,
        axes_dim_rope=[4, 2, 2], cap_feat_dim=16))
    # Lumina 2's pipeline assumes an 8x decoder, so this one downsamples three times.
    return Lumina2Pipeline(transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(),
                           vae=_kl_vae(4, 4, scaling_factor=1.5, shift_factor=0.06),
                           text_encoder=_gemma2_encoder(), tokenizer=gemma_tokenizer())


BUILDERS = {
    "sana": sana,
    "sana-sprint": sana_sprint,
    "z-image": z_image,
    "flux2-klein": flux2_klein,
    "qwen-image": qwen_image,
    "lumina2": lumina2,
}


# The reference editing families, which serve no text-to-image.
EDIT_BUILDERS = {
    "qwen-image-edit": qwen_image_edit,
    "qwen-image-edit-plus": qwen_image_edit_plus,
}


def save_tiny(name: str, folder: Path) -> Path:
    """Build the tiny model `name` (of `BUILDERS` or `EDIT_BUILDERS`) and save it in diffusers format under `folder`."""
    {**BUILDERS, **EDIT_BUILDERS}[name]().save_pretrained(folder, safe_serialization=True)
    return folder
