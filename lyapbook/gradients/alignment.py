"""Alignment of the Q vectors with the singular vectors of Delta V (Eq. 4.15, Figs 4.1, 4.2, C2).

    [A_t]_{ij} = q_{t,i}^T e_{t,j}                                              (Eq. 4.15)

the signed cosine between Q vector i and right singular vector j of Delta V_t, both unit vectors in
h_{t-1} space. Q_t is the frame after the QR step of step t, Delta V_t the gradient of the
prediction after t inputs: the same step index t pairs them.

**The rank bound.** Delta V_t = sum_{r<=t} diag(phi'(a_r)) grad_{h_r} L_t h_{r-1}^T is a sum of t
outer products, so its rank is at most min(t, N): at step t only the first min(t, N) right
singular vectors span its row space (the span of h_0 ... h_{t-1} it acts on); the others are an
arbitrary orthonormal basis of the null space, chosen by the SVD routine. Give
``singular_vector_index(..., steps=T)`` to select singular vectors counted inside the range at
every step (the masked entries are NaN and every statistic here leaves them out).

Layout: the engine returns Q as (batch, T, N, k); Delta V and its SVD are (T, batch, ...). Give
:func:`alignment` the same leading axes, e.g. ``alignment(q.transpose(0, 1), svd.vh)`` for
A (T, batch, k, N). Index sets follow spec §3.5: ten first, ten last and ten random Q vectors
drawn (seeded) from indices 10 ... N-11, which is what the dissertation's caption says; the
original code drew from 5 ... N-6 (``exclude=5`` reproduces it).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = [
    "AlignmentDistribution", "AlignmentStdMap", "QIndexSets", "alignment", "alignment_distribution", "alignment_std_map",
    "nan_std", "q_index_sets", "range_rank", "singular_vector_index",
]


def alignment(q: torch.Tensor, right_vectors: torch.Tensor) -> torch.Tensor:
    """Eq. (4.15): A = Q^T E^T for every leading index.

    Args:
        q: (..., N, k) Q vectors as columns (the engine's layout of one step).
        right_vectors: (..., S, N) right singular vectors as rows (``GradientSVD.vh``), same leading axes.

    Returns:
        (..., k, S): [..., i, j] = q_i . e_j, in [-1, 1].
    """
    if q.ndim < 2 or right_vectors.ndim < 2:
        raise ValueError(f"q (..., N, k) and right_vectors (..., S, N) need at least 2 axes, "
                         f"got {tuple(q.shape)}, {tuple(right_vectors.shape)}")
    if q.shape[:-2] != right_vectors.shape[:-2]:
        raise ValueError(
            f"q and right_vectors must have the same leading axes, got {tuple(q.shape[:-2])} and {tuple(right_vectors.shape[:-2])}; "
            "the engine's Q is (batch, T, N, k) and Delta V's SVD is (T, batch, N, N): pass q.transpose(0, 1)"
        )
    if q.shape[-2] != right_vectors.shape[-1]:
        raise ValueError(f"q's vectors have dimension {q.shape[-2]} but right_vectors' have {right_vectors.shape[-1]}; "
                         "right_vectors holds the vectors as rows (vh)")
    return q.mT @ right_vectors.to(q.dtype).mT


@dataclass(frozen=True)
class QIndexSets:
    """0-based Q-vector indices: ``first`` (0 ... size-1), ``last`` (N-size ... N-1), ``random`` (sorted)."""

    first: torch.Tensor
    last: torch.Tensor
    random: torch.Tensor

    def as_dict(self) -> dict[str, torch.Tensor]:
        return {"first": self.first, "last": self.last, "random": self.random}


def q_index_sets(n: int, size: int = 10, *, exclude: int | None = None, seed: int = 0) -> QIndexSets:
    """The three sets of Q vectors of Fig. 4.1: first ``size``, last ``size``, ``size`` at random.

    The random set is drawn without replacement from indices ``exclude`` ... n - 1 - exclude by a
    private generator seeded with ``seed`` (no global random state is touched). ``exclude`` defaults
    to ``size`` (the caption: "not including the first or last ten").
    """
    exclude = size if exclude is None else exclude
    for name, value in (("n", n), ("size", size), ("exclude", exclude), ("seed", seed)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if size < 1 or exclude < 0 or n - 2 * exclude < size or 2 * size > n:
        raise ValueError(f"cannot draw {size} random Q vectors from indices {exclude} ... {n - 1 - exclude} of N = {n} "
                         f"(needs n >= 2 * size and n - 2 * exclude >= size); lower size or exclude")
    generator = torch.Generator().manual_seed(seed)
    random = torch.randperm(n - 2 * exclude, generator=generator)[:size] + exclude
    return QIndexSets(first=torch.arange(size), last=torch.arange(n - size, n), random=random.sort().values)


def range_rank(steps: int, n: int) -> torch.Tensor:
    """(T,) min(t, N) for t = 1 ... T: the bound on the rank of Delta V_t (a sum of t outer products)."""
    return torch.arange(1, steps + 1).clamp_max(n)


def singular_vector_index(n: int, count: int = 5, which: str = "first", *, steps: int | None = None) -> torch.Tensor:
    """0-based indices of the ``count`` largest (``"first"``, Fig. 4.1) or smallest (``"last"``, Fig. C2) singular vectors.

    With ``steps=T`` the indices are counted inside the range of Delta V_t at every step (see the
    rank bound above): (T, count), ``"first"`` the leading ``count`` of the min(t, N) range vectors,
    ``"last"`` the trailing ``count`` of them, -1 where fewer exist (masked). Without it, (count,)
    fixed indices as the dissertation used them, null-space vectors included.
    """
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= n:
        raise ValueError(f"count must be an int in [1, {n}], got {count!r}")
    if which not in ("first", "last"):
        raise ValueError(f"which must be 'first' or 'last', got {which!r}")
    if steps is None:
        return torch.arange(count) if which == "first" else torch.arange(n - count, n)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int (the sequence length T), got {steps!r}")
    rank = range_rank(steps, n)[:, None]  # (T, 1)
    slots = torch.arange(count)[None, :]
    index = slots if which == "first" else rank - count + slots
    return torch.where((index >= 0) & (index < rank), index, torch.full_like(index, -1))


def _select(alignments: torch.Tensor, sv_index: torch.Tensor) -> torch.Tensor:
    """alignments (T, batch, k, S) -> (T, batch, k, count) at ``sv_index`` ((count,) or (T, count), -1 = NaN)."""
    sv_index = torch.as_tensor(sv_index)
    if sv_index.ndim == 1:
        return alignments[..., sv_index]
    steps, batch, k, _ = alignments.shape
    index = sv_index.clamp_min(0).to(alignments.device)[:, None, None, :].expand(steps, batch, k, -1)
    values = alignments.gather(-1, index)
    return values.masked_fill((sv_index < 0).to(alignments.device)[:, None, None, :], float("nan"))


def nan_std(values: torch.Tensor, dim=None) -> torch.Tensor:
    """Unbiased standard deviation leaving NaN entries out (NaN where fewer than 2 remain); ``dim`` None: all."""
    if dim is None:
        kept = values[~torch.isnan(values)]
        return kept.std() if kept.numel() >= 2 else values.new_tensor(float("nan"))
    present = ~torch.isnan(values)
    count = present.sum(dim=dim)
    mean = torch.where(present, values, 0).sum(dim=dim, keepdim=True) / present.sum(dim=dim, keepdim=True).clamp_min(1)
    square = torch.where(present, (values - mean) ** 2, 0).sum(dim=dim)
    return torch.where(count >= 2, (square / (count - 1).clamp_min(1)).sqrt(), float("nan"))


def _check_alignment(a: torch.Tensor, *indices: tuple[str, torch.Tensor, int]) -> None:
    if not isinstance(a, torch.Tensor) or a.ndim != 4:
        raise ValueError(f"alignments must be (T, batch, k, S) (step, sequence, Q index, singular vector), got "
                         f"{getattr(a, 'shape', type(a).__name__)}")
    for name, index, axis in indices:
        index = torch.as_tensor(index)
        per_step = axis == 3 and index.ndim == 2
        if per_step and index.shape[0] != a.shape[0]:
            raise ValueError(f"{name}: a per-step index must have one row per step, ({a.shape[0]}, count), "
                             f"got {tuple(index.shape)}")
        if not (index.ndim == 1 or per_step) or index.numel() == 0 or index.is_floating_point():
            raise ValueError(f"{name} must be a non-empty 1-D integer index, got {tuple(index.shape)} {index.dtype}")
        low = -1 if per_step else 0
        if bool(((index < low) | (index >= a.shape[axis])).any()):
            raise ValueError(f"{name} holds indices outside [0, {a.shape[axis] - 1}]")


@dataclass(frozen=True)
class AlignmentDistribution:
    """Alignments of a set of Q vectors with a set of singular vectors, pooled over steps and sequences.

    Attributes:
        values: (T, batch, n_q, n_sv) the selected entries of A (raw material; NaN where masked).
        std: standard deviation of all values pooled (unbiased): the number of Fig. 4.1's panels.
        mean_of_stds: the original code's number: for each step and singular vector the std over
            (sequences x Q vectors), then the mean over steps and singular vectors.
        counts: (n_sv, bins) histogram of each singular vector's values over [-1, 1], summed over steps
            (stack them for Fig. 4.1).
        edges: (bins + 1,) bin edges.
    """

    values: torch.Tensor
    std: float
    mean_of_stds: float
    counts: torch.Tensor
    edges: torch.Tensor

    def std_over(self, rows) -> float:
        """The pooled std over the sequences ``rows`` (an index into the batch axis, repeats allowed)."""
        return float(nan_std(self.values[:, torch.as_tensor(rows)]))


def alignment_distribution(alignments: torch.Tensor, q_index: torch.Tensor, sv_index: torch.Tensor,
                           bins: int = 100) -> AlignmentDistribution:
    """Fig. 4.1 / C2 for one panel: the alignments of Q vectors ``q_index`` with singular vectors ``sv_index``.

    Args:
        alignments: (T, batch, k, S) from :func:`alignment`.
        q_index: 1-D indices of Q vectors (a set of :func:`q_index_sets`).
        sv_index: indices of singular vectors (:func:`singular_vector_index`): (count,) fixed, or
            (T, count) per step with -1 where masked.
        bins: histogram bins on [-1, 1].
    """
    _check_alignment(alignments, ("q_index", q_index, 2), ("sv_index", sv_index, 3))
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
        raise ValueError(f"bins must be a positive int, got {bins!r}")
    values = _select(alignments[:, :, torch.as_tensor(q_index)], sv_index)
    per_step = nan_std(values.permute(0, 3, 1, 2).flatten(2), dim=-1)  # (T, n_sv): over sequences x Q vectors
    clipped = values.clamp(-1.0, 1.0)  # cosines may overshoot by rounding; histc drops values outside its range
    counts = torch.stack([torch.histc(c[~torch.isnan(c)], bins=bins, min=-1.0, max=1.0) for c in clipped.unbind(-1)])
    return AlignmentDistribution(
        values=values, std=float(nan_std(values)), mean_of_stds=float(per_step[~torch.isnan(per_step)].mean()),
        counts=counts,
        edges=torch.linspace(-1.0, 1.0, bins + 1, dtype=values.dtype),
    )


@dataclass(frozen=True)
class AlignmentStdMap:
    """Fig. 4.2 for one panel.

    Attributes:
        std: (T, k) for each step and Q index, the std of the alignments over (sequences x selected
            singular vectors); NaN where every selected singular vector is masked.
        baseline: the red line: std over all steps, sequences, the random Q vectors and the selected
            singular vectors.
    """

    std: torch.Tensor
    baseline: float


def alignment_std_map(alignments: torch.Tensor, sv_index: torch.Tensor, random_index: torch.Tensor) -> AlignmentStdMap:
    """Fig. 4.2: std of the alignment with singular vectors ``sv_index`` ((count,) or (T, count) per
    step, -1 masked) per (step, Q index), and the random-Q baseline."""
    _check_alignment(alignments, ("sv_index", sv_index, 3), ("random_index", random_index, 2))
    selected = _select(alignments, sv_index)  # (T, batch, k, n_sv)
    std = nan_std(selected.permute(0, 2, 1, 3).flatten(2), dim=-1)
    baseline = float(nan_std(selected[:, :, torch.as_tensor(random_index)]))
    return AlignmentStdMap(std=std, baseline=baseline)
