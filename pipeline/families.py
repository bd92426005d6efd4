"""What differs between the supported diffusers pipeline families.

Every family is a stock diffusers text-to-image pipeline whose text encoder is an LLM. They
agree on the denoising call (`__call__` with `prompt_embeds`, `generator`, `callback_on_step_end`)
but differ in how a prompt is encoded, what the guidance argument is called, when classifier-free
guidance runs, and what extra arguments keep the output at exactly the requested size. A `Family`
captures those differences and nothing else; the `Studio` does the rest the same way for all.
"""
from __future__ import annotations

import functools
import inspect
import math
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from pipeline import references
from pipeline.request import Range

# Encoded prompt, as keyword arguments for the pipeline's __call__.
Embeddings = dict[str, Any]


def _drop_none(values: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}


def _encode_with_negative(pipe, prompt: str, negative: str, cfg: bool, options: dict) -> Embeddings:
    """Sana and Lumina 2: one encode_prompt call returns prompt and negative embeddings with masks."""
    embeds, mask, neg_embeds, neg_mask = pipe.encode_prompt(
        prompt, do_classifier_free_guidance=cfg, negative_prompt=negative, num_images_per_prompt=1,
        device=pipe._execution_device, **options)
    return _drop_none({"prompt_embeds": embeds, "prompt_attention_mask": mask,
                       "negative_prompt_embeds": neg_embeds, "negative_prompt_attention_mask": neg_mask})


def _encode_sana_sprint(pipe, prompt: str, negative: str, cfg: bool, options: dict) -> Embeddings:
    embeds, mask = pipe.encode_prompt(prompt, num_images_per_prompt=1, device=pipe._execution_device, **options)
    return {"prompt_embeds": embeds, "prompt_attention_mask": mask}


def _encode_z_image(pipe, prompt: str, negative: str, cfg: bool, options: dict) -> Embeddings:
    embeds, neg_embeds = pipe.encode_prompt(
        prompt, device=pipe._execution_device, do_classifier_free_guidance=cfg, negative_prompt=negative, **options)
    return _drop_none({"prompt_embeds": embeds, "negative_prompt_embeds": neg_embeds or None})


def _encode_flux2_klein(pipe, prompt: str, negative: str, cfg: bool, options: dict) -> Embeddings:
    device = pipe._execution_device
    embeds, _ = pipe.encode_prompt(prompt, device=device, num_images_per_prompt=1, **options)
    if not cfg:
        return {"prompt_embeds": embeds}
    neg_embeds, _ = pipe.encode_prompt(negative, device=device, num_images_per_prompt=1, **options)
    return {"prompt_embeds": embeds, "negative_prompt_embeds": neg_embeds}


def _encode_qwen_image(pipe, prompt: str, negative: str, cfg: bool, options: dict) -> Embeddings:
    device = pipe._execution_device
    embeds, mask = pipe.encode_prompt(prompt, device=device, num_images_per_prompt=1, **options)
    if not cfg:
        return _drop_none({"prompt_embeds": embeds, "prompt_embeds_mask": mask})
    # True CFG needs a negative branch even when the user gave none: "" still fills the template.
    neg_embeds, neg_mask = pipe.encode_prompt(negative, device=device, num_images_per_prompt=1, **options)
    return _drop_none({"prompt_embeds": embeds, "prompt_embeds_mask": mask,
                       "negative_prompt_embeds": neg_embeds, "negative_prompt_embeds_mask": neg_mask})


def _sana_size_multiple(pipe) -> int:
    # Sana's pipelines reject sizes that are not multiples of 32, whatever the decoder's compression.
    return math.lcm(32, pipe.vae_scale_factor * pipe.transformer.config.patch_size)


def _patchified_size_multiple(pipe) -> int:
    # These denoisers pack 2x2 latent patches into one token.
    return pipe.vae_scale_factor * 2


def _sprint_call_kwargs(steps: int) -> dict[str, Any]:
    # The pipeline's intermediate timestep is only defined for its two-step schedule.
    return {"use_resolution_binning": False, "intermediate_timesteps": 1.3 if steps == 2 else None}


