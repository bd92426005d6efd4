"""The image-mode options of `generate`: an input picture, its strength, an inpainting mask, a
larger canvas to extend it to, reference pictures to edit from.

    add_input_arguments(parser)          --init-image, --strength, --mask, --mask-feather,
                                         --extend-to, --extend-anchor, --reference (repeatable)
    read_inputs(args)                    the files read and checked -> request fields by name
    check_recorded(settings, png, ...)   the given files against the hashes a saved PNG records

Reading a picture needs no model, so a bad file is one sentence naming its flag before anything
heavy is imported. A PNG made from an input records only the input's SHA-256 and size, so
regenerating it takes the same files again; the sentences here say which one, by flag.
"""
from __future__ import annotations

import argparse
import re
from pathlib import Path

from pipeline.conditioning import ANCHORS, MAX_FEATHER, Extend, InputImage, Mask, read_input_image, read_mask
from pipeline.postprocess.settings import file_name
from pipeline.references import MAX_REFERENCES
from pipeline.request import DEFAULT_STRENGTH

# request field -> (its flag, what the flag gives, the same with its article)
FLAGS = {"init_image": ("--init-image", "input picture", "an input picture"), "mask": ("--mask", "mask", "a mask")}


def add_input_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("start from an image (image-to-image, inpainting, extend)")
    group.add_argument("--init-image", type=Path, metavar="FILE",
                       help="the picture to start from, cover-cropped to the requested size")
    group.add_argument("--strength", type=float, metavar="S",
                       help=f"how much of it is repainted, 0 (the input as is) to 1 (from noise); "
                            f"default {DEFAULT_STRENGTH:g}")
    group.add_argument("--mask", type=Path, metavar="FILE",
                       help="inpainting: white repaints, black keeps the input's pixels exactly")
    group.add_argument("--mask-feather", type=int, metavar="PX",
                       help=f"soften the mask's edge over PX pixels on each side, 0 to {MAX_FEATHER} (default 0)")
    group.add_argument("--extend-to", metavar="WxH",
                       help="extend: the picture fitted inside a WxH canvas and the new border painted; "
                            "the canvas is the output's size")
    group.add_argument("--extend-anchor", choices=ANCHORS, metavar="WHERE",
                       help=f"where the picture sits on the canvas: {', '.join(ANCHORS)} (default center)")
    group.add_argument("--reference", type=Path, action="append", metavar="FILE",
                       help="reference editing: a picture the prompt's instruction applies to; repeat the flag for "
                            f"more (up to {MAX_REFERENCES}; FLUX.2 klein and Qwen-Image-Edit models)")


def read_inputs(args: argparse.Namespace) -> dict:
    """The image-mode request fields the flags give, by field name; ValueError naming the flag."""
    if args.init_image is None:
        for flag, value in (("--strength", args.strength), ("--mask", args.mask), ("--extend-to", args.extend_to)):
            if value is not None:
                raise ValueError(f"{flag} needs --init-image: it applies to a picture to start from")
    if args.mask is None and args.extend_to is None and args.mask_feather is not None:
        raise ValueError("--mask-feather needs --mask or --extend-to: it softens the edge of the part repainted")
    if args.extend_anchor is not None and args.extend_to is None:
        raise ValueError("--extend-anchor needs --extend-to: it places the picture on the larger canvas")
    fields = {}
    if args.init_image is not None:
        fields["init_image"] = read_input_image(args.init_image, "--init-image")
    if args.mask is not None:
        fields["mask"] = read_mask(args.mask, fields["init_image"].size, "--mask")
    if args.extend_to is not None:
        fields["extend"] = Extend.to(*_size(args.extend_to), args.extend_anchor or "center")
    if args.reference:
        fields["references"] = tuple(read_input_image(path, "--reference") for path in args.reference)
    for name in ("strength", "mask_feather"):
        if getattr(args, name) is not None:
            fields[name] = getattr(args, name)
    return fields


def _size(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"\s*(\d{1,5})\s*[xX]\s*(\d{1,5})\s*", text)
    if match is None:
        raise ValueError(f"--extend-to must be WIDTHxHEIGHT in pixels, e.g. 1024x512, got {text!r}")
    return int(match[1]), int(match[2])


def check_recorded(settings: dict, png: Path, init_image: InputImage | None, mask: Mask | None) -> None:
    """ValueError unless the input picture and mask given are the ones the saved `png` was made from.

    Only what the flags can mend is checked here; a malformed record is left to
    `request_from_settings`, which refuses it naming the field.
    """
    given = {"init_image": init_image, "mask": mask}
    source = f"--from-image {file_name(png)!r}"
    for name, (flag, what, a_what) in FLAGS.items():
        record = settings.get(name)
        if given[name] is not None and record is None:
            raise ValueError(f"{source} was made without {a_what}; leave {flag} out")
        if not isinstance(record, dict) or not isinstance(record.get("sha256"), str):
            continue
        wanted = f"{record['sha256'][:12]}... ({record.get('width')}x{record.get('height')})"
        if given[name] is None:
            raise ValueError(f"{source} was made from the {what} {wanted}; give that file as "
                             f"{flag} FILE to regenerate it")
        if given[name].sha256 != record["sha256"]:
            raise ValueError(f"{flag} {given[name].name!r} is not the {what} {file_name(png)!r} was made from: its "
                             f"SHA-256 begins {given[name].sha256[:12]}, the settings name {wanted}")


def check_recorded_references(settings: dict, png: Path, references: tuple[InputImage, ...]) -> None:
    """ValueError unless the --reference files given are, in order, the ones the saved `png` was made from."""
    records = settings.get("references")
    source = f"--from-image {file_name(png)!r}"
    if not isinstance(records, list):
        if references:
            raise ValueError(f"{source} was made without reference pictures; leave --reference out")
        return
    wanted = [f"{record['sha256'][:12]}... ({record.get('width')}x{record.get('height')})"
              for record in records if isinstance(record, dict) and isinstance(record.get("sha256"), str)]
    if len(wanted) != len(records):
        return  # malformed: request_from_settings names the field
    if len(references) != len(records):
        raise ValueError(f"{source} was made from {len(records)} reference pictures ({', '.join(wanted)}) and "
                         f"{len(references)} were given; give each as --reference FILE, in order, to regenerate it")
    for position, (item, record, named) in enumerate(zip(references, records, wanted), 1):
        if item.sha256 != record["sha256"]:
            raise ValueError(f"--reference {item.name!r} is not reference {position} of {file_name(png)!r}: its "
                             f"SHA-256 begins {item.sha256[:12]}, the settings name {named}")
