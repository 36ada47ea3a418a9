"""The fitted encoders of a run: what turns new rows into the model's input and targets into tensors.

Saved in every checkpoint as plain data (`to_dict`) and rebuilt from it (`from_dict`), so that
evaluate and predict encode new data exactly as training did, with nothing but the checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from dltrain.console import warn
from dltrain.data.encoders import CategoryEncoder, Encoder, NumericEncoder, encoder_from_dict
from dltrain.data.media import FileColumn
from dltrain.errors import DataError
from dltrain.task import ZERO_ONE, InputSpec


@dataclass
class DataSchema:
    """Everything needed to encode new rows as training did."""

    inputs: list[Encoder]
    target: Encoder
    id: str | None = None
    cache: bool = True  # decoded files (images) cached on disk
    on_error: str = "raise"  # or "skip": unreadable files are left out with a warning

    @property
    def input_columns(self) -> list[str]:
        return [e.column for e in self.inputs]

    @property
    def media(self):
        """The one input that is not a table column (images, text, sequences...), if any."""
        return next((e for e in self.inputs if not e.tabular), None)

    @property
    def files(self) -> FileColumn | None:
        """The input column of file paths (images, sounds, clips), if the inputs are files."""
        return self.media if isinstance(self.media, FileColumn) else None

    def input_spec(self) -> InputSpec:
        if self.media is not None:
            return InputSpec(self.media.shape, self.media.dtype, self.media.vocab_size)
        return InputSpec((sum(e.width for e in self.inputs),))

    def encode_inputs(self, table: pd.DataFrame, label: str, new: bool = False) -> tuple[torch.Tensor, np.ndarray]:
        """What the model takes for each row, and which rows could be encoded (unreadable files skipped).

        `new`: data from outside the run (predict, evaluate --data): values that training never saw
        are counted in a warning, since the model reads them as unknown.
        """
        missing = [c for c in self.input_columns if c not in table.columns]
        if missing:
            raise DataError(
                f"{label}: the model needs column(s) {', '.join(missing)}, which are not in it. "
                f"Its columns: {', '.join(map(str, table.columns))}"
            )
        if self.media is not None:
            return self.media.encode(table[self.media.column], self.cache, self.on_error)
        if new:
            for encoder in self.inputs:
                if isinstance(encoder, CategoryEncoder):
                    count, examples = encoder.unseen(table[encoder.column])
                    if count:
                        filled = "the training rate of its positive value" if encoder.type == "binary" else "unknown (<unk>)"
                        warn(
                            f"{label}: column '{encoder.column}' has {count} value(s) that training never saw "
                            f"({', '.join(repr(v) for v in examples)}; it knows {', '.join(encoder.classes[:8])}"
                            f"{', ...' if len(encoder.classes) > 8 else ''}): read as {filled}"
                        )
        x = torch.cat([e.transform(table[e.column]) for e in self.inputs], dim=1)
        return x, np.ones(len(table), dtype=bool)

    def batch_transform(self, train: bool):
        """What turns a batch of stored inputs into the model's input (None: they are used as stored)."""
        return self.media.batch_transform(train) if self.media is not None else None

    def to_dict(self) -> dict:
        return {
            "inputs": [e.to_dict() for e in self.inputs],
            "target": self.target.to_dict(),
            "id": self.id,
            "cache": self.cache,
            "on_error": self.on_error,
        }

    @classmethod
    def from_dict(cls, data: dict) -> DataSchema:
        return cls(
            [encoder_from_dict(e) for e in data["inputs"]],
            encoder_from_dict(data["target"]),
            data.get("id"),
            data.get("cache", True),
            data.get("on_error", "raise"),
        )


def encode_target(encoder: Encoder, series: pd.Series, form: str) -> tuple[torch.Tensor, np.ndarray]:
    """The target in the loss's form (dltrain.task), and a mask of the rows whose value the encoder knows."""
    if isinstance(encoder, NumericEncoder):
        return encoder.numbers(series).unsqueeze(1), series.notna().to_numpy()
    codes = encoder.codes(series)
    known = codes >= 0
    codes = np.where(known, codes, 0)
    if form == ZERO_ONE:
        return torch.from_numpy(codes).float().unsqueeze(1), known
    return torch.from_numpy(codes), known
