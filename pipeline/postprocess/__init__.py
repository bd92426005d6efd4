"""Post-processing of finished pictures: denoise -> colour -> upsample.

Each stage is optional and a pure function on a PIL image with explicit arguments:

    denoise(image, strength)                     non-local means (scikit-image), noise level
                                                 estimated from the image when strength is None
    auto_color(image, strength)                  white balance + levels, conservative without a cast
    match_reference(image, reference, strength) colour statistics of a reference image
    apply_statistics(image, mean, std, strength) the same from a reference's stored statistics
    match_palette(image, palette, strength)      dominant colours pulled toward brand colours
    upscale_classical(image, factor)             Lanczos + iterative back-projection
    upscale_learned(image, model, factor)        a spandrel super-resolution model, in tiles

`PostprocessSettings` says which stages run and with what parameters (it is what goes into the
PNG metadata); `PostprocessChain` reads the files the settings name (`prepare`), then runs the
stages in the fixed order, times each stage and keeps a small cache of loaded learned upscalers.
What a request may ask for is bounded (MAX_PALETTE_COLOURS, MAX_REFERENCE_DECODE_PIXELS, and a
colour reference shrunk to MAX_REFERENCE_PIXELS), so a small request never costs much.

    settings.py   PostprocessSettings and the allowed values
    images.py     reading pictures, and the array helpers the stages share
    denoising.py  colour.py  upscale.py   the stages
    chain.py      StageInputs, the table of stages, PostprocessChain
    evaluate.py   measurements against baselines (`python -m pipeline evaluate-postprocess`)
"""
from .chain import (
    MAX_OUTPUT_PIXELS,
    STAGES,
    PostprocessChain,
    Stage,
    StageInputs,
    load_reference,
    read_reference_statistics,
)
from .colour import (
    LIGHTNESS_SHARE,
    MAX_LIGHTNESS_CHANGE,
    PALETTE_SOFTNESS,
    apply_statistics,
    auto_color,
    auto_levels,
    dominant_colours,
    estimate_cast,
    match_palette,
    match_reference,
    parse_hex,
    reference_statistics,
)
from .denoising import DENOISE_MAX_SIGMA, NLM_H_PER_SIGMA, denoise, estimate_noise
from .images import check_size, load_image, shrink
from .settings import (
    COLOR_MODES,
    HEX_COLOUR,
    MAX_PALETTE_COLOURS,
    MAX_PATH_CHARS,
    MAX_REFERENCE_DECODE_PIXELS,
    MAX_REFERENCE_PIXELS,
    UPSCALE_FACTORS,
    UPSCALER_SUFFIXES,
    PostprocessSettings,
    ReferenceStatistics,
    file_name,
    shown,
)
from .upscale import load_upscaler, upscale_classical, upscale_learned

__all__ = [
    "COLOR_MODES", "DENOISE_MAX_SIGMA", "HEX_COLOUR", "LIGHTNESS_SHARE", "MAX_LIGHTNESS_CHANGE",
    "MAX_OUTPUT_PIXELS", "MAX_PALETTE_COLOURS", "MAX_PATH_CHARS", "MAX_REFERENCE_DECODE_PIXELS",
    "MAX_REFERENCE_PIXELS", "NLM_H_PER_SIGMA", "PALETTE_SOFTNESS", "STAGES", "UPSCALE_FACTORS",
    "UPSCALER_SUFFIXES", "PostprocessChain", "PostprocessSettings", "ReferenceStatistics", "Stage",
    "StageInputs", "apply_statistics", "auto_color", "auto_levels", "check_size", "denoise", "dominant_colours", "estimate_cast",
    "estimate_noise", "file_name", "load_image", "load_reference", "load_upscaler", "match_palette",
    "match_reference", "parse_hex", "read_reference_statistics", "reference_statistics", "shown", "shrink", "upscale_classical", "upscale_learned",
]
