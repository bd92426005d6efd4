"""The page's Deliverables panel without a server: its handlers on the embedded model (exact sizes,
grouping, the ZIP and its manifest, brand kits, style presets, campaign uploads, safe zones) and
where the panel is placed; Reuse settings of a deliverable and of a colour reference that is gone."""
from __future__ import annotations

import asyncio
import csv
import io
import json
import warnings
import zipfile
from pathlib import Path
from types import SimpleNamespace

import gradio as gr
import numpy as np
import pytest
from PIL import Image

from pipeline import brand, styles
from pipeline.deliverables import DELIVERABLES
from pipeline.metadata import read_settings
from pipeline.request import GenerationRequest
from ui.controls import COLOR_STATISTICS, CONTROL_NAMES
from ui.deliverables import DeliverableHandlers, caption, deliverable_choices, zone_boxes
from ui.formats import format_for_size
from ui.handlers import StudioHandlers
from ui.layout import build_demo
from ui.runs import RunControl


PROMPT = "a large red circle in the center, white background"
FAST = {"prompt": PROMPT, "seed": 3, "steps": 2}


def quiet_progress(*args, **kwargs) -> None:
    pass


def updates(stream) -> list:
    """Everything an event's async generator yields, in order."""
    async def collect():
        return [update async for update in stream]

    return asyncio.run(collect())


def make(handlers: DeliverableHandlers, checked, *, custom="", fit="extend", variants=1, style="", kit=None,
         kits=None, run_control=None, **values):
    """The Make deliverables handler called directly: (gallery, zip path, files, status)."""
    return asyncio.run(handlers.make(checked, custom, fit, variants, style, kit, kits or {},
                                     run_control or RunControl(), progress=quiet_progress, **{**FAST, **values}))


@pytest.fixture
def handlers(embedded, tmp_path) -> DeliverableHandlers:
    return DeliverableHandlers(embedded, tmp_path)


def manifest_rows(archive: str) -> tuple[list[str], list[dict]]:
    with zipfile.ZipFile(archive) as opened:
        names = sorted(opened.namelist())
        text = opened.read("manifest.csv").decode("utf-8")
    return names, list(csv.DictReader(io.StringIO(text)))


def test_prompt_times_deliverables_times_variants_grouped_with_a_zip_and_its_manifest(handlers, embedded):
    gallery, archive, files, status = make(handlers, ["leaderboard", "medium-rectangle"], custom="200x100",
                                           variants=2)
    # Grouped by deliverable in the table's order, custom sizes last, variants side by side.
    assert [label for _, label in gallery] == [
        "Medium rectangle 300x250 · seed 3", "Medium rectangle 300x250 · seed 4",
        "Leaderboard 728x90 · seed 3", "Leaderboard 728x90 · seed 4", "200x100 · seed 3", "200x100 · seed 4"]
    assert status == "6 files made"
    sizes = [Image.open(path).size for path in files]
    assert sizes == [(300, 250)] * 2 + [(728, 90)] * 2 + [(200, 100)] * 2
    names, rows = manifest_rows(archive)
    assert names == sorted([*(Path(path).name for path in files), "manifest.csv"])
    assert sorted((row["file"], row["deliverable"], row["size"], row["seed"]) for row in rows) == sorted(
        (Path(path).name, key, size, seed) for path, (key, size, seed) in zip(files, [
            ("medium-rectangle", "300x250", "3"), ("medium-rectangle", "300x250", "4"),
            ("leaderboard", "728x90", "3"), ("leaderboard", "728x90", "4"),
            ("200x100", "200x100", "3"), ("200x100", "200x100", "4")]))
    # The page's file is the engine's deliverable, pixel for pixel.
    again = embedded.deliverable(GenerationRequest(prompt=PROMPT, seed=4, steps=2), "leaderboard")
    assert np.array_equal(np.asarray(Image.open(files[3]).convert("RGB")), np.asarray(again.image))
    assert read_settings(files[3])["deliverable"]["key"] == "leaderboard"


