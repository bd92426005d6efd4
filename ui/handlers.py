"""One function per event of the studio page; the layout and wiring are in `ui.layout`.

The handlers talk to one studio (the engine's pipeline object, as `ui.engine.Engine` describes
it) and keep nothing per visitor: what belongs to a browser session (its history, its last run,
its cancel flag) arrives as `gr.State` inputs and leaves as outputs. Bad input becomes a
`gr.Error` carrying the engine's sentence (`ui.errors.refuse`); the app keeps serving. A run
stops when its visitor cancels it or goes away (`ui.runs`).
"""
from __future__ import annotations

import html
import logging
import secrets
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from pipeline.conditioning import Extend, read_input_image
from pipeline.metadata import read_settings, request_from_settings, save_png
from pipeline.request import CANCEL, MAX_IMAGES, MAX_SEED, GenerationCancelled, GenerationFailed, GenerationRequest
from ui.controls import INPUT_PICTURE, OFF, REFERENCES, takes_controls
from ui.engine import Engine
from ui.errors import refuse
from ui.formats import FORMATS_BY_KEY, format_for_size, format_size
from ui.runs import Run, RunControl
from ui.settings import (build_request, controls_from_request, describe_source, extend_controls, files_to_upload,
                         pictures_to_upload, read_extend, read_pictures, read_references, references_to_upload,
                         without_folders)

# Newest first; older entries drop off so one long session cannot grow without bound.
HISTORY_LIMIT = 48
# The strengths of the Vary buttons: a variation that keeps the picture, and a looser one.
SUBTLE, STRONG = 0.3, 0.6
# The settings fields of the image modes; Reuse settings reads the rest as a text-to-image record.
IMAGE_MODE_FIELDS = ("mode", "init_image", "mask", "strength", "mask_feather", "extend", "references")


@dataclass(frozen=True)
class ImagePair:
    """One generated picture on disk: the PNG with its settings, and the picture before post-processing."""

    path: str
    before: str
    seed: int


