"""The book's embedded datasets: small, deterministic, offline (downloads are in download.py).

Each loader returns tensors ready for training; shapes are in the docstrings. Which text ships
offline: the English prose of Python's own help pages (the standard library's
``pydoc_data.topics``, about 465,000 characters), so the character task needs nothing but
Python itself. The dissertation's datasets (War and Peace, CMU motion capture, MNIST) are
downloaded on demand by :mod:`lyapbook.tasks.download`, never by default (motion capture is read
by :mod:`lyapbook.tasks.mocap`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["Split", "CharData", "char_data", "lorenz96_data", "digits_data", "pixel_permutation", "four_sine", "four_sine_paper", "stream_pieces",
           "DATASETS", "check_dataset"]

DATASETS = {
    "characters": ("pydoc", "war_and_peace"),
    "signal": ("lorenz96", "cmu_mocap"),
    "digits": ("sklearn_digits", "mnist"),
}
WAR_AND_PEACE_URL = "https://www.gutenberg.org/cache/epub/2600/pg2600.txt"
MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"
MNIST_SHA256 = {
    "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}


def check_dataset(task: str, name: str) -> None:
    """Raise a one-line error naming the choices when ``name`` is not a dataset of ``task``."""
    if task not in DATASETS:
        raise ValueError(f"task: unknown {task!r}; choose one of {', '.join(DATASETS)}")
    if name not in DATASETS[task]:
        raise ValueError(f"dataset: {name!r} is not available for the {task} task here; choose one of {', '.join(DATASETS[task])}")


@dataclass(frozen=True)
class Split:
    """Inputs and targets of one split; ``x`` (N, T, features) or (N, T) for token ids."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return self.x.shape[0]


def _split_indices(n: int, fractions: tuple[float, float, float], seed: int) -> list[np.ndarray]:
    if len(fractions) != 3 or abs(sum(fractions) - 1.0) > 1e-9 or min(fractions) < 0:
        raise ValueError(f"split must be three non-negative fractions summing to 1 (train, validation, test), got {fractions}")
    order = np.random.default_rng(seed).permutation(n)
    n_train, n_val = int(round(fractions[0] * n)), int(round(fractions[1] * n))
    return [order[:n_train], order[n_train : n_train + n_val], order[n_train + n_val :]]


def next_step_splits(windows: torch.Tensor, split, seed: int) -> tuple[Split, Split, Split]:
    """Windows (N, seq_len + 1, features) split at random into next-step pairs x = w[:, :-1], y = w[:, 1:]."""
    parts = map(torch.as_tensor, _split_indices(len(windows), split, seed))
    return tuple(Split(windows[i, :-1], windows[i, 1:]) for i in parts)


@dataclass(frozen=True)
class CharData:
    """Character prediction: 100 input characters, predict the 101st (token ids)."""

    vocabulary: str
    train: Split
    validation: Split
    test: Split

    def decode(self, ids: torch.Tensor) -> str:
        return "".join(self.vocabulary[i] for i in ids.tolist())


def _pydoc_text() -> str:
    from pydoc_data.topics import topics

    return "\n\n".join(topics[key] for key in sorted(topics))


def _war_and_peace_text(url: str, folder) -> str:
    """Project Gutenberg's War and Peace (the dissertation's corpus), body only, downloaded once.

    Gutenberg revises its files' headers, so no fixed checksum can be pinned: the first
    download's SHA-256 is recorded and every later use is verified against it.
    """
    from .download import fetch_recorded

    text = fetch_recorded(url, "war_and_peace_pg2600.txt", folder=folder).read_text(encoding="utf-8-sig")
    start, end = text.find("*** START OF"), text.find("*** END OF")
    if start != -1 and end != -1:
        text = text[text.index("\n", start) + 1 : end]
    return text


