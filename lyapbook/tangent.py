"""The tangent-trajectory core: a system's state and an orthonormal tangent frame, step by step.

Everything the Lyapunov engine computes is a reduction of this stream (Algorithms 1-2 of the
dissertation): the state evolves, h_t = F(h_{t-1}, x_t); a frame Q of k tangent vectors
evolves with it, Q <- J_t Q (or J_t^T Q, see ``orientation``); every ``t_on`` steps it is
re-orthonormalised, J ... J Q = Q' R' with diag(R') > 0. :func:`tangent_trajectory` yields
one :class:`TangentStep` per step and keeps nothing, so memory stays constant over any
number of steps: what grows is only what a consumer chooses to keep (see
:func:`lyapbook.lyapunov_spectrum`, which keeps the spectrum and, on request, finite-time
exponents, frames, R matrices and input Jacobians).

Orientation. ``"forward"`` multiplies Q by J_t = dh_t/dh_{t-1}: after steps 1..t the frame spans
the most expanded directions of the product J_t ... J_1, the growth of perturbations of the
state along the sequence the network reads; these are the Lyapunov exponents, and Eq. (4.2)'s
recursion of chapter 4. ``"transposed"`` multiplies by J_t^T, the recursion Q_t R_t = J_t^T Q_{t-1}
of the dissertation's Eq. (4.11) and of its chapter-4 code: it factorises
J_t^T ... J_1^T = (J_1 ... J_t)^T, the product in reversed time order. The two agree for a
constant J (and their sums of exponents always agree); for a driven network they differ.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch

from .orthonormalize import QR_METHODS, QRFactors, TangentFrame, random_orthonormal
from .rnn import as_system
from .systems import DynamicalSystem
from .validation import check_count, check_dtypes, check_inputs, check_state, check_system_definition

__all__ = ["ORIENTATIONS", "METHODS", "Run", "TangentStep", "prepare_run", "tangent_trajectory"]

ORIENTATIONS = ("forward", "transposed")
METHODS = ("auto", "formed", "matrix_free")
RUN_OPTIONS = ("warmup", "t_on", "k", "q0", "seed", "state", "orientation", "method", "qr", "input_jacobians",
               "differentiable")


def _stochastic_parts(model: torch.nn.Module) -> list[str]:
    """The parts of ``model`` that act randomly in training mode: dropout, a noisy RNN's noise."""
    parts = []
    for name, module in model.named_modules():
        label = f"model.{name}" if name else type(model).__name__
        between_layers = isinstance(module, torch.nn.RNNBase) and module.dropout > 0 and module.num_layers > 1
        dropout = isinstance(module, torch.nn.modules.dropout._DropoutNd) and module.p > 0
        noise = bool(getattr(module, "sigma_add", 0) or getattr(module, "sigma_mult", 0))
        if module.training and (between_layers or dropout or noise):
            parts.append(label)
    return parts


def warn_if_training(model: torch.nn.Module) -> None:
    """Say that the spectrum is of the evaluation-mode map when a module in training mode has dropout or noise."""
    stochastic = _stochastic_parts(model)
    if stochastic:
        from .diagnostics import warn_every_time

        warn_every_time(
            f"{', '.join(stochastic)} is in training mode, where it applies dropout or noise; the engine computes the "
            "deterministic map, as in evaluation mode, so this is the spectrum of model.eval(). Call model.eval() "
            "first to say so and silence this warning", stacklevel=5,
        )


@dataclass
class TangentStep:
    """One step of the tangent trajectory, as :func:`tangent_trajectory` yields it.

    Attributes:
        t: index of the step along x's time axis (0-based): the step that read x_t.
        counted: steps since warm-up ended, t + 1 - warmup (1 for the first accumulated step).
        accumulating: False during warm-up.
        elapsed: time since warm-up ended, (t + 1 - warmup) * dt (negative or zero during warm-up).
        state: (batch, state_dim) the state after the step.
        qr: at a QR step, the factorisation (:class:`~lyapbook.orthonormalize.QRFactors`): ``.q``
            (batch, n, k) the new frame, ``.r`` (batch, k, k) with a positive diagonal, ``.stretch``
            (batch, k) = diag(R), columns in QR order; ``None`` between QR steps.
        input_jacobian: (batch, n, input_dim) d(tangent coordinates of the state)/d(x_t), every
            layer's rows (when asked for; accumulating steps only).
        tangent: (batch, n, k) the frame multiplied by the Jacobians since the last QR step,
            J_t ... J_s Q_s (or with J^T), before this step's QR: the tangent action.
    """

    t: int
    counted: int
    accumulating: bool
    elapsed: float
    state: torch.Tensor
    qr: QRFactors | None
    input_jacobian: torch.Tensor | None
    _product: torch.Tensor = field(repr=False)
    _sign: torch.Tensor | None = field(repr=False)

    @property
    def tangent(self) -> torch.Tensor:
        return self._product if self._sign is None else self._product * self._sign.unsqueeze(-2)


