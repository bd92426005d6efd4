"""The page as a public host serves it: anyone calls any event, the private ones included, over raw
HTTP by fn_index with any JSON. No event hands out a file of the server or says whether a path
exists; every value the page cannot take is refused with a sentence naming its input (never
gradio's bare "error: null"); the app refuses a broken model folder in one line at start-up.

The embedded model serves in this process on 127.0.0.1 at a free port."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from helpers.pixels import bomb_png
from helpers.servers import call_event, endpoint_call, fn_index, free_port, get_json, run_predict, upload
from pipeline.metadata import read_settings, save_png

ROOT = Path(__file__).resolve().parents[1]
PROMPT = "a large red circle on the left, blue background"
GENERIC = "has not enabled verbose error reporting"


@pytest.fixture(scope="module")
def url(embedded, serve):
    return serve(embedded)[1]


@pytest.fixture(scope="module")
def made_here(url, tmp_path_factory) -> Path:
    """A PNG this studio made, downloaded as a visitor gets it."""
    images, *_ = Client(url, verbose=False).predict(prompt=PROMPT, seed=11, api_name="/generate")
    path = tmp_path_factory.mktemp("made") / "made-here.png"
    shutil.copy(images[0]["image"], path)
    return path


def with_postprocess(made_here: Path, path: Path, **post) -> Path:
    """A copy of `made_here` whose stored settings say it was post-processed with `post`."""
    settings = read_settings(made_here)
    settings["postprocess"] = {**settings["postprocess"], **post}
    with Image.open(made_here) as image:
        return save_png(image.copy(), settings, path)


def answer_text(answers) -> str:
    return json.dumps(answers)


def served_files(answers) -> list[bytes]:
    """The bytes behind every file URL in `answers`, fetched as any visitor may."""
    urls = set(re.findall(r'"url": "(http[^"]+/gradio_api/file=[^"]+)"', answer_text(answers)))
    bodies = []
    for file_url in sorted(urls):
        try:
            with urllib.request.urlopen(file_url, timeout=30) as response:
                bodies.append(response.read())
        except urllib.error.HTTPError as error:
            bodies.append(error.read())
    return bodies


def reuse(url: str, png: Path) -> list:
    """Reuse settings given `png`, uploaded first, called over the queue and directly: the answers."""
    index = fn_index(url, trigger=("reuse-file", "upload"))
    payload = upload(url, png)
    return [call_event(url, index, [payload]), run_predict(url, index, [payload])]


def planted(folder: Path) -> tuple[str, dict[str, Path]]:
    """A secret, and files of the server holding it that a PNG's settings may name."""
    secret = f"planted-{uuid.uuid4().hex}"
    folder.mkdir()
    files = {"weights": folder / "weights.pth", "svg": folder / "logo.svg", "png": folder / "brand.png"}
    files["weights"].write_text(secret)
    files["svg"].write_text(f'<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"><text>{secret}</text></svg>')
    info = PngInfo()
    info.add_text("secret", secret)
    Image.new("RGB", (8, 8), (30, 60, 200)).save(files["png"], pnginfo=info)
    return secret, files


def test_reuse_settings_serves_no_file_its_png_names(url, made_here, tmp_path):
    secret, files = planted(tmp_path / "server")
    for reference in (files["svg"], files["png"]):
        png = with_postprocess(made_here, tmp_path / f"crafted-{reference.suffix[1:]}.png", color="reference",
                               color_reference=str(reference), upscale=2, upscaler=str(files["weights"]))
        answers = reuse(url, png)
        assert answers[0][0], answers[0]  # the settings themselves are restored
        assert secret not in answer_text(answers)
        assert str(files["png"].parent) not in answer_text(answers)
        for body in served_files(answers):
            assert secret.encode() not in body


def test_what_reuse_says_is_the_same_whether_a_named_file_exists(url, made_here, tmp_path):
    (tmp_path / "here").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "here" / "brand.png")
    (tmp_path / "here" / "x2.pth").write_bytes(b"weights")
    answers = {}
    for folder in ("here", "gone"):
        png = with_postprocess(made_here, tmp_path / f"names-{folder}.png", color="reference",
                               color_reference=str(tmp_path / folder / "brand.png"), upscale=2,
                               upscaler=str(tmp_path / folder / "x2.pth"))
        (success, output), _ = reuse(url, png)
        answers[folder] = (success, output.get("data"), output.get("error"))
    assert answers["here"] == answers["gone"]
    assert answers["here"][0] and str(tmp_path) not in answer_text(answers["here"])
    assert "upload the colour reference 'brand.png' and the learned upscaler 'x2.pth' again" in answer_text(answers)


