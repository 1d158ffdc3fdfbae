"""Networks for the tasks: a recurrent core (any supported architecture) plus input and readout.

The core is what the Lyapunov engine analyses: ``lyapunov_spectrum(model.core, model.core_inputs(x))``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..rnn import LEM, AntisymmetricRNN, CoRNN, LipschitzRNN, NoisyRNN

__all__ = ["ARCHITECTURES", "CELL_OPTIONS", "INITS", "SequenceModel", "build_model"]

ARCHITECTURES = ("lstm", "gru", "rnn", "asrnn", "cornn", "lipschitz", "noisy", "lem")
_CELLS = {"asrnn": AntisymmetricRNN, "cornn": CoRNN, "lipschitz": LipschitzRNN, "noisy": NoisyRNN, "lem": LEM}
# The scalar hyperparameters of each cell (its constructor's keywords, kept as attributes of the same name).
CELL_OPTIONS = {
    "lstm": (), "gru": (), "rnn": (),
    "asrnn": ("eps", "gamma"),
    "cornn": ("dt", "gamma", "eps"),
    "lipschitz": ("dt", "beta_a", "gamma_a", "beta_w", "gamma_w"),
    "noisy": ("dt", "beta_a", "gamma_a", "beta_w", "gamma_w", "sigma_add", "sigma_mult"),
    "lem": ("dt",),
}
# "uniform": every parameter U[-p, p] (the dissertation's zoos); "asrnn_normal": the ASRNN grid of
# Figs. 3.2-3.4 (recurrent W ~ N(0, std p / n), input weights ~ N(0, std 1 / input_size), biases 0).
INITS = ("uniform", "asrnn_normal")


def _core(arch: str, input_size: int, hidden_size: int, bias: bool, options: dict[str, float]) -> nn.Module:
    torch_rnn = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}
    unknown = set(options) - set(CELL_OPTIONS[arch])
    if unknown:
        allowed = ", ".join(CELL_OPTIONS[arch]) or "none"
        raise ValueError(f"cell options {sorted(unknown)} do not exist for {arch!r}; its options: {allowed}")
    if arch in torch_rnn:
        return torch_rnn[arch](input_size, hidden_size, batch_first=True, bias=bias)
    return _CELLS[arch](input_size, hidden_size, bias=bias, **options)


class SequenceModel(nn.Module):
    """Embedding (token inputs) or identity, recurrent ``core``, dropout, linear ``readout``.

    ``output="last"`` returns (batch, output_size) from the last step; ``output="all"`` returns
    (batch, time, output_size), one prediction per step. ``loss`` is ``"cross_entropy"``
    (classification: targets are class ids) or ``"mse"`` (regression); by default cross-entropy
    for ``output="last"`` and MSE for ``output="all"``. ``cell`` holds the core's scalar
    hyperparameters (``CELL_OPTIONS[arch]``, e.g. ``{"eps": 1.0, "gamma": 0.1}`` for an ASRNN).
    ``config`` holds the constructor's arguments, so ``SequenceModel(**model.config)`` builds
    the same network (untrained).
    """

    def __init__(self, arch: str, input_size: int, hidden_size: int, output_size: int, *, vocabulary: int | None = None,
                 output: str = "last", loss: str | None = None, dropout: float = 0.0, bias: bool = True,
                 cell: dict[str, float] | None = None):
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
        cell = {name: float(value) for name, value in (cell or {}).items()}
        self.config = dict(arch=arch, input_size=input_size, hidden_size=hidden_size, output_size=output_size,
                           vocabulary=vocabulary, output=output, loss=loss, dropout=dropout, bias=bias, cell=cell)
        self.arch, self.output, self.loss = arch, output, loss
        self.embedding = nn.Embedding(vocabulary, input_size) if vocabulary else None
        self.core = _core(arch, input_size, hidden_size, bias, cell)
        self.dropout = nn.Dropout(dropout)
        self.readout = nn.Linear(hidden_size, output_size)

    def cell_options(self) -> dict[str, float]:
        """The core's scalar hyperparameters as the core uses them (defaults included)."""
        return {name: float(getattr(self.core, name)) for name in CELL_OPTIONS[self.arch]}

    def core_inputs(self, x: torch.Tensor) -> torch.Tensor:
        """What the core sees: (batch, time, input_size)."""
        return self.embedding(x) if self.embedding is not None else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden, _ = self.core(self.core_inputs(x))
        if isinstance(hidden, tuple):  # never for batch_first cores; kept for clarity
            hidden = hidden[0]
        hidden = self.dropout(hidden)
        return self.readout(hidden[:, -1] if self.output == "last" else hidden)


def _asrnn_normal_(model: SequenceModel, sigma: float) -> None:
    """The ASRNN grid's initialisation (dissertation Figs. 3.2-3.4; std, not variance, as the authors' code)."""
    core = model.core
    if not isinstance(core, AntisymmetricRNN):
        raise ValueError(f"init 'asrnn_normal' is for the asrnn architecture, not {model.arch!r}")
    nn.init.normal_(core.W, 0.0, sigma / core.hidden_size)
    nn.init.normal_(core.V.weight, 0.0, 1.0 / core.input_size)
    if core.V.bias is not None:
        nn.init.zeros_(core.V.bias)


def build_model(arch: str, input_size: int, hidden_size: int, output_size: int, *, init_p: float | None = None,
                seed: int = 0, init: str = "uniform", **kwargs) -> SequenceModel:
    """A seeded model. ``init="uniform"``: with ``init_p``, every parameter uniform on [-p, p] as in
    the dissertation (without, PyTorch's defaults). ``init="asrnn_normal"``: the ASRNN grid's
    normal initialisation with sigma = ``init_p`` (the readout keeps PyTorch's default)."""
    if init not in INITS:
        raise ValueError(f"init: unknown {init!r}; choose one of {', '.join(INITS)}")
    if init_p is not None and not (init_p > 0 and math.isfinite(init_p)):
        raise ValueError(f"init_p must be positive, got {init_p}")
    torch.manual_seed(seed)
    model = SequenceModel(arch, input_size, hidden_size, output_size, **kwargs)
    if init == "asrnn_normal":
        if init_p is None:
            raise ValueError("init_p: init 'asrnn_normal' needs sigma as init_p")
        _asrnn_normal_(model, init_p)
    elif init_p is not None:
        for parameter in model.parameters():
            nn.init.uniform_(parameter, -init_p, init_p)
    return model
