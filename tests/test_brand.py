"""Brand kits: files that load or say what is wrong, colours that land on the palette in every
deliverable, and a colour reference kept as statistics so that pictures reproduce without its file."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers.pixels import levels
from pipeline import brand, campaign, deliverables
from pipeline.__main__ import main
from pipeline.brand import ColourReference, Kit
from pipeline.metadata import read_settings
from pipeline.postprocess import PostprocessSettings, load_reference, match_reference
from pipeline.postprocess.evaluate import PALETTE, PALETTE_MIN_CUT, palette_distance

DELIVERABLES = ("160x160", "medium-rectangle", "half-page", "256x128")


def test_a_kit_round_trips_through_its_file(tmp_path):
    kit = Kit("Harbour", palette=PALETTE, colour_reference=ColourReference("ref.png", "ab" * 32, (0.5, 0.4, 0.3),
                                                                           (0.2, 0.1, 0.05)),
              colour_strength=0.8, style="flat colours", negative_prompt="blurry", deliverables=("square", "728x90"))
    assert brand.load(brand.save(kit, tmp_path / "kit.json")) == kit


@pytest.mark.parametrize("text, message", [
    ("{", "kit 'kit.json' is not valid JSON (Expecting property name enclosed in double quotes at line 1)"),
    ("[]", "kit 'kit.json': a kit is a JSON object of name, palette, colour_reference, colour_strength, style, "
           "negative_prompt, deliverables, got list"),
    ('{"name": "A", "font": "Inter"}', "kit 'kit.json': unknown fields 'font'; a kit has name, palette, "
                                       "colour_reference, colour_strength, style, negative_prompt, deliverables"),
    ('{"palette": []}', "kit 'kit.json': name is missing; every kit has a name"),
    ('{"name": "A", "palette": ["red"]}', "kit 'kit.json': palette: 'red' is not a hex colour '#RRGGBB'"),
    ('{"name": "A", "deliverables": ["poster"]}', "kit 'kit.json': deliverable 'poster' is neither a name ("),
    ('{"name": "A", "colour_strength": 2}', "kit 'kit.json': colour_strength must be a number from 0 to 1, got 2"),
    ('{"name": "A", "colour_reference": {"name": "r.png", "sha256": "x", "mean": [0.5, 0.5], "std": [0, 0, 0]}}',
     "kit 'kit.json': colour_reference.mean must be 3 numbers from 0 to 1 (R, G, B), got [0.5, 0.5]"),
])
def test_a_bad_kit_file_is_one_sentence(text, message, tmp_path):
    (tmp_path / "kit.json").write_text(text, encoding="utf-8")
    with pytest.raises(ValueError) as error:
        brand.load(tmp_path / "kit.json")
    assert str(error.value).startswith(message) and "\n" not in str(error.value)


def test_a_missing_kit_file_is_named_without_its_folder(tmp_path):
    with pytest.raises(ValueError, match=r"^kit 'gone.json': file not found$"):
        brand.load(tmp_path / "gone.json")


def _reference(path: Path) -> Path:
    """A warm, low-contrast picture to match colours to."""
    rng = np.random.default_rng(5)
    pixels = np.clip(rng.normal((200, 150, 90), (20, 15, 10), (48, 64, 3)), 0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def test_the_stored_statistics_give_the_reference_stage_pixels_without_the_file(tmp_path):
    reference = _reference(tmp_path / "approved.png")
    picture = Image.fromarray(np.random.default_rng(1).integers(0, 256, (40, 56, 3), dtype=np.uint8))
    expected = match_reference(picture, load_reference(str(reference)), 0.7)
    kit = Kit("Warm", colour_reference=ColourReference.from_file(reference), colour_strength=0.7)
    brand.save(kit, tmp_path / "kit.json")
    reference.unlink()
    _, _, _, colour = brand.apply(brand.load(tmp_path / "kit.json"), "a cat", "", PostprocessSettings())
    assert np.array_equal(levels(colour.apply(picture)), levels(expected))


def test_every_deliverable_of_a_kit_campaign_has_the_palette_dominant_colours(embedded, tmp_path):
    brand.save(Kit("Harbour", palette=PALETTE, deliverables=DELIVERABLES), tmp_path / "kit.json")
    (tmp_path / "ideas.csv").write_text('prompt,kit,seed\n"a large red circle in the center, white background",'
                                        'kit.json,7\n', encoding="utf-8")
    jobs, errors = campaign.read_campaign(tmp_path / "ideas.csv")
    assert errors == [] and [job.deliverable.key for job in jobs] == list(DELIVERABLES)
    rows, failed = campaign.run(embedded, jobs, tmp_path / "out")
    assert failed == [] and len(rows) == len(DELIVERABLES)
    keys = {}
    for job in jobs:
        made = levels(tmp_path / "out" / job.file)
        rendered = deliverables.render(embedded, job.request, job.deliverable, colour=job.colour, keys=keys)
        assert np.array_equal(levels(rendered.image), made), "the campaign's file is the deliverable as rendered"
        before = palette_distance(np.asarray(rendered.original), PALETTE)
        after = palette_distance(made.astype(np.uint8), PALETTE)
        assert after <= (1 - PALETTE_MIN_CUT) * before, (
            f"{job.file}: dominant colours {after:.2f} from the palette, {before:.2f} without the kit")
        stored = read_settings(tmp_path / "out" / job.file)
        assert stored["kit"] == brand.load(tmp_path / "kit.json").to_dict() and "style" not in stored


def test_a_kit_colour_reference_reproduces_after_the_file_is_deleted(tmp_path, capsys):
    reference = _reference(tmp_path / "approved.png")
    brand.save(Kit("Warm", colour_reference=ColourReference.from_file(reference)), tmp_path / "kit.json")
    reference.unlink()
    (tmp_path / "ideas.csv").write_text('prompt,deliverables,kit\n"a small blue square on the left, yellow '
                                        'background",medium-rectangle,kit.json\n', encoding="utf-8")
    assert main(["campaign", str(tmp_path / "ideas.csv"), "--out", str(tmp_path / "first")]) == 0
    assert main(["campaign", "--from-manifest", str(tmp_path / "first" / "manifest.csv"),
                 "--out", str(tmp_path / "again")]) == 0
    capsys.readouterr()
    name = "01-medium-rectangle-0.png"
    assert np.array_equal(levels(tmp_path / "again" / name), levels(tmp_path / "first" / name))
    stored = read_settings(tmp_path / "first" / name)["deliverable"]["colour_reference"]
    assert stored == json.loads(json.dumps(brand.load(tmp_path / "kit.json").colour_reference.to_dict()))
