"""The studio page: layout, then wiring. The event functions are in `ui.handlers`.

    demo = build_demo(studio)
    demo.queue(**queue_options(max_size=16)).launch(**LAUNCH_OPTIONS)

The generate controls are built from their declaration (`ui.controls.CONTROLS`), each in its
section of the page. Generation has one API endpoint, `generate`, behind both Enter in the prompt
and the Generate button, whose parameters are the controls in declaration order; `cancel` stops
the caller's own running generation; every other event is private to the page, the Vary buttons
included (they are `generate` from the selected result, which an API caller passes as init_image).
While a run denoises, `generate` streams live previews into the results gallery (the
page's Live previews box, on by default; not an API parameter). The prompt history lives in the
browser's own storage.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from pipeline.request import ModelLimits
from ui.admission import CheckedBlocks
from ui.controls import (AUTO_ENHANCE, CONTROLS, ENHANCED_PROMPT, EXTEND_TO, FROM_IMAGE, INPUT_PICTURE, MASK,
                         POSTPROCESS, in_section, named)
from ui.deliverables import DeliverableHandlers, DeliverablesPanel, admit_panel, build_panel, wire_panel
from ui.engine import Engine
from ui.formats import format_choices, format_for_size
from ui.handlers import StudioHandlers
from ui.runs import RunControl

ASSETS = Path(__file__).resolve().parents[1] / "assets"
CSS_PATH = ASSETS / "studio.css"
EXAMPLES_PATH = ASSETS / "examples.json"

# Every generation shares the device. Up to `studio.max_batch` requests are handed to the studio
# at once; it runs one forward batch at a time, serving compatible waiting requests together.
DEVICE_QUEUE = "device"
# (every, age) in seconds: each hour, delete generated and uploaded files older than a day.
DELETE_CACHE = (3600, 86400)
DEFAULT_QUEUE_SIZE = 16
# Where the browser keeps its prompt history (localStorage, encrypted with a key of this server run).
PROMPT_HISTORY_KEY = "studio-prompt-history"
# The modes that start from input pictures: the "Start from an image" panel serves them (each of its
# controls is shown for the modes it serves, e.g. the references for reference editing).
IMAGE_MODES = {"image", "inpaint", "extend", "reference"}
LAUNCH_OPTIONS = {
    # Uploads are PNGs to reuse, input pictures, colour references and learned upscaler weights; the common
    # ESRGAN x4 weights are about 67 MB.
    "max_file_size": "100mb",
    "css_paths": [CSS_PATH],
    "footer_links": ["api"],
}


def queue_options(max_size: int = DEFAULT_QUEUE_SIZE) -> dict:
    """Arguments of `demo.queue`: a bounded queue (visitors past `max_size` are told it is full)
    that every call of a queued event joins; gradio would otherwise let a direct POST to
    /gradio_api/run/... skip it everywhere but on Spaces."""
    if max_size < 1:
        raise ValueError(f"queue size must be at least 1, got {max_size}")
    return {"max_size": max_size, "default_concurrency_limit": 1, "api_open": False}


@dataclass(frozen=True)
class Page:
    """The components the wiring connects. `controls`: the generate inputs, by control name."""

    controls: dict[str, gr.components.Component]
    status: gr.Markdown
    run: gr.Button
    cancel: gr.Button
    image_format: gr.Dropdown
    reuse: gr.File
    examples: gr.Dataset
    gallery: gr.Gallery
    comparison: gr.ImageSlider
    history_gallery: gr.Gallery
    use_result: gr.Button
    vary_subtle: gr.Button
    vary_strong: gr.Button
    run_control: gr.State
    history: gr.State
    last_run: gr.State
    selected: gr.State
    enhance: gr.Button
    prompts: gr.BrowserState
    live_previews: gr.Checkbox
    previews_on: gr.State
    prompt_search: gr.Textbox
    prompt_list: gr.Dataset
    shown_prompts: gr.State
    # The Deliverables panel, for an engine that renders deliverables (`ui.deliverables`).
    deliverables: DeliverablesPanel | None = None

    @property
    def inputs(self) -> dict[str, gr.components.Component]:
        """Every input of the page's events but the session states, by the name refusals give it."""
        return {**self.controls, "format": self.image_format, "reuse": self.reuse, "example": self.examples}

    @property
    def restorable(self) -> dict[str, gr.components.Component]:
        """What Reuse settings writes to, by name: the controls, the format and the status line (and the
        Deliverables panel's choice of deliverables, its kit and the design a reused deliverable was
        made with, when the page has it)."""
        panel = {} if self.deliverables is None else {
            "deliverables": self.deliverables.checked, "custom_sizes": self.deliverables.custom,
            "fit": self.deliverables.fit, "style": self.deliverables.style, "kit": self.deliverables.kit,
            "restored_design": self.deliverables.restored}
        return {**self.controls, "format": self.image_format, "status": self.status, **panel}


