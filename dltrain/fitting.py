"""`dltrain fit`: config -> build -> train -> run directory. Also --resume and --init-from."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

import dltrain
from dltrain import console
from dltrain.build import Built, build, build_loss, located, optimizer_and_scheduler, rehearse
from dltrain.config import LoadedConfig, load_config
from dltrain.config.yaml import dump_yaml
from dltrain.console import note, warn
from dltrain.data.dataset import DataSchema, Prepared, make_task, rebuild
from dltrain.errors import CheckpointError, ConfigError, DltrainError, Problem, UsageError
from dltrain.files import write_json, write_text
from dltrain.run import FORMAT, FORMAT_VERSION, RunDir, load_checkpoint, new_run_dir
from dltrain.train import progress as progress_module
from dltrain.train.diagnose import diagnose
from dltrain.train.distributed import SINGLE, Group, join, launched, leave
from dltrain.train.losses import baseline_loss
from dltrain.train.metrics import higher_is_better
from dltrain.train.trainer import Interrupted, Settings, Split, StopSignal, Trainer, catch_signals, count_batches


@dataclass
class FitResult:
    run_dir: Path
    history: list[dict]
    best_epoch: int | None
    best: dict  # the best epoch's row of metrics.csv
    monitor: str
    stopped_early: bool
    hint: str | None
    inputs: str = "rows"  # what predict takes: "rows" of a table, or "images"
    main: bool = True  # False on the ranks of torchrun other than 0, which print nothing


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DltrainError(f"train.device is {name}, but this machine has no CUDA device: use auto or cpu", key=("train", "device"))
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise DltrainError(f"train.device is {name}, but this machine has {torch.cuda.device_count()} CUDA device(s)", key=("train", "device"))
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise DltrainError("train.device is mps, but MPS is not available here: use auto or cpu", key=("train", "device"))
    return device


def fit(
    config: str | Path | dict | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    *,
    out: str | Path | None = None,
    device: str | None = None,
    init_from: str | Path | None = None,
    resume: str | Path | None = None,
    progress: bool = True,
) -> FitResult:
    """Train a model from a config (a YAML path or a dict); or continue the run `resume`."""
    overrides = list(overrides)
    if (config is None) == (resume is None):
        raise UsageError("give a config to train, or --resume RUN to continue a run (not both)")
    if device is not None:
        overrides.append(f"train.device={device}")
    group = join_group(overrides if resume is None else [])
    try:
        if resume is not None:
            return _resume(Path(resume), overrides, progress, group)
        return _fit(config, overrides, out, init_from, progress, group)
    finally:
        leave()


def join_group(overrides: list[str]) -> Group:
    """One process, or this rank of torchrun's; only rank 0 speaks."""
    if not launched():
        return SINGLE
    device = next((o.split("=", 1)[1] for o in overrides if o.startswith("train.device=")), "auto")
    group, _ = join(device)
    if not group.main:
        console.silence()
    return group


def _fit(config, overrides: list[str], out, init_from, progress: bool, group: Group) -> FitResult:
    cfg = load_config(config, overrides)
    _setup_torch(cfg)
    built = build(cfg)
    rehearse(built)
    resolve_device_located(cfg, group)
    if init_from is not None:
        load_checkpoint(init_from)  # a bad --init-from is said before a run directory is made
    # rank 0 chooses the run directory and tells the others
    chosen = None
    if group.main:
        try:
            chosen = _make_run_dir(cfg, out)
        except DltrainError as error:
            chosen = error
    run_path = group.broadcast(chosen)
    if isinstance(run_path, DltrainError):
        raise run_path
    note(f"run directory: {run_path}")
    # from here on a signal is answered with a last.pt that --resume can start from
    try:
        return _fit_in(cfg, built, run_path, init_from, progress, group)
    except DltrainError:
        if group.main:  # a bad input, or training that failed before its first checkpoint
            _remove_if_unused(run_path, keep_folder=out is not None)
        raise


def _remove_if_unused(run_path: Path, keep_folder: bool) -> None:
    """A run that failed before its first checkpoint leaves nothing behind (the next run keeps its name)."""
    if run_path.is_dir() and {p.name for p in run_path.iterdir()} <= {"config.yaml", "data.json"}:
        for name in ("config.yaml", "data.json"):
            (run_path / name).unlink(missing_ok=True)
        if not keep_folder:
            run_path.rmdir()


def _fit_in(cfg: LoadedConfig, built: Built, run_path: Path, init_from, progress: bool, group: Group) -> FitResult:
    with catch_signals() as stop:
        static = _static(cfg, built)
        if group.main:
            write_text(run_path / "config.yaml", dump_yaml(static["config"]))
            write_json(run_path / "data.json", built.data.info)
        trainer, sink = _trainer(cfg, built, run_path, static, progress, stop, group)
        if init_from is not None:
            _init_from(trainer, init_from)
        if group.main:
            sink.start([])
        return _train(trainer, built, run_path)


