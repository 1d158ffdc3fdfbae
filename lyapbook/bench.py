"""``python -m lyapbook.bench``: where the time of an RNN Lyapunov spectrum goes, and how it compares.

For LSTM and GRU networks (input 32, batch 10, T = 100 steps, float32 by default) it times:

- ``lyapbook``: the whole spectrum with analytic Jacobians, QR every step and every ``t_on``;
- ``autograd``: the same engine with per-step ``torch.autograd.functional.jacobian`` (the
  dissertation's baseline), and ``torch.func``: with ``vmap(jacrev(step))``;
- ``floor``: the same number of bare batched J@Q products and ``torch.linalg.qr`` calls on
  random tensors, which any QR-based method must pay;
- each stage of lyapbook separately: building J, J@Q, re-orthonormalisation.

Baselines that take far longer are timed over ``--baseline-steps`` steps and scaled to T (said
in the table). Speed is measured here, never asserted in a unit test.

``python -m lyapbook.bench ensemble [options]`` times ensemble training against one network at a
time instead (:mod:`lyapbook.tasks.bench_ensemble`).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

import torch
from torch import nn

from .lyapunov import lyapunov_spectrum
from .orthonormalize import TangentFrame
from .rnn import TorchRNN
from .systems import DynamicalSystem

__all__ = ["run_benchmark", "main"]


class _AutogradJacobian(DynamicalSystem):
    """Wraps a system and replaces its analytic Jacobian by autograd, one of two ways."""

    def __init__(self, system: TorchRNN, how: str):
        self.inner, self.how = system, how
        self.state_dim, self.input_dim, self.dt = system.state_dim, system.input_dim, system.dt

    @property
    def tangent_dim(self) -> int:
        return self.inner.tangent_dim

    def step(self, state, x=None):
        return self.inner.step(state, x)

    def jacobian(self, state, x=None):
        index = self.inner.tangent_index().to(state.device)

        def step_tangent(tangent, carried, xt):
            """F restricted to the differentiated coordinates (an LSTM's c held fixed)."""
            return self.inner.step(carried.index_copy(-1, index, tangent), xt)[..., index]

        if self.how == "autograd":
            # Rows are independent, so d(sum over batch of F)/dh holds every per-row Jacobian.
            per_row = torch.autograd.functional.jacobian(
                lambda h: step_tangent(h, state, x).sum(0), state[:, index]
            )
            return per_row.permute(1, 0, 2)

        def single(h, carried, xt):
            return step_tangent(h.unsqueeze(0), carried.unsqueeze(0), xt.unsqueeze(0)).squeeze(0)

        return torch.func.vmap(torch.func.jacrev(single))(state[:, index], state, x)

    def step_with_jacobian(self, state, x=None):
        return self.step(state, x), self.jacobian(state, x)


def _seconds(fn: Callable[[], object], repeat: int) -> float:
    """Best of ``repeat`` timed calls, after one untimed call."""
    fn()
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def run_benchmark(
    arch: str, hidden: int, *, inputs: int = 32, batch: int = 10, steps: int = 100, t_on: int = 1,
    dtype: torch.dtype = torch.float32, baseline_steps: int = 10, device: str = "cpu",
) -> dict[str, float]:
    """Seconds for each method and stage of one configuration (QR every ``t_on`` steps)."""
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

    def stage_jacobian():
        for t in range(steps):
            system.step_with_jacobian(state, x[:, t])

    def stage_product():
        for _ in range(steps):
            jac @ frame

    tangent = TangentFrame(frame.clone())

    def stage_qr():
        for _ in range(n_qr):  # one product and one re-orthonormalisation, as the engine does them
            tangent.propagate(jac)
            tangent.reorthonormalize()

    def householder_qr():
        for _ in range(n_qr):
            torch.linalg.qr(jac @ frame)

    def floor():
        for t in range(steps):
            product = jac @ frame
            if (t + 1) % t_on == 0 or t + 1 == steps:
                torch.linalg.qr(product)

    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)

    def timed(fn, repeat=3):
        return _seconds(lambda: (fn(), sync()), repeat)

    result = {
        "lyapbook": timed(lambda: lyapunov_spectrum(module, x, t_on=t_on)),
        "floor": timed(floor),
        "jacobian stage": timed(stage_jacobian),
        "J@Q stage": timed(stage_product),
    }
    product_share = timed(stage_product) * n_qr / steps  # the products inside the QR timings
    result["QR stage"] = timed(stage_qr) - product_share
    result["torch.linalg.qr"] = timed(householder_qr) - product_share
    for name in ("autograd", "torch.func"):
        slow = _AutogradJacobian(system, name)
        result[name] = timed(lambda: lyapunov_spectrum(slow, x_short, t_on=t_on), repeat=1) * scale
        result[f"{name} jacobian stage"] = timed(
            lambda: [slow.jacobian(state, x[:, t]) for t in range(baseline_steps)], repeat=1
        ) * scale
    return result


