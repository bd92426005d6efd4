"""The generate inputs, declared once.

Each `Control` is one input of the `generate` event: a component on the page and a parameter of
the `/generate` API endpoint, both named `name`. It carries its kind of component, its label, its
default, its static limits, its description (`info`, shown under it) and the section of the page
it sits in. What depends on the loaded model (the step and guidance ranges, the default size)
comes from the model's `ModelLimits` when the page is built (`per_model`); a control of an image
mode the model does not serve (`modes`) is built hidden.

`CONTROLS` is read by the layout (which builds each control in its section), the wiring (the
event's inputs, in this order: the API page's order), `StudioHandlers.generate` (which receives
the values by name, see `takes_controls`), `ui.settings` (values <-> requests) and the tests.
"""
from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import gradio as gr

from pipeline.conditioning import ANCHORS, MAX_FEATHER
from pipeline.references import MAX_REFERENCES
from pipeline.request import DEFAULT_STRENGTH, MAX_IMAGES, MAX_PROMPT_CHARS, MAX_SEED, ModelLimits
from ui.formats import FORMATS, format_size

OFF = "off"
DENOISE_MODES = (("Off", OFF), ("Auto (estimate the noise)", "auto"), ("Strength", "manual"))
COLOR_MODES = (("Off", OFF), ("Auto (white balance + levels)", "auto"), ("Match a reference image", "reference"),
               ("Brand palette", "palette"))
# Radio values are strings so the API documents them plainly; the engine takes the int.
UPSCALE_CHOICES = (("Off", "1"), ("x2", "2"), ("x4", "4"))
# A control with this default is a required parameter of the API (its component starts empty).
REQUIRED = inspect.Parameter.empty
# The section whose controls are the post-processing panel, which `ui.settings` turns into
# `PostprocessSettings`; the other sections' controls are fields of `GenerationRequest` (and
# random_seed, which chooses the seed).
POSTPROCESS = "postprocess"
# The "Start from an image" panel: the input picture, its strength and the mask painted over it.
# Its pictures are read by the handler (`ui.settings.read_pictures`); the other two are request fields.
FROM_IMAGE = "from_image"
# Reuse settings and Vary set these on the page; the caller of the API leaves them out for text-to-image.
INPUT_PICTURE, MASK = "init_image", "mask"
# Outpainting: the format whose size the input picture is extended to (or OFF), and where it sits.
EXTEND_TO, EXTEND_ANCHOR = "extend_to", "extend_anchor"
# Reference editing: the pictures the prompt's instruction applies to (read by `ui.settings.read_references`).
REFERENCES = "references"
PICTURE_TYPES = (".png", ".jpg", ".jpeg", ".webp")
# The modes that start from one input picture (the reference editing models take none).
FROM_PICTURE = ("image", "inpaint", "extend")
# The prompt writer's text, which the model draws from when it is not empty (the prompt stays the
# visitor's own), and whether a run with that box empty rewrites the prompt first.
ENHANCE = "enhance"
COLOR_STATISTICS = "color_statistics"
ENHANCED_PROMPT, AUTO_ENHANCE = "enhanced_prompt", "auto_enhance"


@dataclass(frozen=True, kw_only=True)
class Control:
    """One generate input. `default` is the API's default and what Reuse settings falls back to;
    None for a model-dependent value means "the model's default", as in `GenerationRequest`."""

    name: str
    kind: type[gr.components.Component]
    label: str
    section: str
    default: Any = None
    minimum: float | None = None
    maximum: float | None = None
    step: float | None = None
    choices: tuple[tuple[str, str], ...] = ()
    info: str | None = None
    # Other component arguments that do not depend on the model (lines, placeholder, file types, ...).
    options: Mapping[str, Any] = field(default_factory=dict)
    # Component arguments that depend on the model: value, limits, visibility.
    per_model: Callable[[ModelLimits], dict[str, Any]] | None = None
    # The modes (`GenerationRequest.mode`) the control serves; hidden when the model serves none of them.
    modes: tuple[str, ...] = ()

    @property
    def nullable(self) -> bool:
        """Whether a caller may send null for it, meaning "the model's default" or "no file"."""
        return self.default is None

    def build(self, limits: ModelLimits, modes: tuple[str, ...], **host: Any) -> gr.components.Component:
        """The component for a model with these limits that serves these modes; `host`: arguments the
        host's settings decide (the auto-enhance box's value)."""
        arguments = {"label": self.label, "elem_id": self.name.replace("_", "-"),
                     "value": None if self.default is REQUIRED else self.default, **self.options}
        static = {"minimum": self.minimum, "maximum": self.maximum, "step": self.step, "info": self.info,
                  "choices": list(self.choices) or None}
        arguments.update({name: value for name, value in static.items() if value is not None})
        if self.per_model is not None:
            arguments.update(self.per_model(limits))
        if self.modes and not set(self.modes) & set(modes):
            arguments["visible"] = False
        return self.kind(**{**arguments, **host})


