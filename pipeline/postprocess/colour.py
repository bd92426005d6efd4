"""Stage 2, colour: automatic white balance and levels, a reference picture's colours, or a palette.

    auto_color(image, strength)                  white balance + levels, conservative without a cast
    reference_statistics(reference)              what colour transfer takes from a reference:
                                                 per-channel mean and standard deviation
    apply_statistics(image, mean, std, strength) colour transfer to stored statistics
    match_reference(image, reference, strength) the two above in one call
    match_palette(image, palette, strength)      dominant colours pulled toward brand colours
"""
from __future__ import annotations

import warnings

import numpy as np
from PIL import Image

from .images import _blend, _to_array, _to_image
from .settings import HEX_COLOUR

# palette pull: lightness moves by this share of the way, and by at most this fraction of the
# pixel's own lightness (of its distance to white when darkening), so blacks stay black and
# whites white; pixels belong softly to dominant colours within about this many Lab units
LIGHTNESS_SHARE = 0.75
MAX_LIGHTNESS_CHANGE = 0.25
PALETTE_SOFTNESS = 12.0


def _rgb_to_lab(x: np.ndarray) -> np.ndarray:
    from skimage.color import rgb2lab

    return rgb2lab(x)


def _lab_to_rgb(lab: np.ndarray) -> np.ndarray:
    from skimage.color import lab2rgb

    with warnings.catch_warnings():
        # colours pushed out of the sRGB gamut are clipped, which is what we want
        warnings.simplefilter("ignore", UserWarning)
        return lab2rgb(lab)


def estimate_cast(image: Image.Image) -> tuple[float, float, float]:
    """Colour cast as (log R/G gain, log B/G gain, confidence 0..1).

    A channel gain is a translation in log-chromaticity (log R/G, log B/G), so under a cast all
    neutral surfaces share one chromaticity. The candidate is the densest chromaticity within
    a plausible range of casts. It is trusted only when the pixels at that chromaticity span a
    wide range of lightness (grey patches from dark to light, a white wall in light and shade):
    a single coloured object — an orange cat, a blue sky, a brown table — covers a narrower
    range, and treating it as grey is how white balance damages good pictures.
    """
    from scipy import ndimage

    rgb = np.asarray(image.convert("RGB"), dtype=np.float32).reshape(-1, 3)
    # clipped highlights and quantised shadows carry no chromaticity
    usable = (rgb.max(axis=1) < 250) & (rgb.min(axis=1) > 12)
    if usable.sum() < 100:
        return 0.0, 0.0, 0.0
    rgb = rgb[usable]
    u, v = np.log(rgb[:, 0] / rgb[:, 1]), np.log(rgb[:, 2] / rgb[:, 1])

    bins, span, max_cast = 160, 0.8, 0.5  # histogram bins of 0.01 in log units; casts up to x1.65
    hist, edges, _ = np.histogram2d(u, v, bins=bins, range=[[-span, span], [-span, span]])
    hist = ndimage.gaussian_filter(hist, 1.0)
    centres = (edges[:-1] + edges[1:]) / 2
    cu, cv = np.meshgrid(centres, centres, indexing="ij")
    hist[np.hypot(cu, cv) > max_cast] = 0
    i, j = np.unravel_index(np.argmax(hist), hist.shape)

    near = np.hypot(u - centres[i], v - centres[j]) < 0.03
    if near.sum() < 50:
        return 0.0, 0.0, 0.0
    lightness = _rgb_to_lab(rgb[near][None] / 255.0)[0, :, 0]
    lo, hi = np.percentile(lightness, [10, 90])
    confidence = float(np.clip((hi - lo - 20.0) / 20.0, 0.0, 1.0))  # full trust from 40 L* units
    # 8-bit rounding errs by about 0.5/value in log units: weight by inverse variance
    weight = rgb[near].min(axis=1) ** 2
    return float(np.average(u[near], weights=weight)), float(np.average(v[near], weights=weight)), confidence


def auto_levels(x: np.ndarray, clip: float = 0.005, max_gain: float = 1.1) -> np.ndarray:
    """Stretch a compressed tonal range toward 0..1, the same for all channels (greys stay grey).

    Black and white points are the 0.5% / 99.5% quantiles of the darkest / brightest channel;
    the gain is capped at 1.1 so that a deliberately low-key or soft picture is only nudged
    (scikit-image's chelsea, whose whites stop at 80%, changes by about 3 CIEDE2000 at the cap).
    """
    lo = float(np.quantile(x.min(axis=-1), clip))
    hi = float(np.quantile(x.max(axis=-1), 1.0 - clip))
    if hi - lo >= 1.0 - 1e-3:
        return x
    gain = min(1.0 / (hi - lo), max_gain)
    # the fixed point that sends lo to 0 and hi to 1 at full gain; a capped gain shares the
    # headroom between shadows and highlights the same way
    fixed = lo / (1.0 - hi + lo)
    return np.clip((x - fixed) * gain + fixed, 0.0, 1.0)


def auto_color(image: Image.Image, strength: float = 1.0) -> Image.Image:
    """Automatic white balance (see `estimate_cast`) followed by auto levels."""
    u, v, confidence = estimate_cast(image)
    x = _to_array(image)
    gains = np.exp(-confidence * np.array([u, 0.0, v], dtype=np.float32))
    # keep luma where it was: divide by the gains' weighted mean
    gains /= float(gains @ np.array([0.299, 0.587, 0.114], dtype=np.float32))
    y = auto_levels(np.clip(x * gains, 0.0, 1.0))
    return _to_image(_blend(x, y, strength))


