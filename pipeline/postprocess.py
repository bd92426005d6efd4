"""Post-processing of finished pictures: denoise -> colour -> upsample.

Each stage is optional and a pure function on a PIL image with explicit arguments:

    denoise(image, strength)                     non-local means (scikit-image), noise level
                                                 estimated from the image when strength is None
    auto_color(image, strength)                  white balance + levels, conservative without a cast
    match_reference(image, reference, strength) colour statistics of a reference image
    match_palette(image, palette, strength)      dominant colours pulled toward brand colours
    upscale_classical(image, factor)             Lanczos + iterative back-projection
    upscale_learned(image, model, factor)        a spandrel super-resolution model, in tiles

`PostprocessSettings` says which stages run and with what parameters (it is what goes into the
PNG metadata); `PostprocessChain` runs them in the fixed order, times each stage and keeps a
small cache of loaded learned upscalers. Measured against baselines by
`python -m pipeline evaluate-postprocess`.
"""
from __future__ import annotations

import math
import os
import re
import time
import warnings
from collections import OrderedDict
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

COLOR_MODES = ("auto", "reference", "palette")
UPSCALE_FACTORS = (1, 2, 4)
UPSCALER_SUFFIXES = (".safetensors", ".pth")
HEX_COLOUR = re.compile(r"#[0-9A-Fa-f]{6}")

# denoise strength 1.0 means "remove Gaussian noise of sigma 51 on the 0..255 scale"
DENOISE_MAX_SIGMA = 0.2
# filter strength h in units of sigma for scikit-image's sigma-aware non-local means: mean PSNR
# at sigma 20 on the evaluation photographs was 31.00 / 31.04 / 30.84 / 30.52 dB for 0.5..0.8
NLM_H_PER_SIGMA = 0.6

# palette pull: lightness moves by this share of the way, and by at most this fraction of the
# pixel's own lightness (of its distance to white when darkening), so blacks stay black and
# whites white; pixels belong softly to dominant colours within about this many Lab units
LIGHTNESS_SHARE = 0.75
MAX_LIGHTNESS_CHANGE = 0.25
PALETTE_SOFTNESS = 12.0

# Input pictures above PIL's own bomb limit are refused; outputs are capped so that x4 on a
# large picture cannot exhaust memory.
MAX_OUTPUT_PIXELS = 8192 * 8192


@dataclass(frozen=True)
class PostprocessSettings:
    """Which post-processing stages run, and how. The defaults turn everything off.

    denoise: None (off), "auto" (noise level estimated from the image) or a strength 0..1.
    color: None, "auto", "reference" (needs color_reference) or "palette" (needs color_palette).
    color_strength: 0..1, blend of the colour-corrected picture with its input.
    upscale: 1, 2 or 4; upscaler: a .safetensors/.pth super-resolution model, None = classical.
    """

    denoise: float | str | None = None
    color: str | None = None
    color_reference: str | None = None
    color_palette: tuple[str, ...] = ()
    color_strength: float = 1.0
    upscale: int = 1
    upscaler: str | None = None

    def __post_init__(self):
        if self.denoise is not None and self.denoise != "auto":
            if not _is_number(self.denoise) or not 0.0 <= self.denoise <= 1.0:
                raise ValueError(f"denoise must be None, 'auto' or a strength in 0..1, got {self.denoise!r}")
        if self.color is not None and self.color not in COLOR_MODES:
            raise ValueError(f"color must be None or one of {', '.join(COLOR_MODES)}, got {self.color!r}")
        if not _is_number(self.color_strength) or not 0.0 <= self.color_strength <= 1.0:
            raise ValueError(f"color_strength must be in 0..1, got {self.color_strength!r}")

        if isinstance(self.color_palette, str) or not isinstance(self.color_palette, (tuple, list)):
            raise ValueError(f"color_palette must be a sequence of '#RRGGBB' strings, got {self.color_palette!r}")
        object.__setattr__(self, "color_palette", tuple(self.color_palette))
        for colour in self.color_palette:
            if not isinstance(colour, str) or not HEX_COLOUR.fullmatch(colour):
                raise ValueError(f"color_palette: {colour!r} is not a hex colour '#RRGGBB'")
        if (self.color == "palette") != bool(self.color_palette):
            raise ValueError("color_palette is needed exactly when color='palette'")

        if (self.color == "reference") != (self.color_reference is not None):
            raise ValueError("color_reference is needed exactly when color='reference'")
        for name in ("color_reference", "upscaler"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, (str, os.PathLike)):
                raise ValueError(f"{name} must be a file path, got {value!r}")
            if value is not None:
                object.__setattr__(self, name, os.fspath(value))  # str, so metadata stays JSON
        if self.color_reference is not None and not Path(self.color_reference).is_file():
            raise ValueError(f"color_reference: file not found: {self.color_reference}")

        if isinstance(self.upscale, bool) or self.upscale not in UPSCALE_FACTORS:
            raise ValueError(f"upscale must be one of {', '.join(map(str, UPSCALE_FACTORS))}, got {self.upscale!r}")
        if self.upscaler is not None:
            if self.upscale == 1:
                raise ValueError("upscaler is only used with upscale 2 or 4")
            if Path(self.upscaler).suffix.lower() not in UPSCALER_SUFFIXES:
                raise ValueError(f"upscaler must be a {' or '.join(UPSCALER_SUFFIXES)} file, got {self.upscaler}")
            if not Path(self.upscaler).is_file():
                raise ValueError(f"upscaler: file not found: {self.upscaler}")

    @property
    def enabled(self) -> bool:
        return self.denoise is not None or self.color is not None or self.upscale > 1

    def to_dict(self) -> dict:
        """JSON-safe form, for PNG metadata."""
        d = asdict(self)
        d["color_palette"] = list(self.color_palette)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> PostprocessSettings:
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown post-processing settings: {', '.join(sorted(unknown))}")
        return cls(**d)  # __post_init__ validates, and turns a JSON list palette into a tuple


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


