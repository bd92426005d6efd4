"""Reference editing: one or more reference pictures and an instruction, for the families that take them.

FLUX.2 klein conditions on reference pictures in context: its stock `__call__(image=[...])` encodes
each one with the decoder and appends its latent tokens to the denoiser's sequence, so the loaded
text-to-image pipeline serves the mode as it is. Qwen-Image-Edit and Qwen-Image-Edit-Plus are
pipelines of their own (a folder of those classes loads as its family); they show the references to
the Qwen2.5-VL prompt encoder as well, so their prompt encoding depends on the pictures, and the
studio's prompt cache keys on the pictures' hashes for them (`encodes_pictures`).

A reference keeps its own aspect: each pipeline resizes it by its own rule (an area and a multiple),
and the output has the request's size. Their prompt encoding is given the pictures as the stock call
resizes them for the vision encoder (`condition_pictures`), so cached embeddings match the stock call.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from PIL import Image

MODE_NAME = "reference editing"


@dataclass(frozen=True)
class ReferenceSupport:
    """How one family takes reference pictures."""

    name: str  # the family's name, as sentences give it
    most: int  # the most reference pictures one request may give
    # Whether the prompt encoder sees the pictures (the cache key must then include them).
    encodes_pictures: bool
    # Whether the family serves text-to-image too (the edit pipelines need at least one picture).
    text_to_image: bool
    # Whether `image=` is one picture rather than a list.
    single_picture: bool = False
    # The pipeline rejects a batch of several prompt embeddings, so a batch is one prompt's images.
    one_prompt_per_batch: bool = False
    # The shortest side (pixels) the pipeline takes for a reference.
    min_side: int = 1


# The most elongated reference (long side / short side) any family takes, as FLUX.2 klein's check.
MAX_ASPECT = 8


SUPPORT: dict[str, ReferenceSupport] = {
    "Flux2KleinPipeline": ReferenceSupport("FLUX.2 klein", most=4, encodes_pictures=False, text_to_image=True,
                                           min_side=64),
    "QwenImageEditPipeline": ReferenceSupport("Qwen-Image-Edit", most=1, encodes_pictures=True, text_to_image=False,
                                              single_picture=True, one_prompt_per_batch=True),
    "QwenImageEditPlusPipeline": ReferenceSupport("Qwen-Image-Edit-Plus", most=3, encodes_pictures=True,
                                                  text_to_image=False, one_prompt_per_batch=True),
}
# The most reference pictures any family takes: the request's own limit.
MAX_REFERENCES = max(support.most for support in SUPPORT.values())


def _able() -> str:
    names = [support.name for support in SUPPORT.values()]
    return f"{', '.join(names[:-1])} and {names[-1]} models"


def check(pipeline_class: str, family_name: str, mode: str, sizes: list[tuple[int, int]]) -> None:
    """ValueError, in one sentence, unless this family can serve a request of `mode` with references of
    these (width, height) sizes, in order."""
    support = SUPPORT.get(pipeline_class)
    if mode == "reference":
        if support is None:
            raise ValueError(f"{MODE_NAME} is not available for {family_name} models; it works with {_able()}")
        if len(sizes) > support.most:
            raise ValueError(f"references has {len(sizes)} pictures; {support.name} models take at most "
                             f"{support.most}")
        for position, (width, height) in enumerate(sizes, 1):
            if min(width, height) < support.min_side:
                raise ValueError(f"reference {position} is {width}x{height}; {support.name} models need at least "
                                 f"{support.min_side} pixels on each side")
            if max(width, height) > MAX_ASPECT * min(width, height):
                raise ValueError(f"reference {position} is {width}x{height}; its long side may be at most "
                                 f"{MAX_ASPECT} times its short side")
    elif support is not None and not support.text_to_image:
        raise ValueError(f"{support.name} models edit reference pictures; give 1 to {support.most} references "
                         "with the instruction as the prompt")


def encodes_pictures(pipeline_class: str) -> bool:
    """Whether this family's prompt encoding depends on the reference pictures."""
    support = SUPPORT.get(pipeline_class)
    return support is not None and support.encodes_pictures


def one_prompt_per_batch(pipeline_class: str) -> bool:
    support = SUPPORT.get(pipeline_class)
    return support is not None and support.one_prompt_per_batch


def condition_pictures(pipe, pictures: list[Image.Image]) -> dict[str, Any]:
    """The `image=` argument of the Qwen-Image-Edit pipelines' `encode_prompt`: the references resized as
    their stock call resizes them for the vision encoder (an area kept, sides multiples of 32)."""
    import diffusers.pipelines.qwenimage.pipeline_qwenimage_edit as edit
    import diffusers.pipelines.qwenimage.pipeline_qwenimage_edit_plus as edit_plus

    if type(pipe).__name__ == "QwenImageEditPipeline":
        width, height, _ = edit.calculate_dimensions(1024 * 1024, pictures[0].width / pictures[0].height)
        return {"image": pipe.image_processor.resize(pictures[0], height, width)}
    resized = []
    for picture in pictures:
        width, height = edit_plus.calculate_dimensions(edit_plus.CONDITION_IMAGE_SIZE, picture.width / picture.height)
        resized.append(pipe.image_processor.resize(picture, height, width))
    return {"image": resized}


def call_kwargs(pipeline_class: str, pictures: list[Image.Image], count: int) -> dict[str, Any]:
    """The reference arguments of the family's call for `count` images from one prompt's embeddings
    (`one_prompt_per_batch`), or from embeddings already repeated per image."""
    support = SUPPORT[pipeline_class]
    kwargs = {"image": pictures[0] if support.single_picture else list(pictures)}
    return {**kwargs, "num_images_per_prompt": count} if support.one_prompt_per_batch else kwargs
