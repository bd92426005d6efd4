"""The UI's pure parts without a server: the declaration of the generate controls and the API it
makes, format sizes, control values <-> requests, the cancel flag, reuse of a stored PNG, and what
`ui` and `app.py` import and print."""
from __future__ import annotations

import asyncio
import hashlib
import math
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import gradio as gr
import numpy as np
import pytest
from PIL import Image

import ui
from helpers.studios import FakeStudio
from pipeline.conditioning import Extend
from pipeline.metadata import image_settings, save_png
from pipeline.models import PRESETS
from pipeline.postprocess import PostprocessSettings
from pipeline.request import GenerationRequest
from ui.controls import CONTROL_NAMES, CONTROLS, POSTPROCESS, REQUIRED, defaults, in_section
from ui.engine import Engine
from ui.formats import CUSTOM, FORMATS, format_choices, format_for_size, format_size
from ui.handlers import StudioHandlers
from ui.runs import Run, RunControl
from ui.settings import build_postprocess, build_request, controls_from_request, whole

ROOT = Path(__file__).resolve().parents[1]
EMBEDDED = PRESETS["embedded"].limits
# The controls' values as a page that nobody touched sends them, for a prompt.
UNTOUCHED = {**defaults(), "prompt": "a red circle"}


def handlers_for(tmp_path, studio: Engine | None = None) -> StudioHandlers:
    """Handlers whose components are stand-ins named 'component NAME'."""
    names = [*CONTROL_NAMES, "format", "status"]
    return StudioHandlers(studio or FakeStudio(), tmp_path, {name: f"component {name}" for name in names})


def updates(stream) -> list:
    """Everything an event's async generator yields, in order."""
    async def collect():
        return [update async for update in stream]

    return asyncio.run(collect())


def generate(handlers: StudioHandlers, run_control: RunControl | None = None, **values):
    """The generate handler called directly, outside gradio, as a test calls it: its final outputs."""
    return updates(handlers.generate(run_control or RunControl(), [], **values))[-1]


def restore(handlers: StudioHandlers, png) -> dict:
    """What Reuse settings writes, by component name."""
    return {component.removeprefix("component "): value for component, value in handlers.reuse_settings(str(png)).items()}


def test_the_stand_in_studios_have_the_shape_the_page_needs():
    assert isinstance(FakeStudio(), Engine)
    assert not isinstance(SimpleNamespace(limits=EMBEDDED), Engine)


def test_the_generate_endpoint_is_the_declaration_in_order_with_its_defaults(tmp_path):
    demo = ui.build_demo(FakeStudio())
    parameters = demo.get_api_info()["named_endpoints"]["/generate"]["parameters"]
    assert [p["parameter_name"] for p in parameters] == list(CONTROL_NAMES) == [
        "prompt", "negative_prompt", "seed", "random_seed", "steps", "guidance", "width", "height", "num_images",
        "denoise", "denoise_strength", "color", "color_reference", "color_palette", "color_strength", "upscale",
        "upscaler", "init_image", "strength", "mask", "mask_feather", "extend_to", "extend_anchor", "references",
        "enhanced_prompt", "auto_enhance", "color_statistics"]
    api_defaults = {p["parameter_name"]: p["parameter_default"] for p in parameters if p["parameter_has_default"]}
    # Model-dependent controls start at the model's values; every other one at its declared default.
    # auto_enhance: the host's choice (off unless `app.py --auto-enhance`).
    assert api_defaults == {**defaults(), "steps": 8, "guidance": 2.0, "width": 64, "height": 64,
                            "auto_enhance": False}
    assert (EMBEDDED.steps.default, EMBEDDED.guidance.default) == (8, 2.0)
    generate = next(fn for fn in demo.fns.values() if fn.api_name == "generate")
    components = {block.elem_id: block for block in generate.inputs if block.elem_id}
    assert list(components) == [name.replace("_", "-") for name in CONTROL_NAMES]
    assert (components["steps"].minimum, components["steps"].maximum) == (EMBEDDED.steps.min, EMBEDDED.steps.max)
    assert components["width"].step == EMBEDDED.size_multiple
    assert components["negative-prompt"].visible == EMBEDDED.uses_negative_prompt


