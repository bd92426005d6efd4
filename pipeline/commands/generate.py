"""`python -m pipeline generate`: prompts in, PNGs with their settings inside out.

Prints one saved path per line, in prompt order. Bad input or a missing model prints one line
and exits 2 before anything heavy runs; the model loads once for all prompts. With --init-image
every prompt starts from that picture (image-to-image), and with --mask too only the mask's white
part is repainted (inpainting). A PNG made that way is regenerated with --from-image and the same
--init-image (and --mask): its settings hold only their SHA-256 and size. With --reference (one
or more) every prompt is an instruction applied to those pictures (reference editing), and a PNG
made that way is regenerated with the same --reference files, in order.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline.commands.console import EXIT_FAILED, fail
from pipeline.commands.inputs import add_input_arguments, check_recorded, check_recorded_references, read_inputs
from pipeline.commands.options import add_model_arguments, prepare_process
from pipeline.commands.postprocess import add_stage_arguments, settings_from_args
from pipeline.metadata import read_settings, request_from_settings, save_png
from pipeline.request import GenerationRequest


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--prompt", help="what to draw")
    source.add_argument("--prompts-file", type=Path, help="a text file with one prompt per line")
    source.add_argument("--from-image", type=Path, help="regenerate from the settings stored in a PNG made here")
    parser.add_argument("--negative", help="what to avoid (models that use a negative prompt)")
    parser.add_argument("--seed", type=int, help="seed of the first image; image k uses seed+k (default 0)")
    parser.add_argument("--steps", type=int, help="denoising steps (default: the model's)")
    parser.add_argument("--guidance", type=float, help="guidance scale (default: the model's)")
    parser.add_argument("--width", type=int, help="image width in pixels (default: the model's)")
    parser.add_argument("--height", type=int, help="image height in pixels (default: the model's)")
    parser.add_argument("--num-images", type=int, help="images per prompt (default 1)")
    parser.add_argument("--out", type=Path, default=Path("outputs"), help="output folder (default: outputs)")
    add_input_arguments(parser)
    add_model_arguments(parser, default_model=None,
                        default_help="embedded, or with --from-image the image's own model")
    add_stage_arguments(parser)


def _given(args: argparse.Namespace) -> dict:
    """The request fields given on the command line, by request field name."""
    names = {"negative": "negative_prompt", "seed": "seed", "steps": "steps", "guidance": "guidance",
             "width": "width", "height": "height", "num_images": "num_images"}
    given = {field: getattr(args, arg) for arg, field in names.items() if getattr(args, arg) is not None}
    postprocess = settings_from_args(args)
    if postprocess.enabled:
        given["postprocess"] = postprocess
    return given


def _plan(args: argparse.Namespace) -> tuple[str, list[GenerationRequest], int | None]:
    """The model reference, the requests to run, and for --from-image the one image to keep."""
    inputs = read_inputs(args)
    # The pictures go with a saved PNG's record; the other image-mode fields are changes, as --seed is.
    pictures = {name: inputs.pop(name, None) for name in ("init_image", "mask")}
    pictures["references"] = inputs.pop("references", ())
    if args.from_image is not None:
        settings = read_settings(args.from_image)
        check_recorded(settings, args.from_image, pictures["init_image"], pictures["mask"])
        check_recorded_references(settings, args.from_image, pictures["references"])
        request, index = request_from_settings(settings, **pictures)
        given = {**_given(args), **inputs}
        if given:  # a variation of the stored image: run it alone with the changes
            request, index = request.replace(seed=settings["seed"], num_images=1).replace(**given), None
        return args.model or settings["model"], [request], index
    if args.prompts_file is not None:
        try:
            lines = args.prompts_file.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as error:
            raise ValueError(f"cannot read --prompts-file {str(args.prompts_file)!r}: {error}") from None
        prompts = [line.strip() for line in lines if line.strip()]
        if not prompts:
            raise ValueError(f"--prompts-file {str(args.prompts_file)!r} holds no prompts")
    elif args.prompt is not None:
        prompts = [args.prompt]
    else:
        raise ValueError("give --prompt, --prompts-file or --from-image")
    fields = {**_given(args), **pictures, **inputs}
    return args.model or "embedded", [GenerationRequest(prompt=prompt, **fields) for prompt in prompts], None


def _next_number(folder: Path) -> int:
    numbers = [int(path.name[:5]) for path in folder.glob("[0-9][0-9][0-9][0-9][0-9]-*.png")]
    return max(numbers, default=0) + 1


def _progress_bar():
    """An `on_step` callback drawing a bar on a terminal (None when stderr is not one), and its closer."""
    if not sys.stderr.isatty():
        return None, lambda: None
    from tqdm import tqdm

    bars = []  # made at the first step, when the total is known, so it never draws "0step"

    def on_step(step: int, total: int) -> None:
        if step == 1:
            for bar in bars:
                bar.close()
            bars.append(tqdm(total=total, unit="step", file=sys.stderr, leave=False))
        bars[-1].update(1)

    def close() -> None:
        for bar in bars:
            bar.close()

    return on_step, close


def run(args: argparse.Namespace) -> int:
    try:
        reference, requests, keep_index = _plan(args)
        options = prepare_process(args)
    except ValueError as error:
        return fail(str(error))

    from pipeline.models import ModelNotAvailable
    from pipeline.request import GenerationFailed
    from pipeline.studio import Studio

    try:
        studio = Studio.load(reference, device=args.device, speed_options=options)
        requests = [studio.validate(request)[0] for request in requests]  # every check before any work
    except (ModelNotAvailable, ValueError) as error:
        return fail(str(error))

    args.out.mkdir(parents=True, exist_ok=True)
    on_step, close_bar = _progress_bar()
    number = _next_number(args.out)
    try:
        for request in requests:
            result = studio.generate(request, on_step=on_step)
            kept = zip(result.images, result.settings)
            if keep_index is not None:
                kept = [(result.images[keep_index], result.settings[keep_index])]
            for image, settings in kept:
                path = save_png(image, settings, args.out / f"{number:05d}-{settings['seed']}.png")
                number += 1
                print(path, flush=True)
    except GenerationFailed as error:
        return fail(str(error), EXIT_FAILED)
    finally:
        close_bar()
    return 0
