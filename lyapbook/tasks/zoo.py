"""Zoos: many networks trained with sampled hyperparameters, one tidy row per network and epoch.

A zoo is a list of :class:`NetworkSpec` (from :func:`sample_specs`, sizes given by the caller).
:func:`run_zoo` groups the specs that share an architecture, size and task into ensembles
(:mod:`lyapbook.tasks.ensemble`: one batched model per group; FORCE reservoirs likewise) and
trains the groups in local processes (joblib) or on a ``dask.distributed`` cluster
(:mod:`lyapbook.tasks.cluster`). Every network is cached on its own, keyed by its specification
(the zoo's name excluded, so zoos that ask for the same network share it): a second run trains
nothing, an interrupted sweep resumes with the networks it had not finished, and a group is
formed only from networks still to train. Each cache entry holds the network's rows and its
trained weights (:func:`load_network` rebuilds the module).

Hyperparameters are sampled as in the dissertation (ch. 3, Appendix A and its Table A1; ch. 2
for the ``ch2_*`` zoos); the chapter-3 zoos follow the specification's reading of the authors'
code where the dissertation is silent.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import torch

from ..lyapunov import lyapunov_spectrum
from ..perturbation import cache_tag
from ..rnn import Rank1Reservoir, jacobian
from .data import Split, char_data, check_dataset, digits_data, four_sine, four_sine_paper, lorenz96_data, stream_pieces
from .download import cache_dir, dump_atomically
from .ensemble import Ensemble, evaluate_ensemble, member_spectra, train_ensemble
from .mocap import mocap_data
from .models import ARCHITECTURES, CELL_OPTIONS, INITS, build_model
from .training import OPTIMIZERS, force_train_ensemble

__all__ = ["DIGITS_SETTINGS", "DigitsSetting", "NetworkSpec", "ZOOS", "digits_settings", "ZOO_VERSION", "ZooCache", "sample_specs", "zoo_sizes", "train_network", "train_group",
           "check_datasets",
           "plan_groups", "run_zoo", "load_network", "network_key"]

# Init-parameter ranges of the sequential-MNIST zoo (dissertation ch. 3, Appendix A).
SMNIST_INIT = {"lstm": (0.1, 3.0), "gru": (0.1, 3.0), "rnn": (0.1, 3.0), "asrnn": (0.1, 50.0), "cornn": (0.1, 30.0),
               "lipschitz": (0.1, 20.0), "noisy": (0.1, 5.0), "lem": (0.1, 10.0)}


@dataclass(frozen=True)
class DigitsSetting:
    """How one architecture of the sequential-digits zoo is drawn and trained: the init scale p ~
    U[``init_range``], the cell's hyperparameters ``cell`` (the cell's defaults where absent), the
    Adam learning rate ``lr``, and why."""

    init_range: tuple[float, float]
    cell: tuple[tuple[str, float], ...] = ()
    lr: float = 1e-2
    reason: str = ""


# The dissertation's setting (row-wise MNIST, 28 steps): its ranges, the cells' defaults, lr 0.01.
DIGITS_PAPER = {arch: DigitsSetting(SMNIST_INIT[arch], reason="the dissertation's range (Appendix A) and the cell's "
                                                                "defaults") for arch in ARCHITECTURES}
# The 8 x 8 digits read row by row are 8 steps long. The cells' step sizes were set for long
# inputs, and the dissertation's ranges were set for MNIST; the teaching zoo needs networks on both
# sides of its median loss inside every architecture. The ranges were set once, from a pilot run,
# before any of chapter 3's analyses; the chapter's tab-3-zoos shows the split they give.
DIGITS_SHORT = {
    "lstm": DigitsSetting((0.1, 6.0), reason="the dissertation's 0.1 - 3 widened to 6, so that LSTMs fall on both "
                                             "sides of the median loss on the short task"),
    "gru": DigitsSetting((0.1, 6.0), reason="widened to 6, as the LSTM's"),
    "rnn": DigitsSetting((0.1, 3.0), reason="the dissertation's range"),
    "asrnn": DigitsSetting((0.1, 6.0), cell=(("eps", 1.0), ("gamma", 0.01)),
                           reason="step eps = 1: with the default 0.01 the state moves by at most 8 x 0.01 = 0.08 "
                                  "in 8 steps; range narrowed from 50 to 6"),
    "cornn": DigitsSetting((0.1, 8.0), cell=(("dt", 0.4),), lr=2e-2,
                           reason="dt = 0.4: the default 0.042 covers 8 x 0.042 = 0.34 time units in 8 steps; "
                                  "lr 0.02 for its slower training; range narrowed from 30 to 8"),
    "lipschitz": DigitsSetting((0.1, 5.0), cell=(("dt", 0.5),),
                               reason="dt = 0.5: the default 0.1 covers 0.8 time units in 8 steps; range narrowed "
                                      "from 20 to 5"),
    "noisy": DigitsSetting((0.1, 5.0), cell=(("dt", 0.5),), reason="dt = 0.5, as the Lipschitz RNN it perturbs; the "
                                                                   "dissertation's range"),
    "lem": DigitsSetting((0.1, 4.0), reason="the default dt = 1 covers 8 time units; range narrowed from 10 to 4"),
}
DIGITS_SETTINGS = {"dissertation": DIGITS_PAPER, "short": DIGITS_SHORT}


def digits_settings(dataset: str | None = None) -> dict[str, DigitsSetting]:
    """The per-architecture settings for ``dataset``: the dissertation's for MNIST (28 steps), the
    short-sequence ones for the embedded 8 x 8 digits (8 steps)."""
    return DIGITS_PAPER if dataset == "mnist" else DIGITS_SHORT
TASKS = ("digits_rows", "digits_pixels", "characters", "signal", "four_sine", "four_sine_paper")
LE_PROTOCOLS = ("test", "repeat", "stream")
FORCE_EPOCH = 1200  # points of one FORCE epoch (120 time units at dt = 0.1)


@dataclass(frozen=True)
class NetworkSpec:
    """Everything that determines one trained network (and so, without ``zoo``, its cache key).

    Spectra: at ``spectrum_epochs`` (the cap ``epochs`` among them means "final": a network that
    stops early gets its final spectrum where it stops), on ``le_sequences`` inputs chosen by
    ``le_protocol``: ``"test"`` the first test sequences (``le_warmup`` steps of warm-up);
    ``"repeat"`` the same, each fed twice, the first pass as warm-up (the authors' effective SMNIST
    protocol); ``"stream"`` pieces of ``le_warmup + le_steps`` steps of the validation sequences laid
    end to end. For FORCE tasks: ``le_sequences`` starts along the free run, ``le_warmup`` and
    ``le_steps`` steps. ``le_t_on``: steps between re-orthonormalisations (1: every step).
    """

    zoo: str
    task: str  # one of TASKS
    arch: str
    hidden: int
    init_p: float  # uniform init scale p, the FORCE gain g, or the ASRNN grid's sigma (init="asrnn_normal")
    epochs: int  # the cap; with ``patience``, early stopping may end training sooner
    seed: int
    lr: float = 1e-3
    dropout: float = 0.0
    batch_size: int = 64
    bias: bool = True
    lr_decay: float = 1.0
    decay_after: int = 0
    train_size: int | None = None  # use the first n training sequences (None: all)
    spectrum_epochs: tuple[int, ...] = ()
    le_sequences: int = 10
    le_warmup: int = 0
    le_k: int | None = None
    dataset: str | None = None  # None: the task's embedded default; else a downloadable dataset
    trials: tuple[str, ...] = ()  # CMU motion-capture trial ids, for dataset="cmu_mocap"
    optimizer: str = "adam"
    clip: float | None = 5.0
    patience: int | None = None  # early stopping on validation loss (epochs without improvement)
    subsample: float | None = None  # each network's own random fraction of the training and validation rows
    val_size: int | None = 512  # the first n validation sequences (None: all)
    init: str = "uniform"
    cell: tuple[tuple[str, float], ...] = ()  # cell hyperparameters (e.g. (("eps", 1.0), ("gamma", 0.1))), or tau for FORCE
    le_protocol: str = "test"
    le_steps: int | None = None
    le_t_on: int = 1  # steps between re-orthonormalisations of the spectrum
    record_eigenvalues: bool = False  # record the recurrent Jacobian's eigenvalues after training
    test_epochs: int = 1  # FORCE: free-running epochs after training


# Bumped whenever training or data change what a spec produces; the default cache lives under it.
# 4: target-learning rows hold the free run's first epoch; FORCE's products reordered (rounding);
#    le_t_on added to NetworkSpec.
ZOO_VERSION = 4
_DATASET_TASK = {"digits_rows": "digits", "digits_pixels": "digits"}  # spec.task -> lyapbook.tasks.data.DATASETS
GAINS = tuple(float(g) for g in np.round(np.arange(1.1, 2.01, 0.1), 1))  # FORCE gains g of the dissertation


# ----------------------------------------------------------------------------------------------
# Sampling: one function per zoo; keyword-only arguments without defaults are the sizes a caller must give.


def _final_and_first(epochs: int, first: int) -> tuple[int, ...]:
    return tuple(sorted(set(range(min(first, epochs) + 1)) | {epochs}))


def _smnist(rng, *, per_arch: int, hidden: int, epochs: int, archs=ARCHITECTURES, train_size=None, val_size=None,
            dataset=None, le_sequences=128, patience=None, settings=None, batch_size=128, dropout=0.1, bias=False):
    """Sequential digits across 8 architectures (spec §1.1.c): Adam, batch 128, dropout 0.1, no bias
    (the authors' code); init ranges, cell step sizes and learning rates per architecture from
    ``settings`` ("dissertation" or "short"; default :func:`digits_settings` of the dataset);
    ``patience`` stops a network early (``epochs`` is then the cap); spectra at epochs 0-5 and
    final on ``le_sequences`` test sequences, each fed twice (first pass warm-up)."""
    if settings is not None and settings not in DIGITS_SETTINGS:
        raise ValueError(f"settings: unknown {settings!r}; choose one of {', '.join(DIGITS_SETTINGS)} (or None: by dataset)")
    table = digits_settings(dataset) if settings is None else DIGITS_SETTINGS[settings]
    specs = []
    for arch in archs:
        setting = table[arch]
        low, high = setting.init_range
        for _ in range(per_arch):
            specs.append(NetworkSpec("smnist", "digits_rows", arch, hidden, round(float(rng.uniform(low, high)), 4), epochs,
                                     int(rng.integers(2**31)), lr=setting.lr, batch_size=batch_size, dropout=dropout,
                                     bias=bias, train_size=train_size, val_size=val_size, dataset=dataset,
                                     patience=patience, cell=setting.cell, spectrum_epochs=_final_and_first(epochs, 5),
                                     le_sequences=le_sequences, le_protocol="repeat"))
    return specs


def _charrnn(rng, *, per_size: int, sizes: tuple[int, ...], epochs: int, train_size=None, val_size=None, dataset=None,
             subsample=0.3, patience=None, lr=2e-3, batch_size=32, dropout=0.1, le_sequences=10,
             spectrum_epochs="every"):
    """CharRNN LSTMs of several sizes (spec §1.1.b): p ~ U[0.04, 0.40], Adam lr 2e-3, dropout 0.1, no bias,
    each network on its own random 30 % of the training and validation sequences, spectra every epoch
    (``spectrum_epochs="every"``) or after the listed epochs (the final one always among them)."""
    if spectrum_epochs == "every":
        spectrum_epochs = tuple(range(epochs + 1))
    else:
        spectrum_epochs = tuple(sorted({int(e) for e in spectrum_epochs} | {epochs}))
        if spectrum_epochs[0] < 0 or spectrum_epochs[-1] > epochs:
            raise ValueError(f"spectrum_epochs: epochs between 0 and {epochs}, got {spectrum_epochs}")
    specs = []
    for size in sizes:
        for _ in range(per_size):
            specs.append(NetworkSpec("charrnn", "characters", "lstm", size, round(float(rng.uniform(0.04, 0.40)), 3), epochs,
                                     int(rng.integers(2**31)), lr=lr, dropout=dropout, batch_size=batch_size, bias=False,
                                     train_size=train_size, val_size=val_size, subsample=subsample, dataset=dataset,
                                     patience=patience, spectrum_epochs=spectrum_epochs, le_sequences=le_sequences))
    return specs


def _target(rng, *, per_g: int, hidden: int, epochs: int, gains=GAINS):
    """FORCE reservoirs on the book's fast four-sine target (tau = 0.5; chapter 2's reading)."""
    return [NetworkSpec("target", "four_sine", "reservoir", hidden, float(g), epochs, int(rng.integers(2**31)), le_sequences=10,
                        le_warmup=100, le_steps=200)
            for g in gains for _ in range(per_g)]


def _target_paper(rng, *, per_g: int, hidden: int, epochs: int, test_epochs: int | None = None, gains=GAINS,
                  le_sequences=10, le_steps=200, le_warmup=100, le_t_on=10):
    """FORCE reservoirs on the paper's four-sine target (spec §1.1.a): tau = 1, dt = 0.1, RLS every 2 steps,
    ``epochs`` training epochs of 1200 steps, then ``test_epochs`` (default: as many) free-running;
    loss = MAE of the free run; spectrum of the closed loop from ``le_sequences`` states along the free run.
    One Euler step of dt = 0.1 stretches tangent vectors by at most e^(0.1 lambda), so a QR every
    ``le_t_on`` = 10 steps (one time unit) gives the exponents of a QR every step, at a tenth of the QRs."""
    return [NetworkSpec("target_paper", "four_sine_paper", "reservoir", hidden, float(g), epochs, int(rng.integers(2**31)),
                        cell=(("tau", 1.0),), test_epochs=epochs if test_epochs is None else test_epochs,
                        le_sequences=le_sequences, le_steps=le_steps, le_warmup=le_warmup, le_t_on=le_t_on)
            for g in gains for _ in range(per_g)]


def _asrnn_grid(rng, *, hidden: int, epochs: int, eps: tuple[float, ...], gammas: tuple[float, ...],
                sigmas: tuple[float, ...], lrs: tuple[float, ...], le_warmup: int, le_steps: int, per_point=1,
                train_size=None, val_size=None, dataset=None, batch_size=128, le_sequences=20):
    """The ASRNN grid of Figs. 3.2-3.4 (spec fig-3-2): pixel-wise digits, eps x gamma x sigma x lr, Adagrad,
    U ~ N(0, std sigma/n), input weights ~ N(0, std 1/input_dim), biases 0; Jacobian eigenvalues and a
    spectrum on pieces of the concatenated validation stream after training."""
    return [NetworkSpec("asrnn_grid", "digits_pixels", "asrnn", hidden, float(sigma), epochs, int(rng.integers(2**31)),
                        lr=float(lr), optimizer="adagrad", batch_size=batch_size, init="asrnn_normal",
                        cell=(("eps", float(e)), ("gamma", float(g))), train_size=train_size, val_size=val_size,
                        dataset=dataset, spectrum_epochs=(epochs,), le_sequences=le_sequences, le_protocol="stream",
                        le_warmup=le_warmup, le_steps=le_steps, record_eigenvalues=True)
            for e in eps for g in gammas for sigma in sigmas for lr in lrs for _ in range(per_point)]


def _ch2_evolution(rng, *, ps: tuple[float, ...], hidden: int, epochs: int, train_size=None, dataset=None, patience=None,
                   batch_size=100):
    """Chapter 2: LSTMs at the six initialisations of Fig. 2.6, spectra after every epoch."""
    return [NetworkSpec("ch2_evolution", "characters", "lstm", hidden, p, epochs, int(rng.integers(2**31)), lr=2e-3,
                        batch_size=batch_size, bias=False, train_size=train_size, dataset=dataset, patience=patience,
                        spectrum_epochs=tuple(range(epochs + 1)))
            for p in ps]


def _ch2_charrnn(rng, *, count: int, hidden: int, epochs: int, train_size=None, dataset=None, batch_size=100, patience=None):
    """Chapter 2: CharRNN LSTMs over (learning rate, log-dropout) at a fixed p = 0.08, no biases."""
    specs = []
    for _ in range(count):
        lr = round(float(rng.uniform(5e-4, 6e-3)), 6)
        dropout = round(float(10 ** rng.uniform(-3.0, -0.9)), 4)
        specs.append(NetworkSpec("ch2_charrnn", "characters", "lstm", hidden, 0.08, epochs, int(rng.integers(2**31)), lr=lr,
                                 dropout=dropout, batch_size=batch_size, bias=False, lr_decay=0.95, decay_after=10,
                                 train_size=train_size, dataset=dataset, patience=patience,
                                 spectrum_epochs=tuple(range(epochs + 1))))
    return specs


def _ch2_signal(rng, *, count: int, hidden: int, epochs: int, sequences: int, patience=None):
    """Chapter 2: signal-prediction LSTMs over the initialisation p in [0.05, 0.5], learning rate 0.05."""
    return [NetworkSpec("ch2_signal", "signal", "lstm", hidden, round(float(rng.uniform(0.05, 0.5)), 4), epochs,
                        int(rng.integers(2**31)), lr=0.05, batch_size=250, train_size=sequences, patience=patience,
                        spectrum_epochs=tuple(range(epochs + 1)))
            for _ in range(count)]


SAMPLERS: dict[str, Callable[..., list[NetworkSpec]]] = {
    "smnist": _smnist, "charrnn": _charrnn, "target": _target, "target_paper": _target_paper, "asrnn_grid": _asrnn_grid,
    "ch2_evolution": _ch2_evolution, "ch2_charrnn": _ch2_charrnn, "ch2_signal": _ch2_signal,
}
ZOOS = tuple(SAMPLERS)


def zoo_sizes(zoo: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(required, optional) keyword names of ``zoo``'s sizes and settings."""
    if zoo not in SAMPLERS:
        raise ValueError(f"zoo: unknown {zoo!r}; choose one of {', '.join(ZOOS)}")
    parameters = list(inspect.signature(SAMPLERS[zoo]).parameters.values())[1:]
    return (tuple(p.name for p in parameters if p.default is inspect.Parameter.empty),
            tuple(p.name for p in parameters if p.default is not inspect.Parameter.empty))