def test_every_value_an_event_takes_is_checked_under_its_name():
    demo = ui.build_demo(FakeStudio())
    unchecked = {block.get_block_name() for fn in demo.fns.values() for block in fn.inputs
                 if not block.stateful and demo.input_name(block) is None}
    assert unchecked == set()
    generate = next(fn for fn in demo.fns.values() if fn.api_name == "generate")
    assert [demo.input_name(block) for block in generate.inputs if not block.stateful] == list(CONTROL_NAMES)


def test_every_control_is_a_request_field_a_postprocess_setting_or_the_seed_choice():
    # Extending a picture (outpainting) is two controls: the format of the canvas and the anchor.
    # The prompt writer's name and settings are recorded by the engine, never typed.
    request_fields = set(GenerationRequest.__dataclass_fields__) - {"postprocess", "extend", "enhancer",
                                                                    "enhancer_settings"}
    panel = {control.name for control in in_section(POSTPROCESS)}
    assert panel == set(PostprocessSettings.__dataclass_fields__) | {"denoise_strength"}
    assert set(CONTROL_NAMES) == request_fields | panel | {"random_seed", "extend_to", "extend_anchor",
                                                           "auto_enhance"}
    assert [control.name for control in CONTROLS if control.default is REQUIRED] == ["prompt"]


def test_generate_called_with_the_prompt_alone_uses_every_declared_default(tmp_path):
    studio = FakeStudio()
    images, before_after, seed, status, history, last_run = generate(handlers_for(tmp_path, studio),
                                                                     prompt="a red circle")
    assert studio.requests == [EMBEDDED.resolve(GenerationRequest(prompt="a red circle"))]
    assert (seed, [caption for _, caption in images], len(history)) == (0, ["seed 0"], 1)
    assert before_after[0] == before_after[1] == images[0][0] and "embedded" in status


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_format_fits_the_model(preset):
    limits = PRESETS[preset].limits
    for fmt in FORMATS:
        width, height = format_size(fmt, limits)
        assert width % limits.size_multiple == 0 and height % limits.size_multiple == 0
        assert width * height <= limits.max_pixels
        limits.check(GenerationRequest(prompt="x", width=width, height=height, steps=limits.steps.default,
                                       guidance=limits.guidance.default))
        error = abs(math.log(width / height / fmt.ratio))
        # Hub models: within 1 % of the ratio; the 64-pixel model: within 5 % (2:1 for 1.91:1).
        assert error <= math.log1p(0.05 if preset == "embedded" else 0.01), (fmt.name, width, height)
        assert format_for_size(width, height, limits) == fmt.key


def test_embedded_model_sizes_and_labels():
    assert {fmt.key: format_size(fmt, EMBEDDED) for fmt in FORMATS} == {
        "square": (64, 64), "portrait": (56, 72), "story": (48, 88), "landscape": (88, 48),
        "banner": (96, 48), "photo": (72, 48), "photo-portrait": (48, 72)}
    assert format_choices(EMBEDDED)[0] == ("Square post 1:1 (64x64)", "square")
    assert format_choices(EMBEDDED)[-1] == ("Custom size", CUSTOM)
    assert format_for_size(64, 128, EMBEDDED) == CUSTOM
    assert EMBEDDED.size_multiple == 8  # the DC-AE's 4x compression times the patch 2


def test_whole_numbers_pass_and_nothing_is_rounded():
    assert whole(7.0) == 7 and isinstance(whole(7.0), int)
    assert whole(7.5) == 7.5
    assert math.isnan(whole(float("nan")))
    assert whole(4294967295.0) == 4294967295
    with pytest.raises(ValueError, match="seed must be a whole number from 0 to 4294967295, got 7.5"):
        build_request({**UNTOUCHED, "seed": 7.5})
    assert build_request({**UNTOUCHED, "seed": 7.0, "steps": 8.0}) == GenerationRequest(prompt="a red circle", seed=7, steps=8)


