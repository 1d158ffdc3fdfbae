"""The two trained networks of the dissertation's chapter 4, with checkpoints, cached on disk.

* **Row-wise setup** (alignment, participation ratio; Figs 4.1, 4.2, B1, C2): a tanh ``nn.RNN``
  without bias reading one image row per step, dropout 0.1 before a linear readout of the last
  step, Xavier-normal weights with input gain 1 and a recurrent gain (0.005 in the authors' code,
  which makes V nearly zero at the start), SGD on the batch-summed cross-entropy.
* **Pixel-wise setup** (R-guided flips; Figs 4.3-4.5, D3, Table 4.1): a tanh ``nn.RNN`` reading one
  pixel per step in a fixed permuted order, input bias only (the recurrent bias is held at zero),
  Xavier-normal weights, RMSprop.

:func:`train_checkpoints` trains one of them and keeps the weights at the requested optimiser
steps; the run is cached under ``<data cache>/ftle/v<VERSION>/`` keyed by every setting, so a
rebuilt chapter trains nothing. Sizes always come from the caller (the chapter's parameters).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import joblib
import numpy as np
import torch
from torch import nn

from ..perturbation import cache_tag
from .data import digits_data
from .download import cache_dir, dump_atomically
from .models import SequenceModel

__all__ = ["CheckpointRun", "FTLESetup", "FlipImages", "PixelAnalysis", "VERSION", "pixelwise_setup", "rowwise_setup", "pixel_analysis", "alignment_sequences", "flip_images_of", "paper_seconds_per_step", "build_setup_model", "checkpoints_union", "ftle_cache_dir", "setup_data",
           "train_checkpoints", "train_seeds"]

VERSION = 1
KINDS = ("rows", "pixels")
OPTIMIZERS = {"sgd": torch.optim.SGD, "rmsprop": torch.optim.RMSprop}


@dataclass(frozen=True)
class FTLESetup:
    """Everything that determines a trained network of chapter 4 (the cache key).

    Attributes:
        kind: ``"rows"`` (row-wise, no bias, dropout) or ``"pixels"`` (permuted pixel-wise, input bias).
        hidden: N.
        steps: optimiser steps at most.
        checkpoints: optimiser steps after which the weights are kept (0 = before training).
        optimizer: ``"sgd"`` or ``"rmsprop"`` (PyTorch defaults otherwise: momentum 0, alpha 0.99).
        lr: learning rate, applied to the loss as reduced by ``reduction``.
        reduction: ``"sum"`` (the row-wise setup's batch-summed cross-entropy) or ``"mean"``.
        batch_size: sequences per step.
        recurrent_gain: Xavier-normal gain of V (input weights: gain 1).
        dropout: before the readout, in training only.
        dataset: ``"sklearn_digits"`` (embedded 8x8) or ``"mnist"`` (downloaded).
        normalise: (mean, std) applied to the pixel values of the row-wise inputs, or None.
        target_accuracy: stop at the first evaluation whose validation accuracy reaches it (None: never).
        patience: stop when ``patience`` evaluations in a row have not raised the best validation
            accuracy, and keep the weights of the best one (a validation plateau; None: never).
        eval_every: optimiser steps between validation evaluations.
        seed: initialisation and batch order.
    """

    kind: str
    hidden: int
    steps: int
    checkpoints: tuple[int, ...]
    optimizer: str
    lr: float
    reduction: str = "mean"
    batch_size: int = 128
    recurrent_gain: float = 1.0
    dropout: float = 0.0
    dataset: str = "sklearn_digits"
    normalise: tuple[float, float] | None = None
    target_accuracy: float | None = None
    patience: int | None = None
    eval_every: int = 50
    seed: int = 0

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"kind must be 'rows' or 'pixels', got {self.kind!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.reduction not in ("sum", "mean"):
            raise ValueError(f"reduction must be 'sum' or 'mean', got {self.reduction!r}")
        if self.patience is not None and (isinstance(self.patience, bool) or not isinstance(self.patience, int)
                                          or self.patience < 1):
            raise ValueError(f"patience must be a positive int (evaluations) or None, got {self.patience!r}")
        for name in ("hidden", "steps", "batch_size", "eval_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        bad = [c for c in self.checkpoints if isinstance(c, bool) or not isinstance(c, int) or not 0 <= c <= self.steps]
        if not self.checkpoints or bad:
            raise ValueError(f"checkpoints must be optimiser steps in [0, steps={self.steps}], got {list(self.checkpoints)}")
        if not (self.lr > 0 and self.recurrent_gain > 0 and 0 <= self.dropout < 1):
            raise ValueError(f"lr and recurrent_gain must be positive and dropout in [0, 1), got lr={self.lr}, "
                             f"recurrent_gain={self.recurrent_gain}, dropout={self.dropout}")


@dataclass
class CheckpointRun:
    """A trained setup: weights at each checkpoint reached, the loss curve and validation accuracies.

    Attributes:
        setup: what was trained.
        states: optimiser step -> the model's ``state_dict`` (CPU tensors).
        train_loss: (steps run,) batch-mean cross-entropy of each step's batch (before the step).
        val_steps, val_accuracy: the steps where validation accuracy was measured, and its values.
        steps_run: optimiser steps taken (fewer than ``setup.steps`` when the target accuracy or a
            plateau was reached).
        best_step: with ``setup.patience``, the step of the best validation accuracy, whose weights are
            the last checkpoint; otherwise the last step.
        seconds_per_step: mean wall time of one optimiser step, on the device it ran on.
        device: where it was trained.
    """

    setup: FTLESetup
    states: dict[int, dict[str, torch.Tensor]]
    train_loss: np.ndarray
    val_steps: np.ndarray
    val_accuracy: np.ndarray
    steps_run: int
    seconds_per_step: float
    device: str = "cpu"
    best_step: int | None = None

    @property
    def final_step(self) -> int:
        """The last checkpoint reached (the best validation step, with a patience)."""
        return max(self.states)

    @property
    def final_accuracy(self) -> float:
        """Validation accuracy of the last checkpoint (NaN if it was not evaluated there)."""
        at = np.flatnonzero(self.val_steps == self.final_step)
        return float(self.val_accuracy[at[-1]]) if at.size else float("nan")

    def model(self, step: int | None = None, dtype: torch.dtype = torch.float64) -> SequenceModel:
        """The network at checkpoint ``step`` (default: the last), in evaluation mode, in ``dtype``."""
        step = self.final_step if step is None else step
        if step not in self.states:
            raise KeyError(f"step {step} is not a checkpoint of this run; checkpoints: {sorted(self.states)}")
        model = build_setup_model(self.setup, input_size=_input_size(self.states[step]))
        model.load_state_dict(self.states[step])
        return model.to(dtype).eval()


def _input_size(state: dict[str, torch.Tensor]) -> int:
    return state["core.weight_ih_l0"].shape[1]


def build_setup_model(setup: FTLESetup, *, input_size: int) -> SequenceModel:
    """The untrained network of ``setup``, seeded by ``setup.seed``."""
    torch.manual_seed(setup.seed)
    model = SequenceModel("rnn", input_size, setup.hidden, 10, bias=setup.kind == "pixels", dropout=setup.dropout)
    core = model.core
    nn.init.xavier_normal_(core.weight_ih_l0, gain=1.0)
    nn.init.xavier_normal_(core.weight_hh_l0, gain=setup.recurrent_gain)
    if setup.kind == "pixels":  # the authors' cell: input Linear with bias, recurrent Linear without
        with torch.no_grad():
            core.bias_hh_l0.zero_()
        core.bias_hh_l0.requires_grad_(False)
    return model


def setup_data(setup: FTLESetup):
    """(train, validation, test) splits of the setup's dataset, pixels in [0, 1] (normalised for rows if asked)."""
    splits = digits_data(setup.kind, dataset=setup.dataset)
    if setup.normalise is None:
        return splits
    mean, std = setup.normalise
    return tuple(type(s)((s.x - mean) / std, s.y) for s in splits)


def ftle_cache_dir() -> Path:
    return cache_dir() / cache_tag() / "ftle" / f"v{VERSION}"


@torch.no_grad()
def _accuracy(model: SequenceModel, split, device) -> float:
    model.eval()
    correct = 0
    for start in range(0, len(split), 1024):
        out = model(split.x[start : start + 1024].to(device, next(model.parameters()).dtype))
        correct += (out.argmax(-1).cpu() == split.y[start : start + 1024]).sum().item()
    model.train()
    return correct / len(split)


def _train(setup: FTLESetup, device: str) -> CheckpointRun:
    train_split, val_split, _ = setup_data(setup)
    model = build_setup_model(setup, input_size=train_split.x.shape[-1]).to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    dtype = params[0].dtype  # the data follow the model (float32 unless the default dtype says otherwise)
    opt = OPTIMIZERS[setup.optimizer](params, lr=setup.lr)
    generator = torch.Generator().manual_seed(setup.seed)
    wanted = set(setup.checkpoints)
    states = {0: _cpu_state(model)} if 0 in wanted else {}
    losses, val_steps, val_acc = [], [], []
    rule = _Plateau(setup)
    order, cursor, step, started = torch.randperm(len(train_split), generator=generator), 0, 0, time.perf_counter()
    model.train()
    while step < setup.steps:
        if cursor + setup.batch_size > len(order):
            order, cursor = torch.randperm(len(train_split), generator=generator), 0
        index = order[cursor : cursor + setup.batch_size]
        cursor += setup.batch_size
        x, y = train_split.x[index].to(device, dtype), train_split.y[index].to(device)
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y, reduction=setup.reduction)
        loss.backward()
        opt.step()
        step += 1
        losses.append(loss.item() / (len(index) if setup.reduction == "sum" else 1))
        if step in wanted:
            states[step] = _cpu_state(model)
        if step % setup.eval_every == 0 or step == setup.steps:
            val_steps.append(step)
            val_acc.append(_accuracy(model, val_split, device))
            if rule.done(step, val_acc[-1], lambda: _cpu_state(model)):
                break
    seconds = (time.perf_counter() - started) / max(step, 1)
    if rule.best_state is not None:  # a plateau: the best weights are the network, later ones are dropped
        states = {s: v for s, v in states.items() if s <= rule.best_step} | {rule.best_step: rule.best_state}
        best_step = rule.best_step
    else:
        best_step = step
        states.setdefault(step, _cpu_state(model))  # the last step trained is always kept
    return CheckpointRun(setup=setup, states=states, train_loss=np.asarray(losses), val_steps=np.asarray(val_steps),
                         val_accuracy=np.asarray(val_acc), steps_run=step, seconds_per_step=seconds, device=str(device),
                         best_step=best_step)


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