@dataclass
class Run:
    """A validated computation in the engine's layout: what :meth:`steps` needs and nothing else.

    ``inputs`` is (batch, steps, input_dim) or None, ``state`` (batch, state_dim), ``q0``
    (batch, tangent_dim, k); the flags are the choices made from the user's options.
    """

    system: DynamicalSystem
    inputs: torch.Tensor | None
    state: torch.Tensor
    steps: int
    warmup: int
    t_on: int
    q0: torch.Tensor
    transpose: bool
    matrix_free: bool
    implicit: bool
    qr: str
    input_jacobian: bool
    differentiable: bool

    @property
    def batch(self) -> int:
        return self.state.shape[0]

    @property
    def k(self) -> int:
        return self.q0.shape[-1]

    def is_qr_step(self, t: int) -> bool:
        """Whether step t (0-based) ends with a QR factorisation (Algorithm 2's schedule)."""
        if t < self.warmup:
            return t + 1 == self.warmup or (t + 1) % self.t_on == 0
        return (t + 1 - self.warmup) % self.t_on == 0 or t + 1 == self.steps

    def qr_counts(self) -> list[int]:
        """Steps since warm-up (1, 2, ...) at which the accumulating QR steps fall."""
        return [t + 1 - self.warmup for t in range(self.warmup, self.steps) if self.is_qr_step(t)]

    def stream(self) -> Iterator[TangentStep]:
        """The steps, under ``torch.no_grad`` unless the run is differentiable."""
        return _stream(self) if self.differentiable else torch.no_grad()(_stream)(self)


def tangent_trajectory(
    system: DynamicalSystem | torch.nn.Module,
    x: torch.Tensor | int,
    h0: torch.Tensor | tuple[torch.Tensor, torch.Tensor] | None = None,
    **options,
) -> Iterator[TangentStep]:
    """Iterate over the steps of the tangent trajectory; keeps nothing between steps.

    Takes the arguments of :func:`lyapbook.lyapunov_spectrum` that shape the computation
    (``warmup``, ``t_on``, ``k``, ``q0``, ``seed``, ``state``, ``orientation``, ``method``,
    ``qr``, ``input_jacobians``, ``differentiable``) and validates them before the first step.
    Yields a :class:`TangentStep` per step of x (warm-up included, ``accumulating=False``).

    Example, the R matrices of the first five QR steps, kept, and nothing else::

        rs = [s.qr.r for s in tangent_trajectory(model, x, q0="identity") if s.qr is not None][:5]
    """
    unknown = sorted(set(options) - set(RUN_OPTIONS))
    if unknown:
        raise TypeError(
            f"tangent_trajectory got unknown option(s) {', '.join(unknown)}; its options are {', '.join(RUN_OPTIONS)} "
            "(what a run keeps, e.g. ftle or r_matrices, is chosen by lyapunov_spectrum, or by your own loop over the steps)"
        )
    return prepare_run(system, x, h0, **options).stream()


def prepare_run(
    system: DynamicalSystem | torch.nn.Module,
    x: torch.Tensor | int,
    h0: torch.Tensor | tuple[torch.Tensor, torch.Tensor] | None = None,
    *,
    warmup: int = 0,
    t_on: int = 1,
    k: int | None = None,
    q0: str | torch.Tensor = "random",
    seed: int | None = 0,
    state: str | None = None,
    orientation: str = "forward",
    method: str = "auto",
    qr: str = "householder",
    input_jacobians: bool = False,
    differentiable: bool = False,
) -> Run:
    """Validate everything a user passed and bring it to the engine's layout (see :func:`lyapbook.lyapunov_spectrum`)."""
    if differentiable and not torch.is_grad_enabled():
        raise ValueError(
            "differentiable=True inside torch.no_grad() (or with grad disabled): no graph can be kept, so the "
            "exponents could not be differentiated; call lyapunov_spectrum outside no_grad, or drop differentiable"
        )
    system = resolve_system(system, state, differentiable)
    x = check_inputs(system, x)
    x, h0 = system.prepare(x, h0)
    steps, inputs = (x, None) if isinstance(x, int) else (x.shape[1], x)
    state = initial_state(system, h0, inputs)
    check_dtypes(system, state, inputs)
    return build_run(system, inputs, state, steps, warmup=warmup, t_on=t_on, k=k, q0=q0, seed=seed,
                     orientation=orientation, method=method, qr=qr, input_jacobians=input_jacobians,
                     differentiable=differentiable)


