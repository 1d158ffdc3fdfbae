"""A :class:`~lyapbook.rnn.cells.RecurrentCell` seen by the engine as a dynamical system."""

from __future__ import annotations

import torch

from ..systems import DynamicalSystem
from .cells import RecurrentCell

__all__ = ["CellSystem"]


class CellSystem(DynamicalSystem):
    """Wraps one of lyapbook's cells; steps are deterministic (no training noise)."""

    def __init__(self, cell: RecurrentCell, full_state: bool = False):
        for name, parameter in cell.named_parameters():
            if not bool(torch.isfinite(parameter).all()):
                raise ValueError(f"model: parameter {name} contains NaN or inf values")
        self.cell, self.full_state = cell, bool(full_state)
        self.state_dim, self.input_dim, self.batch_first = cell.state_size, cell.input_size, cell.batch_first

    @property
    def tangent_dim(self) -> int:
        return self.cell.tangent_size(self.full_state)

    def tangent_index(self) -> torch.Tensor:
        return torch.arange(self.tangent_dim)

    def initial_state(self, batch=1, *, dtype=torch.float64, device="cpu"):
        return self.cell.initial_state(batch, torch.empty(0, dtype=dtype, device=device))

    def inputs_from_module(self, x: torch.Tensor) -> torch.Tensor:
        return x.transpose(0, 1) if x.ndim == 3 and not self.batch_first else x

    def _cast(self, state: torch.Tensor) -> None:
        parameter = next(self.cell.parameters(), None)
        if parameter is not None and parameter.dtype != state.dtype:
            raise TypeError(
                f"h0/x are {state.dtype} but the model's parameters are {parameter.dtype}; "
                f"convert one of them (e.g. model.to({state.dtype}))"
            )

    def step(self, state: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
        return self.step_with_jacobian(state, x)[0]

    def jacobian(self, state: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
        return self.step_with_jacobian(state, x)[1]

    def step_with_jacobian(self, state, x=None):
        self._cast(state)
        return self.cell.step_with_jacobian(state, x, self.full_state)