def sample_specs(zoo: str, *, seed: int = 0, **sizes) -> list[NetworkSpec]:
    """The networks of ``zoo``, hyperparameters drawn from ``seed``, sizes from the caller.

    ``sample_specs("smnist", seed=0, per_arch=12, hidden=16, epochs=10)``: every size is a keyword
    (:func:`zoo_sizes` lists them; a chapter keeps them in its parameters cell and in
    ``chapters/profiles.yml``).
    """
    required, optional = zoo_sizes(zoo)
    unknown = sorted(set(sizes) - set(required) - set(optional))
    if unknown:
        raise ValueError(f"sample_specs({zoo!r}): unknown size(s) {', '.join(unknown)}; it takes "
                         f"{', '.join(required)} (required) and {', '.join(optional) or 'nothing else'} (optional)")
    missing = [name for name in required if name not in sizes]
    if missing:
        raise ValueError(f"sample_specs({zoo!r}): missing size(s) {', '.join(missing)}; give them as keywords "
                         f"(a chapter keeps them in its parameters cell and chapters/profiles.yml)")
    return SAMPLERS[zoo](np.random.default_rng(seed), **sizes)


# ----------------------------------------------------------------------------------------------
# Data, models and spectra of one spec.


def _limit(split: Split, n: int | None) -> Split:
    return split if n is None else Split(split.x[:n], split.y[:n])


