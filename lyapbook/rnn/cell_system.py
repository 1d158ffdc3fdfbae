"""lyapbook's cells (one, or a :class:`~lyapbook.rnn.cells.StackedCells`) seen by the engine."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..systems import DynamicalSystem
from .cells import RecurrentCell, StackedCells
from .parameters import effective_tensors, raw_version
from .stack import check_finite_parameters, stack_apply, stack_input_jacobian, stack_jacobian

__all__ = ["CellSystem"]


class CellSystem(DynamicalSystem):
    """Wraps a cell or a stack of cells; steps are deterministic (no training noise).

    The Jacobian of a stack is block lower-triangular (Eq. 2.6), as for ``num_layers`` > 1.
    A group of models of one configuration (:meth:`CellSystem.group`) is one system whose
    tensors carry a leading network axis; its batch holds each network's sequences in turn.
    """

    unbatched_input = True

    def __init__(self, model: RecurrentCell | StackedCells, full_state: bool = False, *, differentiable: bool = False):
        check_finite_parameters(model)
        self.model, self.differentiable = model, bool(differentiable)
        self.cells = list(model.cells) if isinstance(model, StackedCells) else [model]
        # a network without auxiliary state (ASRNN, Lipschitz, ...) has its hidden vector as full state
        self.full_state = bool(full_state) and any(cell.aux_size for cell in self.cells)
        self.prefixes = [f"cells.{k}." for k in range(len(self.cells))] if isinstance(model, StackedCells) else [""]
        self.state_dim, self.input_dim, self.batch_first = model.state_size, model.input_size, model.batch_first
        self.groups: int | None = None
        self._stacked: dict[str, torch.Tensor] | None = None
        self._cache_key: tuple | None = None
        self._cache: list[dict[str, torch.Tensor]] = []

    @classmethod
    def group(
        cls, models: Sequence[RecurrentCell | StackedCells], full_state: bool = False, *, differentiable: bool = False
    ) -> CellSystem:
        """One system for G models of one configuration, each with its own tensors (stacked to (G, ...)
        when the group is made). The caller checks that the configurations agree."""
        systems = [cls(model, full_state, differentiable=differentiable) for model in models]
        system = systems[0]
        names = list(_named_tensors(system.model, differentiable))
        per_model = [_named_tensors(model, differentiable) for model in models]
        system._stacked = {name: torch.stack([tensors[name] for tensors in per_model]) for name in names}
        system.groups = len(models)
        return system

    @property
    def tangent_dim(self) -> int:
        return sum(cell.tangent_size(self.full_state) for cell in self.cells)

    @property
    def dtype(self) -> torch.dtype | None:
        parameter = next(self.model.parameters(), None)
        return None if parameter is None else parameter.dtype

    @property
    def device(self) -> torch.device | None:
        parameter = next(self.model.parameters(), None)
        return None if parameter is None else parameter.device

    @property
    def state_description(self) -> str:
        """How the flat state is made up, for error messages."""
        return "the cells' states concatenated: " + " + ".join(f"{type(c).__name__} {c.state_size}" for c in self.cells)

    def tangent_index(self) -> torch.Tensor:
        """Positions in the state of the coordinates the Jacobian differentiates."""
        parts, start = [], 0
        for cell in self.cells:
            parts.append(torch.arange(start, start + cell.tangent_size(self.full_state)))
            start += cell.state_size
        return torch.cat(parts)

    def prefers_matrix_free(self, k: int) -> bool:
        """Apply J to k vectors without forming it when k <= n / 8 (see :meth:`TorchRNN.prefers_matrix_free`)."""
        return 8 * k <= self.tangent_dim

    def initial_state(self, batch=1, *, dtype=torch.float64, device="cpu"):
        like = torch.empty(0, dtype=dtype, device=device)
        return torch.cat([cell.initial_state(batch, like) for cell in self.cells], dim=-1)

    def tensors(self) -> dict[str, torch.Tensor]:
        """The model's parameters and buffers by name (detached unless ``differentiable``), or stacked (G, ...) for a group."""
        return self._stacked if self._stacked is not None else _named_tensors(self.model, self.differentiable)

    def step(self, state: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
        return self._advance(state, x, linearize=False)[0]

    def jacobian(self, state: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
        return stack_jacobian(self._advance(state, x)[1])

    def step_with_jacobian(self, state, x=None):
        new_state, layers = self._advance(state, x)
        return new_state, stack_jacobian(layers)

    def step_with_tangent(self, state, x, tangent, *, transpose=False):
        """(next state, J @ tangent) without forming J; ``transpose=True`` forms J and returns J^T @ tangent."""
        if transpose:
            return super().step_with_tangent(state, x, tangent, transpose=True)
        new_state, layers = self._advance(state, x)
        return new_state, stack_apply(layers, tangent.mT).mT

    def input_jacobian(self, state: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
        """d(tangent coordinates of the next state)/d(x_t), (batch, tangent_dim, input_dim), every layer."""
        if self.input_dim == 0:
            raise ValueError(f"{type(self.model).__name__} has no input (input_size=0): there is no input Jacobian")
        return stack_input_jacobian(self._advance(state, x)[1])

    def _per_cell_tensors(self) -> list[dict[str, torch.Tensor]]:
        """Each cell's tensors under its own names, with its derived matrices; rebuilt only when a
        parameter changes (in place or replaced), so a run of many steps builds them once."""
        key = (raw_version(self.model), self._stacked is not None)
        if self.differentiable and torch.is_grad_enabled():
            key = None  # a graph is being built: every step builds its own (a cached one could be freed by backward)
        if key is None or key != self._cache_key:
            tensors = self.tensors()
            per_cell = []
            for cell, prefix in zip(self.cells, self.prefixes):
                local = {name[len(prefix) :]: value for name, value in tensors.items() if name.startswith(prefix)}
                per_cell.append({**local, **cell.derived(local)})
            self._cache_key, self._cache = key, per_cell
        return self._cache

    def _advance(self, state: torch.Tensor, x: torch.Tensor | None, linearize: bool = True):
        new_states, linearizations, layer_input, start = [], [], x, 0
        for cell, local in zip(self.cells, self._per_cell_tensors()):
            layer_state = state[:, start : start + cell.state_size]
            new_state, linearization = cell.linearize(local, layer_state, layer_input, self.full_state, linear_part=linearize)
            new_states.append(new_state)
            linearizations.append(linearization)
            layer_input = new_state[:, : cell.hidden_size]
            start += cell.state_size
        return torch.cat(new_states, dim=-1), linearizations


def _named_tensors(model: torch.nn.Module, differentiable: bool) -> dict[str, torch.Tensor]:
    """Parameters and buffers as the model computes with them (detached unless ``differentiable``)."""
    return effective_tensors(model, buffers=True, detach=not differentiable)
