"""The QR engine: Lyapunov spectra of batched discrete-time systems (Algorithms 1-2 of Vogt, 2023).

:func:`lyapunov_spectrum` reduces the tangent trajectory of :mod:`lyapbook.tangent` to a
spectrum and, on request, to finite-time exponents, orthonormal frames, R matrices and input
Jacobians; :func:`lyapunov_spectra` does the same for a group of networks in one batched
computation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .diagnostics import Diagnostic, advice, remedies, warn_every_time
from .reducers import FrameReducer, InputJacobianReducer, LogRReducer, RMatrixReducer, SpectrumReducer
from .rnn import as_group_system, as_system, check_state_option, configuration
from .systems import DynamicalSystem
from .tangent import Run, build_run, initial_state, prepare_run, resolve_system
from .validation import check_count, check_dtypes, check_inputs

__all__ = ["LyapunovResult", "lyapunov_spectra", "lyapunov_spectrum"]


@dataclass(frozen=True, repr=False)
class LyapunovResult:
    """What :func:`lyapunov_spectrum` measured. Exponents are per unit time (per step when dt=1):
    :attr:`units` says which.

    Attributes:
        exponents: (k,) mean spectrum over the batch, in descending order.
        per_sequence: (batch, k) each row's spectrum, each row in descending order.
        std: (k,) sample standard deviation over the batch (ddof = 1, so :attr:`sem` is the usual
            standard error of the mean; zeros when batch == 1).
        dt: time per step of the system.
        steps: steps that were accumulated (after warm-up).
        warmup: steps evolved before accumulating.
        t_on: steps between re-orthonormalisations.
        final_state: (batch, state_dim) state after the last step.
        times: (n_qr,) elapsed time after warm-up at each QR step (with ``ftle=True`` or ``r_matrices=True``).
        ftle: (batch, n_qr, k) running finite-time exponents, cumulative log stretch divided by
            elapsed time, in the order of Q's columns (with ``ftle=True``).
        log_r: (batch, n_qr, k) log R_ii at each QR step, column order (with ``ftle=True``).
        q: (batch, n_kept, tangent_dim, j) the orthonormal frame after the kept QR steps, its first
            j columns (with ``q_vectors=True`` or a frame selection).
        q_times: (n_kept,) elapsed time after warm-up of each kept frame.
        r: (batch, n_qr, k, k) the upper-triangular R of each QR step, positive diagonal, so that
            (products since the previous frame) = Q R (with ``r_matrices=True``).
        input_jacobian: (batch, steps, tangent_dim, input_dim) d(state tangent)_t / d(x_t) at
            each accumulated step, every layer's rows (with ``input_jacobians=True``).
        orientation: ``"forward"`` (Q <- J Q) or ``"transposed"`` (Q <- J^T Q).
        diagnostics: what made some exponents bounds rather than estimates (the rounding floor,
            collapsed directions), each a :class:`~lyapbook.diagnostics.Diagnostic` with the rows,
            steps and exponents it touched and what to do; empty when nothing did.

    Option names read as field names too: ``r_matrices`` is :attr:`r`, ``input_jacobians`` is
    :attr:`input_jacobian`, ``q_vectors`` is :attr:`q`.
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
    q_times: torch.Tensor | None = None
    r: torch.Tensor | None = None
    input_jacobian: torch.Tensor | None = None
    orientation: str = "forward"
    diagnostics: tuple[Diagnostic, ...] = ()

    @property
    def sem(self) -> torch.Tensor:
        """(k,) standard error of the mean spectrum over the batch."""
        return self.std / max(self.per_sequence.shape[0], 1) ** 0.5

    @property
    def units(self) -> str:
        """What the exponents are rates of: ``"per step"``, or per unit time for a flow (``dt`` per step)."""
        return "per step" if self.dt == 1.0 else f"per unit time (dt = {self.dt:g} per step)"

    @property
    def r_matrices(self) -> torch.Tensor | None:
        """:attr:`r`, under the name of the option that asks for it."""
        return self.r

    @property
    def input_jacobians(self) -> torch.Tensor | None:
        """:attr:`input_jacobian`, under the name of the option that asks for it."""
        return self.input_jacobian

    @property
    def q_vectors(self) -> torch.Tensor | None:
        """:attr:`q`, under the name of the option that asks for it."""
        return self.q

    def __repr__(self) -> str:
        k = self.exponents.shape[0]
        leading = ", ".join(f"{float(v):.4g}" for v in self.exponents[:4]) + (", ..." if k > 4 else "")
        kept = [f"{name}{tuple(value.shape)}" for name in ("ftle", "log_r", "q", "r", "input_jacobian")
                if (value := getattr(self, name)) is not None]
        notes = f", diagnostics: {', '.join(d.kind for d in self.diagnostics)}" if self.diagnostics else ""
        return (f"LyapunovResult({k} exponents {self.units}: [{leading}]; {self.per_sequence.shape[0]} sequences x "
                f"{self.steps} steps after a warm-up of {self.warmup}, t_on={self.t_on}, {self.orientation}"
                + (f"; kept {', '.join(kept)}" if kept else "") + notes + ")")


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
    q_every: int | None = None,
    q_steps: Sequence[int] | None = None,
    q_columns: int | None = None,
    r_matrices: bool = False,
    input_jacobians: bool = False,
    q0: str | torch.Tensor = "random",
    seed: int | None = 0,
    state: str | None = None,
    orientation: str = "forward",
    method: str = "auto",
    qr: str = "householder",
    differentiable: bool = False,
    progress: bool = False,
    full_state: bool | None = None,
) -> LyapunovResult:
    """Lyapunov spectrum by the QR (Benettin) method, batched over initial conditions.

    Implements Eq. (2.7) with the warm-up and T_ON refinements of Algorithm 2: the state and
    an orthonormal frame Q (tangent_dim, k) evolve together, Q <- J_t Q; every ``t_on`` steps
    Q is re-orthonormalised, J ... J Q = Q' R' with diag(R') > 0, and log R'_ii is accumulated.
    The spectrum is the accumulated log stretch divided by the elapsed time ``steps * dt``.
    The steps come from :func:`lyapbook.tangent.tangent_trajectory`, which keeps nothing: memory
    is what the options below ask to keep, plus a constant.

    Args:
        system: a :class:`~lyapbook.systems.DynamicalSystem`, or a recurrent network
            (``nn.RNN``, ``nn.LSTM``, ``nn.GRU``, lyapbook's cells) taken with its own weights.
        x: for a system driven by input, the inputs in the model's own layout: (batch, time,
            input_dim), or (time, batch, input_dim) for a module with ``batch_first=False``; a
            network also takes one unbatched sequence (time, input_dim), as ``nn.LSTM`` does.
            For an autonomous system, the number of steps as an int. The first ``warmup`` steps
            of it are warm-up.
        h0: initial states (batch, state_dim), or a module's own state layout ((layers, batch,
            hidden), a tuple (h0, c0) for an LSTM); ``None`` takes ``system.initial_state``
            (zeros for a network). The flat layout concatenates the layers' states, layer 1
            first; an LSTM layer's state is (h, c), a coRNN's and a LEM's (y, z); ``final_state``
            comes back in it. x, h0 and the model's parameters must share one dtype (nothing is
            cast; a float32 run accumulates its log-stretches in float64 all the same).
        warmup: steps that evolve state and Q without accumulating (Algorithm 2).
        t_on: re-orthonormalise every ``t_on`` steps (and always at the last step). The
            rounding floor: in one QR step, stretches smaller than about 10 eps times the
            largest (eps = 1.2e-7 in float32, 2.2e-16 in float64) are rounding errors, so an
            exponent more than about log(1 / (10 eps)) / t_on below the largest (per step;
            14 / t_on in float32, 31 / t_on in float64) is not resolved: it sits on a floor,
            too high. A warning says when a run reaches it, and :attr:`LyapunovResult.diagnostics`
            records it; lower ``t_on`` or use float64. A large t_on can also overflow the product
            of the Jacobians of a chaotic network (float32 first): the run then says so.
        k: keep the first k exponents (Q is tangent_dim x k); ``None`` keeps all.
        ftle: also return running finite-time exponents and log R_ii at every QR step.
        q_vectors: also return Q after every QR step (batch, n_qr, tangent_dim, k).
        q_every: keep Q after every ``q_every``-th QR step only (with t_on = 1: every m-th step).
        q_steps: keep Q after these steps (counted after warm-up, 1 = the first accumulated
            step; each must be a QR step: a multiple of t_on, or the last).
        q_columns: keep the first ``q_columns`` columns of each kept Q (the leading directions).
            Any of q_every, q_steps, q_columns implies q_vectors.
        r_matrices: also return the full R (batch, n_qr, k, k) of every QR step.
        input_jacobians: also return d(state tangent)/d(x_t) at every accumulated step.
        q0: ``"random"`` (a seeded random orthonormal frame, the default), ``"identity"`` (the
            dissertation's choice; it can miss exponents when J leaves coordinate subspaces
            invariant) or a tensor (batch, tangent_dim, k) with orthonormal columns.
        seed: seed of the random initial frame; ``None`` draws from PyTorch's global generator.
        state: ``"full"`` (the default): the Jacobian over every coordinate the network carries,
            an LSTM's (h, c), coRNN's and LEM's (y, z), so the exponents describe how perturbations
            of the module grow. ``"hidden"``: over the hidden vector alone, the rest carried but
            held fixed: the dissertation's convention, which can differ a lot (an nn.LSTM(4, 32)
            with open forget gates: lambda_1 = -1.95 hidden, -0.012 full, and a perturbed twin run
            through the module itself grows at -0.017). The same for networks that carry h alone.
        orientation: ``"forward"`` (Q <- J_t Q, the Lyapunov exponents of the sequence as read)
            or ``"transposed"`` (Q <- J_t^T Q, the dissertation's Eq. 4.11 and its chapter-4
            code, which factorises the product in reversed time order); see
            :mod:`lyapbook.tangent`.
        method: ``"formed"`` builds each J and multiplies; ``"matrix_free"`` applies J to the k
            vectors without forming it (a GEMM of the stacked weights with the whole batch's
            frames, then elementwise gate factors), far cheaper when k << tangent_dim;
            ``"auto"`` (default) asks the system which is cheaper. Same exponents to rounding.
        qr: ``"householder"`` (LAPACK) or ``"cholesky"`` (CholeskyQR2 with a Householder
            fallback, see :func:`lyapbook.orthonormalize.cholesky_qr2`).
        differentiable: keep the autograd graph, so that the exponents can be differentiated
            with respect to the model's parameters, inputs or h0 (a loss or regulariser). The
            graph holds every step: memory grows like steps x batch x (tangent_dim x k plus
            the network's activations), and with a formed J like steps x batch x tangent_dim^2;
            prefer ``method="matrix_free"`` and small k. Refused inside ``torch.no_grad()``.
        progress: show a progress bar over the steps (tqdm); off by default.
        full_state: the older spelling of ``state`` (True: "full", False: "hidden"); deprecated.

    A module in training mode with dropout or noise is computed as the deterministic map (as in
    eval mode), with a warning. The network's own forward is the reference for every Jacobian
    (:mod:`lyapbook.reference`, which also checks a Jacobian of your own against autograd).

    Returns:
        A :class:`LyapunovResult`.
    """
    keep = {"ftle": ftle, "q_vectors": q_vectors, "q_every": q_every, "q_steps": q_steps, "q_columns": q_columns,
            "r_matrices": r_matrices}
    state = check_state_option(state, full_state)
    run = prepare_run(system, x, h0, warmup=warmup, t_on=t_on, k=k, q0=q0, seed=seed, state=state,
                      orientation=orientation, method=method, qr=qr, input_jacobians=input_jacobians,
                      differentiable=differentiable)
    with torch.set_grad_enabled(differentiable and torch.is_grad_enabled()):
        raw = _reduce(run, progress=progress, **keep)
    (diagnostics,) = _diagnose(raw, run, [slice(None)], stacklevel=3)
    return _result(raw, run, slice(None), diagnostics)


