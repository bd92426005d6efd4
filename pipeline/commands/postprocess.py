"""`python -m pipeline postprocess IN OUT`: denoise, colour-correct and upsample an existing picture.

Stages run in the fixed order denoise -> colour -> upsample; each is off unless asked for.
`--color-reference` and `--color-palette` imply their colour mode. PNG outputs carry the
settings in a `postprocess` text chunk. Prints the saved path; bad input prints one line and
exits 2 before any processing.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from PIL import Image
from PIL.PngImagePlugin import PngInfo

from pipeline.commands.console import EXIT_FAILED, fail
from pipeline.postprocess import PostprocessChain, PostprocessSettings, load_image

SETTINGS_KEY = "postprocess"


def _denoise(value: str) -> float | str:
    if value == "auto":
        return value
    try:
        return float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'auto' or a strength 0..1, got {value!r}") from None


def add_stage_arguments(parser: argparse.ArgumentParser) -> None:
    """The post-processing options, shared with `python -m pipeline generate`."""
    group = parser.add_argument_group("post-processing (order: denoise -> colour -> upsample)")
    group.add_argument("--denoise", type=_denoise, help="'auto' (noise level from the picture) or a strength 0..1")
    group.add_argument("--color", choices=("auto", "reference", "palette"),
                       help="'auto': white balance + levels; the other modes follow from the options below")
    group.add_argument("--color-reference", metavar="FILE", help="match the colours of this picture")
    group.add_argument("--color-palette", metavar="'#RRGGBB,...'", help="pull dominant colours toward these")
    group.add_argument("--color-strength", type=float, default=1.0, help="0..1 blend with the input (default 1)")
    group.add_argument("--upscale", type=int, default=1, help="2 or 4 (default 1: no upsampling)")
    group.add_argument("--upscaler", metavar="FILE",
                       help="learned super-resolution weights (.safetensors or .pth); default classical")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", type=Path, metavar="IN", help="picture to process")
    parser.add_argument("output", type=Path, metavar="OUT", help="where to save the result (.png, .jpg, .webp...)")
    add_stage_arguments(parser)


def settings_from_args(args: argparse.Namespace) -> PostprocessSettings:
    color = args.color
    if args.color_reference is not None:
        color = color or "reference"
    if args.color_palette is not None:
        color = color or "palette"
    palette = tuple(c.strip() for c in args.color_palette.split(",")) if args.color_palette is not None else ()
    return PostprocessSettings(
        denoise=args.denoise, color=color, color_reference=args.color_reference, color_palette=palette,
        color_strength=args.color_strength, upscale=args.upscale, upscaler=args.upscaler,
    )


def run(args: argparse.Namespace) -> int:
    if args.output.suffix.lower() not in Image.registered_extensions():
        return fail(f"OUT: cannot tell the image format from {args.output.name!r}; use .png, .jpg or .webp")
    if not args.output.parent.is_dir():
        return fail(f"OUT: folder not found: {args.output.parent}")
    try:
        settings = settings_from_args(args)
        image = load_image(args.input, "IN")
        result, _ = PostprocessChain()(image, settings)
    except ValueError as e:
        return fail(str(e))
    except RuntimeError as e:  # the environment, not the input
        return fail(str(e), EXIT_FAILED)

    save_options = {}
    if Image.registered_extensions()[args.output.suffix.lower()] == "PNG":
        info = PngInfo()
        info.add_text(SETTINGS_KEY, json.dumps(settings.to_dict()))
        save_options["pnginfo"] = info
    try:
        result.save(args.output, **save_options)
    except (OSError, ValueError) as e:
        return fail(f"OUT: cannot save {args.output}: {e}")
    print(args.output)
    return 0