def build_demo(studio: Engine, *, auto_enhance: bool = False) -> gr.Blocks:
    """The Blocks app for one loaded studio. `auto_enhance`: the auto-enhance box starts ticked, and
    an API call that leaves auto_enhance out rewrites its prompt first."""
    with CheckedBlocks(title="Studio", analytics_enabled=False, delete_cache=DELETE_CACHE) as demo:
        page = build_page(studio.limits, tuple(studio.modes), auto_enhance=auto_enhance,
                          writer=callable(getattr(studio, "enhance", None)),
                          deliverables=callable(getattr(studio, "deliverable", None)))
        nullable = {control.name for control in CONTROLS if control.nullable}
        for name, component in page.inputs.items():
            demo.admit(component, name, nullable=name in nullable)
        # The stored history is the browser's own JSON; its handlers read only entries of their shape.
        demo.admit(page.prompts, "prompt_history", nullable=True)
        demo.admit(page.prompt_search, "prompt_search", nullable=True)
        demo.admit(page.live_previews, "live_previews")
        if page.deliverables is not None:
            admit_panel(demo, page.deliverables)
        handlers = StudioHandlers(studio, Path(demo.GRADIO_CACHE) / "studio", page.restorable,
                                  auto_enhance=auto_enhance)
        wire(demo, page, handlers, studio.max_batch)
    return demo


def build_page(limits: ModelLimits, modes: tuple[str, ...], *, auto_enhance: bool = False,
               writer: bool = True, deliverables: bool = False) -> Page:
    """Lay out the page inside the current Blocks: settings on the left, pictures on the right. What
    starts from a picture is shown only for a model that serves an image mode (`modes`); the Enhance
    button and the auto-enhance box only for an engine with a prompt writer (`writer`), ticked when
    `auto_enhance`; the Deliverables panel (`ui.deliverables`) only for an engine that renders
    deliverables (`deliverables`)."""
    # Per browser session: its cancel flag, its history, its last run, the result it selected.
    states = gr.State(RunControl()), gr.State([]), gr.State([]), gr.State(None)
    gr.Markdown("# Studio\nType what you want to see, pick a format, press **Generate**.")
    status = gr.Markdown(label="Status", elem_id="status")
    controls = {}
    with gr.Row(equal_height=False):
        with gr.Column(scale=2, min_width=320):
            run, cancel, enhance, image_format, reuse, examples = build_settings(limits, modes, controls,
                                                                                 auto_enhance, writer)
            prompt_search, prompt_list = build_prompt_history()
        with gr.Column(scale=3, min_width=320):
            # The page's own choice, not a parameter of the API: an API caller gets the result alone.
            live_previews = gr.Checkbox(True, label="Live previews", info="show the picture forming while it denoises",
                                        container=False, elem_id="live-previews")
            gallery = gr.Gallery(label="Results", format="png", columns=2, height=720, object_fit="contain",
                                 buttons=["download", "fullscreen"], interactive=False, elem_id="results")
            # Both start from a result as an input picture: image-to-image, or inpainting once a mask is painted.
            from_result = bool(set(modes) & {"image", "inpaint"})
            with gr.Row(visible=from_result):
                use_result = gr.Button("Use this result", size="sm", elem_id="use-result", visible=from_result)
                vary_subtle = gr.Button("Vary (subtle)", size="sm", elem_id="vary-subtle", visible=from_result)
                vary_strong = gr.Button("Vary (strong)", size="sm", elem_id="vary-strong", visible=from_result)
            comparison = gr.ImageSlider(label="Before / after", format="png", type="filepath",
                                        visible=False, interactive=False, elem_id="comparison")
            history_gallery = gr.Gallery(label="History (this browser session, newest first)", format="png",
                                         columns=8, height=220, object_fit="contain", interactive=False,
                                         fit_columns=False, buttons=["download"], elem_id="history")
            panel = build_panel() if deliverables else None
    missing = [control.name for control in CONTROLS if control.name not in controls]
    if missing:
        raise RuntimeError(f"controls declared in a section the page does not place: {', '.join(missing)}")
    return Page(controls=controls, status=status, run=run, cancel=cancel, image_format=image_format, reuse=reuse,
                examples=examples, gallery=gallery, comparison=comparison, history_gallery=history_gallery,
                use_result=use_result, vary_subtle=vary_subtle, vary_strong=vary_strong, run_control=states[0],
                history=states[1], last_run=states[2], selected=states[3], enhance=enhance,
                prompts=gr.BrowserState([], storage_key=PROMPT_HISTORY_KEY), prompt_search=prompt_search,
                prompt_list=prompt_list, shown_prompts=gr.State([]), live_previews=live_previews,
                previews_on=gr.State(False), deliverables=panel)