@pytest.mark.parametrize("kind", ["plain", "text", "bomb", "truncated"])
def test_a_png_without_studio_settings_leaves_the_controls_and_says_why(url, made_here, tmp_path, kind):
    png = tmp_path / "uploads" / f"{kind}.png"
    png.parent.mkdir()
    if kind == "plain":
        Image.new("RGB", (8, 8)).save(png)
    elif kind == "text":
        png.write_text("not a picture")
    elif kind == "bomb":
        bomb_png(png)
    else:
        png.write_bytes(made_here.read_bytes()[:40])
    (success, output), _ = reuse(url, png)
    assert success, output
    statuses = [value for value in output["data"] if isinstance(value, str)]
    assert len(statuses) == 1 and "nothing was restored: " in statuses[0] and f"'{kind}.png'" in statuses[0]
    assert "/" not in statuses[0].split("nothing was restored")[1]  # no folder of the server
    # Every other output is left as it is; the one session state among them (the Deliverables
    # panel's kept design) is never sent to the browser.
    others = [value for value in output["data"] if not isinstance(value, str)]
    assert others.count(None) == 1 and others.count({"__type__": "update"}) == len(others) - 1


def file_payloads(path_outside: Path, field: str) -> list:
    """Ways to name a file of the server instead of uploading one."""
    return [{"path": str(path_outside)}, {"path": str(path_outside), "meta": {"_type": "gradio.FileData"}},
            {"path": str(path_outside), "orig_name": path_outside.name}, str(path_outside),
            {"path": str(path_outside) + ".svg", "orig_name": "x.svg"},
            {"path": f"/tmp/gradio/../..{path_outside}", "meta": {"_type": "gradio.FileData"}},
            {"url": "data:image/png;base64,iVBORw0KGgo=", "path": None},
            {"url": "http://127.0.0.1:9/brand.png", "path": "http://127.0.0.1:9/brand.png"}]


@pytest.mark.parametrize("field, name, uses", [("color_reference", "brand.png", {"color": "reference"}),
                                                ("upscaler", "x2.pth", {"upscale": "2"})])
def test_a_file_is_taken_only_as_an_upload_to_this_page(url, tmp_path, field, name, uses):
    existing, missing = tmp_path / "here" / name, tmp_path / "gone" / name
    existing.parent.mkdir()
    Image.new("RGB", (8, 8), (30, 60, 200)).save(existing, format="PNG")
    answers = []
    for path in (existing, missing):
        for payload in file_payloads(path, field):
            index, data = endpoint_call(url, "generate", prompt=PROMPT, **uses, **{field: payload})
            answers.append(call_event(url, index, data))
    messages = {output.get("error") for _, output in answers}
    assert not any(success for success, _ in answers)
    # One sentence for every way, whether or not the path exists; it names the input, no path.
    assert len(messages) == 1
    [message] = messages
    assert message and message.startswith(field) and str(tmp_path) not in message

    # The same file uploaded is taken (an upscaler that is no model gets the engine's sentence).
    index, data = endpoint_call(url, "generate", prompt=PROMPT, **uses, **{field: upload(url, existing)})
    success, output = call_event(url, index, data)
    if field == "color_reference":
        assert success, output
    else:
        assert not success and output["error"].startswith("upscaler") and str(tmp_path) not in output["error"]


@pytest.fixture
def bad_files(tmp_path) -> dict[str, Path]:
    (tmp_path / "notes.txt").write_text("not a picture")
    return {"text": tmp_path / "notes.txt", "bomb": bomb_png(tmp_path / "huge.png")}