def lyapunov_spectra(
    models: Sequence[torch.nn.Module],
    x: torch.Tensor | int,
    h0: torch.Tensor | Sequence[object] | None = None,
    *,
    q0: str | torch.Tensor = "random",
    state: str | None = None,
    nonfinite: str = "raise",
    full_state: bool | None = None,
    **options,
) -> list[LyapunovResult]:
    """Spectra of a group of networks in one batched computation: one :class:`LyapunovResult` per network.

    The networks' weights are stacked along a leading network axis and every step runs once
    for all of them (rows = networks x sequences): one batched matmul per weight, one batched
    QR. Each result equals what :func:`lyapunov_spectrum` gives for that network alone with
    the same arguments (to rounding; same seed, same initial frame).

    Args:
        models: networks of one architecture and size (``nn.RNN``/``nn.LSTM``/``nn.GRU``, or
            lyapbook cells / StackedCells of one configuration). A list that mixes
            configurations is split into groups of one configuration, each computed batched;
            results come back in the order of ``models``.
        x: the inputs, in the models' own layout: shared by all networks, (batch, time,
            features) (time first when the modules are not ``batch_first``), or one set per
            network with a leading network axis, (G, batch, time, features); for autonomous
            networks the number of steps.
        h0: ``None`` (each network's default), a flat state (batch, state_dim) shared by all,
            (G, batch, state_dim), or a sequence of G initial states, each in any form
            :func:`lyapunov_spectrum` accepts for its network.
        q0: ``"random"`` (the same seeded frame for every network, as separate calls would
            draw), ``"identity"``, a tensor (batch, tangent_dim, k) shared, or (G, batch,
            tangent_dim, k).
        state: as for :func:`lyapunov_spectrum` (``full_state``: its deprecated spelling).
        nonfinite: ``"raise"`` (a FloatingPointError naming the networks whose spectrum is not
            finite) or ``"nan"`` (their results hold NaN; the others are unaffected).
        **options: every other keyword of :func:`lyapunov_spectrum` (warmup, t_on, k, ftle,
            q_vectors, r_matrices, orientation, method, qr, seed, differentiable, ...).

    Returns:
        A list of G results, ``results[g]`` for ``models[g]``.
    """
    state = check_state_option(state, full_state, where="lyapunov_spectra")
    models = list(models)
    if not models:
        raise ValueError("models: give at least one network")
    if nonfinite not in ("raise", "nan"):
        raise ValueError(f"nonfinite must be 'raise' or 'nan', got {nonfinite!r}")
    unknown = set(options) - _SPECTRA_OPTIONS
    if unknown:
        raise TypeError(f"lyapunov_spectra got unexpected keyword arguments {sorted(unknown)}")
    count = len(models)
    groups: dict[tuple, list[int]] = {}
    for index, model in enumerate(models):
        groups.setdefault(_group_key(model, state, index), []).append(index)
    xs = _per_network("x", x, count, lambda value: isinstance(value, torch.Tensor) and value.ndim == 4)
    state_dim = as_system(models[0], state).state_dim
    h0s = _per_network("h0", h0, count, lambda value: isinstance(value, list) or (
        isinstance(value, torch.Tensor) and value.ndim == 3 and value.shape[-1] == state_dim and value.shape[0] == count))
    q0_per_network = isinstance(q0, torch.Tensor) and q0.ndim == 4
    q0s = _per_network("q0", q0, count, lambda value: q0_per_network)
    results: list[LyapunovResult | None] = [None] * count
    for indices in groups.values():
        group = _group_spectra(indices, [models[i] for i in indices], [xs[i] for i in indices], [h0s[i] for i in indices],
                               [q0s[i] for i in indices] if q0_per_network else q0, state, nonfinite, options)
        for position, result in zip(indices, group):
            results[position] = result
    return results


