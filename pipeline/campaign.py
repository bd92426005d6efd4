"""A campaign in one run: a CSV of ideas in, every deliverable of every variant out, with a manifest.

The CSV has a header row and one row per idea:

    prompt                                  the idea (required)
    negative                                what to avoid
    deliverables                            keys or WxH, separated by ";", "," or spaces (default: the kit's)
    variants                                how many pictures of each deliverable, 1 to MAX_VARIANTS (default 1);
                                            variant k uses seed + k
    seed, steps, guidance                   as for `generate` (default 0 and the model's)
    kit                                     a brand kit file (`pipeline.brand`), relative to the CSV's folder
    style                                   a style preset key (`pipeline.styles`)
    fit                                     extend (default) or crop (`pipeline.deliverables`)

`read_campaign` turns rows into jobs, one per file; a row with a bad value becomes a `RowError`
naming its line, and the other rows still run. `run` renders the jobs with a studio, writes each
PNG, calls `on_file(done, total, path)` after each, and returns the manifest rows: file,
deliverable, size, prompt, seed and every setting that made the file (the kit as its JSON object),
so that `read_manifest` gives jobs that render the same pixels again; each PNG holds
`metadata.deliverable_settings`, so `generate --from-image` remakes it too. `write_zip` packs the files and the manifest.
"""
from __future__ import annotations

import csv
import io
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from pipeline import brand, deliverables, styles
from pipeline.brand import ColourReference
from pipeline.deliverables import Deliverable
from pipeline.files import read_small_text
from pipeline.metadata import deliverable_settings, save_png
from pipeline.postprocess import PostprocessSettings, file_name, shown
from pipeline.request import MAX_SEED, GenerationFailed, GenerationRequest, StepCallback

MAX_VARIANTS = 8
MAX_CAMPAIGN_BYTES = 1024 * 1024
MANIFEST_NAME = "manifest.csv"
ZIP_NAME = "campaign.zip"
COLUMNS = ("prompt", "negative", "deliverables", "variants", "seed", "steps", "guidance", "kit", "style", "fit")
MANIFEST_COLUMNS = ("file", "deliverable", "size", "prompt", "seed", "negative_prompt", "steps", "guidance", "fit",
                    "anchor", "model", "model_revision", "postprocess", "colour_reference", "kit", "style", "idea",
                    "variant", "line")
# Called after each file: (files done, files in all, the file's path).
FileCallback = Callable[[int, int, Path], object]


@dataclass(frozen=True)
class Job:
    """One file of a campaign: the request (effective prompt, one image, its own seed) and its deliverable."""

    file: str
    line: int  # of the campaign CSV, or of the manifest it was read from
    deliverable: Deliverable
    request: GenerationRequest
    fit: str = "extend"
    anchor: str = "center"
    colour: ColourReference | None = None
    kit: brand.Kit | None = None
    style: str = ""
    idea: str = ""  # the row's own prompt, before the style and the kit
    variant: int = 0
    idea_line: int = 0  # the row's line in the campaign CSV (`line` for a job read from one)


@dataclass(frozen=True)
class RowError:
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


def read_campaign(path: str | Path, uses_negative_prompt: bool = True) -> tuple[list[Job], list[RowError]]:
    """The jobs of a campaign CSV, and the errors of its bad rows. ValueError in one sentence for a
    file that is not a campaign at all. `uses_negative_prompt`: False for a model that takes none,
    so that style and kit negatives are left out (a row's own negative is still passed on)."""
    path = Path(path)
    rows = _csv_rows(path, COLUMNS, "prompt", "campaign")
    jobs, errors, kits = [], [], {}
    for idea, (line, row) in enumerate(rows, start=1):
        try:
            _check_cells(row)
            jobs += _row_jobs(path.parent, idea, line, row, kits, uses_negative_prompt)
        except ValueError as error:
            errors.append(RowError(line, str(error)))
    return jobs, errors


