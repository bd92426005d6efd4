"""Model presets and loading.

A model reference is a preset name (`PRESETS`), a local folder in diffusers format, or a
Hugging Face hub id. Whatever the reference, the folder's `model_index.json` names a stock
diffusers pipeline class, which must be one of the supported families; it is loaded with
`from_pretrained(..., use_safetensors=True)` and never with remote code.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.families import FAMILIES, Family, family_for
from pipeline.request import ModelLimits, Range

if TYPE_CHECKING:
    import torch
    from diffusers import DiffusionPipeline

HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")
MAX_PIXELS_LARGE = 2048 * 2048


class ModelNotAvailable(Exception):
    """The model is neither on disk nor downloadable; the message says how to get it."""


@dataclass(frozen=True)
class ModelPreset:
    name: str
    title: str
    source: str  # hub id, or a local folder
    pipeline_class: str
    limits: ModelLimits
    # Keyword arguments for the family's encode_prompt (e.g. Sana's max_sequence_length).
    encode_options: dict = field(default_factory=dict)


def _limits(*, size: int, multiple: int, steps: Range, guidance: Range, uses_guidance: bool = True,
            uses_negative_prompt: bool = True, max_pixels: int = MAX_PIXELS_LARGE,
            format_sizes: tuple = ()) -> ModelLimits:
    """Limits of a square-native model."""
    return ModelLimits(default_width=size, default_height=size, size_multiple=multiple, max_pixels=max_pixels,
                       steps=steps, guidance=guidance, uses_guidance=uses_guidance,
                       uses_negative_prompt=uses_negative_prompt, format_sizes=format_sizes)


def _hub_presets() -> list[ModelPreset]:
    return [
        ModelPreset("sana-1.6b", "Sana 1.6B", "Efficient-Large-Model/Sana_1600M_1024px_BF16_diffusers",
                    "SanaPipeline", _limits(size=1024, multiple=32, steps=Range(1, 100, 20),
                                            guidance=Range(1.0, 20.0, 4.5))),
        # Sprint is timestep-distilled (1-4 steps) with guidance embedded in the denoiser.
        ModelPreset("sana-sprint-1.6b", "Sana-Sprint 1.6B", "Efficient-Large-Model/Sana_Sprint_1.6B_1024px_diffusers",
                    "SanaSprintPipeline", _limits(size=1024, multiple=32, steps=Range(1, 4, 2),
                                                  guidance=Range(1.0, 10.0, 4.5), uses_negative_prompt=False)),
        # Turbo is distilled to run without CFG: guidance 0 and no negative prompt.
        ModelPreset("z-image-turbo", "Z-Image-Turbo", "Tongyi-MAI/Z-Image-Turbo",
                    "ZImagePipeline", _limits(size=1024, multiple=16, steps=Range(1, 50, 9),
                                              guidance=Range(0.0, 0.0, 0.0), uses_guidance=False,
                                              uses_negative_prompt=False)),
        # The 4B klein checkpoint is guidance-distilled (is_distilled=True): guidance is ignored.
        ModelPreset("flux2-klein-4b", "FLUX.2 klein 4B", "black-forest-labs/FLUX.2-klein-4B",
                    "Flux2KleinPipeline", _limits(size=1024, multiple=16, steps=Range(1, 50, 4),
                                                  guidance=Range(1.0, 1.0, 1.0), uses_guidance=False,
                                                  uses_negative_prompt=False)),
        ModelPreset("qwen-image", "Qwen-Image", "Qwen/Qwen-Image",
                    "QwenImagePipeline", _limits(size=1328, multiple=16, steps=Range(1, 100, 50),
                                                 guidance=Range(1.0, 20.0, 4.0))),
        # Reference editing only: an instruction and 1 (Edit) or up to 3 (Edit-2509, the Plus pipeline) pictures.
        ModelPreset("qwen-image-edit", "Qwen-Image-Edit", "Qwen/Qwen-Image-Edit",
                    "QwenImageEditPipeline", _limits(size=1024, multiple=16, steps=Range(1, 100, 50),
                                                     guidance=Range(1.0, 20.0, 4.0))),
        ModelPreset("qwen-image-edit-2509", "Qwen-Image-Edit-2509", "Qwen/Qwen-Image-Edit-2509",
                    "QwenImageEditPlusPipeline", _limits(size=1024, multiple=16, steps=Range(1, 100, 40),
                                                         guidance=Range(1.0, 20.0, 4.0))),
        ModelPreset("lumina-2", "Lumina-Image-2.0", "Alpha-VLLM/Lumina-Image-2.0",
                    "Lumina2Pipeline", _limits(size=1024, multiple=16, steps=Range(1, 100, 30),
                                               guidance=Range(1.0, 20.0, 4.0))),
    ]


def _embedded_preset() -> ModelPreset:
    from pipeline import embedded

    return ModelPreset(
        "embedded", "Embedded shapes model (offline, CPU)", str(embedded.MODEL_DIR), "SanaPipeline",
        _limits(size=embedded.NATIVE_SIZE, multiple=embedded.SIZE_MULTIPLE,
                steps=Range(*embedded.STEP_RANGE, embedded.DEFAULT_STEPS),
                guidance=Range(*embedded.GUIDANCE_RANGE, embedded.DEFAULT_GUIDANCE), max_pixels=512 * 512,
                format_sizes=tuple(embedded.FORMAT_SIZES.items())),
        encode_options=dict(embedded.ENCODE_KWARGS))


PRESETS: dict[str, ModelPreset] = {preset.name: preset for preset in [_embedded_preset(), *_hub_presets()]}


@dataclass(frozen=True)
class ModelSource:
    """A reference resolved to a folder on disk; no weights loaded yet."""

    reference: str  # what the user asked for
    path: Path
    revision: str  # hub commit, or a fingerprint of a local folder
    family: Family
    config: dict  # the folder's model_index.json
    preset: ModelPreset | None

    @property
    def encode_options(self) -> dict:
        return self.preset.encode_options if self.preset else {}


def folder_fingerprint(folder: Path) -> str:
    """A short stable id of a local model folder: its configs' bytes and its weights' sizes.

    Hashing the weights themselves would take minutes for a hub-size model.
    """
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            relative = path.relative_to(folder).as_posix()
            content = path.read_bytes() if path.suffix == ".json" else str(path.stat().st_size).encode()
            digest.update(relative.encode() + b"\0" + content + b"\0")
    return "local-" + digest.hexdigest()[:12]


def _download(reference: str, hub_id: str) -> tuple[Path, str]:
    from diffusers import DiffusionPipeline

    try:
        path = Path(DiffusionPipeline.download(hub_id, use_safetensors=True))
    except Exception as error:  # offline, unknown repo, gated repo, network: all end the same way
        raise ModelNotAvailable(
            f"Model {reference!r} ({hub_id}) is not on this machine and could not be downloaded "
            f"({type(error).__name__}); fetch it where there is internet with `hf download {hub_id}` and copy "
            f"the Hugging Face cache here, or pass --model with a local diffusers folder."
        ) from None
    # Hub snapshots live in .../snapshots/<commit>/
    return path, path.name


def _read_pipeline_config(path: Path, reference: str) -> dict:
    index = path / "model_index.json"
    if not index.is_file():
        raise ModelNotAvailable(f"Model {reference!r}: {path} is not a diffusers model folder (no model_index.json).")
    try:
        config = json.loads(index.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, RecursionError, ValueError) as error:
        raise ModelNotAvailable(f"Model {reference!r}: {index} is not valid JSON ({type(error).__name__}: "
                                f"{str(error)[:120]}); download or copy the model again.") from None
    if not isinstance(config, dict):
        raise ModelNotAvailable(f"Model {reference!r}: {index} is not a diffusers model index (a JSON object); "
                                "download or copy the model again.")
    return config


def model_limits(source: ModelSource, pipe: DiffusionPipeline) -> ModelLimits:
    """The preset's limits, or for any other folder its family's, at the loaded model's size multiple."""
    if source.preset is not None:
        return source.preset.limits
    family = source.family
    if family.is_distilled(source.config):
        return _limits(size=family.default_size, multiple=family.size_multiple(pipe), steps=family.steps,
                       guidance=Range(1.0, 1.0, 1.0), uses_guidance=False, uses_negative_prompt=False)
    return _limits(size=family.default_size, multiple=family.size_multiple(pipe), steps=family.steps,
                   guidance=family.guidance, uses_negative_prompt=family.uses_negative_prompt)


