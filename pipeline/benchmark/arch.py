"""Published architectures with random weights, for measuring speed with no download.

`ARCHS` holds, for each architecture, the configs of its components as the hub model publishes
them, less the bookkeeping keys (class name, library versions, saved dtype); the source is named
beside each. `build_arch` builds the stock diffusers pipeline from them with random weights,
created directly on the target device in the target dtype, and with a tokenizer made here:
byte-level, so no vocabulary is downloaded, its ids falling in the low part of the text
encoder's full-size embedding table.

Speed does not depend on the weights' values, but it does depend on sequence lengths; the
tokenizers are built so that the text a pipeline encodes on every call has a realistic length
(see `_sana_sprint_tokenizer`).
"""
from __future__ import annotations

import copy
import importlib
import inspect
import re
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable

import torch

from pipeline.local_tokenizers import GEMMA_SPACE, gemma_tokenizer, qwen_tokenizer

@dataclass(frozen=True)
class ComponentSpec:
    """One pipeline component: its class and its published config."""

    library: str  # "diffusers" or "transformers"
    class_name: str
    config: dict
    # Parameters that some versions of the class create with torch.empty (undefined values);
    # filled here so that runs are reproducible.
    empty_parameters: tuple[str, ...] = ()


@dataclass(frozen=True)
class ArchSpec:
    """One architecture: the stock pipeline class, its components, and how to make its tokenizer."""

    name: str
    source: str  # the hub repository whose configs these are
    pipeline_class: str
    components: dict[str, ComponentSpec]
    tokenizer: Callable[[], Any]


# --- Sana-Sprint 1.6B -----------------------------------------------------------------------------

# Efficient-Large-Model/Sana_Sprint_1.6B_1024px_diffusers, text_encoder/config.json: the decoder of
# Gemma-2-2B-it (Efficient-Large-Model/gemma-2-2b-it), saved as a Gemma2Model.
SANA_SPRINT_TEXT_ENCODER = {
    "architectures": ["Gemma2Model"],
    "attention_bias": False,
    "attention_dropout": 0.0,
    "attn_logit_softcapping": 50.0,
    "bos_token_id": 2,
    "cache_implementation": "hybrid",
    "eos_token_id": 1,
    "final_logit_softcapping": 30.0,
    "head_dim": 256,
    "hidden_act": "gelu_pytorch_tanh",
    "hidden_activation": "gelu_pytorch_tanh",
    "hidden_size": 2304,
    "initializer_range": 0.02,
    "intermediate_size": 9216,
    "max_position_embeddings": 8192,
    "model_type": "gemma2",
    "num_attention_heads": 8,
    "num_hidden_layers": 26,
    "num_key_value_heads": 4,
    "pad_token_id": 0,
    "query_pre_attn_scalar": 256,
    "rms_norm_eps": 1e-06,
    "rope_theta": 10000.0,
    "sliding_window": 4096,
    "use_cache": True,
    "vocab_size": 256000,
}

# Efficient-Large-Model/Sana_Sprint_1.6B_1024px_diffusers, transformer/config.json, as written by
# huggingface/diffusers scripts/convert_sana_to_diffusers.py for SanaSprint_1600M_P1_D20 at 1024 px.
SANA_SPRINT_TRANSFORMER = {
    "attention_bias": False,
    "attention_head_dim": 32,
    "caption_channels": 2304,
    "cross_attention_dim": 2240,
    "cross_attention_head_dim": 112,
    "dropout": 0.0,
    "guidance_embeds": True,
    "guidance_embeds_scale": 0.1,
    "in_channels": 32,
    "interpolation_scale": None,
    "mlp_ratio": 2.5,
    "norm_elementwise_affine": False,
    "norm_eps": 1e-06,
    "num_attention_heads": 70,
    "num_cross_attention_heads": 20,
    "num_layers": 20,
    "out_channels": 32,
    "patch_size": 1,
    "qk_norm": "rms_norm_across_heads",
    "sample_size": 32,
    "timestep_scale": 1.0,
}

