"""Speed of the studio against the stock diffusers call, on the same components in the same run.

`measure` returns every number of `python -m pipeline bench` as medians of repeated runs after a
warm-up, the runs compared with each other interleaved (`timing.interleaved`), each with its
spread; `format_table` lays them out with their ratios to the stock call, their min-max, and a
warning under the table for every run whose spread is wider than `timing.SPREAD_LIMIT`. `arch.build_arch`
gives real-size architectures with random weights, so speed can be measured with no download.
"""
from __future__ import annotations

import inspect
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pipeline.benchmark.timing import interleaved, span, spread_warnings

BATCH_PROMPTS = [
    "a large red circle on the left, blue background",
    "a small green triangle at the top on a white background",
    "yellow background with a big purple square in the middle",
    "little orange circle, bottom, black background",
]
IMAGE_STRENGTH = 0.5
# The runs' names in the spread warnings.
LABELS = {"stock": "stock diffusers __call__", "studio_cold": "studio, cold prompt",
          "studio_warm": "studio, warm prompt", "encode": "LLM prompt encoding alone",
          "sequential": "4 requests one by one", "batch4": "4 requests as one batch",
          "img2img": "studio image-to-image", "img2img_stock": "stock image-to-image",
          "extend": "extend to 2:1 in passes", "extend_once": "the same canvas inpainted at once"}
# Text-to-image pipeline -> diffusers' own image-to-image pipeline for that family, the stock
# comparison of the studio's image-to-image (built with `from_pipe`: the same components).
STOCK_IMAGE_TO_IMAGE = {
    "ZImagePipeline": "ZImageImg2ImgPipeline",
    "QwenImagePipeline": "QwenImageImg2ImgPipeline",
    "SanaSprintPipeline": "SanaSprintImg2ImgPipeline",
}


def _first_image_seconds(model: str, device: str, request) -> float:
    with tempfile.TemporaryDirectory() as out:
        command = [sys.executable, "-m", "pipeline", "generate", "--model", model, "--device", device,
                   "--prompt", request.prompt, "--steps", str(request.steps), "--width", str(request.width),
                   "--height", str(request.height), "--out", out]
        started = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True, cwd=Path(__file__).resolve().parents[2])
        return time.perf_counter() - started


