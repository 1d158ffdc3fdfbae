"""Recurrent networks as dynamical systems, with analytic Jacobians."""

from __future__ import annotations

import torch
from torch import nn

from ..systems import DynamicalSystem
from .cell_system import CellSystem
from .cells import LEM, AntisymmetricRNN, CoRNN, LipschitzRNN, NoisyRNN, Rank1Reservoir, RecurrentCell, StackedCells
from .torch_rnn import TorchRNN

__all__ = [
    "AntisymmetricRNN", "CellSystem", "CoRNN", "LEM", "LipschitzRNN", "NoisyRNN", "Rank1Reservoir",
    "RecurrentCell", "StackedCells", "TorchRNN", "as_system", "jacobian",
]

SUPPORTED = (
    "nn.RNN (tanh, relu), nn.LSTM, nn.GRU, lyapbook's cells (AntisymmetricRNN, CoRNN, LipschitzRNN, "
    "NoisyRNN, LEM, Rank1Reservoir, StackedCells), or a lyapbook.systems.DynamicalSystem"
)


def as_system(model: object, full_state: bool = False) -> DynamicalSystem:
    """The dynamical system behind ``model``: a system passes through, a supported module is wrapped."""
    if isinstance(model, DynamicalSystem):
        return model
    if isinstance(model, (nn.RNN, nn.LSTM, nn.GRU)):
        return TorchRNN(model, full_state=full_state)
    if isinstance(model, (RecurrentCell, StackedCells)):
        return CellSystem(model, full_state=full_state)
    kind = type(model).__name__
    raise TypeError(f"model: {kind} is not supported; lyapunov_spectrum takes {SUPPORTED}")


def jacobian(model: object, h: torch.Tensor | tuple, x_t: torch.Tensor | None = None, full_state: bool = False) -> torch.Tensor:
    """Analytic Jacobian dh_t/dh_{t-1} of ``model`` at state ``h`` and input ``x_t``.

    Args:
        model: a supported module or a :class:`~lyapbook.systems.DynamicalSystem`.
        h: (batch, state_dim), or a PyTorch module's own state layout ((layers, batch, hidden),
            or a tuple (h, c) for an LSTM).
        x_t: (batch, input_size) input at this step.
        full_state: differentiate the full state (LSTM (h, c); coRNN and LEM (y, z)) rather
            than the hidden vector alone.

    Returns:
        (batch, n, n) with n the tangent dimension (layers x hidden, or x 2 for an LSTM's full state).
    """
    system = as_system(model, full_state)
    _, h = system.prepare(None, h)
    return system.jacobian(h, x_t)