def _steps(limits: ModelLimits) -> dict:
    return {"minimum": limits.steps.min, "maximum": limits.steps.max, "value": limits.steps.default}


def _guidance(limits: ModelLimits) -> dict:
    # A model without guidance has a one-point range; the slider needs some width to draw.
    return {"minimum": limits.guidance.min, "maximum": max(limits.guidance.max, limits.guidance.min + 0.1),
            "value": limits.guidance.default, "interactive": limits.uses_guidance,
            "info": None if limits.uses_guidance else "This model does not use guidance."}


def _width(limits: ModelLimits) -> dict:
    return {"value": limits.default_width, "minimum": limits.size_multiple, "step": limits.size_multiple,
            "info": f"multiple of {limits.size_multiple}"}


def _height(limits: ModelLimits) -> dict:
    return {"value": limits.default_height, "minimum": limits.size_multiple, "step": limits.size_multiple,
            "info": f"at most {limits.max_pixels:,} pixels"}


def _extend_formats(limits: ModelLimits) -> dict:
    choices = [(f"{fmt.name} ({width}x{height})", fmt.key)
               for fmt, (width, height) in ((fmt, format_size(fmt, limits)) for fmt in FORMATS)]
    return {"choices": [("Off", OFF), *choices]}


CONTROLS = (
    Control(name="prompt", kind=gr.Textbox, label="Prompt", section="text", default=REQUIRED,
            options={"lines": 1, "max_lines": 4, "max_length": MAX_PROMPT_CHARS,
                  "placeholder": "a large red circle on the left, blue background  (Enter generates)"}),
    Control(name="negative_prompt", kind=gr.Textbox, label="Negative prompt", section="text", default="",
            options={"max_length": MAX_PROMPT_CHARS, "placeholder": "what to avoid"},
            per_model=lambda limits: {"visible": limits.uses_negative_prompt}),
    Control(name="seed", kind=gr.Slider, label="Seed", section="seed", default=0, minimum=0, maximum=MAX_SEED,
            step=1, info="after each run: the seed it used", options={"scale": 3}),
    Control(name="random_seed", kind=gr.Checkbox, label="Random seed", section="seed", default=False,
            options={"scale": 1}),
    Control(name="steps", kind=gr.Slider, label="Steps", section="sampling", step=1, per_model=_steps),
    Control(name="guidance", kind=gr.Slider, label="Guidance", section="sampling", step=0.1, per_model=_guidance),
    Control(name="width", kind=gr.Number, label="Width", section="size", per_model=_width),
    Control(name="height", kind=gr.Number, label="Height", section="size", per_model=_height),
    Control(name="num_images", kind=gr.Slider, label="Number of images", section="count", default=1, minimum=1,
            maximum=MAX_IMAGES, step=1, info="image k uses seed + k"),
    Control(name="denoise", kind=gr.Radio, label="Denoise", section=POSTPROCESS, default=OFF,
            choices=DENOISE_MODES),
    Control(name="denoise_strength", kind=gr.Slider, label="Denoise strength", section=POSTPROCESS, default=0.5,
            minimum=0, maximum=1, step=0.05, options={"visible": False}),
    Control(name="color", kind=gr.Radio, label="Colour correction", section=POSTPROCESS, default=OFF,
            choices=COLOR_MODES),
    Control(name="color_reference", kind=gr.Image, label="Reference image", section=POSTPROCESS,
            options={"type": "filepath", "sources": ["upload"], "visible": False, "height": 160}),
    Control(name="color_palette", kind=gr.Textbox, label="Palette", section=POSTPROCESS, default="",
            options={"placeholder": "#1E88E5, #FFC107, #212121", "visible": False}),
    Control(name="color_strength", kind=gr.Slider, label="Colour strength", section=POSTPROCESS, default=1,
            minimum=0, maximum=1, step=0.05, options={"visible": False}),
    Control(name="upscale", kind=gr.Radio, label="Upscale", section=POSTPROCESS, default="1",
            choices=UPSCALE_CHOICES),
    Control(name="upscaler", kind=gr.File, label="Learned upscaler weights (.safetensors or .pth, optional)",
            section=POSTPROCESS, options={"file_types": [".safetensors", ".pth"], "visible": False, "height": 80}),
    # image_mode=None hands the handler the uploaded file itself, so its SHA-256 is the file's as
    # the visitor has it (the one the PNG records); gradio would otherwise re-save it in RGB.
    Control(name=INPUT_PICTURE, kind=gr.Image, label="Input picture (empty: from the prompt alone)",
            section=FROM_IMAGE, options={"type": "filepath", "image_mode": None, "format": "png", "sources": ["upload"],
                     "height": 240}, modes=FROM_PICTURE),
    Control(name="strength", kind=gr.Slider, label="Strength", section=FROM_IMAGE, default=DEFAULT_STRENGTH,
            minimum=0, maximum=1, step=0.05, info="0 keeps the picture, 1 draws anew", modes=FROM_PICTURE),
    # A painted layer marks what is repainted, whatever the brush colour; nothing painted: image-to-image.
    Control(name=MASK, kind=gr.ImageEditor, label="Mask: paint what should change", section=FROM_IMAGE,
            options={"type": "pil", "image_mode": "RGBA", "format": "png", "sources": ["upload"],
                     "transforms": (), "layers": False, "height": 320,
                     "brush": gr.Brush(colors=["#ffffff"], color_mode="fixed", default_size=12)},
            modes=("inpaint",)),
    Control(name="mask_feather", kind=gr.Slider, label="Mask feather (pixels)", section=FROM_IMAGE, default=0,
            minimum=0, maximum=MAX_FEATHER, step=1, info="a soft edge where the repainted part meets the rest",
            modes=("inpaint", "extend")),
    # Last, after the controls the API had before them, so that positional callers keep working.
    Control(name=EXTEND_TO, kind=gr.Dropdown, label="Extend to", section=FROM_IMAGE, default=OFF,
            info="the input picture placed on a canvas of this format, the new border drawn (a wide one in passes)",
            per_model=_extend_formats, modes=("extend",)),
    Control(name=EXTEND_ANCHOR, kind=gr.Dropdown, label="Place the picture at", section=FROM_IMAGE,
            default="center", choices=tuple((anchor, anchor) for anchor in ANCHORS), modes=("extend",)),
    # Files, not an image component: one upload takes several pictures, each kept as the visitor's file.
    Control(name=REFERENCES, kind=gr.File,
            label=f"References: up to {MAX_REFERENCES} pictures, the prompt says what to change", section=FROM_IMAGE,
            options={"file_count": "multiple", "file_types": list(PICTURE_TYPES), "type": "filepath",
                     "height": 120}, modes=("reference",)),
    # Last, so that positional callers of the API keep working.
    Control(name=ENHANCED_PROMPT, kind=gr.Textbox, label="Enhanced prompt", section=ENHANCE, default="",
            info="what the model draws when not empty: Enhance writes it from the prompt, and you may edit it",
            options={"lines": 2, "max_lines": 6, "max_length": MAX_PROMPT_CHARS,
                     "placeholder": "empty: the prompt is drawn as typed"}),
    # None: the host's choice (`python app.py --auto-enhance`), which the page's box shows.
    Control(name=AUTO_ENHANCE, kind=gr.Checkbox, label="Auto-enhance", section=ENHANCE,
            info="with the box empty, rewrite the prompt before each run", options={"scale": 1}),
    # A colour reference's statistics (JSON), which Reuse settings restores from a PNG so that the
    # colour stage runs again without the file; used only while no reference picture is uploaded.
    # Last, so that positional callers of the API keep working.
    Control(name=COLOR_STATISTICS, kind=gr.Textbox, label="Reference colour statistics (JSON)", section=POSTPROCESS,
            default="", options={"visible": False, "max_length": 1000}),
)
CONTROL_NAMES = tuple(control.name for control in CONTROLS)


