"""The dissertation's other recurrent cells (its ch. 3, Appendix C), as trainable modules.

Each cell is an ``nn.Module`` that trains like any PyTorch RNN: ``forward(x, state=None)``
takes inputs (batch, time, input_size) (``batch_first`` is the default here) and returns
(outputs, final_state), with outputs (batch, time, hidden_size), or (batch, time, output_size)
through an optional linear ``readout``. Each also provides :meth:`RecurrentCell.step_with_jacobian`,
the analytic Jacobian of one step used by the Lyapunov engine.

State layout (batch, state_size): the hidden vector first, then any auxiliary state (coRNN's
and LEM's z). With ``full_state=False`` the Jacobian covers the hidden vector only (the
auxiliary state is held fixed when differentiating); with ``full_state=True`` it covers all.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import nn

from .functional import linear, per_row, scale_rows, scaled, weight_matmul
from .parameters import effective_tensors
from .stack import LayerLinearization

__all__ = ["RecurrentCell", "AntisymmetricRNN", "CoRNN", "LipschitzRNN", "NoisyRNN", "LEM", "Rank1Reservoir", "StackedCells"]


def _plus_diagonal(matrix: torch.Tensor, values: torch.Tensor | float) -> torch.Tensor:
    """matrix + diag(values), in place on the batch of matrices (batch, n, n)."""
    matrix.diagonal(dim1=-2, dim2=-1).add_(values)
    return matrix


def _uniform_(module: nn.Module, scale: float) -> None:
    for parameter in module.parameters():
        nn.init.uniform_(parameter, -scale, scale)


def _total(*terms: torch.Tensor | None) -> torch.Tensor:
    """The sum of the terms that are not None (a zero tangent contributes nothing)."""
    present = [term for term in terms if term is not None]
    total = present[0]
    for term in present[1:]:
        total = total + term
    return total


def _rows(coef: torch.Tensor) -> torch.Tensor:
    """A per-row coefficient (B, c) broadcast over the K tangent rows of (B, K, c)."""
    return coef.unsqueeze(1)


def _maybe_linear(v: torch.Tensor | None, weight: torch.Tensor | None) -> torch.Tensor | None:
    return None if v is None or weight is None else linear(v, weight)


Tensors = Mapping[str, torch.Tensor]


class RecurrentCell(nn.Module):
    """Shared sequence loop, readout and state handling; subclasses define one step.

    A subclass writes its step once, as a function of a mapping of its tensors (parameters and
    buffers by name, :meth:`tensors`): :meth:`linearize` returns the new state and the step's
    :class:`~lyapbook.rnn.stack.LayerLinearization`, used by the Lyapunov engine; the training
    step :meth:`cell_step` runs the same arithmetic on the cell's own parameters. The tensors
    may carry a leading network axis (G, ...) to run a group of cells of one configuration at
    once (see :mod:`lyapbook.rnn.functional`).
    """

    hidden_size: int
    input_size: int
    aux_size: int = 0  # size of the auxiliary state after the hidden vector

    def __init__(self, input_size: int, hidden_size: int, output_size: int | None, batch_first: bool):
        super().__init__()
        if hidden_size < 1 or input_size < 0:
            raise ValueError(f"hidden_size must be >= 1 and input_size >= 0, got {hidden_size} and {input_size}")
        self.input_size, self.hidden_size, self.batch_first = input_size, hidden_size, batch_first
        self.readout = nn.Linear(hidden_size, output_size) if output_size else None

    @property
    def state_size(self) -> int:
        return self.hidden_size + self.aux_size

    def tangent_size(self, full_state: bool) -> int:
        return self.state_size if full_state else self.hidden_size

    def initial_state(self, batch: int, like: torch.Tensor) -> torch.Tensor:
        return like.new_zeros(batch, self.state_size)

    def tensors(self) -> dict[str, torch.Tensor]:
        """The cell's parameters and buffers by name (``W.weight``, ...) as :meth:`linearize` takes them:
        parametrized, pruned or normalised tensors as the cell computes with them, with their graph
        (:func:`~lyapbook.rnn.parameters.effective_tensors`)."""
        return effective_tensors(self, buffers=True, detach=False)

    def derived(self, p: Tensors) -> dict[str, torch.Tensor]:
        """Matrices the step builds from its parameters (keys starting with ``~``), which a caller running
        many steps with unchanged parameters may compute once and add to ``p``; none by default."""
        return {}

    def cell_step(self, state: torch.Tensor, x_t: torch.Tensor | None) -> torch.Tensor:
        """One differentiable step (batch, state_size) -> (batch, state_size); used for training."""
        return self.linearize(self.tensors(), state, x_t, linear_part=False)[0]

    def linearize(
        self, p: Tensors, state: torch.Tensor, x_t: torch.Tensor | None, full_state: bool = False, *, linear_part: bool = True
    ) -> tuple[torch.Tensor, LayerLinearization | None]:
        """One deterministic step with the tensors ``p`` and, unless ``linear_part=False``, its linearisation
        (over the hidden vector, or the whole state with ``full_state``)."""
        raise NotImplementedError

    def step_with_jacobian(
        self, state: torch.Tensor, x_t: torch.Tensor | None, full_state: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One step without noise and its analytic Jacobian (batch, n, n), n = tangent_size."""
        new_state, jac, _ = self.step_with_jacobians(state, x_t, full_state, need_input=False)
        return new_state, jac

    @torch.no_grad()
    def step_with_jacobians(
        self, state: torch.Tensor, x_t: torch.Tensor | None, full_state: bool = False, need_input: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """As :meth:`step_with_jacobian`, plus d(tangent)/d(x_t) (batch, n, input_size) if ``need_input``."""
        new_state, linearization = self.linearize(self.tensors(), state, x_t, full_state)
        return new_state, linearization.own(), linearization.wrt_input() if need_input else None

    def forward(self, x: torch.Tensor, state: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if self.input_size and (x.ndim != 3 or x.shape[-1] != self.input_size):
            layout = "(batch, time, features)" if self.batch_first else "(time, batch, features)"
            raise ValueError(f"x must have shape {layout} with {self.input_size} features, got {tuple(x.shape)}")
        sequence = x if self.batch_first else x.transpose(0, 1)
        if state is None:
            state = self.initial_state(sequence.shape[0], sequence)
        hidden = []
        for t in range(sequence.shape[1]):
            state = self.cell_step(state, sequence[:, t] if self.input_size else None)
            hidden.append(state[:, : self.hidden_size])
        outputs = torch.stack(hidden, dim=1)
        if self.readout is not None:
            outputs = self.readout(outputs)
        return (outputs if self.batch_first else outputs.transpose(0, 1)), state

    @staticmethod
    def _drive(p: Tensors, name: str, x_t: torch.Tensor | None) -> torch.Tensor | float:
        """The input layer ``name`` (an nn.Linear's weight and bias in p) applied to x_t; 0 without input."""
        weight = p.get(f"{name}.weight")
        return linear(x_t, weight, p.get(f"{name}.bias")) if weight is not None and x_t is not None else 0.0


class _DiffusiveLinearization(LayerLinearization):
    """h' = h + diag(s) (M h + V x) + (drift h): the antisymmetric and Lipschitz cells.

    A = I + diag(s) M (+ drift), D = diag(s) V; ``drift`` is a matrix added unscaled (dt A of
    the Lipschitz cell) or None.
    """

    def __init__(self, slope, matrix, input_weight, drift=None):
        self.slope, self.matrix, self.input_weight, self.drift = slope, matrix, input_weight, drift
        self.size = self.hidden = slope.shape[-1]

    def own(self):
        jac = scaled(self.slope, self.matrix)
        if self.drift is not None:
            jac = jac + per_row(self.drift, jac.shape[0], 2)
        return _plus_diagonal(jac, 1.0)

    def wrt_input(self):
        return scaled(self.slope, self.input_weight)

    def act(self, v, w):
        through_slope = _total(_maybe_linear(v, self.matrix), _maybe_linear(w, self.input_weight)) * _rows(self.slope)
        if v is None:
            return through_slope
        return _total(v, through_slope, _maybe_linear(v, self.drift))


class AntisymmetricRNN(RecurrentCell):
    """Antisymmetric RNN (Chang et al., 2019): h_t = h_{t-1} + eps tanh((W - W^T - gamma I) h_{t-1} + V x_t + b).

    The recurrent matrix's antisymmetric part keeps the Jacobian's eigenvalues near the unit
    circle; ``gamma`` (diffusion) damps, ``eps`` is the step size.
    """

    def __init__(self, input_size, hidden_size, *, eps=0.01, gamma=0.01, bias=True, output_size=None, batch_first=True, init_scale=None):
        super().__init__(input_size, hidden_size, output_size, batch_first)
        self.eps, self.gamma = float(eps), float(gamma)
        self.W = nn.Parameter(torch.empty(hidden_size, hidden_size))
        self.V = nn.Linear(input_size, hidden_size, bias=bias) if input_size else None
        nn.init.normal_(self.W, 0.0, 1.0 / math.sqrt(hidden_size))
        if init_scale is not None:
            _uniform_(self, init_scale)

    def _matrix(self, p: Tensors) -> torch.Tensor:
        if "~matrix" in p:
            return p["~matrix"]
        W = p["W"]
        eye = torch.eye(self.hidden_size, dtype=W.dtype, device=W.device)
        return W - W.mT - self.gamma * eye

    def derived(self, p):
        return {"~matrix": self._matrix(p)}

    def recurrent_matrix(self) -> torch.Tensor:
        return self._matrix(self.tensors())

    def linearize(self, p, state, x_t, full_state=False, *, linear_part=True):
        matrix = self._matrix(p)
        activation = torch.tanh(linear(state, matrix) + self._drive(p, "V", x_t))
        new_state = state + self.eps * activation
        if not linear_part:
            return new_state, None
        slope = self.eps * (1.0 - activation * activation)
        return new_state, _DiffusiveLinearization(slope, matrix, p.get("V.weight"))


class _CoRNNLinearization(LayerLinearization):
    """z' = z + dt (tanh(W y + W_z z + V u + b) - gamma y - eps z), y' = y + dt z':
    dz'/dy = s W - dt gamma I, dz'/dz = s W_z + (1 - dt eps) I, dz'/du = s V (s = dt tanh'),
    dy'/dv = dt dz'/dv (+ I for v = y)."""

    def __init__(self, cell, slope, p, full_state):
        self.cell, self.slope, self.full_state = cell, slope, full_state
        self.W, self.W_z, self.V = p["W.weight"], p["W_z.weight"], p.get("V.weight")
        self.hidden = slope.shape[-1]
        self.size = 2 * self.hidden if full_state else self.hidden

    def own(self):
        cell = self.cell
        dz_dy = _plus_diagonal(scaled(self.slope, self.W), -cell.dt * cell.gamma)
        dy_dy = _plus_diagonal(cell.dt * dz_dy, 1.0)
        if not self.full_state:
            return dy_dy
        dz_dz = _plus_diagonal(scaled(self.slope, self.W_z), 1.0 - cell.dt * cell.eps)
        top = torch.cat([dy_dy, cell.dt * dz_dz], dim=-1)
        bottom = torch.cat([dz_dy, dz_dz], dim=-1)
        return torch.cat([top, bottom], dim=-2)

    def wrt_input(self):
        dz_du = scaled(self.slope, self.V)
        if not self.full_state:
            return self.cell.dt * dz_du
        return torch.cat([self.cell.dt * dz_du, dz_du], dim=-2)

    def act(self, v, w):
        cell, n = self.cell, self.hidden
        v_y = None if v is None else v[..., :n]
        v_z = v[..., n:] if self.full_state and v is not None else None
        dz = _total(_maybe_linear(v_y, self.W), _maybe_linear(v_z, self.W_z), _maybe_linear(w, self.V)) * _rows(self.slope)
        if v_y is not None:
            dz = dz - (cell.dt * cell.gamma) * v_y
        if v_z is not None:
            dz = dz + (1.0 - cell.dt * cell.eps) * v_z
        dy = cell.dt * dz if v_y is None else v_y + cell.dt * dz
        return torch.cat([dy, dz], dim=-1) if self.full_state else dy


class CoRNN(RecurrentCell):
    """Coupled oscillatory RNN (Rusch and Mishra, 2021), hidden y and velocity z:

        z_t = z_{t-1} + dt (tanh(W y_{t-1} + W_z z_{t-1} + V u_t + b) - gamma y_{t-1} - eps z_{t-1}),
        y_t = y_{t-1} + dt z_t.
    """

    def __init__(self, input_size, hidden_size, *, dt=0.042, gamma=2.7, eps=4.7, bias=True, output_size=None, batch_first=True, init_scale=None):
        super().__init__(input_size, hidden_size, output_size, batch_first)
        self.aux_size = hidden_size
        self.dt, self.gamma, self.eps = float(dt), float(gamma), float(eps)
        self.W = nn.Linear(hidden_size, hidden_size, bias=False)
        self.W_z = nn.Linear(hidden_size, hidden_size, bias=False)
        self.V = nn.Linear(input_size, hidden_size, bias=bias) if input_size else None
        if init_scale is not None:
            _uniform_(self, init_scale)

    def linearize(self, p, state, x_t, full_state=False, *, linear_part=True):
        n = self.hidden_size
        y, z = state[:, :n], state[:, n:]
        activation = torch.tanh(linear(y, p["W.weight"]) + linear(z, p["W_z.weight"]) + self._drive(p, "V", x_t))
        new_z = z + self.dt * (activation - self.gamma * y - self.eps * z)
        new_state = torch.cat([y + self.dt * new_z, new_z], dim=-1)
        if not linear_part:
            return new_state, None
        slope = self.dt * (1.0 - activation * activation)
        return new_state, _CoRNNLinearization(self, slope, p, full_state)


class LipschitzRNN(RecurrentCell):
    """Lipschitz RNN (Erichson et al., 2021), forward Euler with step ``dt``:

        h_t = h_{t-1} + dt (A h_{t-1} + tanh(W h_{t-1} + U x_t + b)),
        A = (1 - beta_A)(M_A + M_A^T) + beta_A (M_A - M_A^T) - gamma_A I, and W likewise.
    """

    def __init__(
        self, input_size, hidden_size, *, dt=0.1, beta_a=0.75, gamma_a=0.001, beta_w=0.75, gamma_w=0.001,
        bias=True, output_size=None, batch_first=True, init_scale=None,
    ):
        super().__init__(input_size, hidden_size, output_size, batch_first)
        self.dt, self.beta_a, self.gamma_a, self.beta_w, self.gamma_w = map(float, (dt, beta_a, gamma_a, beta_w, gamma_w))
        self.M_A = nn.Parameter(torch.empty(hidden_size, hidden_size))
        self.M_W = nn.Parameter(torch.empty(hidden_size, hidden_size))
        self.U = nn.Linear(input_size, hidden_size, bias=bias) if input_size else None
        nn.init.normal_(self.M_A, 0.0, 1.0 / math.sqrt(hidden_size))
        nn.init.normal_(self.M_W, 0.0, 1.0 / math.sqrt(hidden_size))
        if init_scale is not None:
            _uniform_(self, init_scale)

    @staticmethod
    def _compose(M: torch.Tensor, beta: float, gamma: float) -> torch.Tensor:
        eye = torch.eye(M.shape[-1], dtype=M.dtype, device=M.device)
        return (1.0 - beta) * (M + M.mT) + beta * (M - M.mT) - gamma * eye

    def _matrices(self, p: Tensors) -> tuple[torch.Tensor, torch.Tensor]:
        if "~A" in p:
            return p["~A"], p["~W"]
        return self._compose(p["M_A"], self.beta_a, self.gamma_a), self._compose(p["M_W"], self.beta_w, self.gamma_w)

    def derived(self, p):
        A, W = self._matrices(p)
        return {"~A": A, "~W": W}

    def matrices(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self._matrices(self.tensors())

    def linearize(self, p, state, x_t, full_state=False, *, linear_part=True):
        A, W = self._matrices(p)
        activation = torch.tanh(linear(state, W) + self._drive(p, "U", x_t))
        new_state = state + self.dt * (linear(state, A) + activation)
        if not linear_part:
            return new_state, None
        slope = self.dt * (1.0 - activation * activation)
        return new_state, _DiffusiveLinearization(slope, W, p.get("U.weight"), drift=self.dt * A)


class NoisyRNN(LipschitzRNN):
    """Noisy RNN (Lim et al., 2021): the Lipschitz RNN's update with noise injected in training,

        h_t = h_{t-1} + dt f(h_{t-1}, x_t) + sqrt(dt) (sigma_add xi + sigma_mult h_{t-1} * xi'),

    xi, xi' standard normal. In evaluation mode (and in the Lyapunov engine) it is deterministic.
    """

    def __init__(self, input_size, hidden_size, *, sigma_add=0.05, sigma_mult=0.02, **kwargs):
        super().__init__(input_size, hidden_size, **kwargs)
        self.sigma_add, self.sigma_mult = float(sigma_add), float(sigma_mult)

    def cell_step(self, state, x_t):
        new_state = super().cell_step(state, x_t)
        if self.training:
            root_dt = math.sqrt(self.dt)
            new_state = new_state + root_dt * (
                self.sigma_add * torch.randn_like(state) + self.sigma_mult * state * torch.randn_like(state)
            )
        return new_state


class _LEMLinearization(LayerLinearization):
    """A variable v (y_{n-1} or u_n) enters through gate 1, gate 2, the z-candidate, the y-candidate:
    dz_n/dv = diag(coef1) M_1 + diag(coef_z) M_z,
    dy_n/dv = diag(coef2) M_2 + diag(through_z) (M_y + W_y dz_n/dv)   (M = W for y, V for u);
    with the full state also dz_n/dz = diag(1 - dt_n), dy_n/dz = diag(through_z) W_y diag(1 - dt_n)."""

    def __init__(self, coef1, coef_z, coef2, through_z, step1, step2, p, full_state):
        self.coef1, self.coef_z, self.coef2, self.through_z = coef1, coef_z, coef2, through_z
        self.step1, self.step2, self.full_state = step1, step2, full_state
        self.W, self.W_y, self.V = p["W.weight"], p["W_y.weight"], p.get("V.weight")
        self.hidden = coef1.shape[-1]
        self.size = 2 * self.hidden if full_state else self.hidden

    def own(self):
        n, W = self.hidden, self.W
        dz_dy = scaled(self.coef1, W[..., :n, :]) + scaled(self.coef_z, W[..., 2 * n :, :])
        dy_dy = scaled(self.coef2, W[..., n : 2 * n, :]) + scale_rows(self.through_z, weight_matmul(self.W_y, dz_dy))
        _plus_diagonal(dy_dy, 1.0 - self.step2)
        if not self.full_state:
            return dy_dy
        dy_dz = scaled(self.through_z, self.W_y) * (1.0 - self.step1).unsqueeze(-2)  # W_y diag(1 - dt_n)
        dz_dz = _plus_diagonal(dy_dy.new_zeros(dy_dy.shape[0], n, n), 1.0 - self.step1)
        top = torch.cat([dy_dy, dy_dz], dim=-1)
        bottom = torch.cat([dz_dy, dz_dz], dim=-1)
        return torch.cat([top, bottom], dim=-2)

    def wrt_input(self):
        n, V = self.hidden, self.V
        dz_du = scaled(self.coef1, V[..., :n, :]) + scaled(self.coef_z, V[..., 2 * n : 3 * n, :])
        direct = per_row(V[..., 3 * n :, :], dz_du.shape[0], 2)
        dy_du = scaled(self.coef2, V[..., n : 2 * n, :]) + scale_rows(self.through_z, direct + weight_matmul(self.W_y, dz_du))
        return torch.cat([dy_du, dz_du], dim=-2) if self.full_state else dy_du

    def act(self, v, w):
        n = self.hidden
        v_y = None if v is None else v[..., :n]
        v_z = v[..., n:] if self.full_state and v is not None else None
        from_y = _maybe_linear(v_y, self.W)  # (B, K, 3n): gates 1, 2 and the z-candidate
        from_u = _maybe_linear(w, self.V)  # (B, K, 4n): the same, and the y-candidate

        def part(k):
            return _total(None if from_y is None else from_y[..., k * n : (k + 1) * n],
                          None if from_u is None else from_u[..., k * n : (k + 1) * n])

        dz = _rows(self.coef1) * part(0) + _rows(self.coef_z) * part(2)
        if v_z is not None:
            dz = dz + _rows(1.0 - self.step1) * v_z
        through = _total(linear(dz, self.W_y), None if from_u is None else from_u[..., 3 * n :])
        dy = _rows(self.coef2) * part(1) + _rows(self.through_z) * through
        if v_y is not None:
            dy = dy + _rows(1.0 - self.step2) * v_y
        return torch.cat([dy, dz], dim=-1) if self.full_state else dy


class LEM(RecurrentCell):
    """Long expressive memory (Rusch et al., 2022), hidden y and memory z, learned time steps:

        dt_n = dt sigmoid(W_1 y + V_1 u + b_1),   dt'_n = dt sigmoid(W_2 y + V_2 u + b_2),
        z_n = (1 - dt_n) z_{n-1} + dt_n tanh(W_z y_{n-1} + V_z u_n + b_z),
        y_n = (1 - dt'_n) y_{n-1} + dt'_n tanh(W_y z_n + V_y u_n + b_y).
    """

    def __init__(self, input_size, hidden_size, *, dt=1.0, bias=True, output_size=None, batch_first=True, init_scale=None):
        super().__init__(input_size, hidden_size, output_size, batch_first)
        self.aux_size = hidden_size
        self.dt = float(dt)
        n = hidden_size
        self.W = nn.Linear(n, 3 * n, bias=False)  # W_1, W_2, W_z stacked
        self.W_y = nn.Linear(n, n, bias=False)
        self.V = nn.Linear(input_size, 4 * n, bias=bias) if input_size else None  # V_1, V_2, V_z, V_y (+ biases)
        self.b = nn.Parameter(torch.zeros(4 * n)) if bias and not input_size else None
        if init_scale is not None:
            _uniform_(self, init_scale)

    def linearize(self, p, state, x_t, full_state=False, *, linear_part=True):
        n = self.hidden_size
        y, z = state[:, :n], state[:, n:]
        if "V.weight" in p:
            drive = linear(x_t, p["V.weight"], p.get("V.bias"))
        else:
            drive = per_row(p["b"], y.shape[0]) if "b" in p else y.new_zeros(4 * n)
        from_y = linear(y, p["W.weight"])
        gate1 = torch.sigmoid(from_y[:, :n] + drive[..., :n])
        gate2 = torch.sigmoid(from_y[:, n : 2 * n] + drive[..., n : 2 * n])
        tz = torch.tanh(from_y[:, 2 * n :] + drive[..., 2 * n : 3 * n])
        step1, step2 = self.dt * gate1, self.dt * gate2
        new_z = (1.0 - step1) * z + step1 * tz
        ty = torch.tanh(linear(new_z, p["W_y.weight"]) + drive[..., 3 * n :])
        new_y = (1.0 - step2) * y + step2 * ty
        new_state = torch.cat([new_y, new_z], dim=-1)
        if not linear_part:
            return new_state, None
        coef1 = self.dt * gate1 * (1.0 - gate1) * (tz - z)  # through dt_n
        coef_z = step1 * (1.0 - tz * tz)  # through tanh(W_z y + V_z u + b_z)
        coef2 = self.dt * gate2 * (1.0 - gate2) * (ty - y)  # through dt'_n
        through_z = step2 * (1.0 - ty * ty)  # dy_n/dz_n = diag(through_z) W_y
        return new_state, _LEMLinearization(coef1, coef_z, coef2, through_z, step1, step2, p, full_state)


class _ReservoirLinearization(LayerLinearization):
    """x' = (1 - a) x + a (M tanh(x) + W_in u): A = (1 - a) I + a M diag(1 - tanh^2 x), D = a W_in."""

    def __init__(self, alpha, matrix, slope, input_weight):
        self.alpha, self.matrix, self.slope, self.input_weight = alpha, matrix, slope, input_weight
        self.size = self.hidden = slope.shape[-1]

    def own(self):
        rows = self.slope.shape[0]
        jac = self.alpha * per_row(self.matrix, rows, 2) * self.slope.unsqueeze(-2)  # column j scaled by tanh'(x_j)
        return _plus_diagonal(jac, 1.0 - self.alpha)

    def wrt_input(self):
        rows = self.slope.shape[0]
        weight = self.input_weight
        expanded = weight.expand(rows, -1, -1) if weight.ndim == 2 else per_row(weight, rows, 2)
        return self.alpha * expanded

    def act(self, v, w):
        through_rate = None if v is None else linear(v * _rows(self.slope), self.matrix)
        driven = _total(through_rate, _maybe_linear(w, self.input_weight)) * self.alpha
        return driven if v is None else (1.0 - self.alpha) * v + driven


class Rank1Reservoir(RecurrentCell):
    """The rate network of FORCE learning (Sussillo and Abbott, 2009), Euler step dt / tau:

        x_t = x_{t-1} + (dt/tau) (-x_{t-1} + g J r_{t-1} + w_f z_{t-1} + W_in u_t),
        r = tanh(x),  z = w_out . r (the readout, fed back through w_f).

    J is a fixed sparse random matrix scaled by 1/sqrt(p N). The defaults (dt = 0.1, tau = 0.5)
    make the units fast against the four-sine target, whose quickest period is 2 pi / 6 ~ 1. w_out is learned (by recursive
    least squares in FORCE; ``w_out`` is a parameter so gradient training works too). The
    feedback makes the effective recurrence g J + w_f w_out^T: a rank-1 change of the reservoir.
    The state is the currents x; outputs are z (batch, time, 1).
    """

    def __init__(self, hidden_size, *, g=1.5, input_size=0, p=0.1, dt=0.1, tau=0.5, seed=0, batch_first=True):
        super().__init__(input_size, hidden_size, None, batch_first)
        generator = torch.Generator().manual_seed(seed)
        mask = torch.rand(hidden_size, hidden_size, generator=generator) < p
        J = torch.randn(hidden_size, hidden_size, generator=generator) * mask / math.sqrt(p * hidden_size)
        self.register_buffer("J", J)
        self.register_buffer("w_f", 2.0 * torch.rand(hidden_size, generator=generator) - 1.0)
        self.w_out = nn.Parameter(torch.zeros(hidden_size))
        self.W_in = nn.Linear(input_size, hidden_size, bias=False) if input_size else None
        self.g, self.dt, self.tau = float(g), float(dt), float(tau)

    def initial_state(self, batch: int, like: torch.Tensor) -> torch.Tensor:
        """Seeded random currents (std 0.5): x = 0 is a fixed point of the reservoir, not its attractor."""
        generator = torch.Generator().manual_seed(1234)
        noise = 0.5 * torch.randn(batch, self.state_size, generator=generator, dtype=torch.float64)
        return noise.to(dtype=like.dtype, device=like.device)

    def _effective(self, p: Tensors) -> torch.Tensor:
        if "~effective" in p:
            return p["~effective"]
        return self.g * p["J"] + p["w_f"].unsqueeze(-1) * p["w_out"].unsqueeze(-2)

    def derived(self, p):
        return {"~effective": self._effective(p)}

    def effective_matrix(self) -> torch.Tensor:
        """g J + w_f w_out^T: the recurrence the fed-back network actually runs."""
        return self._effective(self.tensors())

    def linearize(self, p, state, x_t, full_state=False, *, linear_part=True):
        rate = torch.tanh(state)
        matrix = self._effective(p)
        alpha = self.dt / self.tau
        new_state = state + alpha * (linear(rate, matrix) + self._drive(p, "W_in", x_t) - state)
        if not linear_part:
            return new_state, None
        return new_state, _ReservoirLinearization(alpha, matrix, 1.0 - rate * rate, p.get("W_in.weight"))

    def forward(self, x, state=None):
        outputs, state = super().forward(x, state)
        z = torch.tanh(outputs) @ self.w_out
        return z.unsqueeze(-1), state


class StackedCells(nn.Module):
    """Layers of lyapbook cells, each fed the hidden sequence of the one below (like ``num_layers``).

    ``forward(x, state=None)`` -> (outputs, final_state); the state is the layers' states
    concatenated, layer 1 first, and the optional ``readout`` acts on the top layer's hidden
    vectors. Every layer's input size must equal the hidden size of the layer below.
    """

    def __init__(self, cells: list[RecurrentCell], output_size: int | None = None):
        super().__init__()
        if not cells:
            raise ValueError("cells: give at least one cell")
        for k, cell in enumerate(cells):
            if not isinstance(cell, RecurrentCell) or isinstance(cell, Rank1Reservoir):
                raise TypeError(f"cells[{k}]: stack AntisymmetricRNN, CoRNN, LipschitzRNN, NoisyRNN or LEM cells")
            if cell.readout is not None:
                raise ValueError(f"cells[{k}]: a stacked cell has no readout of its own; give output_size to the stack")
            if not cell.batch_first:
                raise ValueError(f"cells[{k}]: stacked cells use batch_first=True")
            if k and cell.input_size != cells[k - 1].hidden_size:
                raise ValueError(
                    f"cells[{k}].input_size is {cell.input_size} but cells[{k - 1}].hidden_size is "
                    f"{cells[k - 1].hidden_size}; they must match"
                )
        self.cells = nn.ModuleList(cells)
        self.input_size, self.hidden_size, self.batch_first = cells[0].input_size, cells[-1].hidden_size, True
        self.readout = nn.Linear(self.hidden_size, output_size) if output_size else None

    @property
    def state_size(self) -> int:
        return sum(cell.state_size for cell in self.cells)

    def forward(self, x: torch.Tensor, state: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        finals, start, sequence = [], 0, x
        for cell in self.cells:
            layer_state = None if state is None else state[:, start : start + cell.state_size]
            sequence, final = cell(sequence, layer_state)
            finals.append(final)
            start += cell.state_size
        outputs = self.readout(sequence) if self.readout is not None else sequence
        return outputs, torch.cat(finals, dim=-1)