def build_prompt_history() -> tuple[gr.Textbox, gr.Dataset]:
    """This browser's past prompts, newest first, with a search box; choosing one restores its settings."""
    with gr.Accordion("Prompt history (this browser)", open=True, elem_id="prompt-history"):
        search = gr.Textbox(label="Search", placeholder="words of a past prompt", elem_id="prompt-search",
                            show_label=False, container=False)
        rows = gr.Dataset(components=[gr.Textbox(render=False), gr.Textbox(render=False)], headers=["Prompt", "Settings"], samples=[],
                          type="index", layout="table", samples_per_page=10, elem_id="prompt-list",
                          label="Choose one to restore its settings")
    return search, rows


def build_settings(limits: ModelLimits, modes: tuple[str, ...], controls: dict, auto_enhance: bool = False,
                   writer: bool = True) -> tuple[gr.Button, gr.Button, gr.Button, gr.Dropdown, gr.File, gr.Dataset]:
    """The left column: every generate control (into `controls`, by name), the buttons, the examples,
    the format presets and the Reuse settings drop zone."""

    def place(section: str) -> None:
        for control in in_section(section):
            if control.name not in controls:
                controls[control.name] = control.build(limits, modes)

    # The prompt with the prompt writer's button beside it, and the writer's editable text under it.
    with gr.Row(equal_height=False):
        controls["prompt"] = named("prompt").build(limits, modes, scale=4)
        with gr.Column(scale=1, min_width=120):
            enhance = gr.Button("Enhance", elem_id="enhance", size="sm", visible=writer)
            controls[AUTO_ENHANCE] = named(AUTO_ENHANCE).build(limits, modes, value=auto_enhance, visible=writer)
    controls[ENHANCED_PROMPT] = named(ENHANCED_PROMPT).build(limits, modes)
    place("text")
    with gr.Row():
        run = gr.Button("Generate", variant="primary", elem_id="generate")
        cancel = gr.Button("Cancel", variant="stop", elem_id="cancel")
    prompts = [[example["prompt"]] for example in json.loads(EXAMPLES_PATH.read_text(encoding="utf-8"))]
    examples = gr.Examples(examples=prompts, inputs=[controls["prompt"]], label="Examples")
    image_format = gr.Dropdown(format_choices(limits), label="Format", elem_id="format",
                               value=format_for_size(limits.default_width, limits.default_height, limits))
    with gr.Row():
        place("size")
    place("count")
    with gr.Accordion("Seed, steps and guidance", open=True):
        with gr.Row():
            place("seed")
        place("sampling")
    from_image = bool(set(modes) & IMAGE_MODES)
    with gr.Accordion("Start from an image", open=False, elem_id="from-image", visible=from_image):
        place(FROM_IMAGE)
    with gr.Accordion("Post-processing", open=False, elem_id="postprocess"):
        place(POSTPROCESS)
    with gr.Accordion("Reuse settings", open=False, elem_id="reuse"):
        reuse = gr.File(label="Drop a PNG made by this studio", file_types=[".png"], elem_id="reuse-file", height=100)
    return run, cancel, enhance, image_format, reuse, examples.dataset


