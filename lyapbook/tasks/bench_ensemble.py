"""``python -m lyapbook.tasks.bench_ensemble``: ensemble training against one network at a time.

For a few (architecture, hidden size, group size) points it times training steps on row-wise
8x8 digits (batch 64, Adam, gradient clipping): ``one by one`` runs the ordinary training step
of :func:`lyapbook.tasks.training.train` for each network in turn, ``ensemble`` one batched step
of :func:`lyapbook.tasks.ensemble.ensemble_step` for the whole group. The two are timed
alternately, best of ``repeat``, so a busy machine slows both alike.

``--paper`` instead estimates the training time per network at the dissertation's sizes (and
at the teaching sizes) from timed steps on inputs of the real shapes, one group per zoo: what
a paper-size zoo costs on this machine or on a GPU (``--device cuda``).
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable

import torch

from .data import digits_data
from .ensemble import Ensemble, ensemble_step, make_ensemble_optimizer
from .models import ARCHITECTURES, build_model
from .training import _loss_fn, make_optimizer, train_step

__all__ = ["ensemble_training_timings", "per_network_estimates", "main"]


def _best(fn: Callable[[], object], sync: Callable[[], None]) -> float:
    started = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - started


def ensemble_training_timings(arch: str, hidden: int, networks: int = 12, *, steps: int = 10, repeat: int = 3,
                              batch_size: int = 64, device: str = "cpu") -> dict[str, float]:
    """Seconds per training step of ``networks`` networks, one by one and as one ensemble, and the ratio.

    Every network trains on its own batches of row-wise 8x8 digits (8 steps of 8 inputs, float32).
    """
    train_split = digits_data("rows")[0]
    generator = torch.Generator().manual_seed(0)
    batches = [torch.randint(len(train_split), (networks, batch_size), generator=generator) for _ in range(steps)]
    xs = [train_split.x[b].to(device) for b in batches]
    ys = [train_split.y[b].to(device) for b in batches]
    models = [build_model(arch, 8, hidden, 10, init_p=0.3, seed=seed).to(device) for seed in range(networks)]
    ensemble = Ensemble(models)
    optimizers = [make_optimizer("adam", model.parameters(), 1e-3) for model in models]
    loss_fn = _loss_fn(models[0])
    batched = make_ensemble_optimizer("adam", ensemble, 1e-3)
    active = torch.ones(networks, dtype=torch.bool)
    clips = torch.full((networks,), 5.0, device=device)
    sync = torch.cuda.synchronize if str(device).startswith("cuda") else (lambda: None)

    def one_by_one():
        for x, y in zip(xs, ys):
            for k, model in enumerate(models):
                train_step(model, optimizers[k], loss_fn, x[k], y[k], 5.0)

    def together():
        for x, y in zip(xs, ys):
            ensemble_step(ensemble, batched, x, y, active, clips)

    one_by_one(), together()  # warm up (allocations, first calls)
    separate, joint = float("inf"), float("inf")
    for _ in range(repeat):
        separate = min(separate, _best(one_by_one, sync) / steps)
        joint = min(joint, _best(together, sync) / steps)
    return {"one_by_one": separate, "ensemble": joint, "speedup": separate / joint}


# Per zoo: (architecture, hidden, inputs, steps per sequence, batch, outputs, tokens?, training
# sequences, epochs, group size) at the dissertation's sizes and at the book's teaching sizes.
PAPER = {
    "smnist (MNIST rows)": ("lstm", 64, 28, 28, 128, 10, False, 54_000, 10, 25),
    "charrnn 512 (War and Peace)": ("lstm", 512, 32, 100, 32, 82, True, int(0.3 * 25_600), 15, 25),
    "asrnn grid (MNIST pixels)": ("asrnn", 128, 1, 784, 128, 10, False, 45_000, 142, 35),
}
TEACHING = {
    "smnist (8x8 rows)": ("lstm", 16, 8, 8, 128, 10, False, 1_258, 10, 12),
    "charrnn 64 (help text)": ("lstm", 64, 32, 100, 32, 95, True, int(0.3 * 3_700), 8, 12),
    "asrnn grid (8x8 pixels)": ("asrnn", 32, 1, 64, 128, 10, False, 1_258, 50, 9),
}


def per_network_estimates(sizes: dict, *, device: str = "cpu", steps: int = 3, group_size: int | None = None) -> list[dict]:
    """Training seconds per network for each zoo of ``sizes`` (PAPER or TEACHING): timed ensemble steps
    on random inputs of the real shapes, scaled to the zoo's batches per epoch and epochs (``group_size``
    overrides the ensemble size, e.g. small on a CPU where large networks are compute-bound anyway)."""
    rows = []
    for name, (arch, hidden, inputs, length, batch, outputs, tokens, sequences, epochs, size) in sizes.items():
        group = group_size or size
        vocabulary = outputs if tokens else None
        model_kw = dict(vocabulary=vocabulary, output="all", loss="cross_entropy") if tokens else {}
        models = [build_model(arch, inputs, hidden, outputs, init_p=0.1, seed=s, **model_kw).to(device) for s in range(group)]
        ensemble = Ensemble(models)
        opt = make_ensemble_optimizer("adam", ensemble, 1e-3)
        if tokens:
            x = torch.randint(outputs, (group, batch, length), device=device)
            y = torch.randint(outputs, (group, batch, length), device=device)
        else:
            x = torch.rand(group, batch, length, inputs, device=device)
            y = torch.randint(outputs, (group, batch), device=device)
        active, clips = torch.ones(group, dtype=torch.bool), torch.full((group,), 5.0, device=device)
        sync = torch.cuda.synchronize if str(device).startswith("cuda") else (lambda: None)
        ensemble_step(ensemble, opt, x, y, active, clips)
        step = min(_best(lambda: ensemble_step(ensemble, opt, x, y, active, clips), sync) for _ in range(steps))
        batches = math.ceil(sequences / batch) * epochs
        rows.append({"zoo": name, "arch": arch, "hidden": hidden, "group": group, "step_s": step,
                     "per_network_s": step * batches / group, "steps": batches})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lyapbook.tasks.bench_ensemble", description=__doc__.splitlines()[0])
    parser.add_argument("--arch", nargs="+", default=["rnn", "lstm", "gru", "asrnn", "lem"], choices=ARCHITECTURES)
    parser.add_argument("--hidden", nargs="+", type=int, default=[16, 32, 128])
    parser.add_argument("--networks", type=int, default=12)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--paper", action="store_true", help="estimate training time per network at paper and teaching sizes")
    parser.add_argument("--group", type=int, default=None, help="with --paper: networks per ensemble (default: each zoo's)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    where = f"{torch.get_num_threads()} threads, {args.device}"
    if args.paper:
        print(f"Training seconds per network, estimated from ensemble steps on inputs of the real shapes ({where}):")
        for label, sizes in (("teaching", TEACHING), ("paper", PAPER)):
            for r in per_network_estimates(sizes, device=args.device, group_size=args.group):
                print(f"  {label:8} {r['zoo']:28} {r['arch']:5} n={r['hidden']:<4} group {r['group']:>3}: "
                      f"{r['step_s'] * 1e3:8.1f} ms/step x {r['steps']:>6} steps / {r['group']} = {r['per_network_s']:8.1f} s per network",
                      flush=True)
        return 0
    print(f"Ensemble training: {args.networks} networks, row-wise 8x8 digits, batch 64, Adam, {where}")
    print(f"{'arch':<10}{'hidden':>7} | {'one by one':>11}{'ensemble':>10}{'speed-up':>10}   (ms per step of all networks)")
    for arch in args.arch:
        for hidden in args.hidden:
            r = ensemble_training_timings(arch, hidden, args.networks, steps=args.steps, repeat=args.repeat, device=args.device)
            print(f"{arch:<10}{hidden:>7} | {r['one_by_one'] * 1e3:>11.1f}{r['ensemble'] * 1e3:>10.1f}{r['speedup']:>9.1f}x", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