class _Plateau:
    """One network's stopping rule: a target accuracy, or ``patience`` evaluations without a new best."""

    def __init__(self, setup: FTLESetup):
        self.setup, self.best, self.best_step, self.best_state, self.waited = setup, -1.0, 0, None, 0

    def done(self, step: int, accuracy: float, state) -> bool:
        """Record an evaluation; True when training should stop. ``state`` makes the weights (called on a new best)."""
        if self.setup.target_accuracy is not None and accuracy >= self.setup.target_accuracy:
            return True
        if self.setup.patience is None:
            return False
        if accuracy > self.best:
            self.best, self.best_step, self.best_state, self.waited = accuracy, step, state(), 0
            return False
        self.waited += 1
        return self.waited >= self.setup.patience


def _train_pixel_group(setups: Sequence[FTLESetup], device: str) -> list[CheckpointRun]:
    """Several pixel-wise setups that differ only in their seed, trained side by side as one ensemble.

    Each network draws its batches from its own generator and keeps its own optimiser state and
    stopping rule, so it follows the run it would follow trained alone (to rounding); the group
    shares each step's batched matrix products, and a network that has stopped rides along
    without being updated until the last one stops. The recurrent bias stays at zero (its
    gradient is dropped), as in :func:`build_setup_model`.
    """
    from .ensemble import Ensemble, evaluate_ensemble, make_ensemble_optimizer

    first = setups[0]
    for other in setups[1:]:
        if asdict(other) | {"seed": 0} != asdict(first) | {"seed": 0}:
            raise ValueError("setups trained as a group may differ only in their seed")
    train_split, val_split, _ = setup_data(first)
    ensemble = Ensemble.from_models([build_setup_model(s, input_size=train_split.x.shape[-1]).to(device) for s in setups])
    frozen = _flat_slice(ensemble, "core.bias_hh_l0")
    count, dtype = len(setups), ensemble.dtype
    opt = make_ensemble_optimizer(first.optimizer, ensemble, first.lr)
    generators = [torch.Generator().manual_seed(s.seed) for s in setups]
    orders = [torch.randperm(len(train_split), generator=g) for g in generators]
    cursor, step, started = 0, 0, time.perf_counter()
    active = torch.ones(count, dtype=torch.bool)
    stopped_at = [first.steps] * count
    rules = [_Plateau(s) for s in setups]
    wanted = set(first.checkpoints)
    states = [{0: _member_state(ensemble, k)} if 0 in wanted else {} for k in range(count)]
    losses, val_steps, val_acc = [[] for _ in setups], [[] for _ in setups], [[] for _ in setups]
    while step < first.steps and bool(active.any()):
        if cursor + first.batch_size > len(train_split):
            orders, cursor = [torch.randperm(len(train_split), generator=g) for g in generators], 0
        index = torch.stack([o[cursor : cursor + first.batch_size] for o in orders])  # (E, batch)
        cursor += first.batch_size
        x, y = train_split.x[index].to(device, dtype), train_split.y[index].to(device)
        per_network = ensemble.losses(ensemble(x), y)  # (E,)
        ensemble.flat.grad = None
        torch.where(active.to(device), per_network, torch.zeros_like(per_network)).sum().backward()
        ensemble.flat.grad[:, frozen] = 0
        opt.step(active.to(device))
        step += 1
        for k in active.nonzero().flatten().tolist():
            losses[k].append(float(per_network[k].detach()))
            if step in wanted:
                states[k][step] = _member_state(ensemble, k)
        if step % first.eval_every == 0 or step == first.steps:
            accuracy = evaluate_ensemble(ensemble, val_split)[1]
            for k in active.nonzero().flatten().tolist():
                val_steps[k].append(step)
                val_acc[k].append(float(accuracy[k]))
                if rules[k].done(step, float(accuracy[k]), lambda k=k: _member_state(ensemble, k)):
                    active[k], stopped_at[k] = False, step
    seconds = (time.perf_counter() - started) / max(step, 1)
    runs = []
    for k, setup in enumerate(setups):
        rule, kept = rules[k], states[k]
        steps_run = min(stopped_at[k], step)
        if rule.best_state is not None:
            kept = {s: v for s, v in kept.items() if s <= rule.best_step} | {rule.best_step: rule.best_state}
            best_step = rule.best_step
        else:
            best_step = steps_run
            kept.setdefault(steps_run, _member_state(ensemble, k))
        runs.append(CheckpointRun(setup=setup, states=kept, train_loss=np.asarray(losses[k]),
                                  val_steps=np.asarray(val_steps[k]), val_accuracy=np.asarray(val_acc[k]),
                                  steps_run=steps_run, seconds_per_step=seconds / count, device=str(device),
                                  best_step=best_step))
    return runs


