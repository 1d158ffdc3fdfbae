"""Zoos: many networks trained with sampled hyperparameters, one tidy row per network and epoch.

Every network is an independent job. Results are cached on disk by ``joblib.Memory``, keyed by
the network's full :class:`NetworkSpec`, so a second run of a finished sweep trains nothing and
an interrupted sweep resumes with the networks it had not finished. Jobs run through
``joblib.Parallel`` (local processes by default); on a cluster the same call runs under another
joblib backend by configuration alone, e.g.::

    from dask.distributed import Client
    import joblib
    client = Client("scheduler-address:8786")
    with joblib.parallel_config(backend="dask"):
        frame = run_zoo(specs)

Hyperparameters are sampled as in the dissertation (ch. 3, Appendix A and its Table A1).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import torch

from ..lyapunov import lyapunov_spectrum
from ..rnn import Rank1Reservoir
from .data import Split, char_data, check_dataset, digits_data, four_sine, lorenz96_data
from .download import cache_dir
from .mocap import mocap_data
from .models import ARCHITECTURES, build_model
from .training import force_train, spectrum_callback, train

__all__ = ["NetworkSpec", "ZOOS", "PROFILES", "sample_specs", "train_network", "run_zoo"]

# Init-parameter ranges of the sequential-MNIST zoo (dissertation ch. 3, Appendix A).
SMNIST_INIT = {"lstm": (0.1, 3.0), "gru": (0.1, 3.0), "rnn": (0.1, 3.0), "asrnn": (0.1, 50.0), "cornn": (0.1, 30.0),
               "lipschitz": (0.1, 20.0), "noisy": (0.1, 5.0), "lem": (0.1, 10.0)}


@dataclass(frozen=True)
class NetworkSpec:
    """Everything that determines one trained network (and so its cache key)."""

    zoo: str
    task: str  # "digits_rows", "characters", "signal" or "four_sine"
    arch: str
    hidden: int
    init_p: float
    epochs: int
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


# Per zoo and profile: networks per group and scale. teaching: each zoo in about 3 minutes on 2 cores.
PROFILES = {
    "smnist": {
        "ci": dict(per_arch=1, archs=("gru", "lem"), hidden=8, epochs=1, train_size=128, lr=1e-2),
        "teaching": dict(per_arch=4, archs=ARCHITECTURES, hidden=32, epochs=10, train_size=None, lr=1e-2),
        "paper": dict(per_arch=200, archs=ARCHITECTURES, hidden=64, epochs=10, train_size=None, lr=1e-3),
    },
    "charrnn": {
        "ci": dict(per_size=2, sizes=(8,), epochs=1, train_size=64, lr=5e-3),
        "teaching": dict(per_size=6, sizes=(16, 32, 64), epochs=8, train_size=None, lr=5e-3),
        "paper": dict(per_size=300, sizes=(64, 128, 256, 512), epochs=15, train_size=None, lr=2e-3),
    },
    # Chapter 2: LSTMs at the six initialisations of Fig. 2.6, spectra after every epoch ...
    "ch2_evolution": {
        "ci": dict(ps=(0.04, 0.5), hidden=8, epochs=3, train_size=64, dataset=None),
        "teaching": dict(ps=(0.04, 0.08, 0.12, 0.16, 0.2, 0.5), hidden=48, epochs=15, train_size=None, dataset=None),
        "paper": dict(ps=(0.04, 0.08, 0.12, 0.16, 0.2, 0.5), hidden=512, epochs=15, train_size=None,
                      dataset="war_and_peace"),
    },
    # ... CharRNN LSTMs over (learning rate, log-dropout) at a fixed p = 0.08, no biases ...
    "ch2_charrnn": {
        "ci": dict(count=4, hidden=8, epochs=1, train_size=64, dataset=None, batch_size=100),
        # The embedded text is 7x shorter than War and Peace: smaller batches give the networks
        # enough updates per epoch to learn within the teaching budget.
        "teaching": dict(count=12, hidden=48, epochs=10, train_size=None, dataset=None, batch_size=32),
        "paper": dict(count=60, hidden=512, epochs=40, train_size=None, dataset="war_and_peace", batch_size=100),
    },
    # ... and signal-prediction LSTMs over the initialisation p in [0.05, 0.5], learning rate 0.05.
    "ch2_signal": {
        "ci": dict(count=4, hidden=8, epochs=1, sequences=40),
        "teaching": dict(count=16, hidden=32, epochs=10, sequences=300),
        "paper": dict(count=30, hidden=256, epochs=20, sequences=2000),
    },
    "target": {
        "ci": dict(per_g=1, gains=(1.2, 1.8), hidden=100, epochs=3),
        "teaching": dict(per_g=4, gains=tuple(np.round(np.arange(1.1, 2.01, 0.1), 1)), hidden=200, epochs=5),
        "paper": dict(per_g=120, gains=tuple(np.round(np.arange(1.1, 2.01, 0.1), 1)), hidden=512, epochs=15),
    },
}
ZOOS = tuple(PROFILES)
# Bumped whenever training or data change what a spec produces; the default cache lives under it,
# so stale networks are never reused (joblib only notices edits to train_network itself).
ZOO_VERSION = 2
_DATASET_TASK = {"digits_rows": "digits"}  # spec.task -> the task name of lyapbook.tasks.data.DATASETS


def sample_specs(zoo: str, profile: str = "teaching", seed: int = 0) -> list[NetworkSpec]:
    """The networks of ``zoo`` at ``profile`` scale, hyperparameters drawn from ``seed``."""
    if zoo not in PROFILES:
        raise ValueError(f"zoo: unknown {zoo!r}; choose one of {', '.join(ZOOS)}")
    if profile not in PROFILES[zoo]:
        raise ValueError(f"profile: unknown {profile!r}; choose one of {', '.join(PROFILES[zoo])}")
    settings, rng, specs = PROFILES[zoo][profile], np.random.default_rng(seed), []
    if zoo == "smnist":
        for arch in settings["archs"]:
            for _ in range(settings["per_arch"]):
                low, high = SMNIST_INIT[arch]
                specs.append(NetworkSpec(zoo, "digits_rows", arch, settings["hidden"], round(float(rng.uniform(low, high)), 4),
                                         settings["epochs"], int(rng.integers(2**31)), lr=settings["lr"], batch_size=64,
                                         train_size=settings["train_size"], spectrum_epochs=(settings["epochs"],),
                                         le_sequences=128))
    elif zoo == "charrnn":
        for size in settings["sizes"]:
            for _ in range(settings["per_size"]):
                specs.append(NetworkSpec(zoo, "characters", "lstm", size, round(float(rng.uniform(0.04, 0.40)), 4),
                                         settings["epochs"], int(rng.integers(2**31)), lr=settings["lr"], dropout=0.1, batch_size=64,
                                         train_size=settings["train_size"], spectrum_epochs=(settings["epochs"],)))
    elif zoo == "ch2_evolution":
        for p in settings["ps"]:
            specs.append(NetworkSpec(zoo, "characters", "lstm", settings["hidden"], p, settings["epochs"],
                                     int(rng.integers(2**31)), lr=2e-3, batch_size=100, bias=False,
                                     train_size=settings["train_size"], dataset=settings["dataset"],
                                     spectrum_epochs=tuple(range(settings["epochs"] + 1))))
    elif zoo == "ch2_charrnn":
        for _ in range(settings["count"]):
            lr = round(float(rng.uniform(5e-4, 6e-3)), 6)
            dropout = round(float(10 ** rng.uniform(-3.0, -0.9)), 4)
            specs.append(NetworkSpec(zoo, "characters", "lstm", settings["hidden"], 0.08, settings["epochs"],
                                     int(rng.integers(2**31)), lr=lr, dropout=dropout, batch_size=settings["batch_size"], bias=False,
                                     lr_decay=0.95, decay_after=10, train_size=settings["train_size"],
                                     dataset=settings["dataset"], spectrum_epochs=tuple(range(settings["epochs"] + 1))))
    elif zoo == "ch2_signal":
        for _ in range(settings["count"]):
            specs.append(NetworkSpec(zoo, "signal", "lstm", settings["hidden"], round(float(rng.uniform(0.05, 0.5)), 4),
                                     settings["epochs"], int(rng.integers(2**31)), lr=0.05, batch_size=250,
                                     train_size=settings["sequences"], spectrum_epochs=tuple(range(settings["epochs"] + 1))))
    else:
        for gain in settings["gains"]:
            for _ in range(settings["per_g"]):
                specs.append(NetworkSpec(zoo, "four_sine", "reservoir", settings["hidden"], float(gain),
                                         settings["epochs"], int(rng.integers(2**31)), le_sequences=10))
    return specs


def _limit(split: Split, n: int | None) -> Split:
    return split if n is None else Split(split.x[:n], split.y[:n])


def train_network(spec: NetworkSpec, device: str = "cpu") -> list[dict]:
    """Train one network on ``device``; return one tidy row per recorded epoch (spectrum where computed).

    The device is not part of the cache key: a network trained on a GPU is reused on a CPU.
    """
    torch.set_num_threads(1)  # one job per core
    base = {k: v for k, v in asdict(spec).items() if k not in ("spectrum_epochs",)}
    if spec.task == "four_sine":
        return [{**base, **_train_reservoir(spec)}]
    (train_split, val_split, test_split), vocabulary = _task_data(spec)
    common = dict(init_p=spec.init_p, seed=spec.seed, dropout=spec.dropout, bias=spec.bias)
    if spec.task == "digits_rows":
        model = build_model(spec.arch, train_split.x.shape[-1], spec.hidden, 10, **common)
    elif spec.task == "characters":
        model = build_model(spec.arch, 32, spec.hidden, vocabulary, vocabulary=vocabulary, output="all",
                            loss="cross_entropy", **common)
    else:
        model = build_model(spec.arch, 20, spec.hidden, 20, output="all", **common)
    model.to(device)
    callback = spectrum_callback(test_split.x[: spec.le_sequences], warmup=spec.le_warmup, k=spec.le_k)
    history = train(model, _limit(train_split, spec.train_size), _limit(val_split, 512), epochs=spec.epochs, lr=spec.lr,
                    batch_size=spec.batch_size, seed=spec.seed, lr_decay=spec.lr_decay, decay_after=spec.decay_after,
                    callbacks={e: callback for e in spec.spectrum_epochs})
    rows = []
    for record in history:
        row = {**base, "epoch": record.epoch, "train_loss": record.train_loss, "val_loss": record.val_loss,
               "val_accuracy": record.val_accuracy, "epoch_lr": record.lr, "epoch_seconds": record.seconds}
        if "spectrum" in record.extras:
            row["spectrum"] = record.extras["spectrum"].numpy()
            row["spectrum_seconds"] = record.extras["spectrum_seconds"]
        rows.append(row)
    return rows


def _train_reservoir(spec: NetworkSpec) -> dict:
    reservoir = Rank1Reservoir(spec.hidden, g=spec.init_p, seed=spec.seed).double()
    _, target, info = four_sine(spec.seed, points=1200 * (spec.epochs + 1))
    result = force_train(reservoir, target, val_points=1200)
    # Spectrum of the trained, fed-back network from le_sequences random starts, 200 steps each.
    generator = torch.Generator().manual_seed(spec.seed)
    starts = 0.5 * torch.randn(spec.le_sequences, spec.hidden, generator=generator, dtype=torch.float64)
    spectrum = lyapunov_spectrum(reservoir, 300, starts, warmup=100).exponents.float().numpy()
    accuracy = 1.0 - result["val_mae"] / float(target[-1200:].abs().mean())  # 1 = perfect reconstruction
    return {"epoch": spec.epochs, "train_loss": result["train_mae"], "val_loss": result["val_mae"], "val_accuracy": accuracy,
            "spectrum": spectrum, "target": str(info)}


def _task_data(spec: NetworkSpec) -> tuple[tuple[Split, Split, Split], int | None]:
    """The (train, validation, test) splits of a spec's task and dataset, and the vocabulary size for tokens."""
    if spec.task == "digits_rows":
        return digits_data("rows", dataset=spec.dataset or "sklearn_digits", seed=spec.seed % 7), None
    if spec.task == "characters":
        data = char_data(spec.dataset or "pydoc", seq_len=100, seed=0)
        return (data.train, data.validation, data.test), len(data.vocabulary)
    if spec.task == "signal":
        if spec.dataset == "cmu_mocap":
            return mocap_data(spec.trials, seq_len=100, seed=0), None
        sequences = spec.train_size or 200
        return lorenz96_data(sequences=int(sequences / 0.8), seq_len=100, seed=0), None
    raise ValueError(f"task: unknown {spec.task!r}")