_KEEP_OPTIONS = ("ftle", "q_vectors", "q_every", "q_steps", "q_columns", "r_matrices", "progress")
_RUN_DEFAULTS = {"warmup": 0, "t_on": 1, "k": None, "seed": 0, "orientation": "forward", "method": "auto",
                 "qr": "householder", "input_jacobians": False, "differentiable": False}
_SPECTRA_OPTIONS = set(_KEEP_OPTIONS) | set(_RUN_DEFAULTS)


def _per_network(name: str, value: object, count: int, is_per_network) -> list:
    """One value per network: ``value`` itself for each when shared, its entries when given per network."""
    if not is_per_network(value):
        return [value] * count
    if len(value) != count:
        raise ValueError(f"{name} gives {len(value)} per-network entries but there are {count} models; they must match")
    return list(value)


def _group_key(model: object, state: str | None, index: int) -> tuple:
    if not isinstance(model, torch.nn.Module):
        raise TypeError(
            f"models[{index}]: each must be a supported network (nn.RNN, nn.LSTM, nn.GRU, lyapbook cells), got "
            f"{type(model).__name__}"
        )
    as_system(model, state)  # the single-network checks (unsupported module, NaN weights, state)
    return configuration(model)


def _group_spectra(indices, models, xs, h0s, q0, coordinates, nonfinite, options) -> list[LyapunovResult]:
    """Networks of one configuration, validated one by one, computed as one batch, split again
    (``coordinates``: the ``state`` option)."""
    keep = {name: options[name] for name in _KEEP_OPTIONS if name in options}
    run_options = {**_RUN_DEFAULTS, **{name: options[name] for name in _RUN_DEFAULTS if name in options}}
    with torch.set_grad_enabled(run_options["differentiable"] and torch.is_grad_enabled()):
        inputs, states = [], []
        for x, h0, model in zip(xs, h0s, models):
            single = resolve_system(model, coordinates, run_options["differentiable"])
            x, h0 = single.prepare(check_inputs(single, x), h0)
            steps, x = (x, None) if isinstance(x, int) else (x.shape[1], x)
            state = initial_state(single, h0, x)
            check_dtypes(single, state, x)
            inputs.append(x)
            states.append(state)
        if len({tuple(state.shape) for state in states}) > 1 or len({None if x is None else x.shape[1] for x in inputs}) > 1:
            raise ValueError("x/h0: every network must have the same number of sequences and steps")
        if isinstance(q0, list):  # one frame per network
            q0 = torch.cat(q0)
        system = as_group_system(models, coordinates, differentiable=run_options["differentiable"])
        run = build_run(system, None if inputs[0] is None else torch.cat(inputs), torch.cat(states), steps, q0=q0,
                        groups=len(models), **run_options)
        raw = _reduce(run, **keep)
    rows = states[0].shape[0]
    blocks = [slice(g * rows, (g + 1) * rows) for g in range(len(models))]
    bad = [index for index, block in zip(indices, blocks) if not bool(torch.isfinite(raw["per_row"][block]).all())]
    if bad and nonfinite == "raise":
        overflowed = [index for index, block in zip(indices, blocks) if bool((raw["events"]["overflow"].steps[block] > 0).any())]
        raise FloatingPointError(
            f"the spectra of models {bad} are not finite: "
            + (f"for models {overflowed} the tangent product (the Jacobians multiplied between two QR steps) "
               f"overflowed while the state stayed finite ({advice(run.t_on, run.state.dtype)}); " if overflowed else "")
            + "otherwise their trajectories left every bounded region; exclude them, or pass nonfinite='nan' to get "
              "NaN for them beside the others' results"
        )
    diagnostics = _diagnose(raw, run, blocks, stacklevel=4)
    return [_result(raw, run, block, found, check_finite=False) for block, found in zip(blocks, diagnostics)]


