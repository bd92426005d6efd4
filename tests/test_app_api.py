"""The studio's API as `gradio_client` sees it, served in-process on a free local port with the
embedded model: the `generate` endpoint, validation sentences, the server log, cancel, a full queue,
serving settings."""
from __future__ import annotations

import json
import logging
import threading
import urllib.request

import numpy as np
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from gradio_client.utils import QueueError, Status
from PIL import Image

import ui
from helpers.pixels import assert_within_one_level, bomb_png, levels
from helpers.studios import SpyStudio
from helpers.waiting import wait_until
from pipeline.conditioning import extend, fit, read_input_image
from pipeline.metadata import read_settings, request_from_settings
from pipeline.request import MAX_SEED, GenerationRequest
from ui.engine import Engine

PROMPT = "a large red circle on the left, blue background"
WAIT_S = 120  # upper bound of every wait below; none is a timing assertion


@pytest.fixture(scope="module")
def app(embedded, serve):
    return serve(embedded)


@pytest.fixture
def client(app) -> Client:
    return Client(app[1], verbose=False)


def engine_message(**fields) -> str:
    """The sentence the engine itself gives for these request fields (resolved for the embedded model)."""
    from pipeline.models import PRESETS

    with pytest.raises(ValueError) as error:
        PRESETS["embedded"].limits.resolve(GenerationRequest(**fields))
    return str(error.value)


def test_generate_returns_pngs_holding_the_seed_used(client):
    images, before_after, seed, status = client.predict(prompt=PROMPT, seed=MAX_SEED - 1, num_images=2,
                                                        api_name="/generate")
    assert seed == MAX_SEED - 1  # exact: no float rounding on the way
    assert [item["caption"] for item in images] == [f"seed {MAX_SEED - 1}", f"seed {MAX_SEED}"]
    for item, expected_seed in zip(images, (MAX_SEED - 1, MAX_SEED)):
        with Image.open(item["image"]) as image:
            assert (image.format, image.size) == ("PNG", (64, 64))
        settings = read_settings(item["image"])
        assert (settings["seed"], settings["prompt"], settings["model"]) == (expected_seed, PROMPT, "embedded")
    # No post-processing: "before" and "after" are the same picture.
    assert Image.open(before_after[0]).tobytes() == Image.open(before_after[1]).tobytes()
    assert "embedded" in status and "cpu" in status and "last run" in status

    images, _, seed, _ = client.predict(prompt=PROMPT, seed=5, random_seed=True, api_name="/generate")
    assert read_settings(images[0]["image"])["seed"] == seed


def test_postprocessing_through_the_api(client, tmp_path):
    reference = tmp_path / "brand.png"
    Image.new("RGB", (32, 32), (30, 60, 200)).save(reference)
    images, (before, after), _, _ = client.predict(prompt=PROMPT, seed=3, color="reference",
                                                   color_reference=handle_file(reference), color_strength=0.8,
                                                   upscale="2", api_name="/generate")
    assert Image.open(before).size == (64, 64)
    assert Image.open(after).size == Image.open(images[0]["image"]).size == (128, 128)
    post = read_settings(images[0]["image"])["postprocess"]
    assert (post["color"], post["color_strength"], post["upscale"]) == ("reference", 0.8, 2)