@dataclass(frozen=True, kw_only=True)
class Family:
    """How one diffusers pipeline class is driven.

    `cfg_threshold`: classifier-free guidance runs when guidance is above it (diffusers' own rule
    for the family). `None` means the family has no classifier-free guidance; its guidance value,
    if any, is embedded in the denoiser instead.
    """

    name: str
    pipeline_class: str
    encode: Callable[[Any, str, str, bool, dict], Embeddings]
    guidance_arg: str
    cfg_threshold: float | None
    uses_negative_prompt: bool
    size_multiple: Callable[[Any], int]
    # Limits for a folder of this family that is not one of the presets.
    default_size: int
    steps: Range
    guidance: Range
    # The pipeline config flag that marks a guidance-distilled checkpoint, which ignores
    # guidance and the negative prompt (FLUX.2 klein's `is_distilled`).
    distilled_flag: str | None = None
    extra_call_kwargs: Callable[[int], dict[str, Any]] = lambda steps: {}
    # Embeddings whose length varies per prompt -> the mask that hides their padding in a batch.
    masks: dict[str, str] = field(default_factory=dict)
    # The multiple of width and height the pipeline's own input check asks for, whatever its decoder
    # and denoiser need (Sana's 32). A request at another size is drawn from latents of its own
    # shape (given latents set the picture's size) with the call's size rounded up (`Studio`).
    checked_multiple: int = 1

    def is_distilled(self, config) -> bool:
        """Whether a pipeline config (`model_index.json` or `pipe.config`) marks a guidance-distilled checkpoint."""
        if self.distilled_flag is None:
            return False
        value = config.get(self.distilled_flag) if isinstance(config, dict) else getattr(config, self.distilled_flag, None)
        return bool(value)

    def cfg_active(self, guidance: float, pipe=None) -> bool:
        if self.cfg_threshold is None:
            return False
        if pipe is not None and self.is_distilled(pipe.config):
            return False
        return guidance > self.cfg_threshold

    def call_kwargs(self, steps: int, guidance: float) -> dict[str, Any]:
        return {self.guidance_arg: guidance, **self.extra_call_kwargs(steps)}


FAMILIES: dict[str, Family] = {family.pipeline_class: family for family in (
    # Sana's negative_prompt defaults to "" and may not be passed together with its embeddings.
    Family(name="Sana", pipeline_class="SanaPipeline", encode=_encode_with_negative, guidance_arg="guidance_scale",
           cfg_threshold=1.0, uses_negative_prompt=True, size_multiple=_sana_size_multiple, default_size=1024,
           steps=Range(1, 100, 20), guidance=Range(1.0, 20.0, 4.5), checked_multiple=32,
           extra_call_kwargs=lambda steps: {"use_resolution_binning": False, "negative_prompt": None}),
    # Sprint is timestep-distilled (1-4 steps) with guidance embedded in the denoiser.
    Family(name="Sana-Sprint", pipeline_class="SanaSprintPipeline", encode=_encode_sana_sprint,
           guidance_arg="guidance_scale", cfg_threshold=None, uses_negative_prompt=False,
           size_multiple=_sana_size_multiple, default_size=1024, steps=Range(1, 4, 2), guidance=Range(1.0, 20.0, 4.5),
           checked_multiple=32, extra_call_kwargs=_sprint_call_kwargs),
    # diffusers runs Z-Image's CFG for any guidance above 0.
    Family(name="Z-Image", pipeline_class="ZImagePipeline", encode=_encode_z_image, guidance_arg="guidance_scale",
           cfg_threshold=0.0, uses_negative_prompt=True, size_multiple=_patchified_size_multiple, default_size=1024,
           steps=Range(1, 100, 28), guidance=Range(0.0, 20.0, 4.0)),
    Family(name="FLUX.2 klein", pipeline_class="Flux2KleinPipeline", encode=_encode_flux2_klein,
           guidance_arg="guidance_scale", cfg_threshold=1.0, uses_negative_prompt=True,
           size_multiple=_patchified_size_multiple, default_size=1024, steps=Range(1, 100, 50),
           guidance=Range(1.0, 20.0, 4.0), distilled_flag="is_distilled"),
    Family(name="Qwen-Image", pipeline_class="QwenImagePipeline", encode=_encode_qwen_image,
           guidance_arg="true_cfg_scale", cfg_threshold=1.0, uses_negative_prompt=True,
           size_multiple=_patchified_size_multiple, default_size=1328, steps=Range(1, 100, 50),
           guidance=Range(1.0, 20.0, 4.0),
           masks={"prompt_embeds": "prompt_embeds_mask", "negative_prompt_embeds": "negative_prompt_embeds_mask"}),
    # The edit pipelines of Qwen-Image: the same denoiser and encoder, and reference pictures that the
    # encoder sees too (`pipeline.references`); they serve reference editing only.
    *(Family(name=name, pipeline_class=pipeline_class, encode=_encode_qwen_image, guidance_arg="true_cfg_scale",
             cfg_threshold=1.0, uses_negative_prompt=True, size_multiple=_patchified_size_multiple,
             default_size=1024, steps=Range(1, 100, 50), guidance=Range(1.0, 20.0, 4.0),
             masks={"prompt_embeds": "prompt_embeds_mask", "negative_prompt_embeds": "negative_prompt_embeds_mask"})
      for name, pipeline_class in (("Qwen-Image-Edit", "QwenImageEditPipeline"),
                                   ("Qwen-Image-Edit-Plus", "QwenImageEditPlusPipeline"))),
    Family(name="Lumina 2", pipeline_class="Lumina2Pipeline", encode=_encode_with_negative,
           guidance_arg="guidance_scale", cfg_threshold=1.0, uses_negative_prompt=True,
           size_multiple=_patchified_size_multiple, default_size=1024, steps=Range(1, 100, 30),
           guidance=Range(1.0, 20.0, 4.0)),
)}


