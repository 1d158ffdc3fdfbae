"""The one-sided test of Table 4.1 and a paired rank test beside it (spec §3.6, §6 item 33).

The dissertation compares the loss increases of the R-guided flips, y_R (one per image), with those
of the random flips, y_rand (draws x images, pooled):

    Delta = mean(y_R) - mean(y_rand),  sigma = sqrt(var(y_R)/n_R + var(y_rand)/n_rand),  p = Phi(-Delta/sigma)

with unbiased variances: a one-sided normal approximation. Table 4.1's "Variance" column is sigma, a
standard error. This is not Welch's t-test (no t distribution) and ignores that y_R and y_rand come
from the same images; the Wilcoxon signed-rank test on the per-image differences
d_i = y_R,i - mean_j y_rand,ij respects the pairing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import torch

__all__ = ["FlipSignificance", "PairedFlipTest", "flip_significance", "one_sided_p", "paired_flip_test"]


def one_sided_p(delta: float, standard_error: float) -> float:
    """p = Phi(-Delta / sigma), the p-value of Table 4.1 for H1: mu_R > mu_rand.

    sigma = 0 gives the limit: 0 for Delta > 0, 1 for Delta < 0, 0.5 for Delta = 0.
    """
    if not standard_error >= 0:
        raise ValueError(f"standard_error must be non-negative, got {standard_error}")
    if standard_error == 0:
        return 0.0 if delta > 0 else 1.0 if delta < 0 else 0.5
    return NormalDist().cdf(-delta / standard_error)


@dataclass(frozen=True)
class FlipSignificance:
    """Tests of mu_R > mu_rand for one number of flipped pixels.

    Attributes:
        delta: mean(y_R) - mean(y_rand).
        standard_error: sigma (Table 4.1's "Variance" column).
        p: Phi(-delta / sigma), the dissertation's one-sided test.
        wilcoxon_statistic, wilcoxon_p: one-sided Wilcoxon signed-rank test of d_i > 0 (NaN when every
            d_i is 0, where the test is undefined).
        differences: (n_images,) d_i = y_R,i - mean_j y_rand,ij.
        ranks: (n_images,) rank of each image's R-flip increase among its own random flips and itself,
            1 = above every random flip, draws + 1 = below all; ties share the mean rank.
        n_r, n_random: sample sizes (images; draws x images).
    """

    delta: float
    standard_error: float
    p: float
    wilcoxon_statistic: float
    wilcoxon_p: float
    differences: np.ndarray
    ranks: np.ndarray
    n_r: int
    n_random: int


def flip_significance(r_increase, random_increase) -> FlipSignificance:
    """The statistics of one row of Table 4.1.

    Args:
        r_increase: (n_images,) loss increase of each image's R-guided flip, y_R.
        random_increase: (draws, n_images) loss increase of each random draw on each image, y_rand.

    Returns:
        A :class:`FlipSignificance`.
    """
    from scipy.stats import wilcoxon

    y_r = _as_array(r_increase, "r_increase")
    y_rand = _as_array(random_increase, "random_increase")
    if y_r.ndim != 1 or y_rand.ndim != 2 or y_rand.shape[1] != y_r.shape[0]:
        raise ValueError(f"r_increase must be (n_images,) and random_increase (draws, n_images) for the same images, "
                         f"got {y_r.shape} and {y_rand.shape}")
    if y_r.size < 2 or y_rand.size < 2:
        raise ValueError("unbiased variances need at least 2 R-guided and 2 random values")
    delta = float(y_r.mean() - y_rand.mean())
    standard_error = math.sqrt(y_r.var(ddof=1) / y_r.size + y_rand.var(ddof=1) / y_rand.size)
    differences = y_r - y_rand.mean(axis=0)
    if np.all(differences == 0):
        statistic = p_rank = math.nan
    else:
        result = wilcoxon(differences, alternative="greater")
        statistic, p_rank = float(result.statistic), float(result.pvalue)
    above = (y_rand > y_r).sum(axis=0)
    ties = (y_rand == y_r).sum(axis=0)
    return FlipSignificance(
        delta=delta, standard_error=standard_error, p=one_sided_p(delta, standard_error),
        wilcoxon_statistic=statistic, wilcoxon_p=p_rank, differences=differences,
        ranks=1.0 + above + ties / 2.0, n_r=y_r.size, n_random=y_rand.size,
    )


def _as_array(values, name: str) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    array = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or inf values")
    return array


@dataclass(frozen=True)
class PairedFlipTest:
    """One ranking against one baseline at one k, over every analysed image (possibly of several networks).

    Attributes:
        delta: mean over images of d_i = y_i - mean_j b_ij (equal to mean(y) - mean(b)).
        low, high: its 95 % percentile-bootstrap interval, images resampled (within each network).
        p: the dissertation's Phi(-Delta / sigma) on the pooled values.
        wilcoxon_p: one-sided Wilcoxon signed-rank test of d_i > 0 (NaN when every d_i is 0).
        images: how many images; networks: how many networks; positive_networks: how many of them
            have a positive Delta of their own.
    """

    delta: float
    low: float
    high: float
    p: float
    wilcoxon_p: float
    images: int
    networks: int
    positive_networks: int


def paired_flip_test(increase, baseline, *, strata=None, draws: int = 2000, seed: int = 0) -> PairedFlipTest:
    """Delta of a ranking's loss increases over a baseline's, with its bootstrap interval and both tests.

    Args:
        increase: (n_images,) the loss increase of each image under the ranking's flip.
        baseline: (draws, n_images) the increases of the baseline's random flips of the same images.
        strata: (n_images,) which network read each image (None: one network); the bootstrap
            resamples images within each network and ``positive_networks`` counts networks.
        draws, seed: bootstrap draws and their seed.
    """
    from ..stats import bootstrap_interval

    test = flip_significance(increase, baseline)
    labels = np.zeros(test.n_r, dtype=int) if strata is None else np.asarray(strata)
    if labels.shape != (test.n_r,):
        raise ValueError(f"strata must hold one network label per image, ({test.n_r},), got shape {labels.shape}")
    d = test.differences
    _, low, high = bootstrap_interval(d.size, lambda rows: float(d[rows].mean()), draws=draws, seed=seed, strata=labels)
    groups = np.unique(labels)
    return PairedFlipTest(delta=float(d.mean()), low=low, high=high, p=test.p, wilcoxon_p=test.wilcoxon_p,
                          images=int(d.size), networks=int(groups.size),
                          positive_networks=int(sum(d[labels == g].mean() > 0 for g in groups)))
