"""The config format as typed objects: defaults, types and bounds; validated by pydantic.

Components (layers, loss, optimizer, scheduler) are kept as written here and checked against
their registries by the plan step (`dltrain.plan`); `dltrain.config.load` checks what needs more
than one key.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator

DEFAULT_OPTIMIZER = {"type": "Adam", "lr": 1e-3}


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True, strict=True)  # YAML gives typed values: true is not 1


class Source(_Section):
    """Where a table comes from: a file path, or an SQL url and query."""

    type: str | None = Field(None, description="csv, tsv, parquet, json, jsonl, sql, huggingface; default: from the extension")
    path: str | None = Field(None, description="a file, relative to the config file's folder (huggingface: a dataset's folder or hub name)")
    url: str | None = Field(None, description="sql only: `sqlite:///path/to.db`, or an SQLAlchemy url")
    query: str | None = Field(None, description="sql only: the query that gives the table")
    split: str | None = Field(None, description="huggingface only: the dataset's split to read (train, test, ...); default: train")
    config: str | None = Field(None, description="huggingface only: the dataset's configuration name, where it has several")


class Column(BaseModel):
    """A column and, optionally, its type and the type's options."""

    model_config = ConfigDict(extra="allow")  # a type's options, checked against the encoder

    column: str = Field(description="the column's name in the table")
    type: str | None = Field(
        None, description="numeric, binary, category, text, sequence, image, audio or video; inferred when not given"
    )


class Ratios(_Section):
    train: float = Field(ge=0, le=1)
    val: float = Field(0.0, ge=0, le=1)
    test: float = Field(0.0, ge=0, le=1)


class ByColumn(_Section):
    column: str = Field(description="a column whose values are train, val or test")


class Files(_Section):
    train: str | Source
    val: str | Source | None = None
    test: str | Source | None = None


def _split_kind(value: Any) -> str:
    if isinstance(value, ByColumn):  # serializing a validated config
        return "column"
    if isinstance(value, Files):
        return "files"
    if isinstance(value, dict):
        if "column" in value:
            return "column"
        if any(isinstance(v, (str, dict)) for v in value.values()):
            return "files"
    return "ratios"


Split = Annotated[
    Union[Annotated[Ratios, Tag("ratios")], Annotated[ByColumn, Tag("column")], Annotated[Files, Tag("files")]],
    Discriminator(_split_kind),
]

# The sections whose keys are fixed, by where they stand: unknown keys there get "did you mean".
SECTIONS: dict[tuple, tuple[type[BaseModel], ...]] = {}


class Data(_Section):
    source: str | Source | None = Field(
        None, description="a table file, or {type, path, url, query}; not needed when split gives files"
    )
    inputs: list[str | Column] | None = Field(
        None, description="the input columns; default: every column but the target, the split column and the id"
    )
    target: str | Column | None = Field(None, description="the column to predict")
    target_transform: Literal["log", "quantile"] | None = Field(
        None, description="a numeric target: log or quantile before standardizing, undone for metrics and predictions"
    )
    id: str | None = Field(None, description="a column copied into predict's output to name each row")
    split: Split = Field(
        default_factory=lambda: Ratios(train=0.8, val=0.1, test=0.1),
        description="ratios {train, val, test}, {column: NAME}, or {train: FILE, val: FILE, test: FILE}",
    )
    batch_size: int = Field(32, gt=0, description="rows per batch")
    shuffle: bool = Field(True, description="shuffle training batches each epoch")
    sampler: Literal["balanced"] | None = Field(
        None, description="balanced: each epoch draws the split's row count with replacement, every class as likely (in-memory data)"
    )
    in_memory: bool = Field(True, description="hold the encoded data in memory")
    cache: bool = Field(True, description="cache decoded files on disk")
    on_error: Literal["raise", "skip"] = Field("raise", description="skip: unreadable rows are counted and skipped")


class EarlyStopping(_Section):
    patience: int = Field(gt=0, description="epochs without improvement before stopping")
    min_delta: float = Field(0.0, ge=0, description="the smallest change that counts as improvement")


LoggerName = Literal["csv", "tensorboard", "mlflow"]


