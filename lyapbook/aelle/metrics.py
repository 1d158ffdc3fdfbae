"""Recall, precision, F1 and their bootstrap intervals, resampling networks (dissertation ch. 3, L774).

The positive class is *high accuracy*: a network whose loss lies below the label threshold.
With TP, FP, FN, TN counted over the evaluated spectra,

* recall    R = TP / (TP + FN)  (good networks that fall in the predicted-good region),
* precision P = TP / (TP + FP)  (networks in the predicted-good region that are good),
* F1          = 2TP / (2TP + FP + FN), which equals 2PR / (P + R) whenever P and R are defined.

Undefined cases, explicitly: P is NaN when nothing is predicted good; R is NaN when no network is
good; F1 is 0 when there is something to find or something was wrongly predicted but TP = 0 (a
classifier that finds nothing scores zero), and NaN only when there are no good networks and none
is predicted good (nothing to score).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = ["Labels", "label_good", "PRF1", "prf1", "Interval", "ScoreIntervals", "bootstrap_scores", "bootstrap"]


def _bool_vector(values, name: str) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name}: expected a one-dimensional array (one entry per spectrum), got shape {array.shape}")
    if array.dtype != bool:
        if not np.isin(array, (0, 1)).all():
            raise ValueError(f"{name}: expected booleans (True = high accuracy), got values {np.unique(array)[:5]}")
        array = array.astype(bool)
    return array


def _float_vector(values, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{name}: expected a one-dimensional array (one entry per spectrum), got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name}: contains NaN or infinite values at {np.flatnonzero(~np.isfinite(array))[:5]}; "
                         f"drop those networks first (see prepare_spectra)")
    return array


@dataclass(frozen=True)
class Labels:
    """High-accuracy labels: ``good`` (n,) is ``loss < threshold``; ``threshold`` in loss units."""

    good: np.ndarray
    threshold: float

    @property
    def n_good(self) -> int:
        return int(self.good.sum())


def label_good(loss, threshold: float | None = None) -> Labels:
    """Label networks high-accuracy when their loss is strictly below ``threshold`` (default: the median loss).

    The dissertation's thresholds (MAE 0.57, CE 1.75, 2.2e-3 = "50 % of networks") are medians, so
    with an even count of distinct losses exactly half are labelled good.
    """
    values = _float_vector(loss, "loss")
    cut = float(np.median(values)) if threshold is None else float(threshold)
    return Labels(good=values < cut, threshold=cut)


@dataclass(frozen=True)
class PRF1:
    """Confusion counts and the three scores of one evaluation (definitions in the module docstring)."""

    tp: int
    fp: int
    fn: int
    tn: int
    recall: float
    precision: float
    f1: float

    @property
    def n(self) -> int:
        return self.tp + self.fp + self.fn + self.tn


def _scores(tp, fp, fn):
    """Recall, precision, F1 from counts (arrays allowed), NaN where undefined."""
    tp, fp, fn = (np.asarray(v, dtype=np.float64) for v in (tp, fp, fn))
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(tp + fn > 0, tp / (tp + fn), np.nan)
        precision = np.where(tp + fp > 0, tp / (tp + fp), np.nan)
        f1 = np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), np.nan)
    return recall, precision, f1


def prf1(predicted, good) -> PRF1:
    """Scores of predicted-good flags ``predicted`` (n,) against true labels ``good`` (n,)."""
    predicted, good = _bool_vector(predicted, "predicted"), _bool_vector(good, "good")
    if predicted.shape != good.shape:
        raise ValueError(f"predicted and good must have the same length, got {len(predicted)} and {len(good)}")
    tp, fp = int((predicted & good).sum()), int((predicted & ~good).sum())
    fn, tn = int((~predicted & good).sum()), int((~predicted & ~good).sum())
    recall, precision, f1 = (float(v) for v in _scores(tp, fp, fn))
    return PRF1(tp=tp, fp=fp, fn=fn, tn=tn, recall=recall, precision=precision, f1=f1)


@dataclass(frozen=True)
class Interval:
    """A point estimate and its percentile bootstrap interval at ``level``."""

    estimate: float
    low: float
    high: float
    level: float

    def __str__(self) -> str:
        return f"{self.estimate:.3f} [{self.low:.3f}, {self.high:.3f}]"


def _groups(groups, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(group code per row, number of groups); every row its own group when ``groups`` is None."""
    if groups is None:
        return np.arange(n), np.int64(n)
    groups = np.asarray(groups)
    if groups.shape != (n,):
        raise ValueError(f"groups: expected one network id per row, shape ({n},), got {groups.shape}")
    _, codes = np.unique(groups, return_inverse=True)
    return codes, codes.max() + 1