def _task_data(spec: NetworkSpec) -> tuple[tuple[Split, Split, Split], int | None]:
    """The (train, validation, test) splits of a spec's task and dataset, and the vocabulary size for tokens.

    Every network of a dataset sees one split (seed 0), so a zoo's networks are scored alike.
    """
    if spec.task in ("digits_rows", "digits_pixels"):
        mode = "rows" if spec.task == "digits_rows" else "pixels"
        return digits_data(mode, dataset=spec.dataset or "sklearn_digits", seed=0), None
    if spec.task == "characters":
        data = char_data(spec.dataset or "pydoc", seq_len=100, seed=0)
        return (data.train, data.validation, data.test), len(data.vocabulary)
    if spec.task == "signal":
        if spec.dataset == "cmu_mocap":
            return mocap_data(spec.trials, seq_len=100, seed=0), None
        sequences = spec.train_size or 200
        return lorenz96_data(sequences=int(sequences / 0.8), seq_len=100, seed=0), None
    raise ValueError(f"task: {spec.task!r} has no sequence data (FORCE tasks generate their targets)")


def _build(spec: NetworkSpec, splits: tuple[Split, Split, Split], vocabulary: int | None):
    common = dict(init_p=spec.init_p, seed=spec.seed, dropout=spec.dropout, bias=spec.bias, init=spec.init, cell=dict(spec.cell))
    if spec.task in ("digits_rows", "digits_pixels"):
        return build_model(spec.arch, splits[0].x.shape[-1], spec.hidden, 10, **common)
    if spec.task == "characters":
        return build_model(spec.arch, 32, spec.hidden, vocabulary, vocabulary=vocabulary, output="all", loss="cross_entropy", **common)
    return build_model(spec.arch, splits[0].x.shape[-1], spec.hidden, splits[0].y.shape[-1], output="all", **common)


