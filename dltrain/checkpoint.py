"""The checkpoint format: what a run saves, written in one place and read by one function.

A checkpoint is one dict of tensors and plain values, so it loads with
`torch.load(..., weights_only=True)` and can never run code. It holds two things:

- the `Recipe`: what rebuilds the trained model, its data encoding and its loss from nothing but
  this file (the layers as written, the input they take, the loss, the fitted encoders, the
  metrics), and for the record and for --resume the config as run and the data's rows per split;
- the trainer's state: weights, optimizer and scheduler, epoch and position, best value, RNG
  states, history (`Trainer.state_dict`).

`load_run` rebuilds a model ready to evaluate or predict from the checkpoint alone: it reads no
config file and no data, and does not depend on the current folder, so a run directory can be
moved, copied to another machine, or outlive its training data.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import pickle
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from dltrain.components import Component, ComponentError, parse_component
from dltrain.data.schema import DataSchema
from dltrain.errors import CheckpointError, first_line
from dltrain.files import write_atomic
from dltrain.model.builder import LayerErrors, build_model, parse_layers
from dltrain.task import BINARY, InputSpec, Task
from dltrain.train.device import resolve_device
from dltrain.train.losses import LossEntry, loss_registry

FORMAT = "dltrain-checkpoint"
FORMAT_VERSION = 2  # 1: dltrain 0.1.0, which kept the layers and the loss in the config only


@dataclass
class Recipe:
    """What rebuilds a trained model and its data encoding: in every checkpoint of a run."""

    layers: list  # model.layers as written in the config
    input: InputSpec  # what one sample gives the first layer
    loss: Component  # its canonical name and arguments
    schema: DataSchema  # the fitted encoders
    metrics: tuple[str, ...]
    config: dict  # the config as run (defaults filled, paths absolute): for the record and --resume
    data: dict  # data.json: the sources, their fingerprint, rows and row indices per split
    summary: list[dict]  # the layer table that `check` prints, as built

    def to_dict(self) -> dict:
        from dltrain import __version__

        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "dltrain_version": __version__,
            "architecture": {"layers": self.layers, "input": self.input.to_dict(), "summary": self.summary},
            "loss": {"name": self.loss.name, "args": list(self.loss.args), "kwargs": dict(self.loss.kwargs)},
            "encoders": self.schema.to_dict(),
            "metrics": list(self.metrics),
            "config": self.config,
            "data": self.data,
        }

    @classmethod
    def from_dict(cls, state: dict) -> Recipe:
        if state.get("format_version", 1) == 1:
            state = _upgrade_from_1(state)
        architecture, loss = state["architecture"], state["loss"]
        return cls(
            list(architecture["layers"]),
            InputSpec.from_dict(architecture["input"]),
            Component(loss["name"], tuple(loss["args"]), dict(loss["kwargs"]), ("loss",)),
            DataSchema.from_dict(state["encoders"]),
            tuple(state.get("metrics") or ()),
            state["config"],
            state["data"],
            list(architecture.get("summary") or []),
        )

    @property
    def batch_size(self) -> int:
        return int(self.config.get("data", {}).get("batch_size", 32))

    def loss_entry(self) -> LossEntry:
        return loss_registry().get(self.loss.name)

    def task(self) -> Task:
        entry = self.loss_entry()
        return Task.of(entry.form, entry.output, self.schema.target)

    def build_model(self) -> nn.Sequential:
        """The layers, built for the recorded input; the weights are the caller's to load."""
        model, _ = build_model(parse_layers(self.layers), self.input, self.task().output_size)
        return model


def _upgrade_from_1(state: dict) -> dict:
    """Format 1 (dltrain 0.1.0) kept the layers and the loss inside the config as run."""
    config = state["config"]
    loss = parse_component(config["loss"], ("loss",), "loss")
    return {
        **state,
        "architecture": {"layers": config["model"]["layers"], "input": state["input_spec"], "summary": state.get("layers") or []},
        "loss": {"name": loss.name, "args": list(loss.args), "kwargs": dict(loss.kwargs)},
    }


def save(path: Path, recipe: dict, state: dict) -> None:
    """The recipe (`Recipe.to_dict`) and the trainer's state, written atomically: never half a file."""
    write(path, serialize(recipe, state))


def serialize(recipe: dict, state: dict) -> bytes:
    """A checkpoint's bytes: the recipe and the trainer's state in one torch.save."""
    buffer = io.BytesIO()
    torch.save({**recipe, **state}, buffer)
    return buffer.getvalue()


def write(path: Path, data: bytes, sync: bool = True) -> None:
    """Checkpoint bytes to `path`, atomically (`sync`: fsynced before the rename, see files.write_atomic)."""
    write_atomic(path, data, sync)


