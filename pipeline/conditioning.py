"""Input pictures for the image modes: read them, validate them, fit them to the requested size.

Image-to-image, inpainting, extend (outpainting) and reference editing start from pictures a
visitor uploads. Everything here is a pure function with explicit arguments and no model code:

    read_input_image(source, what)              a file or PIL image -> InputImage (RGB, SHA-256, size)
    read_mask(source, size, what)               -> Mask: binary L, white = repaint, at `size`
    feather(mask, pixels)                       a soft edge fading over `pixels` on each side
    fit_box(size, width, height)                the centred crop of the target's aspect ratio
    fit(image, width, height)                   cover-crop + LANCZOS, never stretched
    fit_mask(mask, width, height)               the same crop + nearest neighbour, stays binary
    extend(image, width, height, anchor)        contain + a border to paint -> (canvas, mask)
    placement(size, width, height, anchor)      where `extend` puts the picture: (size, left, top)
    extend_by(image, left, top, right, bottom)  a border of given widths    -> (canvas, mask)
    Extend                                      a request's outpainting settings: to a size or by sides,
                                                and the passes that paint its border
    composite(generated, original, mask)        inpainting's kept pixels put back exactly
    describe(item)                              the record for the PNG metadata

Every refusal is a ValueError sentence that names the argument (`what`) and the file by its base
name only: an upload lives in a server folder that a visitor has no business seeing.
"""
from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from pipeline.postprocess.images import load_image, reason
from pipeline.postprocess.settings import file_name, shown

# Refused from the file's header, before decoding: 50 megapixels decode to 150 MB of RGB.
# PIL's own decompression-bomb limit (Image.MAX_IMAGE_PIXELS) applies as well.
MAX_INPUT_PIXELS = 50_000_000
# The largest side of a fitted or extended picture, as for a request's width and height.
MAX_SIDE = 16384
MAX_FEATHER = 64  # pixels
MAX_EXTEND = 2048  # pixels added on one side by extend_by
# Extend paints a wide border in passes, each growing the canvas's width and height by at most
# this factor (`Extend.passes`). A border drawn from noise follows the prompt as it reads on the
# canvas being painted, and a wide one leaves the denoiser room to draw the prompt's subject a
# second time there; a narrower strip beside a picture follows the picture.
MAX_PASS_GROWTH = Fraction(3, 2)
# A mask pixel at or above this grey value is repainted.
MASK_THRESHOLD = 128
# Where `extend` puts the picture: halves of the free space to its left and above it.
ANCHORS = {
    "center": (1, 1), "top": (1, 0), "bottom": (1, 2), "left": (0, 1), "right": (2, 1),
    "top-left": (0, 0), "top-right": (2, 0), "bottom-left": (0, 2), "bottom-right": (2, 2),
}
# Full scale of the modes PIL keeps in more than 8 bits: I;16 is 16-bit unsigned; I is read on
# the same 16-bit scale (older Pillow versions and some formats open 16-bit greyscale as I);
# F on the 0..1 scale of float pictures. Values outside the scale are clipped.
_FULL_SCALE = {"I;16": 65535, "I;16L": 65535, "I;16B": 65535, "I;16N": 65535, "I": 65535, "F": 1.0}
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")

Source = str | os.PathLike | Image.Image


@dataclass(frozen=True)
class InputImage:
    """A picture read for an image mode.

    image: RGB, EXIF orientation applied, at its full size (fitting makes new pictures).
    sha256: hex SHA-256 of the file's bytes when read from a file; when given a PIL image, of
        b"WIDTHxHEIGHT\\n" followed by the normalised RGB pixels, row by row.
    size: (width, height) as read, after the EXIF orientation.
    name: the file's base name, "" for a PIL image.
    """

    image: Image.Image
    sha256: str
    size: tuple[int, int]
    name: str = ""


@dataclass(frozen=True)
class Mask:
    """A mask read for inpainting: mode L, 255 where the picture is repainted and 0 where it is kept.

    image: already fitted to the size of the picture it goes with.
    sha256: of the file's bytes, or for a PIL image of b"WIDTHxHEIGHT\\n" followed by the binary
        mask at its own size, row by row.
    size: (width, height) of the mask as read, before fitting.
    name: the file's base name, "" for a PIL image.
    """

    image: Image.Image
    sha256: str
    size: tuple[int, int]
    name: str = ""


