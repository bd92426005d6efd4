"""Input pictures and masks for the image modes: reading every mode, refusing bad files, fitting, extending."""
from __future__ import annotations

import hashlib
import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from pipeline import conditioning as cond


def png_header_only(path, width: int, height: int) -> None:
    """A valid PNG that claims width x height pixels but holds almost no data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b""))
                     + chunk(b"IEND", b""))


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image)


def rgb(values) -> Image.Image:
    return Image.fromarray(np.asarray(values, dtype=np.uint8))


def noise(width: int, height: int, seed: int = 0) -> Image.Image:
    return rgb(np.random.default_rng(seed).integers(0, 256, (height, width, 3)))


def refused(source, what: str = "init_image") -> str:
    with pytest.raises(ValueError) as error:
        cond.read_input_image(source, what)
    return str(error.value)


# ---------------------------------------------------------------------------------------------
# Modes: every one becomes RGB with known pixels

def test_rgba_is_composited_on_white():
    image = Image.fromarray(np.array([[[10, 20, 30, 0], [10, 20, 30, 255], [0, 0, 0, 255]]], dtype=np.uint8))
    assert image.mode == "RGBA"
    read = cond.read_input_image(image, "init_image")
    assert read.image.mode == "RGB"
    assert pixels(read.image).tolist() == [[[255, 255, 255], [10, 20, 30], [0, 0, 0]]]


def test_la_is_composited_on_white():
    image = Image.fromarray(np.array([[[10, 0], [10, 255]]], dtype=np.uint8), "LA")
    assert pixels(cond.read_input_image(image, "x").image).tolist() == [[[255, 255, 255], [10, 10, 10]]]


def test_a_palette_picture_with_a_transparent_index_from_a_file(tmp_path):
    image = Image.new("P", (3, 1))
    image.putpalette([200, 0, 0, 0, 200, 0, 0, 0, 200] + [0] * 759)
    image.putdata([0, 1, 2])
    path = tmp_path / "palette.png"
    image.save(path, transparency=1)
    assert Image.open(path).mode == "P" and "transparency" in Image.open(path).info
    read = cond.read_input_image(path, "init_image")
    assert pixels(read.image).tolist() == [[[200, 0, 0], [255, 255, 255], [0, 0, 200]]]
    image.info.pop("transparency", None)  # the same picture with no transparent index keeps its colours
    assert pixels(cond.read_input_image(image, "x").image).tolist() == [[[200, 0, 0], [0, 200, 0], [0, 0, 200]]]


def test_greyscale_and_bilevel():
    grey = Image.fromarray(np.array([[0, 77, 255]], dtype=np.uint8))
    assert pixels(cond.read_input_image(grey, "x").image).tolist() == [[[0] * 3, [77] * 3, [255] * 3]]
    bilevel = grey.convert("1")
    assert pixels(cond.read_input_image(bilevel, "x").image).tolist() == [[[0] * 3, [0] * 3, [255] * 3]]


def test_16_bit_greyscale_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 257, 32768, 65535]], dtype=np.uint16)
    expected = [[[0] * 3, [1] * 3, [128] * 3, [255] * 3]]
    image = Image.fromarray(values)
    assert image.mode == "I;16"
    assert pixels(cond.read_input_image(image, "x").image).tolist() == expected
    path = tmp_path / "deep.png"
    image.save(path)
    assert pixels(cond.read_input_image(path, "x").image).tolist() == expected
    big_endian = Image.frombytes("I;16B", (4, 1), values.astype(">u2").tobytes())
    assert pixels(cond.read_input_image(big_endian, "x").image).tolist() == expected


def test_32_bit_integers_are_read_on_the_16_bit_scale_and_floats_on_0_to_1():
    integers = Image.fromarray(np.array([[-5, 32768, 65535, 70000]], dtype=np.int32))
    assert integers.mode == "I"
    assert pixels(cond.read_input_image(integers, "x").image)[0, :, 0].tolist() == [0, 128, 255, 255]
    floats = Image.fromarray(np.array([[-1.0, 0.5, 1.0, 2.0, np.nan]], dtype=np.float32))
    assert floats.mode == "F"
    assert pixels(cond.read_input_image(floats, "x").image)[0, :, 0].tolist() == [0, 128, 255, 255, 0]


def test_cmyk_from_a_tiff_file(tmp_path):
    image = Image.new("CMYK", (3, 1))
    image.putdata([(255, 0, 0, 0), (0, 0, 0, 255), (0, 255, 255, 0)])  # cyan, black, red
    path = tmp_path / "print.tif"
    image.save(path)
    assert pixels(cond.read_input_image(path, "x").image).tolist() == [[[0, 255, 255], [0, 0, 0], [255, 0, 0]]]


def test_ycbcr():
    image = Image.new("YCbCr", (2, 1))
    image.putdata([(128, 128, 128), (76, 85, 255)])  # mid grey; pure red in JPEG's full-range YCbCr
    assert pixels(cond.read_input_image(image, "x").image).tolist() == [[[128, 128, 128], [254, 0, 0]]]


def test_exif_orientation_6_turns_the_picture_clockwise(tmp_path):
    stored = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3) * 10  # (H=2, W=3, 3)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    path = tmp_path / "phone.png"
    rgb(stored).save(path, exif=exif)
    read = cond.read_input_image(path, "init_image")
    assert np.array_equal(pixels(read.image), np.rot90(stored, k=-1))
    assert read.size == (2, 3)
    in_memory = Image.open(path)
    assert np.array_equal(pixels(cond.read_input_image(in_memory, "x").image), np.rot90(stored, k=-1))


# ---------------------------------------------------------------------------------------------
# Refusals: one sentence naming the argument and the file by its base name

def test_a_truncated_png_is_refused(tmp_path):
    data = io.BytesIO()
    noise(64, 64).save(data, "PNG")
    path = tmp_path / "cut.png"
    path.write_bytes(data.getvalue()[: len(data.getvalue()) // 2])
    message = refused(path)
    assert message == "init_image: cannot read 'cut.png' as an image: image file is truncated"
    assert str(tmp_path) not in message


def test_a_text_file_is_refused(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("a shopping list, not a picture")
    message = refused(path, "mask")
    assert message == "mask: cannot read 'notes.png' as an image: not a picture format the studio reads"
    assert str(tmp_path) not in message


def test_a_bomb_is_refused_from_its_header(tmp_path):
    path = tmp_path / "bomb.png"
    png_header_only(path, 20000, 20000)
    message = refused(path)
    assert message == ("init_image: 'bomb.png' is a decompression bomb: Image size (400000000 pixels) exceeds limit "
                       "of 178956970 pixels, could be decompression bomb DOS attack.")
    assert str(tmp_path) not in message


def test_a_picture_over_the_pixel_cap_but_under_pils_limit_is_refused_before_decoding(tmp_path):
    path = tmp_path / "large.png"
    png_header_only(path, 9000, 9000)  # 81 MP: below PIL's 89 MP, above the cap; decoding it would fail
    assert refused(path) == ("init_image: 'large.png' is 9000x9000 = 81000000 pixels; the limit is 50000000 pixels, "
                             "so use a smaller copy of it")
    assert cond.MAX_INPUT_PIXELS == 50_000_000


def test_empty_missing_and_zero_pixel_inputs_are_refused(tmp_path):
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    assert refused(empty) == "init_image: 'empty.png' is an empty file (0 bytes), not a picture"
    assert refused(tmp_path / "gone.png") == "init_image: file not found: 'gone.png'"
    assert refused(Image.new("RGB", (0, 0))) == ("init_image: the picture is 0x0 pixels; a picture needs at least "
                                                 "1 pixel on each side")
    assert refused(b"\x89PNG") == "init_image must be a file path or a PIL image, got bytes"


def test_a_huge_picture_handed_over_in_memory_is_refused():
    # A mode-1 picture of 51 MP takes 6 MB.
    assert refused(Image.new("1", (51_000, 1000))) == ("init_image: the picture is 51000x1000 = 51000000 pixels; the "
                                                        "limit is 50000000 pixels, so use a smaller copy of it")


# ---------------------------------------------------------------------------------------------
# Hashes and the metadata record

def test_file_hashes_are_of_the_bytes_stable_and_differ_between_files(tmp_path):
    first, second = tmp_path / "a.png", tmp_path / "b.png"
    noise(8, 8, seed=1).save(first)
    noise(8, 8, seed=2).save(second)
    read = cond.read_input_image(first, "init_image")
    assert read.sha256 == hashlib.sha256(first.read_bytes()).hexdigest()
    assert cond.read_input_image(first, "init_image").sha256 == read.sha256
    assert cond.read_input_image(second, "init_image").sha256 != read.sha256
    assert read.name == "a.png"
    assert cond.describe(read) == {"sha256": read.sha256, "width": 8, "height": 8}


def test_in_memory_hashes_are_of_the_size_and_the_rgb_pixels():
    picture = noise(3, 2)
    read = cond.read_input_image(picture, "x")
    assert read.sha256 == hashlib.sha256(b"3x2\n" + picture.tobytes()).hexdigest()
    assert cond.read_input_image(picture.copy(), "x").sha256 == read.sha256
    # the same bytes in another shape are another picture
    assert cond.read_input_image(picture.resize((2, 3), Image.Resampling.NEAREST), "x").sha256 != read.sha256
    # modes are normalised before hashing: an opaque RGBA copy is the same picture
    assert cond.read_input_image(picture.convert("RGBA"), "x").sha256 == read.sha256


# ---------------------------------------------------------------------------------------------
# fit: cover-crop, never stretched

def wide_picture() -> Image.Image:
    """200x100: pure red on the left and right quarters, a pattern in the centre square."""
    array = np.zeros((100, 200, 3), dtype=np.uint8)
    array[:, :, 0] = 255
    array[:, 50:150] = pixels(noise(100, 100, seed=3))
    return rgb(array)


def test_fit_keeps_the_centre_square_of_a_wide_picture():
    picture = wide_picture()
    assert cond.fit_box(picture.size, 64, 64) == (50, 0, 150, 100)
    fitted = cond.fit(picture, 64, 64)
    expected = picture.crop((50, 0, 150, 100)).resize((64, 64), Image.Resampling.LANCZOS)
    assert fitted.size == (64, 64)
    assert np.array_equal(pixels(fitted), pixels(expected))
    stretched = picture.resize((64, 64), Image.Resampling.LANCZOS)
    assert not np.array_equal(pixels(fitted), pixels(stretched))


def test_fit_boxes_of_other_shapes():
    assert cond.fit_box((100, 200), 64, 64) == (0, 50, 100, 150)  # tall: the middle of the height
    assert cond.fit_box((201, 100), 64, 64) == (50, 0, 150, 100)  # the odd pixel left over goes right
    assert cond.fit_box((300, 300), 150, 100) == (0, 50, 300, 250)
    assert cond.fit_box((64, 48), 32, 24) == (0, 0, 64, 48)  # same shape: everything kept


def test_fit_to_the_crop_size_is_the_exact_crop():
    picture = wide_picture()
    assert np.array_equal(pixels(cond.fit(picture, 100, 100)), pixels(picture)[:, 50:150])
    assert np.array_equal(pixels(cond.fit(picture, 200, 100)), pixels(picture))


def test_fit_refuses_bad_sizes_and_modes():
    with pytest.raises(ValueError, match=r"^fit width must be from 1 to 16384 pixels, got 0 \(nearest: 1\)$"):
        cond.fit(wide_picture(), 0, 64)
    with pytest.raises(ValueError, match=r"^fit height must be a whole number from 1 to 16384 pixels, got 64.0$"):
        cond.fit(wide_picture(), 64, 64.0)
    with pytest.raises(ValueError, match=r"^fit: expected an RGB picture in mode RGB, got mode RGBA$"):
        cond.fit(wide_picture().convert("RGBA"), 64, 64)


# ---------------------------------------------------------------------------------------------
# Masks

def test_a_grey_mask_is_thresholded_at_half():
    mask = Image.fromarray(np.array([[0, 127, 128, 255]], dtype=np.uint8))
    read = cond.read_mask(mask, (4, 1))
    assert read.image.mode == "L"
    assert pixels(read.image).tolist() == [[0, 0, 255, 255]]


def test_a_brush_layer_uses_its_alpha_whatever_the_brush_colour():
    # as a browser editor saves a layer: transparent black where not painted, the brush colour where painted
    layer = np.zeros((1, 4, 4), dtype=np.uint8)
    layer[0, 2:] = [0, 0, 0, 255]  # painted with a black brush
    layer[0, 1] = [0, 0, 0, 100]  # a faint stroke edge
    assert pixels(cond.read_mask(Image.fromarray(layer), (4, 1)).image).tolist() == [[0, 0, 255, 255]]
    layer[0, 1:, :3] = 255  # a white brush: the visible pixels still share one colour
    layer[0, 1, 3] = 200
    assert pixels(cond.read_mask(Image.fromarray(layer), (4, 1)).image).tolist() == [[0, 255, 255, 255]]


def test_an_opaque_rgba_mask_uses_its_colours_and_a_mixed_one_colours_times_alpha():
    opaque = np.array([[[0, 0, 0, 255], [255, 255, 255, 255]]], dtype=np.uint8)
    assert pixels(cond.read_mask(Image.fromarray(opaque), (2, 1)).image).tolist() == [[0, 255]]
    mixed = np.array([[[255, 255, 255, 255], [255, 255, 255, 100], [0, 0, 0, 255], [200, 200, 200, 255]]],
                     dtype=np.uint8)
    assert pixels(cond.read_mask(Image.fromarray(mixed), (4, 1)).image).tolist() == [[255, 0, 0, 255]]


def test_a_smaller_mask_is_enlarged_by_nearest_neighbour():
    small = np.array([[0, 255], [255, 0]], dtype=np.uint8)
    read = cond.read_mask(Image.fromarray(small), (4, 4))
    assert np.array_equal(pixels(read.image), np.kron(small, np.ones((2, 2), dtype=np.uint8)))
    assert read.size == (2, 2)
    assert cond.describe(read)["width"] == 2


def test_a_mask_of_another_shape_gets_the_pictures_crop(tmp_path):
    # 8x4 mask for a 4x4 picture: the centre 4x4 is kept, then it is the picture's size already
    mask = np.zeros((4, 8), dtype=np.uint8)
    mask[:, 0:2] = 255  # outside the crop
    mask[1, 3] = 255
    path = tmp_path / "wide-mask.png"
    Image.fromarray(mask).save(path)
    read = cond.read_mask(path, (4, 4))
    assert np.array_equal(pixels(read.image), mask[:, 2:6])
    assert read.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    # 8x4 for an 8x8 picture: the centre 4x4, doubled
    assert np.array_equal(pixels(cond.read_mask(path, (8, 8)).image),
                          np.kron(mask[:, 2:6], np.ones((2, 2), dtype=np.uint8)))


def test_fit_and_fit_mask_line_up():
    # a blue band on black and the mask of the same band, 200x100 fitted to 50x50
    array = np.zeros((100, 200, 3), dtype=np.uint8)
    array[:, 90:110] = [0, 0, 255]
    mask = np.zeros((100, 200), dtype=np.uint8)
    mask[:, 90:110] = 255
    fitted = pixels(cond.fit(rgb(array), 50, 50))
    fitted_mask = pixels(cond.fit_mask(Image.fromarray(mask), 50, 50))
    assert np.array_equal(fitted_mask, np.tile(np.r_[np.zeros(20), np.full(10, 255), np.zeros(20)], (50, 1)))
    assert np.array_equal(fitted[..., 2] >= 128, fitted_mask == 255)


def test_a_mask_that_marks_nothing_is_refused(tmp_path):
    path = tmp_path / "blank.png"
    Image.new("L", (8, 8), 100).save(path)
    with pytest.raises(ValueError) as error:
        cond.read_mask(path, (8, 8))
    assert str(error.value) == "mask: 'blank.png' marks nothing to repaint; paint white where the picture should change"
    with pytest.raises(ValueError) as error:
        cond.read_mask(Image.new("RGBA", (8, 8)), (8, 8))  # a brush layer with nothing painted
    assert str(error.value) == "mask: the mask marks nothing to repaint; paint white where the picture should change"


def test_a_mark_lost_in_the_resize_is_refused():
    mask = np.zeros((8, 8), dtype=np.uint8)
    mask[0, 0] = 255  # nearest neighbour at a quarter of the size samples pixels 2 and 6
    with pytest.raises(ValueError) as error:
        cond.read_mask(Image.fromarray(mask), (2, 2))
    assert str(error.value) == ("mask: the mask marks nothing to repaint once fitted to 2x2; its marks are too thin "
                                "to survive the resize, so paint them wider")


def test_a_mask_is_read_with_the_same_refusals(tmp_path):
    path = tmp_path / "mask.png"
    png_header_only(path, 9000, 9000)
    with pytest.raises(ValueError, match=r"^mask: 'mask.png' is 9000x9000 = 81000000 pixels"):
        cond.read_mask(path, (64, 64))
    with pytest.raises(ValueError, match=r"^mask: the size must be a \(width, height\) tuple, got \[64, 64\]$"):
        cond.read_mask(Image.new("L", (4, 4), 255), [64, 64])


# ---------------------------------------------------------------------------------------------
# feather

def edge_mask() -> Image.Image:
    mask = np.zeros((6, 40), dtype=np.uint8)
    mask[:, 20:] = 255
    return Image.fromarray(mask)


def test_feather_0_is_the_hard_binary_mask():
    assert np.array_equal(pixels(cond.feather(edge_mask(), 0)), pixels(edge_mask()))


@pytest.mark.parametrize("radius", [1, 4, 9])
def test_feather_softens_only_within_its_radius(radius):
    row = pixels(cond.feather(edge_mask(), radius))[3].astype(int)
    assert (row[: 20 - radius] == 0).all() and (row[20 + radius:] == 255).all()
    assert (np.diff(row) >= 0).all()  # rising monotonically across the edge
    assert 0 < row[19] < 128 <= row[20] < 255  # softened on both sides of the edge


def test_a_wider_feather_is_softer_near_the_edge():
    rows = [pixels(cond.feather(edge_mask(), radius))[3].astype(int) for radius in (2, 6, 12)]
    assert rows[0][18] < rows[1][18] < rows[2][18]
    assert rows[0][21] > rows[1][21] > rows[2][21]


def test_feather_keeps_a_mask_that_reaches_the_border_white_there():
    mask = np.zeros((10, 10), dtype=np.uint8)
    mask[:, :3] = 255
    assert (pixels(cond.feather(Image.fromarray(mask), 2))[:, 0] == 255).all()


def test_feather_refuses_radii_outside_its_range():
    for radius, message in ((65, "must be from 0 to 64 pixels, got 65 (nearest: 64)"),
                            (-1, "must be from 0 to 64 pixels, got -1 (nearest: 0)"),
                            (1.5, "must be a whole number from 0 to 64 pixels, got 1.5")):
        with pytest.raises(ValueError) as error:
            cond.feather(edge_mask(), radius)
        assert str(error.value) == f"feather {message}"


# ---------------------------------------------------------------------------------------------
# extend

def test_extend_puts_the_picture_in_the_middle_unchanged():
    picture = noise(64, 64, seed=4)
    canvas, mask = cond.extend(picture, 128, 64)
    canvas, mask = pixels(canvas), pixels(mask)
    assert canvas.shape == (64, 128, 3) and mask.shape == (64, 128)
    assert np.array_equal(canvas[:, 32:96], pixels(picture))
    assert (mask[:, :32] == 255).all() and (mask[:, 96:] == 255).all() and (mask[:, 32:96] == 0).all()
    # the border repeats the picture's edge columns
    assert np.array_equal(canvas[:, :32], np.repeat(pixels(picture)[:, :1], 32, axis=1))
    assert np.array_equal(canvas[:, 96:], np.repeat(pixels(picture)[:, -1:], 32, axis=1))


def test_extend_scales_the_picture_to_fit_inside_at_its_anchor():
    picture = noise(32, 32, seed=5)
    canvas, mask = cond.extend(picture, 96, 64, anchor="right")
    expected = picture.resize((64, 64), Image.Resampling.LANCZOS)
    assert np.array_equal(pixels(canvas)[:, 32:], pixels(expected))
    assert (pixels(mask)[:, :32] == 255).all() and (pixels(mask)[:, 32:] == 0).all()
    canvas, mask = cond.extend(picture, 32, 40, anchor="top-left")
    assert np.array_equal(pixels(canvas)[:32], pixels(picture))
    assert (pixels(mask)[32:] == 255).all() and (pixels(mask)[:32] == 0).all()


def test_extend_refuses_a_size_the_picture_fills_and_unknown_anchors():
    with pytest.raises(ValueError) as error:
        cond.extend(noise(32, 16), 64, 32)
    assert str(error.value) == ("extend: a 32x16 picture scaled to fit 64x32 fills it, leaving no border to paint; "
                                "choose a size of another shape")
    with pytest.raises(ValueError, match=r"^extend: anchor must be one of center, top, .*, got 'middle'$"):
        cond.extend(noise(32, 16), 64, 64, anchor="middle")


def test_extend_by_adds_the_given_border():
    picture = noise(16, 8, seed=6)
    canvas, mask = cond.extend_by(picture, 10, 0, 5, 3)
    assert canvas.size == (31, 11)
    assert np.array_equal(pixels(canvas)[:8, 10:26], pixels(picture))
    expected = np.full((11, 31), 255, dtype=np.uint8)
    expected[:8, 10:26] = 0
    assert np.array_equal(pixels(mask), expected)
    assert np.array_equal(pixels(canvas)[10, 0], pixels(picture)[7, 0])  # the corner repeats the corner


@pytest.mark.parametrize("extend, picture, multiple, passes", [
    # 2:1 from a square: 64 -> 88 -> 128 wide, each about 1.4 times the last, equal on both sides.
    (cond.Extend.to(128, 64), (64, 64), 8, [(12, 0, 12, 0), (20, 0, 20, 0)]),
    # Scaled to 48x48 first; the whole border on the right, where the anchor leaves it.
    (cond.Extend.to(96, 48, anchor="left"), (64, 64), 8, [(0, 0, 16, 0), (0, 0, 32, 0)]),
    (cond.Extend.to(1200, 640, anchor="top-left"), (1024, 1024), 16, [(0, 0, 240, 0), (0, 0, 320, 0)]),
    # 4:1 in four passes; each side grows in proportion to its final width.
    (cond.Extend.to(256, 64, anchor="right"), (64, 64), 8, [(24, 0, 0, 0), (40, 0, 0, 0), (56, 0, 0, 0),
                                                           (72, 0, 0, 0)]),
    # 72x128 in two passes; no width between 64 and 72 is a multiple of 8, so the left side waits.
    (cond.Extend.by(left=8, top=48, bottom=16), (64, 64), 8, [(0, 18, 0, 6), (8, 30, 0, 10)]),
    # Within MAX_PASS_GROWTH: one pass.
    (cond.Extend.to(96, 64), (64, 64), 8, [(16, 0, 16, 0)]),
    (cond.Extend.by(left=3, top=5), (60, 60), 1, [(3, 5, 0, 0)]),
    # No size between the picture's and the canvas's is a multiple of 32: one pass.
    (cond.Extend.to(64, 32, anchor="left"), (32, 32), 32, [(0, 0, 32, 0)]),
])
def test_a_wide_border_is_painted_in_passes_that_grow_the_canvas_by_at_most_half(extend, picture, multiple, passes):
    assert extend.passes(picture, multiple) == passes
    (width, height), left, top = extend.placement(picture)
    assert [sum(side) for side in zip(*passes)] == [left, top, extend.size(picture)[0] - width - left,
                                                    extend.size(picture)[1] - height - top]
    for sides in passes[:-1]:
        width, height = width + sides[0] + sides[2], height + sides[1] + sides[3]
        assert width % multiple == 0 and height % multiple == 0


def test_passes_of_extend_by_give_the_canvas_of_one_extend():
    picture = noise(64, 64, seed=7)
    canvas = picture
    for sides in cond.Extend.to(128, 64).passes((64, 64), 8):
        canvas, mask = cond.extend_by(canvas, *sides)
    whole, whole_mask = cond.extend(picture, 128, 64)
    assert np.array_equal(pixels(canvas), pixels(whole))  # the border repeats the edge through every pass
    # The last pass paints the outer 20 pixels on each side.
    painted = pixels(mask) == 255
    assert painted[:, :20].all() and painted[:, 108:].all() and not painted[:, 20:108].any()


def test_extend_by_refuses_out_of_range_sides():
    with pytest.raises(ValueError, match=r"^right must be from 0 to 2048 pixels, got 5000 \(nearest: 2048\)$"):
        cond.extend_by(noise(8, 8), 0, 0, 5000, 0)
    with pytest.raises(ValueError, match=r"^extend_by: left, top, right and bottom are all 0"):
        cond.extend_by(noise(8, 8), 0, 0, 0, 0)
