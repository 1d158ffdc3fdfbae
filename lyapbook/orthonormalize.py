"""Re-orthonormalisation of the tangent vectors: the QR step of the Lyapunov algorithm.

Conventions. The engine carries a frame Q (batch, n, k) with orthonormal columns. Between QR
steps it is multiplied by step Jacobians, P = J_t ... J_s Q; a QR step factorises P = Q' R'
with R' upper triangular with a **positive diagonal** (so Q' and R' are unique for a full-rank
P), and the columns of Q' stay in QR order (column i spans what column i of P adds to the
columns before it). diag(R') are the stretch factors r_i^t of the dissertation's Eq. (2.7).

LAPACK's Householder QR returns R with diagonal entries of either sign. Rather than flip every
frame at every step, :class:`TangentFrame` keeps the frame LAPACK returned and a sign per
column, D in {-1, +1}^k, with Q_public = Q_internal D; the positive-diagonal Q and R are formed
only when someone asks for them. Since J (Q D) = (J Q) D, the products and the stretches are
the same either way.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import torch

__all__ = ["QRFactors", "TangentFrame", "batched", "cholesky_qr2", "qr_stretch", "random_orthonormal"]

QR_METHODS = ("householder", "cholesky")

# CholeskyQR2 is accurate while the first pass leaves Q1 nearly orthonormal (|Q1^T Q1 - I| ~ cond(P)^2 eps);
# rows whose Q1 is further from orthonormal than this are factorised again with Householder QR.
_CHOLESKY_GUARD = 1e-2


# PyTorch runs a batched LAPACK call (geqrf, ormqr, potrf, ...) on the CPU as a serial loop over
# the batch. A batch of many small frames (an ensemble: networks x sequences) is split into one
# chunk per CPU thread, factorised concurrently (PyTorch releases the GIL inside its operators).
_MIN_CHUNK = 64  # matrices per chunk below which splitting costs more than it saves
_POOL: ThreadPoolExecutor | None = None


def batched(fn: Callable[..., object], *tensors: torch.Tensor) -> object:
    """``fn(*tensors)`` for tensors sharing a leading batch axis, run in CPU-thread-sized chunks.

    ``fn`` must treat batch rows independently and return a tensor or a tuple of tensors.
    """
    global _POOL
    threads = torch.get_num_threads()
    rows = tensors[0].shape[0]
    if tensors[0].device.type != "cpu" or threads < 2 or rows < 2 * _MIN_CHUNK or torch.is_grad_enabled():
        return fn(*tensors)
    if _POOL is None or _POOL._max_workers != threads:
        _POOL = ThreadPoolExecutor(threads, thread_name_prefix="lyapbook-qr")
    chunks = min(threads, rows // _MIN_CHUNK)
    parts = list(_POOL.map(lambda args: fn(*args), zip(*(t.chunk(chunks) for t in tensors))))
    if isinstance(parts[0], torch.Tensor):
        return torch.cat(parts)
    return tuple(torch.cat(column) for column in zip(*parts))


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
    batch: int, n: int, k: int, *, seed: int | None, dtype: torch.dtype, device: torch.device | str
) -> torch.Tensor:
    """A seeded random orthonormal frame (batch, n, k), the same on every device.

    Drawn on the CPU in float64 from a private generator (no global RNG state is touched), then
    moved: a random start cannot lie inside an invariant coordinate subspace, which an identity
    start can (a constant upper-triangular Jacobian never mixes the columns of I). ``seed=None``
    draws from PyTorch's global generator instead (a different frame on every call).
    """
    generator = None if seed is None else torch.Generator().manual_seed(int(seed))
    gaussian = torch.randn(batch, n, k, generator=generator, dtype=torch.float64)
    q, _ = torch.linalg.qr(gaussian, mode="reduced")
    return q.to(dtype=dtype, device=device)


def _positive(q: torch.Tensor, r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Flip column signs of Q and row signs of R so that diag(R) >= 0 (Q R unchanged)."""
    sign = _signs(torch.diagonal(r, dim1=-2, dim2=-1))
    return q * sign.unsqueeze(-2), r * sign.unsqueeze(-1)


def _signs(diagonal: torch.Tensor) -> torch.Tensor:
    """+1 where the entry is positive, -1 where it is negative (a zero keeps its sign bit: R_ii = 0 either way)."""
    return torch.copysign(diagonal.new_ones(()), diagonal)