def _table(rows: list[tuple[str, int, int, dict[str, float]]], baseline_steps: int, steps: int) -> str:
    header = (
        f"{'arch':<5}{'n':>5}{'t_on':>5} | {'lyapbook':>9}{'floor':>8}{'autograd':>10}{'torch.func':>11} | "
        f"{'J':>7}{'J@Q':>7}{'QR':>7}{'lin.qr':>7} | {'J vs ag':>8}{'J vs func':>10}{'QR vs lin':>10}{'all vs ag':>10}{'vs floor':>9}"
    )
    lines = [header, "-" * len(header)]
    for arch, hidden, t_on, r in rows:
        lines.append(
            f"{arch:<5}{hidden:>5}{t_on:>5} | {r['lyapbook']:>9.3f}{r['floor']:>8.3f}{r['autograd']:>10.2f}{r['torch.func']:>11.2f} | "
            f"{r['jacobian stage']:>7.3f}{r['J@Q stage']:>7.3f}{r['QR stage']:>7.3f}{r['torch.linalg.qr']:>7.3f} | "
            f"{r['autograd jacobian stage'] / r['jacobian stage']:>7.0f}x{r['torch.func jacobian stage'] / r['jacobian stage']:>9.0f}x"
            f"{r['torch.linalg.qr'] / r['QR stage']:>9.2f}x"
            f"{r['autograd'] / r['lyapbook']:>9.1f}x{r['floor'] / r['lyapbook']:>8.2f}x"
        )
    lines.append(
        f"Seconds for T = {steps} steps. autograd and torch.func were timed over {baseline_steps} steps and scaled to T. "
        "J, J@Q, QR: lyapbook's stages alone (QR: re-orthonormalisation beyond the plain J@Q product); lin.qr: the\n"
        "same number of torch.linalg.qr calls. 'vs floor' > 1 means faster than bare J@Q + torch.linalg.qr."
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["ensemble"]:  # the ensemble-training section: python -m lyapbook.bench ensemble [options]
        from .tasks.bench_ensemble import main as ensemble_main

        return ensemble_main(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m lyapbook.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--arch", nargs="+", default=["lstm", "gru"], choices=["lstm", "gru", "rnn"])
    parser.add_argument("--hidden", nargs="+", type=int, default=[64, 128, 256])
    parser.add_argument("--t-on", nargs="+", type=int, default=[1, 10])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--inputs", type=int, default=32)
    parser.add_argument("--baseline-steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--float64", action="store_true", help="time in float64 instead of float32")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    if args.baseline_steps > args.steps or min(args.hidden) < 1 or args.steps < 1:
        parser.error("need 1 <= --baseline-steps <= --steps and positive --hidden")
    torch.set_num_threads(args.threads)
    dtype = torch.float64 if args.float64 else torch.float32
    rows = []
    for arch in args.arch:
        for hidden in args.hidden:
            for t_on in args.t_on:
                r = run_benchmark(
                    arch, hidden, inputs=args.inputs, batch=args.batch, steps=args.steps, t_on=t_on,
                    dtype=dtype, baseline_steps=args.baseline_steps, device=args.device,
                )
                rows.append((arch, hidden, t_on, r))
                print(f"[bench] {arch} n={hidden} t_on={t_on}: lyapbook {r['lyapbook']:.3f} s", flush=True)
    print(f"\n{args.batch} sequences, input {args.inputs}, {dtype}, {torch.get_num_threads()} threads, {args.device}\n")
    print(_table(rows, args.baseline_steps, args.steps))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