def measure(studio, request, repeat: int, *, first_image: bool) -> dict:
    """All bench numbers for one loaded studio and one resolved request."""
    import torch

    from pipeline.families import encode_prompt

    cuda = studio.device.startswith("cuda")
    synchronize = torch.cuda.synchronize if cuda else (lambda: None)
    pipe, family = studio.pipe, studio.family
    stock_kwargs = {
        **family.call_kwargs(request.steps, request.guidance), **studio.source.encode_options,
        "num_inference_steps": request.steps, "width": request.width, "height": request.height,
    }
    if (family.uses_negative_prompt and studio.limits.uses_negative_prompt
            and "negative_prompt" in inspect.signature(pipe.__call__).parameters):
        stock_kwargs["negative_prompt"] = request.negative_prompt

    def stock():
        generator = torch.Generator("cpu").manual_seed(request.seed)
        pipe(prompt=request.prompt, generator=generator, **stock_kwargs)

    cold_timings = []

    def studio_cold():
        studio.clear_cache()
        cold_timings.append(studio.generate(request).timings)

    seeds = iter(range(request.seed + 1, request.seed + 10_000))

    def studio_warm():
        studio.generate(request.replace(seed=next(seeds)))

    cfg = family.cfg_active(request.guidance, pipe)

    def encode():
        encode_prompt(family, pipe, request.prompt, request.negative_prompt, cfg, studio.source.encode_options)

    batch = [request.replace(prompt=prompt, seed=request.seed + index) for index, prompt in enumerate(BATCH_PROMPTS)]

    def one_by_one():
        studio.clear_cache()
        for item in batch:
            studio.generate(item)

    def batched():
        studio.clear_cache()
        studio.generate_batch(batch)

    with torch.no_grad():
        single = interleaved({"stock": stock, "studio_cold": studio_cold, "studio_warm": studio_warm,
                              "encode": encode}, repeat, synchronize)
        batches = interleaved({"sequential": one_by_one, "batch4": batched}, repeat, synchronize)
        spreads = {name: timing.summary() for name, timing in {**single, **batches}.items()}
        results = {
            **{f"{name}_s": timing.median for name, timing in single.items()},
            "sequential_images_per_s": len(batch) / batches["sequential"].median,
            "batch4_images_per_s": len(batch) / batches["batch4"].median,
            "spreads": spreads,
        }
        picture = studio.generate(request).images[0]  # the image modes' input
        results.update(_image_to_image(studio, request, picture, stock_kwargs, repeat, synchronize,
                                       results["studio_warm_s"], spreads))
        results.update(_extend(studio, request, picture, repeat, synchronize, spreads))
    for stage in ("encode", "denoise", "decode", "postprocess"):
        results[f"stage_{stage}_s"] = statistics.median(timing[stage] for timing in cold_timings[1:])
    results["first_image_s"] = (_first_image_seconds(studio.source.reference, studio.device, request)
                                if first_image else None)
    results["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    results["cuda_max_allocated_mb"] = torch.cuda.max_memory_allocated() / 2**20 if cuda else None
    return results


def _image_to_image(studio, request, picture, stock_kwargs: dict, repeat: int, synchronize, text_warm_s: float,
                    spreads: dict) -> dict:
    """The studio's image-to-image at IMAGE_STRENGTH with a warm prompt (only the seed changes), its
    ratio to the studio's warm text-to-image, and the family's stock diffusers image-to-image call
    on the same components where diffusers has one, the two interleaved; their spreads go into
    `spreads`. The input is `picture`, the studio's own text-to-image picture of the request."""
    import torch

    from pipeline.conditioning import read_input_image
    from pipeline.image_modes import fitted_inputs

    results = {"img2img_strength": IMAGE_STRENGTH, "img2img_s": None, "img2img_ratio_to_text": None,
               "img2img_stock_pipeline": None, "img2img_stock_s": None, "img2img_ratio_to_stock": None,
               "img2img_skipped": None}
    try:
        image_request, _ = studio.validate(request.replace(
            init_image=read_input_image(picture, "the bench's input picture"), strength=IMAGE_STRENGTH))
    except ValueError as error:
        results["img2img_skipped"] = str(error)
        return results
    seeds = iter(range(request.seed + 1, request.seed + 10_000))

    def studio_image():
        studio.generate(image_request.replace(seed=next(seeds)))

    name = STOCK_IMAGE_TO_IMAGE.get(studio.family.pipeline_class)
    if name is None:
        spreads["img2img"] = interleaved({"img2img": studio_image}, repeat, synchronize)["img2img"].summary()
        results["img2img_s"] = spreads["img2img"]["median_s"]
        results["img2img_ratio_to_text"] = results["img2img_s"] / text_warm_s
        return results
    import diffusers

    stock_pipe = getattr(diffusers, name).from_pipe(studio.pipe)
    stock_pipe.set_progress_bar_config(disable=True)
    accepted = inspect.signature(stock_pipe.__call__).parameters
    kwargs = {key: value for key, value in stock_kwargs.items() if key in accepted}
    image = fitted_inputs(image_request).image

    def stock_image():
        generator = torch.Generator("cpu").manual_seed(request.seed)
        stock_pipe(prompt=request.prompt, image=image, strength=IMAGE_STRENGTH, generator=generator, **kwargs)

    timings = interleaved({"img2img": studio_image, "img2img_stock": stock_image}, repeat, synchronize)
    spreads.update((key, timing.summary()) for key, timing in timings.items())
    results["img2img_s"], results["img2img_stock_s"] = timings["img2img"].median, timings["img2img_stock"].median
    results["img2img_ratio_to_text"] = results["img2img_s"] / text_warm_s
    results["img2img_stock_pipeline"] = name
    results["img2img_ratio_to_stock"] = results["img2img_s"] / results["img2img_stock_s"]
    return results


def _extend(studio, request, picture, repeat: int, synchronize, spreads: dict) -> dict:
    """Extend from the request's size to twice its width at strength 1, painted in passes
    (`conditioning.Extend.passes`), against the same canvas and border inpainted at once, the two
    interleaved; their spreads go into `spreads`. The input is `picture`, as for image-to-image."""
    from pipeline.conditioning import Extend, extend, read_input_image, read_mask

    results = {"extend_passes": None, "extend_s": None, "extend_once_s": None, "extend_ratio_to_once": None,
               "extend_skipped": None}
    width, height = 2 * request.width, request.height
    canvas, border = extend(picture, width, height)
    try:
        in_passes, _ = studio.validate(request.replace(
            init_image=read_input_image(picture, "the bench's input picture"), extend=Extend.to(width, height),
            width=None, height=None, strength=1.0))
        once, _ = studio.validate(request.replace(
            init_image=read_input_image(canvas, "the bench's canvas"), mask=read_mask(border, canvas.size),
            width=width, height=height, strength=1.0))
    except ValueError as error:
        results["extend_skipped"] = str(error)
        return results
    seeds = iter(range(request.seed + 1, request.seed + 10_000))
    timings = interleaved({"extend": lambda: studio.generate(in_passes.replace(seed=next(seeds))),
                           "extend_once": lambda: studio.generate(once.replace(seed=next(seeds)))},
                          repeat, synchronize)
    spreads.update((key, timing.summary()) for key, timing in timings.items())
    results["extend_passes"] = len(in_passes.extend.passes(picture.size, studio.limits.size_multiple))
    results["extend_s"], results["extend_once_s"] = timings["extend"].median, timings["extend_once"].median
    results["extend_ratio_to_once"] = results["extend_s"] / results["extend_once_s"]
    return results


def _seconds(results: dict, key: str) -> str:
    """A time and its min-max: "0.1234 s (0.1200-0.1300)"."""
    return f"{results[f'{key}_s']:.4f} s {span(results['spreads'][key])}"


def _rate(results: dict, key: str, images: int) -> str:
    """Images per second and its min-max."""
    return f"{results[f'{key}_images_per_s']:.2f} img/s {span(results['spreads'][key], lambda s: images / s, 2)}"


def _image_to_image_rows(results: dict) -> list[tuple[str, str, str]]:
    strength = f"{results['img2img_strength']:g}"
    if results["img2img_skipped"] is not None:
        return [(f"image-to-image at strength {strength}", "skipped", results["img2img_skipped"])]
    rows = [(f"image-to-image {strength}, studio, warm prompt", _seconds(results, "img2img"),
             f"{results['img2img_ratio_to_text']:.2f} x studio text-to-image, warm prompt")]
    if results["img2img_stock_s"] is None:
        rows.append((f"image-to-image {strength}, stock diffusers", "", "no diffusers image-to-image pipeline"))
    else:
        rows.append((f"image-to-image {strength}, stock {results['img2img_stock_pipeline']}",
                     _seconds(results, "img2img_stock"),
                     f"studio / stock image-to-image {results['img2img_ratio_to_stock']:.2f}"))
    return rows


def _extend_rows(results: dict) -> list[tuple[str, str, str]]:
    if results["extend_skipped"] is not None:
        return [("extend to 2:1", "skipped", results["extend_skipped"])]
    passes = results["extend_passes"]
    return [(f"extend to 2:1, studio, {passes} pass{'es' if passes > 1 else ''}", _seconds(results, "extend"),
             f"{results['extend_ratio_to_once']:.2f} x the same canvas inpainted at once"),
            ("  the same canvas inpainted at once", _seconds(results, "extend_once"), "")]


def format_table(results: dict) -> str:
    """The bench's table: each line's median and (min-max), its ratio, then a warning for each wide spread."""
    stock = results["stock_s"]
    rows = [
        ("stock diffusers __call__", _seconds(results, "stock"), "1.00"),
        ("studio, cold prompt", _seconds(results, "studio_cold"), f"{results['studio_cold_s'] / stock:.2f}"),
        *[(f"  stage {stage}", f"{results[f'stage_{stage}_s']:.4f} s", "")
          for stage in ("encode", "denoise", "decode", "postprocess")],
        ("studio, warm prompt (seed changed)", _seconds(results, "studio_warm"),
         f"{results['studio_warm_s'] / stock:.2f}"),
        ("LLM prompt encoding alone", _seconds(results, "encode"), f"{results['encode_s'] / stock:.2f}"),
        ("4 requests one by one", _rate(results, "sequential", len(BATCH_PROMPTS)), ""),
        ("4 requests as one batch", _rate(results, "batch4", len(BATCH_PROMPTS)),
         f"{results['batch4_images_per_s'] / results['sequential_images_per_s']:.2f} x one-by-one"),
        *_image_to_image_rows(results),
        *_extend_rows(results),
    ]
    if results["first_image_s"] is not None:
        rows.append(("process start to first image", f"{results['first_image_s']:.2f} s", ""))
    rows.append(("peak RSS", f"{results['peak_rss_mb']:.0f} MB", ""))
    if results["cuda_max_allocated_mb"] is not None:
        rows.append(("CUDA max allocated", f"{results['cuda_max_allocated_mb']:.0f} MB", ""))
    header = (f"model {results['model']} on {results['device']} ({results['dtype']}), "
              f"{results['width']}x{results['height']}, {results['steps']} steps, median (min-max) of "
              f"{results['repeat']}, compared runs interleaved")
    return "\n".join([header, *table(rows, "ratio to stock"),
                      *spread_warnings({LABELS[key]: summary for key, summary in results["spreads"].items()})])


def table(rows: list[tuple[str, str, str]], ratio_title: str) -> list[str]:
    """Rows of (name, value, ratio) as aligned lines under a title line."""
    name_width = max(len(row[0]) for row in rows) + 2
    value_width = max(len(row[1]) for row in rows)
    lines = [f"{'':<{name_width}}{'time':>{value_width}}  {ratio_title}"]
    return lines + [f"{name:<{name_width}}{value:>{value_width}}  {ratio}" for name, value, ratio in rows]


def arch_studio(name: str, device: str, options):
    """A studio on a real-size architecture with random weights, driven like its preset."""
    from pipeline.benchmark.arch import build_arch
    from pipeline.families import family_for
    from pipeline.models import PRESETS, ModelSource
    from pipeline.speed import apply
    from pipeline.studio import Studio

    pipe = apply(build_arch(name, device, options.torch_dtype(device)), device, options)
    pipe.set_progress_bar_config(disable=True)
    source = ModelSource(reference=f"arch:{name}", path=Path("."), revision="random-weights",
                         family=family_for(type(pipe).__name__), config={}, preset=PRESETS.get(name))
    return Studio(source, pipe, device, speed_options=options)