# ---------------------------------------------------------------------------------------------
# Reading pictures

def check_size(image: Image.Image, what: str = "image") -> None:
    """Refuse pictures larger than PIL's decompression-bomb limit."""
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and image.width * image.height > limit:
        raise ValueError(
            f"{what}: {image.width}x{image.height} pixels is over the limit of {limit} (decompression bomb?)"
        )


def load_image(path: str | Path, what: str = "image") -> Image.Image:
    """Open a picture fully, turning every way it can fail into a ValueError naming `what`."""
    try:
        with warnings.catch_warnings():
            # PIL only warns between 1x and 2x its pixel limit; a bomb is a bomb
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                image.load()
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as e:
        raise ValueError(f"{what}: {path} is a decompression bomb: {e}") from None
    except FileNotFoundError:
        raise ValueError(f"{what}: file not found: {path}") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise ValueError(f"{what}: cannot read {path} as an image: {e}") from None
    return image


def _to_array(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0  # (H, W, 3) in 0..1


def _to_image(x: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8), "RGB")


def _blend(before: np.ndarray, after: np.ndarray, strength: float) -> np.ndarray:
    return before + strength * (after - before)


# ---------------------------------------------------------------------------------------------
# 1. Denoise

def estimate_noise(image: Image.Image) -> float:
    """Standard deviation of Gaussian noise in the picture, on the 0..1 scale.

    Wavelet-based robust median estimator (Donoho & Johnstone 1994), via scikit-image.
    """
    from skimage.restoration import estimate_sigma

    return float(estimate_sigma(_to_array(image), channel_axis=-1, average_sigmas=True))


def denoise(image: Image.Image, strength: float | None = None) -> Image.Image:
    """Non-local means denoising (Buades et al. 2005) with scikit-image's sigma-aware weights.

    strength: 0..1, the noise level to remove as a fraction of DENOISE_MAX_SIGMA;
    None estimates the noise level from the picture, so a clean picture is left nearly alone.
    """
    from skimage.restoration import denoise_nl_means

    sigma = estimate_noise(image) if strength is None else strength * DENOISE_MAX_SIGMA
    if sigma <= 0:
        return image.convert("RGB")
    x = _to_array(image)
    y = denoise_nl_means(
        x, h=NLM_H_PER_SIGMA * sigma, sigma=sigma, patch_size=5, patch_distance=6,
        fast_mode=True, channel_axis=-1,
    )
    return _to_image(y)


# ---------------------------------------------------------------------------------------------
# 2. Colour

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


