"""Exact deliverables: named ad and social formats in exact pixels, drawn without stretching.

A designer needs 1200x628 for a link ad and 728x90 for a leaderboard, not "a 16:9 picture". A
model draws well only near its native pixel count, in sizes of its size multiple, so a
deliverable is made in four moves (`plan`, then `render`):

1. key visual: the model's size nearest in aspect to the deliverable (at most MAX_KEY_ASPECT
   to 1 either way, within the native pixel count), drawn from the prompt;
2. exact aspect: the key visual extended (outpainting, the studio's extend mode) on canvases
   that grow by at most MAX_EXTEND_STEP per side each time, so a 728x90 banner is the key
   visual extended to the side in a few steps and never one stretched picture. The last canvas
   is a size multiple wide; the box of exactly the deliverable's aspect inside it (`Plan.crop`,
   in fractional pixels) leaves out only a sliver of the painted border. With `fit="crop"` the
   box is the largest one of that aspect inside the key visual instead;
3. post-processing: denoise and colour (and a brand kit's colour statistics) on that picture;
4. exact pixels: the post-processing upscaler (x2 / x4, classical or a learned model) until the
   box is at least the deliverable's size, then one LANCZOS resize of the box to exactly it.

The same request, deliverable and settings give the same pixels: every step is seeded or pure.

    DELIVERABLES                the table, by key; `parse` also takes "WIDTHxHEIGHT"
    plan(size, limits, fit)     the sizes of each step, from the model's `ModelLimits`
    check(request, deliverable, limits, modes, ...)  render's checks, without a model
    render(studio, request, deliverable, ...) -> Rendered(image, original, settings)
    Deliverable.safe_zones      bands a page may overlay on a preview (never drawn in the file)
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from PIL import Image

from pipeline.conditioning import ANCHORS, Extend, read_input_image
from pipeline.postprocess import STAGES, PostprocessSettings, StageInputs, shown, upscale_classical, upscale_learned

if TYPE_CHECKING:
    from pipeline.brand import ColourReference
    from pipeline.request import GenerationRequest, ModelLimits, StepCallback
    from pipeline.studio import Studio

FITS = ("extend", "crop")
# A key visual wider than this (or taller) is drawn at this aspect and extended to the side:
# models draw their training shapes near square, not as 8:1 strips.
MAX_KEY_ASPECT = 2.0
# Each extend step's canvas is at most this many times the picture along the extended side: a
# model asked to paint much more than the picture it keeps paints new subjects there.
MAX_EXTEND_STEP = 2.2
# A key visual's sides are at least this many size multiples, and its pixels at least this share
# of the model's native pixel count (detail is lost below it).
MIN_KEY_MULTIPLES = 2
MIN_KEY_AREA = 0.5
MAX_SIDE = 8192
MAX_ASPECT = 16.0
# Key sizes within 1 % of the aspect are preferred to any other, then those within 5 %.
RATIO_BANDS = (0.01, 0.05)
_SIZE = re.compile(r"\s*(\d{1,5})\s*[xX]\s*(\d{1,5})\s*")


@dataclass(frozen=True)
class SafeZone:
    """A band of the deliverable that a platform covers with its own interface (pixels from the
    top-left corner, right and bottom excluded); keep text and logos out of it."""

    label: str
    left: int
    top: int
    right: int
    bottom: int

    def to_dict(self) -> dict:
        return {"label": self.label, "left": self.left, "top": self.top, "right": self.right, "bottom": self.bottom}


@dataclass(frozen=True)
class Deliverable:
    """One output format: a key for files and the command line, a title, and exact pixels."""

    key: str
    title: str
    width: int
    height: int
    safe_zones: tuple[SafeZone, ...] = field(default=())

    @property
    def size(self) -> tuple[int, int]:
        return self.width, self.height

    @property
    def label(self) -> str:
        return f"{self.title} {self.width}x{self.height}"


def _story_zones(width: int, height: int) -> tuple[SafeZone, ...]:
    # The profile bar above and the reply field below, as the big platforms draw them on 9:16.
    return (SafeZone("profile and header", 0, 0, width, round(height * 0.13)),
            SafeZone("reply and call to action", 0, height - round(height * 0.18), width, height))


def _title_safe(width: int, height: int) -> tuple[SafeZone, ...]:
    # Video title-safe area: players overlay titles and controls within 10 % of every edge.
    x, y = round(width * 0.1), round(height * 0.1)
    return (SafeZone("title safe, top", 0, 0, width, y), SafeZone("title safe, bottom", 0, height - y, width, height),
            SafeZone("title safe, left", 0, y, x, height - y), SafeZone("title safe, right", width - x, y, width, height - y))


DELIVERABLES: dict[str, Deliverable] = {d.key: d for d in (
    Deliverable("square", "Square post", 1080, 1080),
    Deliverable("portrait", "Portrait post", 1080, 1350),
    Deliverable("story", "Story", 1080, 1920, _story_zones(1080, 1920)),
    Deliverable("link", "Link ad", 1200, 628),
    Deliverable("landscape", "Landscape", 1600, 900),
    Deliverable("video", "Video thumbnail", 1280, 720, _title_safe(1280, 720)),
    Deliverable("medium-rectangle", "Medium rectangle", 300, 250),
    Deliverable("leaderboard", "Leaderboard", 728, 90),
    Deliverable("skyscraper", "Wide skyscraper", 160, 600),
    Deliverable("half-page", "Half page", 300, 600),
    Deliverable("mobile-banner", "Mobile banner", 320, 50),
    Deliverable("billboard", "Billboard", 970, 250),
)}


def parse(text: object) -> Deliverable:
    """A deliverable by its key, or a custom one from "WIDTHxHEIGHT"; ValueError in one sentence."""
    if isinstance(text, Deliverable):
        return text
    if not isinstance(text, str):
        raise ValueError(f"deliverable must be a name or WIDTHxHEIGHT, got {shown(text)}")
    name = text.strip().lower()
    if name in DELIVERABLES:
        return DELIVERABLES[name]
    match = _SIZE.fullmatch(name)
    if match is None:
        raise ValueError(f"deliverable {shown(text)} is neither a name ({', '.join(DELIVERABLES)}) nor a size "
                         "WIDTHxHEIGHT such as 1200x628")
    width, height = int(match[1]), int(match[2])
    for side, value in (("width", width), ("height", height)):
        if not 1 <= value <= MAX_SIDE:
            raise ValueError(f"deliverable {width}x{height}: {side} must be from 1 to {MAX_SIDE} pixels, got {value}")
    if max(width / height, height / width) > MAX_ASPECT:
        raise ValueError(f"deliverable {width}x{height} is {max(width / height, height / width):.1f} to 1; the "
                         f"limit is {MAX_ASPECT:g} to 1")
    return Deliverable(f"{width}x{height}", "Custom", width, height)


def parse_list(text: str) -> tuple[Deliverable, ...]:
    """Deliverables separated by commas, semicolons or spaces: "square; story, 728x90"."""
    names = [name for name in re.split(r"[,;\s]+", text or "") if name]
    if not names:
        raise ValueError("deliverables is empty; name at least one, e.g. square or 1200x628")
    return tuple(parse(name) for name in names)


@dataclass(frozen=True)
class Plan:
    """The sizes of each step for one deliverable on one model.

    key: the key visual drawn from the prompt. canvases: the extend steps' canvas sizes, in order
    (empty when the key visual has the aspect already, or with crop). crop: (left, top, right,
    bottom) on the last picture, in fractional pixels, of exactly the deliverable's aspect. size:
    the deliverable's pixels.
    """

    key: tuple[int, int]
    canvases: tuple[tuple[int, int], ...]
    crop: tuple[float, float, float, float]
    size: tuple[int, int]
    fit: str = "extend"
    anchor: str = "center"

    def to_dict(self) -> dict:
        return {"key": list(self.key), "canvases": [list(canvas) for canvas in self.canvases],
                "crop": list(self.crop), "size": list(self.size), "fit": self.fit, "anchor": self.anchor}


def key_size(ratio: float, limits: ModelLimits) -> tuple[int, int]:
    """The model's size nearest in aspect to `ratio` (clamped to MAX_KEY_ASPECT either way), with
    sides multiples of its size multiple and at least MIN_KEY_MULTIPLES of them, and from
    MIN_KEY_AREA of its native pixel count to all of it (and at most its pixel cap). Within the
    best band of RATIO_BANDS the largest wins; the model's default size when none fits. A model
    trained at one size per format (`ModelLimits.format_sizes`) draws at the one nearest in aspect
    of those within the same pixel count."""
    multiple = limits.size_multiple
    budget = min(limits.default_width * limits.default_height, limits.max_pixels)
    target = min(max(ratio, 1 / MAX_KEY_ASPECT), MAX_KEY_ASPECT)
    trained = [size for _, size in limits.format_sizes if budget * MIN_KEY_AREA <= size[0] * size[1] <= budget]
    if trained:
        return min(trained, key=lambda size: abs(math.log(size[0] / size[1] / target)))
    shortest = MIN_KEY_MULTIPLES * multiple
    best, best_cost = None, None
    for width in range(shortest, budget // shortest + 1, multiple):
        exact = width / target
        fitting = budget // width // multiple * multiple  # the tallest height within the budget
        for height in {math.floor(exact / multiple) * multiple, math.ceil(exact / multiple) * multiple, fitting}:
            if height < shortest or not budget * MIN_KEY_AREA <= width * height <= budget:
                continue
            if max(width / height, height / width) > MAX_KEY_ASPECT * (1 + 1e-9):
                continue
            error = abs(math.log(width / height / target))
            band = sum(error > math.log1p(tolerance) for tolerance in RATIO_BANDS)
            cost = (band, error, -width * height) if band == len(RATIO_BANDS) else (band, -width * height, error)
            if best_cost is None or cost < best_cost:
                best, best_cost = (width, height), cost
    return best or (limits.default_width, limits.default_height)


def plan(size: tuple[int, int], limits: ModelLimits, fit: str = "extend", anchor: str = "center") -> Plan:
    """How a deliverable of `size` pixels is made on a model with these limits (see the module)."""
    if fit not in FITS:
        raise ValueError(f"fit must be one of {', '.join(FITS)}, got {shown(fit)}")
    if anchor not in ANCHORS:
        raise ValueError(f"anchor must be one of {', '.join(ANCHORS)}, got {shown(anchor)}")
    width, height = size
    key = key_size(width / height, limits)
    if fit == "crop" or key[0] * height == key[1] * width:
        return Plan(key, (), _centred_box(key, width / height), size, fit, anchor)
    wide = width * key[1] > height * key[0]
    # Work on (extended side, other side): the key's, and the deliverable's ratio between them.
    along, across = key if wide else key[::-1]
    ratio = width / height if wide else height / width
    multiple = limits.size_multiple
    # The other side stays the key's unless the last canvas would pass the pixel cap.
    while across > multiple and math.ceil(across * ratio / multiple) * multiple * across > limits.max_pixels:
        across -= multiple
    picture = along * across / (key[1] if wide else key[0])  # the key's extended side once scaled to `across`
    final = math.ceil(across * ratio / multiple) * multiple
    steps = max(1, math.ceil(math.log(final / picture) / math.log(MAX_EXTEND_STEP) - 1e-9))
    canvases, current = [], round(picture)
    for step in range(1, steps + 1):
        grown = final if step == steps else round(picture * (final / picture) ** (step / steps) / multiple) * multiple
        if grown > current:
            canvases.append((grown, across) if wide else (across, grown))
            current = grown
    exact = across * ratio  # the extended side at exactly the deliverable's ratio
    halves_x, halves_y = ANCHORS[anchor]
    start = (final - exact) * (halves_x if wide else halves_y) / 2
    crop = (start, 0, start + exact, across) if wide else (0, start, across, start + exact)
    return Plan(key, tuple(canvases), crop, size, fit, anchor)


@dataclass
class Rendered:
    """One deliverable: the picture, the same without post-processing, and what made it (the
    deliverable's key, title, size, fit, anchor, plan, post-processing and kit colour statistics,
    and the studio's record of each generation; `metadata.deliverable_settings` makes its PNG's)."""

    image: Image.Image
    original: Image.Image
    settings: dict


def render(studio: Studio, request: GenerationRequest, deliverable: Deliverable | str, *, fit: str = "extend",
           anchor: str = "center", colour: ColourReference | None = None, on_step: StepCallback | None = None,
           keys: dict | None = None) -> Rendered:
    """Draw `request` as `deliverable` with `studio`: same inputs, same pixels.

    `request` is a text-to-image request of one image whose width and height are left out (the
    plan sets them); its denoise and colour settings run once on the exact-aspect picture, and its
    learned upscaler, if any, reaches the deliverable's pixels (its upscale factor is not used:
    the deliverable's size sets it). `colour`: a brand kit's colour statistics, matched at
    the colour stage (before a palette pull). `keys`: a dict the caller keeps to reuse key visuals
    across the deliverables of one prompt and seed. ValueError in one sentence for a request or
    deliverable that cannot be served.
    """
    deliverable, route = check(request, deliverable, studio.limits, studio.modes, fit, anchor)
    post = studio.postprocess_chain.resolve(request.postprocess)  # a colour reference recorded by its statistics
    inputs = studio.postprocess_chain.prepare(post)
    base = request.replace(postprocess=PostprocessSettings())
    key_request = base.replace(width=route.key[0], height=route.key[1])
    # By the request's repr, which names every field: a request may hold a dict, which cannot be hashed.
    cached = None if keys is None else keys.get(repr(key_request))
    key = cached or studio.generate(key_request, on_step=on_step)
    if keys is not None:
        keys[repr(key_request)] = key
    picture, records = key.images[0], [key.settings[0]]
    for canvas in route.canvases:
        extended = studio.generate(base.replace(init_image=read_input_image(picture, "key visual"),
                                                extend=Extend.to(*canvas, anchor)), on_step=on_step)
        picture = extended.images[0]
        records.append(extended.settings[0])
    processed = _postprocess(picture, post, inputs, colour)
    finished = _resize(processed, route.crop, deliverable.size, post, inputs)
    original = finished if processed is picture else _resize(picture, route.crop, deliverable.size, post, inputs)
    settings = {"key": deliverable.key, "title": deliverable.title, "width": deliverable.width,
                "height": deliverable.height, "fit": fit, "anchor": anchor, "plan": route.to_dict(),
                "postprocess": post.to_dict(), "colour_reference": None if colour is None else colour.to_dict(),
                "generations": records}
    return Rendered(finished, original, settings)


def check(request: GenerationRequest, deliverable: Deliverable | str, limits: ModelLimits, modes: tuple[str, ...],
          fit: str = "extend", anchor: str = "center") -> tuple[Deliverable, Plan]:
    """The deliverable and its plan on a model of these limits and modes, as `render` checks them
    first; ValueError in one sentence for a request or deliverable that cannot be served. It needs
    no model, so a page that reaches the model in another process refuses a bad value itself."""
    deliverable = parse(deliverable)
    _check_request(request)
    route = plan(deliverable.size, limits, fit, anchor)
    if route.canvases and "extend" not in modes:
        raise ValueError(f"deliverable {deliverable.key} needs extend (outpainting), which this model cannot do; "
                         "use fit 'crop' instead")
    return deliverable, route


def _check_request(request: GenerationRequest) -> None:
    if request.width is not None or request.height is not None:
        raise ValueError("a deliverable sets the size itself; leave width and height out of the request")
    if request.mode != "text":
        raise ValueError("a deliverable is drawn from the prompt alone; leave init_image and references out of "
                         "the request")
    if request.num_images != 1:
        raise ValueError(f"a deliverable is one picture; ask for num_images 1 (got {request.num_images}) and "
                         "change the seed for variants")


def _postprocess(image: Image.Image, settings: PostprocessSettings, inputs: StageInputs,
                 colour: ColourReference | None) -> Image.Image:
    """The chain's stages but upsampling, in its order, with the kit's statistics at the colour stage."""
    for stage in STAGES:
        if stage.name == "upscale":
            continue
        if stage.name == "color" and colour is not None:
            image = colour.apply(image)
        if stage.runs(settings):
            image = stage.apply(image, settings, inputs)
    return image


def _centred_box(size: tuple[int, int], ratio: float) -> tuple[float, float, float, float]:
    """The largest centred box of aspect `ratio` inside a picture of `size`, in fractional pixels."""
    width, height = size
    if width / height > ratio:
        inner = height * ratio
        return ((width - inner) / 2, 0.0, (width + inner) / 2, float(height))
    inner = width / ratio
    return (0.0, (height - inner) / 2, float(width), (height + inner) / 2)


def _resize(image: Image.Image, box: tuple[float, float, float, float], size: tuple[int, int],
            settings: PostprocessSettings, inputs: StageInputs) -> Image.Image:
    """The `box` of the picture at exactly `size`: x2 / x4 upsampling of the picture (the settings'
    learned upscaler, else classical) until the box is at least as large, then one LANCZOS resize
    of the box."""
    scale = 1
    while (box[2] - box[0]) * scale < size[0] or (box[3] - box[1]) * scale < size[1]:
        need = max(size[0] / ((box[2] - box[0]) * scale), size[1] / ((box[3] - box[1]) * scale))
        factor = 2 if need <= 2 else 4
        if inputs.upscaler is not None and settings.upscaler is not None:
            image = upscale_learned(image, inputs.upscaler, factor)
        else:
            image = upscale_classical(image, factor)
        scale *= factor
    return image.resize(size, Image.Resampling.LANCZOS, box=tuple(side * scale for side in box))