def test_postprocess_panel_values():
    assert build_postprocess(UNTOUCHED) == PostprocessSettings()
    settings = build_postprocess({**UNTOUCHED, "denoise": "manual", "denoise_strength": 0.25, "color": "palette",
                                  "color_palette": "#1E88E5, #ffc107;#212121", "upscale": "4"})
    assert (settings.denoise, settings.color, settings.upscale) == (0.25, "palette", 4)
    assert settings.color_palette == ("#1E88E5", "#ffc107", "#212121")
    # A hidden control's leftover value does not leak into the request.
    assert build_postprocess({**UNTOUCHED, "color_palette": "#000000", "upscaler": "w.pth"}) == PostprocessSettings()
    with pytest.raises(ValueError, match="upload the reference picture"):
        build_postprocess({**UNTOUCHED, "color": "reference"})
    with pytest.raises(ValueError, match="give hex colours"):
        build_postprocess({**UNTOUCHED, "color": "palette", "color_palette": " , "})
    with pytest.raises(ValueError, match="color_strength must be in 0..1"):
        build_postprocess({**UNTOUCHED, "color": "auto", "color_strength": 1.5})


def stored_request(postprocess: PostprocessSettings) -> GenerationRequest:
    return EMBEDDED.resolve(GenerationRequest(
        prompt="a big yellow square", negative_prompt="blur", seed=4294967290, steps=12, guidance=4.5, width=96,
        height=64, num_images=3, postprocess=postprocess))


def test_controls_restore_the_request_they_came_from_once_its_files_are_uploaded_again(tmp_path):
    reference, weights = tmp_path / "reference.png", tmp_path / "x2.pth"
    request = stored_request(PostprocessSettings(denoise=0.3, color="reference", color_reference=str(reference),
                                                 color_strength=0.7, upscale=2, upscaler=str(weights)))
    values = controls_from_request(request)
    assert set(values) == set(CONTROL_NAMES)
    assert (values["color_reference"], values["upscaler"]) == (None, None)  # never a path of this server
    with pytest.raises(ValueError, match="upload the reference picture"):
        build_request(values)
    assert build_request({**values, "color_reference": str(reference), "upscaler": str(weights)}) == request

    plain = stored_request(PostprocessSettings(color="palette", color_palette=("#102030",), upscale=4))
    assert build_request(controls_from_request(plain)) == plain


def test_cancel_stops_every_request_queued_before_it_and_none_after():
    control = RunControl()
    running, waiting = Run(control), Run(control)
    assert running.wanted and waiting.wanted
    control.cancel()
    assert not running.wanted and not waiting.wanted
    assert Run(control).wanted  # the next request is not born cancelled


def test_a_run_whose_task_is_cancelled_is_told_to_stop():
    async def cancel_while_running():
        run, started, release = Run(RunControl()), threading.Event(), threading.Event()

        def work():
            started.set()
            release.wait(30)
            return run.wanted

        task = asyncio.ensure_future(run.in_thread(work))
        await asyncio.to_thread(started.wait, 30)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task  # at once, not when the work ends
        assert not run.wanted
        release.set()

    asyncio.run(cancel_while_running())


def test_reuse_settings_restores_every_control_and_refuses_other_pngs(tmp_path):
    handlers = handlers_for(tmp_path)
    request = EMBEDDED.resolve(GenerationRequest(prompt="a red circle", seed=9, width=48, height=72, num_images=2))
    settings = image_settings(request, 1, model="embedded", revision="r", pipeline="SanaPipeline",
                              scheduler="S", device="cpu", dtype="float32")
    png = save_png(Image.new("RGB", (48, 72)), settings, tmp_path / "made-here.png")

    restored = restore(handlers, png)
    assert set(restored) == {*CONTROL_NAMES, "format", "status"}
    assert (restored["prompt"], restored["seed"], restored["num_images"]) == ("a red circle", 9, 2)
    assert (restored["width"], restored["height"], restored["format"]) == (48, 72, "photo-portrait")
    assert "image 2 of a batch of 2 (seed 10)" in restored["status"]
    assert restored["status"].endswith("; press Generate")

    # Any other PNG: the controls stay as they are, and the status line says why, naming the file
    # by its base name only.
    plain = tmp_path / "uploads" / "plain.png"
    plain.parent.mkdir()
    Image.new("RGB", (8, 8)).save(plain)
    refused = restore(handlers, plain)
    assert list(refused) == ["status"]
    assert "nothing was restored: 'plain.png' holds no studio settings" in refused["status"]
    assert str(plain.parent) not in refused["status"]


