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

__all__ = ["Labels", "label_good", "PRF1", "prf1", "Interval", "ScoreIntervals", "bootstrap_scores", "bootstrap",
           "SeedScores", "bootstrap_seed_scores", "bootstrap_f1_difference", "bootstrap_gap_to_best", "trivial_f1"]


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


@dataclass
class SeedScores:
    """Recall, precision and F1 of one classifier fitted with several autoencoder seeds.

    ``per_seed`` (S, 3) holds each seed's (recall, precision, F1) on all evaluated spectra; the
    intervals are for the seed-averaged scores, with networks resampled (every seed scored on the
    same draw); ``seed_sd`` (3,) is the standard deviation over seeds (ddof = 1; 0 for one seed).
    The interval is the sampling uncertainty of the evaluated networks; ``seed_sd`` the part that
    comes from training the autoencoder again.
    """

    per_seed: np.ndarray
    recall: Interval
    precision: Interval
    f1: Interval
    seed_sd: np.ndarray
    draws: np.ndarray  # (n_draws, 3) seed-averaged recall, precision, F1
    n_groups: int

    @property
    def n_seeds(self) -> int:
        return len(self.per_seed)


def _seed_matrix(predicted, n: int | None = None) -> np.ndarray:
    array = np.asarray(predicted)
    if array.ndim == 1:
        array = array[None]
    if array.ndim != 2 or (n is not None and array.shape[1] != n):
        raise ValueError(f"predicted: expected (seeds, n) flags{'' if n is None else f' with n = {n}'}, got shape "
                         f"{np.shape(predicted)}")
    return np.stack([_bool_vector(row, "predicted") for row in array])


def _group_counts(predicted: np.ndarray, good: np.ndarray, codes: np.ndarray, count: int) -> np.ndarray:
    """(3, S, G) true-positive, false-positive and false-negative counts per seed and network."""
    flags = (predicted & good, predicted & ~good, ~predicted & good)
    return np.stack([np.stack([np.bincount(codes, weights=f[s], minlength=count) for s in range(len(predicted))])
                     for f in flags])


def bootstrap_seed_scores(predicted, good, groups=None, *, n_draws: int = 1000, level: float = 0.95,
                          seed: int = 0) -> SeedScores:
    """Seed-averaged recall, precision and F1 of ``predicted`` (S, n) (one row per autoencoder seed)
    against ``good`` (n,), with percentile intervals resampling the networks named by ``groups`` (n,).

    Each draw resamples networks with replacement (all rows of a drawn network), scores every seed
    on the drawn rows and averages the S scores; draws where a score is undefined are left out of
    its interval (as in :func:`bootstrap_scores`).
    """
    good = _bool_vector(good, "good")
    predicted = _seed_matrix(predicted, len(good))
    _check_level(level, n_draws)
    codes, count = _groups(groups, len(good))
    counts = _group_counts(predicted, good, codes, int(count))  # (3, S, G)
    per_seed = np.stack(_scores(*counts.sum(-1)), axis=1)  # (S, 3)
    multiplicity = _draw(int(count), n_draws, seed)  # (D, G)
    tp, fp, fn = (multiplicity @ counts[i].T for i in range(3))  # (D, S) each
    draws = np.stack([v.mean(axis=1) for v in _scores(tp, fp, fn)], axis=1)  # NaN where a seed's score is undefined
    point = per_seed.mean(axis=0)
    sd = per_seed.std(axis=0, ddof=1) if len(per_seed) > 1 else np.zeros(3)
    recall, precision, f1 = (_interval(point[i], draws[:, i], level) for i in range(3))
    return SeedScores(per_seed=per_seed, recall=recall, precision=precision, f1=f1, seed_sd=sd, draws=draws,
                      n_groups=int(count))


def bootstrap_f1_difference(predicted_a, predicted_b, good, groups=None, *, n_draws: int = 1000,
                            level: float = 0.95, seed: int = 0) -> Interval:
    """The paired difference of seed-averaged F1, classifier a minus classifier b, with a bootstrap
    interval over networks (both scored on the same draws). ``predicted_a`` (S, n) and
    ``predicted_b`` (S', n): one row per seed (a classifier without seeds gives one row)."""
    good = _bool_vector(good, "good")
    a, b = _seed_matrix(predicted_a, len(good)), _seed_matrix(predicted_b, len(good))
    _check_level(level, n_draws)
    codes, count = _groups(groups, len(good))
    multiplicity = _draw(int(count), n_draws, seed)

    def f1(matrix: np.ndarray) -> tuple[float, np.ndarray]:
        counts = _group_counts(matrix, good, codes, int(count))
        estimate = _scores(*counts.sum(-1))[2].mean()
        drawn = _scores(*(multiplicity @ counts[i].T for i in range(3)))[2].mean(axis=1)
        return float(estimate), drawn

    (est_a, draws_a), (est_b, draws_b) = f1(a), f1(b)
    return _interval(est_a - est_b, draws_a - draws_b, level)


def trivial_f1(good) -> float:
    """F1 of the classifier that calls every network accurate: 2 pi / (1 + pi) at a share pi of accurate
    networks. A best-F1 threshold can always fall back on it (put the boundary below every score), so it,
    not 0.5, is the baseline such a classifier must beat: 0.70 at pi = 0.54, 0.67 at pi = 0.5."""
    good = _bool_vector(good, "good")
    share = float(good.mean())
    return 2 * share / (1 + share) if share > 0 else 0.0


def bootstrap_gap_to_best(predicted_a, comparators: dict, good, groups=None, *, n_draws: int = 1000,
                          level: float = 0.95, seed: int = 0) -> tuple[Interval, dict[str, float]]:
    """F1 of classifier a minus the best of ``comparators`` ({name: predicted (S, n)}), with the best one
    chosen again inside every bootstrap draw: an interval that pays for picking the strongest rival
    after looking, unlike a paired difference with a comparator fixed after the fact. Returns the
    interval and, per comparator, the share of draws in which it was the best."""
    good = _bool_vector(good, "good")
    matrices = {"a": _seed_matrix(predicted_a, len(good)), **{k: _seed_matrix(v, len(good)) for k, v in comparators.items()}}
    if len(matrices) < 2:
        raise ValueError("comparators: give at least one classifier to compare with")
    _check_level(level, n_draws)
    codes, count = _groups(groups, len(good))
    multiplicity = _draw(int(count), n_draws, seed)
    estimates, draws = {}, {}
    for name, matrix in matrices.items():
        counts = _group_counts(matrix, good, codes, int(count))
        estimates[name] = float(_scores(*counts.sum(-1))[2].mean())
        draws[name] = _scores(*(multiplicity @ counts[i].T for i in range(3)))[2].mean(axis=1)
    names = [k for k in matrices if k != "a"]
    rivals = np.stack([draws[k] for k in names])  # (C, D)
    best = np.nanmax(rivals, axis=0)
    winner = np.nanargmax(np.nan_to_num(rivals, nan=-np.inf), axis=0)
    share = {name: float((winner == i).mean()) for i, name in enumerate(names)}
    estimate = estimates["a"] - max(estimates[k] for k in names)
    return _interval(estimate, draws["a"] - best, level), share
