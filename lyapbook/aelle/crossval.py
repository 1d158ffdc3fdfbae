"""AeLLE against spectrum statistics on fully trained zoos (Figs 3.7–3.9, Tables B2–B4, D5).

The dissertation trains one autoencoder per task and scores median classifiers on (as far as its
numbers show, spec §6 item 19) the same networks whose medians set the boundaries. With a few
dozen networks the book scores every network once by k-fold cross-validation over networks,
repeated for several autoencoder seeds:

* the label: high accuracy = final loss below the median over all networks (the dissertation's
  thresholds MAE 0.57, CE 1.75 and "2.2e-3 = 50 % of networks" are such medians);
* fold f trains autoencoder (f, s) on its training networks (a validation part picks the best
  state) for every candidate α0 and keeps the α0 whose autoencoders predict the validation
  networks' losses best, fits the PCA on their latents (oriented good-right) and the LE-PCA on
  their spectra;
* four statistics per held-out network: mean LE, max LE, LE-PC1 and AeLLE-PC1; the PC scores are
  put on one scale across folds by subtracting the fold's training median and dividing by its
  training standard deviation;
* **held out**: each statistic cut at its training median, the side chosen on training
  networks, applied to the fold's test networks; pooled over folds, every network is predicted
  once per seed;
* **all networks** (the dissertation's reading): the pooled statistic cut at its own median,
  the side chosen on the same networks.

Beside the four, the loss head's own prediction (``"AeLLE head"``: minus T̂, cut the same way)
shows how much of what the latent space knows about the loss its first PC carries.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from .cache import cached_fit_group
from .classify import ThresholdRule, median_classifier, median_direction
from .embed import PCAEmbedding, fit_pca
from .metrics import SeedScores, bootstrap_f1_difference, bootstrap_gap_to_best, bootstrap_seed_scores, label_good
from .model import AeLLEFit
from .splits import NetworkSplit, kfold_by_network
from .zoodata import ZooSpectra

__all__ = ["CLASSIFIERS", "HEAD", "CrossValidation", "cross_validate"]

CLASSIFIERS = ("mean LE", "max LE", "LE PCA", "AeLLE")
HEAD = "AeLLE head"  # not in the dissertation: the loss head's own prediction, cut at its training median


def _strata(data: ZooSpectra, column: str | None, good: np.ndarray) -> np.ndarray:
    """Folds balanced over ``column`` (e.g. the architecture) *and* the label, so that every fold
    holds accurate and inaccurate networks in proportion even in a small zoo."""
    base = np.full(len(good), "") if column is None else data.rows[column].astype(str).to_numpy()
    # label first: the folds deal out the strata in sorted order, so all accurate strata come
    # first and are spread over the folds, then all inaccurate ones
    return np.array([f"{g}|{b}" for b, g in zip(base, good)])


def _median_rule(values: np.ndarray, good: np.ndarray, split: NetworkSplit) -> np.ndarray:
    """Held-out predictions: cut at the training median, the accurate side chosen on training."""
    rule = ThresholdRule(float(np.median(values[split.train])), median_direction(values[split.train], good[split.train]))
    return rule.predict(values[split.test])


def _aelle_statistics(model, z: np.ndarray, good: np.ndarray, split: NetworkSplit):
    """(PCA of the training latents, rescaled PC1 of every spectrum, rescaled minus-prediction of
    the head): both scores good to the right, on the fold's training scale."""
    latent = model.encode(z)
    pca = fit_pca(latent[split.train], good[split.train])
    pc1 = _rescaled(pca.transform(latent, 1)[:, 0], split.train)
    head = _rescaled(-model.predict_latent(latent, standardised=True), split.train)
    return pca, pc1, head


def _targets(loss: np.ndarray, log_target: bool) -> np.ndarray:
    """The autoencoder's targets: the loss, or its logarithm (all losses must then be positive)."""
    if not log_target:
        return loss
    if (loss <= 0).any():
        raise ValueError(f"log_target: needs positive losses, got a minimum of {loss.min()}")
    return np.log(loss)


def _rescaled(scores: np.ndarray, train: np.ndarray) -> np.ndarray:
    """Scores relative to the training scores: (s − median) / standard deviation."""
    spread = scores[train].std()
    return (scores - np.median(scores[train])) / (spread if spread > 0 else 1.0)