def test_reuse_settings_of_a_png_whose_colour_reference_is_gone_asks_for_the_file(tmp_path):
    reference = tmp_path / "folder" / "brand colours.png"
    reference.parent.mkdir()
    Image.new("RGB", (8, 8), (30, 60, 200)).save(reference)
    request = EMBEDDED.resolve(GenerationRequest(
        prompt="a green triangle", seed=31, steps=5, num_images=1,
        postprocess=PostprocessSettings(color="reference", color_reference=str(reference), color_strength=0.6)))
    settings = image_settings(request, 0, model="embedded", revision="r", pipeline="SanaPipeline",
                              scheduler="S", device="cpu", dtype="float32")
    png = save_png(Image.new("RGB", (64, 64)), settings, tmp_path / "made-here.png")
    reference.unlink()
    handlers = handlers_for(tmp_path)

    with pytest.warns(UserWarning) as warned:
        restored = restore(handlers, png)
    assert (restored["prompt"], restored["seed"], restored["steps"]) == ("a green triangle", 31, 5)
    assert (restored["color"], restored["color_strength"], restored["color_reference"]) == ("reference", 0.6, None)
    for text in (restored["status"], str(warned[0].message)):
        assert "'brand colours.png'" in text and str(reference.parent) not in text
    assert "upload the colour reference 'brand colours.png' again" in restored["status"]

    # Generate before the file is uploaded again: the sentence that asks for it.
    with pytest.raises(gr.Error, match="upload the reference picture"):
        generate(handlers, **{name: restored[name] for name in CONTROL_NAMES})


def brush_layer(size: tuple[int, int], box: tuple[int, int, int, int], colour=(255, 255, 255)) -> Image.Image:
    """A layer as the page's mask editor sends it: transparent, painted in one colour over `box`."""
    layer = Image.new("RGBA", size, (0, 0, 0, 0))
    layer.paste(Image.new("RGBA", (box[2] - box[0], box[3] - box[1]), (*colour, 255)), box[:2])
    return layer


def test_the_start_from_an_image_panel_builds_image_to_image_and_inpainting_requests(tmp_path):
    picture = tmp_path / "uploads" / "cat.png"
    picture.parent.mkdir()
    Image.new("RGB", (64, 64), (10, 200, 30)).save(picture)
    studio = FakeStudio()
    handlers = handlers_for(tmp_path, studio)

    generate(handlers, **{**UNTOUCHED, "init_image": str(picture), "strength": 0.45, "mask_feather": 3})
    request = studio.requests[-1]
    assert (request.mode, request.strength, request.mask) == ("image", 0.45, None)
    assert request.init_image.sha256 == hashlib.sha256(picture.read_bytes()).hexdigest()
    assert np.array_equal(np.asarray(request.init_image.image), np.asarray(Image.open(picture).convert("RGB")))

    # An editor whose layer holds no paint is no mask: image-to-image.
    editor = {"background": None, "layers": [Image.new("RGBA", (64, 64))], "composite": None}
    generate(handlers, **{**UNTOUCHED, "init_image": str(picture), "mask": editor})
    assert studio.requests[-1].mode == "image"

    # A stroke in any brush colour marks what is repainted.
    editor = {"background": None, "layers": [brush_layer((64, 64), (8, 16, 24, 40), (204, 50, 50))],
              "composite": None}
    generate(handlers, **{**UNTOUCHED, "init_image": str(picture), "mask": editor, "mask_feather": 2})
    request = studio.requests[-1]
    assert (request.mode, request.mask_feather) == ("inpaint", 2)
    mask = np.asarray(request.mask.image)
    assert mask[16:40, 8:24].min() == 255 and mask.sum() == 255 * 16 * 24


