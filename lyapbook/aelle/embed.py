"""The embedding: exact, centred PCA with every component's sign fixed by the labels (spec §1.4).

AeLLE is the PCA of the autoencoder's latents (dissertation ch. 3, L672); LE-PCA is the same on the
raw interpolated spectra. The basis is fitted once on the training split (its mean, its SVD) and
reused for every other split and epoch. PCA signs are arbitrary, and the dissertation's figures use
both orientations; here every component is flipped so that the high-accuracy class has the larger
mean score on the fitting set: "good to the right" on PC1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .metrics import _bool_vector

__all__ = ["PCAEmbedding", "fit_pca"]


def _matrix(values, name: str) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 2:
        raise ValueError(f"{name}: expected a matrix (n samples, features), got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name}: contains NaN or infinite values; drop those networks first (see prepare_spectra)")
    return array


@dataclass(frozen=True)
class PCAEmbedding:
    """A fitted PCA: ``scores = (x - mean) @ components.T``.

    ``mean`` (features,); ``components`` (k, features) orthonormal rows, k = min(n, features), in
    decreasing order of ``explained_variance`` (k,) (variance of the fitting scores, ddof = 1);
    ``signs`` (k,) are the flips applied to the raw SVD directions (+1 or −1); ``oriented`` (k,)
    says whether a component's sign was set by the class means (False: the class means were equal,
    or no labels were given, and the sign follows the largest-loading-positive convention).
    """

    mean: np.ndarray
    components: np.ndarray
    explained_variance: np.ndarray
    signs: np.ndarray
    oriented: np.ndarray

    @property
    def explained_variance_ratio(self) -> np.ndarray:
        total = self.explained_variance.sum()
        return self.explained_variance / total if total > 0 else np.zeros_like(self.explained_variance)

    def transform(self, x, n_components: int | None = None) -> np.ndarray:
        """Scores (n, k) (or the first ``n_components`` columns) of samples x (n, features)."""
        x = _matrix(x, "x")
        if x.shape[1] != self.mean.shape[0]:
            raise ValueError(f"x: expected {self.mean.shape[0]} features (the fitted dimension), got {x.shape[1]}")
        return (x - self.mean) @ self.components[:n_components].T

    def inverse_transform(self, scores) -> np.ndarray:
        """Points (n, features) with the given scores (n, j) on the first j components (others at the mean)."""
        scores = _matrix(scores, "scores")
        return self.mean + scores @ self.components[: scores.shape[1]]


def fit_pca(x, good=None) -> PCAEmbedding:
    """Exact centred PCA (SVD) of training samples x (n, features), all min(n, features) components kept.

    With ``good`` (n,) (high-accuracy labels of the same samples) every component is oriented so
    that the good samples have the larger mean score; without, and for components whose class means
    tie, the largest-magnitude loading is made positive (a deterministic convention only).
    """
    x = _matrix(x, "x")
    if x.shape[0] < 2:
        raise ValueError(f"x: PCA needs at least 2 samples, got {x.shape[0]}")
    mean = x.mean(axis=0)
    _, singular, vt = np.linalg.svd(x - mean, full_matrices=False)
    largest = np.abs(vt).argmax(axis=1)
    signs = np.sign(vt[np.arange(len(vt)), largest])
    vt = vt * signs[:, None]
    oriented = np.zeros(len(vt), dtype=bool)
    if good is not None:
        labels = _bool_vector(good, "good")
        if labels.shape != (x.shape[0],):
            raise ValueError(f"good: expected one label per sample, shape ({x.shape[0]},), got {labels.shape}")
        if labels.all() or not labels.any():
            raise ValueError(f"good: orienting PCs needs both classes, got {int(labels.sum())} good of {len(labels)}")
        scores = (x - mean) @ vt.T
        gap = scores[labels].mean(axis=0) - scores[~labels].mean(axis=0)
        # a gap at rounding level (a component with ~zero variance) says nothing about the classes
        oriented = np.abs(gap) > 1e-12 * max(1.0, float(np.abs(scores).max()))
        flip = np.where(oriented & (gap < 0), -1.0, 1.0)
        vt, signs = vt * flip[:, None], signs * flip
    variance = singular**2 / (x.shape[0] - 1)
    return PCAEmbedding(mean=mean, components=vt, explained_variance=variance, signs=signs, oriented=oriented)