def _row_jobs(folder: Path, idea: int, line: int, row: dict, kits: dict, uses_negative: bool) -> list[Job]:
    prompt = row.get("prompt", "")
    if not prompt.strip():
        raise ValueError("prompt is empty; write the idea to draw")
    kit = _kit(folder, row.get("kit", ""), kits)
    listed = row.get("deliverables", "").strip()
    if not listed and (kit is None or not kit.deliverables):
        raise ValueError("deliverables is empty and no kit names default ones; list keys or WxH sizes")
    chosen = deliverables.parse_list(listed) if listed else tuple(map(deliverables.parse, kit.deliverables))
    chosen = tuple({item.key: item for item in chosen}.values())  # each deliverable once
    variants = _whole(row, "variants", 1, 1, MAX_VARIANTS)
    seed = _whole(row, "seed", 0, 0, MAX_SEED - variants + 1)
    fit = row.get("fit", "").strip() or "extend"
    if fit not in deliverables.FITS:
        raise ValueError(f"fit must be one of {', '.join(deliverables.FITS)}, got {fit!r}")
    style = row.get("style", "").strip()
    text, negative, postprocess, colour = compose(prompt, row.get("negative", ""), style, kit, PostprocessSettings(),
                                                  uses_negative)
    fields = {"steps": _whole(row, "steps", None, 1, 1000)} if row.get("steps", "").strip() else {}
    if row.get("guidance", "").strip():
        fields["guidance"] = _number(row, "guidance")
    jobs = []
    for variant in range(variants):
        request = GenerationRequest(prompt=text, negative_prompt=negative, seed=seed + variant,
                                    postprocess=postprocess, **fields)
        for item in chosen:
            jobs.append(Job(f"{idea:02d}-{item.key}-{seed + variant}.png", line, item, request, fit,
                            colour=colour, kit=kit, style=style, idea=prompt,
                            variant=variant, idea_line=line))
    return jobs


def compose(prompt: str, negative_prompt: str, style: str, kit: brand.Kit | None, postprocess: PostprocessSettings,
            uses_negative_prompt: bool = True) -> tuple[str, str, PostprocessSettings, ColourReference | None]:
    """(prompt, negative prompt, post-processing, kit colour statistics) of an idea with its style
    preset and brand kit applied, as every campaign file is made: the style's template, then the
    kit's style text, negative prompt and colour stage (`brand.apply`). The style's and the kit's
    negative prompts are left out for a model that takes none; the idea's own is kept."""
    text, negative = styles.apply(style, prompt, "")
    colour = None
    if kit is not None:
        text, negative, postprocess, colour = brand.apply(kit, text, negative, postprocess)
    return text, brand.join(negative_prompt, negative if uses_negative_prompt else ""), postprocess, colour


def _kit(folder: Path, name: str, kits: dict) -> brand.Kit | None:
    name = name.strip()
    if not name:
        return None
    if name not in kits:
        kits[name] = brand.load(folder / name)
    return kits[name]


def _whole(row: dict, name: str, default: int | None, low: int, high: int) -> int:
    text = row.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{name} must be a whole number from {low} to {high}, got {text!r}") from None
    if not low <= value <= high:
        raise ValueError(f"{name} must be from {low} to {high}, got {value}")
    return value


def _number(row: dict, name: str) -> float:
    text = row.get(name, "").strip()
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {text!r}") from None


def _csv_rows(path: Path, columns: Iterable[str], required: str, what: str) -> list[tuple[int, dict]]:
    """(line number, row) of each non-empty row of a CSV file with a header naming only `columns`."""
    name = file_name(path)
    text = read_small_text(path, what, MAX_CAMPAIGN_BYTES, over="is over {limit} bytes; split it",
                           not_utf8="; save it as UTF-8 CSV", encoding="utf-8-sig")
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [cell.strip().lower() for cell in next(reader, [])]
        if required not in header:
            raise ValueError(f"{what} {name!r} needs a header row naming its columns, {required} among them; "
                             f"known columns: {', '.join(columns)}")
        unknown = [cell for cell in header if cell not in columns]
        if unknown:
            raise ValueError(f"{what} {name!r} has unknown columns {', '.join(map(repr, unknown))}; known: "
                             f"{', '.join(columns)}")
        rows, start = [], reader.line_num + 1
        for cells in reader:
            if any(cell.strip() for cell in cells):
                row = dict(zip(header, cells))
                if len(cells) > len(header):
                    row[None] = len(header), len(cells)  # checked per row by `_check_cells`
                rows.append((start, row))
            start = reader.line_num + 1
    except csv.Error as error:
        raise ValueError(f"{what} {name!r} is not valid CSV at line {reader.line_num}: {error}") from None
    return rows


def _check_cells(row: dict) -> None:
    if None in row:
        columns, cells = row[None]
        raise ValueError(f"the row has {cells} cells but the header names {columns} columns; put a value that "
                         "holds commas in double quotes")