def read_input_image(source: Source, what: str) -> InputImage:
    """Read a picture from a path or a PIL image, refuse what cannot be used, normalise it to RGB.

    Refused with a sentence naming `what`: a missing, empty, unreadable, truncated or non-picture
    file; one over MAX_INPUT_PIXELS (from its header, before decoding) or PIL's bomb limit; a
    picture of zero pixels. An animated file gives its first frame. Mode rules: see `to_rgb`.
    """
    image, digest, name = _read(source, what)
    rgb = to_rgb(image)
    return InputImage(rgb, digest or _pixel_sha256(rgb), rgb.size, name)


def to_rgb(image: Image.Image) -> Image.Image:
    """`image` in RGB, whatever its mode.

    Transparency (RGBA, LA, PA, premultiplied modes, P / L / RGB with a transparent colour) is
    composited on white. I;16 is scaled from 16 to 8 bits (v * 255 / 65535, rounded), I the same,
    F from 0..1; see _FULL_SCALE. CMYK and YCbCr use PIL's conversions. Embedded ICC profiles are
    not applied: the values are read as sRGB.
    """
    if image.mode in _FULL_SCALE:
        return _eight_bit(image).convert("RGB")
    if _has_alpha(image):
        white = Image.new("RGBA", image.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, image.convert("RGBA")).convert("RGB")
    return image.convert("RGB")


def read_mask(source: Source, size: tuple[int, int], what: str = "mask") -> Mask:
    """Read an inpainting mask (white = repaint) and fit it to the picture's `size`.

    Grey values: a mask with transparency that is not opaque everywhere is a brush layer when
    every visible pixel (alpha > 0) has the same colour, as a browser editor saves one: its
    alpha is the mask, whatever the brush colour. Other transparent masks are their luminance
    times alpha (transparent = keep); opaque masks, of any mode, their luminance.
    The mask is then binary: repainted where the grey value is at least MASK_THRESHOLD.
    A mask of another size is fitted with `fit_mask`: the centred crop of the picture's aspect
    ratio (as `fit` takes), resized by nearest neighbour so that edges stay exact.
    """
    width, height = _check_target(size, what)
    image, digest, name = _read(source, what)
    binary = _binary(_mask_values(image))
    label = repr(name) if name else "the mask"
    if binary.getbbox() is None:
        raise ValueError(f"{what}: {label} marks nothing to repaint; paint white where the picture should change")
    fitted = binary if binary.size == (width, height) else fit_mask(binary, width, height)
    if fitted.getbbox() is None:
        raise ValueError(f"{what}: {label} marks nothing to repaint once fitted to {width}x{height}; "
                         "its marks are too thin to survive the resize, so paint them wider")
    return Mask(fitted, digest or _pixel_sha256(binary), binary.size, name)


def feather(mask: Image.Image, pixels: int) -> Image.Image:
    """A soft edge on a binary L mask: a Gaussian blur (sigma = pixels / 3, the kernel cut at
    `pixels`), so the edge fades over `pixels` on each side and the mask farther than that from
    an edge is unchanged. 0 leaves it hard. The picture's border is replicated, so a mask that
    reaches the border stays white there."""
    _check_mode(mask, "L", "feather", "a mask")
    _check_whole("feather", pixels, 0, MAX_FEATHER)
    if pixels == 0:
        return mask.copy()
    import cv2

    side = 2 * pixels + 1
    blurred = cv2.GaussianBlur(np.asarray(mask), (side, side), sigmaX=pixels / 3, sigmaY=pixels / 3,
                               borderType=cv2.BORDER_REPLICATE)  # (H, W) uint8
    return Image.fromarray(blurred)


def fit_box(size: tuple[int, int], width: int, height: int) -> tuple[int, int, int, int]:
    """(left, top, right, bottom): the largest centred crop of a picture of `size` that has the
    aspect ratio of width x height, its side rounded to whole pixels. An odd leftover pixel goes
    to the right or the bottom."""
    _check_target((width, height), "fit")
    source_width, source_height = size
    if source_width * height > width * source_height:  # wider than the target: keep the full height
        crop_width = min(source_width, max(1, round(source_height * width / height)))
        crop_height = source_height
    else:
        crop_width = source_width
        crop_height = min(source_height, max(1, round(source_width * height / width)))
    left = (source_width - crop_width) // 2
    top = (source_height - crop_height) // 2
    return left, top, left + crop_width, top + crop_height


