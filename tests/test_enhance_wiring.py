"""The prompt writer in use: the request's enhanced prompt, what the PNG records and what redraws
it, `Studio.enhance` and its cache, `generate --enhance`, and the page's Enhance button, auto-enhance
box and `enhance` API endpoint."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError
from PIL import Image

import ui
from helpers.endpoints import chat_server
from helpers.studios import FakeStudio
from pipeline.enhance import Enhancement, EnhanceFailed
from pipeline.metadata import a1111_parameters, image_settings, read_settings, request_from_settings, save_png
from pipeline.models import PRESETS
from pipeline.request import GenerationRequest
from pipeline.safety import PromptRefused, SafetyGate, SafetySettings
from pipeline.studio import Studio
from ui.controls import CONTROL_NAMES, defaults
from ui.handlers import StudioHandlers
from ui.runs import RunControl

ROOT = Path(__file__).resolve().parents[1]
EMBEDDED = PRESETS["embedded"].limits
PROMPT = "a red circle"
REWRITE = "a large red circle at the bottom on a blue background"
UNKNOWN = "a big purple dragon breathing fire over a castle"


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"))


@pytest.fixture
def studio(embedded) -> Studio:
    """The shared embedded model's pipeline in a studio of its own: its own caches and writer."""
    return Studio(embedded.source, embedded.pipe, "cpu")


def counting(studio: Studio) -> list:
    """The calls of the studio's writer from now on, recorded as (prompt, seed, task)."""
    calls, rewrite = [], studio._rewrite

    def counted(prompt, seed, task, should_stop):
        calls.append((prompt, seed, task))
        return rewrite(prompt, seed, task, should_stop)

    studio._rewrite = counted
    return calls


# -- the request and its record ---------------------------------------------------------------


def test_the_enhanced_prompt_follows_the_prompt_rules_and_is_the_text_encoded():
    request = GenerationRequest(prompt=PROMPT, enhanced_prompt=REWRITE)
    assert (request.prompt, request.encoded_prompt) == (PROMPT, REWRITE)
    assert GenerationRequest(prompt=PROMPT, enhanced_prompt="  ").encoded_prompt == PROMPT
    with pytest.raises(ValueError, match=r"^enhanced_prompt contains the control character U\+0007 at position 1; "):
        GenerationRequest(prompt=PROMPT, enhanced_prompt="a\x07b")
    with pytest.raises(ValueError, match=r"^enhanced_prompt has 2001 characters; the limit is 2000$"):
        GenerationRequest(prompt=PROMPT, enhanced_prompt="x" * 2001)


def test_the_png_holds_both_prompts_and_the_writer_and_gives_the_request_back(tmp_path):
    request = EMBEDDED.resolve(GenerationRequest(
        prompt=PROMPT, seed=4, enhanced_prompt=REWRITE, enhancer="embedded writer",
        enhancer_settings={"seed": 4, "task": "text", "temperature": 0.5}))
    settings = image_settings(request, 0, model="embedded", revision="r", pipeline="SanaPipeline", scheduler="S",
                              device="cpu", dtype="float32")
    png = save_png(Image.new("RGB", (64, 64)), settings, tmp_path / "a.png")
    stored = read_settings(png)
    assert (stored["prompt"], stored["enhanced_prompt"], stored["enhancer"]) == (PROMPT, REWRITE, "embedded writer")
    assert stored["enhancer_settings"] == {"seed": 4, "task": "text", "temperature": 0.5}
    # Other tools redraw from the text that was encoded.
    assert a1111_parameters(stored).splitlines()[0] == REWRITE
    assert request_from_settings(stored) == (request, 0)
    # A picture drawn from the prompt as typed records no writer.
    plain = image_settings(request.replace(enhanced_prompt="", enhancer="", enhancer_settings={}), 0, model="embedded",
                           revision="r", pipeline="SanaPipeline", scheduler="S", device="cpu", dtype="float32")
    assert not {"enhanced_prompt", "enhancer", "enhancer_settings"} & set(plain)
    with pytest.raises(ValueError, match="^stored enhanced_prompt must be text, got 7$"):
        request_from_settings({**stored, "enhanced_prompt": 7})