def named(name: str) -> Control:
    """The control called `name`."""
    return next(control for control in CONTROLS if control.name == name)


def in_section(section: str) -> tuple[Control, ...]:
    """The controls of one section of the page, in declaration order."""
    return tuple(control for control in CONTROLS if control.section == section)


def defaults() -> dict[str, Any]:
    """Every control's declared default, by name; the prompt, which has none, is left out."""
    return {control.name: control.default for control in CONTROLS if control.default is not REQUIRED}


def takes_controls(method: Callable) -> Callable:
    """`method(self, ..., **values)` given the controls as keyword-only parameters with their defaults.

    Gradio reads an endpoint's parameters from its function's signature (an empty component with
    a None default is an optional parameter), and a direct call that leaves a control out gets
    its default, as the API's callers do.
    """
    signature = inspect.signature(method)
    fixed = [parameter for parameter in signature.parameters.values() if parameter.kind is not parameter.VAR_KEYWORD]
    declared = [inspect.Parameter(control.name, inspect.Parameter.KEYWORD_ONLY, default=control.default)
                for control in CONTROLS]
    signature = signature.replace(parameters=[*fixed, *declared])

    def bind(args, values):
        bound = signature.bind(*args, **values)
        bound.apply_defaults()
        return bound

    if inspect.isasyncgenfunction(method):
        # Gradio streams what an async generator yields (live previews, then the result).
        @functools.wraps(method)
        async def with_controls(*args, **values):
            bound = bind(args, values)
            async for update in method(*bound.args, **bound.kwargs):
                yield update
    elif inspect.iscoroutinefunction(method):
        # Gradio awaits a coroutine function and runs any other in a worker thread.
        @functools.wraps(method)
        async def with_controls(*args, **values):
            bound = bind(args, values)
            return await method(*bound.args, **bound.kwargs)
    else:
        @functools.wraps(method)
        def with_controls(*args, **values):
            bound = bind(args, values)
            return method(*bound.args, **bound.kwargs)

    with_controls.__signature__ = signature
    return with_controls
