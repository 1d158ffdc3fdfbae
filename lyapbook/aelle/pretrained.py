"""The pre-trained AeLLE: accuracy after training predicted from spectra taken early (Tables 3.1–3.3).

Dissertation ch. 3, L744–826; spec §1.6 and §6 items 1, 5, 6 and 23. An autoencoder is trained once,
on the spectra of 20 % of the networks taken after epochs 0–5 (all pooled, each with its network's
*final* loss as target); 20 % more networks choose the AeLLE threshold; the remaining 60 % are
scored at each stage of training (0, 10, 20 and 50 % = epochs 0, 1, 2 and 5 of 10). The split is
by network, so no network's spectra sit on both sides. Beside AeLLE (best-F1 threshold on PC1,
chosen on the validation networks): mean LE, max LE and LE-PC1 with the best-F1 threshold on the
training spectra (Table 3.2), the loss at that epoch below the label threshold (Table 3.1's
bracketed numbers; undefined before training), and the 2^d-orthant rule on the first d AeLLE PCs
(Table 3.3).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .cache import cached_fit_group
from .classify import OrthantRule, ThresholdRule, best_f1_threshold, orthant_classifier
from .crossval import _targets
from .embed import PCAEmbedding, fit_pca
from .metrics import (Interval, SeedScores, bootstrap, bootstrap_f1_difference, bootstrap_gap_to_best,
                      bootstrap_seed_scores, label_good, prf1, trivial_f1)
from .model import AeLLEFit
from .readouts import logistic_scores
from .splits import NetworkSplit, split_by_network
from .zoodata import ZooSpectra

__all__ = ["STAGES", "Pretrained", "pretrained_aelle"]

STAGES = {"0%": 0, "10%": 1, "20%": 2, "50%": 5}  # share of training -> epoch (of 10)


@dataclass
class Pretrained:
    """The pre-trained AeLLE experiment and its classifiers.

    ``score[name]`` (S, n) every spectrum's statistic (AeLLE-PC1 per seed; LE statistics one row),
    ``rules[name]`` (S) the fitted threshold rules; ``orthants[d]`` (S) the orthant rules on the
    first d AeLLE PCs; ``pc_scores[s]`` (n, k) every spectrum's AeLLE PC scores under seed s;
    ``loss_threshold`` the threshold of the loss classifier: the median over networks of the final
    validation loss, so that the rule read after the last epoch would split the networks in half.
    """

    data: ZooSpectra
    good: np.ndarray
    threshold: float
    split: NetworkSplit
    seeds: tuple[int, ...]
    stages: dict[str, int]
    fits: list[AeLLEFit]
    pcas: list[PCAEmbedding]
    le_pca: PCAEmbedding
    score: dict[str, np.ndarray]
    rules: dict[str, list[ThresholdRule]]
    pc_scores: list[np.ndarray]
    orthants: dict[int, list[OrthantRule]]
    loss_threshold: float
    settings: dict = field(default_factory=dict)

    def test_rows(self, stage: str) -> np.ndarray:
        """Indices of the test networks' spectra at a stage ("0%", "10%", ...)."""
        return np.intersect1d(self.split.test, np.flatnonzero(self.data.epoch == self.stages[stage]))

    def predictions(self, name: str, stage: str) -> np.ndarray:
        """(S, m) predicted-good flags of classifier ``name`` on the test spectra of ``stage``."""
        rows = self.test_rows(stage)
        if name == "loss":
            epoch_loss = self.data.rows.epoch_loss.to_numpy()[rows]
            return (epoch_loss < self.loss_threshold)[None]
        return np.stack([rule.predict(values[rows]) for rule, values in zip(self.rules[name], self.score[name])])

    def scores(self, name: str, stage: str, *, n_draws: int = 1000, seed: int = 0) -> SeedScores:
        rows = self.test_rows(stage)
        return bootstrap_seed_scores(self.predictions(name, stage), self.good[rows], self.data.network[rows],
                                     n_draws=n_draws, seed=seed)

    def orthant_predictions(self, d: int, stage: str) -> np.ndarray:
        """(S, m) predictions of the 2^d-orthant rule on the test spectra of ``stage``."""
        rows = self.test_rows(stage)
        return np.stack([rule.predict(scores[rows]) for rule, scores in zip(self.orthants[d], self.pc_scores)])

    def orthant_scores(self, d: int, stage: str, *, n_draws: int = 1000, seed: int = 0) -> SeedScores:
        rows = self.test_rows(stage)
        return bootstrap_seed_scores(self.orthant_predictions(d, stage), self.good[rows], self.data.network[rows],
                                     n_draws=n_draws, seed=seed)

    def difference(self, a, b, stage: str, *, n_draws: int = 1000, seed: int = 0) -> Interval:
        """Seed-averaged F1 of classifier ``a`` minus ``b`` on the test spectra of ``stage``, paired
        bootstrap over networks; a classifier is a name of ``score`` / "loss" or an int d (orthants)."""
        rows = self.test_rows(stage)
        pick = lambda c: self.orthant_predictions(c, stage) if isinstance(c, int) else self.predictions(c, stage)  # noqa: E731
        return bootstrap_f1_difference(pick(a), pick(b), self.good[rows], self.data.network[rows], n_draws=n_draws,
                                       seed=seed)

    def gap_to_best(self, a, comparators: Sequence[str], stage: str, *, n_draws: int = 1000,
                    seed: int = 0) -> tuple[Interval, dict[str, float]]:
        """F1 of ``a`` minus the best of ``comparators`` at ``stage``, the best chosen again in every
        bootstrap draw (:func:`~lyapbook.aelle.metrics.bootstrap_gap_to_best`)."""
        rows = self.test_rows(stage)
        return bootstrap_gap_to_best(self.predictions(a, stage), {c: self.predictions(c, stage) for c in comparators},
                                     self.good[rows], self.data.network[rows], n_draws=n_draws, seed=seed)

    def over_trivial(self, name: str, stage: str, *, n_draws: int = 1000, seed: int = 0) -> Interval:
        """Seed-averaged F1 of ``name`` at ``stage`` minus the F1 of calling every network accurate
        (:func:`~lyapbook.aelle.metrics.trivial_f1`, the fallback of a best-F1 threshold), networks resampled."""
        rows = self.test_rows(stage)
        predicted, good = self.predictions(name, stage), self.good[rows]

        def gap(r):
            return np.mean([prf1(p[r], good[r]).f1 for p in predicted]) - trivial_f1(good[r])

        interval, _ = bootstrap(gap, len(rows), self.data.network[rows], n_draws=n_draws, seed=seed)
        return interval

    def table(self, names: Sequence[str] = ("mean LE", "max LE", "LE PCA", "AeLLE", "loss"), *, n_draws: int = 1000,
              seed: int = 0) -> pd.DataFrame:
        """Long table: one row per stage and classifier with recall, precision, F1, 95 % intervals and
        the spread over seeds (the loss classifier is undefined before training: left out there)."""
        rows = []
        for stage, epoch in self.stages.items():
            for name in names:
                if name == "loss" and epoch == 0:
                    continue
                s = self.scores(name, stage, n_draws=n_draws, seed=seed)
                rows.append(_row(stage, epoch, name, s))
        return pd.DataFrame(rows)

    def orthant_table(self, dims: Sequence[int] = (1, 2, 4, 10), stages: Sequence[str] = ("0%", "50%"), *,
                      n_draws: int = 1000, seed: int = 0) -> pd.DataFrame:
        """F1 of the 2^d-orthant rule per stage and d, with the number of non-empty training cells."""
        rows = []
        for stage in stages:
            for d in dims:
                s = self.orthant_scores(d, stage, n_draws=n_draws, seed=seed)
                cells = np.mean([rule.n_nonempty for rule in self.orthants[d]])
                rows.append({**_row(stage, self.stages[stage], f"d = {d}", s), "d": d, "cells": 2**d,
                             "nonempty_cells": cells, "train_spectra": len(self.split.train)})
        return pd.DataFrame(rows)