def _flat_slice(ensemble, name: str) -> slice:
    """The columns of ``ensemble.flat`` that hold the weight ``name``."""
    start = 0
    for key, value in ensemble.params.items():
        size = value[0].numel()
        if key == name:
            return slice(start, start + size)
        start += size
    raise KeyError(name)


def _member_state(ensemble, k: int) -> dict[str, torch.Tensor]:
    return {name: value[k].detach().cpu().clone() for name, value in ensemble.params.items()}


def _cache_path(setup: FTLESetup, folder: Path) -> Path:
    return folder / f"{joblib.hash({'setup': asdict(setup), 'version': VERSION})}.pkl"


def _cache_folder(cache) -> Path | None:
    if cache is False:
        return None
    return ftle_cache_dir() if cache is None or cache is True else Path(cache)


def train_checkpoints(setup: FTLESetup, *, device: str = "cpu", cache: Path | str | bool | None = None) -> CheckpointRun:
    """Train ``setup`` (or load it from the cache) and return its checkpoints.

    Args:
        setup: the network and its training.
        device: where to train (``"cpu"``, ``"cuda"``); not part of the cache key.
        cache: None for the default folder, a folder, or False to train without the cache.
    """
    if not isinstance(setup, FTLESetup):
        raise TypeError(f"setup must be an FTLESetup, got {type(setup).__name__}")
    return train_seeds(setup, [setup.seed], device=device, cache=cache)[0]