def test_a_kit_and_a_style_reach_every_file_and_its_record(handlers, tmp_path):
    kit_path = brand.save(brand.Kit(name="Acme", palette=("#d03030", "#ffffff"), style="flat colours",
                                    negative_prompt="text", deliverables=("mobile-banner",)), tmp_path / "acme.json")
    kits, dropdown, ticked, status = handlers.load_kit(str(kit_path), {})
    assert list(kits) == ["Acme"] and dropdown.value == "Acme" and ticked.value == ["mobile-banner"]
    assert status == "kit **Acme** loaded and chosen"
    # Nothing ticked: the kit's own deliverables.
    gallery, archive, files, _ = make(handlers, [], style="flat-illustration", kit="Acme", kits=kits)
    assert [label for _, label in gallery] == ["Mobile banner 320x50 · seed 3"]
    settings = read_settings(files[0])
    assert settings["kit"]["name"] == "Acme" and settings["style"] == "flat-illustration"
    assert settings["prompt"].endswith("flat colours") and PROMPT in settings["prompt"]
    assert "text" in settings["negative_prompt"]
    assert settings["postprocess"]["color"] == "palette"
    _, rows = manifest_rows(archive)
    assert json.loads(rows[0]["kit"])["name"] == "Acme" and rows[0]["style"] == "flat-illustration"


def test_save_as_a_kit_writes_a_kit_that_loads_back(handlers):
    saved = handlers.save_kit("Spring sale", "blurry", "palette", "#112233, #ffeedd", ["story"], "640x360")
    assert saved["visible"] is True
    kit = brand.load(saved["value"])
    assert (kit.name, kit.negative_prompt, kit.palette, kit.deliverables) == (
        "Spring sale", "blurry", ("#112233", "#ffeedd"), ("story", "640x360"))
    with pytest.raises(gr.Error) as refused:
        handlers.save_kit("", "", "off", "", [], "")
    assert refused.value.message == "name the kit first: type its name in Kit name"


@pytest.mark.parametrize(("checked", "custom", "variants", "message"), [
    ([], "", 1, "no deliverable is ticked; tick one or more, or type a size such as 640x360"),
    (["square"], "", 9, "variants must be from 1 to 8, got 9"),
])
def test_bad_choices_are_refused_in_one_sentence(handlers, checked, custom, variants, message):
    with pytest.raises(gr.Error) as refused:
        make(handlers, checked, custom=custom, variants=variants)
    assert refused.value.message == message


def test_a_bad_custom_size_is_refused_with_the_engines_sentence(handlers):
    with pytest.raises(gr.Error) as refused:
        make(handlers, [], custom="big")
    assert "big" in refused.value.message and "\n" not in refused.value.message


def test_cancel_during_a_run_stops_it_and_makes_no_zip(handlers, tmp_path):
    control, seen = RunControl(), []

    def cancel_at_first_step(progress, desc="", unit=""):
        seen.append(desc)
        control.cancel()

    with pytest.raises(gr.Error) as refused:
        asyncio.run(handlers.make(["square", "story"], "", "extend", 1, "", None, {}, control,
                                  progress=cancel_at_first_step, **FAST))
    assert refused.value.message == "cancelled after step 1 of 2; no image was produced"
    assert seen == ["file 1 of 2 · step 1 of 2"]
    assert list(tmp_path.rglob("*.zip")) == [] and list(tmp_path.rglob("*.png")) == []


def test_an_uploaded_campaign_runs_its_good_rows(handlers, tmp_path):
    path = tmp_path / "ideas.csv"
    path.write_text("prompt,deliverables,variants,seed,steps\n"
                    f'"{PROMPT}",mobile-banner,1,5,2\n'
                    "a blue square,mobile-banner,99,1,2\n", encoding="utf-8")
    # Outside a page, gradio's warnings are Python warnings.
    with pytest.warns(UserWarning, match="^line 3: variants must be from 1 to 8, got 99$"):
        gallery, archive, files, status = asyncio.run(handlers.run_campaign(str(path), RunControl(),
                                                                            progress=quiet_progress))
    assert [label for _, label in gallery] == ["Mobile banner 320x50 · seed 5"]
    assert status == "1 file made"
    _, rows = manifest_rows(archive)
    assert [row["line"] for row in rows] == ["2"]


def test_an_uploaded_campaign_may_not_name_kit_files_of_the_server(handlers, tmp_path):
    path = tmp_path / "ideas.csv"
    path.write_text("prompt,deliverables,Kit\na red circle,square,../../secret.json\n", encoding="utf-8")
    with pytest.raises(gr.Error) as refused:
        asyncio.run(handlers.run_campaign(str(path), RunControl(), progress=quiet_progress))
    assert refused.value.message == (
        "a campaign run on this page cannot name kit files in its kit column; load the kit under Brand kit and "
        "tick the deliverables instead, or run it with `python -m pipeline campaign`")
    assert list(tmp_path.rglob("*.png")) == []


