"""lyapbook's cells (one, or a :class:`~lyapbook.rnn.cells.StackedCells`) seen by the engine."""

from __future__ import annotations

import torch

from ..systems import DynamicalSystem
from .cells import RecurrentCell, StackedCells
from .stack import advance_stack, check_finite_parameters

__all__ = ["CellSystem"]


class CellSystem(DynamicalSystem):
    """Wraps a cell or a stack of cells; steps are deterministic (no training noise).

    The Jacobian of a stack is block lower-triangular (Eq. 2.6), as for ``num_layers`` > 1.
    """

    def __init__(self, model: RecurrentCell | StackedCells, full_state: bool = False):
        check_finite_parameters(model)
        self.model, self.full_state = model, bool(full_state)
        self.cells = list(model.cells) if isinstance(model, StackedCells) else [model]
        self.state_dim, self.input_dim, self.batch_first = model.state_size, model.input_size, model.batch_first

    @property
    def tangent_dim(self) -> int:
        return sum(cell.tangent_size(self.full_state) for cell in self.cells)

    def tangent_index(self) -> torch.Tensor:
        """Positions in the state of the coordinates the Jacobian differentiates."""
        parts, start = [], 0
        for cell in self.cells:
            parts.append(torch.arange(start, start + cell.tangent_size(self.full_state)))
            start += cell.state_size
        return torch.cat(parts)

    def initial_state(self, batch=1, *, dtype=torch.float64, device="cpu"):
        like = torch.empty(0, dtype=dtype, device=device)
        return torch.cat([cell.initial_state(batch, like) for cell in self.cells], dim=-1)

    def step(self, state: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
        return self._advance(state, x, with_jacobian=False)[0]

    def jacobian(self, state: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
        return self._advance(state, x, with_jacobian=True)[1]

    def step_with_jacobian(self, state, x=None):
        return self._advance(state, x, with_jacobian=True)

    def _advance(self, state: torch.Tensor, x: torch.Tensor | None, with_jacobian: bool):
        parameter = next(self.model.parameters(), None)
        if parameter is not None and parameter.dtype != state.dtype:
            raise TypeError(
                f"h0/x are {state.dtype} but the model's parameters are {parameter.dtype}; "
                f"convert one of them (e.g. model.to({state.dtype}))"
            )

        def layer(cell: RecurrentCell):
            def step(layer_state, layer_input, need_input):
                return cell.step_with_jacobians(layer_state, layer_input, self.full_state, need_input)

            return step

        return advance_stack(
            state, x, [layer(cell) for cell in self.cells], [cell.state_size for cell in self.cells],
            [cell.tangent_size(self.full_state) for cell in self.cells],
            [cell.hidden_size for cell in self.cells], with_jacobian,
        )