def _spectrum_inputs(spec: NetworkSpec, validation: Split, test: Split) -> tuple[torch.Tensor, int]:
    """(sequences, warm-up steps) for a spec's spectra, by its ``le_protocol``."""
    if spec.le_protocol == "test":
        return test.x[: spec.le_sequences], spec.le_warmup
    if spec.le_protocol == "repeat":
        x = test.x[: spec.le_sequences]
        return torch.cat([x, x], dim=1), x.shape[1]
    return stream_pieces(validation.x, spec.le_sequences, spec.le_warmup + spec.le_steps, seed=0), spec.le_warmup


def _subsample(spec: NetworkSpec, rows: int, salt: int) -> torch.Tensor:
    """The network's own rows: a seeded random ``subsample`` fraction of ``rows`` (all rows without one)."""
    if spec.subsample is None:
        return torch.arange(rows)
    generator = torch.Generator().manual_seed(int(np.random.SeedSequence([spec.seed, salt]).generate_state(1)[0]))
    keep = max(1, int(round(spec.subsample * rows)))
    return torch.randperm(rows, generator=generator)[:keep].sort().values


@torch.no_grad()
def _jacobian_eigenvalues(model, image: torch.Tensor) -> np.ndarray:
    """Eigenvalues of the core's Jacobian at the state reached after ``image`` (time, features) less its last
    step, with that last step as input (Eq. 3.4 for an ASRNN): (hidden,) complex."""
    model = model.double().eval()
    inputs = model.core_inputs(image.unsqueeze(0)).double()
    _, state = model.core(inputs[:, :-1])
    return torch.linalg.eigvals(jacobian(model.core, state, inputs[:, -1])[0]).numpy()