def match_reference(image: Image.Image, reference: Image.Image, strength: float = 1.0) -> Image.Image:
    """Colour transfer by per-channel mean and standard deviation (Reinhard et al. 2001).

    Done on the sRGB channels: a cast is (close to) a per-channel gain there, which this undoes
    exactly, and it keeps a batch consistent with a reference of different content without the
    posterisation that full histogram matching can cause.
    """
    x, ref = _to_array(image), _to_array(reference)
    mx, sx = x.reshape(-1, 3).mean(axis=0), x.reshape(-1, 3).std(axis=0)
    mr, sr = ref.reshape(-1, 3).mean(axis=0), ref.reshape(-1, 3).std(axis=0)
    y = (x - mx) / np.maximum(sx, 1e-4) * sr + mr
    return _to_image(_blend(x, np.clip(y, 0.0, 1.0), strength))


def parse_hex(colour: str) -> tuple[int, int, int]:
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


# ---------------------------------------------------------------------------------------------
# 3. Upsample

def upscale_classical(image: Image.Image, factor: int, iterations: int = 6) -> Image.Image:
    """Lanczos upsampling refined by iterative back-projection (Irani & Peleg 1991).

    Each iteration downsamples the estimate by area averaging, compares it with the input and
    adds the upsampled difference back, so the result is consistent with the picture it came
    from; Lanczos alone blurs what area downsampling averaged away.
    """
    import cv2

    if factor == 1:
        return image.convert("RGB")
    x = _to_array(image)
    h, w = x.shape[:2]
    size = (w * factor, h * factor)
    y = cv2.resize(x, size, interpolation=cv2.INTER_LANCZOS4)
    for _ in range(iterations):
        error = x - cv2.resize(y, (w, h), interpolation=cv2.INTER_AREA)
        y += cv2.resize(error, size, interpolation=cv2.INTER_CUBIC)
    return _to_image(y)


def load_upscaler(path: str | Path, device: str = "cpu"):
    """Load a super-resolution model with spandrel (ESRGAN, SwinIR, SPAN, ...).

    .pth files are unpickled by spandrel's restricted unpickler, which refuses anything but
    tensors; every problem with the file is a ValueError naming it (a broken spandrel install
    is a RuntimeError).
    """
    import pickle

    try:
        with warnings.catch_warnings():
            # spandrel imports torchvision, whose image-file extension is missing on some CPU
            # installs; spandrel never uses it
            warnings.filterwarnings("ignore", "Failed to load image Python extension", UserWarning)
            import spandrel
    except Exception as e:  # a torchvision built for another torch fails with RuntimeError
        raise RuntimeError(
            f"learned upscaling needs spandrel and a torchvision built for this torch: {type(e).__name__}: {e}"
        ) from None

    path = Path(path)
    if path.suffix.lower() not in UPSCALER_SUFFIXES:
        raise ValueError(f"upscaler must be a {' or '.join(UPSCALER_SUFFIXES)} file, got {path}")
    if not path.is_file():
        raise ValueError(f"upscaler: file not found: {path}")
    try:
        model = spandrel.ModelLoader(device=device).load_from_file(path)
    except pickle.UnpicklingError as e:
        if "forbidden" in str(e):  # spandrel's restricted unpickler met something other than tensors
            raise ValueError(f"upscaler: refusing {path}: it contains pickled objects, not only weights ({e})") from None
        raise ValueError(f"upscaler: cannot read {path}: {e}") from None
    except spandrel.UnsupportedModelError:
        raise ValueError(f"upscaler: {path} is not a model architecture spandrel knows") from None
    except Exception as e:  # safetensors/torch raise many types for truncated or foreign files
        raise ValueError(f"upscaler: cannot read {path}: {type(e).__name__}: {e}") from None
    if not isinstance(model, spandrel.ImageModelDescriptor) or model.scale < 2:
        raise ValueError(f"upscaler: {path} is not a super-resolution model (scale {getattr(model, 'scale', '?')})")
    if model.input_channels != 3 or model.output_channels != 3:
        raise ValueError(f"upscaler: {path} works on {model.input_channels}-channel images, not RGB")
    return model.eval()


