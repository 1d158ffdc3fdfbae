"""The flip test of chapter 4 over several trained networks, with its controls (Table 4.1 and beyond).

:func:`flip_study` reads the same test images with each trained pixel-wise network and ranks their
pixels in several ways (see :mod:`lyapbook.gradients.controls`):

* ``"R1"`` — log R_1 of the step that read the pixel, forward recursion from h_0 = 0 (the dissertation's);
* ``"R1, warm-up"`` — the same after a warm-up: state and frame first run over the image's first
  ``warmup`` pixels, then the image is read again from its first pixel (as the authors' code did);
* ``"R1, first steps skipped"`` — the R1 ranking with the first ``skip`` steps flipped last;
* ``"future R1"`` — sum_{r>t} log r_r^1, the factor the corrected Eq. 4.14 puts on grad_{h_t} L;
* ``"saliency"`` — |dL/dx_t|, the positive control;
* ``"last read"`` — the most recently read pixels first.

Each ranking is compared with the dissertation's random flips (one random set per draw, shared by
the images of a network); the R1 and future R1 rankings also with random positions matched to
their own in reading time (:func:`matched` names that baseline), which asks whether the ranking
knows more than when its pixels were read. Images of different networks are pooled; intervals resample images
within each network.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from .ftle import CheckpointRun, FlipImages, flip_images_of

__all__ = ["MATCHED_RANKINGS", "RANDOM", "RANKINGS", "NetworkFlips", "FlipStudy", "flip_study", "matched"]

RANKINGS = ("R1", "R1, warm-up", "R1, first steps skipped", "future R1", "saliency", "last read")
RANDOM = "random"
MATCHED_RANKINGS = ("R1", "future R1")  # rankings also compared with random flips read at the same time


def matched(ranking: str) -> str:
    """The name of the random control matched in reading time to ``ranking``."""
    return f"random, read when {ranking}'s pixels were"


@dataclass
class NetworkFlips:
    """One network's part of the study.

    Attributes:
        run: the trained network (its setup, checkpoints and validation curve).
        net: the float64 snapshot (R values, saliency); the flips' losses use the same weights in
            the study's ``loss_dtype``.
        images: the analysed images and their reading order.
        log_r: (images, T, k) log r_t^i of the forward recursion from h_0 = 0, no warm-up.
        ftle: (images, T, k) the running finite-time exponents of the same recursion.
        scores: ranking name -> (images, T) step scores.
        orders: ranking name -> (images, P) positions, flipped first to last.
        increases: ranking name -> (K, images) loss increase of flipping the first k of the order.
        baselines: baseline name -> (K, draws, images) loss increases of the random flips.
        single: (images, P) loss increase of flipping each position alone.
        derivative: (images, T) mean over units of phi'(a_t) = 1 - h_t^2 along the unflipped reading.
    """

    run: CheckpointRun
    net: object
    images: FlipImages
    log_r: torch.Tensor
    ftle: torch.Tensor
    scores: dict[str, torch.Tensor]
    orders: dict[str, torch.Tensor]
    increases: dict[str, torch.Tensor]
    baselines: dict[str, torch.Tensor]
    single: torch.Tensor
    derivative: torch.Tensor


@dataclass
class FlipStudy:
    """The flip test over several networks.

    Attributes:
        networks: one :class:`NetworkFlips` per trained network.
        ks: numbers of flipped pixels.
        comparisons: (ranking, baseline) pairs the study tests, in table order.
    """

    networks: list[NetworkFlips]
    ks: tuple[int, ...]
    comparisons: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    @property
    def strata(self) -> np.ndarray:
        """(images of all networks,) the index of the network that read each image."""
        return np.concatenate([np.full(n.images.images.shape[0], i) for i, n in enumerate(self.networks)])

    def pooled(self, ranking: str, baseline: str = RANDOM) -> tuple[np.ndarray, np.ndarray]:
        """((K, images), (K, draws, images)): the ranking's and the baseline's increases, networks side by side."""
        ours = np.concatenate([n.increases[ranking].numpy() for n in self.networks], axis=-1)
        theirs = np.concatenate([n.baselines[baseline].numpy() for n in self.networks], axis=-1)
        return ours, theirs

    def test(self, ranking: str, baseline: str = RANDOM, *, draws: int = 2000, seed: int = 0):
        """One :class:`~lyapbook.gradients.PairedFlipTest` per k, images of every network pooled."""
        from ..gradients import paired_flip_test

        ours, theirs = self.pooled(ranking, baseline)
        return [paired_flip_test(ours[i], theirs[i], strata=self.strata, draws=draws, seed=seed)
                for i in range(len(self.ks))]

    def mean_delta(self, ranking: str, which: Sequence[int], baseline: str = RANDOM, *, draws: int = 2000,
                   seed: int = 0) -> tuple[float, float, float]:
        """Delta averaged over the k at indices ``which`` (nested k share their images: one number,
        not one test per k), with its interval, images resampled within each network."""
        from ..stats import bootstrap_interval

        ours, theirs = self.pooled(ranking, baseline)
        d = (ours - theirs.mean(axis=1))[list(which)].mean(axis=0)  # (images,)
        return bootstrap_interval(d.size, lambda rows: float(d[rows].mean()), draws=draws, seed=seed,
                                  strata=self.strata)

    def damage_correlation(self, ranking: str) -> np.ndarray:
        """(images,) for each image, the Spearman correlation between a ranking's score of each position
        and the loss increase of flipping that position alone (images of every network, in order)."""
        from scipy.stats import spearmanr

        from ..gradients import order_by_step_scores

        out = []
        for n in self.networks:
            scores = order_by_step_scores(n.scores[ranking], n.images.permutation)[0]
            for score, damage in zip(scores.numpy(), n.single.numpy()):
                finite = np.isfinite(score)
                out.append(spearmanr(score[finite], damage[finite]).statistic)
        return np.asarray(out, dtype=float)

    def table(self, *, draws: int = 2000, seed: int = 0):
        """A DataFrame, one row per (ranking, baseline, k): Delta, its 95 % interval, the
        dissertation's p, the Wilcoxon p, and how many networks have Delta > 0."""
        import pandas as pd

        rows = []
        for ranking, baseline in self.comparisons:
            for k, t in zip(self.ks, self.test(ranking, baseline, draws=draws, seed=seed)):
                rows.append({"ranking": ranking, "against": baseline, "k": k, "delta": t.delta, "low": t.low,
                             "high": t.high, "p": t.p, "wilcoxon_p": t.wilcoxon_p,
                             "positive_networks": t.positive_networks, "networks": t.networks})
        return pd.DataFrame(rows)