def reference_statistics(reference: Image.Image) -> tuple[np.ndarray, np.ndarray]:
    """(mean (3,), standard deviation (3,)) of a reference's RGB channels on the 0..1 scale, float32:
    all that colour transfer (`apply_statistics`) takes from the reference picture."""
    ref = _to_array(reference).reshape(-1, 3)  # (N, 3)
    return ref.mean(axis=0), ref.std(axis=0)


def apply_statistics(image: Image.Image, mean, std, strength: float = 1.0) -> Image.Image:
    """Colour transfer by per-channel mean and standard deviation (Reinhard et al. 2001) to a
    reference's `mean` and `std` (3 values each, as `reference_statistics` gives them).

    Done on the sRGB channels: a cast is (close to) a per-channel gain there, which this undoes
    exactly, and it keeps a batch consistent with a reference of different content without the
    posterisation that full histogram matching can cause. Statistics stored as Python floats give
    the float32 values back exactly, hence the same pixels without the reference picture.
    """
    x = _to_array(image)  # (H, W, 3)
    mx, sx = x.reshape(-1, 3).mean(axis=0), x.reshape(-1, 3).std(axis=0)
    mr, sr = np.asarray(mean, dtype=np.float32), np.asarray(std, dtype=np.float32)
    y = (x - mx) / np.maximum(sx, 1e-4) * sr + mr
    return _to_image(_blend(x, np.clip(y, 0.0, 1.0), strength))


def match_reference(image: Image.Image, reference: Image.Image, strength: float = 1.0) -> Image.Image:
    """Colour transfer to the statistics of a reference picture (`apply_statistics`)."""
    return apply_statistics(image, *reference_statistics(reference), strength)


def parse_hex(colour: str) -> tuple[int, int, int]:
    """The (R, G, B) values 0..255 of a '#RRGGBB' colour."""
    if not isinstance(colour, str) or not HEX_COLOUR.fullmatch(colour):
        raise ValueError(f"{colour!r} is not a hex colour '#RRGGBB'")
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


def dominant_colours(image: Image.Image, k: int = 5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """k-means in CIELAB on a subsample: (centres (k, 3) in Lab, share of pixels (k,))."""
    from scipy.cluster.vq import kmeans2

    lab = _rgb_to_lab(_to_array(image)).reshape(-1, 3)
    step = max(1, lab.shape[0] // 40_000)  # clustering 40k pixels is as good as all of them
    sample = lab[::step]
    centres, labels = kmeans2(sample, k, minit="++", seed=np.random.default_rng(seed))
    share = np.bincount(labels, minlength=k) / labels.size
    keep = share > 0
    return centres[keep], share[keep]


def match_palette(
    image: Image.Image, palette: tuple[str, ...] | list[str], strength: float = 1.0, k: int = 5
) -> Image.Image:
    """Pull the picture's dominant colours toward the nearest palette colours.

    Every pixel is moved by a soft mix of its dominant colours' offsets (weights fall off with
    Lab distance to each dominant colour), so flat regions move as one and edges keep their
    place. Hue and chroma move fully; lightness moves less (LIGHTNESS_SHARE, MAX_LIGHTNESS_CHANGE)
    because shading is the picture's structure.
    """
    from skimage.color import deltaE_ciede2000

    if not palette:
        raise ValueError("palette must contain at least one '#RRGGBB' colour")
    targets = _rgb_to_lab(np.array([[parse_hex(c) for c in palette]], dtype=np.float64) / 255.0)[0]  # (P, 3)
    centres, _ = dominant_colours(image, k)  # (K, 3)
    distance = deltaE_ciede2000(centres[:, None, :], targets[None, :, :])  # (K, P)
    offsets = targets[distance.argmin(axis=1)] - centres  # (K, 3)
    offsets[:, 0] *= LIGHTNESS_SHARE

    x = _to_array(image)
    lab = _rgb_to_lab(x)  # (H, W, 3)
    d2 = ((lab[..., None, :] - centres) ** 2).sum(axis=-1)  # (H, W, K)
    logits = -d2 / (2 * PALETTE_SOFTNESS**2)
    weights = np.exp(logits - logits.max(axis=-1, keepdims=True))
    weights /= weights.sum(axis=-1, keepdims=True)
    shift = weights @ offsets  # (H, W, 3)
    lightness = lab[..., 0]
    shift[..., 0] = np.clip(shift[..., 0], -MAX_LIGHTNESS_CHANGE * (100.0 - lightness), MAX_LIGHTNESS_CHANGE * lightness)
    target = lab + shift
    y = np.clip(_lab_to_rgb(target), 0.0, 1.0)
    for _ in range(2):
        # colours pushed out of the sRGB gamut get clipped, which changes their lightness: put
        # the intended lightness back and let the clipping take chroma instead
        lab_y = _rgb_to_lab(y)
        lab_y[..., 0] = target[..., 0]
        y = np.clip(_lab_to_rgb(lab_y), 0.0, 1.0)
    return _to_image(_blend(x, y.astype(np.float32), strength))

