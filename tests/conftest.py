"""Shared fixtures: tiny models saved once per test session, loaded through the project's loader."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from helpers import tiny_models
from pipeline.studio import Studio


def pytest_configure(config):
    # Library noise that says nothing about this project: torchvision's missing image codecs
    # (its pure-Python parts are installed beside this torch for spandrel) and pandas 3's
    # deprecations inside gradio's queue; Ray Serve's own use of pydantic 1 field options.
    config.addinivalue_line("filterwarnings", "ignore:Failed to load image Python extension")
    config.addinivalue_line("filterwarnings", "ignore::DeprecationWarning:gradio.queueing")
    config.addinivalue_line("filterwarnings", "ignore::DeprecationWarning:ray.serve._private.config")
    config.addinivalue_line("markers", "reliability: the served page under load, cancellation and disconnection "
                                       "(runs in the normal suite; `-m reliability` runs it alone)")


ROOT = Path(__file__).resolve().parents[1]

# One thread: CPU matrix products then round the same way on every machine and run.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_folder(tmp_path_factory):
    """`tiny_folder(name)` -> path of the saved tiny model `name` (built on first use)."""
    folders = {}

    def get(name: str):
        if name not in folders:
            folders[name] = tiny_models.save_tiny(name, tmp_path_factory.mktemp(name))
        return folders[name]

    return get


@pytest.fixture(scope="session")
def tiny_studio(tiny_folder):
    """`tiny_studio(name)` -> a Studio on the tiny model `name`, shared by the session's tests."""
    studios = {}

    def get(name: str) -> Studio:
        if name not in studios:
            studios[name] = Studio.load(str(tiny_folder(name)), device="cpu")
        return studios[name]

    return get


@pytest.fixture
def sana(tiny_studio) -> Studio:
    studio = tiny_studio("sana")
    studio.clear_cache()
    return studio


@pytest.fixture(scope="session")
def embedded() -> Studio:
    """The shipped embedded model on the CPU, shared by the tests that serve the page."""
    if not (ROOT / "assets" / "model" / "model_index.json").is_file():
        pytest.fail("the embedded model is missing: assets/model/model_index.json does not exist")
    return Studio.load("embedded", device="cpu")


@pytest.fixture(scope="module")
def serve():
    """`serve(studio, queue_size)` -> (demo, url): the page on 127.0.0.1 at a free port, closed after the module."""
    import ui
    from helpers.servers import launch

    demos = []

    def serve_(studio, queue_size: int = ui.DEFAULT_QUEUE_SIZE):
        demo, url = launch(studio, queue_size)
        demos.append(demo)
        return demo, url

    yield serve_
    for demo in demos:
        demo.close()
