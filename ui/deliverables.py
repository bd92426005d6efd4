"""The page's Deliverables panel: exact ad and social formats, brand kits, style presets, a campaign.

The visitor ticks deliverables of the table (`pipeline.deliverables.DELIVERABLES`) and any custom
WIDTHxHEIGHT, picks how each reaches its aspect (extend or crop) and how many variants, and
presses "Make deliverables": the current prompt x ticked deliverables x variants run through the
engine as one campaign (`pipeline.campaign.run`), in the page's one device queue. The results
come back grouped by deliverable (captioned "Story 1080x1920 · seed 3"), with one ZIP of every
file and its `manifest.csv`; a campaign CSV uploaded instead runs every row of it.

A brand kit (a JSON file, `pipeline.brand`) loaded here is applied to every output, as a style
preset (`pipeline.styles`) is; both are recorded in each PNG. "Save as a kit" writes the current
negative prompt, palette and ticked deliverables as a kit file. "Show safe zones" draws the chosen
result's safe zones over its preview in the browser (an annotated image); the file never carries them.

The panel is shown for an engine that renders deliverables (`deliverable(...)`, as
`pipeline.studio.Studio` and `pipeline.serving.client.RayStudio` have); its handlers keep nothing
per visitor but the files they write.
"""
from __future__ import annotations

import csv
import secrets
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import gradio as gr

from pipeline import brand, campaign, deliverables, styles
from pipeline.deliverables import DELIVERABLES, Deliverable
from pipeline.metadata import read_settings, stored_deliverable
from pipeline.request import CANCEL, MAX_SEED, GenerationCancelled, GenerationFailed, GenerationRequest
from ui.controls import takes_controls
from ui.errors import refuse
from ui.formats import format_for_size
from ui.runs import Run, RunControl
from ui.settings import build_request, parse_palette, whole

NO_STYLE = ("No style", "")
NO_KIT = "No kit"
MAX_VARIANTS = campaign.MAX_VARIANTS
# How the page's prompt becomes one file per deliverable and variant: a request of one picture
# whose deliverable sets its size.
DELIVERABLE_FIELDS = {"width": None, "height": None, "num_images": 1}


@dataclass(frozen=True)
class DeliverablesPanel:
    """The panel's components, for the wiring."""

    checked: gr.CheckboxGroup
    custom: gr.Textbox
    fit: gr.Radio
    variants: gr.Slider
    style: gr.Dropdown
    kit: gr.Dropdown
    kit_file: gr.File
    kit_name: gr.Textbox
    save_kit: gr.Button
    saved_kit: gr.File
    campaign_file: gr.File
    make: gr.Button
    gallery: gr.Gallery
    archive: gr.File
    safe_zones: gr.Checkbox
    preview: gr.AnnotatedImage
    kits: gr.State
    made: gr.State
    chosen: gr.State
    # Reuse settings of a deliverable made with a kit: {"kit": its record, "colour": its colour
    # statistics or None}, applied as the picture was made while no kit is chosen; else None.
    restored: gr.State


def deliverable_choices() -> list[tuple[str, str]]:
    """The table as (label, key) pairs, in the table's order."""
    return [(item.label, key) for key, item in DELIVERABLES.items()]


