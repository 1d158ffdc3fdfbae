"""Matched read-outs: every representation of a network read by the same classifiers, held out.

A comparison of "AeLLE's first component against the mean exponent" mixes two things: what a
representation knows about accuracy and how it is read. Here each representation (a few numbers
per network: the mean and largest exponent, their pair, the first components of LE-PCA and of
AeLLE, or the hyperparameters alone) is read three ways, on the same folds as the
cross-validation (:class:`~lyapbook.aelle.CrossValidation`), so that every network is predicted by
rules that never saw it:

* **median rule**: the first feature cut at its training median, the accurate side chosen on the
  training networks (the dissertation's classifier; one-dimensional representations only);
* **linear**: a logistic regression on all the representation's features (standardised on the
  training networks), accurate where its probability exceeds one half;
* **AUC**: the area under the ROC curve of the linear score, which needs no cut at all.

F1 and AUC are averaged over the autoencoder seeds (the other representations repeat one row);
intervals and paired differences resample networks (:func:`~lyapbook.aelle.metrics.bootstrap`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import rankdata
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from .crossval import CrossValidation, _median_rule
from .metrics import Interval, bootstrap, bootstrap_seed_scores

__all__ = ["RECIPES", "Readouts", "auc", "hyperparameter_features", "matched_readouts"]

# The recipe of each chapter-3 zoo, known before training: the columns of its rows that
# hyperparameter_features reads (FORCE: the gain g; LSTMs: size and p; digits: architecture and p).
RECIPES = {"target": ("init_p",), "charrnn": ("hidden", "init_p"), "smnist": ("arch", "init_p")}

Features = Callable[[int, int], np.ndarray]  # (seed index, fold) -> (n, k) features of every network


def auc(scores: np.ndarray, good: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` (n,) for labels ``good`` (n,) (ties count one half);
    NaN when a class is missing."""
    good = np.asarray(good, dtype=bool)
    n_good, n_bad = int(good.sum()), int((~good).sum())
    if n_good == 0 or n_bad == 0:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[good].sum() - n_good * (n_good + 1) / 2) / (n_good * n_bad))


def hyperparameter_features(rows: pd.DataFrame, columns: Sequence[str]) -> np.ndarray:
    """(n, k) features of the hyperparameters ``columns`` of a zoo's rows: text columns one-hot,
    positive numbers as logarithms; columns that do not vary (or repeat another) are dropped."""
    if not columns:
        raise ValueError("columns: name at least one hyperparameter column (e.g. ['arch', 'init_p'])")
    parts = []
    for column in columns:
        if column not in rows:
            raise ValueError(f"columns: {column!r} is not a column of the zoo's rows; choose from {', '.join(rows.columns)}")
        values = rows[column]
        if values.dtype == object or isinstance(values.iloc[0], str):
            parts.append(pd.get_dummies(values.astype(str)).to_numpy(dtype=float))
        else:
            numbers = values.to_numpy(dtype=float)
            parts.append((np.log(numbers) if (numbers > 0).all() else numbers)[:, None])
    matrix = np.concatenate(parts, axis=1)
    keep = [j for j in range(matrix.shape[1]) if np.ptp(matrix[:, j]) > 0]
    if not keep:
        raise ValueError(f"columns: {', '.join(columns)} do not vary over the zoo: no baseline to fit")
    _, first = np.unique(matrix[:, keep].round(12), axis=1, return_index=True)
    return matrix[:, [keep[j] for j in sorted(first)]]


def logistic_scores(x: np.ndarray, good: np.ndarray, train: np.ndarray, test: np.ndarray) -> np.ndarray:
    """Held-out decision scores (test,) of a logistic regression of ``good`` on features ``x`` (n, k),
    standardised and fitted on the rows ``train``: accurate where the score is above 0."""
    scaler = StandardScaler().fit(x[train])
    model = LogisticRegression(C=1.0, max_iter=2000).fit(scaler.transform(x[train]), good[train])
    return model.decision_function(scaler.transform(x[test]))


