"""dltrain's own layers: the few that torch.nn lacks or that need a batch-first, one-tensor form."""

from __future__ import annotations

import torch
from torch import nn


class Reshape(nn.Module):
    """Reshape each sample (the batch dimension is kept): `Reshape: [1, 28, 28]`; -1 is allowed."""

    def __init__(self, *shape: int):
        super().__init__()
        if not shape:
            raise ValueError("Reshape needs the new shape of one sample, e.g. Reshape: [1, 28, 28]")
        self.shape = tuple(int(s) for s in shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], *self.shape)

    def extra_repr(self) -> str:
        return f"shape={self.shape}"


class Transpose(nn.Module):
    """Swap two dimensions, counted as PyTorch counts them (0 is the batch): `Transpose: [1, 2]`."""

    def __init__(self, dim0: int, dim1: int):
        super().__init__()
        self.dim0, self.dim1 = int(dim0), int(dim1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.transpose(self.dim0, self.dim1)

    def extra_repr(self) -> str:
        return f"dim0={self.dim0}, dim1={self.dim1}"


class Residual(nn.Module):
    """Add the input to the output of its layers: `Residual: [Linear: 64, ReLU]`."""

    def __init__(self, *layers: nn.Module):
        super().__init__()
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class _Recurrent(nn.Module):
    """A batch-first recurrent layer that returns one tensor.

    By default the final hidden state of the last layer, `(batch, hidden)` (both directions
    concatenated when bidirectional, `(batch, 2 * hidden)`); with `return_sequences: true` the
    output at every step, `(batch, length, hidden * directions)`.
    """

    rnn_class: type[nn.RNNBase] = nn.RNN

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        dropout: float = 0.0,
        bidirectional: bool = False,
        return_sequences: bool = False,
        **options,
    ):
        super().__init__()
        self.rnn = self.rnn_class(
            input_size,
            hidden_size,
            num_layers=num_layers,
            bias=bias,
            batch_first=True,
            dropout=dropout,
            bidirectional=bidirectional,
            **options,
        )
        self.return_sequences = return_sequences
        self.directions = 2 if bidirectional else 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3:
            # PyTorch would read (batch, features) as one unbatched sequence: say so instead
            raise ValueError(
                f"{type(self).__name__} takes sequences, (batch, length, features), but got "
                f"{tuple(x.shape)}; for a table, Reshape it first (Reshape: [-1, 1] makes each feature a step)"
            )
        output, hidden = self.rnn(x)
        if self.return_sequences:
            return output
        if isinstance(hidden, tuple):  # LSTM: (h_n, c_n)
            hidden = hidden[0]
        last = hidden[-self.directions :]  # the last layer's final state, one per direction
        return last.transpose(0, 1).reshape(x.shape[0], -1)

    def extra_repr(self) -> str:
        return f"return_sequences={self.return_sequences}"


class RNN(_Recurrent):
    """Elman RNN (batch first). `RNN: 64` is 64 hidden units; `nonlinearity: relu` is accepted."""

    rnn_class = nn.RNN

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        nonlinearity: str = "tanh",
        bias: bool = True,
        dropout: float = 0.0,
        bidirectional: bool = False,
        return_sequences: bool = False,
    ):
        super().__init__(
            input_size,
            hidden_size,
            num_layers,
            bias,
            dropout,
            bidirectional,
            return_sequences,
            nonlinearity=nonlinearity,
        )


class LSTM(_Recurrent):
    """LSTM (batch first). `LSTM: 64` is 64 hidden units."""

    rnn_class = nn.LSTM

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        dropout: float = 0.0,
        bidirectional: bool = False,
        return_sequences: bool = False,
    ):
        super().__init__(input_size, hidden_size, num_layers, bias, dropout, bidirectional, return_sequences)


class GRU(_Recurrent):
    """GRU (batch first). `GRU: 64` is 64 hidden units."""

    rnn_class = nn.GRU

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        dropout: float = 0.0,
        bidirectional: bool = False,
        return_sequences: bool = False,
    ):
        super().__init__(input_size, hidden_size, num_layers, bias, dropout, bidirectional, return_sequences)