def char_data(dataset: str = "pydoc", *, seq_len: int = 100, split=(0.8, 0.1, 0.1), seed: int = 0, max_chars: int | None = None,
              targets: str = "all", url: str | None = None, folder=None) -> CharData:
    """Non-overlapping windows of ``seq_len + 1`` characters, split at random (seeded).

    ``dataset``: ``"pydoc"`` (embedded) or ``"war_and_peace"`` (downloaded to ``folder``,
    default ``data/cache``; ``url`` overrides Project Gutenberg's address). Returns, per split,
    x (N, seq_len) int64 ids and, as y, the next character after every input, (N, seq_len)
    (``targets="all"``, the usual CharRNN objective), or only after the last input, (N,)
    (``targets="last"``).
    """
    check_dataset("characters", dataset)
    if seq_len < 1:
        raise ValueError(f"seq_len must be at least 1, got {seq_len}")
    if targets not in ("all", "last"):
        raise ValueError(f"targets must be 'all' (next character at every step) or 'last', got {targets!r}")
    text = _pydoc_text() if dataset == "pydoc" else _war_and_peace_text(url or WAR_AND_PEACE_URL, folder)
    if max_chars is not None:
        text = text[:max_chars]
    vocabulary = "".join(sorted(set(text)))
    lookup = {ch: i for i, ch in enumerate(vocabulary)}
    ids = torch.tensor([lookup[ch] for ch in text], dtype=torch.int64)
    windows = ids[: (len(ids) // (seq_len + 1)) * (seq_len + 1)].reshape(-1, seq_len + 1)
    if len(windows) < 3:
        raise ValueError(f"the text holds only {len(windows)} windows of {seq_len + 1} characters; lower seq_len")
    target_of = (lambda w: w[:, 1:]) if targets == "all" else (lambda w: w[:, -1])
    parts = [Split(windows[i, :-1], target_of(windows[i])) for i in map(torch.as_tensor, _split_indices(len(windows), split, seed))]
    return CharData(vocabulary, *parts)


def _lorenz96(n: int, forcing: float, dt: float, steps: int, seed: int) -> np.ndarray:
    """RK4 integration of dx_i/dt = (x_{i+1} - x_{i-2}) x_{i-1} - x_i + F; returns (steps, n)."""

    def field(x):
        return (np.roll(x, -1) - np.roll(x, 2)) * np.roll(x, 1) - x + forcing

    x = forcing + 0.01 * np.random.default_rng(seed).standard_normal(n)
    out = np.empty((steps, n))
    for t in range(steps):
        k1 = field(x)
        k2 = field(x + 0.5 * dt * k1)
        k3 = field(x + 0.5 * dt * k2)
        k4 = field(x + dt * k3)
        x = x + dt / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)
        out[t] = x
    return out


def lorenz96_data(*, features: int = 20, seq_len: int = 100, sequences: int = 200, forcing: float = 8.0, dt: float = 0.05,
                  split=(0.8, 0.1, 0.1), seed: int = 0) -> tuple[Split, Split, Split]:
    """Next-step prediction of a chaotic Lorenz-96 signal (the stand-in for CMU motion capture).

    A transient of 1,000 steps is dropped, each dimension is normalised to zero mean and unit
    variance, and the signal is cut into ``sequences`` windows: x (N, seq_len, features) and
    y (N, seq_len, features) = x shifted by one step.
    """
    check_dataset("signal", "lorenz96")
    if features < 4:
        raise ValueError(f"features must be at least 4 for Lorenz-96, got {features}")
    signal = _lorenz96(features, forcing, dt, 1000 + sequences * (seq_len + 1), seed)[1000:]
    signal = (signal - signal.mean(0)) / signal.std(0)
    windows = torch.tensor(signal, dtype=torch.float32).reshape(sequences, seq_len + 1, features)
    return next_step_splits(windows, split, seed)


def _read_idx(path) -> np.ndarray:
    """An IDX file (MNIST's format, gzipped): big-endian dimensions after a 4-byte magic number."""
    import gzip

    with gzip.open(path, "rb") as handle:
        data = handle.read()
    dims = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def _mnist_images(base_url: str, checksums: dict[str, str], folder) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    from .download import fetch

    arrays = {name: _read_idx(fetch(base_url + name, name, sha, folder=folder)) for name, sha in checksums.items()}
    def images(name):
        return torch.tensor(arrays[name] / 255.0, dtype=torch.float32)
    def labels(name):
        return torch.tensor(arrays[name], dtype=torch.int64)
    return (images("train-images-idx3-ubyte.gz"), labels("train-labels-idx1-ubyte.gz"),
            images("t10k-images-idx3-ubyte.gz"), labels("t10k-labels-idx1-ubyte.gz"))


def pixel_permutation(side: int) -> torch.Tensor:
    """The fixed reading order of ``digits_data("pixels")``: step t reads flattened position permutation[t]."""
    return torch.as_tensor(np.random.default_rng(0).permutation(side * side))


def digits_data(mode: str = "rows", *, dataset: str = "sklearn_digits", split=(0.7, 0.1, 0.2), seed: int = 0,
                base_url: str = MNIST_URL, checksums: dict[str, str] | None = None, folder=None) -> tuple[Split, Split, Split]:
    """Handwritten digits as sequences: scikit-learn's 8x8 digits (embedded) or MNIST (downloaded).

    ``mode="rows"``: x (N, side, side), one image row per step (8 or 28 steps).
    ``mode="pixels"``: x (N, side**2, 1), one pixel per step in a fixed random order (the
    permutation is seeded by 0, the same for every split and run). Pixels are in [0, 1]; y (N,)
    int64 labels 0-9. sklearn digits are split at random by ``split``; MNIST keeps its 10,000
    test images as the test split and holds out 10% of its 60,000 training images (seeded) for
    validation.
    """
    check_dataset("digits", dataset)
    if mode not in ("rows", "pixels"):
        raise ValueError(f"mode must be 'rows' or 'pixels', got {mode!r}")
    if dataset == "sklearn_digits":
        from sklearn.datasets import load_digits

        digits = load_digits()
        images = torch.tensor(digits.images / 16.0, dtype=torch.float32)
        labels = torch.tensor(digits.target, dtype=torch.int64)
        parts = [(images[i], labels[i]) for i in map(torch.as_tensor, _split_indices(len(images), split, seed))]
    else:
        train_x, train_y, test_x, test_y = _mnist_images(base_url, checksums or MNIST_SHA256, folder)
        order = torch.as_tensor(np.random.default_rng(seed).permutation(len(train_x)))
        n_val = len(train_x) // 10
        parts = [(train_x[order[n_val:]], train_y[order[n_val:]]), (train_x[order[:n_val]], train_y[order[:n_val]]), (test_x, test_y)]
    side = parts[0][0].shape[-1]
    permutation = pixel_permutation(side)

    def as_sequence(images: torch.Tensor) -> torch.Tensor:
        return images if mode == "rows" else images.reshape(len(images), -1)[:, permutation].unsqueeze(-1)

    return tuple(Split(as_sequence(x), y) for x, y in parts)


def four_sine(seed: int, *, points: int = 1200, dt: float = 0.1) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """The random four-sine target of FORCE learning (dissertation ch. 3, Appendix A).

    f(t) = sum_{i=1..4} a_i sin(w_i t), with integer angular frequencies w_i in [1, 6] (rad per
    unit time) and integer amplitudes a_i in [1, 11], drawn from ``seed``; sampled at
    t = 0, dt, ..., (points - 1) dt. Returns (t (points,), f (points,), {"frequencies", "amplitudes"}).
    """
    if points < 2 or dt <= 0:
        raise ValueError(f"points must be >= 2 and dt > 0, got {points} and {dt}")
    rng = np.random.default_rng(seed)
    frequencies = rng.integers(1, 7, size=4)
    amplitudes = rng.integers(1, 12, size=4)
    t = np.arange(points) * dt
    f = (amplitudes[:, None] * np.sin(frequencies[:, None] * t[None, :])).sum(0)
    return (torch.tensor(t, dtype=torch.float64), torch.tensor(f, dtype=torch.float64),
            {"frequencies": frequencies.tolist(), "amplitudes": amplitudes.tolist()})


def four_sine_paper(seed: int, *, points: int = 1200, dt: float = 0.1) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """The four-sine target of the dissertation's target-learning zoo as its authors' code draws it.

    f(t) = sum_{i=1..4} (1 / A_i) sin(pi F_i t / 60) with integer A_i in {1, ..., 10} and
    F_i in {1, ..., 5} drawn from ``seed`` (the dissertation's "[1, 11]" and "[1, 6]" are half-open
    ranges, its amplitudes reciprocals), then shifted and scaled so that one period spans
    [-1, 1] exactly. The fundamental period is 120 time units: 1200 points at dt = 0.1, one
    training epoch. Sampled at t = 0, dt, ..., (points - 1) dt. Returns (t (points,), f (points,),
    {"frequencies": F, "amplitudes": A}).
    """
    if points < 2 or dt <= 0:
        raise ValueError(f"points must be >= 2 and dt > 0, got {points} and {dt}")
    rng = np.random.default_rng(seed)
    amplitudes = rng.integers(1, 11, size=4)
    frequencies = rng.integers(1, 6, size=4)

    def signal(t: np.ndarray) -> np.ndarray:
        return (np.sin(np.pi * frequencies[:, None] * t[None, :] / 60.0) / amplitudes[:, None]).sum(0)

    period = signal(np.arange(int(round(120.0 / dt))) * dt)  # min and max over one whole period
    low, high = period.min(), period.max()
    t = np.arange(points) * dt
    f = (signal(t) - (high + low) / 2.0) / ((high - low) / 2.0)
    return (torch.tensor(t, dtype=torch.float64), torch.tensor(f, dtype=torch.float64),
            {"frequencies": frequencies.tolist(), "amplitudes": amplitudes.tolist()})


def stream_pieces(x: torch.Tensor, count: int, length: int, seed: int) -> torch.Tensor:
    """``count`` pieces of ``length`` steps cut from the sequences of ``x`` (N, T, features) laid end to end.

    The stream is rolled by a seeded random offset first, so pieces start anywhere in a sequence
    (the dissertation's code feeds spectra such pieces of the concatenated validation set; a
    piece may span several sequences). Returns (count, length, features).
    """
    stream = x.reshape(-1, x.shape[-1])
    if count * length > len(stream):
        raise ValueError(f"count x length = {count * length} steps exceed the {len(stream)} steps of x; ask for fewer")
    offset = int(np.random.default_rng(seed).integers(len(stream)))
    return torch.roll(stream, -offset, dims=0)[: count * length].reshape(count, length, x.shape[-1])
