"""``python -m lyapbook.bench``: where the time of a Lyapunov spectrum goes, and how it compares.

The benchmark is a registry of sections, each a function returning a table (a pandas
DataFrame) so that a chapter can show it; ``main`` prints the ones asked for.

- ``engine``: LSTM and GRU networks (input 32, batch 10, T = 100 steps, float32 by default):
  lyapbook's whole spectrum (QR every step and every ``t_on``) against the same engine with
  per-step autograd Jacobians (of the batch-summed step, and one per sequence as the
  dissertation's baseline computed them) and ``torch.func``, and against bare batched J@Q
  products plus ``torch.linalg.qr`` calls on random tensors; each stage of lyapbook separately
  (building J, J@Q, re-orthonormalisation); the speed-up of QR every ``t_on`` steps.
- ``kless``: k = 16 exponents of networks with 1024 tangent dimensions: the formed-Jacobian
  path against matrix-free tangent propagation, for PyTorch's modules of one and two layers
  and lyapbook's cells.
- ``spectra``: ensemble spectra, 64 networks of hidden 32, 10 sequences each: one by one
  against one batched ``lyapunov_spectra`` call, QR every step and every 5.
- ``memory``: the peak memory of a run that keeps every frame (784 steps of an LSTM with
  n = 128, batch 64: 3.3 GB of frames) against the size of what it keeps.

Every section takes an LSTM's hidden vector alone (``state="hidden"``, the dissertation's
convention and that of the earlier measurements in the README), so that n means the same in
every row and over time; the engine's default, the full (h, c) state, doubles an LSTM's n.

Baselines that take far longer are timed over ``--baseline-steps`` steps and scaled to T (said
in the table). Speed is measured here, never asserted in a unit test.

``python -m lyapbook.bench --section engine kless ...`` runs sections (``--help`` lists them and
every option); ``python -m lyapbook.bench ensemble [options]`` times ensemble *training* against
one network at a time instead (:mod:`lyapbook.tasks.bench_ensemble`). A new section is a
function ``run(options) -> DataFrame`` registered with :func:`register`.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from .diagnostics import LyapunovWarning
from .lyapunov import lyapunov_spectra, lyapunov_spectrum
from .orthonormalize import TangentFrame
from .reference import BASELINES, AutogradSystem
from .rnn import LEM, AntisymmetricRNN, CoRNN, LipschitzRNN, StackedCells, TorchRNN

__all__ = ["SECTIONS", "Section", "main", "register", "run_benchmark", "run_section"]

FLOOR = "bare J@Q + linalg.qr"
STATE = "hidden"  # see the module docstring


@dataclass(frozen=True)
class Section:
    """One part of the benchmark: ``run(options) -> DataFrame``; ``note(table, options)`` is printed under it."""

    name: str
    description: str
    run: Callable[[argparse.Namespace], pd.DataFrame]
    note: Callable[[pd.DataFrame, argparse.Namespace], str]


SECTIONS: dict[str, Section] = {}


def register(name: str, description: str, note: Callable[[pd.DataFrame, argparse.Namespace], str]):
    """Decorator adding a section ``run(options) -> DataFrame`` to :data:`SECTIONS` (and to the CLI)."""

    def add(run: Callable[[argparse.Namespace], pd.DataFrame]):
        SECTIONS[name] = Section(name, description, run, note)
        return run

    return add


def run_section(name: str, **options) -> pd.DataFrame:
    """One section's table, with the command line's defaults for every option not given (``t_on=[1, 10]`` ...)."""
    if name not in SECTIONS:
        raise ValueError(f"section must be one of {sorted(SECTIONS)}, got {name!r}")
    namespace = _parser().parse_args([])
    for key, value in options.items():
        if not hasattr(namespace, key):
            raise TypeError(f"run_section: unknown option {key!r}")
        setattr(namespace, key, value)
    _check_options(namespace, [name])
    torch.set_num_threads(namespace.threads)
    return SECTIONS[name].run(namespace)


def _seconds(fn: Callable[[], object], repeat: int) -> float:
    """Best of ``repeat`` timed calls, after one untimed call. The engine's diagnostics of the
    random benchmark networks (a rounding floor, say) say nothing about time and are not shown."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LyapunovWarning)
        fn()
        best = float("inf")
        for _ in range(repeat):
            started = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - started)
    return best


def _timer(device: str) -> Callable[..., float]:
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)

    def timed(fn, repeat=3):
        return _seconds(lambda: (fn(), sync()), repeat)

    return timed