def _reduce(run: Run, *, ftle=False, q_vectors=False, q_every=None, q_steps=None, q_columns=None, r_matrices=False,
            progress=False) -> dict:
    """Stream the run through the reducers it needs; return their raw outputs, every row of the batch."""
    counts = run.qr_counts()
    kept = _frame_selection(counts, run, q_vectors, q_every, q_steps, q_columns)
    preallocate = not run.differentiable
    spectrum = SpectrumReducer(run.batch, run.k, run.state, in_place=not run.differentiable)
    reducers = [spectrum]
    log_r = LogRReducer(len(counts), preallocate, spectrum.tiny) if ftle else None
    frames = FrameReducer(kept[0], kept[1], preallocate, run.warmup) if kept else None
    r = RMatrixReducer(len(counts), preallocate) if r_matrices else None
    jacobians = InputJacobianReducer(run.steps - run.warmup, preallocate) if run.input_jacobian else None
    reducers += [reducer for reducer in (log_r, frames, r, jacobians) if reducer is not None]
    state = run.state
    for step in _with_progress(run.stream(), run.steps, progress):
        for reducer in reducers:
            reducer.update(step)
        state = step.state
    per_row = spectrum.total / ((run.steps - run.warmup) * run.system.dt)
    raw = {"per_row": per_row.to(run.state.dtype), "final_state": state, "events": spectrum.events}
    times = torch.tensor(counts, dtype=run.state.dtype, device=run.state.device) * run.system.dt
    if log_r is not None or r is not None:
        raw["times"] = times
    if log_r is not None:
        raw["log_r"] = log_r.values.result()
        cumulative = raw["log_r"].to(torch.float64).cumsum(dim=1)  # float64, as the spectrum's own sum
        raw["ftle"] = (cumulative / times.to(torch.float64)[None, :, None]).to(run.state.dtype)
    if frames is not None:
        raw["q"] = frames.values.result()
        raw["q_times"] = torch.tensor(sorted(kept[0]), dtype=run.state.dtype, device=run.state.device) * run.system.dt
    if r is not None:
        raw["r"] = r.values.result()
    if jacobians is not None:
        raw["input_jacobian"] = jacobians.values.result()
    return raw