@pytest.mark.parametrize("content, sentence", [
    (b"", "init_image: 'broken.png' is an empty file"),
    (b"GIF89a not really", "init_image: cannot read 'broken.png' as an image"),
    (b"\x89PNG\r\n\x1a\n" + b"\0" * 40, "init_image: cannot read 'broken.png' as an image"),
])
def test_a_bad_input_picture_is_one_sentence_naming_the_input_and_the_file(tmp_path, content, sentence):
    broken = tmp_path / "server folder" / "broken.png"
    broken.parent.mkdir()
    broken.write_bytes(content)
    with pytest.raises(gr.Error) as refused:
        generate(handlers_for(tmp_path), **{**UNTOUCHED, "init_image": str(broken)})
    assert refused.value.message.startswith(sentence)
    assert "server folder" not in refused.value.message and len(refused.value.message.splitlines()) == 1


def test_a_mask_without_a_picture_or_marking_nothing_is_refused_in_a_sentence(tmp_path):
    picture = tmp_path / "cat.png"
    Image.new("RGB", (64, 64)).save(picture)
    editor = {"background": None, "layers": [brush_layer((64, 64), (0, 0, 8, 8))], "composite": None}
    with pytest.raises(gr.Error) as refused:
        generate(handlers_for(tmp_path), **{**UNTOUCHED, "mask": editor})
    assert refused.value.message.startswith("mask needs an init_image: upload the picture to repaint")
    # One painted pixel on a large canvas is lost when fitted to a much smaller picture.
    Image.new("RGB", (8, 8)).save(picture)
    editor = {"background": None, "layers": [brush_layer((512, 512), (3, 3, 4, 4))], "composite": None}
    with pytest.raises(gr.Error) as refused:
        generate(handlers_for(tmp_path), **{**UNTOUCHED, "init_image": str(picture), "mask": editor})
    assert refused.value.message.startswith("mask: the mask marks nothing to repaint once fitted to 8x8")


def test_vary_starts_from_the_selected_result_with_the_next_seeds(tmp_path):
    studio = FakeStudio()
    handlers = handlers_for(tmp_path, studio)
    *_, last_run = generate(handlers, **{**UNTOUCHED, "seed": 41, "num_images": 2})
    selected = last_run[1]
    for vary, strength in ((handlers.vary_subtle, 0.3), (handlers.vary_strong, 0.6)):
        images, _, seed, _, _, _ = updates(vary(selected, RunControl(), [], **{**UNTOUCHED, "num_images": 3}))[-1]
        request = studio.requests[-1]
        assert (request.mode, request.strength, request.seed, request.num_images) == ("image", strength, 43, 3)
        assert request.init_image.sha256 == hashlib.sha256(Path(selected.path).read_bytes()).hexdigest()
        assert [caption for _, caption in images] == ["seed 43", "seed 44", "seed 45"] and seed == 43
    with pytest.raises(gr.Error, match="select a result first"):
        updates(handlers.vary_subtle(None, RunControl(), [], **UNTOUCHED))

    # "Use this result": the selected picture becomes the input picture, shown under the mask's brush.
    assert handlers.use_result(selected) == selected.path
    assert handlers.show_input_picture(selected.path) == {"background": selected.path, "layers": [],
                                                           "composite": selected.path}
    assert handlers.show_input_picture(None) is None