def _download_first(specs: list[NetworkSpec]) -> None:
    """Load, once in this process, every downloaded dataset the specs need.

    Offline, this fails before any training; and parallel jobs never fetch the same file at once.
    """
    needing = {(s.task, s.dataset, s.trials): s for s in specs if s.dataset is not None}
    for spec in needing.values():
        _task_data(spec)


def run_zoo(specs: list[NetworkSpec], *, cache: Path | None = None, n_jobs: int = 1, progress: bool = True,
            device: str = "auto") -> pd.DataFrame:
    """Train every spec (cached, resumable, in parallel) and return all rows as one DataFrame.

    ``device="auto"`` trains on the GPU when one is present (then one job at a time).
    """
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        n_jobs = 1
    if not specs:
        raise ValueError("specs: nothing to train")
    for spec in specs:
        if spec.arch not in (*ARCHITECTURES, "reservoir"):
            raise ValueError(f"arch: unknown {spec.arch!r} in {spec}")
        if spec.hidden < 1 or spec.epochs < 1 or not spec.init_p > 0:
            raise ValueError(f"impossible sizes in {spec}: hidden and epochs must be >= 1 and init_p > 0")
        if spec.dataset is not None:
            check_dataset(_DATASET_TASK.get(spec.task, spec.task), spec.dataset)
        if spec.dataset == "cmu_mocap" and not spec.trials:
            raise ValueError(f"trials: dataset 'cmu_mocap' needs the CMU trial ids to use, in {spec}")
    memory = joblib.Memory(Path(cache) if cache is not None else cache_dir() / "zoo" / f"v{ZOO_VERSION}", verbose=0)
    cached = memory.cache(train_network, ignore=["device"])
    _download_first([spec for spec in specs if not cached.check_call_in_cache(spec)])
    jobs = joblib.Parallel(n_jobs=n_jobs, return_as="generator")(joblib.delayed(cached)(spec, device) for spec in specs)
    if progress:
        from tqdm.auto import tqdm

        done = sum(cached.check_call_in_cache(spec) for spec in specs)
        jobs = tqdm(jobs, total=len(specs), desc=f"{specs[0].zoo} zoo ({done} cached)")
    rows = [row for result in jobs for row in result]
    return pd.DataFrame(rows)