# ----------------------------------------------------------------------------------------------
# Training one group.


def _shared_fields(spec: NetworkSpec) -> tuple:
    """What the networks of one ensemble must share (everything but per-network hyperparameters)."""
    per_network = {"zoo", "seed", "init_p", "lr", "dropout", "lr_decay", "decay_after", "clip", "patience", "cell", "init"}
    return tuple((k, v) for k, v in asdict(spec).items() if k not in per_network) + (("cell_names", tuple(n for n, _ in spec.cell)),)


def _base_row(spec: NetworkSpec) -> dict:
    return {k: v for k, v in asdict(spec).items() if k != "spectrum_epochs"}


def train_group(specs: list[NetworkSpec], device: str = "cpu") -> list[dict]:
    """Train networks that share architecture, size and task as one ensemble on ``device``.

    Returns, per spec, ``{"rows": [one dict per recorded epoch], "state_dict": trained weights}``.
    """
    if not specs:
        raise ValueError("specs: an empty group")
    shared = _shared_fields(specs[0])
    for spec in specs[1:]:
        if _shared_fields(spec) != shared:
            raise ValueError(f"specs: {spec} cannot share an ensemble with {specs[0]}; use plan_groups to group them")
    if specs[0].arch == "reservoir":
        return _train_reservoirs(specs, device)
    return _train_sequence_models(specs, device)


