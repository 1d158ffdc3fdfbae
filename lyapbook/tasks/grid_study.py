"""Held-out prediction of a network's final loss from what is known early (spectrum, loss, settings).

The question of the dissertation's chapter 3 asked of any zoo with many networks: from features
known at an early checkpoint (its Lyapunov spectrum, its validation loss there, its
hyperparameters), can one tell which networks end in the better half? Every feature set gets the
same read-out, fitted on training folds only: a logistic regression for "final loss at or below
the median" (F1 of the held-out predictions) and a ridge regression for the loss itself (Spearman's
rho between the predicted and the true loss inside each test fold, averaged over the folds: pooling
the folds would add each fold's own intercept and slope to the ranking). Intervals resample
networks within each fold (the split itself is fixed); a difference between two feature sets is
computed inside each draw, so it is paired.

Learned embeddings (PCA of the spectra, an AeLLE autoencoder) are fitted inside each training fold
by :func:`fold_embeddings`, so no held-out network shapes its own features.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

__all__ = ["HeldOut", "fold_embeddings", "held_out", "split_folds", "prediction_table"]


def split_folds(good: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """(networks,) fold index of each network, stratified by ``good`` so each fold holds both classes."""
    from sklearn.model_selection import StratifiedKFold

    good = np.asarray(good, dtype=bool)
    if folds < 2 or folds > min(good.sum(), (~good).sum()):
        raise ValueError(f"folds must lie in 2..{min(good.sum(), (~good).sum())} (the smaller class), got {folds}")
    fold_of = np.empty(len(good), dtype=int)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for k, (_, test) in enumerate(splitter.split(np.zeros(len(good)), good)):
        fold_of[test] = k
    return fold_of


@dataclass(frozen=True)
class HeldOut:
    """One feature set's held-out predictions: ``good_pred`` (networks,) bool and ``loss_pred`` (networks,)."""

    name: str
    good_pred: np.ndarray
    loss_pred: np.ndarray


def held_out(name: str, features, loss, fold_of: np.ndarray, *, per_fold: Callable | None = None) -> HeldOut:
    """Held-out predictions of ``loss`` (networks,) from ``features`` (networks, f).

    ``per_fold(train, test) -> (train_features, test_features)`` replaces ``features`` with ones
    fitted on the training rows of each fold (see :func:`fold_embeddings`). Features are
    standardised with the training rows; "good" means a loss at or below the training median.
    """
    from sklearn.linear_model import LogisticRegression, RidgeCV
    from sklearn.preprocessing import StandardScaler

    loss = np.asarray(loss, dtype=float)
    x_all = None if features is None else np.asarray(features, dtype=float).reshape(len(loss), -1)
    good_pred, loss_pred = np.zeros(len(loss), dtype=bool), np.zeros(len(loss))
    for k in np.unique(fold_of):
        train, test = np.flatnonzero(fold_of != k), np.flatnonzero(fold_of == k)
        x_train, x_test = per_fold(train, test) if per_fold is not None else (x_all[train], x_all[test])
        scaler = StandardScaler().fit(x_train)
        x_train, x_test = scaler.transform(x_train), scaler.transform(x_test)
        labels = loss[train] <= np.median(loss[train])
        good_pred[test] = LogisticRegression(max_iter=1000).fit(x_train, labels).predict(x_test)
        loss_pred[test] = RidgeCV(alphas=np.logspace(-3, 3, 13)).fit(x_train, loss[train]).predict(x_test)
    return HeldOut(name, good_pred, loss_pred)


def _resamples(fold_of: np.ndarray, draws: int, seed: int) -> np.ndarray:
    """(draws + 1, networks) row indices: the identity first, then bootstrap draws that resample
    the networks of each fold within it (every fold keeps its size and position)."""
    rng = np.random.default_rng(seed)
    index = np.tile(np.arange(len(fold_of)), (draws + 1, 1))
    for k in np.unique(fold_of):
        members = np.flatnonzero(fold_of == k)
        index[1:, members] = members[rng.integers(0, len(members), (draws, len(members)))]
    return index