def resolve_system(system: object, state: str | None, differentiable: bool = False) -> DynamicalSystem:
    """The system behind a model, with its definition checked."""
    if isinstance(system, torch.nn.Module):
        warn_if_training(system)
        system = as_system(system, state, differentiable=differentiable)
    elif not isinstance(system, DynamicalSystem):
        raise TypeError(
            f"system must be a lyapbook.systems.DynamicalSystem or a supported recurrent network, got "
            f"{type(system).__name__}; subclass DynamicalSystem (state_dim, step, ideally jacobian) for your own map"
        )
    else:
        as_system(system, state)  # a state option applies to networks only: refused for a system
        if differentiable and getattr(system, "differentiable", True) is False:
            raise ValueError(
                f"differentiable=True: this {type(system).__name__} computes with detached parameters; pass the "
                f"network itself, or make the system with differentiable=True"
            )
    check_system_definition(system)
    return system


def initial_state(system: DynamicalSystem, h0: object, inputs: torch.Tensor | None) -> torch.Tensor:
    """h0 checked against the batch of x (or of batched parameters), or the system's default state."""
    batch = inputs.shape[0] if inputs is not None else system.parameters_batch()
    if h0 is None:
        dtype = inputs.dtype if inputs is not None else (system.dtype or torch.float64)
        device = inputs.device if inputs is not None else (system.device or "cpu")
        return system.initial_state(batch or 1, dtype=dtype, device=device)
    if inputs is None and batch is not None and isinstance(h0, torch.Tensor) and h0.ndim == 2 and h0.shape[0] != batch:
        raise ValueError(
            f"h0 has batch size {h0.shape[0]} but the system's batched parameters have batch size {batch}; they must match"
        )
    return check_state(system, h0, batch).clone()


