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

import torch
from torch import nn

__all__ = ["RecurrentCell", "AntisymmetricRNN", "CoRNN", "LipschitzRNN", "NoisyRNN", "LEM", "Rank1Reservoir", "StackedCells"]


def _scaled(coef: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """diag(coef) @ weight for a batch of coefficient vectors: (batch, r) x (r, c) -> (batch, r, c)."""
    return coef.unsqueeze(-1) * weight


def _plus_diagonal(matrix: torch.Tensor, values: torch.Tensor | float) -> torch.Tensor:
    """matrix + diag(values), in place on the batch of matrices (batch, n, n)."""
    matrix.diagonal(dim1=-2, dim2=-1).add_(values)
    return matrix


def _uniform_(module: nn.Module, scale: float) -> None:
    for parameter in module.parameters():
        nn.init.uniform_(parameter, -scale, scale)


class RecurrentCell(nn.Module):
    """Shared sequence loop, readout and state handling; subclasses define one step."""

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

    def cell_step(self, state: torch.Tensor, x_t: torch.Tensor | None) -> torch.Tensor:
        """One differentiable step (batch, state_size) -> (batch, state_size); used for training."""
        raise NotImplementedError

    def step_with_jacobian(
        self, state: torch.Tensor, x_t: torch.Tensor | None, full_state: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One step without noise and its analytic Jacobian (batch, n, n), n = tangent_size."""
        new_state, jac, _ = self.step_with_jacobians(state, x_t, full_state, need_input=False)
        return new_state, jac

    def step_with_jacobians(
        self, state: torch.Tensor, x_t: torch.Tensor | None, full_state: bool = False, need_input: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """As :meth:`step_with_jacobian`, plus d(tangent)/d(x_t) (batch, n, input_size) if ``need_input``."""
        raise NotImplementedError

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

    def _drive(self, layer: nn.Linear | None, x_t: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor | float:
        return layer(x_t) if layer is not None and x_t is not None else 0.0


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

    def recurrent_matrix(self) -> torch.Tensor:
        eye = torch.eye(self.hidden_size, dtype=self.W.dtype, device=self.W.device)
        return self.W - self.W.T - self.gamma * eye

    def cell_step(self, state, x_t):
        pre = state @ self.recurrent_matrix().T + self._drive(self.V, x_t, state)
        return state + self.eps * torch.tanh(pre)

    @torch.no_grad()
    def step_with_jacobians(self, state, x_t, full_state=False, need_input=False):
        matrix = self.recurrent_matrix().to(state.dtype)
        activation = torch.tanh(state @ matrix.T + self._drive(self.V, x_t, state))
        slope = self.eps * (1.0 - activation * activation)
        wrt_input = _scaled(slope, self.V.weight) if need_input else None
        return state + self.eps * activation, _plus_diagonal(_scaled(slope, matrix), 1.0), wrt_input


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

    def _parts(self, state, x_t):
        n = self.hidden_size
        y, z = state[:, :n], state[:, n:]
        activation = torch.tanh(self.W(y) + self.W_z(z) + self._drive(self.V, x_t, state))
        new_z = z + self.dt * (activation - self.gamma * y - self.eps * z)
        return y, z, activation, new_z, y + self.dt * new_z

    def cell_step(self, state, x_t):
        *_, new_z, new_y = self._parts(state, x_t)
        return torch.cat([new_y, new_z], dim=-1)

    @torch.no_grad()
    def step_with_jacobians(self, state, x_t, full_state=False, need_input=False):
        y, z, activation, new_z, new_y = self._parts(state, x_t)
        slope = self.dt * (1.0 - activation * activation)
        dz_dy = _plus_diagonal(_scaled(slope, self.W.weight.to(state.dtype)), -self.dt * self.gamma)
        dy_dy = _plus_diagonal(self.dt * dz_dy, 1.0)
        new_state = torch.cat([new_y, new_z], dim=-1)
        dz_du = _scaled(slope, self.V.weight) if need_input else None
        if not full_state:
            return new_state, dy_dy, None if dz_du is None else self.dt * dz_du
        dz_dz = _plus_diagonal(_scaled(slope, self.W_z.weight.to(state.dtype)), 1.0 - self.dt * self.eps)
        top = torch.cat([dy_dy, self.dt * dz_dz], dim=-1)
        bottom = torch.cat([dz_dy, dz_dz], dim=-1)
        wrt_input = None if dz_du is None else torch.cat([self.dt * dz_du, dz_du], dim=-2)
        return new_state, torch.cat([top, bottom], dim=-2), wrt_input


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
        eye = torch.eye(M.shape[0], dtype=M.dtype, device=M.device)
        return (1.0 - beta) * (M + M.T) + beta * (M - M.T) - gamma * eye

    def matrices(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self._compose(self.M_A, self.beta_a, self.gamma_a), self._compose(self.M_W, self.beta_w, self.gamma_w)

    def _drift(self, state, x_t):
        A, W = self.matrices()
        activation = torch.tanh(state @ W.T + self._drive(self.U, x_t, state))
        return state @ A.T + activation, activation, A, W

    def cell_step(self, state, x_t):
        return state + self.dt * self._drift(state, x_t)[0]

    @torch.no_grad()
    def step_with_jacobians(self, state, x_t, full_state=False, need_input=False):
        drift, activation, A, W = self._drift(state, x_t)
        slope = self.dt * (1.0 - activation * activation)
        jac = _scaled(slope, W.to(state.dtype)) + self.dt * A.to(state.dtype)
        wrt_input = _scaled(slope, self.U.weight) if need_input else None
        return state + self.dt * drift, _plus_diagonal(jac, 1.0), wrt_input


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

    def _parts(self, state, x_t):
        n = self.hidden_size
        y, z = state[:, :n], state[:, n:]
        drive = self.V(x_t) if self.V is not None else (self.b if self.b is not None else y.new_zeros(4 * n))
        from_y = self.W(y)
        gate1 = torch.sigmoid(from_y[:, :n] + drive[..., :n])
        gate2 = torch.sigmoid(from_y[:, n : 2 * n] + drive[..., n : 2 * n])
        tz = torch.tanh(from_y[:, 2 * n :] + drive[..., 2 * n : 3 * n])
        step1, step2 = self.dt * gate1, self.dt * gate2
        new_z = (1.0 - step1) * z + step1 * tz
        ty = torch.tanh(self.W_y(new_z) + drive[..., 3 * n :])
        new_y = (1.0 - step2) * y + step2 * ty
        return y, z, gate1, gate2, tz, ty, new_z, new_y

    def cell_step(self, state, x_t):
        *_, new_z, new_y = self._parts(state, x_t)
        return torch.cat([new_y, new_z], dim=-1)

    @torch.no_grad()
    def step_with_jacobians(self, state, x_t, full_state=False, need_input=False):
        n = self.hidden_size
        y, z, gate1, gate2, tz, ty, new_z, new_y = self._parts(state, x_t)
        W = self.W.weight.to(state.dtype)
        W_y = self.W_y.weight.to(state.dtype)
        step1, step2 = self.dt * gate1, self.dt * gate2
        # dz_n/dy = diag(dt g1(1-g1)(tz - z)) W_1 + diag(dt_n (1 - tz^2)) W_z
        coef1 = self.dt * gate1 * (1.0 - gate1) * (tz - z)  # through dt_n
        coef_z = step1 * (1.0 - tz * tz)  # through tanh(W_z y + V_z u + b_z)
        coef2 = self.dt * gate2 * (1.0 - gate2) * (ty - y)  # through dt'_n
        through_z = step2 * (1.0 - ty * ty)  # dy_n/dz_n = diag(through_z) W_y
        # A variable v (y_{n-1} or u_n) enters through gate 1, gate 2, the z-candidate, the y-candidate:
        # dz_n/dv = diag(coef1) M_1 + diag(coef_z) M_z,
        # dy_n/dv = diag(coef2) M_2 + diag(through_z) (M_y + W_y dz_n/dv)   (M = W for y, V for u).
        dz_dy = _scaled(coef1, W[:n]) + _scaled(coef_z, W[2 * n :])
        dy_dy = _scaled(coef2, W[n : 2 * n]) + _scaled(through_z, W_y @ dz_dy)
        _plus_diagonal(dy_dy, 1.0 - step2)
        new_state = torch.cat([new_y, new_z], dim=-1)
        wrt_input = None
        if need_input:
            V = self.V.weight
            dz_du = _scaled(coef1, V[:n]) + _scaled(coef_z, V[2 * n : 3 * n])
            dy_du = _scaled(coef2, V[n : 2 * n]) + _scaled(through_z, V[3 * n :] + W_y @ dz_du)
            wrt_input = torch.cat([dy_du, dz_du], dim=-2) if full_state else dy_du
        if not full_state:
            return new_state, dy_dy, wrt_input
        dy_dz = _scaled(through_z, W_y) * (1.0 - step1).unsqueeze(-2)  # W_y diag(1 - dt_n)
        dz_dz = _plus_diagonal(state.new_zeros(state.shape[0], n, n), 1.0 - step1)
        top = torch.cat([dy_dy, dy_dz], dim=-1)
        bottom = torch.cat([dz_dy, dz_dz], dim=-1)
        return new_state, torch.cat([top, bottom], dim=-2), wrt_input


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

    def effective_matrix(self) -> torch.Tensor:
        """g J + w_f w_out^T: the recurrence the fed-back network actually runs."""
        return self.g * self.J + torch.outer(self.w_f, self.w_out)

    def cell_step(self, state, x_t):
        rate = torch.tanh(state)
        drive = rate @ self.effective_matrix().T + self._drive(self.W_in, x_t, state)
        return state + (self.dt / self.tau) * (drive - state)

    def forward(self, x, state=None):
        outputs, state = super().forward(x, state)
        z = torch.tanh(outputs) @ self.w_out
        return z.unsqueeze(-1), state

    @torch.no_grad()
    def step_with_jacobians(self, state, x_t, full_state=False, need_input=False):
        rate = torch.tanh(state)
        matrix = self.effective_matrix().to(state.dtype)
        alpha = self.dt / self.tau
        new_state = state + alpha * (rate @ matrix.T + self._drive(self.W_in, x_t, state) - state)
        jac = alpha * matrix * (1.0 - rate * rate).unsqueeze(-2)  # column j scaled by tanh'(x_j)
        wrt_input = alpha * self.W_in.weight.expand(state.shape[0], -1, -1) if need_input else None
        return new_state, _plus_diagonal(jac, 1.0 - alpha), wrt_input


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
