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
from dataclasses import asdict, dataclass
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
           "train_checkpoints"]

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
    eval_every: int = 50
    seed: int = 0

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"kind must be 'rows' or 'pixels', got {self.kind!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.reduction not in ("sum", "mean"):
            raise ValueError(f"reduction must be 'sum' or 'mean', got {self.reduction!r}")
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
        steps_run: optimiser steps taken (fewer than ``setup.steps`` when the target accuracy was reached).
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

    @property
    def final_step(self) -> int:
        """The last checkpoint reached."""
        return max(self.states)

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
            if setup.target_accuracy is not None and val_acc[-1] >= setup.target_accuracy:
                break
    seconds = (time.perf_counter() - started) / max(step, 1)
    states.setdefault(step, _cpu_state(model))  # the last step trained is always kept
    return CheckpointRun(setup=setup, states=states, train_loss=np.asarray(losses), val_steps=np.asarray(val_steps),
                         val_accuracy=np.asarray(val_acc), steps_run=step, seconds_per_step=seconds, device=str(device))


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def train_checkpoints(setup: FTLESetup, *, device: str = "cpu", cache: Path | str | bool | None = None) -> CheckpointRun:
    """Train ``setup`` (or load it from the cache) and return its checkpoints.

    Args:
        setup: the network and its training.
        device: where to train (``"cpu"``, ``"cuda"``); not part of the cache key.
        cache: None for the default folder, a folder, or False to train without the cache.
    """
    if not isinstance(setup, FTLESetup):
        raise TypeError(f"setup must be an FTLESetup, got {type(setup).__name__}")
    if cache is False:
        return _train(setup, device)
    folder = ftle_cache_dir() if cache is None or cache is True else Path(cache)
    key = joblib.hash({"setup": asdict(setup), "version": VERSION})
    path = folder / f"{key}.pkl"
    if path.exists():
        return joblib.load(path)
    run = _train(setup, device)
    dump_atomically(run, path)
    return run


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


def pixelwise_setup(*, hidden: int, max_steps: int, target_accuracy: float | None = 0.85, lr: float = 1e-3,
                    batch_size: int = 100, dataset: str = "sklearn_digits", seed: int = 0) -> FTLESetup:
    """The permuted pixel-wise network of the flip experiments (Figs 4.3-4.5, D3, Table 4.1): input bias
    only, Xavier normal, RMSprop on the batch-mean cross-entropy, stopped at ``target_accuracy``."""
    return FTLESetup(kind="pixels", hidden=hidden, steps=max_steps, checkpoints=(0,), optimizer="rmsprop", lr=lr,
                     batch_size=batch_size, dataset=dataset, target_accuracy=target_accuracy, eval_every=100, seed=seed)