def resolve(reference: str, like: str | None = None) -> ModelSource:
    """Find the model on disk (downloading a hub model if allowed) without loading any weights.

    `like` names a preset whose settings (limits, encoding options) apply to `reference`, a folder
    or hub id of the same pipeline class: for example a retrained copy of the embedded model.
    """
    if like and like not in PRESETS:
        raise ModelNotAvailable(f"Model settings like {like!r}: not a preset ({', '.join(PRESETS)}).")
    preset = PRESETS[like] if like else PRESETS.get(reference)
    source = preset.source if preset and reference == preset.name else reference
    if Path(source).expanduser().is_dir():
        path = Path(source).expanduser().resolve()
        revision = folder_fingerprint(path)
    elif HUB_ID.match(source):
        path, revision = _download(reference, source)
    else:
        raise ModelNotAvailable(
            f"Model {reference!r} is not a preset ({', '.join(PRESETS)}), a local folder, or a hub id (owner/name).")
    config = _read_pipeline_config(path, reference)
    pipeline_class = config.get("_class_name", "")
    if not isinstance(pipeline_class, str) or pipeline_class not in FAMILIES:
        named = repr(pipeline_class[:80]) if isinstance(pipeline_class, str) and pipeline_class else "none"
        raise ModelNotAvailable(f"Model {reference!r} names the pipeline class {named} in its model_index.json; "
                                f"supported: {', '.join(sorted(FAMILIES))}.")
    if preset is not None and pipeline_class != preset.pipeline_class:
        # The preset's limits (size multiple, step and guidance ranges) hold for its own class only.
        raise ModelNotAvailable(f"Model {reference!r}: {path} holds a {pipeline_class}, not the preset's "
                                f"{preset.pipeline_class}.")
    return ModelSource(reference, path, revision, family_for(pipeline_class), config, preset)