def build_run(
    system: DynamicalSystem, inputs: torch.Tensor | None, state: torch.Tensor, steps: int, *, warmup, t_on, k, q0,
    seed, orientation, method, qr, input_jacobians, differentiable, groups: int = 1,
) -> Run:
    """Check the schedule and options, and draw the initial frame (``groups`` networks share one q0 draw)."""
    warmup = check_count("warmup", warmup, 0)
    if warmup >= steps:
        raise ValueError(f"warmup must be in [0, {steps - 1}] (it counts steps of x, which has {steps}), got {warmup}")
    t_on = check_count("t_on", t_on, 1)
    n = system.tangent_dim
    if k is None and isinstance(q0, torch.Tensor) and q0.ndim == 3:
        k = q0.shape[-1]  # the frame says how many exponents
    k = n if k is None else _check_k(k, n)
    if orientation not in ORIENTATIONS:
        raise ValueError(f"orientation must be one of {ORIENTATIONS}, got {orientation!r}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if qr not in QR_METHODS:
        raise ValueError(f"qr must be one of {QR_METHODS}, got {qr!r}")
    if input_jacobians and system.input_dim == 0:
        raise ValueError("input_jacobians=True: the system has no input (input_dim = 0)")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)):
        raise TypeError(f"seed must be an int or None (a fresh random frame), got {type(seed).__name__}")
    transpose = orientation == "transposed"
    matrix_free = method == "matrix_free" or (method == "auto" and not transpose and system.prefers_matrix_free(k))
    frame = initial_frame(q0, state.shape[0] // groups, n, k, seed, state)
    if groups > 1:
        frame = frame.repeat(groups, 1, 1) if frame.shape[0] == state.shape[0] // groups else frame
    # Householder reflectors in place of Q (TangentFrame) pay for square frames on a CPU, except for
    # a large batch of small ones (an ensemble), where ormqr's per-matrix cost exceeds forming Q (measured).
    implicit = (not matrix_free and not differentiable and k == n and state.device.type == "cpu" and qr == "householder"
                and (n >= 64 or state.shape[0] < 256))
    return Run(system, inputs, state, steps, warmup, t_on, frame, transpose, matrix_free, implicit, qr,
               bool(input_jacobians), bool(differentiable))


def _check_k(k: object, n: int) -> int:
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or not 1 <= int(k) <= n:
        raise ValueError(f"k must be an int in [1, {n}] (the number of exponents, the tangent dimension), got {k!r}")
    return int(k)


def initial_frame(q0: str | torch.Tensor, batch: int, n: int, k: int, seed: int | None, like: torch.Tensor) -> torch.Tensor:
    """The starting frame Q_0 (batch, n, k): random (seeded), identity columns, or the user's, checked."""
    if isinstance(q0, torch.Tensor):
        if q0.ndim != 3 or q0.shape[1:] != (n, k) or q0.shape[0] not in (batch, like.shape[0]):
            raise ValueError(
                f"q0 must have shape (batch, tangent_dim, k) = {(batch, n, k)} (tangent_dim = {n}, the number of "
                f"exponents the system has), got {tuple(q0.shape)}"
            )
        if not q0.is_floating_point():
            raise TypeError(f"q0 must be a floating-point tensor, got dtype {q0.dtype}")
        _check_orthonormal(q0)
        return q0.to(dtype=like.dtype, device=like.device)
    if isinstance(q0, str) and q0 == "random":
        return random_orthonormal(batch, n, k, seed=seed, dtype=like.dtype, device=like.device)
    if isinstance(q0, str) and q0 == "identity":
        eye = torch.eye(n, k, dtype=like.dtype, device=like.device)
        return eye.expand(batch, n, k).clone()
    raise ValueError(f"q0 must be 'random', 'identity' or a tensor (batch, tangent_dim, k), got {q0!r}")


def _check_orthonormal(q0: torch.Tensor) -> None:
    """Columns must be orthonormal: a frame 10 Q would shift every exponent by log(10) / T."""
    gram = q0.mT @ q0
    error = (gram - torch.eye(q0.shape[-1], dtype=q0.dtype, device=q0.device)).abs().max().item()
    tolerance = 1e3 * torch.finfo(q0.dtype).eps  # rounding of a QR-made frame, with room for a cast to float32
    if not error <= tolerance:
        raise ValueError(
            f"q0 must have orthonormal columns (max |Q^T Q - I| = {error:.2e} > {tolerance:.0e}); "
            "orthonormalise it first, e.g. q0 = torch.linalg.qr(q0).Q"
        )


def _stream(run: Run) -> Iterator[TangentStep]:
    system, inputs, state = run.system, run.inputs, run.state
    frame = TangentFrame(run.q0, implicit=run.implicit, qr=run.qr)
    for t in range(run.steps):
        x_t = None if inputs is None else inputs[:, t]
        accumulating = t >= run.warmup
        input_jacobian = system.input_jacobian(state, x_t) if run.input_jacobian and accumulating else None
        if run.matrix_free:
            state, product = system.step_with_tangent(state, x_t, frame.internal, transpose=run.transpose)
            if t == 0:
                _check_step_output(system, state, product, run, "step_with_tangent")
            frame.replace(product)
        else:
            state, jac = system.step_with_jacobian(state, x_t)
            if t == 0:
                _check_step_output(system, state, jac, run, "step_with_jacobian")
            frame.multiply(jac.mT if run.transpose else jac)
        product, sign = frame.internal, frame.sign
        factors = frame.reorthonormalize() if run.is_qr_step(t) else None
        counted = t + 1 - run.warmup
        yield TangentStep(t, counted, accumulating, counted * system.dt, state, factors, input_jacobian, product, sign)


def _check_step_output(system: DynamicalSystem, state: object, linear: object, run: Run, method: str) -> None:
    """A user's system must return what it promises; checked once, on the first step."""
    name, batch, n = type(system).__name__, run.batch, system.tangent_dim
    if not isinstance(state, torch.Tensor) or tuple(state.shape) != (batch, system.state_dim):
        shape = tuple(state.shape) if isinstance(state, torch.Tensor) else type(state).__name__
        raise ValueError(
            f"system: {name}.step returned {shape}; it must return the next state (batch, state_dim) = "
            f"{(batch, system.state_dim)}"
        )
    expected = (batch, n, run.k) if method == "step_with_tangent" else (batch, n, n)
    if not isinstance(linear, torch.Tensor) or tuple(linear.shape) != expected:
        shape = tuple(linear.shape) if isinstance(linear, torch.Tensor) else type(linear).__name__
        what = "J @ tangent (batch, tangent_dim, k)" if method == "step_with_tangent" else "the Jacobian (batch, tangent_dim, tangent_dim)"
        raise ValueError(f"system: {name}.{method} returned {shape} for {what}; expected {expected}")


def float_floor(dtype: torch.dtype) -> float:
    """The smallest ratio R_kk / R_11 a QR step resolves in ``dtype`` (10 eps): near it the
    smallest stretch factors are rounding errors, and their exponents sit on a floor."""
    return 10.0 * torch.finfo(dtype).eps