def test_batches_go_by_the_text_encoded():
    from pipeline.batching import batch_key
    from pipeline.conditioning import read_input_image

    reference = (read_input_image(Image.new("RGB", (32, 32), (200, 10, 10)), "reference"),)
    one = GenerationRequest(prompt=PROMPT, references=reference, enhanced_prompt=REWRITE)
    assert batch_key(one) == batch_key(GenerationRequest(prompt="a blue square", references=reference,
                                                         enhanced_prompt=REWRITE))
    assert batch_key(one) != batch_key(one.replace(enhanced_prompt=""))


# -- the studio -------------------------------------------------------------------------------


def test_an_enhanced_picture_is_drawn_from_the_rewrite_and_redrawn_from_its_png_without_the_writer(
        studio, embedded, tmp_path, monkeypatch):
    enhancement = studio.enhance(PROMPT, seed=3)
    assert enhancement.enhancer == "embedded writer" and enhancement.text != PROMPT
    assert (enhancement.settings["seed"], enhancement.settings["task"]) == (3, "text")
    request = GenerationRequest(prompt=PROMPT, seed=5, steps=4, **enhancement.request_fields())
    result = studio.generate(request)
    settings = result.settings[0]
    assert (settings["prompt"], settings["enhanced_prompt"], settings["enhancer"]) == (
        PROMPT, enhancement.text, "embedded writer")
    # The rewrite is what is encoded: the same pixels as the rewrite typed as the prompt, not the prompt's.
    typed = studio.generate(GenerationRequest(prompt=enhancement.text, seed=5, steps=4)).images[0]
    plain = studio.generate(GenerationRequest(prompt=PROMPT, seed=5, steps=4)).images[0]
    assert np.array_equal(pixels(result.images[0]), pixels(typed))
    assert not np.array_equal(pixels(result.images[0]), pixels(plain))

    png = save_png(result.images[0], settings, tmp_path / "enhanced.png")
    stored, index = request_from_settings(read_settings(png))
    fresh = Studio(embedded.source, embedded.pipe, "cpu")

    def no_writer(*args, **kwargs):
        raise AssertionError("the writer ran for a stored enhanced prompt")

    monkeypatch.setattr(fresh, "_rewrite", no_writer)
    monkeypatch.setattr(fresh, "enhance", no_writer)
    again = fresh.generate(stored)
    assert index == 0 and fresh._enhancer is None  # never even built
    assert np.array_equal(pixels(again.images[index]), pixels(Image.open(png)))
    assert again.settings[0]["enhanced_prompt"] == enhancement.text


def test_the_same_prompt_and_seed_are_rewritten_once(studio):
    calls = counting(studio)
    first = studio.enhance(PROMPT, seed=1)
    assert studio.enhance(PROMPT, seed=1) is first
    studio.enhance(PROMPT, seed=2)
    studio.enhance(PROMPT, seed=1)
    assert calls == [(PROMPT, 1, "text"), (PROMPT, 2, "text")]
    # The writer knows its own rewrites, and an edited one as edited.
    assert studio.written(PROMPT, first.text) == first
    edited = studio.written(PROMPT, first.text + ", big")
    assert edited.enhancer == "embedded writer" and edited.settings["edited"] is True
    assert studio.written("a blue square", first.text) is None


def test_a_bad_prompt_or_seed_is_refused_before_the_writer_runs(studio):
    calls = counting(studio)
    with pytest.raises(ValueError, match="^prompt is empty; "):
        studio.enhance("  ")
    with pytest.raises(ValueError, match=r"^seed must be from 0 to 4294967295, got -1 \(nearest: 0\)$"):
        studio.enhance(PROMPT, seed=-1)
    assert calls == []


def test_a_writer_that_cannot_be_built_is_one_sentence(embedded):
    studio = Studio(embedded.source, embedded.pipe, "cpu", enhancer="https://127.0.0.1:9/v1")
    with pytest.raises(ValueError, match="^name the endpoint's model after '#' in the URL"):
        studio.enhance(PROMPT)


