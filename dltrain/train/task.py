"""The task: what the loss and the target make of the model's output (probabilities, decoded values)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dltrain.train.losses import BINARY, CLASSIFICATION, LossEntry

CATEGORY, BINARY_TYPE, NUMERIC = "category", "binary", "numeric"


@dataclass(frozen=True)
class Task:
    loss: LossEntry
    target_type: str  # category, binary or numeric: the target column's type
    classes: tuple[str, ...] = ()  # class names; binary: (negative, positive)
    mean: float = 0.0  # a numeric target is standardized with these
    std: float = 1.0

    @property
    def output_size(self) -> int:
        return len(self.classes) if self.loss.task == CLASSIFICATION else 1

    @property
    def is_classification(self) -> bool:
        return self.target_type in (CATEGORY, BINARY_TYPE)

    def probabilities(self, output: torch.Tensor) -> torch.Tensor:
        """(N, classes) probabilities for a classification task."""
        probs = self.loss.probabilities(output.float())
        if self.loss.task == BINARY:
            probs = torch.cat([1 - probs, probs], dim=1)
        return probs

    def predicted(self, output: torch.Tensor) -> torch.Tensor:
        """The class each row is predicted to be: the largest output, no softmax needed."""
        if self.loss.task == BINARY:
            threshold = 0.0 if self.loss.output == "logits" else 0.5
            return (output.reshape(-1) > threshold).long()
        return output.argmax(1)

    def labels(self, target: torch.Tensor) -> torch.Tensor:
        """Encoded targets as class indices (N,)."""
        return target.reshape(-1).long()

    def values(self, output_or_target: torch.Tensor) -> torch.Tensor:
        """A regression output or target back in the target's own units, (N,)."""
        return output_or_target.reshape(-1).double() * self.std + self.mean