def train_seeds(setup: FTLESetup, seeds: Sequence[int], *, device: str = "cpu",
                cache: Path | str | bool | None = None) -> list[CheckpointRun]:
    """``setup`` trained with each seed of ``seeds`` (cached runs are loaded), in the order given.

    Pixel-wise networks (batch-mean loss, no dropout) not in the cache train side by side as one
    ensemble: each follows the run it would follow alone, to rounding (batched products may round
    differently, and a long run can amplify that, so pages that share networks ask for the same
    seeds and reuse the cache); other networks train one after the other.
    """
    if not isinstance(setup, FTLESetup):
        raise TypeError(f"setup must be an FTLESetup, got {type(setup).__name__}")
    seeds = list(seeds)
    if not seeds or any(isinstance(s, bool) or not isinstance(s, int) for s in seeds) or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be a non-empty list of distinct ints, got {seeds!r}")
    setups = [replace(setup, seed=s) for s in seeds]
    folder = _cache_folder(cache)
    runs: dict[int, CheckpointRun] = {}
    if folder is not None:
        runs = {s.seed: joblib.load(_cache_path(s, folder)) for s in setups if _cache_path(s, folder).exists()}
    missing = [s for s in setups if s.seed not in runs]
    if missing:
        grouped = setup.kind == "pixels" and setup.reduction == "mean" and setup.dropout == 0
        trained = _train_pixel_group(missing, device) if grouped else [_train(s, device) for s in missing]
        for s, run in zip(missing, trained):
            runs[s.seed] = run
            if folder is not None:
                dump_atomically(run, _cache_path(s, folder))
    return [runs[s] for s in seeds]