def fit(image: Image.Image, width: int, height: int) -> Image.Image:
    """An RGB picture cover-cropped to width x height: the `fit_box` crop, resized with LANCZOS
    (shrinking or enlarging), so the aspect ratio is never changed. Only the kept pixels reach
    the result."""
    _check_mode(image, "RGB", "fit", "an RGB picture")
    return _crop_resize(image, width, height, Image.Resampling.LANCZOS)


def fit_mask(mask: Image.Image, width: int, height: int) -> Image.Image:
    """A binary L mask fitted with the same crop as `fit`, resized by nearest neighbour: each
    pixel takes the mask's value at its centre, so the mask stays binary and lines up with the
    picture fitted from the same size."""
    _check_mode(mask, "L", "fit_mask", "a mask")
    return _crop_resize(mask, width, height, Image.Resampling.NEAREST)


def extend(image: Image.Image, width: int, height: int, anchor: str = "center") -> tuple[Image.Image, Image.Image]:
    """Outpainting: the RGB picture scaled to fit inside width x height (never cropped; LANCZOS)
    and placed at `anchor` on a canvas of that size. Returns (canvas, mask): the canvas border
    repeats the picture's edge pixels outward so the denoiser starts from plausible colours; the
    mask is 255 on the border and 0 on the picture."""
    _check_mode(image, "RGB", "extend", "an RGB picture")
    inner, left, top = placement(image.size, width, height, anchor)
    picture = image if inner == image.size else image.resize(inner, Image.Resampling.LANCZOS)
    return _pad(picture, left, top, width - inner[0] - left, height - inner[1] - top)


def placement(picture: tuple[int, int], width: int, height: int, anchor: str = "center") -> tuple[tuple[int, int],
                                                                                                    int, int]:
    """Where `extend` puts a picture of size `picture` on a width x height canvas: (its size there,
    scaled to fit inside, its left and top offsets)."""
    _check_target((width, height), "extend")
    if anchor not in ANCHORS:
        raise ValueError(f"extend: anchor must be one of {', '.join(ANCHORS)}, got {shown(anchor)}")
    scale = min(width / picture[0], height / picture[1])
    inner = (min(width, max(1, round(picture[0] * scale))), min(height, max(1, round(picture[1] * scale))))
    if inner == (width, height):
        raise ValueError(f"extend: a {picture[0]}x{picture[1]} picture scaled to fit {width}x{height} fills it, "
                         "leaving no border to paint; choose a size of another shape")
    halves_x, halves_y = ANCHORS[anchor]
    return inner, (width - inner[0]) * halves_x // 2, (height - inner[1]) * halves_y // 2


def extend_by(image: Image.Image, left: int, top: int, right: int, bottom: int) -> tuple[Image.Image, Image.Image]:
    """Outpainting by given widths: the RGB picture unchanged, with `left`, `top`, `right` and
    `bottom` pixels (0..MAX_EXTEND each, not all 0) added around it. The border and the mask are
    made as by `extend`."""
    _check_mode(image, "RGB", "extend_by", "an RGB picture")
    sides = {"left": left, "top": top, "right": right, "bottom": bottom}
    for name, value in sides.items():
        _check_whole(name, value, 0, MAX_EXTEND)
    if not any(sides.values()):
        raise ValueError("extend_by: left, top, right and bottom are all 0; add at least 1 pixel on one side")
    _check_target((image.width + left + right, image.height + top + bottom), "the extended canvas")
    return _pad(image, left, top, right, bottom)


