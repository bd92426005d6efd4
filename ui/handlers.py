"""One function per event of the studio page; the layout and wiring are in `ui.layout`.

The handlers talk to one studio (the engine's pipeline object, as `ui.engine.Engine` describes
it) and keep nothing per visitor: what belongs to a browser session (its history, its last run,
its cancel flag) arrives as `gr.State` inputs and leaves as outputs. Bad input becomes a
`gr.Error` carrying the engine's sentence (`ui.errors.refuse`); the app keeps serving. A run
stops when its visitor cancels it or goes away (`ui.runs`).

With live previews on, the results gallery shows the picture each step predicts while the run
goes on, for an engine that makes them (`generate(..., on_preview=...)`). The prompt history is
the browser's own (`gr.BrowserState`): it comes in with the events that read it and goes back
out, and the server keeps none of it.
"""
from __future__ import annotations

import asyncio
import html
import inspect
import logging
import secrets
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from pipeline.conditioning import Extend, read_input_image
from pipeline.enhance import EnhanceFailed
from pipeline.metadata import read_settings, request_from_settings, save_png, stored_deliverable
from pipeline.request import CANCEL, MAX_IMAGES, MAX_SEED, GenerationCancelled, GenerationFailed, GenerationRequest
from ui.controls import AUTO_ENHANCE, INPUT_PICTURE, OFF, REFERENCES, takes_controls
from ui.deliverables import restore_deliverable
from ui.engine import Engine
from ui.errors import refuse
from ui.formats import FORMATS_BY_KEY, format_for_size, format_size
from ui.runs import Previews, Run, RunControl
from ui.settings import (build_request, controls_from_request, describe_source, extend_controls, files_to_upload,
                         pictures_to_upload, read_extend, read_pictures, read_references, references_to_upload, whole,
                         without_folders)