def _frame_selection(counts, run, q_vectors, q_every, q_steps, q_columns) -> tuple[list[int], int] | None:
    """(step counts whose frames to keep, columns to keep), or None when no frame is kept."""
    if not (q_vectors or q_every is not None or q_steps is not None or q_columns is not None):
        return None
    if q_every is not None and q_steps is not None:
        raise ValueError("give q_every or q_steps, not both")
    kept = list(counts)
    if q_every is not None:
        every = check_count("q_every", q_every, 1)
        kept = counts[every - 1 :: every]
        if not kept:
            raise ValueError(f"q_every={every} keeps no frame: the run has {len(counts)} QR steps after warm-up")
    if q_steps is not None:
        allowed = set(counts)
        kept = sorted({check_count("q_steps entries", s, 1) for s in q_steps})
        missing = [s for s in kept if s not in allowed]
        if missing:
            raise ValueError(
                f"q_steps: {missing} are not QR steps; with t_on={run.t_on} and {run.steps - run.warmup} accumulated "
                f"steps, frames exist after steps {counts[:6]}{' ...' if len(counts) > 6 else ''} (multiples of t_on and the last)"
            )
    columns = run.k if q_columns is None else check_count("q_columns", q_columns, 1)
    if columns > run.k:
        raise ValueError(f"q_columns must be in [1, k = {run.k}], got {columns}")
    return kept, columns


