"""Moving latents along the loss head, and the latents the head maps to one loss (Eq. 3.7; Figs 3.13–3.15).

The head is affine, T̂ = w·L + b with w (latent,), in standardised target units. Eq. 3.7 writes the
latent shift for a change ΔT of the predicted loss as ΔL = θ⁻¹(ΔT); θ (the head ξ of Eq. 3.5) has no
inverse, and the book uses its pseudo-inverse, the minimum-norm shift

    ΔL = wᵀ ΔT / ‖w‖²,   so that   w·(L + ΔL) + b = T̂ + ΔT  exactly,

which moves every network along the same latent direction w (spec fig-3-13 [R]). The latents with
one predicted loss form the affine hyperplane {L : w·L + b = T*}, a point of it plus null(w), a
(latent − 1)-dimensional space (31 for latent 32; spec fig-3-15 [R]).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .model import AeLLE

__all__ = ["LatentPerturbation", "latent_perturbation", "LossHyperplane", "zero_loss_hyperplane"]


def _latent_matrix(model: AeLLE, latent, name: str = "latent") -> np.ndarray:
    array = np.asarray(latent, dtype=np.float64)
    width = model.config["latent"]
    if array.ndim != 2 or array.shape[1] != width:
        raise ValueError(f"{name}: expected shape (n, {width}) (e.g. model.encode(spectra)), got {array.shape}")
    return array


def _head(model: AeLLE) -> tuple[np.ndarray, float, float]:
    w, b = model.head_weights()
    norm2 = float(w @ w)
    if not norm2 > 0:
        raise ValueError("model: the loss head's weights are all zero, so no latent direction changes the prediction")
    return w, b, norm2


@dataclass(frozen=True)
class LatentPerturbation:
    """Latents shifted for each ΔT of a grid (Fig 3.13) and, on request, decoded (Fig 3.14).

    ``latent`` (n, m) the originals; ``delta_t`` (k,) the grid as given, in ``units``;
    ``delta_t_standardised`` (k,) the same in standardised units; ``direction`` (m,) = w/‖w‖², the
    shift per unit of standardised ΔT; ``perturbed`` (k, n, m); ``base_prediction`` (n,) and
    ``predicted`` (k, n) the head's standardised outputs before and after; ``decoded`` (k, n, L) or None.
    """

    latent: np.ndarray
    delta_t: np.ndarray
    delta_t_standardised: np.ndarray
    units: str
    direction: np.ndarray
    perturbed: np.ndarray
    base_prediction: np.ndarray
    predicted: np.ndarray
    decoded: np.ndarray | None


def latent_perturbation(model: AeLLE, latent, delta_t, *, units: str = "standardised",
                        decode: bool = False) -> LatentPerturbation:
    """Shift latents (n, latent) by ΔL = wᵀΔT/‖w‖² for every ΔT in ``delta_t`` (k,) (Eq. 3.7).

    ``units="standardised"`` reads ΔT in units of the training targets' deviation (the spec's grid
    −2 … 2); ``"loss"`` in loss units (divided by σ_T first). Negative ΔT predicts a lower loss.
    ``decode=True`` also returns ψ(L + ΔL).
    """
    if units not in ("standardised", "loss"):
        raise ValueError(f"units: 'standardised' or 'loss', got {units!r}")
    latent = _latent_matrix(model, latent)
    grid = np.atleast_1d(np.asarray(delta_t, dtype=np.float64))
    if grid.ndim != 1 or not np.isfinite(grid).all():
        raise ValueError(f"delta_t: expected a finite one-dimensional grid, got {delta_t!r}")
    standard = grid / float(model.target_std) if units == "loss" else grid
    w, _, norm2 = _head(model)
    direction = w / norm2
    perturbed = latent[None] + standard[:, None, None] * direction
    flat = perturbed.reshape(-1, latent.shape[1])
    predicted = model.predict_latent(flat, standardised=True).reshape(len(grid), len(latent))
    decoded = model.decode(flat).reshape(len(grid), len(latent), -1) if decode else None
    return LatentPerturbation(latent=latent, delta_t=grid, delta_t_standardised=standard, units=units,
                              direction=direction, perturbed=perturbed,
                              base_prediction=model.predict_latent(latent, standardised=True), predicted=predicted,
                              decoded=decoded)


@dataclass(frozen=True)
class LossHyperplane:
    """Samples of {L : w·L + b = T*}, the latents predicted to have loss ``loss`` (Fig 3.15).

    ``target`` = T* = (loss − μ_T)/σ_T; ``normal`` (m,) = w; ``offset`` (m,) the plane's point the
    samples are centred on; ``basis`` (m, m−1) orthonormal columns spanning null(w); ``scales``
    (m−1,) the standard deviations of the training latents along ``basis``; ``samples`` (s, m);
    ``decoded`` (s, L) or None.
    """

    loss: float
    target: float
    normal: np.ndarray
    offset: np.ndarray
    basis: np.ndarray
    scales: np.ndarray
    samples: np.ndarray
    decoded: np.ndarray | None
    centre: str


def zero_loss_hyperplane(model: AeLLE, train_latent, *, loss: float = 0.0, n_samples: int = 200, seed: int = 0,
                         centre: str = "origin", decode: bool = False) -> LossHyperplane:
    """Sample the latent hyperplane where the head predicts ``loss`` (default 0: the "zero-loss" set).

    Samples are offset + N z, N an orthonormal basis of null(w) (m × (m−1)) and z ~ N(0, diag(s²)),
    s the spread of ``train_latent`` (n, m) along N. ``centre="origin"`` takes the plane's point
    nearest the origin, w(T* − b)/‖w‖² (spec fig-3-15 [R]); ``"data"`` the point nearest the
    training latents' mean (the same plane, the cloud moved to where the networks are).
    """
    if centre not in ("origin", "data"):
        raise ValueError(f"centre: 'origin' or 'data', got {centre!r}")
    if not isinstance(n_samples, (int, np.integer)) or n_samples < 1:
        raise ValueError(f"n_samples: must be a positive integer, got {n_samples!r}")
    latent = _latent_matrix(model, train_latent, "train_latent")
    if len(latent) < 2:
        raise ValueError(f"train_latent: need at least 2 latents to measure their spread, got {len(latent)}")
    w, b, norm2 = _head(model)
    target = float(model.standardise(loss))
    _, _, vt = np.linalg.svd(w[None, :])
    basis = vt[1:].T
    mean = latent.mean(axis=0)
    anchor = mean if centre == "data" else np.zeros_like(mean)
    offset = anchor + w * (target - (w @ anchor + b)) / norm2
    scales = ((latent - mean) @ basis).std(axis=0, ddof=1)
    z = np.random.default_rng(seed).standard_normal((n_samples, basis.shape[1])) * scales
    samples = offset + z @ basis.T
    return LossHyperplane(loss=float(loss), target=target, normal=w, offset=offset, basis=basis, scales=scales,
                          samples=samples, decoded=model.decode(samples) if decode else None, centre=centre)