# Newest first; older entries drop off so one long session cannot grow without bound.
HISTORY_LIMIT = 48
# The browser's prompt history, newest first: its length, and how many matches the list shows.
PROMPT_HISTORY_LIMIT = 100
PROMPT_HISTORY_SHOWN = 20
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

    def __init__(self, studio: Engine, output_dir: Path, controls: dict, *, auto_enhance: bool = False):
        """`auto_enhance`: the host's choice for a run that leaves auto_enhance out (None)."""
        self.studio = studio
        self.auto_enhance = auto_enhance
        # An engine with a prompt writer has `enhance` (`pipeline.studio.Studio` does; the page in front
        # of a Ray deployment does not).
        self.writer = callable(getattr(studio, "enhance", None))
        self.output_dir = Path(output_dir)
        # name -> component, for handlers that restore every control at once
        self.controls = controls
        # An engine that makes live previews takes `on_preview` (`pipeline.studio.Studio` does, for
        # the models whose runs can be previewed).
        self.previews = bool(getattr(studio, "previews", False)) and (
            "on_preview" in inspect.signature(studio.generate).parameters)

    # -- generate -------------------------------------------------------------------------

    @takes_controls
    async def generate(self, run_control: RunControl, history: list, previews: bool = False,
                       progress=gr.Progress(), **values):
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
        async for update in self._stream(Run(run_control), values, history, previews, progress):
            yield update

    async def _stream(self, run: Run, values: dict[str, Any], history: list, previews: bool, progress,
                      variation=None):
        """The run's live previews (when `previews` is on), then its result, as the generate event's outputs."""
        if not (previews and self.previews):
            yield await run.in_thread(self._generate, run, values, history, progress, variation)
            return
        latest = Previews()
        task = asyncio.ensure_future(
            run.in_thread(self._generate, run, values, history, progress, variation, latest.put))
        try:
            async for step, total, pictures in latest.until_done(task):
                gallery = [(picture, f"preview: step {step} of {total}") for picture in pictures]
                yield gallery, gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()
            yield await task
        finally:
            if not task.done():
                task.cancel()

    def _generate(self, run: Run, values: dict[str, Any], history: list, progress, variation=None,
                  on_preview=None):
        if not run.wanted:
            raise refuse("cancelled before it started; no image was produced")
        request = self._request(values) if variation is None else self._variation(values, *variation)
        request = self.enhanced(request, values, run)
        result = self._run(request, run, progress, on_preview)
        return self._present(request, result, history)

    def enhanced(self, request: GenerationRequest, values: dict[str, Any], run: Run) -> GenerationRequest:
        """The request as it is drawn: with auto-enhance on and no enhanced prompt, the prompt writer's
        rewrite first (a failure is a warning, and the prompt is drawn as typed); an enhanced prompt
        this studio's writer wrote records the writer. The words the embedded model does not know are
        a warning, for the prompt and for the text drawn, before any picture is made."""
        self._warn_vocabulary(request.prompt)
        auto = self.auto_enhance if values.get(AUTO_ENHANCE) is None else bool(values[AUTO_ENHANCE])
        if request.enhanced_prompt.strip():
            written = self.studio.written(request.prompt, request.enhanced_prompt) if self.writer else None
            if written is not None:
                request = request.replace(**written.request_fields())
        elif auto and self.writer:
            try:
                enhancement = self.studio.enhance(request.prompt, seed=request.seed, task=_task(request),
                                                  should_stop=lambda: not run.wanted)
                request = request.replace(**enhancement.request_fields())
            except EnhanceFailed as error:
                warn(f"{error} The prompt is drawn as typed.")
            except ValueError as error:
                raise refuse(str(error)) from None
        if request.encoded_prompt != request.prompt:
            self._warn_vocabulary(request.encoded_prompt)
        return request

    def _warn_vocabulary(self, text: str) -> None:
        notice = getattr(self.studio, "vocabulary_notice", None)
        sentence = notice(text) if notice is not None else None
        if sentence:
            warn(sentence)

    # -- enhance --------------------------------------------------------------------------

    def enhance(self, prompt: str, seed: float = 0, progress=gr.Progress()) -> str:
        """Rewrite the prompt as a full description of the picture with the prompt writer (the model's
        own unless the host names another; the same prompt and seed give the same text). The text goes
        into the Enhanced prompt box, where it can be edited; Generate draws from that box."""
        if not self.writer:
            raise refuse("the prompt writer runs where the model runs, which this page does not reach "
                         "(--backend ray); write the enhanced prompt yourself")
        self._warn_vocabulary(prompt or "")
        progress(None, desc="writing the description")
        try:
            enhancement = self.studio.enhance(prompt, seed=whole(seed))
        except (ValueError, EnhanceFailed) as error:
            raise refuse(str(error)) from None
        self._warn_vocabulary(enhancement.text)
        return enhancement.text

    # -- vary -----------------------------------------------------------------------------

    @takes_controls
    async def vary_subtle(self, selected, run_control: RunControl, history: list, previews: bool = False,
                          progress=gr.Progress(), **values):
        """Variations of the selected result: image-to-image from it at strength 0.3, new seeds."""
        async for update in self._vary(selected, SUBTLE, run_control, history, previews, progress, values):
            yield update

    @takes_controls
    async def vary_strong(self, selected, run_control: RunControl, history: list, previews: bool = False,
                          progress=gr.Progress(), **values):
        """Variations of the selected result: image-to-image from it at strength 0.6, new seeds."""
        async for update in self._vary(selected, STRONG, run_control, history, previews, progress, values):
            yield update

    async def _vary(self, selected, strength: float, run_control: RunControl, history: list, previews: bool,
                    progress, values):
        if not isinstance(selected, ImagePair):
            raise refuse("select a result first: Vary makes variations of the selected picture")
        async for update in self._stream(Run(run_control), values, history, previews, progress,
                                         (selected, strength)):
            yield update

    def _variation(self, values: dict, selected: ImagePair, strength: float) -> GenerationRequest:
        """The controls' request, from the selected result at `strength`, with the seeds after its own
        (seed + 1, ... for the chosen number of images); no mask, no extend."""
        try:
            values = {**values, "seed": selected.seed + 1, "strength": strength}
            return build_request(values, read_input_image(selected.path, INPUT_PICTURE))
        except ValueError as error:
            raise refuse(str(error)) from None

    def _run(self, request: GenerationRequest, run: Run, progress, on_preview=None):
        def on_step(step: int, total: int):
            progress((step, total), desc=f"step {step} of {total}", unit="steps")
            return None if run.wanted else CANCEL

        try:
            if on_preview is not None:
                return self.studio.generate(request, on_step=on_step, on_preview=on_preview)
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
        except ValueError as error:
            reason = without_folders(str(error), png)
            return {self.controls["status"]: f"{self._status()} · nothing was restored: {reason}"}
        return self._restore(settings, png)

    def _restore(self, settings: dict, png: str = ""):
        """Every control's update that makes `settings` (a picture's stored record) again, and the
        status line and warnings that ask for the files it used."""
        try:
            # The input pictures are asked for, not read: the text-to-image part of the record
            # restores the controls, the image mode's own fields are restored below.
            request, _ = request_from_settings({name: value for name, value in settings.items()
                                                if name not in IMAGE_MODE_FIELDS})
            # Checked by the request's own rules, with the sentence that names the field.
            request = request.replace(**{name: settings[name] for name in ("strength", "mask_feather")
                                         if name in settings})
            extend = Extend.from_dict(settings["extend"]) if "extend" in settings else None
            stored = stored_deliverable(settings)
        except ValueError as error:
            reason = without_folders(str(error), png) if png else str(error)
            return {self.controls["status"]: f"{self._status()} · nothing was restored: {reason}"}
        if settings.get("model") != self.studio.source.reference:
            warn(f"This image was made with {settings.get('model')!r}; this studio runs "
                 f"{self.studio.source.reference!r}, so the pixels will differ.")
        values = {**controls_from_request(request), **extend_controls(extend, self.studio.limits)}
        updates = {self.controls[name]: value for name, value in values.items()}
        # The stored text is drawn as it is: the enhanced prompt restored, or none to write.
        updates[self.controls[AUTO_ENHANCE]] = False
        if stored is None:
            updates[self.controls["format"]] = format_for_size(request.width, request.height, self.studio.limits)
            if "restored_design" in self.controls:
                updates[self.controls["restored_design"]] = None
        else:
            # A deliverable's record leaves the size to its deliverable, which the panel ticks.
            updates.update(restore_deliverable(stored, self.controls, self.studio.limits))
        press = "press Generate" if stored is None else "press Make deliverables"
        status = f"{self._status()} · settings restored from {describe_source(settings)}"
        if stored is not None and stored.kit is not None and "restored_design" in self.controls:
            # The kit's words are in the restored prompt; its colours are kept until a kit is chosen.
            status += f", with kit {stored.kit.get('name', '?')!r} as it was made"
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
            status += f"; upload {named} again under Post-processing, then {press}"
        else:
            status += f"; {press}"
        updates[self.controls["status"]] = status
        return updates

    # -- live previews --------------------------------------------------------------------

    def drop_previews(self, last_run: list):
        """After Cancel: the gallery shows the session's last finished run again, not a cancelled
        run's previews."""
        return [(pair.path, f"seed {pair.seed}") for pair in last_run or ()]

    def choose_previews(self, on: bool) -> bool:
        """The Live previews box, as this session's choice; an API caller, who has no box, gets none."""
        return bool(on)

    # -- prompt history -------------------------------------------------------------------

    def remember_prompt(self, last_run: list, prompts: list | None):
        """After a run: its first picture's prompt and settings at the top of the browser's prompt
        history (the same settings moved up rather than kept twice), at most `PROMPT_HISTORY_LIMIT`."""
        # The browser sends the stored history; anything but a list of entries counts as none.
        prompts = [entry for entry in (prompts if isinstance(prompts, list) else ())
                   if isinstance(entry, dict) and "settings" in entry]
        if not last_run:
            return prompts
        try:
            settings = read_settings(last_run[0].path)
        except ValueError:
            return prompts
        entry = {"prompt": settings.get("prompt", ""), "settings": settings}
        return [entry, *(other for other in prompts if other != entry)][:PROMPT_HISTORY_LIMIT]

    def show_prompts(self, prompts: list | None, query: str | None):
        """The history's entries whose prompt holds `query` (any case), newest first, at most
        `PROMPT_HISTORY_SHOWN`: the list's rows, and the entries they are."""
        words = (query or "").casefold().split()
        shown = [entry for entry in (prompts if isinstance(prompts, list) else ()) if isinstance(entry, dict)
                 and "settings" in entry
                 and all(word in str(entry.get("prompt", "")).casefold() for word in words)][:PROMPT_HISTORY_SHOWN]
        rows = [[entry["prompt"], _describe_entry(entry["settings"])] for entry in shown]
        return gr.Dataset(samples=rows), shown

    def restore_prompt(self, shown: list, evt: gr.SelectData):
        """A history entry chosen: restore its settings, as Reuse settings does for its picture."""
        index = evt.index
        if not isinstance(index, int) or not 0 <= index < len(shown or ()):
            return {self.controls["status"]: gr.update()}
        return self._restore(shown[index]["settings"])


def _task(request: GenerationRequest) -> str:
    """The prompt writer's task: an edit instruction for reference editing, else a picture's description."""
    return "edit" if request.mode == "reference" else "text"


def _describe_entry(settings: dict) -> str:
    """'seed 7 · 256x256 · 20 steps' for a history row."""
    return f"seed {settings.get('seed')} · {settings.get('width')}x{settings.get('height')} · {settings.get('steps')} steps"


def warn(message: str) -> None:
    """A warning to the visitor; gradio shows it as HTML, and names in it come from an uploaded file."""
    gr.Warning(html.escape(message, quote=False))