def _with_progress(steps, total: int, progress: bool):
    """The stream of steps, behind a tqdm bar when ``progress``."""
    if not progress:
        return steps
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm comes with the book's environment
        raise ImportError("progress=True needs tqdm: pip install tqdm") from None
    return tqdm(steps, total=total, desc="Lyapunov spectrum", unit="step")


_MEANINGS = {
    "floor": "a stretch fell below 10 eps x the largest, where QR resolves only rounding: the exponents it feeds "
             "are too high, upper bounds on the true ones",
    "collapse": "a stretch was 0 in this dtype (a unit at rest, or a tangent product that underflowed) and its "
                "log was clamped to log(tiny): the exponents it feeds are too high, upper bounds on the true ones",
    "overflow": "the tangent product (the Jacobians multiplied between two QR steps) overflowed while the state "
                "stayed finite: the exponents are lost",
}


def _diagnose(raw: dict, run: Run, blocks: list[slice], *, stacklevel: int) -> list[tuple[Diagnostic, ...]]:
    """Per block of rows (a network of a group, or the whole batch), what went wrong; a warning for each, every time."""
    found: list[tuple[Diagnostic, ...]] = []
    for g, rows in enumerate(blocks):
        diagnostics = []
        for kind, events in raw["events"].items():
            steps, first, columns = (t[rows] for t in (events.steps, events.first, events.columns))
            hit = torch.nonzero(steps > 0).flatten().tolist()
            if not hit:
                continue
            advise = advice(run.t_on, run.state.dtype)
            if kind == "collapse":
                remedy = remedies(run.t_on, run.state.dtype)
                advise = ("Where a unit is at rest (tanh' = 0 in saturation, a ReLU below 0) the true exponent is "
                          "-inf" + ("." if not remedy else "; where the tangent product underflowed, "
                                    + ", or ".join(remedy) + "."))
            diagnostic = Diagnostic(kind, tuple(hit), int(first[first >= 0].min()), int(steps.sum()),
                                    int(columns.max()), _MEANINGS[kind], advise)
            diagnostics.append(diagnostic)
            if kind != "overflow":  # an overflow raises, or gives NaN that the caller asked for
                message = str(diagnostic) if len(blocks) == 1 else str(diagnostic).replace(": ", f" (network {g}): ", 1)
                warn_every_time(message, stacklevel=stacklevel)
        found.append(tuple(diagnostics))
    return found