# Efficient-Large-Model/Sana_Sprint_1.6B_1024px_diffusers, vae/config.json: the DC-AE of
# mit-han-lab/dc-ae-f32c32-sana-1.1-diffusers (32x spatial compression, 32 latent channels).
SANA_SPRINT_VAE = {
    "attention_head_dim": 32,
    "decoder_act_fns": "silu",
    "decoder_block_out_channels": [128, 256, 512, 512, 1024, 1024],
    "decoder_block_types": ["ResBlock", "ResBlock", "ResBlock",
                            "EfficientViTBlock", "EfficientViTBlock", "EfficientViTBlock"],
    "decoder_conv_act_fn": "relu",
    "decoder_in_shortcut": True,
    "decoder_layers_per_block": [3, 3, 3, 3, 3, 3],
    "decoder_norm_types": "rms_norm",
    "decoder_qkv_multiscales": [[], [], [], [5], [5], [5]],
    "downsample_block_type": "Conv",
    "encoder_block_out_channels": [128, 256, 512, 512, 1024, 1024],
    "encoder_block_types": ["ResBlock", "ResBlock", "ResBlock",
                            "EfficientViTBlock", "EfficientViTBlock", "EfficientViTBlock"],
    "encoder_layers_per_block": [2, 2, 2, 3, 3, 3],
    "encoder_out_shortcut": True,
    "encoder_qkv_multiscales": [[], [], [], [5], [5], [5]],
    "in_channels": 3,
    "latent_channels": 32,
    "scaling_factor": 0.41407,
    "upsample_block_type": "interpolate",
}

# Efficient-Large-Model/Sana_Sprint_1.6B_1024px_diffusers, scheduler/scheduler_config.json. The
# two-step schedule's intermediate and maximum timesteps are arguments of the pipeline's call.
SANA_SPRINT_SCHEDULER = {
    "num_train_timesteps": 1000,
    "prediction_type": "trigflow",
    "sigma_data": 0.5,
}


# --- Z-Image-Turbo --------------------------------------------------------------------------------

# Tongyi-MAI/Z-Image-Turbo, text_encoder/config.json: Qwen3-4B (Qwen/Qwen3-4B), loaded as a
# Qwen3Model (no language-model head).
Z_IMAGE_TEXT_ENCODER = {
    "architectures": ["Qwen3ForCausalLM"],
    "attention_bias": False,
    "attention_dropout": 0.0,
    "bos_token_id": 151643,
    "eos_token_id": 151645,
    "head_dim": 128,
    "hidden_act": "silu",
    "hidden_size": 2560,
    "initializer_range": 0.02,
    "intermediate_size": 9728,
    "max_position_embeddings": 40960,
    "max_window_layers": 36,
    "model_type": "qwen3",
    "num_attention_heads": 32,
    "num_hidden_layers": 36,
    "num_key_value_heads": 8,
    "rms_norm_eps": 1e-06,
    "rope_scaling": None,
    "rope_theta": 1000000,
    "sliding_window": None,
    "tie_word_embeddings": True,
    "use_cache": True,
    "use_sliding_window": False,
    "vocab_size": 151936,
}

# Tongyi-MAI/Z-Image-Turbo, transformer/config.json.
Z_IMAGE_TRANSFORMER = {
    "all_f_patch_size": [1],
    "all_patch_size": [2],
    "axes_dims": [32, 48, 48],
    "axes_lens": [1536, 512, 512],
    "cap_feat_dim": 2560,
    "dim": 3840,
    "in_channels": 16,
    "n_heads": 30,
    "n_kv_heads": 30,
    "n_layers": 30,
    "n_refiner_layers": 2,
    "norm_eps": 1e-05,
    "qk_norm": True,
    "rope_theta": 256.0,
    "t_scale": 1000.0,
}

# Tongyi-MAI/Z-Image-Turbo, vae/config.json: the 16-channel FLUX.1 autoencoder, 8x compression.
Z_IMAGE_VAE = {
    "act_fn": "silu",
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D"],
    "force_upcast": True,
    "in_channels": 3,
    "latent_channels": 16,
    "latents_mean": None,
    "latents_std": None,
    "layers_per_block": 2,
    "mid_block_add_attention": True,
    "norm_num_groups": 32,
    "out_channels": 3,
    "sample_size": 1024,
    "scaling_factor": 0.3611,
    "shift_factor": 0.1159,
    "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D"],
    "use_post_quant_conv": False,
    "use_quant_conv": False,
}

# Tongyi-MAI/Z-Image-Turbo, scheduler/scheduler_config.json.
Z_IMAGE_SCHEDULER = {
    "num_train_timesteps": 1000,
    "shift": 3.0,
    "use_dynamic_shifting": False,
}


def _sana_sprint_tokenizer():
    # The pipeline's call prepends its default "complex human instruction" (about 1,060 characters)
    # to every prompt and pads the encoder input to that instruction's token count plus 298. One
    # token per character would make the encoder's sequence ~1,350 long instead of ~500, so the
    # instruction's words get whole-word tokens, as most of them have in Gemma's real vocabulary.
    from diffusers import SanaSprintPipeline

    instruction = inspect.signature(SanaSprintPipeline.__call__).parameters["complex_human_instruction"].default
    text = "\n".join(instruction).replace(" ", GEMMA_SPACE)
    return gemma_tokenizer(re.findall(f"{GEMMA_SPACE}?[A-Za-z]+", text))