def _row(stage: str, epoch: int, name: str, s: SeedScores) -> dict:
    return {"stage": stage, "epoch": epoch, "classifier": name, "recall": s.recall.estimate,
            "precision": s.precision.estimate, "f1": s.f1.estimate, "f1_low": s.f1.low, "f1_high": s.f1.high,
            "recall_low": s.recall.low, "recall_high": s.recall.high, "precision_low": s.precision.low,
            "precision_high": s.precision.high, "f1_seed_sd": s.seed_sd[2], "n": s.n_groups}


def pretrained_aelle(data: ZooSpectra, *, stages: Mapping[str, int] = STAGES, fit_epochs: Sequence[int] = (0, 1, 2, 3, 4, 5),
                     fractions: tuple[float, float, float] = (0.2, 0.2, 0.6), seeds: Sequence[int] = (0, 1, 2),
                     split_seed: int = 0, strata: str | None = None, dims: Sequence[int] = (1, 2, 4, 10),
                     log_target: bool = False, hyperparameters: np.ndarray | None = None,
                     cache: Path | str | None | bool = None, **ae_settings) -> Pretrained:
    """Run the pre-trained AeLLE experiment on ``data`` (spectra of every network at several epochs).

    ``fit_epochs``: the epochs whose spectra train the autoencoder and fit every threshold (pooled);
    ``stages``: the epochs the test networks are scored at. Split by network in ``fractions``
    (train / validation / test), balanced over ``strata`` (e.g. "arch"); labels from the median
    final loss over all networks. One autoencoder per seed (one group, through the cache).
    ``dims`` larger than the latent size are skipped; ``log_target`` as in :func:`cross_validate`.
    ``hyperparameters`` (n, k), one row per spectrum (see
    :func:`~lyapbook.aelle.hyperparameter_features`): adds the classifier "hyperparameters", a
    logistic regression fitted on the training networks (known before training, so the same at
    every stage), the baseline a spectrum taken early has to beat.
    """
    missing = sorted((set(fit_epochs) | set(stages.values())) - set(data.epoch.tolist()))
    if missing:
        raise ValueError(f"data: no spectra after epoch(s) {missing}; take them with zoo_spectra(..., epochs=[...])")
    first = np.unique(data.network, return_index=True)[1]  # one row per network: one vote each
    labels = label_good(data.loss[first])
    good = data.loss < labels.threshold
    strata_values = None if strata is None else data.rows[strata].to_numpy()
    split = split_by_network(data.network, fractions, seed=split_seed, good=good, strata=strata_values)
    seeds = tuple(int(s) for s in seeds)
    in_fit = np.isin(data.epoch, list(fit_epochs))
    train, val = np.intersect1d(split.train, np.flatnonzero(in_fit)), np.intersect1d(split.val, np.flatnonzero(in_fit))
    z, loss = data.spectra, _targets(data.loss, log_target)
    fits = cached_fit_group([(z[train], loss[train])] * len(seeds), [(z[val], loss[val])] * len(seeds),
                            seeds=list(seeds), cache=cache, **ae_settings)
    mean, top = data.mean_le, data.max_le
    le_pca = fit_pca(z[train], good[train])
    le_pc1 = le_pca.transform(z, 1)[:, 0]
    score = {"mean LE": mean[None], "max LE": top[None], "LE PCA": le_pc1[None]}
    rules = {name: [best_f1_threshold(values[0][train], good[train]).rule] for name, values in score.items()}
    pcas, pc_scores, aelle_rules = [], [], []
    for fit in fits:
        latent = fit.model.encode(z)
        pca = fit_pca(latent[train], good[train])
        pcas.append(pca)
        pc_scores.append(pca.transform(latent))
        aelle_rules.append(best_f1_threshold(pc_scores[-1][val, 0], good[val]).rule)
    score["AeLLE"] = np.stack([s[:, 0] for s in pc_scores])
    rules["AeLLE"] = aelle_rules
    if hyperparameters is not None:
        hyper = np.asarray(hyperparameters, dtype=float)
        if hyper.ndim != 2 or len(hyper) != len(data):
            raise ValueError(f"hyperparameters: one row per spectrum ({len(data)}, k), got {hyper.shape}")
        networks = np.intersect1d(split.train, first)  # one row per training network
        score["hyperparameters"] = logistic_scores(hyper, good, networks, np.arange(len(data)))[None]
        rules["hyperparameters"] = [ThresholdRule(0.0, 1)]
    orthants = {d: [orthant_classifier(s[train], good[train], d) for s in pc_scores] for d in dims
                if d <= pc_scores[0].shape[1]}
    loss_threshold = float(np.median(data.rows.final_epoch_loss.to_numpy()[first]))
    settings = dict(fractions=fractions, fit_epochs=tuple(fit_epochs), split_seed=split_seed, strata=strata,
                    log_target=log_target,
                    n_train=len(train), n_val=len(val), **ae_settings)
    return Pretrained(data=data, good=good, threshold=labels.threshold, split=split, seeds=seeds, stages=dict(stages),
                      fits=fits, pcas=pcas, le_pca=le_pca, score=score, rules=rules, pc_scores=pc_scores,
                      orthants=orthants, loss_threshold=loss_threshold, settings=settings)