def test_image_to_image_at_strength_0_and_inpainting_keep_the_input_pixels(client, tmp_path):
    picture = tmp_path / "input.png"
    pixels = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(picture)
    images, _, _, _ = client.predict(prompt=PROMPT, seed=2, init_image=handle_file(picture), strength=0,
                                     api_name="/generate")
    assert np.array_equal(np.asarray(Image.open(images[0]["image"]).convert("RGB")), pixels)
    settings = read_settings(images[0]["image"])
    assert (settings["mode"], settings["strength"]) == ("image", 0)

    # The mask as the page's editor sends it: one transparent layer, painted where the picture changes.
    layer = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    layer.paste(Image.new("RGBA", (24, 16), (255, 255, 255, 255)), (20, 8))
    layer.save(tmp_path / "layer.png")
    editor = {"background": None, "layers": [handle_file(tmp_path / "layer.png")], "composite": None}
    images, _, _, _ = client.predict(prompt=PROMPT, seed=2, init_image=handle_file(picture), strength=1,
                                     mask=editor, api_name="/generate")
    result = np.asarray(Image.open(images[0]["image"]).convert("RGB"))
    kept = np.ones((64, 64), bool)
    kept[8:24, 20:44] = False
    assert np.array_equal(result[kept], pixels[kept])  # exactly, with no feather
    assert not np.array_equal(result[~kept], pixels[~kept])
    assert read_settings(images[0]["image"])["mode"] == "inpaint"