def build_panel() -> DeliverablesPanel:
    """Lay out the Deliverables panel inside the current Blocks (an accordion of its own)."""
    with gr.Accordion("Deliverables, brand kit and style", open=False, elem_id="deliverables"):
        checked = gr.CheckboxGroup(deliverable_choices(), label="Deliverables (exact pixels)",
                                   elem_id="deliverable-list")
        custom = gr.Textbox(label="Custom sizes", placeholder="e.g. 640x360, 1500x500", elem_id="deliverable-custom")
        with gr.Row():
            fit = gr.Radio(list(deliverables.FITS), value="extend", label="Reach the aspect by",
                           info="extend: outpaint the sides; crop: cut the key visual", elem_id="deliverable-fit")
            variants = gr.Slider(1, MAX_VARIANTS, value=1, step=1, label="Variants (seed, seed + 1, ...)",
                                 elem_id="deliverable-variants")
        style = gr.Dropdown([NO_STYLE, *((item.title, key) for key, item in styles.shipped().items())], value="",
                            label="Style preset", elem_id="style")
        with gr.Row():
            kit = gr.Dropdown([NO_KIT], value=NO_KIT, label="Brand kit", elem_id="kit")
            kit_file = gr.File(label="Load a kit (JSON)", file_types=[".json"], height=90, elem_id="kit-file")
        with gr.Row():
            kit_name = gr.Textbox(label="Kit name", placeholder="name of the kit to save", elem_id="kit-name")
            save_kit = gr.Button("Save as a kit", size="sm", elem_id="save-kit")
        saved_kit = gr.File(label="Saved kit", visible=False, interactive=False, elem_id="saved-kit")
        campaign_file = gr.File(label="Or run a campaign CSV", file_types=[".csv"], height=90, elem_id="campaign-file")
        make = gr.Button("Make deliverables", variant="primary", elem_id="make-deliverables")
        gallery = gr.Gallery(label="Deliverables (grouped by deliverable)", format="png", columns=3, height=420,
                             object_fit="contain", interactive=False, buttons=["download"],
                             elem_id="deliverable-results")
        archive = gr.File(label="Download all (ZIP)", interactive=False, elem_id="deliverable-zip")
        safe_zones = gr.Checkbox(False, label="Show safe zones", info="over the preview only; never in the file",
                                 elem_id="safe-zones")
        preview = gr.AnnotatedImage(label="Preview", height=360, elem_id="deliverable-preview")
    return DeliverablesPanel(checked, custom, fit, variants, style, kit, kit_file, kit_name, save_kit, saved_kit,
                             campaign_file, make, gallery, archive, safe_zones, preview, gr.State({}), gr.State([]),
                             gr.State(None), gr.State(None))


def wire_panel(panel: DeliverablesPanel, handlers: DeliverableHandlers, controls: dict, status: gr.Markdown,
               run_control: gr.State, queue: str, max_batch: int) -> list:
    """Connect the panel's events; the runs share the page's device queue (`queue`) and its cancel
    flag (`run_control`). Returns the run events, for the page's Cancel button to stop."""
    quiet = {"api_visibility": "private", "queue": False, "show_progress": "hidden"}
    outputs = [panel.gallery, panel.archive, panel.made, status]
    chosen = [panel.checked, panel.custom, panel.fit, panel.variants, panel.style, panel.kit, panel.kits,
              panel.restored]
    make = panel.make.click(handlers.make, inputs_kwargs={
        **{name: component for name, component in controls.items() if name in handlers.control_names},
        **dict(zip(("checked", "custom", "fit", "variants", "style", "kit", "kits", "restored"), chosen)),
        "run_control": run_control}, outputs=outputs, api_visibility="private", concurrency_limit=max_batch,
        concurrency_id=queue, show_progress_on=panel.gallery)
    upload = panel.campaign_file.upload(handlers.run_campaign, inputs=[panel.campaign_file, run_control],
                                        outputs=outputs, api_visibility="private", concurrency_limit=max_batch,
                                        concurrency_id=queue, show_progress_on=panel.gallery)
    for event in (make, upload):
        event.then(handlers.first_preview, inputs=[panel.made, panel.safe_zones], outputs=[panel.preview, panel.chosen],
                   **quiet)
    # A kit the visitor chooses takes the place of the one a reused picture was made with (a loaded
    # kit is chosen, and a chosen kit applies instead of `restored`).
    panel.kit.input(lambda kit: None, inputs=panel.kit, outputs=panel.restored, **quiet)
    panel.kit_file.upload(handlers.load_kit, inputs=[panel.kit_file, panel.kits],
                          outputs=[panel.kits, panel.kit, panel.checked, status], api_visibility="private",
                          queue=False)
    panel.save_kit.click(handlers.save_kit, inputs=[panel.kit_name, controls["negative_prompt"], controls["color"],
                                                    controls["color_palette"], panel.checked, panel.custom],
                         outputs=panel.saved_kit, api_visibility="private", queue=False)
    panel.gallery.select(handlers.select, inputs=[panel.made, panel.safe_zones], outputs=[panel.preview, panel.chosen],
                         **quiet)
    panel.safe_zones.change(handlers.show_safe_zones, inputs=[panel.chosen, panel.safe_zones], outputs=panel.preview,
                            **quiet)
    return [make, upload]