class MLflow(_Section):
    """train.logger: mlflow: where the runs go (the optional extra: pip install 'dltrain[mlflow]')."""

    tracking_uri: str | None = Field(None, description="the tracking server or store; default: MLFLOW_TRACKING_URI, else MLflow's own default")
    experiment: str | None = Field(None, description="the experiment's name; default: the config's name")


class Train(_Section):
    epochs: int = Field(10, gt=0)
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?|mps)$", description="auto, cpu, cuda, cuda:N, mps")
    threads: int | None = Field(None, gt=0, description="intra-op threads on CPU; default: torch's")
    precision: Literal["32", "bf16", "16"] = Field("32", description="32, or bf16 / 16 for mixed precision")
    compile: bool = False
    grad_clip: float | None = Field(None, gt=0, description="max gradient norm")
    accumulate: int = Field(1, gt=0, description="batches per optimizer step")
    monitor: str = Field("val_loss", description="val_loss or val_<metric>: what best.pt and early stopping watch")
    early_stopping: EarlyStopping | None = None
    metrics: list[str] | None = Field(None, description="default: by task")
    out_dir: str = Field("runs", description="where run directories go, relative to the current folder")
    logger: LoggerName | list[LoggerName] = Field(
        "csv", description="csv, tensorboard, mlflow, or a list of them; metrics.csv is written whichever is given"
    )
    mlflow: MLflow = Field(default_factory=MLflow, description="train.logger: mlflow: {tracking_uri, experiment}")
    deterministic: bool = False
    threshold: Annotated[float, Field(gt=0, lt=1)] | Literal["auto"] = Field(
        0.5, description="binary targets: the positive class's probability above which a row is positive; auto: the one that maximizes F1 on the validation split"
    )

    @field_validator("precision", mode="before")
    @classmethod
    def _precision_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @property
    def loggers(self) -> tuple[str, ...]:
        """train.logger as a tuple of names, csv always among them."""
        names = [self.logger] if isinstance(self.logger, str) else list(self.logger)
        return tuple(dict.fromkeys(["csv", *names]))


class Tune(_Section):
    """`dltrain tune`: a search over config values, one run directory per trial (on Optuna)."""

    trials: int = Field(20, gt=0, description="trials in the study (finished, pruned or failed), across every process")
    timeout: float | None = Field(None, gt=0, description="seconds: no new trial starts after this long")
    metric: str | None = Field(None, description="the value to optimize, val_loss or val_<metric>; default: train.monitor (the trials monitor it)")
    sampler: Literal["tpe", "random"] = Field("tpe", description="tpe (Optuna's TPESampler) or random; seeded from seed")
    pruner: Any = Field("median", description="median, hyperband or none; or {type: median, n_startup_trials: 5, n_warmup_steps: 0}")
    space: dict[str, Any] = Field(
        min_length=1,
        description="dotted config paths (as in KEY=VALUE) -> a list of choices, or {low, high} with log: true or step: N",
    )


class Model(_Section):
    layers: list[Any] = Field(min_length=1, description="the layers, in order")


class Config(_Section):
    name: str | None = Field(None, pattern=r"^[^/\\]*[^/\\.][^/\\]*$", description="the run's name, a folder name under train.out_dir (no /); default: the config file's stem")
    seed: int = Field(0, ge=0, lt=2**32, description="one seed for splits, initial weights and shuffling")
    data: Data
    model: Model
    loss: Any = Field(description="a torch.nn loss: CrossEntropyLoss, BCEWithLogitsLoss, MSELoss, ...")
    optimizer: Any = Field(default_factory=lambda: dict(DEFAULT_OPTIMIZER), description="a torch.optim optimizer")
    scheduler: Any = Field(None, description="a torch.optim.lr_scheduler scheduler, plus interval: epoch|step")
    train: Train = Field(default_factory=Train)
    tune: Tune | None = Field(None, description="dltrain tune's search; fit trains the config as written and leaves this out")


SECTIONS.update(
    {
        (): (Config,),
        ("data",): (Data,),
        ("data", "source"): (Source,),
        ("data", "split"): (Ratios, ByColumn, Files),
        ("data", "split", "train"): (Source,),
        ("data", "split", "val"): (Source,),
        ("data", "split", "test"): (Source,),
        ("model",): (Model,),
        ("train",): (Train,),
        ("train", "early_stopping"): (EarlyStopping,),
        ("train", "mlflow"): (MLflow,),
        ("tune",): (Tune,),
    }
)
