"""The resumable step loop every training stage runs, and the progress events it reports.

A stage's checkpoint holds its modules' weights, the optimizer's state and the number of steps
done. `StageLoop` loads it if present, runs the remaining steps, saves it every
`checkpoint_every` steps and once more at the end. A checkpoint is one file, or with `split` a
folder of one file per module and per kind of optimizer state (`save_parts`), so that each file
stays small enough to keep in version control. The step function gets the step's index only,
so a stage whose batches are a pure function of (seed, stage, step) repeats after a restart
exactly the batches an uninterrupted run would have seen, and ends with the same weights.
"""
from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch


@dataclass(frozen=True)
class Progress:
    """How far a training task has come, for a progress bar or a log line.

    A task reports once as it starts (with the steps a resumed task had already done) and then
    after each step.
    """

    task: str  # "decoder", "denoiser", "refine decoder", "encode pool", ...
    step: int  # steps done in all, 0..total
    total: int
    loss: float | None = None  # of the step just done


ProgressCallback = Callable[[Progress], None]


def save_state(path: Path, state: dict) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)  # atomic: a crash mid-save leaves the previous checkpoint


def load_state(path: Path, modules: dict[str, torch.nn.Module], optimizer: torch.optim.Optimizer) -> dict:
    """Restore `modules` and `optimizer` from the checkpoint at `path`; the rest of it, or {} if none.

    The rest holds "step" (steps done) and whatever the stage saved with its last checkpoint.
    """
    if not path.exists():
        return {}
    state = torch.load(path, weights_only=False)
    for name, module in modules.items():
        module.load_state_dict(state.pop(name))
    optimizer.load_state_dict(state.pop("optimizer"))
    return state


def optimizer_parts(state: dict) -> dict[str, dict]:
    """An optimizer's `state_dict` split into "optimizer" (groups, scalars) and one part per kind
    of per-parameter tensor ("optimizer.exp_avg", ...)."""
    parts = {"optimizer": {"param_groups": state["param_groups"], "state": {}}}
    for index, entries in state["state"].items():
        for key, value in entries.items():
            if torch.is_tensor(value) and value.dim() > 0:
                parts.setdefault(f"optimizer.{key}", {})[index] = value
            else:
                parts["optimizer"]["state"].setdefault(index, {})[key] = value
    return parts


def join_optimizer_parts(parts: dict[str, dict]) -> dict:
    """The inverse of `optimizer_parts`."""
    state = {"param_groups": parts["optimizer"]["param_groups"],
             "state": {index: dict(entries) for index, entries in parts["optimizer"]["state"].items()}}
    for name, tensors in parts.items():
        if name.startswith("optimizer."):
            for index, value in tensors.items():
                state["state"].setdefault(index, {})[name.removeprefix("optimizer.")] = value
    return state


def save_parts(folder: Path, parts: dict[str, object]) -> None:
    """Each part to `folder`/NAME.pt; the folder is replaced as a whole, so a crash mid-save leaves
    the previous checkpoint (in `folder` or, for a moment, in FOLDER.old)."""
    tmp, old = folder.with_name(folder.name + ".tmp"), folder.with_name(folder.name + ".old")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name, value in parts.items():
        torch.save(value, tmp / f"{name}.pt")
    if folder.exists():
        shutil.rmtree(old, ignore_errors=True)
        folder.rename(old)
    tmp.rename(folder)
    shutil.rmtree(old, ignore_errors=True)


def load_parts(folder: Path) -> dict[str, object]:
    """The parts `save_parts` wrote, or {} if there is no checkpoint."""
    old = folder.with_name(folder.name + ".old")
    if not folder.exists() and old.exists():
        old.rename(folder)
    if not folder.exists():
        return {}
    return {path.stem: torch.load(path, weights_only=False) for path in sorted(folder.glob("*.pt"))}


class StageLoop:
    """Steps 0..total_steps-1 of one training stage, resumable from its checkpoint at `path`.

    Making one restores `modules` (by name) and `optimizer` from the checkpoint if there is one;
    `done` then says whether the stage has anything left to run, so that a finished stage can
    skip its setup. `run` trains the remaining steps.
    """

    def __init__(self, path: Path, total_steps: int, modules: dict[str, torch.nn.Module],
                 optimizer: torch.optim.Optimizer, *, checkpoint_every: int, split: bool = False):
        self.path = path
        self.total_steps = total_steps
        self.modules = modules
        self.optimizer = optimizer
        self.checkpoint_every = checkpoint_every
        self.split = split
        # What the checkpoint holds besides the weights: "step" (steps done) and the entries
        # `run`'s `finish` added when the stage ended.
        self.state = self._load()

    def _load(self) -> dict:
        if not self.split:
            return load_state(self.path, self.modules, self.optimizer)
        parts = load_parts(self.path)
        if not parts:
            return {}
        for name, module in self.modules.items():
            module.load_state_dict(parts.pop(name))
        self.optimizer.load_state_dict(join_optimizer_parts(parts))
        return parts["progress"]

    @property
    def step(self) -> int:
        """Steps done so far."""
        return self.state.get("step", 0)

    @property
    def done(self) -> bool:
        return self.step >= self.total_steps

    def run(self, step_fn: Callable[[int], float], *, task: str, on_progress: ProgressCallback | None = None,
            on_checkpoint: Callable[[], None] | None = None,
            finish: Callable[[], dict] | None = None) -> None:
        """Train the remaining steps: `step_fn(step)` trains on step `step` and returns its loss.

        After every `checkpoint_every`-th step and after the last one the checkpoint is saved and
        `on_checkpoint()` runs. Before the last save, `finish()` may return more entries for the
        checkpoint (values computed from the trained weights), kept in `state`.
        """
        if self.done:
            return
        if on_progress is not None:
            on_progress(Progress(task, self.step, self.total_steps))
        for step in range(self.step, self.total_steps):
            loss = step_fn(step)
            if on_progress is not None:
                on_progress(Progress(task, step + 1, self.total_steps, loss))
            if (step + 1) % self.checkpoint_every == 0 and step + 1 < self.total_steps:
                self._checkpoint(step + 1, on_checkpoint)
        self.state.update(finish() if finish is not None else {})
        self._checkpoint(self.total_steps, on_checkpoint)

    def _checkpoint(self, step: int, on_checkpoint: Callable[[], None] | None) -> None:
        self.state["step"] = step
        weights = {name: module.state_dict() for name, module in self.modules.items()}
        if self.split:
            save_parts(self.path, {**weights, **optimizer_parts(self.optimizer.state_dict()),
                                   "progress": dict(self.state)})
        else:
            save_state(self.path, {**weights, "optimizer": self.optimizer.state_dict(), **self.state})
        if on_checkpoint is not None:
            on_checkpoint()