def checkpoints_union(*groups: Sequence[int]) -> tuple[int, ...]:
    """Sorted distinct steps of several checkpoint lists."""
    return tuple(sorted({int(s) for g in groups for s in g}))


@dataclass(frozen=True)
class FlipImages:
    """Images of the pixel-wise setup as the flip protocol takes them.

    Attributes:
        images: (count, P) flattened in natural (row-major) order, values in [0, 1].
        labels: (count,) class ids.
        permutation: (P,) the reading order: step t reads position permutation[t].
        side: image side (8 or 28).
    """

    images: torch.Tensor
    labels: torch.Tensor
    permutation: torch.Tensor
    side: int


def flip_images_of(setup: FTLESetup, count: int, split: str = "test") -> FlipImages:
    """The first ``count`` images of a split, unpermuted, with the permutation the pixel-wise network reads them in."""
    from .data import pixel_permutation

    if setup.kind != "pixels":
        raise ValueError(f"the flip protocol reads images pixel by pixel: setup.kind must be 'pixels', got {setup.kind!r}")
    index = {"train": 0, "val": 1, "test": 2}
    if split not in index:
        raise ValueError(f"split must be one of {', '.join(index)}, got {split!r}")
    rows = digits_data("rows", dataset=setup.dataset)[index[split]]
    if not isinstance(count, int) or not 1 <= count <= len(rows):
        raise ValueError(f"count must be an int in [1, {len(rows)}] (images in the {split} split), got {count!r}")
    side = rows.x.shape[-1]
    return FlipImages(images=rows.x[:count].reshape(count, -1), labels=rows.y[:count],
                      permutation=pixel_permutation(side), side=side)


def paper_seconds_per_step(setup: FTLESetup, *, steps: int = 3, device: str = "cpu", length_fraction: float = 1.0) -> float:
    """Wall time of one optimiser step of ``setup``'s network on random MNIST-shaped data (best of ``steps``).

    Measures what a full-size run would cost without downloading MNIST (28x28 images: 28 steps of 28
    pixels, or 784 steps of one). With ``length_fraction`` < 1 the sequences are cut to that share of
    their length and the time is scaled back up by the inverse: forward and backward passes of a
    recurrent network cost the same at every step, so the time is linear in the length.
    """
    if not 0 < length_fraction <= 1:
        raise ValueError(f"length_fraction must be in (0, 1], got {length_fraction}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    full = (28, 28) if setup.kind == "rows" else (784, 1)
    length = max(1, round(full[0] * length_fraction))
    model = build_setup_model(setup, input_size=full[1]).to(device)
    opt = OPTIMIZERS[setup.optimizer]([p for p in model.parameters() if p.requires_grad], lr=setup.lr)
    generator = torch.Generator().manual_seed(setup.seed)
    x = torch.rand(setup.batch_size, length, full[1], generator=generator).to(device, next(model.parameters()).dtype)
    y = torch.randint(0, 10, (setup.batch_size,), generator=generator).to(device)
    times = []
    for _ in range(steps):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        started = time.perf_counter()
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y, reduction=setup.reduction).backward()
        opt.step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    return min(times) * full[0] / length