def _train_sequence_models(specs: list[NetworkSpec], device: str) -> list[dict]:
    first = specs[0]
    splits, vocabulary = _task_data(first)
    train_split, val_split, test_split = _limit(splits[0], first.train_size), _limit(splits[1], first.val_size), splits[2]
    models = [_build(spec, splits, vocabulary).to(device) for spec in specs]
    ensemble = Ensemble(models)
    train_index = torch.stack([_subsample(spec, len(train_split), 1) for spec in specs])
    val_index = torch.stack([_subsample(spec, len(val_split), 2) for spec in specs])
    sequences, warmup = _spectrum_inputs(first, val_split, test_split)

    def spectra(ens: Ensemble, members: list[int], epoch: int) -> list[dict]:
        return member_spectra(ens, members, sequences, warmup=warmup, k=first.le_k, t_on=first.le_t_on)

    callbacks = {epoch: spectra for epoch in first.spectrum_epochs}
    histories = train_ensemble(
        ensemble, train_split, val_split, epochs=first.epochs, seeds=[s.seed for s in specs], lr=[s.lr for s in specs],
        batch_size=first.batch_size, optimizer=first.optimizer, lr_decay=[s.lr_decay for s in specs],
        decay_after=[s.decay_after for s in specs], clip=[s.clip for s in specs], patience=[s.patience for s in specs],
        train_index=train_index, val_index=None if first.subsample is None else val_index, callbacks=callbacks,
        final_callback=spectra if first.epochs in first.spectrum_epochs else None,
    )
    test_loss, test_accuracy = evaluate_ensemble(ensemble, test_split)
    weights = ensemble.state_dicts()
    results = []
    for k, (spec, history) in enumerate(zip(specs, histories)):
        base = {**_base_row(spec), "group_size": len(specs), "best_epoch": history.best_epoch,
                "stopped_epoch": history.stopped_epoch, "early_stopped": history.early_stopped,
                "failed": history.failed_epoch is not None, "failed_epoch": history.failed_epoch}
        rows = []
        for record in history.records:
            row = {**base, "epoch": record.epoch, "train_loss": record.train_loss, "val_loss": record.val_loss,
                   "val_accuracy": record.val_accuracy, "epoch_lr": record.lr, "epoch_seconds": record.seconds}
            if "spectrum" in record.extras:
                row.update(spectrum=record.extras["spectrum"].numpy(), spectrum_std=record.extras["spectrum_std"].numpy(),
                           spectrum_seconds=record.extras["spectrum_seconds"],
                           spectrum_bounded=record.extras["spectrum_bounded"])
            rows.append(row)
        rows[-1].update(test_loss=float(test_loss[k]), test_accuracy=None if test_accuracy is None else float(test_accuracy[k]))
        if spec.record_eigenvalues and history.failed_epoch is None:
            image = val_split.x[int(np.random.default_rng(spec.seed).integers(len(val_split)))]
            rows[-1]["eigenvalues"] = _jacobian_eigenvalues(ensemble.member(k).cpu(), image)
        results.append({"rows": rows, "state_dict": weights[k]})
    return results


def _reservoir(spec: NetworkSpec) -> Rank1Reservoir:
    return Rank1Reservoir(spec.hidden, g=spec.init_p, seed=spec.seed, **dict(spec.cell)).double()


def _train_reservoirs(specs: list[NetworkSpec], device: str) -> list[dict]:
    """FORCE learning of a group of reservoirs of one size (chapter 2's ``four_sine`` or the paper's target)."""
    first = specs[0]
    reservoirs = [_reservoir(spec).to(device) for spec in specs]
    if first.task == "four_sine":
        targets = [four_sine(spec.seed, points=FORCE_EPOCH * (spec.epochs + 1))[1:] for spec in specs]
        val_points, states0 = FORCE_EPOCH, None
    else:
        targets = [four_sine_paper(spec.seed, points=FORCE_EPOCH * (spec.epochs + spec.test_epochs))[1:] for spec in specs]
        val_points = FORCE_EPOCH * first.test_epochs

        def start(spec):  # x_0 = 0.5 N(0, 1), the authors' choice, from the network's seed
            generator = torch.Generator().manual_seed(int(np.random.SeedSequence([spec.seed, 4]).generate_state(1)[0]))
            return 0.5 * torch.randn(spec.hidden, generator=generator, dtype=torch.float64)

        states0 = torch.stack([start(spec) for spec in specs])
    signals = torch.stack([t[0] for t in targets])
    result = force_train_ensemble(reservoirs, signals, val_points=val_points, states0=states0, keep_states=first.le_sequences)
    results = []
    for k, (spec, reservoir) in enumerate(zip(specs, reservoirs)):
        starts = result["states"][k]
        if spec.task == "four_sine":  # chapter 2's reading: random starts, as before
            generator = torch.Generator().manual_seed(spec.seed)
            starts = 0.5 * torch.randn(spec.le_sequences, spec.hidden, generator=generator, dtype=torch.float64).to(device)
        spectrum = lyapunov_spectrum(reservoir, spec.le_warmup + spec.le_steps, starts, warmup=spec.le_warmup,
                                     t_on=spec.le_t_on)
        val_mae = float(result["val_mae"][k])
        row = {**_base_row(spec), "group_size": len(specs), "epoch": spec.epochs, "train_loss": float(result["train_mae"][k]),
               "val_loss": val_mae, "val_accuracy": 1.0 - val_mae / float(signals[k, -val_points:].abs().mean()),
               "spectrum": spectrum.exponents.float().cpu().numpy(), "spectrum_std": spectrum.std.float().cpu().numpy(),
               "target": str(targets[k][1]), "failed": not math.isfinite(val_mae), "best_epoch": spec.epochs,
               "stopped_epoch": spec.epochs}
        if spec.task == "four_sine_paper":  # the first free-running epoch, beside its target (Fig. 3.7, left)
            row.update(free_run=result["output"][k, :FORCE_EPOCH].float().cpu().numpy(),
                       free_run_target=signals[k, -val_points:][:FORCE_EPOCH].float().cpu().numpy())
        results.append({"rows": [row], "state_dict": {"w_out": reservoir.w_out.detach().cpu().clone()}})
    return results