class DeliverableHandlers:
    """The panel's event functions, bound to one studio and the folder its files go to."""

    # The generate controls a deliverable run reads; the picture inputs and the size are the panel's own.
    control_names = ("prompt", "enhanced_prompt", "auto_enhance", "negative_prompt", "seed", "random_seed", "steps",
                     "guidance", "denoise", "denoise_strength", "color", "color_reference", "color_palette",
                     "color_strength", "upscale", "upscaler")

    def __init__(self, studio, output_dir: Path, status: Callable[[], str] = str,
                 enhanced: Callable[[GenerationRequest, dict, Run], GenerationRequest] | None = None):
        """`status`: the page's status line (model, device), which the panel's messages follow;
        `enhanced(request, values, run)`: the request as the page draws it (the Enhanced prompt box,
        or the prompt writer's rewrite with auto-enhance on), before the style and kit apply."""
        self.studio = studio
        self.output_dir = Path(output_dir)
        self.status = status
        self.enhanced = enhanced

    # -- make -----------------------------------------------------------------------------

    @takes_controls
    async def make(self, checked: list | None, custom: str | None, fit: str, variants: float, style: str | None,
                   kit: str | None, kits: dict, run_control: RunControl, progress=gr.Progress(),
                   restored: dict | None = None, **values):
        """The prompt x ticked deliverables x variants, each an exact-size PNG, grouped by deliverable,
        and one ZIP of them with the manifest."""
        run = Run(run_control)
        kit_ = kits.get(kit) if kits else None
        return await run.in_thread(lambda: self._run(
            run, self.jobs(values, checked, custom, fit, variants, style, kit_, run, restored), progress))

    def jobs(self, values: dict[str, Any], checked: list | None, custom: str | None, fit: str, variants: float,
             style: str | None, kit: dict | None, run: Run | None = None,
             restored: dict | None = None) -> list[campaign.Job]:
        """One job per variant and deliverable (variant k draws with seed + k); a refusal in one
        sentence for a value that cannot be made. The text drawn is the page's (`enhanced`, with
        `run` to stop the prompt writer), with the style and the kit applied to the prompt and to
        the enhanced prompt alike. Without a kit, `restored` (the panel's `restored`) gives the kit
        record and colour statistics of a reused picture, whose prompt already holds the kit's words."""
        try:
            chosen = self.chosen(checked, custom, kit)
            count = whole(variants)
            if not 1 <= count <= MAX_VARIANTS:
                raise ValueError(f"variants must be from 1 to {MAX_VARIANTS}, got {count}")
            if fit not in deliverables.FITS:
                raise ValueError(f"fit must be one of {', '.join(deliverables.FITS)}, got {fit!r}")
            if values.get("random_seed"):
                values = {**values, "seed": secrets.randbelow(MAX_SEED - MAX_VARIANTS + 2)}
            request = build_request({**values, "width": None, "height": None, "num_images": 1})
            kit_ = chosen_kit = None if kit is None else brand.Kit.from_dict(kit)
            text, negative, postprocess, colour = campaign.compose(
                request.prompt, request.negative_prompt, style or "", chosen_kit, request.postprocess,
                self.studio.limits.uses_negative_prompt)
            if chosen_kit is None and restored:
                kit_ = None if restored["kit"] is None else brand.Kit.from_dict(restored["kit"])
                colour = None if restored["colour"] is None else brand.ColourReference.from_dict(restored["colour"])
        except ValueError as error:
            raise refuse(str(error)) from None
        if self.enhanced is not None and run is not None:
            request = self.enhanced(request, values, run)
        enhanced = request.enhanced_prompt
        if enhanced.strip():
            enhanced = campaign.compose(enhanced, "", style or "", chosen_kit, request.postprocess)[0]
        jobs = []
        for variant in range(count):
            drawn = request.replace(prompt=text, enhanced_prompt=enhanced, negative_prompt=negative,
                                    postprocess=postprocess, seed=request.seed + variant, **DELIVERABLE_FIELDS)
            for item in chosen:
                jobs.append(campaign.Job(f"{item.key}-{drawn.seed}.png", 1, item, drawn, fit, colour=colour,
                                         kit=kit_, style=style or "", idea=request.prompt, variant=variant,
                                         idea_line=1))
        return jobs

    def chosen(self, checked: list | None, custom: str | None, kit: dict | None) -> tuple[Deliverable, ...]:
        """The ticked and custom deliverables, each once; with none, the kit's own; ValueError if none."""
        listed = [deliverables.parse(key) for key in checked or ()]
        if (custom or "").strip():
            listed += deliverables.parse_list(custom)
        if not listed and kit and kit.get("deliverables"):
            listed = [deliverables.parse(key) for key in kit["deliverables"]]
        if not listed:
            raise ValueError("no deliverable is ticked; tick one or more, or type a size such as 640x360")
        return tuple({item.key: item for item in listed}.values())

    async def run_campaign(self, path: str | None, run_control: RunControl, progress=gr.Progress()):
        """Every row of an uploaded campaign CSV (the `campaign` command's format, without kit files:
        the panel's Brand kit serves the page); a bad row is a warning naming its line, the others
        still run."""
        if not path:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip()
        run = Run(run_control)
        if names_kit_files(path):
            # A kit cell is a path on the machine that reads the CSV: on a shared page, the server's.
            raise refuse("a campaign run on this page cannot name kit files in its kit column; load the kit under "
                         "Brand kit and tick the deliverables instead, or run it with `python -m pipeline campaign`")
        try:
            jobs, errors = campaign.read_campaign(path, self.studio.limits.uses_negative_prompt)
        except ValueError as error:
            raise refuse(str(error)) from None
        for error in errors:
            gr.Warning(str(error))
        if not jobs:
            raise refuse("the campaign has no row that can be made; see the warnings for each line")
        return await run.in_thread(self._run, run, jobs, progress)

    def _run(self, run: Run, jobs: list[campaign.Job], progress):
        if not run.wanted:
            raise refuse("cancelled before it started; no image was produced")
        folder = self.output_dir / uuid.uuid4().hex
        current = {"file": 1}

        def on_file(done: int, total: int, path: Path):
            current["file"] = done + 1
            progress((done, total), desc=f"file {done} of {total}", unit="files")

        def on_step(step: int, total: int):
            progress((current["file"] - 1, len(jobs)),
                     desc=f"file {min(current['file'], len(jobs))} of {len(jobs)} · step {step} of {total}",
                     unit="files")
            return None if run.wanted else CANCEL

        try:
            rows, errors = campaign.run(self.studio, jobs, folder, on_file=on_file, on_step=on_step)
        except GenerationCancelled as cancelled:
            raise refuse(str(cancelled)) from None
        except GenerationFailed as error:
            raise refuse(str(error)) from None
        if not rows:
            raise refuse(str(errors[0]) if errors else "no file was made")
        for error in errors:
            gr.Warning(str(error))
        campaign.write_manifest(rows, folder / campaign.MANIFEST_NAME)
        archive = campaign.write_zip(folder, [row["file"] for row in rows], folder / campaign.ZIP_NAME)
        made = grouped([(str(folder / row["file"]), row) for row in rows])
        gallery = [(path, caption(row)) for path, row in made]
        status = " · ".join(filter(None, [self.status(), f"{len(rows)} file{'' if len(rows) == 1 else 's'} made"
                                          + (f", {len(errors)} lines failed" if errors else "")]))
        return gallery, str(archive), [path for path, _ in made], status

    # -- brand kits -----------------------------------------------------------------------

    def load_kit(self, path: str | None, kits: dict):
        """A kit file loaded: it joins this session's kits and is chosen; its default deliverables are ticked."""
        if not path:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip()
        try:
            kit = brand.load(path)
        except ValueError as error:
            raise refuse(str(error)) from None
        kits = {**(kits or {}), kit.name: kit.to_dict()}
        ticked = [key for key in kit.deliverables if key in DELIVERABLES]
        return (kits, gr.Dropdown(choices=[NO_KIT, *kits], value=kit.name),
                gr.CheckboxGroup(value=ticked) if ticked else gr.skip(),
                " · ".join(filter(None, [self.status(), f"kit **{kit.name}** loaded and chosen"])))

    def save_kit(self, name: str | None, negative_prompt: str | None, color: str | None, palette: str | None,
                 checked: list | None, custom: str | None) -> dict:
        """The current negative prompt, palette (when the colour mode is a palette) and deliverables as a
        kit file to download."""
        try:
            if not (name or "").strip():
                raise ValueError("name the kit first: type its name in Kit name")
            listed = list(checked or ()) + [item.key for item in deliverables.parse_list(custom)
                                             if (custom or "").strip()]
            kit = brand.Kit(name=name.strip(), negative_prompt=negative_prompt or "",
                            palette=parse_palette(palette) if color == "palette" else (), deliverables=tuple(listed))
        except ValueError as error:
            raise refuse(str(error)) from None
        folder = self.output_dir / uuid.uuid4().hex
        folder.mkdir(parents=True)
        slug = "".join(char if char.isalnum() or char in "-_" else "-" for char in kit.name)[:64] or "kit"
        return gr.update(value=str(brand.save(kit, folder / f"{slug}.json")), visible=True)

    # -- safe zones -----------------------------------------------------------------------

    def first_preview(self, made: list, safe_zones: bool):
        """After a run: its first file in the preview."""
        return self._preview(made[0] if made else None, safe_zones)

    def select(self, made: list, safe_zones: bool, evt: gr.SelectData):
        """A result chosen: it becomes the preview, with its safe zones when the box is ticked."""
        index = evt.index
        if not isinstance(index, int) or not 0 <= index < len(made or ()):
            return gr.skip(), gr.skip()
        return self._preview(made[index], safe_zones)

    def show_safe_zones(self, chosen: str | None, on: bool):
        """The box toggled: the preview with or without the chosen result's safe zones."""
        return self._preview(chosen, on)[0]

    def _preview(self, path: str | None, on: bool):
        if not path:
            return None, None
        return (path, zone_boxes(path) if on else []), path