def check_weights(source: ModelSource) -> None:
    """ModelNotAvailable, naming the component and the file, for a model component (one that
    model_index.json names, with a config.json) whose .safetensors weights are missing, empty or cut
    short, as an interrupted download or copy leaves them; only each file's header is read."""
    from safetensors import safe_open

    named = [name for name, value in source.config.items()
             if not name.startswith("_") and isinstance(value, list) and value and value[0] is not None]
    for component in named:
        if not (source.path / component / "config.json").is_file():
            continue  # a tokenizer or scheduler: no weights
        weights = sorted((source.path / component).glob("*.safetensors"))
        if not weights:
            raise ModelNotAvailable(f"Model {source.reference!r}: the {component} has no .safetensors weights in "
                                    f"{component}/; download or copy the model again.")
        for path in weights:
            try:
                with safe_open(str(path), framework="pt") as opened:
                    opened.keys()
            except Exception as error:  # noqa: BLE001 - safetensors raises its own error type, and OSError
                raise ModelNotAvailable(
                    f"Model {source.reference!r}: the {component} weights {component}/{path.name} cannot be read "
                    f"({str(error)[:120] or type(error).__name__}); the file is damaged or incomplete, so "
                    "download or copy the model again.") from None


def load_pipeline(source: ModelSource, dtype: torch.dtype) -> DiffusionPipeline:
    """The stock diffusers pipeline of the source's family, on the CPU.

    A model folder that diffusers cannot load (a damaged weights file, a missing component) is
    ModelNotAvailable with one sentence, never a traceback.
    """
    import diffusers

    check_weights(source)
    pipeline_class = getattr(diffusers, source.family.pipeline_class)
    try:
        pipe = pipeline_class.from_pretrained(source.path, dtype=dtype, use_safetensors=True)
    except Exception as error:  # noqa: BLE001 - diffusers and transformers raise OSError, ValueError, KeyError, ...
        first_line = (str(error).strip().splitlines() or [""])[0][:200]
        raise ModelNotAvailable(
            f"Model {source.reference!r} cannot be loaded as a {source.family.pipeline_class} "
            f"({type(error).__name__}: {first_line}); check that the folder is a complete copy of the model.") from None
    pipe.set_progress_bar_config(disable=True)
    return pipe
