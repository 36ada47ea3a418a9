"""What data, model and training agree on, as small plain types: what one sample gives the model
(`InputSpec`) and what the model's output means (`Task`).

data/, model/ and train/ do not import each other; they meet here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

# The type of a target column, as the data says (DESIGN.md's column types).
CATEGORY, BINARY, NUMERIC = "category", "binary", "numeric"

# The form of the target tensor, as the loss takes it.
INDEX = "index"  # a class index per row, (batch,) int64; one output per class (CrossEntropyLoss, NLLLoss)
ZERO_ONE = "0/1"  # the positive class as 1.0, (batch, 1) float; one output (BCEWithLogitsLoss, BCELoss)
STANDARDIZED = "standardized"  # a number standardized with the training mean and std, (batch, 1) float

# Which target types each form can hold.
TARGET_TYPES = {INDEX: (CATEGORY, BINARY), ZERO_ONE: (BINARY,), STANDARDIZED: (NUMERIC,)}


@dataclass(frozen=True)
class InputSpec:
    """What the data gives the model for one sample."""

    shape: tuple[int, ...]
    dtype: str = "float"  # "float", or "long" for token ids
    vocab_size: int | None = None  # for token ids: what Embedding's num_embeddings must be

    def to_dict(self) -> dict:
        return {**asdict(self), "shape": list(self.shape)}

    @classmethod
    def from_dict(cls, data: dict) -> InputSpec:
        return cls(tuple(data["shape"]), data["dtype"], data.get("vocab_size"))

    def zeros(self, batch: int = 2, device: torch.device | str = "cpu") -> torch.Tensor:
        """A batch of zeros of this shape and type: to trace, compile or export a model."""
        return torch.zeros((batch, *self.shape), dtype=torch.long if self.dtype == "long" else torch.float32, device=device)


@dataclass(frozen=True)
class Task:
    """The target and the loss together: how outputs become probabilities, classes and values."""

    target_type: str  # category, binary or numeric
    form: str  # INDEX, ZERO_ONE or STANDARDIZED: the target tensor the loss takes
    output: str  # what the model's last layer gives: logits, log_probs, probs or values
    classes: tuple[str, ...] = ()  # class names; binary: (negative, positive)
    mean: float = 0.0  # a numeric target is standardized with these
    std: float = 1.0
    transform: dict | None = None  # a numeric target's transform before that (log, quantile): `untransform`'s plain data
    threshold: float = 0.5  # a binary target: the positive class's probability above which a row is positive

    @classmethod
    def of(cls, form: str, output: str, target) -> Task:
        """From the loss's form and output, and the fitted target encoder (its classes, or mean and std)."""
        if target.type == NUMERIC:
            return cls(NUMERIC, form, output, (), target.mean, target.std, transform=target.target_transform())
        return cls(target.type, form, output, tuple(target.classes))

    @property
    def output_size(self) -> int:
        return len(self.classes) if self.form == INDEX else 1

    @property
    def is_classification(self) -> bool:
        return self.target_type in (CATEGORY, BINARY)

    def probabilities(self, output: torch.Tensor) -> torch.Tensor:
        """(N, classes) probabilities for a classification task."""
        output = output.float()
        if self.output == "logits":
            probs = output.softmax(1) if self.form == INDEX else output.sigmoid()
        elif self.output == "log_probs":
            probs = output.exp()
        else:
            probs = output
        if self.form == ZERO_ONE:
            probs = torch.cat([1 - probs, probs], dim=1)
        return probs

    def predicted(self, output: torch.Tensor) -> torch.Tensor:
        """The class each row is predicted to be: the largest output, no softmax needed."""
        if self.target_type == BINARY and self.threshold != 0.5:
            return (self.probabilities(output)[:, 1] > self.threshold).long()
        if self.form == ZERO_ONE:
            threshold = 0.0 if self.output == "logits" else 0.5
            return (output.reshape(-1) > threshold).long()
        return output.argmax(1)

    def labels(self, target: torch.Tensor) -> torch.Tensor:
        """Encoded targets as class indices (N,)."""
        return target.reshape(-1).long()

    def values(self, output_or_target: torch.Tensor) -> torch.Tensor:
        """A regression output or target back in the target's own units, (N,)."""
        values = output_or_target.reshape(-1).double() * self.std + self.mean
        return untransform(values, self.transform) if self.transform else values


def untransform(values: torch.Tensor, transform: dict) -> torch.Tensor:
    """A numeric target's transform undone: `{"type": "log", "minimum", "shift", "maximum"}`
    (log1p(x + shift)) or `{"type": "quantile", "quantiles": [...]}` (normal scores of the training
    quantiles). Either stays within the training range, as a tree's predictions do: past its edge,
    exp would turn a small error in log units into a huge one."""
    if transform["type"] == "log":
        maximum = transform.get("maximum")  # runs before it was recorded: no upper bound
        return (torch.expm1(values) - transform["shift"]).clamp(transform["minimum"], maximum)
    levels = torch.special.ndtr(values).cpu().numpy()
    quantiles = transform["quantiles"]
    out = np.interp(levels, np.linspace(0, 1, len(quantiles)), np.asarray(quantiles, dtype="float64"))
    return torch.from_numpy(out).to(values.device)