def _setup_torch(cfg: LoadedConfig) -> None:
    train = cfg.config.train
    if train.threads is not None:
        torch.set_num_threads(train.threads)
    if train.deterministic:
        torch.use_deterministic_algorithms(True)
    torch.manual_seed(cfg.config.seed)


def _make_run_dir(cfg: LoadedConfig, out: str | Path | None) -> Path:
    if out is None:
        return new_run_dir(cfg.config.train.out_dir, cfg.name)
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise UsageError(f"--out {path}: a file, not a folder; give a new folder for the run")
    if path.exists() and any(path.iterdir()):
        raise UsageError(f"--out {path}: the folder exists and is not empty; dltrain never writes over a run")
    path.mkdir(parents=True, exist_ok=True)
    return path


def _static(cfg: LoadedConfig, built: Built) -> dict:
    """What every checkpoint holds besides the trainer's state: enough to rebuild model and encoders."""
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "dltrain_version": dltrain.__version__,
        "config": cfg.as_run(),
        "input_spec": built.data.input_spec.to_dict(),
        "layers": [
            {"name": i.name, "arguments": i.arguments, "output_shape": list(i.output_shape), "parameters": i.parameters, "depth": i.depth}
            for i in built.layers
        ],
        "encoders": built.data.schema.to_dict(),
        "data": built.data.info,
        "metrics": list(built.metrics),
    }


def _trainer(
    cfg: LoadedConfig, built: Built, run_path: Path, static: dict, progress: bool, stop: StopSignal, group: Group
) -> tuple[Trainer, RunDir]:
    train = cfg.config.train
    with_device = resolve_device_located(cfg, group)
    spec = built.data.input_spec
    channels_last = with_device.type == "cuda" and len(spec.shape) == 3  # images on a GPU: faster convolutions
    model = built.model.to(with_device, memory_format=torch.channels_last) if channels_last else built.model.to(with_device)
    forward = _compiled(cfg, model, spec, with_device) if train.compile else model
    if group.enabled:
        from torch.nn.parallel import DistributedDataParallel

        forward = DistributedDataParallel(forward, device_ids=[with_device.index] if with_device.type == "cuda" else None)
    schema = built.data.schema
    splits = {
        name: Split(
            s.x.to(with_device) if s.x is not None else None,
            s.y.to(with_device),
            _layout(schema.batch_transform(train=name == "train"), channels_last),
            s.stream,
        )
        for name, s in built.data.splits.items()
    }
    steps = count_batches(len(splits["train"]), cfg.config.data.batch_size, group.world)
    higher = higher_is_better(train.monitor)
    optimizer, scheduler = optimizer_and_scheduler(cfg, model, steps, higher)
    settings = Settings(
        epochs=train.epochs,
        batch_size=cfg.config.data.batch_size,
        shuffle=cfg.config.data.shuffle,
        grad_clip=train.grad_clip,
        accumulate=train.accumulate,
        monitor=train.monitor,
        patience=train.early_stopping.patience if train.early_stopping else None,
        min_delta=train.early_stopping.min_delta if train.early_stopping else 0.0,
        metrics=built.metrics,
        scheduler_interval=cfg.scheduler_interval,
        precision=train.precision,
        seed=cfg.config.seed,
    )
    if "val" not in splits and train.monitor.startswith("val_"):
        raise cfg.error(("train", "monitor"), f"{train.monitor} needs a validation split, and this data has no val rows: monitor train_loss, or give data.split a val part")
    keys = ["train_loss", *(f"train_{m}" for m in built.metrics[:1])]
    if "val" in splits:
        keys += ["val_loss", *(f"val_{m}" for m in built.metrics)]
    sink = RunDir(run_path, static, tensorboard=train.logger == "tensorboard")
    trainer = Trainer(
        model,
        built.loss_fn.to(with_device),
        optimizer,
        scheduler,
        built.data.task,
        settings,
        splits["train"],
        splits.get("val"),
        with_device,
        sink,
        progress_module.choose(keys, progress and group.main),
        forward,
        stop,
        group,
    )
    return trainer, sink


def _compiled(cfg: LoadedConfig, model: torch.nn.Module, spec, device: torch.device) -> torch.nn.Module:
    """torch.compile, tried once on a zero batch so that a machine where it cannot work says so now."""
    compiled = torch.compile(model)
    sample = torch.zeros((2, *spec.shape), dtype=torch.long if spec.dtype == "long" else torch.float32, device=device)
    try:
        model.eval()
        with torch.no_grad():
            compiled(sample)
    except Exception as error:  # compiler and backend failures come in many types
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:300]
        raise cfg.error(("train", "compile"), f"torch.compile does not work here ({reason}); leave train.compile out to train without it") from None
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