def test_the_host_gate_screens_the_prompt_the_rewrite_and_the_text_encoded(embedded, tmp_path):
    words = tmp_path / "words.txt"
    words.write_text("circle\nforbidden\n", encoding="utf-8")
    studio = Studio(embedded.source, embedded.pipe, "cpu", safety=SafetyGate(SafetySettings(words=str(words))))
    calls = counting(studio)
    with pytest.raises(PromptRefused):
        studio.enhance("a red circle")
    assert calls == []
    with pytest.raises(PromptRefused):
        studio.validate(GenerationRequest(prompt="a red square", enhanced_prompt="a forbidden red square"))
    with pytest.raises(PromptRefused):
        studio.validate(GenerationRequest(prompt="a forbidden red square", enhanced_prompt="a red square"))
    studio.validate(GenerationRequest(prompt="a red square", enhanced_prompt="a big red square"))


# -- generate --enhance -----------------------------------------------------------------------


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=300)


def test_generate_enhance_keeps_both_prompts_and_from_image_redraws_without_the_writer(tmp_path):
    with chat_server(reply=f'"{REWRITE}"') as server:
        done = run_cli("generate", "--prompt", PROMPT, "--enhance", "--enhancer", f"{server.url}#tiny",
                       "--seed", "7", "--steps", "4", "--out", str(tmp_path), env={"ENHANCER_API_KEY": "sk-hidden"})
        assert done.returncode == 0, done.stderr
        assert len(server.requests) == 1
        assert server.requests[0][0]["Authorization"] == "Bearer sk-hidden"
    png = Path(done.stdout.strip())
    settings = read_settings(png)
    assert (settings["prompt"], settings["enhanced_prompt"]) == (PROMPT, REWRITE)
    assert settings["enhancer"] == f"tiny at {server.url}" and settings["enhancer_settings"]["seed"] == 7
    assert b"sk-hidden" not in png.read_bytes() and "sk-hidden" not in done.stderr + done.stdout
    assert done.stderr == ""  # every word is one the embedded model knows

    # The server is gone: a writer that ran again would fail; --from-image does not run it.
    again = run_cli("generate", "--from-image", str(png), "--enhance", "--out", str(tmp_path))
    assert again.returncode == 0, again.stderr
    redrawn = Path(again.stdout.strip())
    assert np.array_equal(pixels(Image.open(redrawn)), pixels(Image.open(png)))
    assert read_settings(redrawn)["enhanced_prompt"] == REWRITE