def names_kit_files(path: str) -> bool:
    """Whether a campaign CSV (of at most `campaign.MAX_CAMPAIGN_BYTES`) fills its kit column; False
    for a file `campaign.read_campaign` refuses anyway."""
    try:
        if Path(path).stat().st_size > campaign.MAX_CAMPAIGN_BYTES:
            return False
        with open(path, encoding="utf-8-sig", newline="") as file:
            rows = list(csv.DictReader(file))
    except (OSError, UnicodeDecodeError, csv.Error):
        return False
    return any(isinstance(name, str) and name.strip().lower() == "kit" and isinstance(value, str) and value.strip()
               for row in rows for name, value in row.items())


def restore_deliverable(stored, controls: dict, limits) -> dict:
    """Reuse settings of a deliverable's PNG (`metadata.stored_deliverable`): the model's own size in
    the format box, and, where the page has the panel, the deliverable ticked (a custom size typed)
    with its fit. The style stays empty and no kit is chosen: the stored prompt already holds their
    words; the kit's record and colour statistics are kept for the panel to apply (`restored`)."""
    item = stored.deliverable
    updates = {controls["format"]: format_for_size(limits.default_width, limits.default_height, limits)}
    kept = None if stored.kit is None and stored.colour is None else {
        "kit": stored.kit, "colour": None if stored.colour is None else stored.colour.to_dict()}
    values = {"deliverables": [item.key] if item.key in DELIVERABLES else [],
              "custom_sizes": "" if item.key in DELIVERABLES else item.key, "fit": stored.fit, "style": "",
              "kit": NO_KIT, "restored_design": kept}
    updates.update({controls[name]: value for name, value in values.items() if name in controls})
    return updates