def resolve_device_located(cfg: LoadedConfig, group: Group = SINGLE) -> torch.device:
    if group.enabled:  # torchrun: this rank's own GPU, or the CPU
        return torch.device("cuda", group.local_rank) if torch.distributed.get_backend() == "nccl" else torch.device("cpu")
    try:
        return resolve_device(cfg.config.train.device)
    except DltrainError as error:
        raise cfg.error(error.key, str(error)) from None


def _train(trainer: Trainer, built: Built, run_path: Path) -> FitResult:
    try:
        result = trainer.fit()
    except Interrupted as stop:
        stop.run_dir = run_path
        raise
    finally:
        if trainer.group.main and (run_path / "metrics.csv").exists():
            from dltrain.plot import leave_curves

            leave_curves(run_path)
    monitor = trainer.settings.monitor
    best = next((r for r in result.history if r["epoch"] == result.best_epoch), result.history[-1] if result.history else {})
    train_y = built.data.splits["train"].y
    baseline = baseline_loss(built.loss_entry, built.loss_fn.cpu(), train_y.cpu(), built.data.task.output_size)
    media = built.data.schema.media
    return FitResult(
        run_path,
        result.history,
        result.best_epoch,
        best,
        monitor,
        result.stopped_early,
        diagnose(result.history, baseline),
        f"{media.type}s" if media is not None and hasattr(media, "is_item") else "rows",
        trainer.group.main,
    )


def _init_from(trainer: Trainer, source: str | Path) -> None:
    state = load_checkpoint(source)
    own = trainer.model.state_dict()
    loaded, skipped = {}, []
    for name, tensor in state["model"].items():
        if name in own and own[name].shape == tensor.shape:
            loaded[name] = tensor
        else:
            shape = f"{tuple(tensor.shape)} vs {tuple(own[name].shape)}" if name in own else "not in this model"
            skipped.append(f"{name} ({shape})")
    if not loaded:
        raise CheckpointError(f"--init-from {source}: no tensor of that model fits this one (names and shapes differ)")
    trainer.model.load_state_dict(loaded, strict=False)
    note(f"initialized {len(loaded)} of {len(own)} tensors from {source}")
    if skipped:
        warn(f"--init-from skipped {len(skipped)} tensor(s) that do not fit: {', '.join(skipped)}")


def _resume(run_path: Path, overrides: list[str], progress: bool, group: Group) -> FitResult:
    if not run_path.is_dir():
        raise UsageError(f"--resume {run_path}: not a run directory")
    state = load_checkpoint(run_path, "last.pt")
    bad = [o for o in overrides if not o.split("=", 1)[0].strip().startswith("train.")]
    if bad:
        raise UsageError(f"with --resume only train.* keys may be changed (train.epochs=20 extends a run); found {', '.join(bad)}")
    with catch_signals() as stop:
        return _continue(run_path, state, overrides, progress, stop, group)


def _continue(run_path: Path, state: dict, overrides: list[str], progress: bool, stop: StopSignal, group: Group) -> FitResult:
    cfg = load_config(state["config"], overrides, origin=str(run_path / "config.yaml"))
    if cfg.config.train.epochs < state["epoch"]:
        raise ConfigError([Problem("command line", "train.epochs", f"the run already has {state['epoch']} epochs; give more to extend it")])
    _setup_torch(cfg)
    with located(cfg):
        loss_entry, _ = build_loss(cfg.loss)
    schema = DataSchema.from_dict(state["encoders"])
    info = state["data"]
    if cfg.config.data.in_memory:
        splits = rebuild(info, schema, loss_entry, tuple(info["indices"]))
    else:
        from dltrain.data.stream import rebuild_stream

        splits = rebuild_stream(info, schema, loss_entry, tuple(info["indices"]))
    data = Prepared(splits, schema, make_task(loss_entry, schema.target), info)
    built = build(cfg, data)
    static = _static(cfg, built)
    if group.main:
        write_text(run_path / "config.yaml", dump_yaml(static["config"]))
    trainer, sink = _trainer(cfg, built, run_path, static, progress, stop, group)
    trainer.load_state_dict(state)
    if group.main:
        sink.start(trainer.state.history)
    note(f"resuming {run_path} at epoch {state['epoch'] + 1}" + (f", batch {state['batch'] + 1}" if state["batch"] else ""))
    if trainer.state.epoch >= cfg.config.train.epochs:
        note(f"the run has finished its {cfg.config.train.epochs} epochs: give train.epochs=N to extend it")
    return _train(trainer, built, run_path)