def test_hostile_input_pictures_get_one_sentence_each_and_the_app_keeps_serving(client, tmp_path):
    good = tmp_path / "good.png"
    Image.fromarray(np.random.default_rng(3).integers(0, 256, (40, 56, 3), dtype=np.uint8)).save(good)
    (tmp_path / "notes.png").write_text("a shopping list, not a picture")
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "cut.png").write_bytes(good.read_bytes()[:len(good.read_bytes()) // 2])
    bomb_png(tmp_path / "huge.png")
    refusals = {"notes.png": "init_image: 'notes.png' is not a picture this page can read (PNG, JPEG or WebP)",
                "empty.png": "init_image: 'empty.png' is not a picture this page can read (PNG, JPEG or WebP)",
                "cut.png": "init_image: cannot read 'cut.png' as an image: image file is truncated",
                "huge.png": f"init_image: 'huge.png' has more than {Image.MAX_IMAGE_PIXELS:,} pixels; use a smaller "
                            "copy of it"}
    for name, sentence in refusals.items():
        with pytest.raises(AppError) as refused:
            client.predict(prompt=PROMPT, init_image=handle_file(tmp_path / name), strength=0, api_name="/generate")
        message = str(refused.value)
        assert message.startswith(sentence) and len(message.splitlines()) == 1, message
        assert str(tmp_path) not in message

    # Every mode is read as the studio reads it (`conditioning.read_input_image`), then fitted.
    source = Image.open(good)
    rotated = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # the camera held sideways: turn the picture clockwise
    source.save(rotated, exif=exif, quality=95)
    pictures = {"rgba.png": source.convert("RGBA"), "palette.png": source.convert("P"), "grey.png": source.convert("L"),
                "grey16.png": source.convert("I").point(lambda value: value * 257).convert("I;16"),
                "cmyk.jpg": source.convert("CMYK")}
    pictures["rgba.png"].putalpha(128)
    for name, picture in pictures.items():
        picture.save(tmp_path / name)
    for name in (*pictures, rotated.name):
        images, _, _, _ = client.predict(prompt=PROMPT, init_image=handle_file(tmp_path / name), strength=0,
                                         api_name="/generate")
        expected = fit(read_input_image(tmp_path / name, "init_image").image, 64, 64)
        assert np.array_equal(levels(images[0]["image"]), levels(expected)), name

    images, _, _, _ = client.predict(prompt=PROMPT, api_name="/generate")  # still serving
    assert Image.open(images[0]["image"]).size == (64, 64)


def test_extend_to_a_format_keeps_the_input_pixels_where_the_canvas_puts_them(client, tmp_path):
    picture = tmp_path / "input.png"
    pixels = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(picture)
    images, _, _, _ = client.predict(prompt=PROMPT, seed=2, init_image=handle_file(picture), extend_to="banner",
                                     extend_anchor="left", api_name="/generate")
    result = Image.open(images[0]["image"])
    # The embedded model's 1.91:1 format, 96x48: the 64x64 picture is fitted to the canvas's height.
    assert (result.format, result.size) == ("PNG", (96, 48))
    canvas, mask = extend(Image.fromarray(pixels), 96, 48, "left")
    kept = np.asarray(mask) == 0
    assert kept.sum() == 48 * 48 and kept[:, :48].all()
    result = np.asarray(result.convert("RGB"))
    assert np.array_equal(result[kept], np.asarray(canvas)[kept])  # exactly, with no feather
    assert not np.array_equal(result[~kept], np.asarray(canvas)[~kept])
    settings = read_settings(images[0]["image"])
    assert (settings["mode"], settings["extend"]) == ("extend", {"width": 96, "height": 48, "anchor": "left"})


def test_a_mask_editor_value_naming_a_server_path_is_refused(app, client):
    parameters = client.view_api(return_format="dict", print_info=False)["named_endpoints"]["/generate"]["parameters"]
    data = {p["parameter_name"]: p["parameter_default"] for p in parameters}
    for editor, sentence in [
        ({"background": None, "layers": [{"path": "/etc/hostname", "meta": {"_type": "gradio.FileData"}}],
          "composite": None}, "mask (layer 1) must be a file uploaded to this page"),
        ({"background": {"path": "/etc/hostname", "meta": {"_type": "gradio.FileData"}}, "layers": []},
         "mask (background) must be a file uploaded to this page"),
        ({"background": None, "layers": "everything", "composite": None}, "mask: layers must be a list"),
        ({"layers": [], "script": 1}, "mask must be an object with background, layers and composite"),
    ]:
        event, payload = call_raw(app[1], list({**data, "prompt": PROMPT, "mask": editor}.values()))
        assert event == "error" and json.loads(payload)["error"].startswith(sentence), payload
    images, *_ = client.predict(prompt=PROMPT, api_name="/generate")
    assert read_settings(images[0]["image"])["mode"] == "text"


def call_raw(url: str, data: list) -> tuple[str, str]:
    """The REST route, for values JSON clients refuse to send (NaN): (event, data) of the last message."""
    body = json.dumps({"data": data}, allow_nan=True).encode()
    request = urllib.request.Request(url + "gradio_api/call/generate", data=body,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=WAIT_S) as response:
        event_id = json.load(response)["event_id"]
    with urllib.request.urlopen(f"{url}gradio_api/call/generate/{event_id}", timeout=WAIT_S) as response:
        lines = response.read().decode().splitlines()
    events = [line.removeprefix("event: ") for line in lines if line.startswith("event: ")]
    payloads = [line.removeprefix("data: ") for line in lines if line.startswith("data: ")]
    return events[-1], payloads[-1]


def test_bad_values_get_the_validation_sentence_and_the_app_keeps_serving(app, client):
    parameters = client.view_api(return_format="dict", print_info=False)["named_endpoints"]["/generate"]["parameters"]
    data = {p["parameter_name"]: p["parameter_default"] for p in parameters}
    data.update(prompt=PROMPT, guidance=float("nan"))
    event, payload = call_raw(app[1], list(data.values()))
    assert event == "error", payload
    assert json.loads(payload)["error"] == engine_message(prompt=PROMPT, guidance=float("nan"))

    cases = [({"prompt": PROMPT, "width": 100}, engine_message(prompt=PROMPT, width=100)),
             ({"prompt": "   "}, engine_message(prompt="   ")),
             # Sliders check their own range first, with gradio's sentence.
             ({"prompt": PROMPT, "steps": 51}, "Value 51 is greater than maximum value 50."),
             ({"prompt": PROMPT, "color": "palette", "color_palette": "#12345G"},
              "color_palette: '#12345G' is not a hex colour '#RRGGBB'")]
    for fields, sentence in cases:
        with pytest.raises(AppError) as error:
            client.predict(**fields, api_name="/generate")
        assert str(error.value) == sentence, fields

    images, *_ = client.predict(prompt=PROMPT, width=96, api_name="/generate")
    assert Image.open(images[0]["image"]).size == (96, 64)


class BrokenStudio(SpyStudio):
    """A studio with a bug: every run fails with an exception the page does not expect."""

    def generate(self, request, on_step=None):
        raise RuntimeError("a bug in the studio")


def test_the_studio_and_its_stand_ins_have_the_shape_the_page_needs(embedded):
    assert isinstance(embedded, Engine)
    assert isinstance(SpyStudio(embedded), Engine)


def test_a_bad_value_is_one_log_line_and_a_bug_keeps_its_traceback(app, client, embedded, serve, caplog, capfd):
    caplog.set_level(logging.INFO, logger="ui.errors")
    capfd.readouterr()
    for fields in ({"width": 33}, {"steps": 51}, {"prompt": "   "}):
        with pytest.raises(AppError):
            client.predict(**{"prompt": PROMPT, **fields}, api_name="/generate")
    log = capfd.readouterr().err
    assert "Traceback" not in log, log
    assert [record.getMessage() for record in caplog.records if record.name == "ui.errors"] == [
        f"refused: {engine_message(prompt=PROMPT, width=33)}",
        "refused: Value 51 is greater than maximum value 50.",
        f"refused: {engine_message(prompt='   ')}"]

    _, url = serve(BrokenStudio(embedded))
    with pytest.raises(AppError):
        Client(url, verbose=False).predict(prompt=PROMPT, api_name="/generate")
    log = capfd.readouterr().err
    assert "Traceback" in log and "RuntimeError: a bug in the studio" in log


def test_cancel_stops_the_running_generation_between_steps(embedded, serve):
    spy = SpyStudio(embedded)
    _, url = serve(spy)
    client = Client(url, verbose=False)
    job = client.submit(prompt=PROMPT, steps=50, api_name="/generate")
    wait_until(lambda: spy.steps, "the first denoising step")
    assert client.predict(api_name="/cancel").endswith("run cancelled, no image was produced")
    wait_until(lambda: spy.outcomes, "the run to end")
    kind, step, total = spy.outcomes[0]
    assert (kind, total) == ("cancelled", 50) and step < 50, spy.steps
    assert spy.steps == list(range(1, step + 1))  # no step ran after the one that saw the flag
    with pytest.raises(AppError, match=r"cancelled after step \d+ of 50; no image was produced"):
        job.result(timeout=WAIT_S)

    # A cancel does not leak into the session's next run.
    images, *_ = client.predict(prompt=PROMPT, steps=2, api_name="/generate")
    assert spy.outcomes[-1] == ("done", 2, 2) and read_settings(images[0]["image"])["steps"] == 2


def test_a_full_queue_is_refused_with_a_clear_message(embedded, serve):
    hold = threading.Event()
    _, url = serve(SpyStudio(embedded, hold=hold), queue_size=1)
    # As many runs as the studio takes at once, then one waiting, then no room.
    running = [Client(url, verbose=False).submit(prompt=PROMPT, steps=1, api_name="/generate")
               for _ in range(embedded.max_batch)]
    wait_until(lambda: all(job.status().code == Status.PROCESSING for job in running), "the first runs to start")
    waiting = Client(url, verbose=False).submit(prompt=PROMPT, steps=1, api_name="/generate")
    wait_until(lambda: waiting.status().code == Status.IN_QUEUE, "the next run to queue")
    try:
        with pytest.raises(QueueError, match="Queue is full"):
            Client(url, verbose=False).predict(prompt=PROMPT, steps=1, api_name="/generate")
    finally:
        hold.set()
    assert [job.result(timeout=WAIT_S)[2] for job in running + [waiting]] == [0] * (embedded.max_batch + 1)


def test_visitors_waiting_together_share_one_forward_batch(app, embedded, monkeypatch):
    """Requests that queue while the device is busy reach `generate_batch` together; each image is the
    one its request gets alone (within one level) and its PNG's settings reproduce it."""
    run, batches, first = embedded.generate_batch, [], threading.Event()

    def generate_batch(requests, on_step=None):
        batches.append([request.prompt for request in requests])
        if len(batches) == 1:
            first.set()
            wait_until(lambda: embedded.waiting == 2, "two more visitors to queue")
        return run(requests, on_step)

    monkeypatch.setattr(embedded, "generate_batch", generate_batch)
    prompts = [PROMPT, "a small green square at the top, white background", "a big yellow triangle, right, black background"]
    jobs = [Client(app[1], verbose=False).submit(prompt=prompts[0], seed=7, api_name="/generate")]
    assert first.wait(WAIT_S), "the first visitor's run never started"
    for index, prompt in enumerate(prompts[1:], start=1):
        jobs.append(Client(app[1], verbose=False).submit(prompt=prompt, seed=7 + index, api_name="/generate"))
        wait_until(lambda: embedded.waiting == index, f"visitor {index + 1} to queue")
    images = [job.result(timeout=WAIT_S)[0][0]["image"] for job in jobs]
    assert batches == [prompts[:1], prompts[1:]]
    for path, prompt in zip(images, prompts):
        request, index = request_from_settings(read_settings(path))
        assert (request.prompt, index) == (prompt, 0)
        assert_within_one_level(path, run([request])[0].images[0])


def test_serving_settings(app, embedded):
    demo, _ = app
    assert demo.max_file_size == 100 * 1024 * 1024
    assert demo.allowed_paths == []
    assert demo.delete_cache == (3600, 86400)
    assert demo._queue.max_size == ui.DEFAULT_QUEUE_SIZE
    assert demo.api_open is False  # a queued event is only reached through the queue
    generate = next(fn for fn in demo.fns.values() if fn.api_name == "generate")
    assert generate.concurrency_limit == embedded.max_batch == 4
    assert [fn.api_name for fn in demo.fns.values() if fn.api_visibility == "public"] == ["generate", "enhance",
                                                                                        "cancel"]
    with pytest.raises(ValueError, match="queue size must be at least 1"):
        ui.queue_options(0)


def test_references_through_the_api_on_a_model_that_takes_them(serve, tiny_studio, tmp_path):
    _, url = serve(tiny_studio("flux2-klein"))
    client = Client(url, verbose=False)
    paths = []
    for index, colour in enumerate(((200, 40, 40), (40, 40, 200))):
        paths.append(tmp_path / f"reference-{index}.png")
        Image.new("RGB", (96, 64), colour).save(paths[-1])
    asked = dict(prompt="make the circle red", seed=4, steps=2, width=32, height=32, api_name="/generate")
    images, *_ = client.predict(**asked, references=[handle_file(path) for path in paths])
    settings = read_settings(images[0]["image"])
    assert settings["mode"] == "reference" and Image.open(images[0]["image"]).size == (32, 32)
    assert [record["width"] for record in settings["references"]] == [96, 96]
    again, *_ = client.predict(**asked, references=[handle_file(path) for path in paths])
    assert np.array_equal(np.asarray(Image.open(images[0]["image"])), np.asarray(Image.open(again[0]["image"])))

    parameters = client.view_api(return_format="dict", print_info=False)["named_endpoints"]["/generate"]["parameters"]
    data = {p["parameter_name"]: p["parameter_default"] for p in parameters}
    server_path = [{"path": "/etc/hostname", "meta": {"_type": "gradio.FileData"}}]
    event, payload = call_raw(url, list({**data, "prompt": PROMPT, "references": server_path}.values()))
    assert event == "error" and json.loads(payload)["error"].startswith(
        "references (file 1) must be a file uploaded to this page"), payload


def test_a_model_without_references_refuses_them_with_a_sentence(client, tmp_path):
    path = tmp_path / "reference.png"
    Image.new("RGB", (64, 64), (200, 40, 40)).save(path)
    with pytest.raises(AppError) as error:
        client.predict(prompt=PROMPT, references=[handle_file(path)], api_name="/generate")
    assert str(error.value) == ("reference editing is not available for Sana models; it works with FLUX.2 klein, "
                                "Qwen-Image-Edit and Qwen-Image-Edit-Plus models")