def _dtype(options: argparse.Namespace) -> torch.dtype:
    return torch.float64 if options.float64 else torch.float32


# ---------------------------------------------------------------------------------------------
# engine: the spectrum and its stages against autograd baselines


def run_benchmark(
    arch: str, hidden: int, *, inputs: int = 32, batch: int = 10, steps: int = 100, t_on: int = 1,
    dtype: torch.dtype = torch.float32, baseline_steps: int = 10, device: str = "cpu", repeat: int = 3,
    baselines: Sequence[str] = BASELINES, stages: bool = True,
) -> dict[str, float]:
    """Seconds for each method and stage of one configuration (QR every ``t_on`` steps).

    ``baselines`` chooses which autograd baselines to time; ``stages=False`` times only the
    spectrum and those baselines (no stage timings, no bare J@Q + QR).

    Keys: ``lyapbook``; ``bare J@Q + linalg.qr`` (the same number of batched products and
    ``torch.linalg.qr`` calls on random tensors); ``autograd`` (the engine with one autograd
    Jacobian of the batch-summed step per step), ``autograd per sequence`` (one autograd
    Jacobian per sequence and step), ``torch.func``, each with ``<name> jacobian stage``;
    ``jacobian stage``, ``J@Q stage``, ``QR stage`` (re-orthonormalisation beyond the plain
    product) and ``torch.linalg.qr`` (the same number of calls).
    """
    torch.manual_seed(0)
    module = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[arch](inputs, hidden, batch_first=True).to(device, dtype)
    system = TorchRNN(module)
    x = torch.randn(batch, steps, inputs, dtype=dtype, device=device)
    n = system.tangent_dim
    state = torch.randn(batch, system.state_dim, dtype=dtype, device=device) * 0.5
    frame = torch.linalg.qr(torch.randn(batch, n, n, dtype=dtype, device=device))[0]
    jac = torch.randn(batch, n, n, dtype=dtype, device=device) / n**0.5
    n_qr = -(-steps // t_on)
    scale = steps / baseline_steps
    x_short = x[:, :baseline_steps]
    timed = _timer(device)

    def stage_jacobian():
        for t in range(steps):
            system.step_with_jacobian(state, x[:, t])

    def stage_product():
        for _ in range(steps):
            jac @ frame

    tangent = TangentFrame(frame.clone(), implicit=device == "cpu")

    def stage_qr():
        for _ in range(n_qr):  # one product and one re-orthonormalisation, as the engine does them
            tangent.multiply(jac)
            tangent.reorthonormalize()

    def householder_qr():
        for _ in range(n_qr):
            torch.linalg.qr(jac @ frame)

    def bare():
        for t in range(steps):
            product = jac @ frame
            if (t + 1) % t_on == 0 or t + 1 == steps:
                torch.linalg.qr(product)

    unknown = sorted(set(baselines) - set(BASELINES))
    if unknown:
        raise ValueError(f"baselines: unknown {unknown}; choose from {BASELINES}")
    result = {"lyapbook": timed(lambda: lyapunov_spectrum(module, x, t_on=t_on, state=STATE), repeat)}
    if stages:
        result[FLOOR] = timed(bare, repeat)
        result["jacobian stage"] = timed(stage_jacobian, repeat)
        result["J@Q stage"] = timed(stage_product, repeat)
        product_share = timed(stage_product, repeat) * n_qr / steps  # the products inside the QR timings
        result["QR stage"] = timed(stage_qr, repeat) - product_share
        result["torch.linalg.qr"] = timed(householder_qr, repeat) - product_share
    for name in baselines:
        slow = AutogradSystem(module, name, state=STATE)
        result[name] = timed(lambda: lyapunov_spectrum(slow, x_short, t_on=t_on), repeat=1) * scale
        if stages:
            result[f"{name} jacobian stage"] = timed(
                lambda: [slow.jacobian(state, x[:, t]) for t in range(baseline_steps)], repeat=1
            ) * scale
    return result


def _engine_note(table: pd.DataFrame, options: argparse.Namespace) -> str:
    return (
        f"Seconds for T = {options.steps} steps, {options.batch} sequences. The autograd baselines and torch.func were "
        f"timed over {options.baseline_steps} steps and scaled to T; 'autograd' differentiates the batch-summed step "
        "(one Jacobian call per step), 'autograd per sequence' calls autograd once per sequence and step, as the "
        f"dissertation's baseline did. '{FLOOR}': the same number of batched products and torch.linalg.qr calls on "
        "random tensors. J, J@Q, QR: lyapbook's stages alone (QR: re-orthonormalisation beyond the plain product). "
        "'T_ON speed-up': the spectrum at t_on = 1 over the spectrum at this t_on."
    )


@register("engine", "the spectrum and its stages against autograd, torch.func and bare J@Q + QR; T_ON speed-ups", _engine_note)
def _engine(options: argparse.Namespace) -> pd.DataFrame:
    rows = []
    for arch in options.arch:
        for hidden in options.hidden:
            for t_on in options.t_on:
                r = run_benchmark(
                    arch, hidden, inputs=options.inputs, batch=options.batch, steps=options.steps, t_on=t_on,
                    dtype=_dtype(options), baseline_steps=options.baseline_steps, device=options.device,
                    repeat=options.repeat,
                )
                rows.append({"arch": arch, "hidden": hidden, "t_on": t_on, **r})
                print(f"[bench engine] {arch} n={hidden} t_on={t_on}: lyapbook {r['lyapbook']:.3f} s", flush=True)
    table = pd.DataFrame(rows)
    table["J vs autograd"] = table["autograd jacobian stage"] / table["jacobian stage"]
    table["J vs torch.func"] = table["torch.func jacobian stage"] / table["jacobian stage"]
    table["QR vs linalg.qr"] = table["torch.linalg.qr"] / table["QR stage"]
    table["spectrum vs autograd"] = table["autograd"] / table["lyapbook"]
    table["spectrum vs autograd per sequence"] = table["autograd per sequence"] / table["lyapbook"]
    table[f"spectrum vs {FLOOR}"] = table[FLOOR] / table["lyapbook"]
    every_step = table[table["t_on"] == 1].set_index(["arch", "hidden"])["lyapbook"]
    table["T_ON speed-up"] = [
        every_step.get((a, h), float("nan")) / s for a, h, s in zip(table["arch"], table["hidden"], table["lyapbook"])
    ]
    return table


# ---------------------------------------------------------------------------------------------
# kless: formed J against matrix-free tangent propagation, k << n


def _kless_models(tangent: int, inputs: int) -> list[tuple[str, nn.Module]]:
    half = tangent // 2
    return [
        ("LSTM, 1 layer", nn.LSTM(inputs, tangent, batch_first=True)),
        ("LSTM, 2 layers", nn.LSTM(inputs, half, num_layers=2, batch_first=True)),
        ("GRU, 1 layer", nn.GRU(inputs, tangent, batch_first=True)),
        ("GRU, 2 layers", nn.GRU(inputs, half, num_layers=2, batch_first=True)),
        ("RNN tanh, 1 layer", nn.RNN(inputs, tangent, batch_first=True)),
        ("RNN tanh, 2 layers", nn.RNN(inputs, half, num_layers=2, batch_first=True)),
        ("AntisymmetricRNN", AntisymmetricRNN(inputs, tangent, eps=0.1, gamma=0.01)),
        ("CoRNN", CoRNN(inputs, tangent)),
        ("LipschitzRNN", LipschitzRNN(inputs, tangent)),
        ("LEM", LEM(inputs, tangent)),
        ("StackedCells LEM + CoRNN", StackedCells([LEM(inputs, half), CoRNN(half, half)])),
    ]


def _kless_note(table: pd.DataFrame, options: argparse.Namespace) -> str:
    return (
        f"The first k = {options.kless_k} exponents of networks with n = {options.kless_n} tangent dimensions, "
        f"{options.kless_batch} sequences of {options.steps} steps: 'formed J' builds each n x n Jacobian and multiplies "
        "(the engine's only path before matrix-free propagation existed), 'matrix-free' applies J to the k vectors "
        "without forming it. Two-layer networks and the stack have hidden n / 2 per layer."
    )


@register("kless", "k << n: formed Jacobians against matrix-free tangent propagation", _kless_note)
def _kless(options: argparse.Namespace) -> pd.DataFrame:
    torch.manual_seed(0)
    dtype, device, timed = _dtype(options), options.device, _timer(options.device)
    x = torch.randn(options.kless_batch, options.steps, options.inputs, dtype=dtype, device=device)
    rows = []
    for name, model in _kless_models(options.kless_n, options.inputs):
        model = model.to(device, dtype).eval()
        results = {}

        def spectrum(method):
            results[method] = lyapunov_spectrum(model, x, k=options.kless_k, method=method, state=STATE)

        formed = timed(lambda: spectrum("formed"), options.repeat)
        free = timed(lambda: spectrum("matrix_free"), options.repeat)
        gap = (results["formed"].exponents - results["matrix_free"].exponents).abs().max().item()
        rows.append({"network": name, "n": options.kless_n, "k": options.kless_k, "formed J (s)": formed,
                     "matrix-free (s)": free, "speed-up": formed / free, "max |exponent difference|": gap})
        print(f"[bench kless] {name}: formed {formed:.2f} s, matrix-free {free:.3f} s", flush=True)
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------
# ensemble: many networks at once against one by one


def _ensemble_note(table: pd.DataFrame, options: argparse.Namespace) -> str:
    return (
        f"Spectra (all exponents) of {options.networks} networks, {options.sequences} sequences of {options.steps} "
        "steps each: one lyapunov_spectrum call per network against one lyapunov_spectra call for the group "
        "(stacked weights, one batched QR per step). 'rounding floor: yes': the engine warned that the lowest "
        "exponents fell to the rounding floor of the dtype at that T_ON (they are upper bounds there), so the "
        "exponent difference of that row compares rounding noise; in float64 (--float64) the floor lies far lower."
    )


@register("spectra", "ensemble spectra: a group of networks in one batched call against one by one", _ensemble_note)
def _ensemble(options: argparse.Namespace) -> pd.DataFrame:
    dtype, device, timed = _dtype(options), options.device, _timer(options.device)
    rows = []
    for arch in options.ensemble_arch:
        torch.manual_seed(0)
        make = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[arch]
        models = [make(options.inputs, options.ensemble_hidden, batch_first=True).to(device, dtype)
                  for _ in range(options.networks)]
        x = torch.randn(options.sequences, options.steps, options.inputs, dtype=dtype, device=device)
        for t_on in options.ensemble_t_on:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", RuntimeWarning)
                separate = timed(lambda: [lyapunov_spectrum(m, x, t_on=t_on, state=STATE) for m in models], options.repeat)
                together = timed(lambda: lyapunov_spectra(models, x, t_on=t_on, state=STATE), options.repeat)
                ones = [lyapunov_spectrum(m, x, t_on=t_on, state=STATE).exponents for m in models]
                gap = max((a - b.exponents).abs().max().item()
                          for a, b in zip(ones, lyapunov_spectra(models, x, t_on=t_on, state=STATE)))
            floor = any(str(w.message).startswith("rounding floor") for w in caught)
            for w in caught:
                if not str(w.message).startswith("rounding floor"):
                    warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
            rows.append({"arch": arch, "networks": options.networks, "hidden": options.ensemble_hidden,
                         "sequences": options.sequences, "t_on": t_on, "one by one (s)": separate,
                         "ensemble (s)": together, "speed-up": separate / together,
                         "max |exponent difference|": gap, "rounding floor": "yes" if floor else "no"})
            print(f"[bench spectra] {arch} t_on={t_on}: one by one {separate:.2f} s, ensemble {together:.2f} s", flush=True)
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------
# memory: what keeping frames costs


_MEMORY_PROBE = """
import resource, sys, torch, lyapbook
torch.set_num_threads({threads})
torch.manual_seed(0)
model = torch.nn.LSTM({inputs}, {hidden}, batch_first=True)
x = torch.randn({batch}, {steps}, {inputs})
lyapbook.lyapunov_spectrum(model, x[:, :2], q_vectors=True)  # warm the allocator and the kernels
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
result = lyapbook.lyapunov_spectrum(model, x, q_vectors=True, state="hidden")
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(result.q.numel() * result.q.element_size(), (after - before) * 1024)
"""


def _memory_note(table: pd.DataFrame, options: argparse.Namespace) -> str:
    return (
        "lyapunov_spectrum(..., q_vectors=True), float32, in a fresh process: the rise of its peak resident memory "
        "during the run against the size of the frames it returns (batch x steps x n x n)."
    )


@register("memory", "peak memory of a run that keeps every frame, against the size of the frames", _memory_note)
def _memory(options: argparse.Namespace) -> pd.DataFrame:
    code = _MEMORY_PROBE.format(threads=options.threads, inputs=options.inputs, hidden=options.memory_hidden,
                                batch=options.memory_batch, steps=options.memory_steps)
    # A fresh process, so that its peak resident size measures this run alone; it imports this lyapbook.
    package_root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))}
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout.split()
    kept, peak = int(output[-2]), int(output[-1])
    gigabyte = 1024**3
    return pd.DataFrame([{
        "network": f"LSTM {options.memory_hidden}", "batch": options.memory_batch, "steps": options.memory_steps,
        "frames kept (GiB)": kept / gigabyte, "peak memory added (GiB)": peak / gigabyte,
        "beyond what is kept (GiB)": (peak - kept) / gigabyte,
    }])


