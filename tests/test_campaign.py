"""`python -m pipeline campaign`: a CSV of ideas in, every deliverable of every variant out, a manifest
that lists every setting, the same pixels again from the manifest, and bad rows named by line."""
from __future__ import annotations

import contextlib
import csv
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from helpers.pixels import levels
from pipeline import campaign, deliverables, styles
from pipeline.__main__ import main
from pipeline.metadata import read_settings

DATA = Path(__file__).resolve().parent / "data"
CAMPAIGN = DATA / "campaign.csv"


def manifest_rows(path: Path) -> list[dict]:
    with path.open(encoding="utf-8", newline="") as file:
        return list(csv.DictReader(file))


def printed_paths(capsys) -> list[Path]:
    return [Path(line) for line in capsys.readouterr().out.splitlines()]


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    """The campaign of tests/data run once from the command line: (exit code, printed paths, folder)."""
    out = tmp_path_factory.mktemp("campaign")
    stdout = io.StringIO()  # capsys is for one test; this run is shared by the module's tests
    with contextlib.redirect_stdout(stdout):
        code = main(["campaign", str(CAMPAIGN), "--out", str(out), "--zip"])
    return code, [Path(line) for line in stdout.getvalue().splitlines()], out


def test_the_campaign_writes_every_file_and_a_manifest_of_its_settings(first_run):
    code, printed, out = first_run
    assert code == 0
    rows = manifest_rows(out / "manifest.csv")
    assert len(rows) == 3 * 4 * 2
    assert printed == [out / row["file"] for row in rows] + [out / "manifest.csv", out / "campaign.zip"]
    with CAMPAIGN.open(encoding="utf-8", newline="") as file:
        ideas = list(csv.DictReader(file))
    for row in rows:
        idea = ideas[int(row["line"]) - 2]
        assert row["prompt"] == idea["prompt"] and row["negative_prompt"] == idea["negative"]
        assert int(row["seed"]) == int(idea["seed"]) + int(row["variant"])
        assert row["deliverable"] in [item.key for item in deliverables.parse_list(idea["deliverables"])]
        assert row["steps"] == "8" and row["guidance"] == "2.0" and row["model"] == "embedded"
        assert json.loads(row["postprocess"])["upscale"] == 1 and row["fit"] == "extend"
        width, height = map(int, row["size"].split("x"))
        picture = levels(out / row["file"])
        assert picture.shape == (height, width, 3)
        stored = read_settings(out / row["file"])
        assert stored["deliverable"]["key"] == row["deliverable"] and stored["seed"] == int(row["seed"])
        assert (stored["width"], stored["height"], stored["deliverable"]["fit"]) == (width, height, "extend")
    assert len({row["file"] for row in rows}) == 24
    with zipfile.ZipFile(out / "campaign.zip") as archive:
        assert sorted(archive.namelist()) == sorted([row["file"] for row in rows] + ["manifest.csv"])
        assert archive.read("manifest.csv") == (out / "manifest.csv").read_bytes()


def test_the_manifest_makes_every_file_again_with_identical_pixels(first_run, tmp_path, capsys):
    _, _, out = first_run
    code = main(["campaign", "--from-manifest", str(out / "manifest.csv"), "--out", str(tmp_path)])
    assert code == 0
    rows = manifest_rows(out / "manifest.csv")
    assert printed_paths(capsys) == [tmp_path / row["file"] for row in rows] + [tmp_path / "manifest.csv"]
    for row in rows:
        assert np.array_equal(levels(tmp_path / row["file"]), levels(out / row["file"])), row["file"]
    assert manifest_rows(tmp_path / "manifest.csv") == rows


