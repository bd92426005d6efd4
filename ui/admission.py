"""What the page's events accept, checked before gradio reads a value.

Anyone can call any event of a public page over HTTP with any JSON, a private event included (it
is only left off the API page). Left alone, gradio answers a value its components cannot read
with a bare exception (the caller sees `{"error": null}`), and reads a file payload sent without
`meta` from whatever path of the server it names. `CheckedBlocks` checks every payload first:
the number of values, the type of each (a number, text, true/false, one of the choices), and that
a file is one gradio received for this app, i.e. inside its cache folder (each picture of an image
editor's value too: the mask the page paints); and that a select event
comes with its selection. A refusal is one sentence naming the input (`ui.errors.refuse`). What is
said about any other path is the same whether or not it exists. Gradio's own refusals (a slider
value out of range) keep their sentence.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
from gradio import utils
from PIL import Image

from ui.errors import refuse

log = logging.getLogger(__name__)

# The one answer for a file payload that is not an upload, whatever it names and whether or not that exists.
PICTURE_TYPES = (".png", ".jpg", ".jpeg", ".webp")
FILE_NOT_RECEIVED = ("{name} must be a file uploaded to this page (through /gradio_api/upload, as gradio_client's "
                     "handle_file does); the page reads no other path or address")


# What an image editor's value holds (gradio's `EditorData`); each of its pictures is checked as an
# image input's value is.
EDITOR_KEYS = {"background", "layers", "composite", "id"}
EDITOR_PICTURE = gr.Image(render=False)
MAX_LAYERS = 8
# Each file of a multiple-file input is checked as a one-file input is.
ONE_FILE = gr.File(render=False)
MAX_FILES = 8


@dataclass(frozen=True)
class Input:
    """One input of the page's events, by the name its sentences use."""

    name: str
    # A control whose None means "the model's default" or "no file".
    nullable: bool = False


