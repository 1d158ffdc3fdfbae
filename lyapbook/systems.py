"""Discrete-time dynamical systems with batched states and Jacobians.

Everything the Lyapunov engine needs from a system is a map

    h_t = F(h_{t-1}, x_t),        J_t = dF/dh evaluated at (h_{t-1}, x_t),

applied to a batch of states at once. Maps (Hénon, a linear map, an RNN cell) define ``F``
directly and use ``dt = 1``; flows (Lorenz) become maps through one Runge-Kutta step of size
``dt``, with the exact Jacobian of that step, so that exponents come out per unit of time.

Shapes: ``state`` is (batch, state_dim); ``x`` is (batch, input_dim) or ``None`` for an
autonomous system; Jacobians are (batch, state_dim, state_dim).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

from .perturbation import perturbed_start

__all__ = ["DynamicalSystem", "Flow", "Lorenz", "Henon", "Linear", "trajectory"]

Parameter = float | Sequence[float] | torch.Tensor


class DynamicalSystem:
    """A batched discrete-time system ``h_t = F(h_{t-1}, x_t)``.

    Subclasses set :attr:`state_dim`, :attr:`input_dim` (0 for autonomous systems) and
    :attr:`dt`, and implement :meth:`step`. A system whose Jacobian covers only part of the
    state it carries (an LSTM's hidden vector without its cell state) sets :attr:`tangent_dim`;
    by default the Jacobian is over the whole state. :meth:`jacobian` defaults to autograd
    (``torch.func.vmap(torch.func.jacrev(step))``): correct for any differentiable ``step``,
    but slower than an analytic Jacobian, which subclasses should provide.

    What the Lyapunov engine calls, and what a subclass may override to make it faster:

    - :meth:`step_with_jacobian` (next state and J together; default: :meth:`step` and
      :meth:`jacobian`), used when J is formed;
    - :meth:`step_with_tangent` (next state and J @ Q for a frame Q of k vectors; default:
      forms J), used instead when :meth:`prefers_matrix_free` says so: override both to apply
      J without forming it when k << tangent_dim;
    - :meth:`input_jacobian` (dF/dx; default: autograd), when input Jacobians are asked for.
    """

    state_dim: int
    input_dim: int = 0
    dt: float = 1.0
    batch_first: bool = True  # the layout of input tensors handed to the engine
    unbatched_input: bool = False  # accept x (time, features) as one sequence, as nn.LSTM does

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "initial_state" in cls.__dict__:  # perturbed only when the test suite asks (lyapbook.perturbation)
            cls.initial_state = perturbed_start(cls.__dict__["initial_state"])

    @property
    def dtype(self) -> torch.dtype | None:
        """The dtype of the system's own parameters, which states and inputs must share; ``None`` if it has none."""
        return None

    @property
    def device(self) -> torch.device | None:
        """The device of the system's own parameters, where states and inputs must be; ``None`` if it has none."""
        return None

    @property
    def tangent_dim(self) -> int:
        """Size of the space the Jacobian acts on: the number of Lyapunov exponents."""
        return self.state_dim

    def step(self, state: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
        """Advance ``state`` (batch, state_dim) one step under input ``x`` (batch, input_dim)."""
        raise NotImplementedError

    def jacobian(self, state: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
        """dF/dh at (state, x), shape (batch, tangent_dim, tangent_dim); autograd by default.

        The autograd default assumes ``tangent_dim == state_dim``.
        """

        def single(h: torch.Tensor, xt: torch.Tensor | None) -> torch.Tensor:
            return self.step(h.unsqueeze(0), None if xt is None else xt.unsqueeze(0)).squeeze(0)

        if x is None:
            return torch.func.vmap(torch.func.jacrev(lambda h: single(h, None)))(state)
        return torch.func.vmap(torch.func.jacrev(single), in_dims=(0, 0))(state, x)

    def step_with_jacobian(
        self, state: torch.Tensor, x: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (next state, Jacobian at the current state); override to share work."""
        return self.step(state, x), self.jacobian(state, x)

    def step_with_tangent(
        self, state: torch.Tensor, x: torch.Tensor | None, tangent: torch.Tensor, *, transpose: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(next state, J @ tangent), or J^T @ tangent with ``transpose=True``.

        ``tangent`` is (batch, tangent_dim, k). This default forms J with
        :meth:`step_with_jacobian`; a subclass that can apply J to k vectors for less than the
        cost of forming it overrides this (and :meth:`prefers_matrix_free`).
        """
        new_state, jac = self.step_with_jacobian(state, x)
        return new_state, (jac.mT if transpose else jac) @ tangent

    def prefers_matrix_free(self, k: int) -> bool:
        """Whether :meth:`step_with_tangent` with k vectors is cheaper than forming J (the engine's
        ``method="auto"``). By default: exactly when a subclass overrides ``step_with_tangent``."""
        return type(self).step_with_tangent is not DynamicalSystem.step_with_tangent

    def input_jacobian(self, state: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
        """dF/dx at (state, x), shape (batch, tangent_dim, input_dim); autograd by default.

        The autograd default assumes ``tangent_dim == state_dim``.
        """
        if x is None:
            raise ValueError(f"{type(self).__name__} is autonomous: it has no input to differentiate")

        def single(h: torch.Tensor, xt: torch.Tensor) -> torch.Tensor:
            return self.step(h.unsqueeze(0), xt.unsqueeze(0)).squeeze(0)

        return torch.func.vmap(torch.func.jacrev(single, argnums=1), in_dims=(0, 0))(state, x)

    def prepare(self, x: object, h0: object) -> tuple[object, object]:
        """Bring inputs and an initial state from a model's own layout to the engine's:
        x (batch, time, input_dim) and h0 (batch, state_dim). Time-first inputs are transposed
        when ``batch_first`` is False; subclasses convert their own state layouts."""
        if isinstance(x, torch.Tensor) and x.ndim == 3 and not self.batch_first:
            x = x.transpose(0, 1)
        return x, h0

    @perturbed_start
    def initial_state(
        self, batch: int = 1, *, dtype: torch.dtype = torch.float64, device: str | torch.device = "cpu"
    ) -> torch.Tensor:
        """A default initial state (batch, state_dim): zeros unless a subclass knows better."""
        return torch.zeros(batch, self.state_dim, dtype=dtype, device=device)

    def parameters_batch(self) -> int | None:
        """Batch size fixed by batched parameters (see :class:`Lorenz`), or ``None``."""
        return None


def _as_parameter(value: Parameter, name: str) -> float | torch.Tensor:
    """A scalar parameter stays a float; a sequence becomes a 1-D tensor (one value per batch row)."""
    if isinstance(value, (int, float)):
        return float(value)
    tensor = torch.as_tensor(value, dtype=torch.float64)
    if tensor.ndim == 0:
        return float(tensor)
    if tensor.ndim != 1:
        raise ValueError(f"{name} must be a number or a 1-D sequence (one value per batch row), got shape {tuple(tensor.shape)}")
    return tensor


class Flow(DynamicalSystem):
    """An autonomous ODE ``dh/dt = f(h)`` seen as the map of one classical RK4 step of size ``dt``.

    Subclasses implement :meth:`vector_field` (batch, d) -> (batch, d) and
    :meth:`vector_field_jacobian` (batch, d) -> (batch, d, d). The Jacobian of the RK4 map is
    obtained by differentiating the four stages with the chain rule, so it is exact for the
    discrete map (not merely ``I + dt * Df``).
    """

    def __init__(self, dt: float):
        if not (isinstance(dt, (int, float)) and dt > 0 and math.isfinite(dt)):
            raise ValueError(f"dt must be a positive finite number of time units, got {dt!r}")
        self.dt = float(dt)

    def vector_field(self, state: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def vector_field_jacobian(self, state: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def vector_field_and_jacobian(self, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """f(state) (batch, d) and Df(state) (batch, d, d) together; override to share work."""
        return self.vector_field(state), self.vector_field_jacobian(state)

    def step(self, state: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
        f, dt = self.vector_field, self.dt
        k1 = f(state)
        k2 = f(torch.add(state, k1, alpha=0.5 * dt))
        k3 = f(torch.add(state, k2, alpha=0.5 * dt))
        k4 = f(torch.add(state, k3, alpha=dt))
        return torch.add(state, _rk4_sum(k1, k2, k3, k4), alpha=dt / 6.0)

    def step_with_jacobian(
        self, state: torch.Tensor, x: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        both, dt = self.vector_field_and_jacobian, self.dt
        # Stage i evaluates f at y_i; K_i = d k_i / d h = Df(y_i) @ (I + c_i K_{i-1}), formed as
        # Df(y_i) + c_i Df(y_i) @ K_{i-1} in one fused batched product (small systems are
        # dominated by the number of tensor operations, not by their size).
        k1, K1 = both(state)
        k2, D2 = both(torch.add(state, k1, alpha=0.5 * dt))
        K2 = torch.baddbmm(D2, D2, K1, alpha=0.5 * dt)
        k3, D3 = both(torch.add(state, k2, alpha=0.5 * dt))
        K3 = torch.baddbmm(D3, D3, K2, alpha=0.5 * dt)
        k4, D4 = both(torch.add(state, k3, alpha=dt))
        K4 = torch.baddbmm(D4, D4, K3, alpha=dt)
        new_state = torch.add(state, _rk4_sum(k1, k2, k3, k4), alpha=dt / 6.0)
        eye = torch.eye(state.shape[-1], dtype=state.dtype, device=state.device)
        jac = torch.add(eye, _rk4_sum(K1, K2, K3, K4), alpha=dt / 6.0)
        return new_state, jac

    def jacobian(self, state: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
        return self.step_with_jacobian(state, x)[1]


class Lorenz(Flow):
    """The Lorenz (1963) system, Eq. (1.13) of the dissertation, integrated with RK4.

        dx/dt = sigma (y - x),   dy/dt = x (rho - z) - y,   dz/dt = x y - beta z.

    ``sigma``, ``rho`` and ``beta`` are numbers, or 1-D sequences with one value per batch row
    (so one call can follow several parameter values side by side). The trace of the
    linearisation (Eq. 1.14) is ``-(sigma + 1 + beta)``: the exponents of the flow sum to it.
    """

    state_dim = 3

    def __init__(self, sigma: Parameter = 10.0, rho: Parameter = 28.0, beta: Parameter = 8.0 / 3.0, dt: float = 0.01):
        super().__init__(dt)
        self.sigma = _as_parameter(sigma, "sigma")
        self.rho = _as_parameter(rho, "rho")
        self.beta = _as_parameter(beta, "beta")
        sizes = {p.shape[0] for p in (self.sigma, self.rho, self.beta) if isinstance(p, torch.Tensor)}
        if len(sizes) > 1:
            raise ValueError(f"sigma, rho and beta given as sequences must have the same length, got lengths {sorted(sizes)}")
        self._batch = sizes.pop() if sizes else None

    def parameters_batch(self) -> int | None:
        return self._batch

    def trace(self) -> float | torch.Tensor:
        """Sum of the flow's exponents, -(sigma + 1 + beta), per parameter set."""
        return -(self.sigma + 1.0 + self.beta)

    _COLUMNS = {"field": slice(0, 3), "jacobian": slice(3, 12), "both": slice(0, 12)}

    def _linear_maps(self, like: torch.Tensor) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """The field and its Jacobian as one affine map of the features phi = (x, y, z, xy, xz).

        Returns {"field" | "jacobian" | "both": (weight, bias)}: weight (P, 5, c) and bias
        (P, 1, c), with P = 1 for scalar parameters or one row per parameter set; of the 12
        columns of "both", 0-2 are f and 3-11 are Df flattened row by row. Cached per dtype
        and device.
        """
        key = (like.dtype, like.device)
        if getattr(self, "_maps_key", None) != key:
            sizes = [p.shape[0] for p in (self.sigma, self.rho, self.beta) if isinstance(p, torch.Tensor)]
            rows = sizes[0] if sizes else 1
            sigma, rho, beta = (
                torch.as_tensor(p, dtype=like.dtype, device=like.device).expand(rows)
                for p in (self.sigma, self.rho, self.beta)
            )
            weight = like.new_zeros(rows, 5, 12)
            bias = like.new_zeros(rows, 1, 12)
            x, y, z, xy, xz = range(5)
            weight[:, x, 0], weight[:, y, 0] = -sigma, sigma  # f_x = sigma (y - x)
            weight[:, x, 1], weight[:, y, 1], weight[:, xz, 1] = rho, -1.0, -1.0  # f_y = x (rho - z) - y
            weight[:, xy, 2], weight[:, z, 2] = 1.0, -beta  # f_z = x y - beta z
            bias[:, 0, 3], bias[:, 0, 4] = -sigma, sigma  # row 1 of Df: (-sigma, sigma, 0)
            bias[:, 0, 6], weight[:, z, 6] = rho, -1.0  # row 2: (rho - z, -1, -x)
            bias[:, 0, 7], weight[:, x, 8] = -1.0, -1.0
            weight[:, y, 9], weight[:, x, 10] = 1.0, 1.0  # row 3: (y, x, -beta)
            bias[:, 0, 11] = -beta
            self._maps = {
                name: (weight[..., cols].contiguous(), bias[..., cols].contiguous())
                for name, cols in self._COLUMNS.items()
            }
            self._maps_key = key
        return self._maps

    def _affine(self, state: torch.Tensor, which: str) -> torch.Tensor:
        """Output columns ``which`` of the affine map at ``state`` (batch, 3): (batch, c)."""
        weight, bias = self._linear_maps(state)[which]
        features = torch.cat((state, state[:, :1] * state[:, 1:]), dim=1)  # (x, y, z, xy, xz)
        if weight.shape[0] == 1:
            return torch.addmm(bias[0], features, weight[0])
        return torch.baddbmm(bias, features[:, None], weight).squeeze(1)

    def vector_field(self, state: torch.Tensor) -> torch.Tensor:
        return self._affine(state.reshape(-1, 3), "field").view(state.shape)

    def vector_field_jacobian(self, state: torch.Tensor) -> torch.Tensor:
        return self._affine(state.reshape(-1, 3), "jacobian").view(*state.shape, 3)

    def vector_field_and_jacobian(self, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        both = self._affine(state, "both")
        return both[:, :3], both[:, 3:].view(-1, 3, 3)

    def initial_state(self, batch: int = 1, *, dtype: torch.dtype = torch.float64, device: str | torch.device = "cpu") -> torch.Tensor:
        """(1, 1, 1) for every row: off the unstable origin, and a standard starting point."""
        return torch.ones(batch, 3, dtype=dtype, device=device)


class Henon(DynamicalSystem):
    """The Hénon map: (x, y) -> (1 - a x^2 + y, b x). Its Jacobian determinant is -b everywhere."""

    state_dim = 2

    def __init__(self, a: float = 1.4, b: float = 0.3):
        self.a = float(a)
        self.b = float(b)

    def step(self, state: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
        u, v = state.unbind(-1)
        return torch.stack((1.0 - self.a * u * u + v, self.b * u), dim=-1)

    def jacobian(self, state: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
        jac = self._constant_jacobian(state).expand(state.shape[0], 2, 2).clone()
        jac[:, 0, 0] = state[:, 0] * (-2.0 * self.a)
        return jac

    def _constant_jacobian(self, like: torch.Tensor) -> torch.Tensor:
        """[[0, 1], [b, 0]], the part of the Jacobian that does not depend on the state; cached."""
        key = (like.dtype, like.device)
        if getattr(self, "_constant_key", None) != key:
            self._constant = torch.tensor([[0.0, 1.0], [self.b, 0.0]], dtype=like.dtype, device=like.device)
            self._constant_key = key
        return self._constant

    def initial_state(self, batch: int = 1, *, dtype: torch.dtype = torch.float64, device: str | torch.device = "cpu") -> torch.Tensor:
        """Points near the origin, inside the attractor's basin, spread so rows differ."""
        offsets = torch.linspace(0.0, 0.1, batch, dtype=dtype, device=device)
        return torch.stack((offsets, torch.zeros_like(offsets)), dim=-1)


class Linear(DynamicalSystem):
    """The linear map h_t = A h_{t-1} (+ B x_t). Its exponents are log|eigenvalues of A|.

    ``A`` is (n, n); ``B`` is (n, input_dim) or omitted for an autonomous map. A non-normal
    ``A`` (for instance upper-triangular with a large off-diagonal entry) is a good test: the
    exponents do not depend on the transient growth that non-normality causes.
    """

    def __init__(self, A: torch.Tensor | Sequence[Sequence[float]], B: torch.Tensor | Sequence[Sequence[float]] | None = None):
        A = torch.as_tensor(A, dtype=torch.float64)
        if A.ndim != 2 or A.shape[0] != A.shape[1]:
            raise ValueError(f"A must be a square matrix (n, n), got shape {tuple(A.shape)}")
        self.A = A
        self.state_dim = A.shape[0]
        self.B = None
        self.input_dim = 0
        if B is not None:
            B = torch.as_tensor(B, dtype=torch.float64)
            if B.ndim != 2 or B.shape[0] != self.state_dim:
                raise ValueError(f"B must have shape (n, input_dim) = ({self.state_dim}, m), got {tuple(B.shape)}")
            self.B = B
            self.input_dim = B.shape[1]

    def step(self, state: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
        A = self.A.to(dtype=state.dtype, device=state.device)
        out = state @ A.T
        if self.B is not None and x is not None:
            out = out + x @ self.B.to(dtype=state.dtype, device=state.device).T
        return out

    def jacobian(self, state: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
        A = self.A.to(dtype=state.dtype, device=state.device)
        return A.expand(state.shape[0], -1, -1)

    def initial_state(self, batch: int = 1, *, dtype: torch.dtype = torch.float64, device: str | torch.device = "cpu") -> torch.Tensor:
        return torch.ones(batch, self.state_dim, dtype=dtype, device=device)

    def exact_exponents(self) -> torch.Tensor:
        """log|eigenvalues of A|, sorted in descending order: the map's exact spectrum."""
        return torch.linalg.eigvals(self.A).abs().log().sort(descending=True).values


def _rk4_sum(k1: torch.Tensor, k2: torch.Tensor, k3: torch.Tensor, k4: torch.Tensor) -> torch.Tensor:
    """k1 + 2 k2 + 2 k3 + k4, the classical RK4 weights (over dt / 6)."""
    return k1.add(k2, alpha=2.0).add_(k3, alpha=2.0).add_(k4)


def trajectory(system: DynamicalSystem, x: torch.Tensor | int, h0: torch.Tensor) -> torch.Tensor:
    """States visited from ``h0`` (batch, state_dim): returns (batch, steps + 1, state_dim).

    ``x`` is the inputs (batch, steps, input_dim), or the number of steps for an autonomous
    system. Row 0 of the time axis is ``h0`` itself.
    """
    steps = x if isinstance(x, int) else x.shape[1]
    states = [h0]
    for t in range(steps):
        states.append(system.step(states[-1], None if isinstance(x, int) else x[:, t]))
    return torch.stack(states, dim=1)
