"""Reference Jacobians by automatic differentiation: what the analytic ones are checked against, and
the baselines they are timed against (``python -m lyapbook.bench``). One implementation, used by
the tests, the benchmark and the chapters.

For a network the reference differentiates the module's *own* code path (``nn.LSTM.forward``
for one step, a cell's training step ``cell_step``), not lyapbook's linearisation, so that
agreement is evidence. States use the engine's flat layout (batch, state_dim); the
differentiated coordinates are the system's tangent coordinates (an LSTM's c is held fixed
unless ``full_state``). Put a module with dropout in eval mode first: its forward applies dropout
in training mode, the engine never does.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch

from .rnn import CellSystem, TorchRNN, as_system
from .systems import DynamicalSystem

__all__ = ["AutogradSystem", "BASELINES", "autograd_input_jacobian", "autograd_jacobian", "reference_step"]

BASELINES = ("autograd", "autograd per sequence", "torch.func")


def reference_step(model: object, full_state: bool = False) -> tuple[DynamicalSystem, Callable]:
    """(the model's system, step(state, x_t) -> next state) through the model's own forward code."""
    system = as_system(model, full_state)
    if isinstance(system, TorchRNN):
        module = system.module

        def step(state, x_t):
            x = x_t.unsqueeze(1) if module.batch_first else x_t.unsqueeze(0)
            _, new = module(x, system.state_to_module(state))
            return system.state_from_module(new)

        return system, step
    if isinstance(system, CellSystem):
        cells = system.cells

        def step(state, x_t):
            new, start, layer_input = [], 0, x_t
            for cell in cells:
                layer_new = cell.cell_step(state[:, start : start + cell.state_size], layer_input)
                new.append(layer_new)
                layer_input = layer_new[:, : cell.hidden_size]
                start += cell.state_size
            return torch.cat(new, dim=-1)

        return system, step
    return system, system.step


def _tangent_index(system: DynamicalSystem, device: torch.device) -> torch.Tensor:
    index = system.tangent_index() if hasattr(system, "tangent_index") else torch.arange(system.tangent_dim)
    return index.to(device)


def autograd_jacobian(
    model: object, state: torch.Tensor, x_t: torch.Tensor | None = None, *, full_state: bool = False,
    how: str = "autograd",
) -> torch.Tensor:
    """d(tangent coordinates of the next state)/d(tangent coordinates of ``state``), (batch, n, n).

    Args:
        model: a supported network or a DynamicalSystem.
        state: (batch, state_dim); x_t: (batch, input_dim) or None.
        how: ``"autograd"``: one ``torch.autograd.functional.jacobian`` of the batch-summed
            step (rows are independent, so d(sum_b F_b)/dh holds every row's Jacobian);
            ``"autograd per sequence"``: one autograd Jacobian per row, the way the
            dissertation's baseline computed it; ``"torch.func"``: ``vmap(jacrev(step))``.
    """
    system, step = reference_step(model, full_state)
    index = _tangent_index(system, state.device)

    def moved(tangent, carried, xt):
        """F restricted to the differentiated coordinates (the others held fixed)."""
        return step(carried.index_copy(-1, index, tangent), xt)[..., index]

    if how == "autograd":
        summed = torch.autograd.functional.jacobian(lambda h: moved(h, state, x_t).sum(0), state[:, index])
        return summed.permute(1, 0, 2)
    if how == "autograd per sequence":
        rows = []
        for b in range(state.shape[0]):
            xb = None if x_t is None else x_t[b : b + 1]
            rows.append(torch.autograd.functional.jacobian(lambda h: moved(h, state[b : b + 1], xb)[0], state[b : b + 1, index])[:, 0])
        return torch.stack(rows)
    if how == "torch.func":

        def single(h, carried, xt):
            return moved(h.unsqueeze(0), carried.unsqueeze(0), None if xt is None else xt.unsqueeze(0)).squeeze(0)

        in_dims = (0, 0, None if x_t is None else 0)
        with warnings.catch_warnings():  # PyTorch notes that its fused RNN kernels have no vmap rule (a slow fallback)
            warnings.filterwarnings("ignore", message="There is a performance drop")
            return torch.func.vmap(torch.func.jacrev(single), in_dims=in_dims)(state[:, index], state, x_t)
    raise ValueError(f"how must be one of {BASELINES}, got {how!r}")


def autograd_input_jacobian(model: object, state: torch.Tensor, x_t: torch.Tensor, *, full_state: bool = False) -> torch.Tensor:
    """d(tangent coordinates of the next state)/d(x_t), (batch, n, input_dim), by autograd through the model's forward."""
    system, step = reference_step(model, full_state)
    index = _tangent_index(system, state.device)
    summed = torch.autograd.functional.jacobian(lambda x: step(state, x)[..., index].sum(0), x_t)
    return summed.permute(1, 0, 2)


class AutogradSystem(DynamicalSystem):
    """A network whose Jacobians come from autograd (``how`` as in :func:`autograd_jacobian`):
    the engine run with the baselines' Jacobians, for timing and for checking whole spectra."""

    def __init__(self, model: object, how: str = "autograd", full_state: bool = False):
        if how not in BASELINES:
            raise ValueError(f"how must be one of {BASELINES}, got {how!r}")
        self.model, self.how, self.full_state = model, how, full_state
        self.inner, self._step = reference_step(model, full_state)
        self.state_dim, self.input_dim, self.dt = self.inner.state_dim, self.inner.input_dim, self.inner.dt
        self.batch_first = self.inner.batch_first

    @property
    def tangent_dim(self) -> int:
        return self.inner.tangent_dim

    @property
    def dtype(self) -> torch.dtype | None:
        return self.inner.dtype

    @property
    def device(self) -> torch.device | None:
        return self.inner.device

    def prepare(self, x, h0):
        return self.inner.prepare(x, h0)

    def initial_state(self, batch=1, *, dtype=torch.float64, device="cpu"):
        return self.inner.initial_state(batch, dtype=dtype, device=device)

    def step(self, state, x=None):
        with torch.no_grad():
            return self._step(state, x)

    def jacobian(self, state, x=None):
        with torch.enable_grad():
            return autograd_jacobian(self.model, state, x, full_state=self.full_state, how=self.how)

    def step_with_jacobian(self, state, x=None):
        return self.step(state, x), self.jacobian(state, x)