def zone_boxes(path: str) -> list[tuple[tuple[int, int, int, int], str]]:
    """The safe zones of the deliverable a PNG was made as, as (box, label) for an annotated image."""
    try:
        stored = stored_deliverable(read_settings(path))
    except ValueError:
        return []
    if stored is None:
        return []
    return [((zone.left, zone.top, zone.right, zone.bottom), zone.label) for zone in stored.deliverable.safe_zones]


def grouped(made: list[tuple[str, dict]]) -> list[tuple[str, dict]]:
    """Files in the order of the table (custom sizes after it), then by variant: each deliverable's
    files side by side."""
    order = {key: index for index, key in enumerate(DELIVERABLES)}
    return sorted(made, key=lambda item: (order.get(item[1]["deliverable"], len(order)), item[1]["deliverable"],
                                          item[1]["line"], int(item[1]["variant"])))


def caption(row: dict) -> str:
    """'Story 1080x1920 · seed 3' for a manifest row."""
    item = DELIVERABLES.get(row["deliverable"])
    title = item.label if item is not None else row["size"]
    return f"{title} · seed {row['seed']}"


def admit_panel(demo, panel: DeliverablesPanel) -> None:
    """Name the panel's inputs to the page's admission checks (`ui.admission.CheckedBlocks`)."""
    for component, name, nullable in ((panel.custom, "custom_sizes", True), (panel.fit, "fit", False),
                                      (panel.variants, "variants", False), (panel.style, "style", False),
                                      (panel.kit_file, "kit_file", True), (panel.kit_name, "kit_name", True),
                                      (panel.campaign_file, "campaign", True), (panel.safe_zones, "safe_zones", False)):
        demo.admit(component, name, nullable=nullable)
