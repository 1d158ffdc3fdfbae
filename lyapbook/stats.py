"""Classical summaries of a Lyapunov spectrum (dissertation §1, Eqs. 1.9-1.12).

Every function takes spectra as an array or tensor (..., k) whose last axis holds exponents,
sorts that axis in descending order itself, and returns a numpy array of shape (...) (a
numpy scalar for a single spectrum).
"""

from __future__ import annotations

from statistics import NormalDist

import numpy as np
import torch

__all__ = ["max_exponent", "mean_exponent", "exponent_variance", "kaplan_yorke_dimension", "count_positive", "summary",
           "correlation", "partial_correlation", "rank_correlation", "partial_rank_correlation", "relations",
           "bootstrap_se", "bootstrap_interval", "holm"]


def _sorted(spectrum: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(spectrum, torch.Tensor):
        spectrum = spectrum.detach().cpu().numpy()
    values = np.asarray(spectrum, dtype=np.float64)
    if values.ndim == 0 or values.shape[-1] == 0:
        raise ValueError(f"spectrum must have at least one exponent on its last axis, got shape {values.shape}")
    return -np.sort(-values, axis=-1)


def max_exponent(spectrum: np.ndarray | torch.Tensor) -> np.ndarray:
    """lambda_1: the linear stability of the dynamics; perturbations grow like exp(lambda_1 t)."""
    return _sorted(spectrum)[..., 0]


def mean_exponent(spectrum: np.ndarray | torch.Tensor) -> np.ndarray:
    """(1/n) sum_i lambda_i: the mean rate of n-volume growth (log of R_V per unit time, Eq. 1.12)."""
    return _sorted(spectrum).mean(axis=-1)


def exponent_variance(spectrum: np.ndarray | torch.Tensor) -> np.ndarray:
    """Variance of the exponents: how unevenly directions stretch and contract."""
    return _sorted(spectrum).var(axis=-1)


def count_positive(spectrum: np.ndarray | torch.Tensor, tol: float = 0.0) -> np.ndarray:
    """Number of exponents above ``tol``: the number of unstable directions."""
    return (_sorted(spectrum) > tol).sum(axis=-1)


def kaplan_yorke_dimension(spectrum: np.ndarray | torch.Tensor) -> np.ndarray:
    """Kaplan-Yorke (Lyapunov) dimension, Eqs. (1.10)-(1.11).

    With partial sums S_j = lambda_1 + ... + lambda_j and j the largest index with S_j >= 0,
    D = j + S_j / |lambda_{j+1}|. D = 0 when lambda_1 < 0 (a stable fixed point) and D = k when
    every partial sum is non-negative (no contracting volume among the k exponents given).
    """
    values = _sorted(spectrum)
    partial = np.cumsum(values, axis=-1)
    k = values.shape[-1]
    j = (partial >= 0).sum(axis=-1)  # partial sums decrease once they turn negative
    j_clipped = np.clip(j, 1, k - 1) if k > 1 else np.zeros_like(j)
    s_j = np.take_along_axis(partial, (j_clipped - 1)[..., None], axis=-1)[..., 0]
    next_value = np.take_along_axis(values, j_clipped[..., None], axis=-1)[..., 0]
    interior = j + s_j / np.abs(next_value)
    return np.where(j == 0, 0.0, np.where(j >= k, float(k), interior))


def summary(spectrum: np.ndarray | torch.Tensor) -> dict[str, np.ndarray]:
    """All of the above, keyed by name."""
    return {
        "max": max_exponent(spectrum),
        "mean": mean_exponent(spectrum),
        "sum": _sorted(spectrum).sum(axis=-1),
        "variance": exponent_variance(spectrum),
        "positive": count_positive(spectrum),
        "kaplan_yorke": kaplan_yorke_dimension(spectrum),
    }


def _fisher_interval(r: float, n_effective: int, level: float, variance: float = 1.0) -> tuple[float, float]:
    """The ``level`` interval of a correlation from Fisher's z with standard error sqrt(variance / n_effective)
    (variance 1 for Pearson's r; 1.06 for Spearman's rho, Fieller, Hartley and Pearson 1957)."""
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    half_width = NormalDist().inv_cdf(0.5 + level / 2) * np.sqrt(variance / n_effective)
    z = np.arctanh(np.clip(r, -1 + 1e-15, 1 - 1e-15))
    return float(np.tanh(z - half_width)), float(np.tanh(z + half_width))


def _paired(x, y) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(x, dtype=float).ravel(), np.asarray(y, dtype=float).ravel()
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same length, got {len(x)} and {len(y)}")
    return x, y


def correlation(x, y, level: float = 0.95) -> tuple[float, float, float]:
    """Pearson's r between two samples (n,) and its ``level`` confidence interval (Fisher's z).

    Returns (r, low, high). The interval assumes roughly bivariate-normal samples; it needs
    n >= 4 and is wide for small n, which is the point of reporting it.
    """
    x, y = _paired(x, y)
    if len(x) < 4:
        raise ValueError(f"a confidence interval for r needs at least 4 pairs, got {len(x)}")
    r = float(np.corrcoef(x, y)[0, 1])
    return (r, *_fisher_interval(r, len(x) - 3, level))


def partial_correlation(x, y, covariates, level: float = 0.95) -> tuple[float, float, float]:
    """Pearson's r between x and y (n,) after removing what ``covariates`` explain linearly.

    Both samples are regressed on an intercept and the covariates (n,) or (n, c) by least
    squares, and r is taken between the residuals. This answers "does x go with y among
    networks that share the same swept hyperparameters?": a raw correlation that only reflects
    a hyperparameter driving both x and y drops to about zero here. The interval is Fisher's,
    with n - 3 - c degrees of freedom (needs n >= c + 4). Where the covariates explain x or y
    completely (a residual without variance, as in some bootstrap resamples) r is NaN, which
    :func:`bootstrap_interval` leaves out.

    Returns (r, low, high).
    """
    x, y = _paired(x, y)
    z = np.asarray(covariates, dtype=float)
    z = z.reshape(len(z), -1) if z.ndim else z.reshape(1, 1)
    if z.shape[0] != len(x):
        raise ValueError(f"covariates must have one row per pair ({len(x)}), got shape {z.shape}")
    if not np.all(np.isfinite(z)) or not np.all(np.isfinite(x)) or not np.all(np.isfinite(y)):
        raise ValueError("x, y and covariates must be finite")
    count = z.shape[1]
    if len(x) < count + 4:
        raise ValueError(f"a partial correlation with {count} covariate(s) needs at least {count + 4} pairs, got {len(x)}")
    design = np.column_stack([np.ones(len(x)), z])
    residuals = [v - design @ np.linalg.lstsq(design, v, rcond=None)[0] for v in (x, y)]
    with np.errstate(invalid="ignore", divide="ignore"):  # a residual without variance: r is NaN
        r = float(np.corrcoef(*residuals)[0, 1])
    return (r, *_fisher_interval(r, len(x) - 3 - count, level))


def _ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n of each column (ties get their mean rank)."""
    from scipy.stats import rankdata

    return rankdata(values, axis=0)


def rank_correlation(x, y, level: float = 0.95) -> tuple[float, float, float]:
    """Spearman's rho between two samples (n,) and its ``level`` interval (Fisher's z, variance 1.06/(n-3)).

    Pearson's r on the ranks: it measures a monotone association and is not carried by a few
    outliers, which is why every claim resting on a correlation shows it beside Pearson's.
    Returns (rho, low, high); needs n >= 4.
    """
    x, y = _paired(x, y)
    if len(x) < 4:
        raise ValueError(f"a confidence interval for rho needs at least 4 pairs, got {len(x)}")
    rho = float(np.corrcoef(_ranks(x), _ranks(y))[0, 1])
    return (rho, *_fisher_interval(rho, len(x) - 3, level, variance=1.06))


def partial_rank_correlation(x, y, covariates, level: float = 0.95) -> tuple[float, float, float]:
    """Spearman's partial rho: :func:`partial_correlation` on the ranks of x, y and each covariate,
    with the Fisher interval of :func:`rank_correlation` (n - 3 - c degrees of freedom)."""
    x, y = _paired(x, y)
    z = np.asarray(covariates, dtype=float)
    z = z.reshape(len(z), -1) if z.ndim else z.reshape(1, 1)
    r, _, _ = partial_correlation(_ranks(x), _ranks(y), _ranks(z), level)
    return (r, *_fisher_interval(r, len(x) - 3 - z.shape[1], level, variance=1.06))


def bootstrap_interval(n_rows: int, statistic, *, draws: int = 2000, seed: int = 0,
                       level: float = 0.95, strata=None) -> tuple[float, float, float]:
    """(estimate, low, high): ``statistic(rows)`` on all rows and its percentile bootstrap interval.

    ``statistic`` receives an integer index array into the n_rows units being resampled (networks,
    sequences), with repeats, and returns a number; draws where it is not finite are left out.
    ``strata``: (n_rows,) labels (e.g. which network an image was read by); each draw then resamples
    the rows of every stratum within it, so each stratum keeps its size.
    """
    if n_rows < 2:
        raise ValueError(f"n_rows must be at least 2 to resample, got {n_rows}")
    rng = np.random.default_rng(seed)
    if strata is None:
        resample = lambda: rng.integers(0, n_rows, n_rows)  # noqa: E731
    else:
        labels = np.asarray(strata)
        if labels.shape != (n_rows,):
            raise ValueError(f"strata must hold one label per row, ({n_rows},), got shape {labels.shape}")
        groups = [np.flatnonzero(labels == g) for g in np.unique(labels)]
        resample = lambda: np.concatenate([g[rng.integers(0, g.size, g.size)] for g in groups])  # noqa: E731
    values = np.array([statistic(resample()) for _ in range(draws)], dtype=float)
    values = values[np.isfinite(values)]
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(values, [tail, 100 - tail]) if values.size else (np.nan, np.nan)
    return float(statistic(np.arange(n_rows))), float(low), float(high)


def holm(pvalues) -> np.ndarray:
    """Holm's step-down adjustment of a family of p-values (m,): each adjusted p controls the
    family-wise error at its level when the m tests are judged together (any dependence)."""
    p = np.asarray(pvalues, dtype=float).ravel()
    order = np.argsort(p)
    adjusted = np.empty_like(p)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(p) - rank) * p[index]))
        adjusted[index] = running
    return adjusted


def relations(frame, statistics: dict[str, str], target: str, covariates: list[str], level: float = 0.95):
    """Raw and partial correlations of several columns of ``frame`` with ``target``, as a table.

    Args:
        frame: a pandas DataFrame, one row per observation (network, or network and epoch).
        statistics: {column: label} of the columns to correlate with ``target``.
        target: the column they are correlated with (e.g. validation loss).
        covariates: columns held fixed in the partial correlation (the swept hyperparameters).

    Returns:
        A DataFrame with one row per statistic: ``statistic``, ``n``, ``r``, ``r low``,
        ``r high`` (Pearson with Fisher interval), ``partial r``, ``partial low``,
        ``partial high`` (given ``covariates``; see :func:`partial_correlation`), and the same
        on ranks: ``rho``, ``rho low``, ``rho high``, ``partial rho``, ``partial rho low``,
        ``partial rho high`` (:func:`rank_correlation`, :func:`partial_rank_correlation`).
    """
    import pandas as pd

    rows = []
    for column, label in statistics.items():
        x, y, z = frame[column], frame[target], frame[covariates].to_numpy()
        r, low, high = correlation(x, y, level)
        partial = partial_correlation(x, y, z, level)
        rho = rank_correlation(x, y, level)
        partial_rho = partial_rank_correlation(x, y, z, level)
        rows.append({"statistic": label, "n": len(frame), "r": r, "r low": low, "r high": high,
                     "partial r": partial[0], "partial low": partial[1], "partial high": partial[2],
                     "rho": rho[0], "rho low": rho[1], "rho high": rho[2], "partial rho": partial_rho[0],
                     "partial rho low": partial_rho[1], "partial rho high": partial_rho[2]})
    return pd.DataFrame(rows)


def bootstrap_se(values, statistic=np.median, *, draws: int = 2000, seed: int = 0) -> float:
    """The standard error of ``statistic(values)`` by the bootstrap: the spread of the statistic
    over ``draws`` resamples of ``values`` (n,) with replacement (seeded, so reproducible)."""
    values = np.asarray(values, dtype=float).ravel()
    if len(values) < 2 or not np.all(np.isfinite(values)):
        raise ValueError(f"values must hold at least 2 finite numbers, got {values!r}")
    rows = np.random.default_rng(seed).integers(0, len(values), size=(draws, len(values)))
    return float(np.std([statistic(values[r]) for r in rows], ddof=1))
