"""Text columns: words (or characters) -> token ids, with a vocabulary fitted on the training split.

`<pad>` is 0 and `<unk>` is 1; rows are cut to `max_length` tokens (default: enough for 95% of
the training rows) and left-padded, so the last position holds the last token, where a recurrent
layer's final state reads it. An empty cell is a row of padding.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import pandas as pd
import torch

PAD, UNK = "<pad>", "<unk>"
_WORDS = re.compile(r"\w+|[^\w\s]")
TOKENIZERS = ("word", "char")


def tokenize(text: str, tokenizer: str, lowercase: bool) -> list[str]:
    if lowercase:
        text = text.lower()
    if tokenizer == "char":
        return list(text.strip())
    return _WORDS.findall(text)


@dataclass
class TextEncoder:
    column: str
    tokenizer: str = "word"
    lowercase: bool = True
    vocabulary: list[str] = field(default_factory=lambda: [PAD, UNK])
    max_length: int = 1
    type: ClassVar[str] = "text"
    options: ClassVar[tuple[str, ...]] = ("tokenizer", "lowercase", "min_freq", "max_tokens", "max_length")
    tabular: ClassVar[bool] = False
    dtype: ClassVar[str] = "long"

    @classmethod
    def check_options(cls, options: dict) -> str | None:
        if options.get("tokenizer", "word") not in TOKENIZERS:
            return f"tokenizer is word or char; found {options['tokenizer']!r}"
        for key in ("min_freq", "max_tokens", "max_length"):
            value = options.get(key)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                return f"{key} is a whole number of at least 1; found {value!r}"
        if not isinstance(options.get("lowercase", True), bool):
            return f"lowercase is true or false; found {options['lowercase']!r}"
        return None

    @classmethod
    def fit(cls, column: str, series: pd.Series, options: dict, on_error: str = "raise") -> TextEncoder:
        state = cls.fit_state()
        cls.fit_update(state, column, series, options)
        return cls.fit_finish(column, state, options)

    @staticmethod
    def fit_state() -> dict:
        return {"counts": Counter(), "lengths": Counter()}

    @staticmethod
    def fit_update(state: dict, column: str, series: pd.Series, options: dict | None = None) -> None:
        options = options or {}
        tokenizer, lowercase = options.get("tokenizer", "word"), options.get("lowercase", True)
        for text in _texts(series):
            tokens = tokenize(text, tokenizer, lowercase)
            state["counts"].update(tokens)
            state["lengths"][len(tokens)] += 1

    @classmethod
    def fit_finish(cls, column: str, state: dict, options: dict, on_error: str = "raise") -> TextEncoder:
        counts, lengths = state["counts"], state["lengths"]
        min_freq, max_tokens = options.get("min_freq", 1), options.get("max_tokens")
        kept = sorted((t for t, n in counts.items() if n >= min_freq), key=lambda t: (-counts[t], t))
        vocabulary = [PAD, UNK] + kept[:max_tokens]
        return cls(
            column,
            options.get("tokenizer", "word"),
            options.get("lowercase", True),
            vocabulary,
            max(1, int(options.get("max_length") or _covering(lengths, 0.95))),
        )

    @property
    def vocab_size(self) -> int:
        return len(self.vocabulary)

    @property
    def shape(self) -> tuple[int]:
        return (self.max_length,)

    def describe(self) -> str:
        return f"{self.tokenizer}s, a vocabulary of {self.vocab_size} (with <pad>, <unk>), {self.max_length} per row"

    def encode(self, series: pd.Series, use_cache: bool = True, on_error: str = "raise") -> tuple[torch.Tensor, np.ndarray]:
        index = {token: i for i, token in enumerate(self.vocabulary)}
        ids = np.zeros((len(series), self.max_length), dtype=np.int64)
        for row, text in enumerate(_texts(series)):
            tokens = tokenize(text, self.tokenizer, self.lowercase)[: self.max_length]
            if tokens:
                ids[row, self.max_length - len(tokens) :] = [index.get(t, 1) for t in tokens]
        return torch.from_numpy(ids), np.ones(len(series), dtype=bool)

    def batch_transform(self, train: bool):
        return None

    def to_dict(self) -> dict:
        return {
            "type": self.type,
            "column": self.column,
            "tokenizer": self.tokenizer,
            "lowercase": self.lowercase,
            "vocabulary": list(self.vocabulary),
            "max_length": self.max_length,
        }

    @classmethod
    def from_dict(cls, data: dict) -> TextEncoder:
        return cls(data["column"], data["tokenizer"], data["lowercase"], list(data["vocabulary"]), data["max_length"])


def _covering(lengths: Counter, share: float) -> int:
    """The smallest length that covers `share` of the rows."""
    total, seen = sum(lengths.values()), 0
    for length in sorted(lengths):
        seen += lengths[length]
        if seen >= share * total:
            return length
    return 1


def _texts(series: pd.Series) -> list[str]:
    return ["" if pd.isna(v) else str(v) for v in series.tolist()]