def _network_flips(run: CheckpointRun, images: FlipImages, *, ks: Sequence[int], draws: int, warmup: int,
                   skip: int, window: int, seed: int, loss_dtype: torch.dtype) -> NetworkFlips:
    from .. import gradients as lg
    from ..gradients import controls

    net = lg.vanilla_rnn(run.model())
    judge = lg.vanilla_rnn(run.model(dtype=loss_dtype))  # the network whose losses the flips compare
    pixels = images.images.to(torch.float64)
    flat = images.images.to(loss_dtype)
    x = lg.as_sequence(pixels, images.permutation)
    steps = x.shape[1]
    factors = lg.qr_factors(net, x, k=1, q_vectors=False, ftle=True)
    warmed = lg.qr_factors(net, torch.cat([x[:, :warmup], x], dim=1), k=1, q_vectors=False, ftle=True, warmup=warmup)
    r1 = factors.log_r[..., 0]
    scores = {"R1": r1, "R1, warm-up": warmed.log_r[..., 0], "R1, first steps skipped": controls.skip_first_steps(r1, skip),
              "future R1": controls.future_stretch(factors.log_r),
              "saliency": controls.input_saliency(net, pixels, images.labels, permutation=images.permutation),
              "last read": controls.reading_recency(x.shape[0], steps)}
    orders = {name: lg.order_by_step_scores(s, images.permutation)[1] for name, s in scores.items()}
    flips = lg.flip_experiment(judge, flat, images.labels, orders["R1"], ks, permutation=images.permutation,
                               draws=draws, seed=seed)
    increases = {"R1": flips.r_increase}
    for name in RANKINGS[1:]:
        increases[name] = torch.stack([lg.flip_increase(judge, flat, images.labels, orders[name][:, :k],
                                                        permutation=images.permutation, base=flips.base_loss)
                                       for k in ks])
    reading_step = torch.argsort(images.permutation)  # position -> the step that read it
    generator = torch.Generator().manual_seed(seed + 1)
    baselines = {RANDOM: flips.random_increase}
    for name in MATCHED_RANKINGS:
        baselines[matched(name)] = torch.stack([
            lg.flip_increase(judge, flat, images.labels,
                             controls.time_matched_positions(reading_step[orders[name][:, :k]], steps, draws=draws,
                                                             window=window, permutation=images.permutation,
                                                             generator=generator),
                             permutation=images.permutation, base=flips.base_loss)
            for k in ks])
    states = lg.rnn_forward(net, x).states
    return NetworkFlips(run=run, net=net, images=images, log_r=factors.log_r, ftle=factors.ftle, scores=scores,
                        orders=orders, increases=increases, baselines=baselines,
                        single=controls.single_flip_damage(judge, flat, images.labels, permutation=images.permutation),
                        derivative=(1 - states**2).mean(-1))