def test_safe_zones_are_drawn_over_the_preview_only(handlers):
    gallery, _, files, _ = make(handlers, ["video"])
    story = DELIVERABLES["video"]
    preview, chosen = handlers.first_preview(files, False)
    assert preview == (files[0], []) and chosen == files[0]
    with_zones = handlers.show_safe_zones(chosen, True)
    assert with_zones == (files[0], [((zone.left, zone.top, zone.right, zone.bottom), zone.label)
                                     for zone in story.safe_zones])
    assert len(with_zones[1]) == 4
    # The file is the engine's picture: nothing of the overlay is in it.
    again = handlers.studio.deliverable(GenerationRequest(prompt=PROMPT, seed=3, steps=2), "video")
    assert np.array_equal(np.asarray(Image.open(files[0]).convert("RGB")), np.asarray(again.image))
    selected = handlers.select(files, True, SimpleNamespace(index=0))
    assert selected == (with_zones, files[0])


def test_zone_boxes_of_a_picture_without_a_deliverable_are_none(tmp_path):
    path = tmp_path / "plain.png"
    Image.new("RGB", (8, 8)).save(path)
    assert zone_boxes(str(path)) == []


def test_the_table_and_captions():
    assert deliverable_choices()[0] == ("Square post 1080x1080", "square")
    assert len(deliverable_choices()) == len(DELIVERABLES)
    assert caption({"deliverable": "story", "size": "1080x1920", "seed": 3}) == "Story 1080x1920 · seed 3"


def test_the_panel_is_placed_for_an_engine_that_renders_deliverables(embedded):
    ids = {block.elem_id for block in build_demo(embedded).blocks.values()}
    assert {"deliverables", "deliverable-list", "make-deliverables", "deliverable-zip", "safe-zones"} <= ids


def page_handlers(studio, folder: Path) -> StudioHandlers:
    """The page's handlers with stand-ins named 'component NAME' for what Reuse settings writes to."""
    names = [*CONTROL_NAMES, "format", "status", "deliverables", "custom_sizes", "fit", "style", "kit",
             "restored_design"]
    return StudioHandlers(studio, folder, {name: f"component {name}" for name in names})


def restored_values(updates: dict) -> dict:
    return {name.removeprefix("component "): value for name, value in updates.items()}


def test_reuse_settings_of_a_deliverable_ticks_it_and_makes_the_same_pixels(handlers, embedded, tmp_path):
    _, _, files, _ = make(handlers, ["leaderboard"], style="cinematic", fit="crop", seed=11)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        values = restored_values(page_handlers(embedded, tmp_path).reuse_settings(files[0]))
    limits = embedded.limits
    assert (values["deliverables"], values["custom_sizes"], values["fit"], values["style"]) == (
        ["leaderboard"], "", "crop", "")
    assert values["format"] == format_for_size(limits.default_width, limits.default_height, limits)
    assert (values["width"], values["height"], values["seed"]) == (None, None, 11)
    assert values["status"].endswith("; press Make deliverables")
    # The stored prompt already holds the style's words, so no style is applied again.
    controls = {name: values[name] for name in DeliverableHandlers.control_names}
    _, _, again, _ = asyncio.run(handlers.make(values["deliverables"], values["custom_sizes"], values["fit"], 1,
                                               values["style"], None, {}, RunControl(), progress=quiet_progress,
                                               **controls))
    assert np.array_equal(np.asarray(Image.open(again[0])), np.asarray(Image.open(files[0])))