def test_a_bad_row_is_named_by_its_line_and_the_others_complete(tmp_path, capsys):
    ideas = tmp_path / "ideas.csv"
    ideas.write_text(
        "prompt,deliverables,variants,seed\n"
        '"a large red circle in the center, white background",160x160,1,1\n'
        '"a small blue square on the left, yellow background",160x160,two,1\n'
        '"a large green triangle at the top, black background",poster,1,1\n'
        'a small red square on the right, white background,160x160,1,1\n'
        '"a small purple circle on the right, white background",medium-rectangle,1,4\n', encoding="utf-8")
    code = main(["campaign", str(ideas), "--out", str(tmp_path / "out")])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.err.splitlines() == [
        "error: ideas.csv line 3: variants must be a whole number from 1 to 8, got 'two'",
        "error: ideas.csv line 4: deliverable 'poster' is neither a name (" + ", ".join(deliverables.DELIVERABLES)
        + ") nor a size WIDTHxHEIGHT such as 1200x628",
        "error: ideas.csv line 5: the row has 5 cells but the header names 4 columns; put a value that holds "
        "commas in double quotes",
    ]
    rows = manifest_rows(tmp_path / "out" / "manifest.csv")
    assert [(row["file"], row["line"]) for row in rows] == [("01-160x160-1.png", "2"),
                                                             ("05-medium-rectangle-4.png", "6")]
    assert levels(tmp_path / "out" / "05-medium-rectangle-4.png").shape == (250, 300, 3)


def test_a_file_that_is_not_a_campaign_is_one_line(tmp_path, capsys):
    sheet = tmp_path / "sheet.csv"
    sheet.write_text("idea,size\na cat,square\n", encoding="utf-8")
    assert main(["campaign", str(sheet), "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err == ("error: campaign 'sheet.csv' needs a header row naming its columns, prompt "
                                       "among them; known columns: " + ", ".join(campaign.COLUMNS) + "\n")
    assert main(["campaign", str(tmp_path / "missing.csv")]) == 2
    assert capsys.readouterr().err == "error: campaign 'missing.csv': file not found\n"
    assert main(["campaign", "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err == "error: give a campaign FILE.csv or --from-manifest MANIFEST, one of the two\n"


def test_styles_and_kits_shape_the_prompt_of_each_job(tmp_path):
    (tmp_path / "kit.json").write_text(json.dumps({"name": "Harbour", "style": "flat colours",
                                                   "negative_prompt": "blurry", "deliverables": ["square", "story"]}))
    ideas = tmp_path / "ideas.csv"
    ideas.write_text("prompt,negative,kit,style\na red car,rain,kit.json,cinematic\n", encoding="utf-8")
    jobs, errors = campaign.read_campaign(ideas)
    assert errors == []
    assert [job.deliverable.key for job in jobs] == ["square", "story"]
    request = jobs[0].request
    assert request.prompt.startswith("cinematic still of a red car, ") and request.prompt.endswith(", flat colours")
    assert request.negative_prompt.startswith("rain, flat lighting") and request.negative_prompt.endswith(", blurry")
    assert jobs[0].kit.name == "Harbour" and jobs[0].style == "cinematic" and jobs[0].idea == "a red car"
    without, _ = campaign.read_campaign(ideas, uses_negative_prompt=False)
    assert without[0].request.negative_prompt == "rain"


def test_style_presets_put_the_prompt_in_their_template():
    shipped = styles.shipped()
    assert {"cinematic", "product-photo", "flat-illustration"} <= set(shipped)
    prompt, negative = styles.apply("product-photo", " a red car ", "rain")
    assert prompt == shipped["product-photo"].prompt.replace("{prompt}", "a red car")
    assert negative == "rain, " + shipped["product-photo"].negative_prompt
    assert styles.apply("", "a red car", "rain") == ("a red car", "rain")
    with pytest.raises(ValueError, match=r"^style 'noir' is not one of cinematic, product-photo, "):
        styles.apply("noir", "a red car")


@pytest.mark.parametrize("text, message", [
    ("{", "styles file 'styles.json' is not valid JSON (Expecting property name enclosed in double quotes at line 1)"),
    ('{"loud": {"title": "Loud", "prompt": "LOUD"}}',
     "styles file 'styles.json': style 'loud': prompt must hold {prompt} exactly once, got 'LOUD'"),
    ('{"loud": {"prompt": "{prompt}!"}}',
     "styles file 'styles.json': style 'loud' must be an object of title, prompt and optionally negative_prompt"),
])
def test_a_bad_styles_file_is_one_sentence(text, message, tmp_path):
    (tmp_path / "styles.json").write_text(text, encoding="utf-8")
    with pytest.raises(ValueError) as error:
        styles.load(tmp_path / "styles.json")
    assert str(error.value).startswith(message)