def train_network(spec: NetworkSpec, device: str = "cpu") -> list[dict]:
    """Train one network (a group of one) on ``device``; return its rows."""
    return train_group([spec], device)[0]["rows"]


# ----------------------------------------------------------------------------------------------
# The cache: one file per network.


def network_key(spec: NetworkSpec) -> str:
    """The cache key of a network: a hash of its specification without the zoo's name."""
    return joblib.hash({k: v for k, v in asdict(spec).items() if k != "zoo"})


class ZooCache:
    """Trained networks on disk, one file per network (``<folder>/<key[:2]>/<key>.pkl``), written atomically.

    The folder may be shared by every worker of a cluster (a path all of them see).
    """

    def __init__(self, folder: Path | str | None = None):
        self.folder = Path(folder) if folder is not None else cache_dir() / cache_tag() / "zoo" / f"v{ZOO_VERSION}"

    def path(self, spec: NetworkSpec) -> Path:
        key = network_key(spec)
        return self.folder / key[:2] / f"{key}.pkl"

    def has(self, spec: NetworkSpec) -> bool:
        return self.path(spec).exists()

    def store(self, spec: NetworkSpec, result: dict) -> None:
        dump_atomically({"spec": replace(spec, zoo=""), **result}, self.path(spec))

    def load(self, spec: NetworkSpec) -> dict:
        path = self.path(spec)
        if not path.exists():
            raise KeyError(f"network not in the cache {self.folder}: {spec}")
        entry = joblib.load(path)
        entry["rows"] = [{**row, "zoo": spec.zoo} for row in entry["rows"]]
        return entry


def load_network(spec: NetworkSpec, cache: Path | str | None = None) -> torch.nn.Module:
    """The trained network of ``spec`` from the zoo cache: a ``SequenceModel`` (or a ``Rank1Reservoir``)."""
    entry = ZooCache(cache).load(spec)
    if spec.arch == "reservoir":
        model = _reservoir(spec)
        model.w_out.data.copy_(entry["state_dict"]["w_out"])
        return model
    splits, vocabulary = _task_data(spec)
    model = _build(spec, splits, vocabulary)
    model.load_state_dict(entry["state_dict"])
    return model


def train_and_store(specs: list[NetworkSpec], cache: str, device: str = "cpu", threads: int | None = None) -> list[str]:
    """Train one group and store each network in the cache at ``cache``; returns their keys (a cluster task)."""
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        store = ZooCache(cache)
        for spec, result in zip(specs, train_group(specs, device)):
            store.store(spec, result)
    finally:
        torch.set_num_threads(previous)
    return [network_key(spec) for spec in specs]


# ----------------------------------------------------------------------------------------------
# Sweeps.


def plan_groups(specs: list[NetworkSpec], group_size: int | None = None, n_jobs: int = 1) -> list[list[NetworkSpec]]:
    """Ensembles for ``specs``: networks that share architecture, size, task and training length, in
    chunks of at most ``group_size`` (default: enough chunks to keep ``n_jobs`` workers busy, at most 32)."""
    by_key: dict[tuple, list[NetworkSpec]] = {}
    for spec in specs:
        by_key.setdefault(_shared_fields(spec), []).append(spec)
    groups = []
    for members in by_key.values():
        size = group_size or max(1, min(32, math.ceil(len(members) / max(1, n_jobs))))
        groups.extend(members[start : start + size] for start in range(0, len(members), size))
    return groups