def test_generate_enhance_with_a_failing_writer_is_a_notice_and_draws_the_prompt(tmp_path):
    with chat_server(mode="error") as server:
        done = run_cli("generate", "--prompt", UNKNOWN, "--enhance", "--enhancer", f"{server.url}#tiny",
                       "--steps", "2", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    notices = done.stderr.splitlines()
    assert len(notices) == 2 and all(line.startswith("notice: ") for line in notices), done.stderr
    assert notices[0].startswith('notice: The embedded model does not know "dragon", "breathing", "fire", "over", '
                                 '"castle": it draws one circle, square or triangle')
    assert "HTTP 500" in notices[1]
    settings = read_settings(Path(done.stdout.strip()))
    assert settings["prompt"] == UNKNOWN and "enhanced_prompt" not in settings


# -- the page ---------------------------------------------------------------------------------


class WriterStudio(FakeStudio):
    """A studio of the embedded model's shape with a prompt writer: it rewrites by appending
    ", big, on a blue background", draws a black picture and records what it was given."""

    def __init__(self, fail: bool = False):
        super().__init__(EMBEDDED, modes=("text",))
        self.fail = fail
        self.rewrites, self.rewritten = [], {}

    def enhance(self, prompt, seed=None, task="text", should_stop=None) -> Enhancement:
        GenerationRequest(prompt=prompt, seed=0 if seed is None else seed)
        self.rewrites.append((prompt, seed, task))
        if self.fail:
            raise EnhanceFailed("The prompt writer tiny did not answer within 30 seconds.")
        result = Enhancement(f"{prompt}, big, on a blue background", "tiny", {"seed": seed, "task": task})
        self.rewritten[prompt] = result
        return result

    def written(self, prompt, text):
        result = self.rewritten.get(prompt)
        if result is None or result.text == text:
            return result
        return Enhancement(text, result.enhancer, {**result.settings, "edited": True})

    def vocabulary_notice(self, text):
        return f"unknown: {text}" if "dragon" in text else None



def handlers_for(tmp_path, studio, auto_enhance: bool = False) -> StudioHandlers:
    names = [*CONTROL_NAMES, "format", "status"]
    return StudioHandlers(studio, tmp_path, {name: f"component {name}" for name in names}, auto_enhance=auto_enhance)


def generate(handlers: StudioHandlers, **values):
    import asyncio

    async def collect():
        return [update async for update in handlers.generate(RunControl(), [], **values)]

    return asyncio.run(collect())[-1]


def test_enhance_fills_the_box_and_generate_draws_the_edited_text_recording_both(tmp_path):
    studio = WriterStudio()
    handlers = handlers_for(tmp_path, studio)
    text = handlers.enhance(PROMPT, 7.0)
    assert text == f"{PROMPT}, big, on a blue background" and studio.rewrites == [(PROMPT, 7, "text")]
    edited = text.replace("big", "small")
    *_, pairs = generate(handlers, prompt=PROMPT, seed=7, enhanced_prompt=edited)
    request = studio.requests[-1]
    assert (request.prompt, request.encoded_prompt, request.enhancer) == (PROMPT, edited, "tiny")
    assert request.enhancer_settings == {"seed": 7, "task": "text", "edited": True}
    settings = read_settings(pairs[0].path)
    assert (settings["prompt"], settings["enhanced_prompt"]) == (PROMPT, edited)

    # Reuse settings restores both prompts and leaves auto-enhance off: the stored text is drawn.
    restored = handlers.reuse_settings(pairs[0].path)
    assert restored["component prompt"] == PROMPT and restored["component enhanced_prompt"] == edited
    assert restored["component auto_enhance"] is False
    values = {name.removeprefix("component "): value for name, value in restored.items()
              if name.removeprefix("component ") in CONTROL_NAMES}
    generate(handlers, **values)
    assert studio.requests[-1] == request and len(studio.rewrites) == 1


def test_auto_enhance_rewrites_an_empty_box_first_and_a_failure_draws_the_prompt(tmp_path):
    studio = WriterStudio()
    generate(handlers_for(tmp_path, studio), prompt=PROMPT, seed=3, auto_enhance=True)
    assert studio.rewrites == [(PROMPT, 3, "text")]
    assert studio.requests[-1].encoded_prompt == f"{PROMPT}, big, on a blue background"
    # Left out, it is the host's choice.
    generate(handlers_for(tmp_path, studio, auto_enhance=True), prompt="a blue square", seed=4)
    generate(handlers_for(tmp_path, studio, auto_enhance=False), prompt="a green square", seed=4)
    assert [prompt for prompt, _, _ in studio.rewrites] == [PROMPT, "a blue square"]
    assert studio.requests[-1].encoded_prompt == "a green square"

    failing = WriterStudio(fail=True)
    with pytest.warns(UserWarning) as warned:
        generate(handlers_for(tmp_path, failing), prompt=PROMPT, auto_enhance=True)
    assert [str(w.message) for w in warned] == [
        "The prompt writer tiny did not answer within 30 seconds. The prompt is drawn as typed."]
    assert failing.requests[-1].encoded_prompt == PROMPT and failing.requests[-1].enhancer == ""


def test_unknown_words_are_a_warning_before_any_compute_and_enhance_failures_a_sentence(tmp_path):
    studio = WriterStudio()
    handlers = handlers_for(tmp_path, studio)
    with pytest.warns(UserWarning) as warned:
        generate(handlers, prompt=UNKNOWN)
    assert [str(w.message) for w in warned] == [f"unknown: {UNKNOWN}"]
    with pytest.warns(UserWarning) as warned:
        handlers.enhance(UNKNOWN, 0)
    # The prompt's notice, then the rewrite's (which keeps the unknown words).
    assert [str(w.message) for w in warned] == [f"unknown: {UNKNOWN}",
                                                f"unknown: {UNKNOWN}, big, on a blue background"]
    with pytest.raises(gr.Error) as refused:
        handlers_for(tmp_path, WriterStudio(fail=True)).enhance(PROMPT, 0)
    assert refused.value.message == "The prompt writer tiny did not answer within 30 seconds."
    with pytest.raises(gr.Error) as refused:
        handlers.enhance("", 0)
    assert refused.value.message.startswith("prompt is empty; ")


class PlainStudio(WriterStudio):
    """An engine without a prompt writer, as the page in front of a Ray deployment has."""

    enhance = None


def test_an_engine_without_a_writer_hides_enhance_and_refuses_it_in_a_sentence(tmp_path):
    studio = PlainStudio()
    handlers = handlers_for(tmp_path, studio)
    with pytest.raises(gr.Error) as refused:
        handlers.enhance(PROMPT, 0)
    assert refused.value.message == ("the prompt writer runs where the model runs, which this page does not reach "
                                     "(--backend ray); write the enhanced prompt yourself")
    generate(handlers, prompt=PROMPT, enhanced_prompt=REWRITE, auto_enhance=True)
    assert studio.requests[-1].encoded_prompt == REWRITE and studio.requests[-1].enhancer == ""
    for engine, shown in ((studio, False), (WriterStudio(), True)):
        blocks = {block.elem_id: block for block in ui.build_demo(engine).blocks.values()
                  if getattr(block, "elem_id", None)}
        assert (blocks["enhance"].visible, blocks["auto-enhance"].visible) == (shown, shown)


def test_the_enhance_endpoint_takes_the_prompt_and_seed_and_gives_the_text(tmp_path):
    demo = ui.build_demo(WriterStudio(), auto_enhance=True)
    info = demo.get_api_info()["named_endpoints"]
    assert [p["parameter_name"] for p in info["/enhance"]["parameters"]] == ["prompt", "seed"]
    assert len(info["/enhance"]["returns"]) == 1
    generate_defaults = {p["parameter_name"]: p["parameter_default"] for p in info["/generate"]["parameters"]}
    assert (generate_defaults["enhanced_prompt"], generate_defaults["auto_enhance"]) == ("", True)
    assert defaults()["auto_enhance"] is None


def test_the_enhance_endpoint_over_http(embedded, serve):
    _, url = serve(embedded)
    client = Client(url, verbose=False)
    text = client.predict(prompt=PROMPT, seed=11, api_name="/enhance")
    assert text == embedded.enhance(PROMPT, seed=11).text and text != PROMPT
    with pytest.raises(AppError, match="prompt is empty"):
        client.predict(prompt=" ", seed=0, api_name="/enhance")
    images, _, _, _ = client.predict(prompt=PROMPT, seed=11, enhanced_prompt=text, api_name="/generate")
    settings = read_settings(images[0]["image"])
    assert (settings["prompt"], settings["enhanced_prompt"], settings["enhancer"]) == (PROMPT, text,
                                                                                        "embedded writer")


def test_app_takes_the_writer_from_flags_or_the_environment_and_no_key_flag(monkeypatch, capsys):
    import app

    monkeypatch.setenv("ENHANCER", "http://127.0.0.1:9/v1#tiny")
    monkeypatch.setenv("AUTO_ENHANCE", "1")
    args = app.parse_args([])
    assert (args.enhancer, args.auto_enhance) == ("http://127.0.0.1:9/v1#tiny", True)
    monkeypatch.delenv("AUTO_ENHANCE")
    assert app.parse_args(["--enhancer", "writer-folder"]).enhancer == "writer-folder"
    assert app.parse_args([]).auto_enhance is False
    with pytest.raises(SystemExit):
        app.parse_args(["--enhancer-api-key", "sk-x"])
    assert app.main(["--backend", "ray", "--no-safety"]) == 2
    assert capsys.readouterr().err.strip().endswith("leave --enhancer and --auto-enhance off")