def _f1(truth: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """F1 along the last axis (truth, predicted: (..., networks) bool)."""
    hits = np.sum(truth & predicted, axis=-1)
    total = truth.sum(-1) + predicted.sum(-1)
    return np.where(total > 0, 2 * hits / np.maximum(total, 1), np.nan)


def _fold_spearman(predicted: np.ndarray, loss: np.ndarray, fold_of: np.ndarray) -> np.ndarray:
    """Spearman's rho inside each fold, averaged over the folds; predicted, loss: (..., networks)
    with the folds in the columns given by ``fold_of`` (networks,)."""
    from scipy.stats import rankdata

    per_fold = []
    for k in np.unique(fold_of):
        a, b = (rankdata(v[..., fold_of == k], axis=-1) for v in (predicted, loss))
        a, b = a - a.mean(-1, keepdims=True), b - b.mean(-1, keepdims=True)
        scale = np.sqrt((a * a).sum(-1) * (b * b).sum(-1))
        per_fold.append(np.where(scale > 0, (a * b).sum(-1) / np.where(scale > 0, scale, 1), np.nan))
    return np.nanmean(np.stack(per_fold), axis=0)


def _summary(values: np.ndarray) -> tuple[float, float, float]:
    """(estimate, low, high): the identity row's value and the 95 % percentile interval of the draws."""
    draws = values[1:][np.isfinite(values[1:])]
    low, high = np.percentile(draws, [2.5, 97.5]) if draws.size else (np.nan, np.nan)
    return float(values[0]), float(low), float(high)


def prediction_table(results: Sequence[HeldOut], loss, fold_of: np.ndarray, *, baseline: str, draws: int = 2000,
                     seed: int = 0):
    """One row per feature set: held-out F1 and within-fold Spearman's rho with 95 % bootstrap
    intervals (networks resampled within their fold, the same draws for every row), and each one's
    paired difference from the ``baseline`` feature set. The trivial classifier that calls every
    network good scores F1 = 2p / (1 + p) for a share p of good networks (2/3 when half are good)."""
    import pandas as pd

    loss, fold_of = np.asarray(loss, dtype=float), np.asarray(fold_of)
    good = loss <= np.median(loss)
    by_name = {r.name: r for r in results}
    if baseline not in by_name:
        raise ValueError(f"baseline must be one of {list(by_name)}, got {baseline!r}")
    index = _resamples(fold_of, draws, seed)  # (draws + 1, networks); the folds stay in place
    truth, observed = good[index], loss[index]
    f1 = {r.name: _f1(truth, r.good_pred[index]) for r in results}
    rho = {r.name: _fold_spearman(r.loss_pred[index], observed, fold_of) for r in results}
    rows = []
    for r in results:
        row = {"features": r.name}
        for key, values in (("F1", f1[r.name]), ("rho", rho[r.name])):
            row[key], row[f"{key} low"], row[f"{key} high"] = _summary(values)
        for key, values in (("F1", f1[r.name] - f1[baseline]), ("rho", rho[r.name] - rho[baseline])):
            row[f"{key} - {baseline}"], row[f"d{key} low"], row[f"d{key} high"] = _summary(values)
        rows.append(row)
    return pd.DataFrame(rows)


def fold_embeddings(spectra, loss, fold_of: np.ndarray, *, components: int = 2, alphas: Sequence[float] = (1.0, 10.0, 100.0),
                    val_fraction: float = 0.2, seed: int = 0, cache=None, **aelle_settings) -> dict[str, Callable]:
    """``per_fold`` functions for :func:`held_out`: the first ``components`` scores of a PCA of the
    spectra (``"LE-PCA"``) and of an AeLLE latent space (``"AeLLE"``), each fitted on the training
    rows of a fold only.

    The AeLLE of a fold is trained on its training rows less a validation share (``val_fraction``),
    once per α0 of ``alphas`` (all folds of one α0 train together as one group), and the α0 with
    the lowest validation prediction loss is kept, per fold; its latent codes are then reduced by
    a PCA of the training rows' codes. ``aelle_settings`` go to the autoencoder's fit.
    Returns {"LE-PCA": fn, "AeLLE": fn} and, under "alpha", the α0 chosen per fold.
    """
    from ..aelle import fit_pca
    from ..aelle.cache import cached_fit_group

    spectra, loss = np.asarray(spectra, dtype=float), np.asarray(loss, dtype=float)
    folds = np.unique(fold_of)
    rng = np.random.default_rng(seed)
    splits = {}
    for k in folds:
        train = np.flatnonzero(fold_of != k)
        held = rng.permutation(train)
        n_val = max(2, int(round(val_fraction * len(train))))
        splits[k] = (np.sort(held[n_val:]), np.sort(held[:n_val]))
    fits = {}
    for alpha in alphas:
        group = cached_fit_group([(spectra[fit], loss[fit]) for fit, _ in splits.values()],
                                 [(spectra[val], loss[val]) for _, val in splits.values()],
                                 seeds=[seed + int(k) for k in folds], alpha0=float(alpha), cache=cache,
                                 progress=False, **aelle_settings)
        for k, fit in zip(folds, group):
            fits[(k, alpha)] = fit
    chosen = {k: min(alphas, key=lambda a: fits[(k, a)].best.val_prediction) for k in folds}

    def pca(train, test):
        embedding = fit_pca(spectra[train])
        return embedding.transform(spectra[train], components), embedding.transform(spectra[test], components)

    def aelle(train, test):
        k = int(fold_of[test[0]])
        model = fits[(k, chosen[k])].model
        codes_train, codes_test = model.encode(spectra[train]), model.encode(spectra[test])
        embedding = fit_pca(codes_train)
        return embedding.transform(codes_train, components), embedding.transform(codes_test, components)

    return {"LE-PCA": pca, "AeLLE": aelle, "alpha": chosen}