@dataclass(frozen=True)
class Extend:
    """Outpainting settings: a canvas of `width` x `height` with the picture placed at `anchor`
    (`extend`), or, with `width` and `height` left out, the picture with `left`, `top`, `right`
    and `bottom` pixels added around it (`extend_by`). Build them with `Extend.to` or `Extend.by`."""

    width: int | None = None
    height: int | None = None
    anchor: str = "center"
    left: int = 0
    top: int = 0
    right: int = 0
    bottom: int = 0

    def __post_init__(self) -> None:
        sides = (self.left, self.top, self.right, self.bottom)
        if (self.width is None) != (self.height is None):
            raise ValueError("extend: give both width and height of the canvas, or neither (then the sides)")
        if self.width is not None:
            _check_target((self.width, self.height), "extend")
            if any(side != 0 for side in sides):
                raise ValueError("extend: give either the canvas size or the pixels per side, not both")
        else:
            for name, value in zip(("left", "top", "right", "bottom"), sides):
                _check_whole(name, value, 0, MAX_EXTEND)
            if not any(sides):
                raise ValueError("extend: give the canvas width and height, or at least 1 pixel on one side")
        if self.anchor not in ANCHORS:
            raise ValueError(f"extend: anchor must be one of {', '.join(ANCHORS)}, got {shown(self.anchor)}")

    @classmethod
    def to(cls, width: int, height: int, anchor: str = "center") -> Extend:
        return cls(width=width, height=height, anchor=anchor)

    @classmethod
    def by(cls, left: int = 0, top: int = 0, right: int = 0, bottom: int = 0) -> Extend:
        return cls(left=left, top=top, right=right, bottom=bottom)

    def size(self, picture: tuple[int, int]) -> tuple[int, int]:
        """(width, height) of the canvas for a picture of size `picture`."""
        if self.width is not None:
            return self.width, self.height
        return picture[0] + self.left + self.right, picture[1] + self.top + self.bottom

    def canvas(self, image: Image.Image) -> tuple[Image.Image, Image.Image]:
        """(canvas, mask) for the RGB picture, by `extend` or `extend_by`."""
        if self.width is not None:
            return extend(image, self.width, self.height, self.anchor)
        return extend_by(image, self.left, self.top, self.right, self.bottom)

    def placement(self, picture: tuple[int, int]) -> tuple[tuple[int, int], int, int]:
        """(the size of a picture of size `picture` on the canvas, its left and top offsets there)."""
        if self.width is not None:
            return placement(picture, self.width, self.height, self.anchor)
        return picture, self.left, self.top

    def passes(self, picture: tuple[int, int], multiple: int) -> list[tuple[int, int, int, int]]:
        """The (left, top, right, bottom) pixels that each pass of the border's painting adds, in
        order, to the picture at its size on the canvas (`placement`); they sum to the whole border.

        As few passes as grow the canvas's width and height by at most MAX_PASS_GROWTH each, by equal
        factors. Every canvas but the last (the request's) has the nearest sides that are multiples
        of `multiple`, and each side of the border grows in proportion to its final width."""
        width, height = self.size(picture)
        (inner_width, inner_height), left, top = self.placement(picture)
        extra_width, extra_height = width - inner_width, height - inner_height
        growth = max(Fraction(width, inner_width), Fraction(height, inner_height))
        count = 1
        while MAX_PASS_GROWTH ** count < growth:
            count += 1
        sizes = [(inner_width, inner_height)]  # the picture's, then each pass's canvas
        for index in range(1, count + 1):
            size = (_grown(inner_width, width, index / count, multiple),
                    _grown(inner_height, height, index / count, multiple))
            if size not in sizes:
                sizes.append(size)
        placed = [(0, 0, 0, 0)]  # the border around the picture on each canvas, from none
        for canvas_width, canvas_height in sizes[1:]:
            added_x, added_y = canvas_width - inner_width, canvas_height - inner_height
            pass_left, pass_top = _share(left, extra_width, added_x), _share(top, extra_height, added_y)
            placed.append((pass_left, pass_top, added_x - pass_left, added_y - pass_top))
        return [tuple(after - before for before, after in zip(previous, current))
                for previous, current in zip(placed, placed[1:])]

    def to_dict(self) -> dict[str, int | str]:
        """The record for the PNG metadata: the canvas size and anchor, or the four sides."""
        if self.width is not None:
            return {"width": self.width, "height": self.height, "anchor": self.anchor}
        return {"left": self.left, "top": self.top, "right": self.right, "bottom": self.bottom}

    @classmethod
    def from_dict(cls, record: object) -> Extend:
        if not isinstance(record, dict) or not set(record) <= {"width", "height", "anchor", "left", "top", "right",
                                                               "bottom"}:
            raise ValueError(f"stored extend must be an object of width, height and anchor, or left, top, right "
                             f"and bottom, got {shown(record)}")
        return cls(**record)


