"""`dltrain lr-find`: the learning-rate range test (Smith 2017, as fastai's and Lightning's lr_find),
and `optimizer.lr: auto`, which `fit` resolves with it before training.

The run's parts are built as `fit` builds them (the data encoded, the model, the loss, the
optimizer), then a copy of the model and a fresh optimizer of the config's kind take up to `steps`
training batches while the learning rate grows exponentially from `start` to `end`. The test stops
once the loss, as an exponential moving average (fastai's, debiased), is more than 4x its best:
it diverged. Nothing is written and the built parts are not changed.

The curve reported is each batch's loss smoothed by a centred moving average (5 steps either
side): the moving average that decides the stop lags the rate by several steps, about a decade
of learning rate at 100 steps, and a suggestion read from it would come out too high. The
suggested rate is where the smoothed loss falls fastest, the steepest downward slope against
log(lr), looked for from the 10th step to the curve's lowest point (the fastest fall, not the
lowest loss, is where training makes the most progress while it is still stable). Where that
part of the curve is too short to have a slope, the rate at the lowest point / 10 is taken.
Both are reported.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from pathlib import Path

from dltrain.errors import ConfigError, DltrainError

START, END, STEPS = 1e-7, 10.0, 100
SMOOTHING = 0.98  # of the moving average: fastai's
DIVERGED = 4.0  # the smoothed loss this many times its best: stop
SKIP_START = 10  # the first steps: no slope is looked for there
WINDOW = 5  # steps either side in the centred average of the curve
PLACEHOLDER = 1e-3  # the rate the parts are built with while `auto` is resolved; the test sets its own


@dataclass
class RangeTest:
    lrs: list[float]  # the rate of each step taken
    losses: list[float]  # the smoothed loss at each (a centred moving average)
    raw: list[float]  # each batch's own loss
    suggestion: float
    how: str  # "steepest" or "minimum/10": how the suggestion was chosen
    minimum: float  # the rate at the lowest smoothed loss
    diverged: bool  # stopped before `steps` because the loss ran away
    picture: Path | None = None
    data: object = field(default=None, repr=False)  # the encoded data (Prepared), for fit to train on

    def to_dict(self) -> dict:
        return {
            "suggestion": self.suggestion,
            "how": self.how,
            "minimum": self.minimum,
            "steps": len(self.lrs),
            "diverged": self.diverged,
            "lr": self.lrs,
            "loss": self.losses,
        }


def lr_find(
    config,
    overrides: list[str] | tuple[str, ...] = (),
    *,
    output: str | Path | None = None,
    device: str | None = None,
    steps: int = STEPS,
    start: float = START,
    end: float = END,
) -> RangeTest:
    """The range test on a config's training data; with `output`, the curve as a picture (needs matplotlib)."""
    from dltrain.build import build, rehearse
    from dltrain.plan import make_plan

    if steps < SKIP_START + 5:
        raise DltrainError(f"--steps {steps}: give at least {SKIP_START + 5} steps (100 is usual)")
    if not 0 < start < end:
        raise DltrainError(f"the range must grow: start {start:g}, end {end:g}")
    overrides = list(overrides)
    if device is not None:
        overrides.append(f"train.device={device}")
    if output is not None:
        output = _picture_path(output)
    path = auto_lr_path(config, overrides)
    if path is not None:
        overrides.append(f"{path}={PLACEHOLDER}")
    plan = make_plan(config, overrides)
    parts = build(plan)
    rehearse(plan, parts)
    result = range_test(plan, parts, steps, start, end)
    result.data = parts.data
    if output is not None:
        result.picture = draw(result, output)
    return result


def auto_lr_path(config, overrides: list[str] | tuple[str, ...] = ()) -> str | None:
    """The dotted key of the optimizer's `lr` when it is `auto` (`optimizer.lr`, or `optimizer.SGD.lr`
    for a one-key mapping); None when the rate is a number or left to the optimizer's default."""
    from dltrain.config import LoadedConfig, read_config

    if isinstance(config, LoadedConfig):
        raw = config.raw
    else:
        try:
            raw = read_config(config, list(overrides)).raw
        except ConfigError:
            return None  # make_plan reports it, with the rest
    optimizer = raw.get("optimizer") if isinstance(raw, dict) else None
    if not isinstance(optimizer, dict):
        return None
    if "type" in optimizer:
        return "optimizer.lr" if optimizer.get("lr") == "auto" else None
    if len(optimizer) == 1:
        name, arguments = next(iter(optimizer.items()))
        if isinstance(arguments, dict) and arguments.get("lr") == "auto":
            return f"optimizer.{name}.lr"
    return None


def resolve_auto_lr(config, overrides: list[str], device: str | None = None) -> tuple[list[str], RangeTest | None]:
    """`optimizer.lr: auto`: the range test, then the overrides with the chosen rate, which the
    run's config.yaml records (so --resume and a rerun use that number). Unchanged otherwise."""
    path = auto_lr_path(config, overrides)
    if path is None:
        return list(overrides), None
    result = lr_find(config, overrides, device=device)
    from dltrain.console import note

    note(f"optimizer.lr: auto -> {result.suggestion:.3g} (range test: {describe(result)})")
    return [*overrides, f"{path}={result.suggestion:.3g}"], result


def with_placeholder(config, overrides: list[str]) -> list[str]:
    """`dltrain check` on `lr: auto`: checked with a placeholder rate, since fit chooses the rate."""
    path = auto_lr_path(config, overrides)
    if path is None:
        return list(overrides)
    from dltrain.console import note

    note(f"optimizer.lr: auto: fit chooses the rate with a range test before training (dltrain lr-find shows it); checked with {PLACEHOLDER:g}")
    return [*overrides, f"{path}={PLACEHOLDER}"]