def run(studio, jobs: list[Job], out: str | Path, *, on_file: FileCallback | None = None,
        on_step: StepCallback | None = None) -> tuple[list[dict], list[RowError]]:
    """Render and save every job into `out`; (manifest rows of the files written, errors by line).

    `studio`: a `Studio`, or any engine with its `deliverable` method (`serving.client.RayStudio`).
    A job that fails (a value the model refuses, a failed generation) is reported by its line and
    the others still run. Key visuals are shared by the deliverables of one prompt and seed.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows, errors, keys, current = [], [], {}, None
    for done, job in enumerate(jobs, start=1):
        if (job.line, job.request) != current:
            keys.clear()  # a new prompt or seed: the last key visuals will not be asked for again
            current = (job.line, job.request)
        try:
            rendered = studio.deliverable(job.request, job.deliverable, fit=job.fit, anchor=job.anchor,
                                          colour=job.colour, on_step=on_step, keys=keys)
        except (ValueError, GenerationFailed) as error:
            failed = RowError(job.line, str(error))
            if failed not in errors:  # a row's bad value fails each of its files alike: say it once
                errors.append(failed)
            continue
        key = rendered.settings["generations"][0]
        record = deliverable_settings(rendered.settings, kit=None if job.kit is None else job.kit.to_dict(),
                                      style=job.style)
        path = save_png(rendered.image, record, out / job.file)
        rows.append(_manifest_row(job, key))
        if on_file is not None:
            on_file(done, len(jobs), path)
    return rows, errors


def _manifest_row(job: Job, key: dict) -> dict:
    request = job.request
    return {
        "file": job.file, "deliverable": job.deliverable.key, "size": f"{job.deliverable.width}x{job.deliverable.height}",
        "prompt": request.prompt, "seed": request.seed, "negative_prompt": request.negative_prompt,
        "steps": key["steps"], "guidance": key["guidance"], "fit": job.fit, "anchor": job.anchor,
        "model": key["model"], "model_revision": key["model_revision"],
        "postprocess": json.dumps(request.postprocess.to_dict(), sort_keys=True),
        "colour_reference": "" if job.colour is None else json.dumps(job.colour.to_dict(), sort_keys=True),
        "kit": "" if job.kit is None else json.dumps(job.kit.to_dict(), sort_keys=True, ensure_ascii=False),
        "style": job.style, "idea": job.idea, "variant": job.variant, "line": job.idea_line,
    }


def write_manifest(rows: list[dict], path: str | Path) -> Path:
    path = Path(path)
    with path.open("w", encoding="utf-8", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=MANIFEST_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_zip(folder: str | Path, files: Iterable[str], path: str | Path) -> Path:
    """One ZIP of the named files of `folder` and its manifest, each at the archive's top level."""
    folder, path = Path(folder), Path(path)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in [*files, MANIFEST_NAME]:
            archive.write(folder / name, arcname=name)
    return path


def read_manifest(path: str | Path) -> tuple[list[Job], list[str], list[RowError]]:
    """(jobs that remake each file of a manifest, the model of each job, errors by line); ValueError
    in one sentence for a file that is not a manifest."""
    path = Path(path)
    jobs, models, errors = [], [], []
    for line, row in _csv_rows(path, MANIFEST_COLUMNS, "file", "manifest"):
        try:
            _check_cells(row)
            jobs.append(_manifest_job(line, row))
            models.append(row.get("model", "").strip() or "embedded")
        except ValueError as error:
            errors.append(RowError(line, str(error)))
    return jobs, models, errors


def _manifest_job(line: int, row: dict) -> Job:
    file = row.get("file", "")
    if not file or file_name(file) != file or not file.lower().endswith(".png"):
        raise ValueError(f"file must be a PNG's name without a folder, got {shown(file)}")
    item = deliverables.parse(row.get("deliverable", ""))
    if row.get("size", "") != f"{item.width}x{item.height}":
        raise ValueError(f"size {shown(row.get('size'))} is not the size of deliverable {item.key} "
                         f"({item.width}x{item.height})")
    try:
        postprocess = PostprocessSettings.from_dict(json.loads(row.get("postprocess") or "{}"))
        colour_text = row.get("colour_reference", "").strip()
        colour = ColourReference.from_dict(json.loads(colour_text)) if colour_text else None
        kit_text = row.get("kit", "").strip()
        kit = brand.Kit.from_dict(json.loads(kit_text)) if kit_text else None
    except json.JSONDecodeError as error:
        raise ValueError(f"postprocess, colour_reference and kit must be JSON objects ({error.msg})") from None
    request = GenerationRequest(prompt=row.get("prompt", ""), negative_prompt=row.get("negative_prompt", ""),
                                seed=_whole(row, "seed", 0, 0, MAX_SEED), steps=_whole(row, "steps", None, 1, 1000),
                                guidance=_number(row, "guidance") if row.get("guidance", "").strip() else None,
                                postprocess=postprocess)
    return Job(file, line, item, request, row.get("fit", "").strip() or "extend",
               row.get("anchor", "").strip() or "center", colour, kit, row.get("style", ""),
               row.get("idea", ""), _whole(row, "variant", 0, 0, MAX_VARIANTS - 1),
               _whole(row, "line", 0, 0, 10**9))
