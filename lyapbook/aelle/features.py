"""Hand-made summaries beside AeLLE: the features of Fig 3.5 and the composition of Table D5.

Fig 3.5 marks four features on a spectrum without defining them; the book's definitions (spec
fig-3-5 [R]), with the index normalised to x_i = i/N (i = 1 … N, exponents in descending order):

* max = λ_1; #>0 = the number of λ_i > 0;
* initial slope = least-squares slope of λ against x over the first ``fraction`` (10 %) of the
  indices, final slope = the same over the last 10 % (at least two points each).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import stats
from .metrics import _float_vector

__all__ = ["SpectrumFeatures", "spectrum_features", "SideComposition", "side_composition"]


@dataclass(frozen=True)
class SpectrumFeatures:
    """Per-spectrum features, each (n,) (or scalars for one spectrum); ``window`` = points per slope."""

    max: np.ndarray
    n_positive: np.ndarray
    initial_slope: np.ndarray
    final_slope: np.ndarray
    window: int


def _slope(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Least-squares slopes of y (..., w) against x (w,)."""
    xc = x - x.mean()
    return (y - y.mean(axis=-1, keepdims=True)) @ xc / (xc @ xc)


def spectrum_features(spectra, fraction: float = 0.1) -> SpectrumFeatures:
    """The four features of Fig 3.5 for spectra (..., N) (module docstring for definitions).

    The spectra are sorted into descending order first, as :mod:`lyapbook.stats` does. Slopes are in
    exponent units per unit of normalised index (a spectrum falling by 1 over its whole length has
    slope −1).
    """
    values = stats._sorted(spectra)
    n = values.shape[-1]
    if not 0 < fraction <= 0.5:
        raise ValueError(f"fraction: must lie in (0, 0.5], got {fraction}")
    if n < 2:
        raise ValueError(f"spectra: slopes need at least 2 exponents, got {n}")
    window = max(2, int(np.ceil(fraction * n)))
    x = np.arange(1, n + 1) / n
    return SpectrumFeatures(max=stats.max_exponent(values), n_positive=stats.count_positive(values),
                            initial_slope=_slope(x[:window], values[..., :window]),
                            final_slope=_slope(x[-window:], values[..., -window:]), window=window)


@dataclass(frozen=True)
class SideComposition:
    """Who lies right of a boundary on a score (Table D5), per group (e.g. architecture).

    ``groups`` (g,) the labels; ``right`` and ``total`` (g,) counts; ``composition`` (g,) =
    right / right.sum() (sums to 1: the dissertation's columns); ``fraction_right`` (g,) =
    right / total (the share of each group on the right); ``boundary`` the cut.
    """

    groups: np.ndarray
    right: np.ndarray
    total: np.ndarray
    composition: np.ndarray
    fraction_right: np.ndarray
    boundary: float

    def as_frame(self):
        import pandas as pd

        return pd.DataFrame({"group": self.groups, "right": self.right, "total": self.total,
                             "composition": self.composition, "fraction_right": self.fraction_right})


def side_composition(score, groups, boundary: str | float = "median") -> SideComposition:
    """Composition of the region ``score > boundary`` (Table D5) and each group's fraction inside it.

    ``score`` (n,) is e.g. AeLLE-PC1 oriented good-right; ``groups`` (n,) the architecture of each
    network; ``boundary`` "median", "mean" or a number. Table D5 prints the composition (its columns
    sum to 100 %); the per-group fraction is the easier number to read, so both are returned.
    """
    values = _float_vector(score, "score")
    labels = np.asarray(groups)
    if labels.shape != values.shape:
        raise ValueError(f"groups: expected one label per score, shape {values.shape}, got {labels.shape}")
    if isinstance(boundary, str):
        if boundary not in ("median", "mean"):
            raise ValueError(f"boundary: 'median', 'mean' or a number, got {boundary!r}")
        cut = float(np.median(values) if boundary == "median" else values.mean())
    else:
        cut = float(boundary)
    names, codes = np.unique(labels, return_inverse=True)
    right = np.bincount(codes, weights=values > cut, minlength=len(names)).astype(int)
    total = np.bincount(codes, minlength=len(names))
    composition = right / right.sum() if right.sum() else np.full(len(names), np.nan)
    return SideComposition(groups=names, right=right, total=total, composition=composition,
                           fraction_right=right / total, boundary=cut)
