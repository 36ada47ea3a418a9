"""Which device to train or predict on: `auto`, `cpu`, `cuda`, `cuda:N` or `mps`."""

from __future__ import annotations

import torch

from dltrain.errors import DltrainError


def resolve_device(name: str) -> torch.device:
    """The device `name` stands for on this machine; a device it lacks is an error naming train.device."""
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
