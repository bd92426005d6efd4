"""The studio in a real browser: headless Chromium (Debian's package) driven by Playwright.

`python app.py` is started on a free local port with the embedded model; the tests use the page
as a person would. Screenshots go to $STUDIO_SCREENSHOTS (a temporary folder when unset; its
path is printed).
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import expect, sync_playwright

from helpers.pixels import largest_difference
from helpers.servers import app_process
from pipeline.conditioning import extend
from pipeline.metadata import read_settings, save_png
from pipeline.postprocess import PostprocessSettings
from ui.controls import CONTROLS


ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-quic",
                 "--no-first-run", "--disable-component-update", "--disable-sync"]
START_TIMEOUT_S = 240  # loading the model on a busy 2-core machine
RUN_TIMEOUT_MS = 120_000
PROMPT = "a large red circle on the left, blue background"
# The mask editor's brush radius, in the picture's pixels.
MASK_BRUSH = next(control for control in CONTROLS if control.name == "mask").options["brush"].default_size


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory) -> Path:
    folder = Path(os.environ.get("STUDIO_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    """`python app.py` on the embedded model, listening on 127.0.0.1 at a free port."""
    if not (ROOT / "assets" / "model" / "model_index.json").is_file():
        pytest.fail("the embedded model is missing: assets/model/model_index.json does not exist")
    log_path = tmp_path_factory.mktemp("app") / "app.log"
    with app_process(log_path, START_TIMEOUT_S) as url:
        startup = log_path.read_text()
        # The start-up log line says what was loaded and how long it took.
        assert re.search(r"model embedded \(SanaPipeline\) ready on cpu in [\d.]+ s", startup), startup
        yield url


@pytest.fixture(scope="module")
def playwright():
    with sync_playwright() as driver:
        yield driver


@pytest.fixture
def open_session(playwright, tmp_path):
    """`open_session(url)` -> a page in a new Chromium with a fresh profile: one visitor."""
    contexts = []

    def open_(url: str):
        context = playwright.chromium.launch_persistent_context(
            tmp_path / f"profile-{len(contexts)}", executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 1000}, accept_downloads=True)
        contexts.append(context)
        page = context.new_page()
        page.goto(url)
        expect(page.locator("#status")).to_contain_text("embedded", timeout=60_000)
        # Everything the progress bar ever says, however briefly it says it.
        page.evaluate(r"""() => {
            window.studioProgress = new Set();
            window.studioPreviews = new Set();
            new MutationObserver(() => {
                for (const m of document.body.innerText.matchAll(/step \d+ of \d+/g)) window.studioProgress.add(m[0]);
                const results = document.querySelector('#results');
                for (const m of (results ? results.innerText : '').matchAll(/preview: step \d+ of \d+/g)) {
                    window.studioPreviews.add(m[0]);
                }
            }).observe(document.body, {subtree: true, childList: true, characterData: true});
        }""")
        return page

    yield open_
    for context in contexts:
        context.close()


def choose_format(page, label_start: str) -> None:
    page.click("#format input")
    page.get_by_role("option", name=re.compile("^" + re.escape(label_start))).click()


def generate(page, *, press_enter: bool = False) -> list[str]:
    """Start a run, wait for its images; returns their URLs."""
    before = result_urls(page)
    if press_enter:
        page.press("#prompt textarea", "Enter")
    else:
        page.click("#generate")
    # Every run writes its PNGs to a new folder, so new images mean new URLs; live previews come
    # before them, captioned as previews.
    page.wait_for_function(
        "old => { const now = [...document.querySelectorAll('#results .grid-container img')].map(i => i.src);"
        " const previewing = document.querySelector('#results').innerText.includes('preview:');"
        " return now.length > 0 && now.join() !== old.join() && !previewing; }", arg=before, timeout=RUN_TIMEOUT_MS)
    expect(page.locator("#status")).to_contain_text("last run")
    return result_urls(page)


def result_urls(page) -> list[str]:
    return page.eval_on_selector_all("#results .grid-container img", "images => images.map(i => i.src)")


def fetch_image(page, url: str) -> tuple[Image.Image, bytes]:
    body = page.request.get(url).body()
    return Image.open(io.BytesIO(body)), body


def test_generate_change_format_and_reuse_settings(app_url, open_session, screenshots, tmp_path):
    page = open_session(app_url)
    assert "cpu" in page.inner_text("#status")
    page.screenshot(path=screenshots / "01-start.png", full_page=True)

    page.fill("#prompt textarea", PROMPT)
    choose_format(page, "Photo 3:2")
    expect(page.locator("#width input")).to_have_value("72")
    expect(page.locator("#height input")).to_have_value("48")
    urls = generate(page)
    progress = page.evaluate("[...window.studioProgress]")
    assert progress and all(re.fullmatch(r"step [1-8] of 8", text) for text in progress), progress
    assert len(urls) == 1
    image, _ = fetch_image(page, urls[0])
    assert (image.format, image.size) == ("PNG", (72, 48))
    page.screenshot(path=screenshots / "02-photo-3x2.png", full_page=True)

    choose_format(page, "Photo portrait 2:3")
    expect(page.locator("#width input")).to_have_value("48")
    expect(page.locator("#height input")).to_have_value("72")
    urls = generate(page)
    image, _ = fetch_image(page, urls[0])
    assert image.size == (48, 72)
    page.screenshot(path=screenshots / "03-photo-2x3.png", full_page=True)

    # Download through the gallery's own button, as a visitor would.
    page.click("#results .grid-container button.thumbnail-item")
    with page.expect_download() as download_info:
        page.click("#results button[aria-label='Download']")
    downloaded = tmp_path / "downloaded.png"
    download_info.value.save_as(downloaded)
    settings = read_settings(downloaded)
    assert (settings["prompt"], settings["width"], settings["height"]) == (PROMPT, 48, 72)

    # Change everything the PNG will restore, then drop the PNG in.
    page.fill("#prompt textarea", "a small green triangle at the top on a white background")
    choose_format(page, "Square post 1:1")
    page.fill("#seed input[type=number]", "77")
    page.click("#reuse button.label-wrap")
    page.set_input_files("#reuse-file input[type=file]", downloaded)
    expect(page.locator("#status")).to_contain_text("settings restored from seed", timeout=30_000)
    expect(page.locator("#prompt textarea")).to_have_value(PROMPT)
    expect(page.locator("#width input")).to_have_value("48")
    expect(page.locator("#height input")).to_have_value("72")
    expect(page.locator("#seed input[type=number]")).to_have_value(str(settings["seed"]))
    page.screenshot(path=screenshots / "04-settings-restored.png", full_page=True)

    urls = generate(page)
    regenerated, _ = fetch_image(page, urls[0])
    assert largest_difference(regenerated, downloaded) == 0
    page.screenshot(path=screenshots / "05-regenerated.png", full_page=True)

    # A PNG whose colour reference is a file of another machine: the settings come back, the file
    # is asked for by name, and the reference image stays empty.
    post = PostprocessSettings(color="reference", color_reference="/elsewhere/brand palette.png")
    elsewhere = save_png(Image.open(downloaded), {**settings, "postprocess": post.to_dict()}, tmp_path / "elsewhere.png")
    page.locator("#reuse-file").get_by_role("button", name=re.compile("clear", re.IGNORECASE)).click()
    page.set_input_files("#reuse-file input[type=file]", elsewhere)
    expect(page.locator("#status")).to_contain_text("upload the colour reference 'brand palette.png' again")
    expect(page.get_by_text("used the colour reference 'brand palette.png'")).to_be_visible()
    page.click("#postprocess button.label-wrap")
    expect(page.locator("#color-reference")).to_be_visible()
    expect(page.locator("#color-reference img")).to_have_count(0)
    page.screenshot(path=screenshots / "05b-reference-asked-for.png", full_page=True)


def test_a_png_without_studio_settings_leaves_every_control_as_it_was(app_url, open_session, screenshots, tmp_path):
    page = open_session(app_url)
    page.fill("#prompt textarea", PROMPT)
    holiday = tmp_path / "holiday.png"
    Image.new("RGB", (16, 16), (200, 30, 30)).save(holiday)
    page.click("#reuse button.label-wrap")
    page.set_input_files("#reuse-file input[type=file]", holiday)
    expect(page.locator("#status")).to_contain_text(
        "nothing was restored: 'holiday.png' holds no studio settings", timeout=30_000)
    expect(page.locator("#prompt textarea")).to_have_value(PROMPT)
    # No control is marked as failed (gradio's red "Error" on each output of a failed event).
    expect(page.locator("span.error")).to_have_count(0)
    page.screenshot(path=screenshots / "05c-not-a-studio-png.png", full_page=True)


def test_cancel_stops_the_run_and_the_next_one_works(app_url, open_session, screenshots):
    page = open_session(app_url)
    page.fill("#prompt textarea", PROMPT)
    choose_format(page, "Story 9:16")  # the largest preset, with the most steps: a run long enough to cancel
    page.fill("#steps input[type=number]", "50")
    page.press("#steps input[type=number]", "Tab")
    page.click("#generate")
    expect(page.locator("#results")).to_contain_text(re.compile(r"step \d+ of 50"), timeout=RUN_TIMEOUT_MS)
    page.click("#cancel")
    expect(page.locator("#status")).to_contain_text("run cancelled, no image was produced")
    page.screenshot(path=screenshots / "08-cancelled.png", full_page=True)
    assert result_urls(page) == []

    page.fill("#steps input[type=number]", "2")
    page.press("#steps input[type=number]", "Tab")
    urls = generate(page)
    assert fetch_image(page, urls[0])[0].size == (48, 88)


def history_captions(page) -> list[str]:
    return page.eval_on_selector_all("#history img", "images => images.map(i => i.alt || i.title)")


def test_two_sessions_never_see_each_others_history(app_url, open_session, screenshots, tmp_path):
    alice, bob = open_session(app_url), open_session(app_url)

    alice.fill("#prompt textarea", PROMPT)
    alice.fill("#seed input[type=number]", "4294967294")
    generate(alice, press_enter=True)
    bob.fill("#prompt textarea", "black background with a big yellow square in the middle")
    bob.fill("#seed input[type=number]", "21")
    generate(bob)
    alice.fill("#seed input[type=number]", "4294967295")  # the largest seed, exact through the browser
    generate(alice)

    expect(alice.locator("#history img")).to_have_count(2)
    expect(bob.locator("#history img")).to_have_count(1)
    assert history_captions(alice) == ["seed 4294967295", "seed 4294967294"]  # newest first
    assert history_captions(bob) == ["seed 21"]
    alice_files = set(alice.eval_on_selector_all("#history img", "images => images.map(i => i.src)"))
    bob_files = set(bob.eval_on_selector_all("#history img", "images => images.map(i => i.src)"))
    assert not alice_files & bob_files
    newest = tmp_path / "newest.png"
    newest.write_bytes(fetch_image(alice, result_urls(alice)[0])[1])
    assert read_settings(newest)["seed"] == 4294967295
    alice.screenshot(path=screenshots / "06-session-a.png", full_page=True)
    bob.screenshot(path=screenshots / "07-session-b.png", full_page=True)


def paint_stroke(page) -> tuple[slice, slice]:
    """Drag the mask's brush across the middle of the picture; returns the rows and columns of the
    picture that the stroke can have touched (its length plus the brush's radius, and a margin)."""
    canvas = page.locator("#mask canvas").first
    canvas.scroll_into_view_if_needed()
    zoom = float(re.search(r"(\d+)%", page.inner_text("#mask")).group(1)) / 100
    box = canvas.bounding_box()
    centre_x, centre_y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(centre_x - 40, centre_y)
    page.mouse.down()
    for step in range(1, 11):
        page.mouse.move(centre_x - 40 + step * 8, centre_y, steps=2)
    page.mouse.up()
    # The picture is centred in the canvas; the brush's radius is in the picture's pixels.
    reach = MASK_BRUSH + 2
    left, right = 32 + round(-40 / zoom) - reach, 32 + round(40 / zoom) + reach
    return slice(32 - reach, 32 + reach), slice(left, right)


def test_inpaint_a_painted_stroke_vary_the_result_and_reuse_its_settings(app_url, open_session, screenshots, tmp_path):
    page = open_session(app_url)
    picture = tmp_path / "input.png"
    pixels = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(picture)
    page.fill("#prompt textarea", PROMPT)
    page.click("#from-image button.label-wrap")
    page.set_input_files("#init-image input[type=file]", picture)
    expect(page.locator("#mask canvas").first).to_be_visible()
    page.fill("#strength input[type=number]", "1")
    page.press("#strength input[type=number]", "Tab")
    rows, columns = paint_stroke(page)
    urls = generate(page)
    page.screenshot(path=screenshots / "09-inpainted.png", full_page=True)
    inpainted, inpainted_bytes = fetch_image(page, urls[0])
    result = np.asarray(inpainted.convert("RGB"))
    kept = np.ones((64, 64), bool)
    kept[rows, columns] = False
    assert np.array_equal(result[kept], pixels[kept])  # every pixel outside the stroke, exactly
    assert (result != pixels).any(axis=2).sum() > 100  # the stroke was repainted
    made = tmp_path / "inpainted.png"
    made.write_bytes(inpainted_bytes)
    settings = read_settings(made)
    assert (settings["mode"], settings["strength"], settings["init_image"]["width"]) == ("inpaint", 1, 64)

    # Vary the selected result: a grid of variations with the seeds after its own.
    page.fill("#num-images input[type=number]", "2")
    page.press("#num-images input[type=number]", "Tab")
    page.click("#results .grid-container button.thumbnail-item")
    before = result_urls(page)
    page.click("#vary-subtle")
    page.wait_for_function("old => { const now = [...document.querySelectorAll('#results .grid-container img')]"
                           ".map(i => i.src); return now.length === 2 && now.join() !== old.join(); }",
                           arg=before, timeout=RUN_TIMEOUT_MS)
    captions = page.eval_on_selector_all("#results .grid-container img", "images => images.map(i => i.alt || i.title)")
    assert captions == [f"seed {settings['seed'] + 1}", f"seed {settings['seed'] + 2}"]
    variation, variation_bytes = fetch_image(page, result_urls(page)[0])
    (tmp_path / "varied.png").write_bytes(variation_bytes)
    varied = read_settings(tmp_path / "varied.png")
    assert (varied["mode"], varied["strength"], varied["seed"]) == ("image", 0.3, settings["seed"] + 1)
    assert varied["init_image"]["sha256"] == hashlib.sha256(inpainted_bytes).hexdigest()
    page.screenshot(path=screenshots / "10-varied.png", full_page=True)

    # "Use this result": the selected variation (in the gallery's preview strip) becomes the input picture.
    page.click("#results button.thumbnail-small >> nth=1")
    page.click("#use-result")
    chosen = re.compile(f"studio-{settings['seed'] + 2}\\.png$")
    expect(page.locator("#init-image img")).to_have_attribute("src", chosen)

    # Reuse settings of the inpainted PNG: every control back, the input picture asked for by its
    # hash; uploaded with the same stroke painted, the same pixels come back.
    page.fill("#strength input[type=number]", "0.2")
    page.press("#strength input[type=number]", "Tab")
    page.click("#reuse button.label-wrap")
    page.set_input_files("#reuse-file input[type=file]", made)
    digest = hashlib.sha256(picture.read_bytes()).hexdigest()[:12]
    expect(page.locator("#status")).to_contain_text(f"upload the input picture {digest}... (64x64)", timeout=30_000)
    expect(page.locator("#strength input[type=number]")).to_have_value("1")
    expect(page.locator("#num-images input[type=number]")).to_have_value("1")
    expect(page.locator("#init-image img")).to_have_count(0)
    page.screenshot(path=screenshots / "11-reuse-asks-for-the-input.png", full_page=True)
    page.set_input_files("#init-image input[type=file]", picture)
    expect(page.locator("#mask canvas").first).to_be_visible()
    paint_stroke(page)
    urls = generate(page)
    redrawn, _ = fetch_image(page, urls[0])
    assert largest_difference(redrawn, made) == 0


def test_extend_a_picture_to_a_format(app_url, open_session, screenshots, tmp_path):
    page = open_session(app_url)
    picture = tmp_path / "input.png"
    pixels = np.random.default_rng(2).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(picture)
    page.fill("#prompt textarea", PROMPT)
    page.click("#from-image button.label-wrap")
    page.set_input_files("#init-image input[type=file]", picture)
    page.click("#extend-to input")
    page.get_by_role("option", name=re.compile(r"^Link \W ad banner")).click()
    # The size follows the canvas the picture is extended to.
    expect(page.locator("#width input")).to_have_value("96")
    expect(page.locator("#height input")).to_have_value("48")
    expect(page.locator("#format input")).to_have_value(re.compile(r"^Link / ad banner"))
    urls = generate(page)
    page.screenshot(path=screenshots / "12-extended.png", full_page=True)
    extended, body = fetch_image(page, urls[0])
    assert extended.size == (96, 48)
    result = np.asarray(extended.convert("RGB"))
    # Centred and fitted to the canvas's height, every pixel of the fitted picture exactly.
    assert np.array_equal(result[:, 24:72], np.asarray(extend(Image.fromarray(pixels), 96, 48, "center")[0])[:, 24:72])
    made = tmp_path / "extended.png"
    made.write_bytes(body)
    assert read_settings(made)["extend"] == {"width": 96, "height": 48, "anchor": "center"}


def seen_previews(page) -> list[str]:
    return page.evaluate("[...window.studioPreviews]")


def test_live_previews_appear_during_a_run_and_not_when_switched_off(app_url, open_session, screenshots):
    page = open_session(app_url)
    page.fill("#prompt textarea", PROMPT)
    page.fill("#steps input[type=number]", "40")
    page.press("#steps input[type=number]", "Enter")
    expect(page.locator("#live-previews input")).to_be_checked()
    page.click("#generate")
    # A preview while the run goes on, then the result.
    expect(page.locator("#results")).to_contain_text("preview: step", timeout=RUN_TIMEOUT_MS)
    page.screenshot(path=screenshots / "12-live-preview.png", full_page=True)
    expect(page.locator("#status")).to_contain_text("last run", timeout=RUN_TIMEOUT_MS)
    expect(page.locator("#results")).not_to_contain_text("preview:")
    previews = seen_previews(page)
    assert previews and all(re.fullmatch(r"preview: step ([2-9]|[1-3]\d) of 40", text) for text in previews), previews
    page.screenshot(path=screenshots / "13-after-previews.png", full_page=True)

    page.uncheck("#live-previews input")
    page.evaluate("window.studioPreviews.clear(); window.studioProgress.clear()")
    urls = generate(page)
    assert len(urls) == 1 and seen_previews(page) == []
    assert "step 40 of 40" in page.evaluate("[...window.studioProgress]")  # the run itself was watched
    page.screenshot(path=screenshots / "14-previews-off.png", full_page=True)


def test_prompt_history_survives_a_reload_and_stays_in_its_browser(app_url, open_session, screenshots):
    page = open_session(app_url)
    history = page.locator("#prompt-list")
    for prompt in (PROMPT, "a small green triangle at the top on a white background"):
        page.fill("#prompt textarea", prompt)
        generate(page)
        expect(history).to_contain_text(prompt)
    page.reload()
    expect(page.locator("#status")).to_contain_text("embedded", timeout=60_000)
    # Newest first, after the reload.
    expect(history.locator("tbody tr")).to_have_count(2, timeout=30_000)
    expect(history.locator("tbody tr").first).to_contain_text("green triangle")
    page.screenshot(path=screenshots / "15-history-after-reload.png", full_page=True)

    page.fill("#prompt-search textarea", "red circle")
    expect(history.locator("tbody tr")).to_have_count(1)
    page.fill("#seed input[type=number]", "77")
    page.fill("#prompt textarea", "something else")
    history.locator("tbody tr").first.click()
    expect(page.locator("#status")).to_contain_text("settings restored from seed", timeout=30_000)
    expect(page.locator("#prompt textarea")).to_have_value(PROMPT)
    expect(page.locator("#seed input[type=number]")).not_to_have_value("77")
    page.screenshot(path=screenshots / "16-history-restored.png", full_page=True)

    # Another browser: its history is its own run alone.
    other = open_session(app_url)
    other.fill("#prompt textarea", "black background with a big yellow square in the middle")
    generate(other)
    expect(other.locator("#prompt-list tbody tr")).to_have_count(1)
    expect(other.locator("#prompt-list")).to_contain_text("yellow square")
    expect(other.locator("#prompt-list")).not_to_contain_text("red circle")
    expect(other.locator("#prompt-list")).not_to_contain_text("green triangle")
    other.screenshot(path=screenshots / "17-history-other-browser.png", full_page=True)


def test_enhance_edit_generate_and_reuse_keep_both_prompts(app_url, open_session, screenshots, tmp_path):
    page = open_session(app_url)
    page.fill("#prompt textarea", "a red circle")
    page.click("#enhance")
    box = page.locator("#enhanced-prompt textarea")
    expect(box).not_to_have_value("", timeout=RUN_TIMEOUT_MS)
    written = box.input_value()
    assert "red circle" in written and written != "a red circle", written  # the writer keeps what was given
    expect(page.locator("#prompt textarea")).to_have_value("a red circle")  # the original stays
    # Edit the rewrite as a person would: at its end.
    box.click()
    box.press("Control+End")
    box.press_sequentially(", big")
    edited = f"{written}, big"
    page.screenshot(path=screenshots / "30-enhanced-and-edited.png", full_page=True)

    urls = generate(page)
    _, body = fetch_image(page, urls[0])
    made = tmp_path / "enhanced.png"
    made.write_bytes(body)
    settings = read_settings(made)
    assert (settings["prompt"], settings["enhanced_prompt"], settings["enhancer"]) == (
        "a red circle", edited, "embedded writer")
    assert settings["enhancer_settings"]["edited"] is True
    page.screenshot(path=screenshots / "31-generated-from-the-edit.png", full_page=True)

    # A new prompt empties the box; Reuse settings brings both prompts back and redraws the picture.
    prompt = page.locator("#prompt textarea")
    prompt.click()
    prompt.press("Control+A")
    prompt.press_sequentially("a small green triangle")
    expect(box).to_have_value("")
    page.click("#auto-enhance input")
    page.click("#reuse button.label-wrap")
    page.set_input_files("#reuse-file input[type=file]", made)
    expect(page.locator("#status")).to_contain_text("settings restored from seed", timeout=30_000)
    expect(page.locator("#prompt textarea")).to_have_value("a red circle")
    expect(box).to_have_value(edited)
    expect(page.locator("#auto-enhance input")).not_to_be_checked()
    page.screenshot(path=screenshots / "32-both-prompts-restored.png", full_page=True)
    urls = generate(page)
    regenerated, _ = fetch_image(page, urls[0])
    assert largest_difference(regenerated, made) == 0
    # Picking an example is a new prompt too.
    page.get_by_text("small purple circle, bottom, orange background", exact=True).first.click()
    expect(page.locator("#prompt textarea")).to_have_value("small purple circle, bottom, orange background")
    expect(box).to_have_value("")


def test_the_unknown_word_notice_appears_before_the_run(app_url, open_session, screenshots):
    page = open_session(app_url)
    page.fill("#prompt textarea", "a big purple dragon breathing fire over a castle")
    before = result_urls(page)
    page.click("#generate")
    notice = page.get_by_text(re.compile(r'The embedded model does not know "dragon", "breathing", "fire", "over", '
                                         r'"castle": it draws one circle, square or triangle'))
    expect(notice).to_be_visible(timeout=60_000)
    page.screenshot(path=screenshots / "33-unknown-words.png", full_page=True)
    page.wait_for_function("old => { const now = [...document.querySelectorAll('#results .grid-container img')]"
                           ".map(i => i.src); return now.length > 0 && now.join() !== old.join(); }", arg=before,
                           timeout=RUN_TIMEOUT_MS)


def test_deliverables_grouped_with_their_zip_manifest_and_safe_zones(app_url, open_session, screenshots, tmp_path):
    page = open_session(app_url)
    page.fill("#prompt textarea", PROMPT)
    page.fill("#steps input[type=number]", "2")
    page.press("#steps input[type=number]", "Enter")
    page.click("#deliverables button.label-wrap")
    for label in ("Video thumbnail 1280x720", "Medium rectangle 300x250"):
        page.locator("#deliverable-list").get_by_label(label).check()
    page.fill("#deliverable-variants input[type=number]", "2")
    page.press("#deliverable-variants input[type=number]", "Enter")
    kit = tmp_path / "acme.json"
    kit.write_text(json.dumps({"name": "Acme", "style": "flat colours"}), encoding="utf-8")
    page.set_input_files("#kit-file input[type=file]", kit)
    expect(page.locator("#status")).to_contain_text("kit Acme loaded and chosen")
    expect(page.locator("#kit input")).to_have_value("Acme")
    page.click("#make-deliverables")
    expect(page.locator("#status")).to_contain_text("4 files made", timeout=RUN_TIMEOUT_MS)
    expect(page.locator("#deliverable-results .grid-container img")).to_have_count(4)
    # Grouped by deliverable, in the table's order, variants side by side.
    captions = re.findall(r"[A-Z][a-z]+ [a-z]+ \d+x\d+ · seed \d+", page.inner_text("#deliverable-results"))
    assert captions == ["Video thumbnail 1280x720 · seed 0", "Video thumbnail 1280x720 · seed 1",
                        "Medium rectangle 300x250 · seed 0", "Medium rectangle 300x250 · seed 1"], captions
    with page.expect_download() as download:
        page.click("#deliverable-zip a")
    archive = tmp_path / "deliverables.zip"
    download.value.save_as(archive)
    with zipfile.ZipFile(archive) as opened:
        rows = list(csv.DictReader(io.StringIO(opened.read("manifest.csv").decode("utf-8"))))
        sizes = {row["file"]: Image.open(io.BytesIO(opened.read(row["file"]))).size for row in rows}
    assert sorted((row["deliverable"], row["size"], row["seed"]) for row in rows) == [
        ("medium-rectangle", "300x250", "0"), ("medium-rectangle", "300x250", "1"),
        ("video", "1280x720", "0"), ("video", "1280x720", "1")]
    assert sorted(sizes.values()) == [(300, 250), (300, 250), (1280, 720), (1280, 720)]
    assert {(json.loads(row["kit"])["name"], row["prompt"]) for row in rows} == {("Acme", f"{PROMPT}, flat colours")}
    # The first result's safe zones over its preview, and gone when the box is cleared.
    page.check("#safe-zones input")
    expect(page.locator("#deliverable-preview")).to_contain_text("title safe, top")
    page.locator("#deliverables").screenshot(path=screenshots / "15-deliverables.png")
    page.uncheck("#safe-zones input")
    expect(page.locator("#deliverable-preview")).not_to_contain_text("title safe")
