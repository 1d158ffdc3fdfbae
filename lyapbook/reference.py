"""References by automatic differentiation and by the module's own forward: what the analytic
Jacobians and the spectra are checked against, and the baselines they are timed against
(``python -m lyapbook.bench``). One implementation, used by the tests, the benchmark and the
chapters, and open to a user who wants to check a system of their own:

- :func:`autograd_jacobian` and :func:`autograd_input_jacobian`: d(next state)/d(state) and
  d(next state)/d(x_t) by autograd through the model's *own* code path (``nn.LSTM.forward`` for
  one step, a cell's training step ``cell_step``, or a :class:`~lyapbook.systems.DynamicalSystem`'s
  ``step``), not lyapbook's linearisation, so that agreement is evidence. Compare your system's
  ``jacobian`` with ``autograd_jacobian(your_system, h, x_t)``.
- :func:`twin_trajectory_exponent`: the growth rate of a small perturbation carried by a second
  run of the model's own forward (Benettin's two-trajectory method): lambda_1 of the full state,
  with no Jacobian at all.

States use the engine's flat layout (batch, state_dim): the layers' states concatenated, layer 1
first; an LSTM layer's state is (h, c), a coRNN's and a LEM's (y, z). The differentiated
coordinates are those of ``state`` (``"full"`` by default; ``"hidden"`` holds an LSTM's c, a
coRNN's and a LEM's z fixed). Put a module with dropout in eval mode first: its forward applies
dropout in training mode, the engine never does.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch

from .rnn import CellSystem, TorchRNN, as_system
from .systems import DynamicalSystem

__all__ = ["AutogradSystem", "BASELINES", "autograd_input_jacobian", "autograd_jacobian", "reference_step",
           "twin_trajectory_exponent"]

BASELINES = ("autograd", "autograd per sequence", "torch.func")


def reference_step(model: object, state: str | None = None) -> tuple[DynamicalSystem, Callable]:
    """(the model's system over its ``state`` coordinates, step(h, x_t) -> next h) through the model's own forward code."""
    system = as_system(model, state)
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
    model: object, h: torch.Tensor, x_t: torch.Tensor | None = None, *, state: str | None = None,
    how: str = "autograd",
) -> torch.Tensor:
    """d(tangent coordinates of the next state)/d(tangent coordinates of ``h``), (batch, n, n).

    Args:
        model: a supported network or a DynamicalSystem.
        h: (batch, state_dim); x_t: (batch, input_dim) or None.
        state: which coordinates are differentiated (``"full"``, the default, or ``"hidden"``).
        how: ``"autograd"``: one ``torch.autograd.functional.jacobian`` of the batch-summed
            step (rows are independent, so d(sum_b F_b)/dh holds every row's Jacobian);
            ``"autograd per sequence"``: one autograd Jacobian per row, the way the
            dissertation's baseline computed it; ``"torch.func"``: ``vmap(jacrev(step))``.
    """
    system, step = reference_step(model, state)
    state = h
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


def autograd_input_jacobian(model: object, h: torch.Tensor, x_t: torch.Tensor, *, state: str | None = None) -> torch.Tensor:
    """d(tangent coordinates of the next state)/d(x_t), (batch, n, input_dim), by autograd through the model's forward."""
    system, step = reference_step(model, state)
    index = _tangent_index(system, h.device)
    summed = torch.autograd.functional.jacobian(lambda x: step(h, x)[..., index].sum(0), x_t)
    return summed.permute(1, 0, 2)


class AutogradSystem(DynamicalSystem):
    """A network whose Jacobians come from autograd (``how`` as in :func:`autograd_jacobian`):
    the engine run with the baselines' Jacobians, for timing and for checking whole spectra."""

    def __init__(self, model: object, how: str = "autograd", state: str | None = None):
        if how not in BASELINES:
            raise ValueError(f"how must be one of {BASELINES}, got {how!r}")
        self.model, self.how, self.state = model, how, state
        self.inner, self._step = reference_step(model, state)
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
            return autograd_jacobian(self.model, state, x, state=self.state, how=self.how)

    def step_with_jacobian(self, state, x=None):
        return self.step(state, x), self.jacobian(state, x)



@torch.no_grad()
def twin_trajectory_exponent(
    model: object, x: torch.Tensor | int, h0: torch.Tensor | tuple | None = None, *, warmup: int = 0,
    separation: float = 1e-8, seed: int = 0,
) -> torch.Tensor:
    """lambda_1 of each sequence from a twin run of the model's own forward, without any Jacobian.

    Benettin's two-trajectory method: a second state starts ``separation`` away (relative to
    the state's size, in a seeded random direction over *every* coordinate the model carries),
    both run through the model's own step (``nn.LSTM.forward``, a cell's ``cell_step``, a
    system's ``step``), and after each step the log of their distance's growth is added and
    the twin is pulled back to ``separation``. The mean growth after ``warmup`` steps is the
    largest Lyapunov exponent of the map the module computes (per step, per unit time for a
    flow), up to finite-time noise: what ``lyapunov_spectrum(model, x, h0, warmup=warmup).exponents[0]``
    estimates with the default ``state="full"``. Use float64: ``separation`` must be far
    above the rounding of the state and small enough for the growth to stay linear.

    Args:
        model, x, h0: as for :func:`lyapbook.lyapunov_spectrum`.

    Returns:
        (batch,) one estimate per sequence.
    """
    from .tangent import prepare_run

    run = prepare_run(model, x, h0, warmup=warmup)
    system, step = reference_step(model) if not isinstance(model, DynamicalSystem) else (model, model.step)
    state = run.state
    generator = torch.Generator().manual_seed(seed)
    direction = torch.randn(state.shape, generator=generator, dtype=torch.float64).to(state)
    scale = separation * state.norm(dim=-1, keepdim=True).clamp_min(1.0)
    twin = state + scale * direction / direction.norm(dim=-1, keepdim=True)
    total = torch.zeros(state.shape[0], dtype=torch.float64, device=state.device)
    for t in range(run.steps):
        x_t = None if run.inputs is None else run.inputs[:, t]
        state, twin = step(state, x_t), step(twin, x_t)
        gap = twin - state
        distance = gap.norm(dim=-1, keepdim=True)
        if t >= warmup:
            total += (distance / scale).squeeze(-1).log().to(torch.float64)
        twin = state + gap * (scale / distance)
    return total / ((run.steps - warmup) * system.dt)