def describe(result: RangeTest) -> str:
    how = "the steepest fall of the smoothed loss" if result.how == "steepest" else "the rate at the lowest loss / 10"
    stop = f"stopped at step {len(result.lrs)} when the loss passed {DIVERGED:g}x its best" if result.diverged else f"{len(result.lrs)} steps"
    return f"{how}; lowest loss at {result.minimum:.3g}; {stop}"


def range_test(plan, parts, steps: int = STEPS, start: float = START, end: float = END) -> RangeTest:
    """Up to `steps` training batches on copies of the built model and a fresh optimizer, the rate
    growing from `start` to `end`; the built parts and the random numbers are as they were."""
    import torch

    from dltrain.data.batches import TensorSplit
    from dltrain.train.device import resolve_device
    from dltrain.train.optim import build_optimizer

    train = parts.data.splits["train"]
    if not isinstance(train, TensorSplit):
        raise plan.error(("data", "in_memory"), "the range test draws batches from the training split in memory: set data.in_memory: true to run it")
    with plan.located():
        device = resolve_device(plan.train.device)
        model = copy.deepcopy(parts.model).to(device).train()
        loss_fn = copy.deepcopy(parts.loss_fn).to(device)
        optimizer = build_optimizer(plan.optimizer, model.parameters())
    transform = parts.data.schema.batch_transform(train=True)
    size = min(plan.batch_size, len(train))
    generator = torch.Generator().manual_seed(plan.seed)
    order, at = torch.randperm(len(train), generator=generator), 0
    grow = (end / start) ** (1 / (steps - 1))
    lrs, losses, raw = [], [], []
    average, best, diverged = 0.0, math.inf, False
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(plan.seed)  # dropout's draws
        for step in range(steps):
            lr = start * grow**step
            for group in optimizer.param_groups:
                group["lr"] = lr
            if at + size > len(train):  # a new pass over the rows, in a new order
                order, at = torch.randperm(len(train), generator=generator), 0
            rows = order[at : at + size]
            at += size
            x, y = train.x[rows], train.y[rows]
            if transform is not None:
                x = transform(x, generator)
            x, y = x.to(device), y.to(device)
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(x), y)
            value = float(loss.detach())  # one sync a step: 100 steps, not a training run
            if not math.isfinite(value):
                diverged = True
                break
            average = SMOOTHING * average + (1 - SMOOTHING) * value
            smoothed = average / (1 - SMOOTHING ** (step + 1))
            lrs.append(lr)
            raw.append(value)
            best = min(best, smoothed)
            if smoothed > DIVERGED * best:
                diverged = True
                break
            loss.backward()
            if plan.train.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), plan.train.grad_clip)
            optimizer.step()
    if len(lrs) < 2:
        raise plan.error(("optimizer",), f"the loss is not finite from the first steps of the range test, at lr {start:g}: check the data and the loss")
    losses = centred(raw)
    suggestion, how, minimum = suggest(lrs, losses)
    return RangeTest(lrs, losses, raw, suggestion, how, minimum, diverged)


def centred(values: list[float], window: int = WINDOW) -> list[float]:
    """Each value averaged with up to `window` values either side (fewer at the ends)."""
    out = []
    for i in range(len(values)):
        part = values[max(0, i - window) : i + window + 1]
        out.append(sum(part) / len(part))
    return out


def suggest(lrs: list[float], losses: list[float]) -> tuple[float, str, float]:
    """(the suggested rate, how it was chosen, the rate at the lowest loss): see the module's docstring."""
    lowest = min(range(len(losses)), key=losses.__getitem__)
    minimum = lrs[lowest]
    first = min(SKIP_START, max(0, lowest - 3))
    if lowest - first >= 3:
        logs = [math.log(lr) for lr in lrs]
        slopes = [(losses[i + 1] - losses[i - 1]) / (logs[i + 1] - logs[i - 1]) for i in range(first + 1, lowest)]
        steepest = first + 1 + min(range(len(slopes)), key=slopes.__getitem__)
        if slopes[steepest - first - 1] < 0:
            return lrs[steepest], "steepest", minimum
    return minimum / 10, "minimum/10", minimum


# ----- the picture


def _picture_path(output: str | Path) -> Path:
    from dltrain.tools.plot import _picture

    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise DltrainError("-o draws the curve with matplotlib: pip install 'dltrain[plot]' (or pip install matplotlib), or leave -o out") from None
    return _picture(Path(output), "lr.png")


def draw(result: RangeTest, output: Path) -> Path:
    """The smoothed loss against the rate (log scale), the suggestion marked; written whole or not at all."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dltrain.tools.plot import _save

    figure, axis = plt.subplots(figsize=(6.4, 4.2), dpi=100)
    axis.plot(result.lrs, result.raw, color="0.75", linewidth=0.8, label="batch loss")
    axis.plot(result.lrs, result.losses, color="C0", label="smoothed loss")
    axis.axvline(result.suggestion, color="C3", linestyle="--", label=f"suggested {result.suggestion:.3g}")
    axis.set_xscale("log")
    top = max(result.losses[0], min(result.losses)) * 1.5
    axis.set_ylim(min(min(result.raw), min(result.losses)) * 0.9, top)
    axis.set(title="learning-rate range test", xlabel="learning rate", ylabel="training loss")
    axis.legend(fontsize=8)
    figure.tight_layout()
    _save(figure, output, plt)
    return output