def cholesky_qr2(vectors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Thin QR of a batch (batch, n, k) by CholeskyQR2, R with a positive diagonal.

    Two passes: R1 = chol(P^T P)^T and Q1 = P R1^-1, then the same on Q1; R = R2 R1
    (Yamamoto et al., 2015). Its work is batched matrix products, Cholesky
    factorisations and triangular solves of k x k matrices, which for many small frames is
    cheaper than Householder QR. It is accurate only while cond(P) is well below
    eps^-1/2 (the Gram matrix squares the condition number): rows where a Cholesky
    factorisation fails, or where the first pass left Q1 further than 1e-2 from orthonormal,
    are factorised again with Householder QR. Exponents from a very ill-conditioned product
    (a large ``t_on`` with spread-out exponents) therefore come from Householder QR either way.
    """
    eye = torch.eye(vectors.shape[-1], dtype=vectors.dtype, device=vectors.device)
    gram = vectors.mT @ vectors
    lower1, info1 = torch.linalg.cholesky_ex(gram)
    q1 = torch.linalg.solve_triangular(lower1.mT, vectors, upper=True, left=False)
    gram2 = q1.mT @ q1
    lower2, info2 = torch.linalg.cholesky_ex(gram2)
    q = torch.linalg.solve_triangular(lower2.mT, q1, upper=True, left=False)
    r = lower2.mT @ lower1.mT
    bad = (info1 != 0) | (info2 != 0) | ~((gram2 - eye).abs().amax(dim=(-2, -1)) <= _CHOLESKY_GUARD)
    if bool(bad.any()):
        q, r = q.clone(), r.clone()
        q[bad], r[bad] = _positive(*torch.linalg.qr(vectors[bad], mode="reduced"))
    return q, r


class QRFactors:
    """One QR step's factorisation P = Q R in the positive-diagonal convention (see the module docstring).

    Attributes:
        stretch: (batch, k) diag(R) = |R_ii| >= 0, the stretch factors, in Q's column order.
        q: (batch, n, k) the new orthonormal frame (formed on first access).
        r: (batch, k, k) upper triangular R with a positive diagonal (formed on first access).
    """

    def __init__(self, stretch, make_q, raw_r, before, after):
        self.stretch = stretch
        self._make_q, self._raw_r, self._before, self._after = make_q, raw_r, before, after
        self._q = None

    @property
    def q(self) -> torch.Tensor:
        if self._q is None:
            q = self._make_q()
            self._q = q if self._after is None else q * self._after.unsqueeze(-2)
        return self._q

    @property
    def r(self) -> torch.Tensor:
        r = self._raw_r().triu()
        if self._after is not None:
            r = r * self._after.unsqueeze(-1)
        if self._before is not None:
            r = r * self._before.unsqueeze(-2)
        return r


class TangentFrame:
    """The orthonormal frame Q (batch, n, k) that the engine carries, and its re-orthonormalisation.

    Args:
        q: the initial frame (batch, n, k), orthonormal columns.
        implicit: keep the frame after a QR step as its Householder reflectors (``torch.geqrf``)
            instead of an explicit Q. The next product J Q is then one blocked ``torch.ormqr``
            call, which skips forming Q (``householder_product``) and the separate J @ Q
            product: about 1.8x cheaper per QR step at n = 256 on a CPU. Only for k = n and a
            formed J.
        qr: ``"householder"`` (LAPACK, via ``torch.linalg.qr``) or ``"cholesky"``
            (:func:`cholesky_qr2`, cheaper for many small frames).
    """

    def __init__(self, q: torch.Tensor, *, implicit: bool = False, qr: str = "householder"):
        if qr not in QR_METHODS:
            raise ValueError(f"qr must be one of {QR_METHODS}, got {qr!r}")
        self._q: torch.Tensor | None = q
        self._reflectors: tuple[torch.Tensor, torch.Tensor] | None = None
        self._sign: torch.Tensor | None = None  # D: Q_public = Q_internal D; None means all +1
        self.implicit = implicit and q.shape[-1] == q.shape[-2] and qr == "householder"
        self.qr = qr

    @property
    def internal(self) -> torch.Tensor:
        """The frame as the engine multiplies it (Q_internal, explicit), (batch, n, k)."""
        if self._q is None:
            self._q = batched(torch.linalg.householder_product, *self._reflectors)
            self._reflectors = None
        return self._q

    @property
    def sign(self) -> torch.Tensor | None:
        """D (batch, k), with Q_public = Q_internal D; ``None`` while it is all +1."""
        return self._sign

    def multiply(self, jac: torch.Tensor) -> None:
        """Q <- jac Q for a formed jac (batch, n, n) (the engine passes J, or J^T)."""
        if self._reflectors is not None:
            self._q = batched(lambda a, tau, j: torch.ormqr(a, tau, j, left=False), *self._reflectors, jac)
            self._reflectors = None
        else:
            self._q = jac @ self._q

    def replace(self, product: torch.Tensor) -> None:
        """Q <- product, the frame after a matrix-free step (``step_with_tangent(..., self.internal)``)."""
        self._q, self._reflectors = product, None

    def propagated(self) -> torch.Tensor:
        """The products since the last QR step in the public convention, J ... J Q_public, (batch, n, k)."""
        product = self.internal
        return product if self._sign is None else product * self._sign.unsqueeze(-2)

    def reorthonormalize(self) -> QRFactors:
        """Factorise the propagated frame and keep its Q; return the step's :class:`QRFactors`."""
        before = self._sign
        if self.implicit:
            a, tau = batched(torch.geqrf, self.internal)
            self._reflectors, self._q = (a, tau), None
            diagonal = torch.diagonal(a, dim1=-2, dim2=-1)
            make_q = lambda: torch.linalg.householder_product(a, tau)  # noqa: E731
            raw_r = lambda: a  # noqa: E731
        else:
            if self.qr == "cholesky":
                q, r = batched(cholesky_qr2, self.internal)
            else:
                q, r = batched(torch.linalg.qr, self.internal)
            self._q = q
            diagonal = torch.diagonal(r, dim1=-2, dim2=-1)
            make_q = lambda: q  # noqa: E731
            raw_r = lambda: r  # noqa: E731
        signs = _signs(diagonal.detach())
        after = signs if before is None else signs * before
        self._sign = after
        return QRFactors(diagonal.abs(), make_q, raw_r, before, after)

    def matrix(self) -> torch.Tensor:
        """The current frame in the public convention (batch, n, k)."""
        return self.propagated()