def composite(generated: Image.Image, original: Image.Image, mask: Image.Image) -> Image.Image:
    """Inpainting's last step: `generated` where the L mask is 255, `original` where it is 0, and a
    mix in between (a feathered edge). The pixels outside the mask and its feather are the
    original's, exactly, whatever the decoder made of them."""
    _check_mode(generated, "RGB", "composite", "an RGB picture")
    _check_mode(original, "RGB", "composite", "an RGB picture")
    _check_mode(mask, "L", "composite", "a mask")
    if not generated.size == original.size == mask.size:
        raise ValueError(f"composite: the generated picture, the original and the mask must have one size, got "
                         f"{generated.size}, {original.size} and {mask.size}")
    return Image.composite(generated, original, mask)


def describe(item: InputImage | Mask) -> dict[str, str | int]:
    """What the metadata records of an input: its hash and its size as read."""
    width, height = item.size
    return {"sha256": item.sha256, "width": width, "height": height}


def _read(source: Source, what: str) -> tuple[Image.Image, str | None, str]:
    """(picture with its EXIF orientation applied, SHA-256 of the file or None, base name)."""
    if isinstance(source, Image.Image):
        _check_pixels(source.size, what, "the picture")
        try:
            source.load()  # a picture opened lazily by the caller is decoded here
        except Exception as e:  # noqa: BLE001 - PIL's decoders raise OSError, SyntaxError, ValueError, ...
            raise ValueError(f"{what}: cannot read the picture: {_one_line(e)}") from None
        return _oriented(source, what, "the picture"), None, ""
    if not isinstance(source, (str, os.PathLike)):
        raise ValueError(f"{what} must be a file path or a PIL image, got {type(source).__name__}")
    name = file_name(source)
    if _is_empty_file(source):
        raise ValueError(f"{what}: {name!r} is an empty file (0 bytes), not a picture")
    image = load_image(source, what, max_pixels=MAX_INPUT_PIXELS)
    _check_pixels(image.size, what, repr(name))
    try:
        with open(source, "rb") as file:
            digest = hashlib.file_digest(file, "sha256").hexdigest()
    except OSError as e:
        raise ValueError(f"{what}: cannot read {name!r}: {reason(e, source)}") from None
    return _oriented(image, what, repr(name)), digest, name


def _is_empty_file(path: str | os.PathLike) -> bool:
    try:
        return Path(path).is_file() and os.stat(path).st_size == 0
    except (OSError, ValueError):  # load_image says what is wrong with such a path
        return False


def _check_pixels(size: tuple[int, int], what: str, label: str) -> None:
    width, height = size
    if width < 1 or height < 1:
        raise ValueError(f"{what}: {label} is {width}x{height} pixels; a picture needs at least 1 pixel on each side")
    if width * height > MAX_INPUT_PIXELS:
        raise ValueError(f"{what}: {label} is {width}x{height} = {width * height} pixels; the limit is "
                         f"{MAX_INPUT_PIXELS} pixels, so use a smaller copy of it")


def _oriented(image: Image.Image, what: str, label: str) -> Image.Image:
    try:
        return ImageOps.exif_transpose(image)
    except Exception as e:  # noqa: BLE001 - a damaged EXIF block fails in PIL's parsers in many ways
        raise ValueError(f"{what}: cannot read the EXIF orientation of {label}: {_one_line(e)}") from None


def _one_line(error: BaseException, limit: int = 200) -> str:
    return " ".join(str(error).split())[:limit] or type(error).__name__


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in _ALPHA_MODES or (image.mode in ("P", "L", "RGB") and "transparency" in image.info)


def _eight_bit(image: Image.Image) -> Image.Image:
    """A high-bit-depth picture as 8-bit L, scaled from its mode's full scale."""
    full = _FULL_SCALE[image.mode]
    values = np.nan_to_num(np.asarray(image, dtype=np.float64), nan=0.0, posinf=full, neginf=0.0)  # (H, W)
    return Image.fromarray(np.clip(np.rint(values * (255 / full)), 0, 255).astype(np.uint8))


