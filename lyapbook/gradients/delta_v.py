"""Per-step, per-sequence recurrent-weight gradients Delta V_t, their SVD and participation ratio.

Delta V_t (dissertation §4, "Loss Gradient Matrix for V", and Appendix B) is the (non-reduced)
gradient of one sequence's loss with respect to V when the sequence is cut after t inputs:

    Delta V_t^(i) = d/dV CE(W h_t^(i) + c, y^(i)),   t = 1 ... T,

the gradient of the prediction after t inputs (Eq. 4.6 with the loss at step t only). Reading of
the spec (§3.4, §6 item 30): the network in evaluation mode (no dropout) and the same h_0 as the
Q/R run, which the original code did not do.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.func import jacrev, vmap

from .model import VanillaRNN, _readout, _unroll, activation_derivative, check_inputs, check_targets, rnn_forward

__all__ = ["GradientSVD", "gradient_svd", "participation_ratio", "per_step_weight_gradients"]


def per_step_weight_gradients(rnn: VanillaRNN, x: torch.Tensor, targets: torch.Tensor, h0: torch.Tensor | None = None,
                              *, chunk_size: int | None = None) -> torch.Tensor:
    """Delta V_t for every step t and sequence: (T, batch, N, N).

    One ``torch.func`` call gives d CE_s / d h_t for every loss step s and state step t (``jacrev`` of
    the T per-step losses with respect to a zero perturbation of each h_t: T backward passes,
    vectorised, ``vmap``-ed over the sequences); Eq. (4.6) then gives
    Delta V_s = sum_{t<=s} diag(phi'(a_t)) (d CE_s / d h_t) h_{t-1}^T as one ``einsum``. No Python
    loop over samples or steps. (Differentiating with respect to V directly gives the same numbers
    but forms an N x N outer product for every step, cotangent and sequence.)

    Args:
        rnn: the network of Eq. (4.5).
        x: (batch, T, input_size); h0: (batch, N), or None for zeros; use the h_0 of the Q/R run.
        targets: class ids (batch,) (the sequence's label, scored after every step) or (batch, T).
        chunk_size: sequences per vectorised chunk (``vmap``'s ``chunk_size``); lower it to save
            memory (peak about chunk x T^2 x N numbers before the T x batch x N^2 result), ``None`` does all at once.

    Returns:
        (T, batch, N, N): index [t - 1, i] is Delta V_t of sequence i, laid out like V (row = the unit
        the weight feeds, column = the unit it reads).
    """
    x, h0 = check_inputs(rnn, x, h0)
    batch, steps = x.shape[:2]
    targets = check_targets(targets, batch, steps, rnn.output_size)
    if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1):
        raise ValueError(f"chunk_size must be a positive int or None, got {chunk_size!r}")

    def step_losses(perturbation, x_i, y_i, h0_i):
        states, _ = _unroll(rnn, rnn.recurrent_weight, x_i, h0_i, perturbation)
        log_p = torch.log_softmax(_readout(rnn, states), dim=-1)
        return -log_p.gather(-1, y_i[:, None])[:, 0]  # (T,)

    # d CE_s / d h_t for every loss step s and state step t (zero for t > s): vectors only, cheap to vectorise
    per_sequence = vmap(jacrev(step_losses), in_dims=(None, 0, 0, 0), chunk_size=chunk_size)
    hidden = per_sequence(x.new_zeros(steps, rnn.hidden_size), x, targets, h0)  # (batch, T loss, T state, N)
    trajectory = rnn_forward(rnn, x, h0)
    delta = hidden * activation_derivative(rnn, trajectory)[:, None]
    return torch.einsum("bstn,btm->sbnm", delta, trajectory.previous_states)  # Eq. (4.6) for each loss step s


@dataclass(frozen=True)
class GradientSVD:
    """Delta V_t = U S Vh per step and sequence (dissertation Appendix A).

    Attributes:
        u: (..., N, N) left singular vectors, columns (the side of the units V feeds).
        s: (..., N) singular values, descending.
        vh: (..., N, N) right singular vectors as rows: e_j = vh[..., j, :] (j = 0 the largest) lives in
            h_{t-1} space, the space V acts on. These are the vectors of the alignment Eq. (4.15).
            (Appendix A calls the columns of U the input directions; for Delta V = U S Vh it is Vh's rows.)
    """

    u: torch.Tensor
    s: torch.Tensor
    vh: torch.Tensor

    @property
    def participation_ratio(self) -> torch.Tensor:
        """(...) the participation ratio of each matrix, see :func:`participation_ratio`."""
        return participation_ratio(self.s)


def gradient_svd(delta_v: torch.Tensor) -> GradientSVD:
    """SVD of each matrix of ``delta_v`` (..., N, N), e.g. the (T, batch, N, N) of :func:`per_step_weight_gradients`."""
    if not isinstance(delta_v, torch.Tensor) or delta_v.ndim < 2 or delta_v.shape[-1] != delta_v.shape[-2]:
        shape = getattr(delta_v, "shape", type(delta_v).__name__)
        raise ValueError(f"delta_v must be a tensor of square matrices (..., N, N), got {shape}")
    u, s, vh = torch.linalg.svd(delta_v)
    return GradientSVD(u=u, s=s, vh=vh)


def participation_ratio(singular_values: torch.Tensor) -> torch.Tensor:
    """P = sum_i s_i^2 / (sum_i s_i)^2 over the last axis (dissertation Appendix B).

    P lies in [1/N, 1], not (0, 1] as the text says (spec §6 item 31): P = 1 for a rank-1 matrix,
    1/N for N equal singular values (an orthogonal matrix). A zero matrix gives NaN (0/0).

    Args:
        singular_values: (..., N), non-negative.

    Returns:
        (...) the ratio.
    """
    if not isinstance(singular_values, torch.Tensor) or singular_values.ndim < 1 or singular_values.shape[-1] < 1:
        raise ValueError("singular_values must be a tensor (..., N) with N >= 1")
    if bool((singular_values < 0).any()):
        raise ValueError("singular_values must be non-negative (pass torch.linalg.svdvals(matrix), not eigenvalues)")
    return (singular_values**2).sum(-1) / singular_values.sum(-1) ** 2