def _check(spec: NetworkSpec) -> None:
    if spec.task not in TASKS:
        raise ValueError(f"task: unknown {spec.task!r} in {spec}; choose one of {', '.join(TASKS)}")
    forced = spec.task in ("four_sine", "four_sine_paper")
    if spec.arch not in ((*ARCHITECTURES,) if not forced else ("reservoir",)):
        raise ValueError(f"arch: unknown {spec.arch!r} in {spec}" + ("; FORCE tasks train 'reservoir'" if forced else ""))
    if spec.hidden < 1 or spec.epochs < 1 or not spec.init_p > 0:
        raise ValueError(f"impossible sizes in {spec}: hidden and epochs must be >= 1 and init_p > 0")
    if spec.dataset is not None:
        check_dataset(_DATASET_TASK.get(spec.task, spec.task), spec.dataset)
    if spec.dataset == "cmu_mocap" and not spec.trials:
        raise ValueError(f"trials: dataset 'cmu_mocap' needs the CMU trial ids to use, in {spec}")
    if spec.optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer: unknown {spec.optimizer!r} in {spec}; choose one of {', '.join(OPTIMIZERS)}")
    if spec.init not in INITS:
        raise ValueError(f"init: unknown {spec.init!r} in {spec}; choose one of {', '.join(INITS)}")
    if spec.le_t_on < 1:
        raise ValueError(f"le_t_on must be >= 1 step, got {spec.le_t_on} in {spec}")
    if spec.le_protocol not in LE_PROTOCOLS or (spec.le_protocol == "stream" and not spec.le_steps):
        raise ValueError(f"le_protocol: {spec.le_protocol!r} in {spec}; choose one of {', '.join(LE_PROTOCOLS)} "
                         "('stream' needs le_steps)")
    if spec.subsample is not None and not 0 < spec.subsample <= 1:
        raise ValueError(f"subsample must be a fraction in (0, 1], got {spec.subsample} in {spec}")
    if spec.patience is not None and spec.patience < 1:
        raise ValueError(f"patience must be >= 1 epoch (or None), got {spec.patience} in {spec}")
    allowed = ("tau", "dt", "p") if forced else CELL_OPTIONS[spec.arch]
    unknown = [name for name, _ in spec.cell if name not in allowed]
    if unknown:
        raise ValueError(f"cell: {unknown} are not options of {spec.arch!r} (its options: {', '.join(allowed) or 'none'})")


def check_datasets(specs: list[NetworkSpec]) -> None:
    """Check every spec and load, once in this process, the datasets they need, before anything trains.

    A chapter calls it first with all of its zoos' specs, so that a profile asking for a download
    that is not cached while offline fails at once, naming the file and where to put it.
    """
    for spec in specs:
        _check(spec)
    _load_data_first(specs)


def _load_data_first(specs: list[NetworkSpec]) -> None:
    """Load, once in this process, the datasets the specs need, and check that they are long enough.

    Offline, a missing download fails here, before any training (and parallel jobs never fetch
    the same file at once); so does a spectrum stream longer than a validation set holds.
    """
    needing = {(s.task, s.dataset, s.trials, s.val_size, s.le_protocol): s for s in specs
               if s.dataset is not None or s.le_protocol == "stream"}
    for spec in needing.values():
        _, validation, _ = _task_data(spec)[0]
        if spec.le_protocol == "stream":
            available = _limit(validation, spec.val_size).x.shape[:2].numel()
            wanted = spec.le_sequences * (spec.le_warmup + spec.le_steps)
            if wanted > available:
                raise ValueError(f"le_sequences x (le_warmup + le_steps) = {wanted} steps exceed the {available} steps of "
                                 f"the validation stream of {spec.dataset or 'the embedded dataset'}; ask for fewer "
                                 f"(e.g. le_sequences={max(1, available // (spec.le_warmup + spec.le_steps))}) in {spec}")


def run_zoo(specs: list[NetworkSpec], *, cache: Path | str | None = None, n_jobs: int = 1, progress: bool = True,
            device: str = "auto", scheduler=None, group_size: int | None = None, threads: int | None = None,
            connect_timeout: float = 10.0) -> pd.DataFrame:
    """Train every spec not yet cached, as ensembles, and return all rows as one DataFrame.

    Local runs use ``n_jobs`` processes (joblib) with ``threads`` torch threads each (default 1:
    an ensemble is already batched, and spare threads spin when cores are shared); ``scheduler`` (a ``dask.distributed.Client`` or a scheduler address
    such as ``"tcp://host:8786"``) runs the groups on a cluster instead, each worker writing to
    ``cache``, which must then be a path every worker sees (an address that does not answer within
    ``connect_timeout`` seconds raises ``ConnectionError`` before any training). ``device="auto"`` trains on the GPU
    when one is present (then one job at a time locally). Rows of failed networks (non-finite
    loss) have ``failed`` True; spectra are absent where a network failed.
    """
    if not specs:
        raise ValueError("specs: nothing to train")
    for spec in specs:
        _check(spec)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if str(device).startswith("cuda"):
        n_jobs = 1
    store = ZooCache(cache)
    todo = list({network_key(spec): spec for spec in specs if not store.has(spec)}.values())
    if todo:
        groups = plan_groups(todo, group_size, n_jobs)
        _load_data_first(todo)
        folder = str(store.folder)
        if scheduler is not None:
            from .cluster import run_groups

            run_groups(groups, folder, device=device, scheduler=scheduler, progress=progress, timeout=connect_timeout)
        else:
            threads = threads or 1
            jobs = joblib.Parallel(n_jobs=n_jobs, return_as="generator_unordered")(
                joblib.delayed(train_and_store)(group, folder, device, threads) for group in groups)
            if progress:
                from tqdm.auto import tqdm

                jobs = tqdm(jobs, total=len(groups), desc=f"{specs[0].zoo} zoo: {len(todo)} networks in {len(groups)} ensembles "
                                                          f"({len(specs) - len(todo)} cached)")
            for _ in jobs:
                pass
    return pd.DataFrame([row for spec in specs for row in store.load(spec)["rows"]])
