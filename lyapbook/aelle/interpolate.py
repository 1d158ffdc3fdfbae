"""Spectra to a common length (dissertation ch. 3, Appendix A: "linear interpolation to ... 1024").

Networks of different hidden sizes have spectra of different lengths N; the autoencoder needs one
input length L. Two rules, which agree wherever both apply:

* **Midpoint rule** (the original code's, for L / N a power of two): each doubling turns
  λ_1 ≥ … ≥ λ_N into [λ_1, (λ_1+λ_2)/2, λ_2, …, λ_N, λ_N − (λ_{N−1} − λ_N)/2]: midpoints between
  neighbours, and one value past the end extrapolated with the last half-difference.
* **Linear rule** (any ratio): output j (0-based) reads the spectrum at the fractional index
  p_j = j·N/L, i.e. at normalised position j/L on the grid i/N, with ``np.interp``; positions past
  the last exponent (p_j > N − 1) continue the last segment's straight line instead of
  ``np.interp``'s flat clamp. Repeated doubling is exactly this (each inserted midpoint sits at a
  half-integer index, the extrapolated end continues the last slope), so both rules give the same
  numbers for power-of-two ratios, and both are exact on spectra that are linear in the index.

Non-finite spectra (a diverged network) are rejected and counted, never replaced: the original
code duplicated random valid rows in their place, which silently changes the data set.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["interpolate_spectrum", "PreparedSpectra", "prepare_spectra"]


def _as_array(spectrum) -> np.ndarray:
    if isinstance(spectrum, torch.Tensor):
        spectrum = spectrum.detach().cpu().numpy()
    return np.asarray(spectrum, dtype=np.float64)


def _doubling_count(n: int, length: int) -> int | None:
    """log2(length / n) when that is a non-negative integer, else None."""
    if length % n:
        return None
    ratio = length // n
    return ratio.bit_length() - 1 if ratio & (ratio - 1) == 0 else None


def _midpoint_double(values: np.ndarray) -> np.ndarray:
    """One doubling of the midpoint rule along the last axis: (..., N) -> (..., 2N)."""
    n = values.shape[-1]
    out = np.empty(values.shape[:-1] + (2 * n,), dtype=values.dtype)
    out[..., 0::2] = values
    out[..., 1:-1:2] = 0.5 * (values[..., :-1] + values[..., 1:])
    last_step = values[..., -2] - values[..., -1] if n > 1 else np.zeros_like(values[..., -1])
    out[..., -1] = values[..., -1] - 0.5 * last_step
    return out


def _linear_rule(values: np.ndarray, length: int) -> np.ndarray:
    """Read (..., N) spectra at fractional indices j·N/length, extending the last segment past the end."""
    n = values.shape[-1]
    positions = np.arange(length) * (n / length)
    flat = values.reshape(-1, n)
    out = np.stack([np.interp(positions, np.arange(n), row) for row in flat])
    if n > 1:
        beyond = positions > n - 1
        slope = flat[:, -1] - flat[:, -2]
        out[:, beyond] = flat[:, -1:] + slope[:, None] * (positions[beyond] - (n - 1))
    return out.reshape(values.shape[:-1] + (length,))


def interpolate_spectrum(spectrum, length: int, *, rule: str = "auto") -> np.ndarray:
    """Spectra (..., N) resampled to (..., ``length``), float64.

    ``rule="auto"`` uses the midpoint rule when ``length / N`` is a power of two (1 returns a copy)
    and the linear rule otherwise (module docstring); ``"midpoint"`` insists on the first (a
    ``ValueError`` for other ratios) and ``"linear"`` forces the second. The order of the exponents
    is kept as given (descending, as the engine returns them); units are unchanged. A length-1
    spectrum becomes constant. ``length < N`` is allowed with the linear rule (it subsamples).
    """
    values = _as_array(spectrum)
    if values.ndim == 0 or values.shape[-1] == 0:
        raise ValueError(f"spectrum: needs at least one exponent on its last axis, got shape {values.shape}")
    if not isinstance(length, (int, np.integer)) or length < 1:
        raise ValueError(f"length: must be a positive integer, got {length!r}")
    if rule not in ("auto", "midpoint", "linear"):
        raise ValueError(f"rule: unknown {rule!r}; choose 'auto', 'midpoint' or 'linear'")
    doublings = _doubling_count(values.shape[-1], int(length))
    if rule == "midpoint" and doublings is None:
        raise ValueError(f"rule='midpoint' needs length / N to be a power of two, got N = {values.shape[-1]} and "
                         f"length = {length}; use rule='auto' or 'linear' for other ratios")
    if rule == "linear" or doublings is None:
        return _linear_rule(values, int(length))
    out = values.copy()
    for _ in range(doublings):
        out = _midpoint_double(out)
    return out


@dataclass
class PreparedSpectra:
    """Finite spectra at one common length, and a record of what was left out.

    ``spectra`` (n_kept, length) float64; ``kept`` (n_kept,) and ``rejected`` (n_rejected,) are
    indices into the input list, so per-network tables (losses, architectures) are aligned with
    ``table[kept]``. ``original_lengths`` (n_input,) keeps every input's N.
    """

    spectra: np.ndarray
    kept: np.ndarray
    rejected: np.ndarray
    original_lengths: np.ndarray
    length: int

    @property
    def n_rejected(self) -> int:
        return int(len(self.rejected))


def prepare_spectra(spectra: Sequence | np.ndarray, length: int | None = None, *, rule: str = "auto") -> PreparedSpectra:
    """Reject non-finite spectra, then bring the rest to one length (the AeLLE input, §1.2 of the spec).

    ``spectra`` is an (n, N) array or a sequence of n one-dimensional spectra, possibly of different
    lengths (networks of several hidden sizes), e.g. a zoo frame's ``spectrum`` column. With
    ``length=None`` all spectra must share one length; otherwise each is resampled by
    :func:`interpolate_spectrum` with ``rule``. A spectrum
    holding NaN or ±inf is not used: its index goes to ``rejected`` (and its length is still
    recorded), so the caller can report how many networks were excluded.
    """
    if length is not None and (not isinstance(length, (int, np.integer)) or length < 1):
        raise ValueError(f"length: must be a positive integer or None, got {length!r}")
    if rule not in ("auto", "midpoint", "linear"):
        raise ValueError(f"rule: unknown {rule!r}; choose 'auto', 'midpoint' or 'linear'")
    # an object array (a frame column's .to_numpy()) holds spectra of possibly different lengths
    if isinstance(spectra, torch.Tensor) or (isinstance(spectra, np.ndarray) and spectra.dtype != object):
        array = _as_array(spectra)
        if array.ndim != 2:
            raise ValueError(f"spectra: an array must have shape (n, N), got {array.shape}; pass a list of "
                             f"one-dimensional spectra when their lengths differ")
        rows = list(array)
    else:
        rows = [_as_array(s) for s in spectra]
    if not rows:
        raise ValueError("spectra: got none; pass an (n, N) array or a list of one-dimensional spectra")
    bad_shape = [i for i, r in enumerate(rows) if r.ndim != 1 or r.size == 0]
    if bad_shape:
        raise ValueError(f"spectra: every spectrum must be one-dimensional and non-empty; rows {bad_shape[:5]} are not "
                         f"(shapes {[rows[i].shape for i in bad_shape[:5]]})")
    lengths = np.array([r.size for r in rows])
    if length is None and len(set(lengths.tolist())) > 1:
        raise ValueError(f"spectra: lengths differ ({sorted(set(lengths.tolist()))}) and length=None; pass "
                         f"length=... (e.g. {int(lengths.max())}) to interpolate them to a common length")
    target = int(lengths[0]) if length is None else int(length)
    finite = np.array([bool(np.isfinite(r).all()) for r in rows])
    kept, rejected = np.flatnonzero(finite), np.flatnonzero(~finite)
    out = np.empty((len(kept), target))
    for row, index in enumerate(kept):
        out[row] = interpolate_spectrum(rows[index], target, rule=rule)
    return PreparedSpectra(spectra=out, kept=kept, rejected=rejected, original_lengths=lengths, length=target)