def _draw(codes_count: int, n_draws: int, seed: int) -> np.ndarray:
    """(n_draws, G) multiplicities: how often each network appears in each resample of G networks."""
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, codes_count, size=(n_draws, codes_count))
    flat = (np.arange(n_draws)[:, None] * codes_count + picks).ravel()
    return np.bincount(flat, minlength=n_draws * codes_count).reshape(n_draws, codes_count)


def _interval(estimate: float, draws: np.ndarray, level: float) -> Interval:
    finite = draws[np.isfinite(draws)]
    tail = 100 * (1 - level) / 2
    low, high = (np.percentile(finite, [tail, 100 - tail]) if finite.size else (np.nan, np.nan))
    return Interval(estimate=float(estimate), low=float(low), high=float(high), level=level)


@dataclass
class ScoreIntervals:
    """:func:`prf1` on all the evaluated spectra, with bootstrap intervals and the raw draws.

    ``draws`` maps "recall", "precision" and "f1" to arrays (n_draws,) (NaN where a resample left a
    score undefined; ``n_undefined`` counts those per score, and the intervals ignore them).
    """

    point: PRF1
    recall: Interval
    precision: Interval
    f1: Interval
    draws: dict[str, np.ndarray]
    n_undefined: dict[str, int]
    n_groups: int
    seed: int


def _check_level(level: float, n_draws: int) -> None:
    if not 0 < level < 1:
        raise ValueError(f"level: must lie in (0, 1), got {level}")
    if n_draws < 1:
        raise ValueError(f"n_draws: must be positive, got {n_draws}")


def bootstrap_scores(predicted, good, groups=None, *, n_draws: int = 1000, level: float = 0.95,
                     seed: int = 0) -> ScoreIntervals:
    """Recall, precision and F1 with percentile bootstrap intervals, resampling networks.

    ``predicted`` and ``good`` are (n,) booleans over the evaluated spectra; ``groups`` (n,) names the
    network of each row (None: one row per network). Each draw resamples the networks with
    replacement and takes *all* rows of every drawn network, so the several spectra (epochs) of one
    network never count as independent samples. The interval covers the sampling of evaluated
    networks only: the spread over autoencoder seeds is a separate number.
    """
    predicted, good = _bool_vector(predicted, "predicted"), _bool_vector(good, "good")
    point = prf1(predicted, good)
    _check_level(level, n_draws)
    codes, count = _groups(groups, len(good))
    per_group = {name: np.bincount(codes, weights=flags, minlength=count)
                 for name, flags in (("tp", predicted & good), ("fp", predicted & ~good), ("fn", ~predicted & good))}
    multiplicity = _draw(int(count), n_draws, seed)
    recall, precision, f1 = _scores(*(multiplicity @ per_group[k] for k in ("tp", "fp", "fn")))
    draws = {"recall": recall, "precision": precision, "f1": f1}
    return ScoreIntervals(point=point, recall=_interval(point.recall, recall, level),
                          precision=_interval(point.precision, precision, level), f1=_interval(point.f1, f1, level),
                          draws=draws, n_undefined={k: int(np.isnan(v).sum()) for k, v in draws.items()},
                          n_groups=int(count), seed=seed)


def bootstrap(statistic: Callable[[np.ndarray], float], n_rows: int, groups=None, *, n_draws: int = 1000,
              level: float = 0.95, seed: int = 0) -> tuple[Interval, np.ndarray]:
    """Any statistic of the evaluated rows, with a bootstrap interval over networks.

    ``statistic(rows)`` receives an index array into the n_rows evaluated spectra (rows of a network
    drawn twice appear twice) and returns a number; e.g. a paired F1 difference between two
    classifiers, ``lambda r: prf1(a[r], good[r]).f1 - prf1(b[r], good[r]).f1``. Returns the interval
    (estimate = the statistic on all rows) and the draws (n_draws,).
    """
    _check_level(level, n_draws)
    codes, count = _groups(groups, n_rows)
    multiplicity = _draw(int(count), n_draws, seed)
    rows = np.arange(n_rows)
    draws = np.array([float(statistic(np.repeat(rows, m[codes]))) for m in multiplicity])
    return _interval(float(statistic(np.arange(n_rows))), draws, level), draws
