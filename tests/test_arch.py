"""Real-size architectures from published configs: sizes, wiring and tokenizers, on the meta device only."""
from __future__ import annotations

import inspect

import pytest
import torch

from pipeline.benchmark import arch

# Published sizes (parameters) of the components, for checking the configs against.
PUBLISHED_PARAMETERS = {
    "sana-sprint-1.6b": {"text_encoder": 2.61e9, "transformer": 1.6e9},  # Gemma-2-2B incl. embeddings; Sana-Sprint 1.6B
    "z-image-turbo": {"text_encoder": 4.0e9, "transformer": 6.15e9},  # Qwen3-4B; Z-Image 6B single-stream DiT
}


@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAMETERS))
def test_parameter_counts_match_the_published_sizes(name):
    counts = arch.arch_parameter_counts(name)
    assert set(counts) == {"text_encoder", "transformer", "vae"}
    for component, published in PUBLISHED_PARAMETERS[name].items():
        assert counts[component] == pytest.approx(published, rel=0.03), component


def test_configs_are_copies():
    arch.arch_configs("z-image-turbo")["transformer"]["n_layers"] = 1
    assert arch.arch_configs("z-image-turbo")["transformer"]["n_layers"] == 30


@pytest.mark.parametrize("name, pipeline_class", [("sana-sprint-1.6b", "SanaSprintPipeline"),
                                                   ("z-image-turbo", "ZImagePipeline")])
def test_build_arch_makes_the_stock_pipeline_in_the_requested_dtype_and_device(name, pipeline_class):
    pipe = arch.build_arch(name, "meta", torch.bfloat16)
    assert type(pipe).__name__ == pipeline_class
    for component in ("text_encoder", "transformer", "vae"):
        model = getattr(pipe, component)
        assert {parameter.dtype for parameter in model.parameters()} == {torch.bfloat16}, component
        assert {parameter.device.type for parameter in model.parameters()} == {"meta"}, component
        assert not model.training, component
    assert torch.get_default_dtype() == torch.float32  # the build leaves the default alone


def _meta(*shape, dtype=torch.bfloat16):
    return torch.empty(*shape, device="meta", dtype=dtype)


@torch.no_grad()
def test_a_1024px_latent_goes_through_the_real_size_denoisers_and_decoders():
    # On the meta device: shapes are checked, nothing is computed or allocated.
    def build(name, component):
        return arch.build_component(name, component, "meta", torch.bfloat16)

    sana = build("sana-sprint-1.6b", "transformer")
    velocity = sana(_meta(1, 32, 32, 32), encoder_hidden_states=_meta(1, 300, 2304),
                    encoder_attention_mask=_meta(1, 300), guidance=_meta(1), timestep=_meta(1), return_dict=False)[0]
    assert velocity.shape == (1, 32, 32, 32)
    assert build("sana-sprint-1.6b", "vae").decode(_meta(1, 32, 32, 32)).sample.shape == (1, 3, 1024, 1024)

    z_image = build("z-image-turbo", "transformer")
    velocity = z_image([_meta(16, 1, 128, 128)], _meta(1), [_meta(40, 2560)], return_dict=False)[0]
    assert [tuple(item.shape) for item in velocity] == [(16, 1, 128, 128)]
    assert build("z-image-turbo", "vae").decode(_meta(1, 16, 128, 128)).sample.shape == (1, 3, 1024, 1024)


def test_unknown_names_are_refused_with_the_known_ones():
    for function in (arch.arch_parameter_counts, arch.arch_configs,
                     lambda name: arch.build_arch(name, "meta", torch.bfloat16)):
        with pytest.raises(ValueError, match="unknown architecture 'sdxl'; known: sana-sprint-1.6b, z-image-turbo"):
            function("sdxl")


def test_unknown_components_are_refused():
    with pytest.raises(ValueError, match="has no component 'unet'; it has: text_encoder, transformer, vae, scheduler"):
        arch.build_component("z-image-turbo", "unet", "meta", torch.float32)


def test_the_sana_instruction_has_a_realistic_token_count():
    from diffusers import SanaSprintPipeline

    instruction = inspect.signature(SanaSprintPipeline.__call__).parameters["complex_human_instruction"].default
    text = "\n".join(instruction)
    tokenizer = arch.ARCHS["sana-sprint-1.6b"].tokenizer()
    ids = tokenizer.encode(text)
    # ~170 words and ~40 marks and newlines: Gemma's real vocabulary gives about 210 tokens.
    assert 180 <= len(ids) <= 260
    assert tokenizer.decode(ids, skip_special_tokens=True) == text
    assert max(ids) < arch.SANA_SPRINT_TEXT_ENCODER["vocab_size"]


def test_any_prompt_encodes_into_the_low_ids():
    prompt = "naïve café ✨ 42"
    gemma = arch.ARCHS["sana-sprint-1.6b"].tokenizer()
    assert gemma.decode(gemma.encode(prompt), skip_special_tokens=True) == prompt
    qwen = arch.qwen_tokenizer()
    text = qwen.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                    add_generation_prompt=True, enable_thinking=True)
    assert text == f"<|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant\n"
    ids = qwen.encode(text)
    assert qwen.decode(ids) == text
    assert max(ids) < len(qwen) <= arch.Z_IMAGE_TEXT_ENCODER["vocab_size"]


def test_given_words_become_single_tokens():
    tokenizer = arch.gemma_tokenizer(["\u2581cat", "\u2581car"])
    assert tokenizer.tokenize(" cat car cab") == ["\u2581cat", "\u2581car", "\u2581ca", "b"]