def alignment_sequences(setup: FTLESetup, count: int, *, seed: int = 0, split: str = "val",
                        dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x (count, T, m), labels (count,), h0 (count, N)): the first ``count`` images of a split, each with
    its own random h0 ~ N(0, I) from a private generator seeded with ``seed`` (the dissertation's 25
    sequences with 25 random initial states). The same h0 serves the Q/R run and the gradients."""
    index = {"train": 0, "val": 1, "test": 2}
    if split not in index:
        raise ValueError(f"split must be one of {', '.join(index)}, got {split!r}")
    data = setup_data(setup)[index[split]]
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= len(data):
        raise ValueError(f"count must be an int in [1, {len(data)}] (images in the {split} split), got {count!r}")
    h0 = torch.randn(count, setup.hidden, generator=torch.Generator().manual_seed(seed), dtype=dtype)
    return data.x[:count].to(dtype), data.y[:count], h0


@dataclass
class PixelAnalysis:
    """The pixel-wise network read by the QR algorithm and probed by Algorithm 3 (Figs 4.3-4.5, D3, Table 4.1).

    Attributes:
        net: the network (float64 snapshot).
        images: the analysed images and their reading order.
        factors: the engine's forward recursion from h_0 = 0 (``log_r``, ``ftle``: (images, T, k)).
        orderings: n -> positions ordered by the mean log R of the first n directions.
        flips: the flip experiment with the n = 1 ordering.
    """

    net: object
    images: FlipImages
    factors: object
    orderings: dict
    flips: object


def pixel_analysis(run: CheckpointRun, images: FlipImages, *, ks: Sequence[int], ns: Sequence[int], draws: int,
                   seed: int = 0) -> PixelAnalysis:
    """R values of the trained pixel-wise network on ``images`` and the R-guided against random flips.

    The Q/R recursion is the ordinary forward one (J Q, Eq. 4.2), from h_0 = 0 with no warm-up, one
    QR step per pixel, k = max(ns) directions; positions are ranked by log R_1 (n = 1) for the flips.
    """
    from .. import gradients as lg

    if run.setup.kind != "pixels":
        raise ValueError("pixel_analysis needs a run of the pixel-wise setup (kind='pixels')")
    net = lg.vanilla_rnn(run.model())
    x = lg.as_sequence(images.images.to(torch.float64), images.permutation)
    k = max(ns)
    if k > net.hidden_size:
        raise ValueError(f"ns: at most N = {net.hidden_size} directions exist, got max(ns) = {k}")
    factors = lg.qr_factors(net, x, k=k, q_vectors=False, ftle=True)
    orderings = {n: lg.r_ordered_positions(factors.log_r, n, images.permutation) for n in ns}
    flips = lg.flip_experiment(net, images.images.to(torch.float64), images.labels, orderings[min(ns)].order, ks,
                               permutation=images.permutation, draws=draws, seed=seed)
    return PixelAnalysis(net=net, images=images, factors=factors, orderings=orderings, flips=flips)


def rowwise_setup(*, hidden: int, train_steps: int, checkpoints: Sequence[int] = (), recurrent_gain: float = 0.005,
                  lr: float = 0.001, batch_size: int = 128, dataset: str = "sklearn_digits", seed: int = 0) -> FTLESetup:
    """The row-wise network of the alignment experiments (Figs 4.1, 4.2, B1, C2), as in the authors' code:
    no bias, dropout 0.1, SGD on the batch-summed cross-entropy, MNIST's normalisation, checkpoints at
    0, ``train_steps`` and ``checkpoints`` (pages that share a network must pass the same ones)."""
    return FTLESetup(kind="rows", hidden=hidden, steps=train_steps,
                     checkpoints=checkpoints_union((0, train_steps), checkpoints), optimizer="sgd", lr=lr,
                     reduction="sum", batch_size=batch_size, recurrent_gain=recurrent_gain, dropout=0.1,
                     dataset=dataset, normalise=(0.1307, 0.3081), eval_every=max(1, train_steps // 20), seed=seed)


def pixelwise_setup(*, hidden: int, max_steps: int, target_accuracy: float | None = None, patience: int | None = 6,
                    lr: float = 1e-3, batch_size: int = 100, eval_every: int = 50, dataset: str = "sklearn_digits",
                    seed: int = 0) -> FTLESetup:
    """The permuted pixel-wise network of the flip experiments (Figs 4.3-4.5, D3, Table 4.1): input bias
    only, Xavier normal, RMSprop on the batch-mean cross-entropy, trained to a validation plateau
    (``patience`` evaluations without a new best, every ``eval_every`` steps; the best weights kept),
    or stopped at ``target_accuracy``."""
    return FTLESetup(kind="pixels", hidden=hidden, steps=max_steps, checkpoints=(0,), optimizer="rmsprop", lr=lr,
                     batch_size=batch_size, dataset=dataset, target_accuracy=target_accuracy, patience=patience,
                     eval_every=eval_every, seed=seed)
