"""Quality thresholds of post-processing, measured by the same code as `python -m pipeline evaluate-postprocess`.

Full-size scikit-image photographs (astronaut, coffee, chelsea, rocket): the whole evaluation
takes well under a minute on two CPU cores, so nothing is cropped and the thresholds are the
evaluation's own constants.
"""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("skimage")
pytest.importorskip("cv2")

from pipeline.commands import main  # noqa: E402
from pipeline.postprocess import evaluate as ev  # noqa: E402


def test_thresholds_are_the_requirements():
    assert ev.DENOISE_MARGIN_DB == 1.0 and ev.NOISE_SIGMA == 20.0
    assert ev.REFERENCE_MIN_CUT == 0.70 and ev.CAST_GAINS == (1.15, 1.0, 0.78)
    assert ev.PALETTE_MIN_CUT == 0.50 and ev.PALETTE_MIN_SSIM == 0.90 and len(ev.PALETTE) == 3
    assert ev.AUTO_MAX_GREY_DE == 3.0 and ev.AUTO_MAX_PHOTO_DE == 2.0
    assert ev.PHOTOS == ("astronaut", "coffee", "chelsea", "rocket")


@pytest.fixture(scope="module")
def photos():
    return ev.photos()


def test_denoise_beats_opencv_nlm_by_one_db(photos):
    m = ev.measure_denoise(photos)
    assert m["psnr"] >= m["baseline_psnr"] + ev.DENOISE_MARGIN_DB


def test_reference_match_cuts_colour_error_by_70_percent(photos):
    m = ev.measure_reference(photos)
    assert m["before"] > 5  # the cast is visible to begin with
    assert m["cut"] >= ev.REFERENCE_MIN_CUT


def test_palette_pull_halves_the_distance_and_keeps_structure(photos):
    m = ev.measure_palette(photos)
    assert m["cut"] >= ev.PALETTE_MIN_CUT
    assert m["min_ssim"] >= ev.PALETTE_MIN_SSIM  # every photo, not only on average


def test_auto_colour_neutralises_the_chart_and_spares_good_photos(photos):
    m = ev.measure_auto(photos)
    assert m["grey_before"] > 10
    assert m["grey_after"] <= ev.AUTO_MAX_GREY_DE
    assert m["photo_change"] <= ev.AUTO_MAX_PHOTO_DE


@pytest.mark.parametrize("factor", [2, 4])
def test_classical_upscale_at_least_matches_lanczos(photos, factor):
    m = ev.measure_upscale(photos, factor)
    assert m["psnr"] >= m["baseline_psnr"]


def test_grey_chart_is_what_it_claims():
    chart, boxes = ev.grey_chart()
    assert len(boxes) == 6
    for box in boxes:
        patch = chart[box]
        assert np.ptp(patch) == 0 and patch[0, 0, 0] == patch[0, 0, 1] == patch[0, 0, 2]
    assert ev.apply_cast(chart)[boxes[-1]].max() < 255  # the cast does not clip the greys


def test_evaluation_command_prints_the_table_and_fails_on_a_miss(monkeypatch, capsys):
    monkeypatch.setattr(ev, "photos", lambda names=ev.PHOTOS: {})
    monkeypatch.setattr(ev, "run", lambda images: [("a check", "1", "0", ">= 0", True)])
    assert main(["evaluate-postprocess"]) == 0
    out = capsys.readouterr().out
    assert "a check" in out and "| yes" in out
    monkeypatch.setattr(ev, "run", lambda images: [("a check", "0", "1", ">= 1", False)])
    assert main(["evaluate-postprocess"]) == 1
