"""Stage 3, upsample: classical (Lanczos + back-projection) or a learned spandrel model, in tiles."""
from __future__ import annotations

import logging
import warnings
from pathlib import Path

from PIL import Image

from .images import _to_array, _to_image, reason
from .settings import UPSCALER_SUFFIXES, file_name

log = logging.getLogger(__name__)


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
    tensors. Every problem, a broken spandrel install included, is a ValueError naming the file
    by its base name: this runs when a request is validated, before any model work.
    """
    import pickle

    spandrel = _spandrel()
    name = file_name(path)
    path = Path(path)
    if path.suffix.lower() not in UPSCALER_SUFFIXES:
        raise ValueError(f"upscaler must be a {' or '.join(UPSCALER_SUFFIXES)} file, got {name!r}")
    if not path.is_file():
        raise ValueError(f"upscaler: file not found: {name!r}")
    try:
        model = spandrel.ModelLoader(device=device).load_from_file(path)
    except pickle.UnpicklingError as e:
        if "forbidden" in str(e):  # spandrel's restricted unpickler met something other than tensors
            raise ValueError(f"upscaler: refusing {name!r}: it contains pickled objects, not only weights "
                             f"({reason(e, path)})") from None
        raise ValueError(f"upscaler: cannot read {name!r}: {reason(e, path)}") from None
    except spandrel.UnsupportedModelError:
        raise ValueError(f"upscaler: {name!r} is not a model architecture spandrel knows") from None
    except Exception as e:  # noqa: BLE001 - safetensors/torch raise many types for truncated or foreign files
        raise ValueError(f"upscaler: cannot read {name!r}: {type(e).__name__}: {reason(e, path)}") from None
    if not isinstance(model, spandrel.ImageModelDescriptor) or model.scale < 2:
        raise ValueError(f"upscaler: {name!r} is not a super-resolution model (scale {getattr(model, 'scale', '?')})")
    if model.input_channels != 3 or model.output_channels != 3:
        raise ValueError(f"upscaler: {name!r} works on {model.input_channels}-channel images, not RGB")
    return model.eval()


def _spandrel():
    """The spandrel module; a ValueError sentence when this server cannot import it, with the cause
    (which may name the server's folders) in the log only."""
    try:
        with warnings.catch_warnings():
            # spandrel imports torchvision, whose image-file extension is missing on some CPU
            # installs; spandrel never uses it
            warnings.filterwarnings("ignore", "Failed to load image Python extension", UserWarning)
            import spandrel
    except Exception as e:  # noqa: BLE001 - a torchvision built for another torch fails with RuntimeError
        log.warning("learned upscaling is unavailable: spandrel does not import: %s: %s", type(e).__name__, e)
        raise ValueError(
            f"upscaler: learned upscaling is not available on this server: spandrel cannot be imported "
            f"({type(e).__name__}); leave the upscaler empty to upscale without it") from None
    return spandrel


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