class StudioHandlers:
    """The event functions, bound to one studio and the folder where its PNGs are written."""

    def __init__(self, studio: Engine, output_dir: Path, controls: dict):
        self.studio = studio
        self.output_dir = Path(output_dir)
        # name -> component, for handlers that restore every control at once
        self.controls = controls

    # -- generate -------------------------------------------------------------------------

    @takes_controls
    async def generate(self, run_control: RunControl, history: list, progress=gr.Progress(), **values):
        """Generate images from a prompt, or from an input picture (init_image, with strength) and a
        mask painted over it (white = repaint, softened by mask_feather pixels), or extend the input
        picture to a format (extend_to, the picture placed at extend_anchor; width and height are the
        format's size then), or edit from reference pictures (references, the prompt being the
        instruction; for the models that take them).

        Returns the images (PNGs with their settings inside, captioned with their seeds), the first
        image before and after post-processing (the same file twice when none ran), the seed of the
        first image, and a status line naming the model, device and the run's time per stage.
        """
        # Up to `studio.max_batch` of these run at once, one per visitor; the studio serves the
        # requests that wait for the device together as one forward batch.
        run = Run(run_control)
        return await run.in_thread(self._generate, run, values, history, progress)

    def _generate(self, run: Run, values: dict[str, Any], history: list, progress, variation=None):
        if not run.wanted:
            raise refuse("cancelled before it started; no image was produced")
        request = self._request(values) if variation is None else self._variation(values, *variation)
        result = self._run(request, run, progress)
        return self._present(request, result, history)

    # -- vary -----------------------------------------------------------------------------

    @takes_controls
    async def vary_subtle(self, selected, run_control: RunControl, history: list, progress=gr.Progress(),
                          **values):
        """Variations of the selected result: image-to-image from it at strength 0.3, new seeds."""
        return await self._vary(selected, SUBTLE, run_control, history, progress, values)

    @takes_controls
    async def vary_strong(self, selected, run_control: RunControl, history: list, progress=gr.Progress(),
                          **values):
        """Variations of the selected result: image-to-image from it at strength 0.6, new seeds."""
        return await self._vary(selected, STRONG, run_control, history, progress, values)

    async def _vary(self, selected, strength: float, run_control: RunControl, history: list, progress, values):
        if not isinstance(selected, ImagePair):
            raise refuse("select a result first: Vary makes variations of the selected picture")
        run = Run(run_control)
        return await run.in_thread(self._generate, run, values, history, progress, (selected, strength))

    def _variation(self, values: dict, selected: ImagePair, strength: float) -> GenerationRequest:
        """The controls' request, from the selected result at `strength`, with the seeds after its own
        (seed + 1, ... for the chosen number of images); no mask, no extend."""
        try:
            values = {**values, "seed": selected.seed + 1, "strength": strength}
            return build_request(values, read_input_image(selected.path, INPUT_PICTURE))
        except ValueError as error:
            raise refuse(str(error)) from None

    def _run(self, request: GenerationRequest, run: Run, progress):
        def on_step(step: int, total: int):
            progress((step, total), desc=f"step {step} of {total}", unit="steps")
            return None if run.wanted else CANCEL

        try:
            return self.studio.generate(request, on_step=on_step)
        except GenerationCancelled as cancelled:
            # The browser has already dropped this run; an API caller gets the sentence.
            raise refuse(str(cancelled)) from None
        except ValueError as error:
            raise refuse(str(error)) from None
        except GenerationFailed as error:
            raise refuse(str(error), logging.WARNING) from None

    def _present(self, request: GenerationRequest, result, history: list):
        pairs = self._save(result)
        gallery = [(pair.path, f"seed {pair.seed}") for pair in pairs]
        history = (gallery + list(history or []))[:HISTORY_LIMIT]
        return gallery, (pairs[0].before, pairs[0].path), request.seed, self._status(result.timings), history, pairs

    def _request(self, values: dict) -> GenerationRequest:
        try:
            if values["random_seed"]:
                # Low enough that every image of a full batch (seed, seed+1, ...) stays in range.
                values = {**values, "seed": secrets.randbelow(MAX_SEED - MAX_IMAGES + 2)}
            return build_request(values, *read_pictures(values), read_extend(values, self.studio.limits),
                                 read_references(values))
        except ValueError as error:
            message = without_folders(str(error), values.get(INPUT_PICTURE) or "")
            for path in values.get(REFERENCES) or ():
                message = without_folders(message, path)
            raise refuse(message) from None

    def _save(self, result) -> list[ImagePair]:
        folder = self.output_dir / uuid.uuid4().hex
        folder.mkdir(parents=True)
        pairs = []
        for image, original, settings in zip(result.images, result.originals, result.settings):
            path = save_png(image, settings, folder / f"studio-{settings['seed']}.png")
            before = path
            if original is not image:
                before = save_png(original, settings, folder / f"studio-{settings['seed']}-before.png")
            pairs.append(ImagePair(str(path), str(before), settings["seed"]))
        return pairs

    def _status(self, timings: dict | None = None) -> str:
        source = self.studio.source
        line = f"Model **{source.reference}** ({self.studio.family.pipeline_class}) on **{self.studio.device}**"
        if timings:
            stages = ", ".join(f"{name} {seconds:.2f}" for name, seconds in timings.items())
            line += f" · last run **{sum(timings.values()):.2f} s** ({stages})"
        return line

    def status(self) -> str:
        """The status line before any run."""
        return self._status()

    # -- cancel ---------------------------------------------------------------------------

    def cancel(self, run_control: RunControl) -> str:
        """Stop this session's requests: a running generation after its current step, a waiting one
        before it starts."""
        run_control.cancel()
        return f"{self._status()} · run cancelled, no image was produced"

    # -- size -----------------------------------------------------------------------------

    def apply_format(self, format_key: str):
        """A format preset chosen: its size for this model into the width and height boxes."""
        if format_key not in FORMATS_BY_KEY:
            return gr.update(), gr.update()
        return format_size(FORMATS_BY_KEY[format_key], self.studio.limits)

    def apply_extend(self, format_key: str):
        """A format to extend to chosen: the width, height and format become the canvas's, as the
        request's will be."""
        if format_key not in FORMATS_BY_KEY:
            return gr.update(), gr.update(), gr.update()
        return *format_size(FORMATS_BY_KEY[format_key], self.studio.limits), format_key

    def match_format(self, width, height) -> str:
        """Width or height typed: the preset with exactly that size, or custom."""
        return format_for_size(width, height, self.studio.limits)

    # -- post-processing panel ------------------------------------------------------------

    def show_postprocess_controls(self, denoise, color, upscale):
        """Only the controls the chosen modes use are shown."""
        return (gr.update(visible=denoise == "manual"), gr.update(visible=color == "reference"),
                gr.update(visible=color == "palette"), gr.update(visible=color != OFF),
                gr.update(visible=upscale != "1"))

    def show_run(self, history: list, last_run: list):
        """After a run: the session's history, the before/after slider only if post-processing ran,
        and no result selected (Vary waits for a picture of this run to be chosen)."""
        return history, gr.update(visible=any(pair.before != pair.path for pair in last_run)), None

    def select_result(self, last_run: list, evt: gr.SelectData):
        """A picture of the last run selected: compare it before and after post-processing, and
        keep it as the picture that Vary and "Use this result" start from."""
        if not last_run or evt.index is None or not 0 <= evt.index < len(last_run):
            return gr.update(), gr.update()
        pair = last_run[evt.index]
        return (pair.before, pair.path), pair

    # -- start from an image --------------------------------------------------------------

    def use_result(self, selected):
        """The selected result becomes the input picture."""
        if not isinstance(selected, ImagePair):
            raise refuse("select a result first: Use this result starts from the selected picture")
        return selected.path

    def show_input_picture(self, path):
        """The input picture, under the mask's brush; no input picture, an empty mask."""
        if not path:
            return None
        return {"background": path, "layers": [], "composite": path}

    # -- reuse settings -------------------------------------------------------------------

    def reuse_settings(self, png):
        """A PNG made here dropped in: restore every control so that Generate redraws it exactly.

        The files its settings name (an input picture and its mask, a colour reference, a learned
        upscaler) are not restored; the status line and a warning ask for them, the pictures by the
        start of their SHA-256 and their size, never by a path. A PNG without the studio's settings
        leaves every control as it is and says why in the status line.
        """
        if not png:
            return {self.controls["status"]: gr.update()}
        try:
            settings = read_settings(png)
            # The input pictures are asked for, not read: the text-to-image part of the record
            # restores the controls, the image mode's own fields are restored below.
            request, _ = request_from_settings({name: value for name, value in settings.items()
                                                if name not in IMAGE_MODE_FIELDS})
            # Checked by the request's own rules, with the sentence that names the field.
            request = request.replace(**{name: settings[name] for name in ("strength", "mask_feather")
                                         if name in settings})
            extend = Extend.from_dict(settings["extend"]) if "extend" in settings else None
        except ValueError as error:
            reason = without_folders(str(error), png)
            return {self.controls["status"]: f"{self._status()} · nothing was restored: {reason}"}
        if settings.get("model") != self.studio.source.reference:
            warn(f"This image was made with {settings.get('model')!r}; this studio runs "
                 f"{self.studio.source.reference!r}, so the pixels will differ.")
        values = {**controls_from_request(request), **extend_controls(extend, self.studio.limits)}
        updates = {self.controls[name]: value for name, value in values.items()}
        updates[self.controls["format"]] = format_for_size(request.width, request.height, self.studio.limits)
        status = f"{self._status()} · settings restored from {describe_source(settings)}"
        pictures = pictures_to_upload(settings)
        if pictures:
            # The page keeps no picture and reads no path from a PNG: the visitor gives the input
            # picture again, and paints the mask again over it.
            wanted = f"upload {pictures[0]} under Start from an image" + "".join(
                f" and paint {mask} over it again" for mask in pictures[1:])
            warn(f"This image was made from a picture that its PNG does not hold: {wanted} to redraw it.")
            status += f"; {wanted}"
        references = references_to_upload(settings)
        if references:
            wanted = f"upload {', '.join(references)} under Start from an image, in this order,"
            warn(f"This image was made from reference pictures that its PNG does not hold: {wanted} to redraw it.")
            status += f"; {wanted}"
        files = files_to_upload(request.postprocess)
        if files:
            named = " and ".join(files)
            warn(f"This image's settings used {named}: upload {'it' if len(files) == 1 else 'them'} again "
                 "under Post-processing to redraw the image exactly.")
            status += f"; upload {named} again under Post-processing, then press Generate"
        else:
            status += "; press Generate"
        updates[self.controls["status"]] = status
        return updates


def warn(message: str) -> None:
    """A warning to the visitor; gradio shows it as HTML, and names in it come from an uploaded file."""
    gr.Warning(html.escape(message, quote=False))