# ---------------------------------------------------------------------------------------------
# command line


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def _parser() -> argparse.ArgumentParser:
    sections = "; ".join(f"{s.name}: {s.description}" for s in SECTIONS.values())
    parser = argparse.ArgumentParser(
        prog="python -m lyapbook.bench", description=__doc__.split("\n\n")[0].strip("`"),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = parser.add_argument
    add("--section", nargs="+", default=["engine"], choices=sorted(SECTIONS), help=f"which tables to run ({sections})")
    add("--threads", type=_positive, default=2, help="torch CPU threads")
    add("--device", default="cpu", help="cpu, cuda or cuda:N")
    add("--float64", action="store_true", help="time in float64 instead of float32")
    add("--repeat", type=_positive, default=3, help="timed repetitions per measurement (best is reported)")
    add("--steps", type=_positive, default=100, help="time steps T of every spectrum")
    add("--inputs", type=_positive, default=32, help="input features of every network")
    engine = parser.add_argument_group("engine section")
    engine.add_argument("--arch", nargs="+", default=["lstm", "gru"], choices=["lstm", "gru", "rnn"], help="architectures")
    engine.add_argument("--hidden", nargs="+", type=_positive, default=[64, 128, 256], help="hidden sizes")
    engine.add_argument("--t-on", nargs="+", type=_positive, default=[1, 10], help="steps between QR factorisations")
    engine.add_argument("--batch", type=_positive, default=10, help="sequences per spectrum")
    engine.add_argument("--baseline-steps", type=_positive, default=10,
                        help="steps over which the slow autograd baselines are timed (scaled to --steps)")
    kless = parser.add_argument_group("kless section")
    kless.add_argument("--kless-n", type=_positive, default=1024, help="tangent dimension n of every network")
    kless.add_argument("--kless-k", type=_positive, default=16, help="exponents kept, k")
    kless.add_argument("--kless-batch", type=_positive, default=8, help="sequences per spectrum")
    ensemble = parser.add_argument_group("spectra section")
    ensemble.add_argument("--networks", type=_positive, default=64, help="networks in the group")
    ensemble.add_argument("--ensemble-hidden", type=_positive, default=32, help="hidden size of each network")
    ensemble.add_argument("--sequences", type=_positive, default=10, help="sequences per network")
    ensemble.add_argument("--ensemble-arch", nargs="+", default=["lstm"], choices=["lstm", "gru", "rnn"], help="architectures")
    ensemble.add_argument("--ensemble-t-on", nargs="+", type=_positive, default=[1, 5], help="steps between QR factorisations")
    memory = parser.add_argument_group("memory section")
    memory.add_argument("--memory-hidden", type=_positive, default=128, help="LSTM hidden size")
    memory.add_argument("--memory-batch", type=_positive, default=64, help="sequences")
    memory.add_argument("--memory-steps", type=_positive, default=784, help="steps (every frame is kept)")
    return parser


def _check_options(options: argparse.Namespace, sections: list[str]) -> None:
    """Refuse what cannot run, before any timing starts."""
    if "engine" in sections and options.baseline_steps > options.steps:
        raise ValueError(f"--baseline-steps ({options.baseline_steps}) must not exceed --steps ({options.steps})")
    if "kless" in sections and options.kless_k > options.kless_n:
        raise ValueError(f"--kless-k ({options.kless_k}) must not exceed --kless-n ({options.kless_n})")
    device = options.device
    if not (device == "cpu" or device.startswith("cuda")):
        raise ValueError(f"--device must be cpu, cuda or cuda:N, got {device!r}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: this PyTorch build has no usable CUDA device (torch {torch.__version__}); use --device cpu")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["ensemble"]:  # ensemble *training*: python -m lyapbook.bench ensemble [options]
        from .tasks.bench_ensemble import main as ensemble_main

        return ensemble_main(argv[1:])
    parser = _parser()
    options = parser.parse_args(argv)
    try:
        _check_options(options, options.section)
    except ValueError as error:
        parser.error(str(error))
    torch.set_num_threads(options.threads)
    for name in options.section:
        section = SECTIONS[name]
        table = section.run(options)
        print(f"\n== {name}: {section.description}")
        print(f"{_dtype(options)}, {torch.get_num_threads()} threads, {options.device}\n")
        print(table.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
        print(section.note(table, options))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