def wire(demo: gr.Blocks, page: Page, handlers: StudioHandlers, max_batch: int) -> None:
    """Connect the events of `page` to `handlers`."""
    controls, quiet = page.controls, {"api_visibility": "private", "queue": False, "show_progress": "hidden"}
    generate_event = gr.on(
        triggers=[controls["prompt"].submit, page.run.click], fn=handlers.generate,
        inputs_kwargs={**{control.name: controls[control.name] for control in CONTROLS},
                       "run_control": page.run_control, "history": page.history, "previews": page.previews_on},
        outputs=[page.gallery, page.comparison, controls["seed"], page.status, page.history, page.last_run],
        api_name="generate", concurrency_limit=max_batch, concurrency_id=DEVICE_QUEUE,
        show_progress_on=page.gallery)
    generate_event.then(handlers.show_run, inputs=[page.history, page.last_run],
                        outputs=[page.history_gallery, page.comparison, page.selected], **quiet)
    run_events = [generate_event]
    run_outputs = [page.gallery, page.comparison, controls["seed"], page.status, page.history, page.last_run]
    vary_events = [
        button.click(vary, inputs_kwargs={**{control.name: controls[control.name] for control in CONTROLS},
                                          "selected": page.selected, "run_control": page.run_control,
                                          "previews": page.previews_on,
                                          "history": page.history},
                     outputs=run_outputs, api_visibility="private", concurrency_limit=max_batch,
                     concurrency_id=DEVICE_QUEUE, show_progress_on=page.gallery)
        for button, vary in ((page.vary_subtle, handlers.vary_subtle), (page.vary_strong, handlers.vary_strong))]
    for event in vary_events:
        event.then(handlers.show_run, inputs=[page.history, page.last_run],
                   outputs=[page.history_gallery, page.comparison, page.selected], **quiet)
    # Only a run that made pictures enters the prompt history.
    gr.on(triggers=[demo.load, page.live_previews.change], fn=handlers.choose_previews, inputs=page.live_previews,
          outputs=page.previews_on, **quiet)
    shown = [page.prompt_list, page.shown_prompts]
    for event in [*run_events, *vary_events]:
        event.success(handlers.remember_prompt, inputs=[page.last_run, page.prompts], outputs=page.prompts,
                      **quiet).then(handlers.show_prompts, inputs=[page.prompts, page.prompt_search], outputs=shown,
                                    **quiet)
    # The prompt writer: its text fills the Enhanced prompt box, which Generate then draws from. The
    # box empties as soon as the visitor types or picks a new prompt, so that no older rewrite is drawn.
    page.enhance.click(handlers.enhance, inputs=[controls["prompt"], controls["seed"]],
                       outputs=controls[ENHANCED_PROMPT], api_name="enhance",
                       concurrency_limit=max_batch, concurrency_id=DEVICE_QUEUE,
                       show_progress_on=controls[ENHANCED_PROMPT])
    gr.on(triggers=[controls["prompt"].input, page.examples.click], fn=None, outputs=controls[ENHANCED_PROMPT],
          js="() => ''", **quiet)
    panel_events = [] if page.deliverables is None else wire_panel(
        page.deliverables, DeliverableHandlers(handlers.studio, handlers.output_dir, handlers.status,
                                              handlers.enhanced), controls, page.status,
        page.run_control, DEVICE_QUEUE, max_batch)
    page.cancel.click(handlers.cancel, inputs=page.run_control, outputs=page.status,
                      cancels=[generate_event, *vary_events, *panel_events], api_name="cancel", queue=False).then(
        handlers.drop_previews, inputs=page.last_run, outputs=page.gallery, **quiet)

    size = [controls["width"], controls["height"]]
    page.image_format.input(handlers.apply_format, inputs=page.image_format, outputs=size, **quiet)
    gr.on(triggers=[box.input for box in size], fn=handlers.match_format, inputs=size, outputs=page.image_format,
          **quiet)
    controls[EXTEND_TO].input(handlers.apply_extend, inputs=controls[EXTEND_TO],
                              outputs=[*size, page.image_format], **quiet)
    modes = [controls["denoise"], controls["color"], controls["upscale"]]
    gr.on(triggers=[mode.change for mode in modes], fn=handlers.show_postprocess_controls, inputs=modes,
          outputs=[controls[name] for name in ("denoise_strength", "color_reference", "color_palette",
                                               "color_strength", "upscaler")], **quiet)
    page.gallery.select(handlers.select_result, inputs=page.last_run, outputs=[page.comparison, page.selected],
                        **quiet)
    page.use_result.click(handlers.use_result, inputs=page.selected, outputs=controls[INPUT_PICTURE], **quiet)
    controls[INPUT_PICTURE].change(handlers.show_input_picture, inputs=controls[INPUT_PICTURE],
                                   outputs=controls[MASK], **quiet)
    # Queued, so that its warnings reach the visitor (Gradio shows `gr.Warning` only in queued events).
    page.reuse.upload(handlers.reuse_settings, inputs=page.reuse, outputs=list(page.restorable.values()),
                      api_visibility="private", concurrency_limit=None, show_progress="hidden")
    gr.on(triggers=[demo.load, page.prompt_search.change], fn=handlers.show_prompts,
          inputs=[page.prompts, page.prompt_search], outputs=shown, **quiet)
    # A select event: the row arrives as the selection, since the rows shown are this session's own.
    page.prompt_list.select(handlers.restore_prompt, inputs=page.shown_prompts,
                           outputs=list(page.restorable.values()), api_visibility="private", concurrency_limit=None,
                           show_progress="hidden")
    demo.load(handlers.status, outputs=page.status, api_visibility="private", queue=False)