def flip_study(runs: Sequence[CheckpointRun], images: int, *, ks: Sequence[int], draws: int, warmup: int, skip: int,
               window: int, seed: int = 0, loss_dtype: torch.dtype = torch.float32) -> FlipStudy:
    """The flip test and its controls for each trained pixel-wise network, on the first ``images`` test images.

    Args:
        runs: trained pixel-wise networks (e.g. one per seed), all of the same dataset.
        images: test images per network (the same images for every network).
        ks: numbers of pixels to flip.
        draws: random sets per k (for the dissertation's random flips and for the time-matched ones).
        warmup: steps of the image read before the warmed-up R1 reading (the authors' code: 200 of 784).
        skip: first steps sent to the end of the "R1, first steps skipped" ranking.
        window: half-width, in steps, of the time-matched random control.
        seed: random draws (network i uses seed + i).
        loss_dtype: the dtype of the many forward passes that compare losses (the networks trained in
            float32); the R values, their QR recursion and the saliency use float64.
    """
    runs = list(runs)
    if not runs or any(not isinstance(r, CheckpointRun) or r.setup.kind != "pixels" for r in runs):
        raise ValueError("runs must be a non-empty list of trained pixel-wise networks (train_checkpoints of a pixelwise_setup)")
    if len({r.setup.dataset for r in runs}) != 1:
        raise ValueError("runs must all read the same dataset, so that they flip the same images")
    shared = flip_images_of(runs[0].setup, images)
    steps = shared.images.shape[1]
    for name, value, high in (("warmup", warmup, steps), ("skip", skip, steps - 1), ("window", window, steps)):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= high:
            raise ValueError(f"{name} must be an int in [0, {high}] steps, got {value!r}")
    networks = [_network_flips(run, shared, ks=ks, draws=draws, warmup=warmup, skip=skip, window=window, seed=seed + i,
                               loss_dtype=loss_dtype) for i, run in enumerate(runs)]
    comparisons = tuple((name, RANDOM) for name in RANKINGS) + tuple((name, matched(name)) for name in MATCHED_RANKINGS)
    return FlipStudy(networks=networks, ks=tuple(ks), comparisons=comparisons)
