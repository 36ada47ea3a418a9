"""`dltrain check`: validate a config, build its data and model, train nothing."""

from __future__ import annotations

from pathlib import Path

from dltrain.build import Built, build, optimizer_and_scheduler
from dltrain.config import load_config
from dltrain.train.metrics import higher_is_better
from dltrain.train.trainer import count_batches


def check(config: str | Path | dict, overrides: list[str] | tuple[str, ...] = ()) -> Built:
    """Everything `fit` does before its first batch; raises the errors `fit` would raise."""
    cfg = load_config(config, list(overrides))
    built = build(cfg)
    steps = count_batches(len(built.data.splits["train"].x), cfg.config.data.batch_size)
    optimizer_and_scheduler(cfg, built.model, steps, higher_is_better(cfg.config.train.monitor))
    return built