def test_reuse_settings_of_a_kit_deliverable_keeps_its_colour_statistics(handlers, embedded, tmp_path):
    reference = tmp_path / "warm.png"
    Image.new("RGB", (16, 16), (220, 140, 40)).save(reference)
    kit = brand.Kit("Warm", colour_reference=brand.ColourReference.from_file(reference), style="flat colours")
    _, _, files, _ = make(handlers, ["medium-rectangle"], kit="Warm", kits={"Warm": kit.to_dict()}, seed=5,
                          enhanced_prompt=PROMPT)
    reference.unlink()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the kit's reference is not asked for again
        values = restored_values(page_handlers(embedded, tmp_path / "page").reuse_settings(files[0]))
    assert values["kit"] == "No kit"  # its words are in the stored prompt already
    assert "with kit 'Warm' as it was made; press Make deliverables" in values["status"]
    assert values["restored_design"] == {"kit": kit.to_dict(), "colour": kit.colour_reference.to_dict()}
    controls = {name: values[name] for name in DeliverableHandlers.control_names}

    def redraw(restored):
        return asyncio.run(handlers.make(values["deliverables"], values["custom_sizes"], values["fit"], 1, "",
                                         values["kit"], {}, RunControl(), progress=quiet_progress,
                                         restored=restored, **controls))[2][0]

    again = redraw(values["restored_design"])
    assert np.array_equal(np.asarray(Image.open(again)), np.asarray(Image.open(files[0])))
    assert read_settings(again)["kit"] == read_settings(files[0])["kit"]
    for text in ("prompt", "enhanced_prompt"):  # the kit's style text once
        assert read_settings(again)[text] == read_settings(files[0])[text]
    assert read_settings(again)["enhanced_prompt"] == f"{PROMPT}, flat colours"
    # Without the kept statistics the colours differ: they are what made the pixels the same.
    plain = np.asarray(Image.open(redraw(None)), dtype=int)
    assert np.abs(plain - np.asarray(Image.open(files[0]), dtype=int)).max() > 20
    # Reuse of a picture made without a deliverable forgets the kept design.
    made = updates(page_handlers(embedded, tmp_path / "page").generate(RunControl(), [], **FAST))[-1]
    assert restored_values(page_handlers(embedded, tmp_path / "page").reuse_settings(
        made[0][0][0]))["restored_design"] is None


def test_deliverables_draw_the_enhanced_prompt_with_the_style_applied_to_it(embedded, tmp_path):
    page = page_handlers(embedded, tmp_path / "page")
    panel = DeliverableHandlers(embedded, tmp_path / "out", enhanced=page.enhanced)
    _, _, typed, _ = make(panel, ["leaderboard"], prompt="a circle", enhanced_prompt=PROMPT)
    record = read_settings(typed[0])
    assert (record["prompt"], record["enhanced_prompt"]) == ("a circle", PROMPT)
    drawn = embedded.deliverable(GenerationRequest(prompt=PROMPT, seed=3, steps=2), "leaderboard")
    assert np.array_equal(np.asarray(Image.open(typed[0]).convert("RGB")), np.asarray(drawn.image))
    # Auto-enhance with the box empty: the writer's rewrite of the prompt, in the style's template.
    _, _, written, _ = make(panel, ["leaderboard"], prompt="a circle", auto_enhance=True, style="cinematic")
    record = read_settings(written[0])
    assert record["enhanced_prompt"] == styles.apply("cinematic", embedded.enhance("a circle", seed=3).text, "")[0]
    assert record["prompt"] == styles.apply("cinematic", "a circle", "")[0]
    assert record["enhancer"]


def test_reuse_settings_redraws_a_colour_reference_after_its_file_is_gone(embedded, tmp_path):
    reference = tmp_path / "brand.png"
    Image.new("RGB", (16, 16), (200, 120, 40)).save(reference)
    page = page_handlers(embedded, tmp_path / "out")
    made = updates(page.generate(RunControl(), [], prompt=PROMPT, seed=2, steps=2, color="reference",
                                 color_reference=str(reference)))[-1]
    path = made[0][0][0]
    assert read_settings(path)["postprocess"]["color_statistics"]["name"] == "brand.png"
    reference.unlink()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning asks for the reference again
        values = restored_values(page.reuse_settings(path))
    assert values["color"] == "reference" and values["color_reference"] is None
    assert json.loads(values[COLOR_STATISTICS])["name"] == "brand.png"
    assert values["status"].endswith("; press Generate")
    again = updates(page.generate(RunControl(), [], **{name: values[name] for name in CONTROL_NAMES}))[-1]
    assert np.array_equal(np.asarray(Image.open(again[0][0][0])), np.asarray(Image.open(path)))


def test_unreadable_colour_statistics_are_refused_by_name(tmp_path, embedded):
    with pytest.raises(gr.Error) as refused:
        updates(page_handlers(embedded, tmp_path).generate(RunControl(), [], prompt=PROMPT, color="reference",
                                                             color_statistics="{not json"))
    assert refused.value.message == "color_statistics must be a JSON object of mean, std, sha256 and name"
