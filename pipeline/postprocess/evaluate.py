"""Measurements of each post-processing stage against a baseline, and their requirements.

Test pictures are the public photographs that ship inside scikit-image (astronaut, coffee,
chelsea, rocket), so nothing is downloaded. `python -m pipeline evaluate-postprocess` prints
`run`'s rows as one table; tests/test_postprocess_quality.py calls the same functions with the
same thresholds.
"""
from __future__ import annotations

import time

import numpy as np
from PIL import Image

from .colour import auto_color, dominant_colours, match_palette, match_reference, parse_hex
from .denoising import denoise
from .upscale import upscale_classical

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")
CAST_GAINS = (1.15, 1.0, 0.78)  # R, G, B
PALETTE = ("#1D3557", "#E76F51", "#F4E3B2")  # navy, terracotta, sand
NOISE_SIGMA = 20.0  # on the 0..255 scale

# requirements each stage must meet
DENOISE_MARGIN_DB = 1.0
REFERENCE_MIN_CUT = 0.70
PALETTE_MIN_CUT = 0.50
PALETTE_MIN_SSIM = 0.90
AUTO_MAX_GREY_DE = 3.0
AUTO_MAX_PHOTO_DE = 2.0


def photos(names: tuple[str, ...] = PHOTOS) -> dict[str, np.ndarray]:
    """uint8 (H, W, 3) photographs from skimage.data, cropped to multiples of 4 (for x4 tests)."""
    from skimage import data

    out = {}
    for name in names:
        x = getattr(data, name)()[..., :3]
        out[name] = np.ascontiguousarray(x[: x.shape[0] // 4 * 4, : x.shape[1] // 4 * 4])
    return out


def apply_cast(x: np.ndarray, gains: tuple[float, float, float] = CAST_GAINS) -> np.ndarray:
    return np.clip(np.rint(x.astype(np.float64) * np.array(gains)), 0, 255).astype(np.uint8)


def grey_chart() -> tuple[np.ndarray, list[tuple[slice, slice]]]:
    """A 4x6 chart: six neutral greys and eighteen ColorChecker-like colours on a dark grey ground.

    Greys stop at 212 so that the red gain of the test cast (x1.15) does not clip them.
    Returns the uint8 picture and the (rows, cols) slices of the grey patches.
    """
    greys = [52, 84, 116, 148, 180, 212]
    colours = [
        (115, 82, 68), (194, 150, 130), (98, 122, 157), (87, 108, 67), (133, 128, 177), (103, 189, 170),
        (214, 126, 44), (80, 91, 166), (193, 90, 99), (94, 60, 108), (157, 188, 64), (224, 163, 46),
        (56, 61, 150), (70, 148, 73), (175, 54, 60), (231, 199, 31), (187, 86, 149), (8, 133, 161),
    ]
    cell, margin = 48, 6
    chart = np.full((4 * cell, 6 * cell, 3), 30, np.uint8)
    boxes = []
    for i, colour in enumerate([(g, g, g) for g in greys] + colours):
        r, c = divmod(i, 6)
        box = (slice(r * cell + margin, (r + 1) * cell - margin), slice(c * cell + margin, (c + 1) * cell - margin))
        chart[box] = colour
        if i < len(greys):
            boxes.append(box)
    return chart, boxes


def _lab(x: np.ndarray) -> np.ndarray:
    from skimage.color import rgb2lab

    return rgb2lab(x)


def _delta_e(a: np.ndarray, b: np.ndarray) -> float:
    from skimage.color import deltaE_ciede2000

    return float(deltaE_ciede2000(_lab(a), _lab(b)).mean())


def _psnr(reference: np.ndarray, x: np.ndarray) -> float:
    from skimage.metrics import peak_signal_noise_ratio

    return float(peak_signal_noise_ratio(reference, x, data_range=255))


def _array(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"))


# ---------------------------------------------------------------------------------------------
# Measurements. Each returns a dict of numbers; `passed` compares them with the requirement.

def measure_denoise(images: dict[str, np.ndarray], sigma: float = NOISE_SIGMA, seed: int = 0) -> dict:
    """PSNR after denoising Gaussian noise, ours (auto strength) vs OpenCV's usual NLM call."""
    import cv2

    rng = np.random.default_rng(seed)
    ours, base, ours_s, base_s, megapixels = [], [], 0.0, 0.0, 0.0
    for clean in images.values():
        noisy = np.clip(np.rint(clean + rng.normal(0.0, sigma, clean.shape)), 0, 255).astype(np.uint8)
        start = time.perf_counter()
        # OpenCV wants BGR; h=hColor=10, template 7, search 21
        b = cv2.fastNlMeansDenoisingColored(np.ascontiguousarray(noisy[..., ::-1]), None, 10, 10, 7, 21)[..., ::-1]
        base_s += time.perf_counter() - start
        start = time.perf_counter()
        o = _array(denoise(Image.fromarray(noisy), None))
        ours_s += time.perf_counter() - start
        base.append(_psnr(clean, b))
        ours.append(_psnr(clean, o))
        megapixels += clean.shape[0] * clean.shape[1] / 1e6
    return {
        "psnr": float(np.mean(ours)), "baseline_psnr": float(np.mean(base)),
        "s_per_mp": ours_s / megapixels, "baseline_s_per_mp": base_s / megapixels,
    }


def measure_reference(images: dict[str, np.ndarray]) -> dict:
    """Mean CIEDE2000 to the original, before and after matching a cast copy to the original."""
    before, after = [], []
    for clean in images.values():
        cast = apply_cast(clean)
        fixed = _array(match_reference(Image.fromarray(cast), Image.fromarray(clean)))
        before.append(_delta_e(clean, cast))
        after.append(_delta_e(clean, fixed))
    before_m, after_m = float(np.mean(before)), float(np.mean(after))
    return {"before": before_m, "after": after_m, "cut": 1.0 - after_m / before_m}


def palette_distance(x: np.ndarray, palette: tuple[str, ...]) -> float:
    """Share-weighted mean CIEDE2000 from the dominant colours (k-means, k=5) to the nearest palette colour."""
    from skimage.color import deltaE_ciede2000

    centres, share = dominant_colours(Image.fromarray(x), k=5)
    targets = _lab(np.array([[parse_hex(c) for c in palette]], dtype=np.float64) / 255.0)[0]
    nearest = deltaE_ciede2000(centres[:, None, :], targets[None, :, :]).min(axis=1)
    return float((nearest * share).sum() / share.sum())


def measure_palette(images: dict[str, np.ndarray], palette: tuple[str, ...] = PALETTE) -> dict:
    """Dominant-colour distance to the palette before/after (mean over the photos), and SSIM of
    the lightness channel (mean, and the worst photo, which the requirement uses)."""
    from skimage.metrics import structural_similarity

    before, after, ssim = [], [], []
    for clean in images.values():
        pulled = _array(match_palette(Image.fromarray(clean), palette))
        before.append(palette_distance(clean, palette))
        after.append(palette_distance(pulled, palette))
        ssim.append(structural_similarity(_lab(clean)[..., 0], _lab(pulled)[..., 0], data_range=100.0))
    before_m, after_m = float(np.mean(before)), float(np.mean(after))
    return {
        "before": before_m, "after": after_m, "cut": 1.0 - after_m / before_m,
        "ssim": float(np.mean(ssim)), "min_ssim": float(np.min(ssim)),
    }


def measure_auto(images: dict[str, np.ndarray]) -> dict:
    """Worst grey patch of the cast chart vs neutral, and mean change auto mode makes to good photos."""
    chart, boxes = grey_chart()

    def worst_grey(x: np.ndarray) -> float:
        from skimage.color import deltaE_ciede2000

        worst = 0.0
        for box in boxes:
            lab = _lab(x[box]).reshape(-1, 3).mean(axis=0)
            worst = max(worst, float(deltaE_ciede2000(lab, np.array([lab[0], 0.0, 0.0]))))
        return worst

    cast = apply_cast(chart)
    fixed = _array(auto_color(Image.fromarray(cast)))
    changes = [_delta_e(x, _array(auto_color(Image.fromarray(x)))) for x in images.values()]
    return {
        "grey_before": worst_grey(cast), "grey_after": worst_grey(fixed),
        "photo_change": float(np.mean(changes)),
    }


def measure_upscale(images: dict[str, np.ndarray], factor: int) -> dict:
    """PSNR of area-downscaled photos upsampled back: ours (classical) vs PIL Lanczos."""
    import cv2

    ours, base = [], []
    for clean in images.values():
        h, w = clean.shape[:2]
        small = cv2.resize(clean, (w // factor, h // factor), interpolation=cv2.INTER_AREA)
        lanczos = np.asarray(Image.fromarray(small).resize((w, h), Image.Resampling.LANCZOS))
        up = _array(upscale_classical(Image.fromarray(small), factor))
        base.append(_psnr(clean, lanczos))
        ours.append(_psnr(clean, up))
    return {"psnr": float(np.mean(ours)), "baseline_psnr": float(np.mean(base))}


def passed(check: str, m: dict) -> bool:
    """Whether measurement `m` of `check` meets its requirement."""
    if check == "denoise":
        return m["psnr"] >= m["baseline_psnr"] + DENOISE_MARGIN_DB
    if check == "reference":
        return m["cut"] >= REFERENCE_MIN_CUT
    if check == "palette":
        return m["cut"] >= PALETTE_MIN_CUT and m["min_ssim"] >= PALETTE_MIN_SSIM
    if check == "auto":
        return m["grey_after"] <= AUTO_MAX_GREY_DE and m["photo_change"] <= AUTO_MAX_PHOTO_DE
    if check.startswith("upscale"):
        return m["psnr"] >= m["baseline_psnr"]
    raise ValueError(f"unknown check {check!r}")


def run(images: dict[str, np.ndarray]) -> list[tuple[str, str, str, str, bool]]:
    """All measurements as table rows: (check, ours, baseline, requirement, passed)."""
    rows = []
    m = measure_denoise(images)
    rows.append((
        "denoise, sigma 20: mean PSNR",
        f"{m['psnr']:.2f} dB ({m['s_per_mp']:.2f} s/MP)",
        f"{m['baseline_psnr']:.2f} dB ({m['baseline_s_per_mp']:.2f} s/MP) OpenCV NLM h=10",
        f">= baseline + {DENOISE_MARGIN_DB:g} dB", passed("denoise", m),
    ))
    m = measure_reference(images)
    rows.append((
        "reference colour: mean CIEDE2000",
        f"{m['after']:.2f} (cut {m['cut']:.0%})", f"{m['before']:.2f} with cast",
        f"cut >= {REFERENCE_MIN_CUT:.0%}", passed("reference", m),
    ))
    m = measure_palette(images)
    rows.append((
        "palette: dominant-colour distance",
        f"{m['after']:.2f} (cut {m['cut']:.0%}), L SSIM {m['ssim']:.3f} (worst {m['min_ssim']:.3f})",
        f"{m['before']:.2f} before",
        f"cut >= {PALETTE_MIN_CUT:.0%}, SSIM >= {PALETTE_MIN_SSIM:g} each", passed("palette", m),
    ))
    m = measure_auto(images)
    rows.append((
        "auto colour: chart greys / photos",
        f"worst grey {m['grey_after']:.2f}, photos changed {m['photo_change']:.2f}",
        f"worst grey {m['grey_before']:.2f} with cast",
        f"grey <= {AUTO_MAX_GREY_DE:g}, photos <= {AUTO_MAX_PHOTO_DE:g}", passed("auto", m),
    ))
    for factor in (2, 4):
        m = measure_upscale(images, factor)
        rows.append((
            f"upscale x{factor}: mean PSNR", f"{m['psnr']:.2f} dB", f"{m['baseline_psnr']:.2f} dB PIL Lanczos",
            ">= baseline", passed(f"upscale{factor}", m),
        ))
    return rows


def format_table(rows: list[tuple[str, str, str, str, bool]]) -> str:
    """`run`'s rows as an aligned text table, with a last column "pass"."""
    header = ("check", "ours", "baseline", "requirement", "pass")
    cells = [header] + [(*r[:4], "yes" if r[4] else "NO") for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = [" | ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)
