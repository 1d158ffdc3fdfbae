"""Re-orthonormalisation of the tangent vectors: the QR step of the Lyapunov algorithm."""

from __future__ import annotations

import torch

__all__ = ["qr_stretch", "random_orthonormal"]


def qr_stretch(vectors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Orthonormalise a batch of tangent vectors and return how much each one was stretched.

    Args:
        vectors: (batch, n, k) columns J_t ... J_s Q_s propagated since the last QR step.

    Returns:
        ``(Q, r)``: Q (batch, n, k) with orthonormal columns spanning the same nested subspaces
        as ``vectors``, and r (batch, k) = |diag(R)| of the thin QR factorisation, the stretch
        factors r_i^t of the dissertation's Eq. (2.7). Signs are dropped: only |R_ii| matters.
    """
    q, r = torch.linalg.qr(vectors, mode="reduced")
    return q, torch.diagonal(r, dim1=-2, dim2=-1).abs()


def random_orthonormal(
    batch: int, n: int, k: int, *, seed: int, dtype: torch.dtype, device: torch.device | str
) -> torch.Tensor:
    """A seeded random orthonormal frame (batch, n, k), the same on every device.

    Drawn on the CPU in float64 from a private generator (no global RNG state is touched), then
    moved: a random start cannot lie inside an invariant coordinate subspace, which an identity
    start can (a constant upper-triangular Jacobian never mixes the columns of I).
    """
    generator = torch.Generator().manual_seed(int(seed))
    gaussian = torch.randn(batch, n, k, generator=generator, dtype=torch.float64)
    q, _ = torch.linalg.qr(gaussian, mode="reduced")
    return q.to(dtype=dtype, device=device)