def upscale_learned(image: Image.Image, model, factor: int, tile: int = 256, overlap: int = 32) -> Image.Image:
    """Upsample with a loaded spandrel model, `tile` input pixels at a time.

    Each tile is run with `overlap` pixels of context on every side and only its centre is kept,
    so tiles join without seams for models whose receptive field is within the overlap, and
    memory stays bounded by the tile size. Models of another scale run as often as needed and
    the result is area-resized to exactly `factor`.
    """
    import cv2
    import torch

    x = torch.from_numpy(_to_array(image)).permute(2, 0, 1)[None]  # (1, 3, H, W)
    h, w = x.shape[-2:]
    scale = 1
    while scale < factor:
        x = _run_tiled(model, x, tile, overlap)
        scale *= model.scale
    y = x[0].permute(1, 2, 0).numpy()  # (H * scale, W * scale, 3)
    if scale != factor:
        y = cv2.resize(y, (w * factor, h * factor), interpolation=cv2.INTER_AREA)
    return _to_image(y)


def _run_tiled(model, x, tile: int, overlap: int):
    import torch

    s = model.scale
    _, c, h, w = x.shape
    out = torch.empty(1, c, h * s, w * s)
    for y0 in range(0, h, tile):
        for x0 in range(0, w, tile):
            y1, x1 = min(y0 + tile, h), min(x0 + tile, w)
            py0, px0 = max(y0 - overlap, 0), max(x0 - overlap, 0)
            py1, px1 = min(y1 + overlap, h), min(x1 + overlap, w)
            patch = x[..., py0:py1, px0:px1].to(model.device)
            with torch.inference_mode():
                result = model(patch).float().cpu()  # (1, 3, (py1 - py0) * s, (px1 - px0) * s)
            out[..., y0 * s:y1 * s, x0 * s:x1 * s] = result[
                ..., (y0 - py0) * s:(y1 - py0) * s, (x0 - px0) * s:(x1 - px0) * s
            ]
    return out


# ---------------------------------------------------------------------------------------------
# The chain

class PostprocessChain:
    """Runs the enabled stages in the fixed order denoise -> colour -> upsample.

    Holds only loaded learned upscalers (a small LRU keyed by file, size and modification
    time), never per-request state, so one chain serves every request.
    """

    def __init__(self, device: str = "cpu", max_upscalers: int = 2):
        self.device = device
        self.max_upscalers = max_upscalers
        self._upscalers: OrderedDict[tuple, object] = OrderedDict()

    def upscaler(self, path: str):
        stat = Path(path).stat()
        key = (str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)
        if key in self._upscalers:
            self._upscalers.move_to_end(key)
        else:
            self._upscalers[key] = load_upscaler(path, self.device)
            while len(self._upscalers) > self.max_upscalers:
                self._upscalers.popitem(last=False)
        return self._upscalers[key]

    def __call__(self, image: Image.Image, settings: PostprocessSettings) -> tuple[Image.Image, dict[str, float]]:
        """Return the processed picture and the seconds each stage that ran took."""
        check_size(image)
        out_pixels = image.width * image.height * settings.upscale**2
        if out_pixels > MAX_OUTPUT_PIXELS:
            raise ValueError(
                f"upscale: x{settings.upscale} of {image.width}x{image.height} would be over "
                f"{MAX_OUTPUT_PIXELS} pixels"
            )
        timings: dict[str, float] = {}
        alpha = image.getchannel("A") if "A" in image.getbands() else None
        rgb = image.convert("RGB")

        # 1. Denoise
        if settings.denoise is not None:
            start = time.perf_counter()
            rgb = denoise(rgb, None if settings.denoise == "auto" else float(settings.denoise))
            timings["denoise"] = time.perf_counter() - start

        # 2. Colour
        if settings.color is not None:
            start = time.perf_counter()
            if settings.color == "auto":
                rgb = auto_color(rgb, settings.color_strength)
            elif settings.color == "reference":
                reference = load_image(settings.color_reference, "color_reference")
                rgb = match_reference(rgb, reference, settings.color_strength)
            else:
                rgb = match_palette(rgb, settings.color_palette, settings.color_strength)
            timings["color"] = time.perf_counter() - start

        # 3. Upsample
        if settings.upscale > 1:
            start = time.perf_counter()
            if settings.upscaler is None:
                rgb = upscale_classical(rgb, settings.upscale)
            else:
                rgb = upscale_learned(rgb, self.upscaler(settings.upscaler), settings.upscale)
            if alpha is not None:
                alpha = alpha.resize(rgb.size, Image.Resampling.LANCZOS)
            timings["upscale"] = time.perf_counter() - start

        if alpha is not None:
            rgb.putalpha(alpha)
        return rgb, timings