# --- Architectures --------------------------------------------------------------------------------

ARCHS: dict[str, ArchSpec] = {spec.name: spec for spec in (
    ArchSpec(
        name="sana-sprint-1.6b",
        source="Efficient-Large-Model/Sana_Sprint_1.6B_1024px_diffusers",
        pipeline_class="SanaSprintPipeline",
        components={
            "text_encoder": ComponentSpec("transformers", "Gemma2Model", SANA_SPRINT_TEXT_ENCODER),
            "transformer": ComponentSpec("diffusers", "SanaTransformer2DModel", SANA_SPRINT_TRANSFORMER),
            "vae": ComponentSpec("diffusers", "AutoencoderDC", SANA_SPRINT_VAE),
            "scheduler": ComponentSpec("diffusers", "SCMScheduler", SANA_SPRINT_SCHEDULER),
        },
        tokenizer=_sana_sprint_tokenizer,
    ),
    ArchSpec(
        name="z-image-turbo",
        source="Tongyi-MAI/Z-Image-Turbo",
        pipeline_class="ZImagePipeline",
        components={
            "text_encoder": ComponentSpec("transformers", "Qwen3Model", Z_IMAGE_TEXT_ENCODER),
            "transformer": ComponentSpec("diffusers", "ZImageTransformer2DModel", Z_IMAGE_TRANSFORMER,
                                         empty_parameters=("x_pad_token", "cap_pad_token")),
            "vae": ComponentSpec("diffusers", "AutoencoderKL", Z_IMAGE_VAE),
            "scheduler": ComponentSpec("diffusers", "FlowMatchEulerDiscreteScheduler", Z_IMAGE_SCHEDULER),
        },
        tokenizer=qwen_tokenizer,
    ),
)}


def _spec(name: str) -> ArchSpec:
    try:
        return ARCHS[name]
    except KeyError:
        raise ValueError(f"unknown architecture {name!r}; known: {', '.join(ARCHS)}") from None


def arch_configs(name: str) -> dict[str, dict]:
    """The published config of each component of architecture `name` (copies; component -> config)."""
    return {component: copy.deepcopy(spec.config) for component, spec in _spec(name).components.items()}


@contextmanager
def _default_device_and_dtype(device: str | torch.device, dtype: torch.dtype):
    """Tensors made inside are made on `device` in `dtype`: weights never exist anywhere else."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            yield
    finally:
        torch.set_default_dtype(previous)


def build_component(name: str, component: str, device: str | torch.device, dtype: torch.dtype):
    """One component of architecture `name` with random weights (seeded), on `device` in `dtype`.

    On the meta device nothing is allocated, which is how parameters are counted.
    """
    spec = _spec(name)
    if component not in spec.components:
        raise ValueError(f"{name} has no component {component!r}; it has: {', '.join(spec.components)}")
    part = spec.components[component]
    cls = getattr(importlib.import_module(part.library), part.class_name)
    config = copy.deepcopy(part.config)  # what is built keeps references to the lists in it
    if not issubclass(cls, torch.nn.Module):  # a scheduler: a config, no weights
        return cls.from_config(config)
    torch.manual_seed(0)
    with _default_device_and_dtype(device, dtype):
        if part.library == "transformers":
            model = cls(cls.config_class(**config))
        else:
            model = cls.from_config(config)
        with torch.no_grad():
            for parameter in part.empty_parameters:
                getattr(model, parameter).normal_(std=0.02)
    # As `from_pretrained` returns it: dropout and the like off.
    return model.eval()


def build_arch(name: str, device: str | torch.device, dtype: torch.dtype):
    """The stock diffusers pipeline of architecture `name`, real size, random weights, on `device`.

    Every weight is created on `device` in `dtype` (no float32 copy on the CPU first); the
    tokenizer is built here. The pipeline is set up as `pipeline.models.load_pipeline` sets up a
    downloaded one (progress bar off).
    """
    import diffusers

    spec = _spec(name)
    components = {component: build_component(name, component, device, dtype) for component in spec.components}
    pipe = getattr(diffusers, spec.pipeline_class)(tokenizer=spec.tokenizer(), **components)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def arch_parameter_counts(name: str) -> dict[str, int]:
    """Parameters of each weighted component of architecture `name`, counted on the meta device."""
    counts = {}
    for component in _spec(name).components:
        model = build_component(name, component, "meta", torch.float32)
        if isinstance(model, torch.nn.Module):
            counts[component] = sum(parameter.numel() for parameter in model.parameters())
    return counts
