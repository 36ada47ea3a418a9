"""`dltrain fit` and `dltrain check`: config -> plan -> parts -> trainer -> run directory.

Read `fit` from the top: a new run is `_fit_new`, a stopped one `_resume`; both end in `_train`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from dltrain import checkpoint, console
from dltrain.build import Parts, build, rehearse
from dltrain.checkpoint import Recipe
from dltrain.config import LoadedConfig
from dltrain.console import note, warn
from dltrain.data.prepare import Prepared, missing_files, rebuild
from dltrain.errors import CheckpointError, ConfigError, DataError, DltrainError, Problem, UsageError, first_line
from dltrain.memory import settled
from dltrain.plan import Plan, make_plan
from dltrain.rundir import RunDir, RunLock, lock_run, make_run_dir, remove_if_unused
from dltrain.tracking import tracker_for
from dltrain.train import progress as progress_module
from dltrain.train.device import resolve_device
from dltrain.train.diagnose import SMALL_SPLIT, diagnose, patience_for
from dltrain.train.distributed import SINGLE, Group, join, launched, leave
from dltrain.train.losses import baseline_loss
from dltrain.train.trainer import Interrupted, Job, Settings, StopSignal, Trainer, catch_signals


@dataclass
class FitResult:
    run_dir: Path
    history: list[dict]
    best_epoch: int | None
    best: dict  # the best epoch's row of metrics.csv
    monitor: str
    stopped_early: bool
    hint: str | None  # overfitting or underfitting, in plain words
    inputs: str = "rows"  # what predict takes: "rows" of a table, or files ("images", "audios", "videos")
    main: bool = True  # False on the ranks of torchrun other than 0, which print nothing
    pruned: bool = False  # stopped by `watch` before its last epoch
    threshold: float | None = None  # train.threshold: auto, the decision threshold best.pt keeps


def check(config: str | Path | dict, overrides: list[str] | tuple[str, ...] = ()) -> Parts:
    """Everything `fit` does before its first batch: the parts it would train (what `dltrain check`
    prints); raises the errors `fit` would raise."""
    plan = make_plan(config, overrides)
    parts = build(plan)
    rehearse(plan, parts)
    return parts


def fit(
    config: str | Path | dict | LoadedConfig | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    *,
    out: str | Path | None = None,
    device: str | None = None,
    init_from: str | Path | None = None,
    resume: str | Path | None = None,
    allow_changed_data: bool = False,
    progress: bool = True,
    watch: Callable[[dict], bool] | None = None,
    data: Prepared | None = None,
    curves: bool = True,
) -> FitResult:
    """Train a model from a config (a YAML path, a dict or a config read already); or continue the run `resume`.

    `watch` is told each epoch's row of metrics.csv once its checkpoint is written, and stops the
    run by returning True (a tuner's pruner). `data`: the config's data, encoded already (a tuner's
    trials that share it). `curves`: leave curves.png (drawn after the return, by a process of its own).
    """
    overrides = list(overrides)
    if (config is None) == (resume is None):
        raise UsageError("give a config to train, or --resume RUN to continue a run (not both)")
    if device is not None:
        overrides.append(f"train.device={device}")
    group = _join_group(overrides if resume is None else [])
    failed = True
    try:
        if resume is None:  # optimizer.lr: auto: a range test chooses the rate, which config.yaml records
            overrides, tested = _auto_lr(config, overrides, group)
            data = data if data is not None or tested is None else tested.data
        if resume is not None:
            result = _resume(Path(resume), overrides, allow_changed_data, progress, group)
        else:
            result = _fit_new(config, overrides, out, init_from, progress, group, watch, data, curves)
        failed = False
        return result
    finally:
        leave(failed)


def _fit_new(config, overrides: list[str], out, init_from, progress: bool, group: Group, watch=None, data: Prepared | None = None, curves: bool = True) -> FitResult:
    with settled():  # what is built lives as long as the run: out of the garbage collector's way
        plan = make_plan(config, overrides)  # every check that needs no data, all problems together
        _setup_torch(plan)
        parts = build(plan, data, world=group.world)  # data encoded, model, loss, optimizer: each once
        rehearse(plan, parts)  # one training step, undone
    device = _device(plan, group)
    start = checkpoint.load(init_from) if init_from is not None else None  # a bad --init-from before any folder
    run_path, lock = _choose_run_dir(plan, out, group)
    note(f"run directory: {run_path}")
    with lock:  # held by rank 0 until the fit ends: a --resume of this run meanwhile is refused
        try:
            # from here on a signal is answered with a last.pt that --resume can start from
            with catch_signals() as stop:
                sink = RunDir(run_path, _recipe(plan, parts).to_dict(), tensorboard="tensorboard" in plan.train.loggers, tracker=tracker_for(plan, run_path) if group.main else None)
                if group.main:
                    sink.record()
                trainer = _trainer(plan, parts, sink, device, progress, stop, group, watch)
                if start is not None:
                    _load_matching(trainer.model, start, init_from)
                if group.main:
                    sink.start([])
                return _train(trainer, plan, parts, run_path, curves)
        except DltrainError:
            if group.main and remove_if_unused(run_path, keep_folder=out is not None):  # a bad input, or training that failed before its first checkpoint
                note(f"{run_path} {'emptied' if out is not None else 'removed'}: the fit stopped before its first epoch")
            raise


def _resume(run_path: Path, overrides: list[str], allow_changed_data: bool, progress: bool, group: Group) -> FitResult:
    """Continue a run where its last.pt stopped, in its own directory, on the data it trained on."""
    if not run_path.is_dir():
        raise UsageError(f"--resume {run_path}: not a run directory")
    if (run_path / "tune.json").is_file():
        raise UsageError(f"--resume {run_path}: a tune folder, not one run. A study goes on when its dltrain tune command is run again; --resume continues one of its trials ({run_path / 'trial-000'})")
    with _locked(run_path, group):  # one writer per run: a second --resume (or the fit itself) still running is exit 2
        return _resume_locked(run_path, overrides, allow_changed_data, progress, group)


_RESUME_KEYS = ("model", "optimizer", "epoch", "batch", "best", "history", "rng")  # what a checkpoint needs to be gone on from


def _resume_locked(run_path: Path, overrides: list[str], allow_changed_data: bool, progress: bool, group: Group) -> FitResult:
    last = _resumable(run_path)
    missing = [key for key in _RESUME_KEYS if key not in last.state]
    if missing:
        raise CheckpointError(f"{last.path}: a damaged dltrain checkpoint: it has no {', '.join(missing)}, which --resume needs to go on from it")
    bad = [o for o in overrides if not o.split("=", 1)[0].strip().startswith("train.")]
    if bad:
        raise UsageError(f"with --resume only train.* keys may be changed (train.epochs=20 extends a run); found {', '.join(bad)}")
    if group.main:
        _restore_best(run_path, last)
    recipe, state = last.recipe, last.state
    _require_data(run_path, recipe.data)
    plan = make_plan(recipe.config, overrides, origin=str(run_path / "config.yaml"))
    if plan.train.epochs < state["epoch"]:
        raise ConfigError([Problem("command line", "train.epochs", f"the run already has {state['epoch']} epochs; give more to extend it")])
    _setup_torch(plan)
    with settled():
        data = _training_data(run_path, recipe, plan, allow_changed_data)
        parts = build(plan, data, world=group.world, loss=recipe.loss)  # the loss as recorded: balanced weights and all
    device = _device(plan, group)
    with catch_signals() as stop:
        sink = RunDir(run_path, _recipe(plan, parts).to_dict(), tensorboard="tensorboard" in plan.train.loggers, tracker=tracker_for(plan, run_path) if group.main else None)
        if group.main:
            sink.record()
        trainer = _trainer(plan, parts, sink, device, progress, stop, group)
        try:
            trainer.load_state_dict(state)
        except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as error:  # parts of it of the wrong kind
            raise CheckpointError(f"{last.path}: a damaged dltrain checkpoint: its training state cannot be restored ({first_line(error)})") from None
        if group.main:
            sink.start(trainer.state.history)
        note(f"resuming {run_path} at epoch {state['epoch'] + 1}" + (f", batch {state['batch'] + 1}" if state["batch"] else ""))
        if trainer.state.epoch >= plan.train.epochs:
            note(f"the run has finished its {plan.train.epochs} epochs: give train.epochs=N to extend it")
        return _train(trainer, plan, parts, run_path)


def _locked(run_path: Path, group: Group) -> RunLock:
    """The run's lock, taken by rank 0 alone (the others wait for its answer: no rank is left behind)."""
    taken = None
    if group.main:
        try:
            taken = lock_run(run_path)
        except DltrainError as error:
            taken = error
    answer = group.broadcast(None if isinstance(taken, RunLock) else taken)
    if isinstance(answer, DltrainError):
        raise answer
    return taken if isinstance(taken, RunLock) else RunLock(run_path)  # other ranks: a lock that holds nothing


def _position(path: Path) -> tuple[int, int] | None:
    """(epochs done, batches into the next) of a checkpoint, read without loading its tensors; None when unreadable."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        return int(state["epoch"]), int(state.get("batch") or 0)
    except Exception:  # missing, damaged, foreign: checkpoint.load says which
        return None


def _resumable(run_path: Path) -> checkpoint.Checkpoint:
    """last.pt; or best.pt where last.pt is missing or behind it (a run whose last.pt could not be
    written, by a dltrain that wrote best.pt first). A damaged last.pt is refused, never passed over."""
    last, best = run_path / "last.pt", run_path / "best.pt"
    best_at = _position(best) if best.is_file() else None
    if best_at is not None and not last.is_file():
        warn(f"{run_path} has no last.pt: resuming from best.pt (epoch {best_at[0]})")
        return checkpoint.load(run_path, "best.pt")
    last_at = _position(last) if last.is_file() else None
    if best_at is not None and last_at is not None and best_at > last_at:
        note(f"best.pt (epoch {best_at[0]}) is further along than last.pt (epoch {last_at[0]}): resuming from best.pt")
        return checkpoint.load(run_path, "best.pt")
    return checkpoint.load(run_path, "last.pt")


def _restore_best(run_path: Path, last: checkpoint.Checkpoint) -> None:
    """A disk that filled between last.pt and best.pt left best.pt behind: last.pt holds the best
    epoch's very bytes (both are written from one state), so best.pt is made again from it."""
    state = last.state
    best = state.get("best") or {}
    if last.path.name != "last.pt" or state.get("batch") or best.get("epoch") is None or best["epoch"] != state["epoch"]:
        return
    at = _position(run_path / "best.pt")
    if at is not None and at[0] == state["epoch"]:
        return
    try:
        checkpoint.write(run_path / "best.pt", last.path.read_bytes())
    except OSError as error:
        warn(f"best.pt of epoch {state['epoch']} could not be written again ({error.strerror or error}): it is written when an epoch is best next")
        return
    note(f"best.pt written again from last.pt (epoch {state['epoch']}, the best so far)")


def _patience(patience: int, val) -> int:
    """Early stopping's patience for a validation split of this size: a small split's loss moves
    by its noise alone, and stopping on it would end training undertrained (said once, by rank 0)."""
    rows = len(val) if val is not None else None
    scaled = patience_for(patience, rows)
    if scaled != patience:
        note(
            f"the validation split has {rows} rows, whose loss moves by noise alone from epoch to epoch: early "
            f"stopping waits {scaled} epochs without improvement (train.early_stopping.patience {patience}, scaled "
            f"by sqrt({SMALL_SPLIT} / {rows}))"
        )
    return scaled


def _training_data(run_path: Path, recipe: Recipe, plan: Plan, allow_changed_data: bool) -> Prepared:
    """The run's own splits, encoded with its own encoders: the data must still be there, and the same."""

    def changed(what: str) -> None:
        if not allow_changed_data:
            raise DataError(
                f"cannot resume {run_path}: its data changed since it was trained ({what}). --resume continues "
                "on the data the run began with: put that back, start a new run from these weights (dltrain fit "
                f"CONFIG --init-from {run_path}), or give --allow-changed-data to continue on the changed data, "
                "with the rows each split had"
            )
        warn(f"the data of {run_path} changed since it was trained ({what}): continuing on it, with the rows each split had (--allow-changed-data)")

    info = recipe.data
    splits = rebuild(info, recipe.schema, plan.loss_entry.form, ("train", "val"), plan.data.in_memory, changed)
    splits = {name: split for name, split in splits.items() if name in info["indices"] and len(info["indices"][name])}
    return Prepared(splits, recipe.schema, info)


def _require_data(run_path: Path, info: dict) -> None:
    """--resume is the one place that needs the training data: say plainly when it is gone."""
    gone = missing_files(info)
    if gone:
        raise DataError(
            f"cannot resume {run_path}: its training data is gone ({', '.join(gone)} not found). --resume continues "
            f"on the data the run began with: put it back, or start a new run from these weights: "
            f"dltrain fit CONFIG --init-from {run_path}"
        )


def _auto_lr(config, overrides: list[str], group: Group):
    """`optimizer.lr: auto` resolved by the range test: the overrides with the rate it chose, and
    the test (whose encoded data the run reuses). Under torchrun rank 0 runs it and tells the others."""
    from dltrain.tools.lrfind import auto_lr_path, resolve_auto_lr

    if auto_lr_path(config, overrides) is None:
        return overrides, None
    overrides, tested = resolve_auto_lr(config, overrides) if group.main else (overrides, None)
    chosen = group.broadcast(overrides[-1] if group.main else None)
    if not group.main:
        overrides = [*overrides, chosen]
    return overrides, tested


def _join_group(overrides: list[str]) -> Group:
    """One process, or this rank of torchrun's; only rank 0 speaks."""
    if not launched():
        return SINGLE
    device = next((o.split("=", 1)[1] for o in overrides if o.startswith("train.device=")), "auto")
    group, _ = join(device)
    if not group.main:
        console.silence()
    return group


def _setup_torch(plan: Plan) -> None:
    train = plan.train
    if train.threads is not None:
        torch.set_num_threads(train.threads)
    if train.deterministic:
        torch.use_deterministic_algorithms(True)
    torch.manual_seed(plan.seed)


def _device(plan: Plan, group: Group) -> torch.device:
    if group.enabled:  # torchrun: this rank's own GPU, or the CPU
        return torch.device("cuda", group.local_rank) if torch.distributed.get_backend() == "nccl" else torch.device("cpu")
    with plan.located():
        return resolve_device(plan.train.device)


def _choose_run_dir(plan: Plan, out, group: Group) -> tuple[Path, RunLock]:
    """Rank 0 makes the run directory, locks it, and tells the others."""
    chosen, lock = None, None
    if group.main:
        try:
            chosen = make_run_dir(out, plan.train.out_dir, plan.name)
            lock = lock_run(chosen)  # a new folder, but `--out DIR` may be given to two fits at once
        except DltrainError as error:
            chosen = error
    chosen = group.broadcast(chosen)
    if isinstance(chosen, DltrainError):
        raise chosen
    return chosen, lock or RunLock(chosen)


def _recipe(plan: Plan, parts: Parts) -> Recipe:
    """What every checkpoint of this run holds besides the trainer's state."""
    config = plan.cfg.as_run()
    return Recipe(
        layers=config["model"]["layers"],
        input=parts.data.input_spec,
        loss=parts.loss,
        schema=parts.data.schema,
        metrics=parts.metrics,
        config=config,
        data=parts.data.info,
        summary=[layer.to_dict() for layer in parts.layers],
    )


def _trainer(plan: Plan, parts: Parts, sink: RunDir, device: torch.device, progress: bool, stop: StopSignal, group: Group, watch=None) -> Trainer:
    train = plan.train
    splits = {name: split.to(device) for name, split in parts.data.splits.items()}
    images_on_gpu = device.type == "cuda" and len(parts.data.input_spec.shape) == 3  # channels-last: faster convolutions
    model = parts.model.to(device, memory_format=torch.channels_last) if images_on_gpu else parts.model.to(device)
    forward = _compiled(plan, model, parts, device) if train.compile else model
    if group.enabled:
        from torch.nn.parallel import DistributedDataParallel

        forward = DistributedDataParallel(forward, device_ids=[device.index] if device.type == "cuda" else None)
    schema = parts.data.schema
    job = Job(
        model=model,
        loss_fn=parts.loss_fn.to(device),
        optimizer=parts.optimizer,
        scheduler=parts.scheduler,
        task=parts.task,
        train=splits["train"],
        val=splits.get("val"),
        sample_weights=parts.sample_weights,
        train_transform=_layout(schema.batch_transform(train=True), images_on_gpu),
        val_transform=_layout(schema.batch_transform(train=False), images_on_gpu),
        forward=forward,
    )
    settings = Settings(
        epochs=train.epochs,
        batch_size=plan.batch_size,
        shuffle=plan.cfg.config.data.shuffle,
        grad_clip=train.grad_clip,
        accumulate=train.accumulate,
        monitor=train.monitor,
        patience=_patience(train.early_stopping.patience, splits.get("val")) if train.early_stopping else None,
        min_delta=train.early_stopping.min_delta if train.early_stopping else 0.0,
        metrics=parts.metrics,
        scheduler_interval=plan.scheduler_interval,
        precision=train.precision,
        seed=plan.seed,
        choose_threshold=train.threshold == "auto",
    )
    bar = progress_module.choose(parts.metrics, train.monitor, progress and group.main)
    return Trainer(job, settings, sink, device=device, progress=bar, stop=stop, group=group, watch=watch)


def _compiled(plan: Plan, model: torch.nn.Module, parts: Parts, device: torch.device) -> torch.nn.Module:
    """torch.compile, tried once on a zero batch so that a machine where it cannot work says so now."""
    compiled = torch.compile(model)
    try:
        model.eval()
        with torch.no_grad():
            compiled(parts.data.input_spec.zeros(2, device))
    except Exception as error:  # compiler and backend failures come in many types
        raise plan.error(("train", "compile"), f"torch.compile does not work here ({first_line(error)}); leave train.compile out to train without it") from None
    finally:
        model.train()
    return compiled


def _layout(transform, channels_last: bool):
    """Batches in channels-last layout for a model in that layout (images on a GPU)."""
    if not channels_last:
        return transform

    def to_channels_last(x, generator=None):
        x = transform(x, generator) if transform is not None else x.float()
        return x.contiguous(memory_format=torch.channels_last)

    return to_channels_last


def _load_matching(model: torch.nn.Module, source: checkpoint.Checkpoint, given) -> None:
    """--init-from: every tensor whose name and shape match; the others are listed."""
    own = model.state_dict()
    loaded, skipped = {}, []
    for name, tensor in source.state["model"].items():
        if name in own and own[name].shape == tensor.shape:
            loaded[name] = tensor
        else:
            shape = f"{tuple(tensor.shape)} vs {tuple(own[name].shape)}" if name in own else "not in this model"
            skipped.append(f"{name} ({shape})")
    if not loaded:
        raise CheckpointError(f"--init-from {given}: no tensor of that model fits this one (names and shapes differ)")
    model.load_state_dict(loaded, strict=False)
    note(f"initialized {len(loaded)} of {len(own)} tensors from {given}")
    if skipped:
        warn(f"--init-from skipped {len(skipped)} tensor(s) that do not fit: {', '.join(skipped)}")


def _train(trainer: Trainer, plan: Plan, parts: Parts, run_path: Path, curves: bool = True) -> FitResult:
    status = "FAILED"
    try:
        result = trainer.fit()
        status = "FINISHED"
    except Interrupted as stop:
        stop.run_dir = run_path
        status = "KILLED"  # last.pt is written: --resume goes on with the same MLflow run
        raise
    finally:
        if curves and trainer.group.main and (run_path / "metrics.csv").exists():
            from dltrain.tools.plot import leave_curves

            leave_curves(run_path, trainer.higher)  # drawn by a process of its own: the prompt does not wait
        if trainer.group.main:
            trainer.sink.finish(status)  # train.logger: mlflow: the run's files as artifacts
    monitor = trainer.settings.monitor
    best = next((r for r in result.history if r["epoch"] == result.best_epoch), result.history[-1] if result.history else {})
    train = parts.data.splits["train"]
    baseline = baseline_loss(plan.loss_entry, parts.loss_fn.cpu(), train.y.cpu(), parts.task.output_size)
    files = parts.data.schema.files
    return FitResult(
        run_path,
        result.history,
        result.best_epoch,
        best,
        monitor,
        result.stopped_early,
        diagnose(
            result.history,
            baseline,
            len(parts.data.splits["val"]) if "val" in parts.data.splits else None,
            result.stopped_early,
            plan.train.early_stopping is not None,
        ),
        f"{files.type}s" if files is not None else "rows",
        trainer.group.main,
        result.pruned,
        result.threshold,
    )
