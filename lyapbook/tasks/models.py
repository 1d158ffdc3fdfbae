"""Networks for the tasks: a recurrent core (any supported architecture) plus input and readout.

The core is what the Lyapunov engine analyses: ``lyapunov_spectrum(model.core, model.core_inputs(x))``.
"""

from __future__ import annotations

import torch
from torch import nn

from ..rnn import LEM, AntisymmetricRNN, CoRNN, LipschitzRNN, NoisyRNN

__all__ = ["ARCHITECTURES", "SequenceModel", "build_model"]

ARCHITECTURES = ("lstm", "gru", "rnn", "asrnn", "cornn", "lipschitz", "noisy", "lem")


def _core(arch: str, input_size: int, hidden_size: int, bias: bool) -> nn.Module:
    torch_rnn = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}
    if arch in torch_rnn:
        return torch_rnn[arch](input_size, hidden_size, batch_first=True, bias=bias)
    cells = {"asrnn": AntisymmetricRNN, "cornn": CoRNN, "lipschitz": LipschitzRNN, "noisy": NoisyRNN, "lem": LEM}
    return cells[arch](input_size, hidden_size, bias=bias)


class SequenceModel(nn.Module):
    """Embedding (token inputs) or identity, recurrent ``core``, dropout, linear ``readout``.

    ``output="last"`` returns (batch, output_size) from the last step; ``output="all"`` returns
    (batch, time, output_size), one prediction per step. ``loss`` is ``"cross_entropy"``
    (classification: targets are class ids) or ``"mse"`` (regression); by default cross-entropy
    for ``output="last"`` and MSE for ``output="all"``.
    """

    def __init__(self, arch: str, input_size: int, hidden_size: int, output_size: int, *, vocabulary: int | None = None,
                 output: str = "last", loss: str | None = None, dropout: float = 0.0, bias: bool = True):
        super().__init__()
        if arch not in ARCHITECTURES:
            raise ValueError(f"arch: unknown {arch!r}; choose one of {', '.join(ARCHITECTURES)}")
        if hidden_size < 1 or output_size < 1 or input_size < 1:
            raise ValueError(f"sizes must be positive, got input {input_size}, hidden {hidden_size}, output {output_size}")
        if output not in ("last", "all"):
            raise ValueError(f"output must be 'last' or 'all', got {output!r}")
        loss = loss or ("cross_entropy" if output == "last" else "mse")
        if loss not in ("cross_entropy", "mse"):
            raise ValueError(f"loss must be 'cross_entropy' or 'mse', got {loss!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.arch, self.output, self.loss = arch, output, loss
        self.embedding = nn.Embedding(vocabulary, input_size) if vocabulary else None
        self.core = _core(arch, input_size, hidden_size, bias)
        self.dropout = nn.Dropout(dropout)
        self.readout = nn.Linear(hidden_size, output_size)

    def core_inputs(self, x: torch.Tensor) -> torch.Tensor:
        """What the core sees: (batch, time, input_size)."""
        return self.embedding(x) if self.embedding is not None else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden, _ = self.core(self.core_inputs(x))
        if isinstance(hidden, tuple):  # never for batch_first cores; kept for clarity
            hidden = hidden[0]
        hidden = self.dropout(hidden)
        return self.readout(hidden[:, -1] if self.output == "last" else hidden)


def build_model(arch: str, input_size: int, hidden_size: int, output_size: int, *, init_p: float | None = None,
                seed: int = 0, **kwargs) -> SequenceModel:
    """A seeded model; ``init_p`` sets every parameter uniform on [-p, p] as in the dissertation."""
    if init_p is not None and not init_p > 0:
        raise ValueError(f"init_p must be positive, got {init_p}")
    torch.manual_seed(seed)
    model = SequenceModel(arch, input_size, hidden_size, output_size, **kwargs)
    if init_p is not None:
        for parameter in model.parameters():
            nn.init.uniform_(parameter, -init_p, init_p)
    return model