@dataclass
class Readouts:
    """Held-out read-outs of several representations of one zoo.

    ``median[name]`` (S, n) bool or None (representations of more than one feature);
    ``linear[name]`` (S, n) held-out logistic scores (accurate where > 0); ``dims[name]`` the number
    of features; ``good`` (n,) the labels; ``groups`` (n,) the network of each row.
    """

    good: np.ndarray
    groups: np.ndarray
    dims: dict[str, int]
    median: dict[str, np.ndarray | None]
    linear: dict[str, np.ndarray]

    def _check(self, *names: str) -> None:
        unknown = [n for n in names if n not in self.linear]
        if unknown:
            raise ValueError(f"representation: unknown {', '.join(map(repr, unknown))}; choose from "
                             f"{', '.join(map(repr, self.linear))}")

    def _auc(self, name: str, rows: np.ndarray) -> float:
        return float(np.mean([auc(row[rows], self.good[rows]) for row in self.linear[name]]))

    def auc_interval(self, name: str, *, n_draws: int = 1000, seed: int = 0, rows: np.ndarray | None = None) -> Interval:
        """Seed-averaged held-out AUC of the linear read-out (on ``rows`` only, if given)."""
        self._check(name)
        rows = np.arange(len(self.good)) if rows is None else np.asarray(rows)
        return bootstrap(lambda r: self._auc(name, rows[r]), len(rows), self.groups[rows], n_draws=n_draws, seed=seed)[0]

    def difference(self, name: str, other: str, readout: str = "auc", *, n_draws: int = 1000,
                   seed: int = 0) -> Interval:
        """Paired held-out difference ``name`` minus ``other`` of one read-out ("auc", "linear" F1 or
        "median" F1), networks resampled."""
        self._check(name, other)
        if readout == "auc":
            def statistic(r):
                return self._auc(name, r) - self._auc(other, r)
        elif readout in ("linear", "median"):
            a, b = self._predictions(name, readout), self._predictions(other, readout)

            def statistic(r):
                return _f1(a[:, r], self.good[r]) - _f1(b[:, r], self.good[r])
        else:
            raise ValueError(f"readout: 'auc', 'linear' or 'median', got {readout!r}")
        return bootstrap(statistic, len(self.good), self.groups, n_draws=n_draws, seed=seed)[0]

    def _predictions(self, name: str, readout: str) -> np.ndarray:
        if readout == "linear":
            return self.linear[name] > 0
        if self.median[name] is None:
            raise ValueError(f"{name}: a representation of {self.dims[name]} features has no median rule")
        return self.median[name]

    def table(self, *, comparator: str, n_draws: int = 1000, seed: int = 0) -> pd.DataFrame:
        """One row per representation: median-rule F1, linear F1 and AUC with 95 % intervals, and the
        paired AUC difference to ``comparator`` (fixed before looking)."""
        self._check(comparator)
        rows = []
        for name in self.linear:
            row = {"representation": name, "features": self.dims[name]}
            if self.median[name] is not None:
                f1 = bootstrap_seed_scores(self.median[name], self.good, self.groups, n_draws=n_draws, seed=seed).f1
                row.update(median_f1=f1.estimate, median_f1_low=f1.low, median_f1_high=f1.high)
            f1 = bootstrap_seed_scores(self.linear[name] > 0, self.good, self.groups, n_draws=n_draws, seed=seed).f1
            area = self.auc_interval(name, n_draws=n_draws, seed=seed)
            row.update(linear_f1=f1.estimate, linear_f1_low=f1.low, linear_f1_high=f1.high, auc=area.estimate,
                       auc_low=area.low, auc_high=area.high)
            if name != comparator:
                gap = self.difference(name, comparator, n_draws=n_draws, seed=seed)
                row.update(auc_gap=gap.estimate, auc_gap_low=gap.low, auc_gap_high=gap.high)
            rows.append(row)
        return pd.DataFrame(rows)


def _f1(predicted: np.ndarray, good: np.ndarray) -> float:
    """Seed-averaged F1 of (S, m) predictions."""
    tp = (predicted & good).sum(axis=1)
    denominator = predicted.sum(axis=1) + good.sum()
    return float(np.mean(np.where(denominator > 0, 2 * tp / np.maximum(denominator, 1), 0.0)))


def matched_readouts(cv: CrossValidation, hyperparameters: np.ndarray | None = None, *, components: int = 2) -> Readouts:
    """Held-out median, linear and AUC read-outs of the mean and largest exponents, their pair, the
    first ``components`` components of LE-PCA and of AeLLE (each fold's own PCA and autoencoder),
    AeLLE's loss head, and ``hyperparameters`` (n, k) (see :func:`hyperparameter_features`)."""
    data, good = cv.data, cv.good
    n_seeds = len(cv.seeds)
    both = np.column_stack([data.mean_le, data.max_le])
    features: dict[str, tuple[Features, bool]] = {
        "mean LE": (lambda i, f: data.mean_le[:, None], True),
        "max LE": (lambda i, f: data.max_le[:, None], True),
        "mean + max LE": (lambda i, f: both, False),
        f"LE PCA ({components} PCs)": (lambda i, f: cv.le_pcas[f].transform(data.spectra, components), True),
        f"AeLLE ({components} PCs)": (lambda i, f: cv.pcas[i][f].transform(cv.fits[i][f].model.encode(data.spectra),
                                                                           components), True),
        "AeLLE head": (lambda i, f: cv.fits[i][f].model.predict(data.spectra, standardised=True)[:, None], True),
    }
    if hyperparameters is not None:
        hyper = np.asarray(hyperparameters, dtype=float)
        if hyper.ndim != 2 or len(hyper) != len(good):
            raise ValueError(f"hyperparameters: (networks, features) = ({len(good)}, k), got {hyper.shape}")
        features["hyperparameters"] = (lambda i, f: hyper, False)
    seeded = {f"AeLLE ({components} PCs)", "AeLLE head"}
    dims, median, linear = {}, {}, {}
    for name, (make, has_median) in features.items():
        rows = n_seeds if name in seeded else 1
        scores, rule = np.zeros((rows, len(good))), np.zeros((rows, len(good)), dtype=bool)
        for i in range(rows):
            for f, split in enumerate(cv.splits):
                x = make(i, f)
                dims[name] = x.shape[1]
                scores[i, split.test] = logistic_scores(x, good, split.train, split.test)
                if has_median:
                    rule[i, split.test] = _median_rule(x[:, 0], good, split)
        linear[name] = np.repeat(scores, n_seeds // rows, axis=0)
        median[name] = np.repeat(rule, n_seeds // rows, axis=0) if has_median else None
    return Readouts(good=good, groups=data.network, dims=dims, median=median, linear=linear)
