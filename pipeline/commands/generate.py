"""`python -m pipeline generate`: prompts in, PNGs with their settings inside out.

Prints one saved path per line, in prompt order. Bad input or a missing model prints one line
and exits 2 before anything heavy runs; the model loads once for all prompts. With --init-image
every prompt starts from that picture (image-to-image), and with --mask too only the mask's white
part is repainted (inpainting). A PNG made that way is regenerated with --from-image and the same
--init-image (and --mask): its settings hold only their SHA-256 and size. With --reference (one
or more) every prompt is an instruction applied to those pictures (reference editing), and a PNG
made that way is regenerated with the same --reference files, in order.

With --deliverable (repeatable) every prompt gives one file of exactly each deliverable's size
(`pipeline.deliverables`: a key visual extended to the aspect, or cropped with --fit crop); --kit
applies a brand kit and --style a style preset as `campaign` does. A deliverable's PNG records
all of it, so --from-image makes the same deliverable again, pixel for pixel; and a colour
reference's statistics, so a PNG made with one is regenerated after the file is gone.

With --enhance every prompt is first rewritten as a full description by the prompt writer
(--enhancer, else the model's own; `pipeline.enhance`) and the picture is drawn from the rewrite;
the PNG holds both prompts, so --from-image draws it again without the writer. A writer that gives
nothing usable is a `notice:` line on stderr and the prompt is used as given. For the embedded
model, words it does not know are named in a `notice:` line before any picture is made.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, replace
from pathlib import Path

from pipeline import brand, campaign, deliverables, styles
from pipeline.brand import ColourReference
from pipeline.commands.console import EXIT_FAILED, fail
from pipeline.commands.inputs import add_input_arguments, check_recorded, check_recorded_references, read_inputs
from pipeline.commands.options import add_enhancer_argument, add_model_arguments, prepare_process
from pipeline.commands.postprocess import add_stage_arguments, settings_from_args
from pipeline.deliverables import Deliverable
from pipeline.metadata import deliverable_settings, read_settings, request_from_settings, save_png, stored_deliverable
from pipeline.postprocess import PostprocessChain, PostprocessSettings, file_name
from pipeline.request import GenerationRequest

FIT_NEEDS_DELIVERABLE = "--fit needs --deliverable: it says how a deliverable reaches its aspect"


@dataclass(frozen=True)
class Design:
    """What every request of a run is made as besides its own settings: its deliverables (none: the
    request's own size), how they reach their aspect, the kit's colour statistics, and the kit
    (`Kit.to_dict`) and style key its PNGs record."""

    deliverables: tuple[Deliverable, ...] = ()
    fit: str = "extend"
    anchor: str = "center"
    colour: ColourReference | None = None
    kit: dict | None = None
    style: str = ""


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
    writer = parser.add_argument_group("prompt writer (README: Prompt writer)")
    writer.add_argument("--enhance", action="store_true",
                        help="rewrite each prompt as a full description with the prompt writer, then generate from "
                             "the rewrite; the PNG holds both prompts (a failure is a notice, and the prompt is "
                             "used as given)")
    add_enhancer_argument(writer)
    group = parser.add_argument_group("deliverables, brand kits and style presets")
    group.add_argument("--deliverable", action="append", metavar="NAME|WxH",
                       help="one file of exactly this size per prompt and image: a name of the deliverables table "
                            "(square, story, link, leaderboard, ...) or WIDTHxHEIGHT; repeat the flag for more")
    group.add_argument("--fit", choices=deliverables.FITS,
                       help="how a deliverable reaches its aspect: extend the picture (default) or crop it")
    group.add_argument("--kit", type=Path, metavar="FILE",
                       help="a brand kit (JSON): its style text, negative prompt and colours on every file; its "
                            "default deliverables when --deliverable is not given")
    group.add_argument("--style", metavar="KEY", help="a style preset of assets/styles.json, e.g. cinematic")


def _given(args: argparse.Namespace) -> dict:
    """The request fields given on the command line, by request field name."""
    names = {"negative": "negative_prompt", "seed": "seed", "steps": "steps", "guidance": "guidance",
             "width": "width", "height": "height", "num_images": "num_images"}
    given = {field: getattr(args, arg) for arg, field in names.items() if getattr(args, arg) is not None}
    # The colour reference is measured now, so every PNG records its statistics and reproduces without it.
    postprocess = PostprocessChain.resolve(settings_from_args(args))
    if postprocess.enabled:
        given["postprocess"] = postprocess
    return given


def _plan(args: argparse.Namespace,
          uses_negative_prompt: bool = True) -> tuple[str, list[GenerationRequest], int | None, Design]:
    """The model reference, the requests to run, for --from-image the one image to keep, and what
    each request is made as. `uses_negative_prompt`: False for a model that takes none, so that the
    style's and the kit's negative prompts are left out."""
    inputs = read_inputs(args)
    # The pictures go with a saved PNG's record; the other image-mode fields are changes, as --seed is.
    pictures = {name: inputs.pop(name, None) for name in ("init_image", "mask")}
    pictures["references"] = inputs.pop("references", ())
    if args.from_image is not None:
        return _plan_from_image(args, pictures, inputs)
    prompts = _prompts(args)
    fields = {**_given(args), **pictures, **inputs}
    kit = brand.load(args.kit) if args.kit is not None else None
    style = (args.style or "").strip()
    if style:
        styles.get(style)
    chosen = _deliverables(args, fields, kit)
    requests, colour = [], None
    for prompt in prompts:
        text, negative, postprocess, colour = campaign.compose(
            prompt, fields.get("negative_prompt", ""), style, kit, fields.get("postprocess", PostprocessSettings()),
            uses_negative_prompt)
        requests.append(GenerationRequest(**{**fields, "prompt": text, "negative_prompt": negative,
                                             "postprocess": postprocess}))
    design = Design(chosen, args.fit or "extend", colour=colour, kit=None if kit is None else kit.to_dict(),
                    style=style)
    return args.model or "embedded", requests, None, design


def _prompts(args: argparse.Namespace) -> list[str]:
    """The prompts of --prompt or --prompts-file; ValueError naming the flag."""
    if args.prompts_file is not None:
        try:
            lines = args.prompts_file.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as error:
            raise ValueError(f"cannot read --prompts-file {str(args.prompts_file)!r}: {error}") from None
        prompts = [line.strip() for line in lines if line.strip()]
        if not prompts:
            raise ValueError(f"--prompts-file {str(args.prompts_file)!r} holds no prompts")
        return prompts
    if args.prompt is not None:
        return [args.prompt]
    raise ValueError("give --prompt, --prompts-file or --from-image")


def _plan_from_image(args: argparse.Namespace, pictures: dict, inputs: dict):
    """`_plan` for --from-image: the stored request and design, with the flags given as changes."""
    for flag, value in (("--kit", args.kit), ("--style", args.style)):
        if value is not None:
            raise ValueError(f"{flag} applies to --prompt or --prompts-file; the prompt stored in "
                             f"{args.from_image.name!r} already holds its kit and style")
    settings = read_settings(args.from_image)
    check_recorded(settings, args.from_image, pictures["init_image"], pictures["mask"])
    check_recorded_references(settings, args.from_image, pictures["references"])
    request, index = request_from_settings(settings, **pictures)
    stored = stored_deliverable(settings)
    design = Design(style=settings.get("style", ""))
    if stored is not None:
        design = Design((stored.deliverable,), stored.fit, stored.anchor, stored.colour, stored.kit, stored.style)
    given = {**_given(args), **inputs}
    if args.deliverable:
        design = replace(design, deliverables=_deliverables(args, {**given, **pictures}, None))
        given.update(width=None, height=None)  # the stored picture's own size gives way to the deliverables'
    elif stored is not None:
        _deliverables(args, {**given, **pictures}, None, stored.deliverable.key)
    elif args.fit is not None:
        raise ValueError(FIT_NEEDS_DELIVERABLE)
    if args.fit is not None:
        design = replace(design, fit=args.fit)
    if given:  # a variation of the stored image: run it alone with the changes
        request, index = request.replace(seed=settings["seed"], num_images=1).replace(**given), None
    return args.model or settings["model"], [request], index, design


def _deliverables(args: argparse.Namespace, fields: dict, kit: brand.Kit | None,
                  *stored: str) -> tuple[Deliverable, ...]:
    """The deliverables of the flags, else the kit's defaults, else the `stored` ones, each once, with
    the request's fields checked against them; ValueError naming the flag."""
    names = args.deliverable or (kit.deliverables if kit is not None else ()) or stored
    if not names:
        if kit is not None:
            raise ValueError(f"--kit {file_name(args.kit)!r} names no default deliverables; give --deliverable "
                             "NAME or WIDTHxHEIGHT")
        if args.fit is not None:
            raise ValueError(FIT_NEEDS_DELIVERABLE)
        return ()
    chosen = tuple({item.key: item for item in map(deliverables.parse, names)}.values())
    for name, flag in (("width", "--width"), ("height", "--height")):
        if fields.get(name) is not None:
            raise ValueError(f"{flag}: a deliverable sets the size itself; leave {flag} out")
    for name, flag in (("init_image", "--init-image"), ("references", "--reference")):
        if fields.get(name):
            raise ValueError(f"--deliverable draws from the prompt alone; leave {flag} out")
    return chosen


def _enhanced(studio, requests: list[GenerationRequest], enhance: bool) -> list[GenerationRequest]:
    """The requests, each with its prompt writer's text when `enhance` (a request that carries one
    already, from --from-image, keeps it: the same pixels, no rewrite); for the embedded model the
    words it does not know are named on stderr, before any picture is made. A writer that gives
    nothing usable is a notice, and that request goes on with its own prompt."""
    from pipeline.enhance import EnhanceFailed

    done = []
    for request in requests:
        _notice(studio, request.prompt)
        if enhance and not request.enhanced_prompt:
            task = "edit" if request.mode == "reference" else "text"
            try:
                enhancement = studio.enhance(request.prompt, seed=request.seed, task=task)
                request = request.replace(**enhancement.request_fields())
            except EnhanceFailed as error:
                print(f"notice: {error}", file=sys.stderr, flush=True)
        if request.encoded_prompt != request.prompt:
            _notice(studio, request.encoded_prompt)
        done.append(request)
    return done


def _notice(studio, text: str) -> None:
    notice = studio.vocabulary_notice(text)
    if notice:
        print(f"notice: {notice}", file=sys.stderr, flush=True)


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


def _save_deliverables(studio, request: GenerationRequest, design: Design, out: Path, number: int,
                       on_step) -> int:
    """Render and save each deliverable of each of the request's images (image k: seed + k); the next file number."""
    keys = {}  # key visuals shared by the deliverables of one seed
    for variant in range(request.num_images):
        one = request.replace(seed=request.seed + variant, num_images=1)
        for item in design.deliverables:
            rendered = deliverables.render(studio, one, item, fit=design.fit, anchor=design.anchor,
                                           colour=design.colour, on_step=on_step, keys=keys)
            record = deliverable_settings(rendered.settings, kit=design.kit, style=design.style)
            print(save_png(rendered.image, record, out / f"{number:05d}-{one.seed}-{item.key}.png"), flush=True)
            number += 1
    return number


def _save_images(studio, request: GenerationRequest, keep_index: int | None, design: Design, out: Path,
                 number: int, on_step) -> int:
    """Generate and save the request's images (only image `keep_index` when given); the next file number."""
    result = studio.generate(request, on_step=on_step)
    kept = zip(result.images, result.settings)
    if keep_index is not None:
        kept = [(result.images[keep_index], result.settings[keep_index])]
    for image, settings in kept:
        if design.style:
            settings = {**settings, "style": design.style}
        print(save_png(image, settings, out / f"{number:05d}-{settings['seed']}.png"), flush=True)
        number += 1
    return number


def run(args: argparse.Namespace) -> int:
    try:
        reference, requests, keep_index, design = _plan(args)
        options = prepare_process(args)
    except ValueError as error:
        return fail(str(error))

    from pipeline.models import ModelNotAvailable
    from pipeline.request import GenerationFailed
    from pipeline.studio import Studio

    try:
        studio = Studio.load(reference, device=args.device, speed_options=options, enhancer=args.enhancer)
        if not studio.limits.uses_negative_prompt and (args.kit is not None or args.style is not None):
            reference, requests, keep_index, design = _plan(args, uses_negative_prompt=False)
        checked = [studio.validate(request)[0] for request in requests]  # every check before any work
        if not design.deliverables:
            requests = checked  # a deliverable's request leaves the size to its plan
        requests = _enhanced(studio, requests, args.enhance)
    except (ModelNotAvailable, ValueError) as error:
        return fail(str(error))

    args.out.mkdir(parents=True, exist_ok=True)
    on_step, close_bar = _progress_bar()
    number = _next_number(args.out)
    try:
        for request in requests:
            if design.deliverables:
                number = _save_deliverables(studio, request, design, args.out, number, on_step)
            else:
                number = _save_images(studio, request, keep_index, design, args.out, number, on_step)
    except ValueError as error:
        return fail(str(error))
    except GenerationFailed as error:
        return fail(str(error), EXIT_FAILED)
    finally:
        close_bar()
    return 0