class CheckedBlocks(gr.Blocks):
    """`gr.Blocks` whose events refuse, as one sentence, any value an input of the page does not take.

    `admit(component, name)` names an input; an event's values are checked against the inputs it
    takes before gradio's own processing, which runs unchanged on what passes.
    """

    def __init__(self, **options):
        super().__init__(**options)
        # By component id: gradio keeps a copy of a component per session once an event updates it,
        # and the copy has the same id.
        self._inputs: dict[int, Input] = {}

    def admit(self, component: gr.components.Component, name: str, *, nullable: bool = False):
        """`component`, named `name` in refusals; None is taken for it when `nullable`."""
        self._inputs[component._id] = Input(name, nullable)
        return component

    def input_name(self, component: gr.components.Component) -> str | None:
        """The name `admit` gave `component`; None for an input it does not check."""
        admitted = self._inputs.get(component._id)
        return admitted.name if admitted else None

    async def process_api(self, block_fn, inputs: list[Any], *args, **options):
        fn = self.fns[block_fn] if isinstance(block_fn, int) else block_fn
        if fn.fn is None:
            raise refuse("this event runs in the browser; there is nothing to call on the server")
        if any(event == "select" for _, event in fn.targets) and not is_selection(options.get("event_data")):
            raise refuse(f"{fn.name} needs the selection as the page sends it: event_data with index and value")
        return await super().process_api(block_fn, inputs, *args, **options)

    async def preprocess_data(self, block_fn, inputs: list[Any], state, explicit_call: bool = False):
        self._check_count(block_fn, inputs)
        for block, payload in zip(block_fn.inputs, inputs):
            if not block.stateful and block._id in self._inputs:
                self._check(block, self._inputs[block._id], payload)
        try:
            return await super().preprocess_data(block_fn, inputs, state, explicit_call)
        except gr.Error as error:
            raise refuse(error.message) from None
        except Exception:  # noqa: BLE001 - the traceback goes to the log; the caller gets a sentence
            log.warning("a request gradio could not read (%s)", block_fn.name, exc_info=True)
            raise refuse("a value sent to this event could not be read; the API page lists what each input "
                         "takes") from None

    def _check_count(self, block_fn, inputs: list[Any]) -> None:
        if len(inputs) < len(block_fn.inputs):
            names = [self.input_name(block) or block.get_block_name() for block in block_fn.inputs]
            raise refuse(f"{block_fn.api_name or block_fn.name} takes {len(names)} values ({', '.join(names)}), "
                         f"got {len(inputs)}")

    def _check(self, block, input_: Input, payload: Any) -> None:
        name = input_.name
        if payload is None:
            if not input_.nullable:
                raise refuse(f"{name} needs a value, got null")
            return
        if isinstance(block, gr.ImageEditor):
            self._check_editor(name, payload)
        elif isinstance(block, gr.File) and block.file_count == "multiple":
            self._check_files(block, name, payload)
        elif isinstance(block, (gr.Image, gr.File)):
            self._check_file(block, name, payload)
        elif isinstance(block, (gr.Radio, gr.Dropdown)):
            choices = [value for _, value in block.choices]
            if not isinstance(payload, str) or payload not in choices:
                raise refuse(f"{name} must be one of {', '.join(map(repr, choices))}, got {describe(payload)}")
        elif isinstance(block, gr.Dataset):
            if isinstance(payload, bool) or not isinstance(payload, int) or not 0 <= payload < len(block.samples):
                raise refuse(f"{name} must be the number of an example, from 0 to {len(block.samples) - 1}, "
                             f"got {describe(payload)}")
        elif isinstance(block, (gr.Slider, gr.Number)):
            if isinstance(payload, bool) or not isinstance(payload, (int, float)):
                raise refuse(f"{name} must be a number, got {describe(payload)}")
        elif isinstance(block, gr.Checkbox):
            if not isinstance(payload, bool):
                raise refuse(f"{name} must be true or false, got {describe(payload)}")
        elif isinstance(block, gr.Textbox):
            if not isinstance(payload, str):
                raise refuse(f"{name} must be text, got {describe(payload)}")

    def _check_file(self, block, name: str, payload: Any) -> None:
        try:
            # As gradio validates it next; a payload without its `meta` passes for an image.
            file = block.data_model.model_validate(payload, context={"validate_meta": True})
        except Exception:  # noqa: BLE001 - pydantic's report names gradio's internals
            raise refuse(FILE_NOT_RECEIVED.format(name=name)) from None
        path = getattr(file, "path", None)
        url = getattr(file, "url", None) or ""
        if not isinstance(path, str) or url.startswith("data:") or not self.received(path):
            raise refuse(FILE_NOT_RECEIVED.format(name=name))
        label = file_label(file)
        file_types = getattr(block, "file_types", None)
        if isinstance(block, gr.File) and file_types and Path(path).suffix.lower() not in file_types:
            raise refuse(f"{name} must be a {' or '.join(file_types)} file, got {label!r}")
        if isinstance(block, gr.Image):
            check_picture(name, path, label)

    def _check_files(self, block: gr.File, name: str, payload: Any) -> None:
        """A multiple-file input's value: a list of uploads, each of the input's file types, and each
        a readable picture when the input takes only picture types."""
        if not isinstance(payload, list) or len(payload) > MAX_FILES:
            raise refuse(f"{name} must be a list of at most {MAX_FILES} files uploaded to this page, "
                         f"got {describe(payload)}")
        file_types = block.file_types or []
        for number, item in enumerate(payload, 1):
            part = f"{name} (file {number})"
            self._check_file(ONE_FILE, part, item)
            file = ONE_FILE.data_model.model_validate(item, context={"validate_meta": True})
            label = file_label(file)
            if file_types and Path(file.path).suffix.lower() not in file_types:
                raise refuse(f"{part} must be a {' or '.join(file_types)} file, got {label!r}")
            if file_types and all(kind in PICTURE_TYPES for kind in file_types):
                check_picture(part, file.path, label)

    def _check_editor(self, name: str, payload: Any) -> None:
        """An image editor's value: {"background", "layers", "composite"}, each picture an upload,
        or the `id` under which the page's editor posted its pictures to the component first."""
        if not isinstance(payload, dict) or not set(payload) <= EDITOR_KEYS:
            raise refuse(f"{name} must be an object with background, layers and composite (pictures uploaded to "
                         f"this page, or null), got {describe(payload)}")
        if payload.get("id") is not None and not isinstance(payload["id"], str):
            raise refuse(f"{name}: id must be text, got {describe(payload['id'])}")
        layers = payload.get("layers") or []
        if not isinstance(layers, list) or len(layers) > MAX_LAYERS:
            raise refuse(f"{name}: layers must be a list of at most {MAX_LAYERS} pictures, got {describe(layers)}")
        for part, picture in [("background", payload.get("background")), ("composite", payload.get("composite")),
                              *((f"layer {number}", layer) for number, layer in enumerate(layers, 1))]:
            if picture is not None:
                self._check_file(EDITOR_PICTURE, f"{name} ({part})", picture)

    def received(self, path: str) -> bool:
        """Whether `path` is a file inside this app's cache folder: an upload, or a file the app wrote."""
        return utils.is_in_or_equal(path, self.GRADIO_CACHE) and Path(path).is_file()


def is_selection(event_data) -> bool:
    """Whether a select event's data is what `gr.SelectData` reads: an object with index and value."""
    data = getattr(event_data, "_data", None)
    return isinstance(data, dict) and {"index", "value"} <= set(data)


def check_picture(name: str, path: str, label: str) -> None:
    """Refuse what gradio's image input cannot open (it reads the header only), as a sentence."""
    try:
        with Image.open(path) as image:
            pixels = image.width * image.height
    except Image.DecompressionBombError:
        pixels = None
    except Exception:  # noqa: BLE001 - PIL raises many kinds for a file that is no picture
        raise refuse(f"{name}: {label!r} is not a picture this page can read (PNG, JPEG or WebP)") from None
    if pixels is None or pixels > Image.MAX_IMAGE_PIXELS:
        raise refuse(f"{name}: {label!r} has more than {Image.MAX_IMAGE_PIXELS:,} pixels; use a smaller copy of it")


def file_label(file) -> str:
    """The name a sentence gives an uploaded file: its base name as uploaded, never a folder."""
    return Path(getattr(file, "orig_name", None) or file.path).name


def describe(value: Any) -> str:
    """A value sent by a caller, as a sentence quotes it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f"the text {value[:40]!r}" + ("..." if len(value) > 40 else "")
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return repr(value)