# (values, the input the sentence names); a file value is a key of `bad_files`, uploaded first.
MALFORMED = [
    ({"seed": "12"}, "seed"), ({"seed": None}, "seed"), ({"seed": [1]}, "seed"), ({"seed": {"a": 1}}, "seed"),
    ({"steps": "8"}, "steps"), ({"guidance": [2.0]}, "guidance"), ({"width": {"w": 64}}, "width"),
    ({"height": "64"}, "height"), ({"num_images": None}, "num_images"), ({"color_strength": "1"}, "color_strength"),
    ({"denoise": "manual", "denoise_strength": None}, "denoise_strength"), ({"upscale": None}, "upscale"),
    ({"upscale": 2}, "upscale"), ({"random_seed": "yes"}, "random_seed"), ({"prompt": {"text": PROMPT}}, "prompt"),
    ({"negative_prompt": ["x"]}, "negative_prompt"), ({"color": None}, "color"),
    ({"color": "reference", "color_reference": "text"}, "color_reference"),
    ({"color": "reference", "color_reference": "bomb"}, "color_reference"),
    ({"upscale": "2", "upscaler": "text"}, "upscaler"),
    ({"color": "reference", "color_reference": ["a.png"]}, "color_reference"),
    ({"color": "reference", "color_reference": {"orig_name": "a.png"}}, "color_reference"),
    ({"upscale": "2", "upscaler": {"path": 5}}, "upscaler"),
]


def is_bad_file(value) -> bool:
    return isinstance(value, str) and value in ("text", "bomb")


@pytest.mark.parametrize("values, field", MALFORMED, ids=[f"{f}={json.dumps(v)[:30]}" for v, f in MALFORMED])
def test_a_malformed_value_gets_a_sentence_naming_its_input(url, bad_files, values, field):
    raw = {name: upload(url, bad_files[value]) if is_bad_file(value) else value for name, value in values.items()}
    index, data = endpoint_call(url, "generate", **{"prompt": PROMPT, **raw})
    success, output = call_event(url, index, data)
    assert not success
    assert output.get("error") and output["error"].startswith(field), output

    sent = {name: handle_file(bad_files[value]) if is_bad_file(value) else value for name, value in values.items()}
    with pytest.raises(AppError) as error:
        Client(url, verbose=False).predict(**{"prompt": PROMPT, **sent}, api_name="/generate")
    assert GENERIC not in str(error.value)
    assert str(error.value) == output["error"]


def test_every_event_answers_any_values_with_a_result_or_a_sentence(url):
    """Each event of the page, the private ones too, called by fn_index with values no page sends."""
    dependencies = get_json(url + "config")["dependencies"]
    for dependency in dependencies:
        count = len(dependency["inputs"])
        for data in ([], [None] * count, ["x"] * count, [{"path": "/etc/passwd"}] * count, [10**9] * count):
            answers = [call_event(url, dependency["id"], data), run_predict(url, dependency["id"], data)]
            (success, output), (status, direct) = answers
            assert success or output.get("error"), (dependency, data, output)
            assert status in (200, 404) or direct.get("error"), (dependency, data, status, direct)
            assert "root:" not in answer_text(answers)  # nothing of /etc/passwd


def test_too_few_values_get_a_sentence_naming_the_inputs(url):
    index, data = endpoint_call(url, "generate", prompt=PROMPT)
    success, output = call_event(url, index, data[:3])
    assert not success and output.get("error")
    assert output["error"].startswith("generate takes") and "prompt, negative_prompt, seed" in output["error"]


def test_a_queued_event_cannot_skip_the_queue(url):
    index, data = endpoint_call(url, "generate", prompt=PROMPT)
    status, answer = run_predict(url, index, data)
    assert status == 404 and "queue" in answer["detail"]


@pytest.mark.parametrize("damage", ["truncated", "empty"])
def test_app_refuses_a_broken_model_folder_in_one_line(tmp_path, damage):
    folder = tmp_path / "model"
    shutil.copytree(ROOT / "assets" / "model", folder)
    weights = next(folder.glob("transformer/*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:len(weights.read_bytes()) // 3] if damage == "truncated" else b"")
    done = subprocess.run([sys.executable, "app.py", "--model", str(folder), "--host", "127.0.0.1", "--port",
                           str(free_port())], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") and "Traceback" not in done.stderr
    assert [line for line in lines if line.startswith("error:")] == [lines[-1]]
    assert "cannot serve the page" not in lines[-1]  # refused while loading, not when serving