@dataclass
class CrossValidation:
    """Out-of-fold statistics and predictions of the four classifiers on one zoo.

    ``statistic[name]`` and ``heldout[name]`` are (S, n) arrays (S = number of autoencoder seeds;
    the LE statistics do not depend on the seed and repeat one row): the out-of-fold statistic
    (PC scores rescaled per fold) and the held-out median prediction of every spectrum. ``fits[s][f]``
    and ``pcas[s][f]`` are the autoencoder and latent PCA of seed s, fold f; ``le_pcas[f]`` the
    PCA of the raw spectra of fold f.
    """

    data: ZooSpectra
    good: np.ndarray
    threshold: float
    splits: list[NetworkSplit]
    seeds: tuple[int, ...]
    fits: list[list[AeLLEFit]]
    pcas: list[list[PCAEmbedding]]
    le_pcas: list[PCAEmbedding]
    statistic: dict[str, np.ndarray]
    heldout: dict[str, np.ndarray]
    settings: dict = field(default_factory=dict)
    alphas_chosen: tuple[float, ...] = ()  # per fold: the α0 of the lowest validation prediction loss
    sweep: dict[float, list[list[AeLLEFit]]] = field(default_factory=dict)  # α0 -> fits[s][f]

    def alpha_table(self, n_draws: int = 1000, seed: int = 0) -> pd.DataFrame:
        """One row per α0 of the sweep: the validation prediction loss that chose it (mean over folds
        and seeds, standardised target units), how many folds chose it, the held-out F1 of AeLLE's
        PC1 median rule had every fold used it (shown, never used to choose), and how the loss head
        lies in the latent space: |cos| of its weight vector with PC1 and PC2 of the training
        latents, and the share of the latent variance along it; and |Spearman| of PC1 with the
        mean exponent over all networks, how much PC1 is the spectrum's level (fold means)."""
        rows = []
        for alpha, fits in self.sweep.items():
            predicted = np.zeros((len(self.seeds), len(self.good)), dtype=bool)
            cos1, cos2, share, level = [], [], [], []
            for i, per_fold in enumerate(fits):
                for fit, split in zip(per_fold, self.splits):
                    pca, pc1, _ = _aelle_statistics(fit.model, self.data.spectra, self.good, split)
                    predicted[i, split.test] = _median_rule(pc1, self.good, split)
                    level.append(abs(spearmanr(pc1, self.data.mean_le)[0]))
                    w = fit.model.head_weights()[0]
                    w = w / np.linalg.norm(w)
                    cos1.append(abs(float(pca.components[0] @ w)))
                    cos2.append(abs(float(pca.components[1] @ w)) if len(pca.components) > 1 else np.nan)
                    latent = fit.model.encode(self.data.spectra[split.train])
                    centred = latent - latent.mean(axis=0)
                    share.append(float(np.var(centred @ w) / np.var(centred, axis=0).sum()))
            f1 = bootstrap_seed_scores(predicted, self.good, self.data.network, n_draws=n_draws, seed=seed).f1
            rows.append({"alpha0": alpha, "val_prediction": float(np.mean([f.best.val_prediction for per_fold in fits
                                                                          for f in per_fold])),
                         "folds_chosen": int(sum(a == alpha for a in self.alphas_chosen)), "f1": f1.estimate,
                         "f1_low": f1.low, "f1_high": f1.high, "cos_head_pc1": float(np.mean(cos1)),
                         "cos_head_pc2": float(np.nanmean(cos2)), "head_variance_share": float(np.mean(share)),
                         "rank_pc1_mean_le": float(np.mean(level))})
        return pd.DataFrame(rows)

    def all_networks(self, name: str) -> np.ndarray:
        """(S, n) predictions of the dissertation's reading: the pooled statistic cut at its own median."""
        return np.stack([median_classifier(row, self.good).predicted for row in self.statistic[name]])

    def scores(self, name: str, variant: str = "heldout", *, n_draws: int = 1000, seed: int = 0) -> SeedScores:
        """Seed-averaged recall / precision / F1 of one classifier with bootstrap intervals over networks."""
        predicted = self.heldout[name] if variant == "heldout" else self.all_networks(name)
        return bootstrap_seed_scores(predicted, self.good, self.data.network, n_draws=n_draws, seed=seed)

    def difference(self, name: str, other: str, *, n_draws: int = 1000, seed: int = 0):
        """F1(name) − F1(other), held out, seed-averaged, with a paired bootstrap interval over networks."""
        return bootstrap_f1_difference(self.heldout[name], self.heldout[other], self.good, self.data.network,
                                       n_draws=n_draws, seed=seed)

    def gap_to_best(self, name: str, others, *, n_draws: int = 1000, seed: int = 0):
        """F1(name) minus the best F1 of ``others``, held out, with the best chosen again in every
        bootstrap draw (:func:`~lyapbook.aelle.metrics.bootstrap_gap_to_best`): (interval, share of
        draws each rival was best)."""
        return bootstrap_gap_to_best(self.heldout[name], {o: self.heldout[o] for o in others}, self.good,
                                     self.data.network, n_draws=n_draws, seed=seed)

    def final_state_heldout(self) -> np.ndarray:
        """(S, n) held-out AeLLE predictions with each autoencoder's *final* state instead of the
        kept best one (the original code's effective choice, spec §6 item 12)."""
        predicted = np.zeros((len(self.seeds), len(self.good)), dtype=bool)
        for i, fits in enumerate(self.fits):
            for fit, split in zip(fits, self.splits):
                _, pc1, _ = _aelle_statistics(fit.final_model(), self.data.spectra, self.good, split)
                predicted[i, split.test] = _median_rule(pc1, self.good, split)
        return predicted

    def table(self, *, n_draws: int = 1000, seed: int = 0, head: bool = False) -> pd.DataFrame:
        """One row per classifier: held-out recall, precision, F1 with 95 % intervals and spread over
        seeds, and the F1 of the all-networks reading (``head``: also the loss head's own prediction)."""
        rows = []
        for name in CLASSIFIERS + ((HEAD,) if head else ()):
            held = self.scores(name, n_draws=n_draws, seed=seed)
            every = self.scores(name, "all", n_draws=n_draws, seed=seed)
            rows.append({"classifier": name, "recall": held.recall.estimate, "precision": held.precision.estimate,
                         "f1": held.f1.estimate, "f1_low": held.f1.low, "f1_high": held.f1.high,
                         "f1_seed_sd": held.seed_sd[2], "recall_low": held.recall.low, "recall_high": held.recall.high,
                         "precision_low": held.precision.low, "precision_high": held.precision.high,
                         "f1_all": every.f1.estimate, "recall_all": every.recall.estimate,
                         "precision_all": every.precision.estimate, "seeds": len(self.seeds)})
        return pd.DataFrame(rows)

    def embedding(self, seed_index: int = 0, fold: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """(AeLLE PC scores of every spectrum (n, k) under fold ``fold``'s autoencoder and PCA of seed
        ``seeds[seed_index]``, flags (n,) of the spectra that fold held out): for the figures."""
        fit, pca = self.fits[seed_index][fold], self.pcas[seed_index][fold]
        held = np.zeros(len(self.good), dtype=bool)
        held[self.splits[fold].test] = True
        return pca.transform(fit.model.encode(self.data.spectra)), held


def cross_validate(data: ZooSpectra, *, folds: int = 5, seeds: Sequence[int] = (0, 1, 2), val_fraction: float = 0.15,
                   split_seed: int = 0, strata: str | None = None, threshold: float | None = None,
                   log_target: bool = False, alphas: Sequence[float] = (1.0,), cache: Path | str | None | bool = None,
                   n_jobs: int = 1, **ae_settings) -> CrossValidation:
    """Cross-validated AeLLE and LE statistics on final spectra ``data`` (one spectrum per network).

    ``folds`` folds over networks (balanced over the label and over ``strata``, a column of
    ``data.rows`` such as "arch" or "hidden"), ``val_fraction`` of each fold's training networks kept aside to choose the
    autoencoder's best state; one autoencoder per fold, seed and α0 of ``alphas``, those of one α0
    trained as one group (:func:`~lyapbook.aelle.fit_aelle_group`, settings ``ae_settings``), through
    the disk cache (``cache``, see :func:`~lyapbook.aelle.cached_fit_group`). Each fold uses the α0
    whose autoencoders predict its validation networks' losses best (mean over seeds): a nested
    choice that never sees the fold's test networks nor any F1. ``n_jobs`` processes train the
    groups of different α0 side by side (one torch thread each). ``threshold`` (loss units) sets
    the label; default the median final loss. ``log_target`` trains the autoencoders on the
    logarithm of the loss (for losses spread over orders of magnitude; the labels, a median split,
    are the same). Classes too small for the folds raise before training.
    """
    if len(np.unique(data.network)) != len(data):
        raise ValueError("data: cross_validate takes one spectrum per network (zoo_spectra(..., epochs='final'))")
    labels = label_good(data.loss, threshold)
    splits = kfold_by_network(data.network, folds, seed=split_seed, val_fraction=val_fraction, good=labels.good,
                              strata=_strata(data, strata, labels.good))
    seeds = tuple(int(s) for s in seeds)
    if not seeds:
        raise ValueError("seeds: give at least one autoencoder seed")
    alphas = tuple(float(a) for a in alphas)
    if not alphas or any(not a > 0 for a in alphas) or len(set(alphas)) != len(alphas):
        raise ValueError(f"alphas: distinct positive α0 values, got {alphas}")
    if "alpha0" in ae_settings:
        raise ValueError("alpha0: give the candidates as alphas=[...] (one value: alphas=[a])")
    if len(alphas) > 1 and not val_fraction > 0:
        raise ValueError("alphas: choosing among several α0 needs validation networks (val_fraction > 0)")
    z, good = data.spectra, labels.good
    loss = _targets(data.loss, log_target)
    train = [(z[s.train], loss[s.train]) for _ in seeds for s in splits]
    val = [(z[s.val], loss[s.val]) for _ in seeds for s in splits] if val_fraction > 0 else None
    group_seeds = [1000 * seed + f for seed in seeds for f in range(folds)]

    def fit(alpha):
        return cached_fit_group(train, val, seeds=group_seeds, cache=cache, alpha0=alpha, **ae_settings)

    if n_jobs > 1 and len(alphas) > 1:
        groups = joblib.Parallel(n_jobs=min(n_jobs, len(alphas)))(joblib.delayed(fit)(a) for a in alphas)
    else:
        groups = [fit(a) for a in alphas]
    sweep = {alpha: [flat[i * folds:(i + 1) * folds] for i in range(len(seeds))] for alpha, flat in zip(alphas, groups)}
    if len(alphas) == 1:
        chosen = (alphas[0],) * folds
    else:
        chosen = tuple(min(alphas, key=lambda a: np.mean([sweep[a][i][f].best.val_prediction for i in range(len(seeds))]))
                       for f in range(folds))
    fits = [[sweep[chosen[f]][i][f] for f in range(folds)] for i in range(len(seeds))]
    n = len(good)
    raw = {"mean LE": data.mean_le, "max LE": data.max_le}
    statistic = {name: np.empty((1, n)) for name in ("mean LE", "max LE", "LE PCA")}
    statistic["AeLLE"] = np.empty((len(seeds), n))
    statistic[HEAD] = np.empty((len(seeds), n))
    heldout = {name: np.zeros(statistic[name].shape, dtype=bool) for name in (*CLASSIFIERS, HEAD)}

    le_pcas, pcas = [], [[] for _ in seeds]
    for f, split in enumerate(splits):
        for name, values in raw.items():
            statistic[name][0, split.test] = values[split.test]
            heldout[name][0, split.test] = _median_rule(values, good, split)
        le_pca = fit_pca(z[split.train], good[split.train])
        le_pcas.append(le_pca)
        pc1 = _rescaled(le_pca.transform(z, 1)[:, 0], split.train)
        statistic["LE PCA"][0, split.test] = pc1[split.test]
        heldout["LE PCA"][0, split.test] = _median_rule(pc1, good, split)
        for i in range(len(seeds)):
            pca, pc1, head = _aelle_statistics(fits[i][f].model, z, good, split)
            pcas[i].append(pca)
            statistic["AeLLE"][i, split.test] = pc1[split.test]
            heldout["AeLLE"][i, split.test] = _median_rule(pc1, good, split)
            statistic[HEAD][i, split.test] = head[split.test]
            heldout[HEAD][i, split.test] = _median_rule(head, good, split)
    settings = dict(folds=folds, val_fraction=val_fraction, split_seed=split_seed, strata=strata, log_target=log_target,
                    alphas=alphas, **ae_settings)
    return CrossValidation(data=data, good=good, threshold=labels.threshold, splits=splits, seeds=seeds, fits=fits,
                           pcas=pcas, le_pcas=le_pcas, statistic=statistic, heldout=heldout, settings=settings,
                           alphas_chosen=chosen, sweep=sweep)