def test_reuse_settings_of_an_inpainted_png_asks_for_its_pictures_and_redraws_it(tmp_path):
    picture = tmp_path / "cat.png"
    Image.new("RGB", (64, 64), (10, 200, 30)).save(picture)
    studio = FakeStudio()
    handlers = handlers_for(tmp_path, studio)
    editor = {"background": None, "layers": [brush_layer((64, 64), (8, 8, 32, 32))], "composite": None}
    *_, last_run = generate(handlers, **{**UNTOUCHED, "seed": 5, "init_image": str(picture), "strength": 0.7,
                                         "mask": editor, "mask_feather": 4})
    made = studio.requests[-1]

    with pytest.warns(UserWarning) as warned:
        restored = restore(handlers, last_run[0].path)
    assert (restored["strength"], restored["mask_feather"], restored["seed"]) == (0.7, 4, 5)
    assert (restored["init_image"], restored["mask"]) == (None, None)  # never a path from the PNG
    digest = hashlib.sha256(picture.read_bytes()).hexdigest()[:12]
    for text in (restored["status"], str(warned[0].message)):
        assert f"the input picture {digest}... (64x64)" in text and f"the mask {made.mask.sha256[:12]}..." in text

    # The same picture uploaded and the same stroke painted: the same request.
    generate(handlers, **{**{name: restored[name] for name in CONTROL_NAMES}, "init_image": str(picture),
                          "mask": editor})
    assert studio.requests[-1] == made


def built(demo: gr.Blocks) -> dict:
    """The page's components and layout blocks by elem_id."""
    return {block.elem_id: block for block in demo.blocks.values() if getattr(block, "elem_id", None)}


def test_what_starts_from_a_picture_is_shown_only_for_the_modes_the_model_serves():
    starts_from_a_picture = ("from-image", "use-result", "vary-subtle", "vary-strong")
    text_only = built(ui.build_demo(FakeStudio(modes=("text",))))
    assert [text_only[name].visible for name in starts_from_a_picture] == [False] * 4
    assert [text_only[name].visible for name in ("mask", "extend-to", "extend-anchor")] == [False] * 3

    no_extend = built(ui.build_demo(FakeStudio(modes=("text", "image", "inpaint"))))
    assert [no_extend[name].visible for name in starts_from_a_picture] == [True] * 4
    assert [no_extend[name].visible for name in ("mask", "extend-to", "extend-anchor")] == [True, False, False]

    image_only = built(ui.build_demo(FakeStudio(modes=("text", "image"))))
    assert (image_only["from-image"].visible, image_only["init-image"].visible, image_only["mask"].visible) == (
        True, True, False)

    every_mode = built(ui.build_demo(FakeStudio()))
    assert all(every_mode[name].visible for name in (*starts_from_a_picture, "mask", "extend-to", "extend-anchor"))
    # The formats of this model, as the Format dropdown names them, and off.
    assert every_mode["extend-to"].choices == [("Off", "off"), *format_choices(EMBEDDED)[:-1]]
    assert every_mode["extend-anchor"].value == "center"


def test_extend_to_a_format_sets_the_canvas_and_reuse_settings_restores_it(tmp_path):
    picture = tmp_path / "cat.png"
    Image.new("RGB", (64, 64), (10, 200, 30)).save(picture)
    studio = FakeStudio()
    handlers = handlers_for(tmp_path, studio)
    # Width and height follow the format, whatever the boxes say.
    *_, last_run = generate(handlers, **{**UNTOUCHED, "init_image": str(picture), "width": 96, "height": 96,
                                         "extend_to": "story", "extend_anchor": "top-left"})
    made = studio.requests[-1]
    story = format_size(FORMATS[2], EMBEDDED)
    assert (made.mode, made.extend, (made.width, made.height)) == ("extend", Extend.to(*story, "top-left"), story)

    assert handlers.apply_extend("story") == (*story, "story")
    with pytest.warns(UserWarning):
        restored = restore(handlers, last_run[0].path)
    assert (restored["extend_to"], restored["extend_anchor"]) == ("story", "top-left")
    generate(handlers, **{**{name: restored[name] for name in CONTROL_NAMES}, "init_image": str(picture)})
    assert studio.requests[-1] == made

    with pytest.raises(gr.Error, match="extend needs an init_image"):
        generate(handlers, **{**UNTOUCHED, "extend_to": "story"})
    with pytest.raises(gr.Error, match="extend_to must be 'off' or a format"):
        generate(handlers, **{**UNTOUCHED, "init_image": str(picture), "extend_to": "poster"})