def _mask_values(image: Image.Image) -> Image.Image:
    """The mask's grey values in L by the rule in `read_mask`, before thresholding."""
    if image.mode not in _FULL_SCALE and _has_alpha(image):
        rgba = np.asarray(image.convert("RGBA"))  # (H, W, 4)
        alpha = rgba[..., 3]
        if alpha.min() < 255:
            visible = rgba[..., :3][alpha > 0]  # (N, 3)
            if (visible == visible[:1]).all():
                return Image.fromarray(alpha)
            luminance = np.asarray(Image.fromarray(rgba[..., :3]).convert("L"), dtype=np.float64)
            return Image.fromarray(np.rint(luminance * alpha / 255).astype(np.uint8))
    # Equal R, G and B come back unchanged from PIL's luminance (its weights sum to exactly 1).
    return to_rgb(image).convert("L")


def _binary(grey: Image.Image) -> Image.Image:
    return Image.fromarray(np.where(np.asarray(grey) >= MASK_THRESHOLD, 255, 0).astype(np.uint8))


def _pixel_sha256(image: Image.Image) -> str:
    return hashlib.sha256(f"{image.width}x{image.height}\n".encode() + image.tobytes()).hexdigest()


def _crop_resize(image: Image.Image, width: int, height: int, resample: Image.Resampling) -> Image.Image:
    box = fit_box(image.size, width, height)
    cropped = image.crop(box)
    return cropped if cropped.size == (width, height) else cropped.resize((width, height), resample)


def _grown(start: int, end: int, fraction: float, multiple: int) -> int:
    """The side `fraction` of the way from `start` to `end` by equal factors, at the nearest multiple
    of `multiple` from `start` up (`end` itself at the end, and where `start` is already `end`)."""
    if fraction == 1 or start == end:
        return end
    nearest = round(start * (end / start) ** fraction / multiple) * multiple
    return min(max(nearest, math.ceil(start / multiple) * multiple), end)


def _share(side: int, extra: int, added: int) -> int:
    """The pixels of `added` that go on a side that gets `side` of all `extra` pixels: in proportion, rounded."""
    return 0 if extra == 0 else (2 * side * added + extra) // (2 * extra)


def _pad(picture: Image.Image, left: int, top: int, right: int, bottom: int) -> tuple[Image.Image, Image.Image]:
    import cv2

    canvas = cv2.copyMakeBorder(np.asarray(picture), top, bottom, left, right, cv2.BORDER_REPLICATE)  # (H, W, 3)
    mask = np.full(canvas.shape[:2], 255, dtype=np.uint8)  # (H, W)
    mask[top:top + picture.height, left:left + picture.width] = 0
    return Image.fromarray(canvas), Image.fromarray(mask)


def _check_mode(image: object, mode: str, what: str, kind: str) -> None:
    if not isinstance(image, Image.Image):
        raise ValueError(f"{what}: expected {kind} (a PIL image), got {type(image).__name__}")
    if image.mode != mode:
        raise ValueError(f"{what}: expected {kind} in mode {mode}, got mode {image.mode}")


def _check_whole(name: str, value: object, low: int, high: int) -> None:
    # bool is an int subclass: True must not pass as 1.
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be a whole number from {low} to {high} pixels, got {shown(value)}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be from {low} to {high} pixels, got {value} "
                         f"(nearest: {min(max(value, low), high)})")


def _check_target(size: object, what: str) -> tuple[int, int]:
    if not isinstance(size, tuple) or len(size) != 2:
        raise ValueError(f"{what}: the size must be a (width, height) tuple, got {shown(size)}")
    width, height = size
    _check_whole(f"{what} width", width, 1, MAX_SIDE)
    _check_whole(f"{what} height", height, 1, MAX_SIDE)
    if width * height > MAX_INPUT_PIXELS:
        raise ValueError(f"{what}: {width}x{height} = {width * height} pixels is over the limit of "
                         f"{MAX_INPUT_PIXELS} pixels")
    return width, height
