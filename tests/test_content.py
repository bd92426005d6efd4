"""What a public host adds to every picture: the machine-generated mark, the optional content gate
and invisible watermark, and the Space's GPU decorator around the device work."""
from __future__ import annotations

import sys
import types

import numpy as np
import pytest
from PIL import Image

from pipeline import hosting
from pipeline.marking import TRAINED_ALGORITHMIC_MEDIA, XMP_KEY, add_watermark, digital_source_type, read_watermark
from pipeline.metadata import read_settings, save_png
from pipeline.request import GenerationRequest
from pipeline.safety import PromptRefused, SafetySettings
from pipeline.studio import Studio
from test_safety import tiny_classifier

REQUEST = GenerationRequest(prompt="a red circle", seed=3, steps=1, width=32, height=32)


def test_every_png_says_it_is_machine_generated(sana, tmp_path):
    result = sana.generate(REQUEST)
    path = save_png(result.images[0], result.settings[0], tmp_path / "image.png")
    with Image.open(path) as image:
        packet = image.text[XMP_KEY]
    assert digital_source_type(packet) == TRAINED_ALGORITHMIC_MEDIA
    assert read_settings(path)["seed"] == 3  # the settings chunk is still read back


def test_the_watermark_reads_back_from_a_photograph():
    from skimage import data

    photo = Image.fromarray(data.astronaut())
    assert read_watermark(add_watermark(photo)) == b"AIGC"
    small = photo.resize((64, 64))
    assert add_watermark(small) is small  # too small to carry 32 bits


def test_a_watermarked_studio_marks_what_it_can_and_records_it(tiny_folder, sana):
    studio = Studio.load(str(tiny_folder("sana")), device="cpu", watermark=True)
    large = studio.generate(REQUEST.replace(width=256, height=256))
    assert read_watermark(large.images[0]) == b"AIGC"
    assert large.settings[0]["content"] == {"watermark": "dwtDctSvd:AIGC"}
    small = studio.generate(REQUEST)
    assert small.settings[0]["content"] == {"watermark": "too small to carry"}
    assert np.array_equal(np.asarray(small.images[0]), np.asarray(sana.generate(REQUEST).images[0]))


def test_the_gate_refuses_a_prompt_before_any_model_work(tiny_folder, monkeypatch):
    studio = Studio.load(str(tiny_folder("sana")), device="cpu", safety=SafetySettings())
    monkeypatch.setattr(studio, "generate_batch", lambda *args: pytest.fail("the model ran"))
    with pytest.raises(PromptRefused):
        studio.generate(REQUEST.replace(prompt="a nude figure"))


def test_the_gate_withholds_only_the_flagged_request_and_records_its_check(tiny_folder, tmp_path):
    unsafe = Studio.load(str(tiny_folder("sana")), device="cpu", safety=SafetySettings(
        image_classifier=tiny_classifier(tmp_path / "unsafe", unsafe=True)))
    with pytest.raises(ValueError, match="image 1 was withheld by this studio's content check"):
        unsafe.generate(REQUEST)

    classifier = tiny_classifier(tmp_path / "safe", unsafe=False)
    safe = Studio.load(str(tiny_folder("sana")), device="cpu", safety=SafetySettings(image_classifier=classifier))
    record = safe.generate(REQUEST).settings[0]["content"]["safety"]
    assert (record["prompt"], record["image"]) == ("word list", classifier) and record["image_score"] < 0.001


def test_the_device_work_is_wrapped_for_a_zero_gpu_space(tiny_folder, monkeypatch):
    assert hosting.on_gpu()(len) is len  # off a Space: the function itself

    calls = []
    fake = types.ModuleType("spaces")

    def gpu(duration):
        def decorate(function):
            def on_device(*args):
                calls.append(duration)
                return function(*args)
            return on_device
        return decorate

    fake.GPU = gpu
    monkeypatch.setitem(sys.modules, "spaces", fake)
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    studio = Studio.load(str(tiny_folder("sana")), device="cpu", device_wrapper=hosting.on_gpu())
    studio.generate(REQUEST)
    assert calls == [hosting.GPU_DURATION_S]


def test_the_readme_front_matter_describes_this_app_as_a_gradio_space():
    import re
    from pathlib import Path

    import yaml

    from pipeline.models import PRESETS

    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text(encoding="utf-8")
    assert readme.startswith("---\n")
    front = yaml.safe_load(readme.split("---\n", 2)[1])
    pinned = re.search(r"^gradio==(\S+)$", (root / "requirements.txt").read_text(), re.MULTILINE).group(1)
    assert (front["sdk"], front["sdk_version"], front["python_version"]) == ("gradio", pinned, "3.11")
    assert (root / front["app_file"]).is_file() and front["app_file"] == "app.py"
    assert front["suggested_hardware"] in {"cpu-upgrade", "t4-small", "t4-medium", "l4x1", "a10g-small",
                                           "a10g-large", "a100-large", "h100"}
    hub_models = {preset.source for preset in PRESETS.values() if preset.name != "embedded"}
    assert set(front["models"]) == hub_models
    assert front["license"] == "apache-2.0"


def test_the_app_on_a_space_starts_with_the_content_gate_on(tmp_path, monkeypatch):
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    from helpers.servers import app_process

    monkeypatch.setenv("SPACE_ID", "someone/studio")
    monkeypatch.delenv("SAFETY", raising=False)
    log_path = tmp_path / "app.log"
    with app_process(log_path, 300) as url:
        client = Client(url, verbose=False)
        with pytest.raises(AppError, match="prompt refused: this studio's host does not allow what it asks for"):
            client.predict(prompt="a nude figure by the sea", api_name="/generate")
        images, *_ = client.predict(prompt="a red circle", steps=1, api_name="/generate")
    assert read_settings(images[0]["image"])["content"] == {"safety": {"prompt": "word list", "image": "off"}}
    log = log_path.read_text()
    assert "content gate on" in log
    assert "nude" not in log  # a refusal is logged without the prompt