def test_ui_imports_no_torch_and_app_reports_a_missing_model_in_one_line():
    code = ("import sys, ui; print(sorted(m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules)); "
            "import app; sys.exit(app.main(['--model', 'no-such-model']))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.stdout.strip() == "[]"  # importing the UI loads neither torch nor diffusers
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("error: Model 'no-such-model' is not a preset")
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("flag, message", [("--batch-size", "error: batch size must be at least 1, got 0"),
                                           ("--queue-size", "error: queue size must be at least 1, got 0")])
def test_app_refuses_a_zero_batch_or_queue_in_one_line(flag, message):
    done = subprocess.run([sys.executable, "app.py", flag, "0"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == message
    assert "Traceback" not in done.stderr


# Reference editing ---------------------------------------------------------------------------------

def test_the_references_upload_is_shown_only_for_a_model_that_takes_references():
    every_mode = built(ui.build_demo(FakeStudio()))
    assert not every_mode["references"].visible
    klein = built(ui.build_demo(FakeStudio(modes=("text", "inpaint", "extend", "reference"))))
    assert (klein["from-image"].visible, klein["references"].visible, klein["init-image"].visible) == (
        True, True, True)
    edit_only = built(ui.build_demo(FakeStudio(modes=("reference",))))
    assert [edit_only[name].visible for name in ("from-image", "references", "init-image", "strength", "mask")] == [
        True, True, False, False, False]
    assert edit_only["references"].file_count == "multiple"


def test_references_make_a_reference_request_and_reuse_settings_asks_for_them(tmp_path):
    paths = []
    for index, colour in enumerate(((200, 30, 30), (30, 30, 200))):
        paths.append(tmp_path / f"reference-{index}.png")
        Image.new("RGB", (64, 48), colour).save(paths[-1])
    studio = FakeStudio(modes=("reference",))
    handlers = handlers_for(tmp_path, studio)
    *_, last_run = generate(handlers, **{**UNTOUCHED, "seed": 5, "references": [str(path) for path in paths]})
    made = studio.requests[-1]
    digests = [hashlib.sha256(path.read_bytes()).hexdigest() for path in paths]
    assert made.mode == "reference" and [item.sha256 for item in made.references] == digests

    with pytest.warns(UserWarning) as warned:
        restored = restore(handlers, last_run[0].path)
    assert restored["references"] is None  # never a path from the PNG
    wanted = f"reference 1 {digests[0][:12]}... (64x48), reference 2 {digests[1][:12]}... (64x48)"
    assert wanted in restored["status"] and wanted in str(warned[0].message)
    generate(handlers, **{**{name: restored[name] for name in CONTROL_NAMES},
                          "references": [str(path) for path in paths]})
    assert studio.requests[-1] == made


def test_a_bad_reference_is_one_sentence_naming_its_position_and_file(tmp_path):
    good, bad = tmp_path / "good.png", tmp_path / "broken.png"
    Image.new("RGB", (64, 64)).save(good)
    bad.write_bytes(b"")
    with pytest.raises(gr.Error) as error:
        generate(handlers_for(tmp_path), **{**UNTOUCHED, "references": [str(good), str(bad)]})
    assert error.value.message == "reference 2: 'broken.png' is an empty file (0 bytes), not a picture"
    with pytest.raises(gr.Error) as error:
        generate(handlers_for(tmp_path), **{**UNTOUCHED, "references": [str(good)] * 5})
    assert error.value.message == "references has 5 pictures; the limit is 4"


def preview_captions(stream_updates: list) -> list[str]:
    """The gallery captions of the updates before the last: the live previews."""
    return [caption for update in stream_updates[:-1] for _, caption in update[0]]


def test_live_previews_stream_into_the_gallery_before_the_result(tmp_path, sana):
    handlers = handlers_for(tmp_path, sana)
    values = {**UNTOUCHED, "steps": 4, "width": 32, "height": 32, "num_images": 2}
    streamed = updates(handlers.generate(RunControl(), [], previews=True, **values))
    captions = preview_captions(streamed)
    # The newest preview is shown; one overtaken before the page took it is skipped.
    assert captions and set(captions) <= {"preview: step 2 of 4", "preview: step 3 of 4"}
    assert len(captions) % 2 == 0  # both pictures of each preview
    for update in streamed[:-1]:
        assert all(picture.size == (32, 32) for picture, _ in update[0])
        assert all(output is gr.skip() or output == gr.skip() for output in update[1:])
    images, _, seed, _, _, _ = streamed[-1]
    assert [caption for _, caption in images] == ["seed 0", "seed 1"] and seed == 0


def test_live_previews_off_or_unsupported_yield_the_result_alone(tmp_path, sana):
    values = {**UNTOUCHED, "steps": 4, "width": 32, "height": 32}
    off = updates(handlers_for(tmp_path, sana).generate(RunControl(), [], previews=False, **values))
    assert len(off) == 1
    # An API caller has no box, so no previews; the page's box starts on and is not an API parameter.
    assert len(updates(handlers_for(tmp_path, sana).generate(RunControl(), [], **values))) == 1
    demo = ui.build_demo(FakeStudio())
    assert built(demo)["live-previews"].value is True
    assert handlers_for(tmp_path, sana).choose_previews(True) is True
    # Cancel puts the last finished run back in the gallery, in place of a cancelled run's previews.
    *_, last_run = off[-1]
    assert handlers_for(tmp_path, sana).drop_previews(last_run) == [(last_run[0].path, "seed 0")]
    assert handlers_for(tmp_path, sana).drop_previews([]) == []
    # An engine whose `generate` takes no on_preview (e.g. a remote client) runs without previews.
    fake = handlers_for(tmp_path, FakeStudio())
    assert not fake.previews
    assert len(updates(fake.generate(RunControl(), [], previews=True, **UNTOUCHED))) == 1


def selection(index: int) -> gr.SelectData:
    return gr.SelectData(None, {"index": index, "value": None})


def test_the_prompt_history_is_newest_first_searchable_bounded_and_restores_settings(tmp_path, monkeypatch):
    handlers = handlers_for(tmp_path)
    history = []
    for prompt, seed in (("a red circle", 3), ("a blue square", 4), ("a RED square", 5)):
        *_, last_run = generate(handlers, **{**UNTOUCHED, "prompt": prompt, "seed": seed})
        history = handlers.remember_prompt(last_run, history)
    assert [entry["prompt"] for entry in history] == ["a RED square", "a blue square", "a red circle"]
    # The same settings again move up instead of being kept twice.
    *_, last_run = generate(handlers, **{**UNTOUCHED, "prompt": "a blue square", "seed": 4})
    history = handlers.remember_prompt(last_run, history)
    assert [entry["prompt"] for entry in history] == ["a blue square", "a RED square", "a red circle"]

    rows, shown = handlers.show_prompts(history, "  red ")
    assert [entry["prompt"] for entry in shown] == ["a RED square", "a red circle"]
    assert rows.raw_samples == [["a RED square", "seed 5 · 64x64 · 8 steps"], ["a red circle", "seed 3 · 64x64 · 8 steps"]]
    assert handlers.show_prompts(history, "red circle")[1] == [history[2]]
    assert handlers.show_prompts(history, "green")[1] == []
    # Entries of another shape in the browser's storage are passed over, not trusted.
    assert handlers.show_prompts([{"prompt": "x"}, "junk", *history], "")[1] == history

    # Choosing a row restores exactly what Reuse settings restores from that run's picture.
    restored = handlers.restore_prompt(shown, selection(1))
    by_picture = handlers.reuse_settings(last_run[0].path)
    assert {name: value for name, value in restored.items() if name != "component status"} == {
        name: value for name, value in by_picture.items() if name != "component status"} | {
        "component seed": 3, "component prompt": "a red circle"}
    assert "seed 3 by embedded" in restored["component status"]
    assert handlers.restore_prompt(shown, selection(7)) == {"component status": gr.update()}

    monkeypatch.setattr("ui.handlers.PROMPT_HISTORY_LIMIT", 3)
    *_, last_run = generate(handlers, **{**UNTOUCHED, "prompt": "a green triangle"})
    assert [entry["prompt"] for entry in handlers.remember_prompt(last_run, history)] == [
        "a green triangle", "a blue square", "a RED square"]