def checkpoint_path(run_or_checkpoint: str | Path, which: str = "best.pt") -> Path:
    """A run directory's `which` checkpoint (best.pt: last.pt when no epoch was ever best), or the file itself."""
    path = Path(run_or_checkpoint)
    if path.is_dir():
        candidate = path / which
        if not candidate.is_file():
            if which == "best.pt" and (path / "last.pt").is_file():
                return path / "last.pt"  # a run stopped before its first validation
            if (path / "cv.json").is_file():
                raise CheckpointError(
                    f"{path}: a dltrain cv folder, not a run: its test metrics are in {path / 'cv.json'} (mean and spread "
                    f"over the folds); give one fold's run ({path / 'fold-1'}), or predict with the folder to use every fold's model"
                )
            raise CheckpointError(f"{path}: no {which} in this folder; is it a dltrain run directory?")
        return candidate
    if not path.exists():
        raise CheckpointError(f"{path}: no such run directory or checkpoint file")
    return path


@dataclass
class Checkpoint:
    path: Path
    recipe: Recipe
    state: dict  # everything the file holds, the trainer's state included


def load(run_or_checkpoint: str | Path, which: str = "best.pt") -> Checkpoint:
    """Read a checkpoint with `weights_only=True`: anything that is not a dltrain checkpoint is refused."""
    path = checkpoint_path(run_or_checkpoint, which)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if "global" not in str(error).lower():  # bytes that are no pickle torch.save writes (a text file, a damaged one)
            raise CheckpointError(
                f"{path}: not a readable checkpoint: it is damaged, or not a file that torch.save wrote. "
                "Give a run directory or its best.pt / last.pt"
            ) from None
        raise CheckpointError(
            f"{path}: refused to load: it holds objects other than tensors and plain values, so it is not a "
            f"dltrain checkpoint and loading it could run code ({first_line(error, 200)})"
        ) from None
    except Exception:  # torch.load fails in many ways on a file that is not one of its own (IndexError on a CSV)
        raise CheckpointError(
            f"{path}: not a readable checkpoint: it is truncated, or not a file that torch.save wrote. "
            "Give a run directory or its best.pt / last.pt"
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a dltrain checkpoint (it has no '{FORMAT}' marker)")
    version = state.get("format_version", 0)
    if not isinstance(version, int) or isinstance(version, bool):
        raise CheckpointError(f"{path}: not a dltrain checkpoint (its format_version is {version!r}, not a number)")
    if version > FORMAT_VERSION:
        from dltrain import __version__

        raise CheckpointError(
            f"{path}: written by a newer dltrain ({state.get('dltrain_version', '?')}, checkpoint format {version}; "
            f"this dltrain {__version__} reads format {FORMAT_VERSION} and older): upgrade dltrain to load it"
        )
    needed = ("model", "config", "encoders") if version <= 1 else ("model", "architecture", "loss", "encoders", "config", "data")
    missing = [key for key in needed if key not in state]
    if missing:
        raise CheckpointError(f"{path}: a damaged dltrain checkpoint: it has no {', '.join(missing)}")
    try:
        recipe = Recipe.from_dict(state)
    except (KeyError, TypeError, ValueError, ComponentError) as error:
        raise CheckpointError(
            f"{path}: a damaged dltrain checkpoint (format {version}, dltrain {state.get('dltrain_version', '?')}): "
            f"{first_line(error)}"
        ) from None
    return Checkpoint(path, recipe, state)


@dataclass
class LoadedRun:
    """A trained model ready to evaluate or predict, rebuilt from its checkpoint alone."""

    path: Path  # the checkpoint file
    recipe: Recipe
    state: dict
    model: nn.Module  # in eval mode, on `device`
    loss_fn: nn.Module
    task: Task
    device: torch.device

    @property
    def run_dir(self) -> Path:
        return self.path.parent

    @property
    def schema(self) -> DataSchema:
        return self.recipe.schema

    @functools.cached_property
    def transform(self):
        """What turns stored inputs into the model's input for inference (None: as stored); built
        once, since a server applies it to every batch."""
        return self.schema.batch_transform(train=False)


def load_run(run_or_checkpoint: str | Path, device: str = "auto") -> LoadedRun:
    """The model of a run (its best.pt) or of a checkpoint file, with its weights, loss and task."""
    checkpoint = load(run_or_checkpoint)
    recipe = checkpoint.recipe
    try:
        model = recipe.build_model()
        model.load_state_dict(checkpoint.state["model"])
        loss_fn = recipe.loss_entry().build(recipe.loss)
    except (LayerErrors, ComponentError, KeyError, RuntimeError) as error:
        raise CheckpointError(f"{checkpoint.path}: the checkpoint does not rebuild its model: {first_line(error)}") from None
    chosen = resolve_device(device)
    model.to(chosen).eval()
    return LoadedRun(checkpoint.path, recipe, checkpoint.state, model, loss_fn.to(chosen), _task(recipe, checkpoint), chosen)


def _task(recipe: Recipe, checkpoint: Checkpoint) -> Task:
    """The recipe's task with the decision threshold these weights were kept with (train.threshold;
    0.5 in checkpoints from before it)."""
    task = recipe.task()
    threshold = checkpoint.state.get("threshold")
    if task.target_type != BINARY or not isinstance(threshold, (int, float)) or not 0 < threshold < 1:
        return task
    return dataclasses.replace(task, threshold=float(threshold))