def family_for(pipeline_class: str) -> Family:
    try:
        return FAMILIES[pipeline_class]
    except KeyError:
        supported = ", ".join(sorted(FAMILIES))
        raise ValueError(f"pipeline class {pipeline_class!r} is not supported; supported: {supported}") from None


def repeat_embeddings(embeddings: Embeddings, count: int) -> Embeddings:
    """One prompt's embeddings as a batch of `count` identical rows.

    Done here rather than through `num_images_per_prompt`, which not every family applies to
    precomputed negative embeddings.
    """
    def repeat(value):
        if isinstance(value, list):  # Z-Image keeps one variable-length tensor per prompt
            return value * count
        return value.repeat(count, *([1] * (value.dim() - 1)))  # (1, ...) -> (count, ...)

    return {name: repeat(value) for name, value in embeddings.items()}


def concat_embeddings(parts: list[Embeddings], masks: dict[str, str]) -> Embeddings:
    """Several prompts' embeddings as one batch, in order.

    Most families pad every prompt to a fixed length and concatenate as they are. Qwen-Image
    encodes each prompt at its own length and leaves out the mask when nothing is padded, so
    shorter encodings get zero rows at the end and a mask (`masks`: embeddings name -> mask
    name) that hides them, as its own batched encoding does.
    """
    if len(parts) == 1:
        return parts[0]
    parts = [dict(part) for part in parts]
    for name, mask_name in masks.items():
        lengths = [part[name].shape[1] for part in parts if name in part]
        if len(set(lengths)) > 1:
            for part in parts:
                if part.get(mask_name) is None:
                    embeds = part[name]  # (B, L, C)
                    part[mask_name] = torch.ones(embeds.shape[:2], dtype=torch.long, device=embeds.device)

    def pad(value: torch.Tensor, length: int) -> torch.Tensor:
        missing = length - value.shape[1]
        if missing == 0:
            return value
        padding = value.new_zeros(value.shape[0], missing, *value.shape[2:])
        return torch.cat([value, padding], dim=1)  # (B, L, ...) -> (B, length, ...)

    batch = {}
    for name in parts[0]:
        values = [part[name] for part in parts]
        if isinstance(values[0], list):  # Z-Image: one tensor per prompt already
            batch[name] = [item for value in values for item in value]
        else:
            length = max(value.shape[1] for value in values)
            batch[name] = torch.cat([pad(value, length) for value in values])
    return batch


# Encoding settings that a pipeline's __call__ forwards to its encode_prompt, sometimes with a
# different default (Sana's prompt-enhancing instruction, Qwen-Image's sequence length).
_ENCODE_SETTINGS = ("max_sequence_length", "complex_human_instruction", "system_prompt", "text_encoder_out_layers",
                    "clean_caption")


def stock_encode_options(pipe) -> dict[str, Any]:
    """The encoding settings the stock `__call__` uses when given a prompt, so cached embeddings match it."""
    return dict(_call_encode_defaults(type(pipe)))


@functools.cache
def _call_encode_defaults(pipeline_type: type) -> tuple[tuple[str, Any], ...]:
    # Read once per pipeline class: signatures do not change, and encoding is on the request path.
    call = inspect.signature(pipeline_type.__call__).parameters
    encode = inspect.signature(pipeline_type.encode_prompt).parameters
    return tuple((name, call[name].default) for name in _ENCODE_SETTINGS if name in call and name in encode)


@torch.no_grad()
def encode_prompt(family: Family, pipe, prompt: str, negative: str, cfg: bool, options: dict,
                  pictures: list | None = None) -> Embeddings:
    """Run the pipeline's own LLM prompt encoding with `__call__`'s settings unless `options` override them.
    `pictures`: the reference pictures, for a family whose encoder sees them (`references.encodes_pictures`)."""
    options = {**stock_encode_options(pipe), **options}
    if pictures:
        options.update(references.condition_pictures(pipe, pictures))
    return family.encode(pipe, prompt, negative, cfg, options)
