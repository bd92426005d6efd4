"""`python -m pipeline evaluate-postprocess`: measure each post-processing stage against a baseline.

Denoising, colour correction and upsampling on scikit-image's sample photographs (nothing is
downloaded); prints one table of the measurements in `pipeline.postprocess.evaluate` and exits 1
if a requirement fails.
"""
from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """No options: the photographs, noise level and baselines are fixed so figures compare across runs."""


def run(args: argparse.Namespace) -> int:
    from pipeline.postprocess import evaluate

    images = evaluate.photos()
    print(f"photos: {', '.join(f'{name} {x.shape[1]}x{x.shape[0]}' for name, x in images.items())}")
    rows = evaluate.run(images)
    print(evaluate.format_table(rows))
    return 0 if all(row[4] for row in rows) else 1