def _result(raw: dict, run: Run, rows: slice, diagnostics: tuple[Diagnostic, ...] = (),
            check_finite: bool = True) -> LyapunovResult:
    per_sequence = raw["per_row"][rows]
    if check_finite and not bool(torch.isfinite(per_sequence).all()):
        if any(d.kind == "overflow" for d in diagnostics):
            raise FloatingPointError(
                f"the spectrum is not finite: the tangent product (the Jacobians multiplied between two QR steps, "
                f"t_on = {run.t_on} of them, of a strongly expanding map in {run.state.dtype}) overflowed while the "
                "state stayed finite. "
                + advice(run.t_on, run.state.dtype)
            )
        raise FloatingPointError(
            "the spectrum is not finite: the trajectory left every bounded region (state or "
            "Jacobian became inf/NaN). Check h0, x and the system's parameters."
        )
    per_sequence = per_sequence.sort(dim=-1, descending=True).values
    extras = {name: raw[name][rows] for name in ("ftle", "log_r", "q", "r", "input_jacobian") if name in raw}
    extras.update({name: raw[name] for name in ("times", "q_times") if name in raw})
    return LyapunovResult(
        exponents=per_sequence.mean(dim=0),
        per_sequence=per_sequence,
        std=per_sequence.std(dim=0) if per_sequence.shape[0] > 1 else torch.zeros_like(per_sequence[0]),
        dt=run.system.dt,
        steps=run.steps - run.warmup,
        warmup=run.warmup,
        t_on=run.t_on,
        final_state=raw["final_state"][rows],
        orientation="transposed" if run.transpose else "forward",
        diagnostics=diagnostics,
        **extras,
    )
