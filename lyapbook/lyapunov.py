"""The QR engine: Lyapunov spectra of batched discrete-time systems (Algorithms 1-2 of Vogt, 2023)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch

from .orthonormalize import TangentFrame, random_orthonormal
from .rnn import as_system
from .systems import DynamicalSystem

__all__ = ["LyapunovResult", "lyapunov_spectrum"]


@dataclass(frozen=True)
class LyapunovResult:
    """What :func:`lyapunov_spectrum` measured. Exponents are per unit time (per step when dt=1).

    Attributes:
        exponents: (k,) mean spectrum over the batch, in descending order.
        per_sequence: (batch, k) each row's spectrum, each row in descending order.
        std: (k,) standard deviation over the batch (zeros when batch == 1).
        dt: time per step of the system.
        steps: steps that were accumulated (after warm-up).
        warmup: steps evolved before accumulating.
        t_on: steps between re-orthonormalisations.
        final_state: (batch, state_dim) state after the last step.
        times: (n_qr,) elapsed time after warm-up at each QR step (with ``ftle=True``).
        ftle: (batch, n_qr, k) running finite-time exponents, cumulative log stretch divided by
            elapsed time, in the order of Q's columns (with ``ftle=True``).
        log_r: (batch, n_qr, k) log|R_ii| at each QR step, column order (with ``ftle=True``).
        q: (batch, n_qr, tangent_dim, k) the orthonormal frame after each QR step
            (with ``q_vectors=True``).
    """

    exponents: torch.Tensor
    per_sequence: torch.Tensor
    std: torch.Tensor
    dt: float
    steps: int
    warmup: int
    t_on: int
    final_state: torch.Tensor
    times: torch.Tensor | None = None
    ftle: torch.Tensor | None = None
    log_r: torch.Tensor | None = None
    q: torch.Tensor | None = None

    @property
    def sem(self) -> torch.Tensor:
        """(k,) standard error of the mean spectrum over the batch."""
        return self.std / max(self.per_sequence.shape[0], 1) ** 0.5


def lyapunov_spectrum(
    system: DynamicalSystem | torch.nn.Module,
    x: torch.Tensor | int,
    h0: torch.Tensor | tuple[torch.Tensor, torch.Tensor] | None = None,
    *,
    warmup: int = 0,
    t_on: int = 1,
    k: int | None = None,
    ftle: bool = False,
    q_vectors: bool = False,
    q0: str | torch.Tensor = "random",
    seed: int = 0,
    full_state: bool = False,
) -> LyapunovResult:
    """Lyapunov spectrum by the QR (Benettin) method, batched over initial conditions.

    Implements Eq. (2.7) with the warm-up and T_ON refinements of Algorithm 2: the state and
    an orthonormal frame Q (tangent_dim, k) evolve together, Q <- J_t Q; every ``t_on`` steps
    Q is re-orthonormalised, Q R = Q, and log|R_ii| is accumulated. The spectrum is the
    accumulated log stretch divided by the elapsed time ``steps * dt``.

    Args:
        system: a :class:`~lyapbook.systems.DynamicalSystem`, or a recurrent network
            (``nn.RNN``, ``nn.LSTM``, ``nn.GRU``) taken with its own weights.
        x: for a system driven by input, the inputs (batch, time, input_dim) (for a module,
            in its own layout: time first unless ``batch_first``); for an autonomous system,
            the number of steps as an int. The first ``warmup`` steps of it are warm-up.
        h0: initial states (batch, state_dim), or a module's own state layout;
            ``None`` takes ``system.initial_state`` (zeros for a network).
        warmup: steps that evolve state and Q without accumulating (Algorithm 2).
        t_on: re-orthonormalise every ``t_on`` steps (and always at the last step).
        k: keep the first k exponents (Q is tangent_dim x k); ``None`` keeps all.
        ftle: also return running finite-time exponents and log|R_ii| at every QR step.
        q_vectors: also return Q after every QR step.
        q0: ``"random"`` (a seeded random orthonormal frame, the default), ``"identity"`` (the
            dissertation's choice; it can miss exponents when J leaves coordinate subspaces
            invariant) or a tensor (batch, state_dim, k) with orthonormal columns.
        seed: seed of the random initial frame.
        full_state: the spectrum of the full state (LSTM (h, c); coRNN and LEM (y, z)) instead
            of the hidden vector alone.

    Returns:
        A :class:`LyapunovResult`.
    """
    system = _check_system(system, full_state)
    x, h0 = system.prepare(x, h0)
    steps, inputs = _check_x(system, x)
    state = _check_h0(system, h0, inputs)
    if inputs is not None:
        inputs = inputs.to(dtype=state.dtype)
    batch, n = state.shape[0], system.tangent_dim
    k = _check_schedule(n, steps, warmup, t_on, k)
    frame = TangentFrame(_initial_frame(q0, batch, n, k, seed, state))

    tiny = torch.finfo(state.dtype).tiny
    total = torch.zeros(batch, k, dtype=state.dtype, device=state.device)
    log_rs, frames, qr_steps = [], [], []
    collapsed = torch.zeros((), dtype=torch.bool, device=state.device)  # checked once, at the end
    with torch.no_grad():  # a spectrum is not differentiated; no graph may grow over the run
        for t in range(steps):
            x_t = None if inputs is None else inputs[:, t]
            state, jac = system.step_with_jacobian(state, x_t)
            frame.propagate(jac)
            if t < warmup:
                if t + 1 == warmup or (t + 1) % t_on == 0:
                    frame.reorthonormalize()
                continue
            since_warmup = t + 1 - warmup
            if since_warmup % t_on and t + 1 < steps:
                continue
            stretch = frame.reorthonormalize()
            collapsed |= (stretch < tiny).any()
            log_r = stretch.clamp_min(tiny).log()
            total += log_r
            if ftle:
                log_rs.append(log_r)
                qr_steps.append(since_warmup)
            if q_vectors:
                frames.append(frame.matrix())

    if bool(collapsed):
        warnings.warn(
            "a tangent vector collapsed to zero (R_ii = 0): its log stretch was clamped to "
            f"log({tiny:.1e}); the affected exponents are lower bounds",
            RuntimeWarning,
            stacklevel=2,
        )
    elapsed = (steps - warmup) * system.dt
    per_sequence = total / elapsed
    if not bool(torch.isfinite(per_sequence).all()):
        raise FloatingPointError(
            "the spectrum is not finite: the trajectory left every bounded region (state or "
            "Jacobian became inf/NaN). Check h0, x and the system's parameters."
        )
    per_sequence = per_sequence.sort(dim=-1, descending=True).values
    extras = {}
    if ftle:
        log_r_all = torch.stack(log_rs, dim=1)
        times = torch.tensor(qr_steps, dtype=state.dtype, device=state.device) * system.dt
        extras.update(times=times, log_r=log_r_all, ftle=log_r_all.cumsum(dim=1) / times[None, :, None])
    if q_vectors:
        extras["q"] = torch.stack(frames, dim=1)
    return LyapunovResult(
        exponents=per_sequence.mean(dim=0),
        per_sequence=per_sequence,
        std=per_sequence.std(dim=0, unbiased=False),
        dt=system.dt,
        steps=steps - warmup,
        warmup=warmup,
        t_on=t_on,
        final_state=state,
        **extras,
    )


def _check_system(system: object, full_state: bool) -> DynamicalSystem:
    if isinstance(system, torch.nn.Module):
        return as_system(system, full_state)
    if not isinstance(system, DynamicalSystem):
        raise TypeError(
            f"system must be a lyapbook.systems.DynamicalSystem or a supported recurrent network, got "
            f"{type(system).__name__}; subclass DynamicalSystem (state_dim, step, ideally jacobian) for your own map"
        )
    return system


def _check_x(system: DynamicalSystem, x: torch.Tensor | int) -> tuple[int, torch.Tensor | None]:
    """Return (number of steps, inputs or None)."""
    if system.input_dim == 0:
        if isinstance(x, bool) or not isinstance(x, int):
            raise TypeError(
                f"x: {type(system).__name__} is autonomous (no input); pass the number of steps as "
                f"an int, got {type(x).__name__}"
            )
        if x < 1:
            raise ValueError(f"x: the number of steps must be at least 1, got {x}")
        return x, None
    if not isinstance(x, torch.Tensor):
        raise TypeError(
            f"x: {type(system).__name__} is driven by input; pass a tensor (batch, time, "
            f"{system.input_dim}), got {type(x).__name__}"
        )
    if x.ndim != 3 or x.shape[-1] != system.input_dim:
        raise ValueError(
            f"x must have shape (batch, time, {system.input_dim}), got {tuple(x.shape)}"
            + ("; add a batch axis with x.unsqueeze(0)" if x.ndim == 2 and x.shape[-1] == system.input_dim else "")
        )
    if x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"x must hold at least one sequence of at least one step, got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"x must be a floating-point tensor, got dtype {x.dtype}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError("x contains NaN or inf values")
    return x.shape[1], x


def _check_h0(system: DynamicalSystem, h0: torch.Tensor | None, inputs: torch.Tensor | None) -> torch.Tensor:
    batch = inputs.shape[0] if inputs is not None else system.parameters_batch()
    if h0 is None:
        dtype = inputs.dtype if inputs is not None else torch.float64
        device = inputs.device if inputs is not None else "cpu"
        return system.initial_state(batch or 1, dtype=dtype, device=device)
    if not isinstance(h0, torch.Tensor):
        raise TypeError(f"h0 must be a tensor (batch, {system.state_dim}) or None, got {type(h0).__name__}")
    if h0.ndim != 2 or h0.shape[1] != system.state_dim:
        hint = "; add a batch axis with h0.unsqueeze(0)" if h0.ndim == 1 and h0.shape[0] == system.state_dim else ""
        raise ValueError(f"h0 must have shape (batch, {system.state_dim}), got {tuple(h0.shape)}{hint}")
    if batch is not None and h0.shape[0] != batch:
        source = "x" if inputs is not None else "the system's batched parameters"
        raise ValueError(f"h0 has batch size {h0.shape[0]} but {source} has batch size {batch}; they must match")
    if not h0.is_floating_point():
        raise TypeError(f"h0 must be a floating-point tensor, got dtype {h0.dtype}")
    if not bool(torch.isfinite(h0).all()):
        raise ValueError("h0 contains NaN or inf values")
    if inputs is not None and inputs.device != h0.device:
        raise ValueError(f"x is on {inputs.device} but h0 is on {h0.device}; move both to one device")
    return h0.clone()


def _check_schedule(n: int, steps: int, warmup: int, t_on: int, k: int | None) -> int:
    for name, value in (("warmup", warmup), ("t_on", t_on)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if warmup < 0 or warmup >= steps:
        raise ValueError(f"warmup must be in [0, {steps - 1}] (it counts steps of x, which has {steps}), got {warmup}")
    if t_on < 1:
        raise ValueError(f"t_on must be at least 1, got {t_on}")
    if k is None:
        return n
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= n:
        raise ValueError(f"k must be an int in [1, {n}] (the number of exponents, the tangent dimension), got {k!r}")
    return k


def _initial_frame(q0: str | torch.Tensor, batch: int, n: int, k: int, seed: int, like: torch.Tensor) -> torch.Tensor:
    if isinstance(q0, torch.Tensor):
        if q0.shape != (batch, n, k):
            raise ValueError(f"q0 must have shape (batch, n, k) = {(batch, n, k)}, got {tuple(q0.shape)}")
        return q0.to(dtype=like.dtype, device=like.device)
    if q0 == "random":
        return random_orthonormal(batch, n, k, seed=seed, dtype=like.dtype, device=like.device)
    if q0 == "identity":
        eye = torch.eye(n, k, dtype=like.dtype, device=like.device)
        return eye.expand(batch, n, k).clone()
    raise ValueError(f"q0 must be 'random', 'identity' or a tensor (batch, n, k), got {q0!r}")
