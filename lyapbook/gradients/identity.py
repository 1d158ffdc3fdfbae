"""The hidden-state gradient written with the Q and R factors of the QR algorithm (Eqs. 4.6-4.14).

Backpropagation through time (Eq. 4.7) gives, with J_r = dh_r/dh_{r-1} = diag(phi'(a_r)) V (Eq. 4.8),

    grad_{h_t} L = sum_{s=t}^{T} (J_s ... J_{t+1})^T W^T grad_{o_s} L.

**Corrected identity** (forward QR, the engine's ordinary recursion J_r Q_{r-1} = Q_r R_r with
square Q): J_s ... J_{t+1} = Q_s (R_s ... R_{t+1}) Q_t^T, hence

    grad_{h_t} L = sum_{s=t}^{T} Q_t (R_s ... R_{t+1})^T Q_s^T W^T grad_{o_s} L.

**Printed Eq. (4.14)** (transposed QR of Eq. 4.11, J_r^T Q~_{r-1} = Q~_r R~_r):

    grad_{h_t} L = sum_{s=t}^{T} Q~_s (R~_s ... R~_{t+1}) Q~_t^T W^T grad_{o_s} L,

where the product runs from s down to t+1, the only order in which Eqs. (4.12)-(4.13) telescope.
It equals sum_s J_s^T ... J_{t+1}^T W^T grad_{o_s} L, which is backpropagation only when the
Jacobians commute (spec §3.3, §6 item 25).

Shapes and conventions of every function here (the engine's layout):

* ``q`` (..., T, N, N): index t - 1 holds Q_t, its columns the Q vectors q_{t,1} ... q_{t,N}, after
  the QR step of step t; Q_0 is not needed. ``r`` (..., T, N, N): R_t, upper triangular. Any sign
  convention of the diagonal works as long as the recursion above holds exactly.
* k must equal N: with fewer Q vectors Q_t Q_t^T is a projection, not the identity, and the
  formula is wrong, so a non-square Q is refused.
* ``output_grads`` (..., T, C): grad_{o_s} L for s = 1 ... T (zeros where there is no loss), e.g.
  from :func:`~lyapbook.gradients.cross_entropy_output_gradients`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.func import grad_and_value, vmap

from .model import Trajectory, VanillaRNN, _readout, _unroll, activation_derivative, check_inputs, check_targets, step_mask

__all__ = [
    "AutogradGradients", "autograd_gradients", "hidden_gradients_printed", "hidden_gradients_qr", "recurrent_weight_gradient",
]


def _check_factors(q: torch.Tensor, r: torch.Tensor, readout_weight: torch.Tensor, output_grads: torch.Tensor) -> torch.Tensor:
    """Validate shapes; return W^T grad_{o_s} L, (..., T, N)."""
    for name, tensor in (("q", q), ("r", r)):
        if not isinstance(tensor, torch.Tensor) or tensor.ndim < 3:
            raise ValueError(f"{name} must be a tensor (..., T, N, N), got {getattr(tensor, 'shape', type(tensor).__name__)}")
    n = q.shape[-2]
    if q.shape[-1] != n:
        raise ValueError(
            f"q has {q.shape[-1]} Q vectors of dimension {n}: the Q/R form of the gradient needs a square Q (k = N = {n}), "
            f"because with k < N Q Q^T is a projection and the identity fails; rerun the QR recursion with all {n} vectors"
        )
    if r.shape != q.shape:
        raise ValueError(f"r must have the shape of q {tuple(q.shape)} (full R matrices, not their diagonals), got {tuple(r.shape)}")
    if readout_weight.ndim != 2 or readout_weight.shape[1] != n:
        raise ValueError(f"readout_weight (W) must have shape (C, {n}), got {tuple(readout_weight.shape)}")
    if output_grads.shape != (*q.shape[:-2], readout_weight.shape[0]):
        raise ValueError(f"output_grads must have shape {(*q.shape[:-2], readout_weight.shape[0])} (..., T, C), "
                         f"got {tuple(output_grads.shape)}")
    return output_grads.to(q.dtype) @ readout_weight.to(q.dtype)


def hidden_gradients_qr(q: torch.Tensor, r: torch.Tensor, readout_weight: torch.Tensor,
                        output_grads: torch.Tensor) -> torch.Tensor:
    """grad_{h_t} L for t = 1 ... T from the forward QR factors: the corrected Eq. (4.14).

    grad_{h_t} L = sum_{s>=t} Q_t (R_s ... R_{t+1})^T Q_s^T W^T grad_{o_s} L, with J_r Q_{r-1} = Q_r R_r.
    Evaluated in O(T) by the backward recursion of its Q-coordinates c_t = Q_t^T grad_{h_t} L:
    c_T = Q_T^T W^T g_T, c_t = Q_t^T W^T g_t + R_{t+1}^T c_{t+1} (no products of R's are formed).

    Args:
        q: (..., T, N, N) Q_1 ... Q_T of the forward recursion (see the module docstring).
        r: (..., T, N, N) R_1 ... R_T.
        readout_weight: W, (C, N).
        output_grads: (..., T, C) grad_{o_s} L.

    Returns:
        (..., T, N): index t - 1 holds grad_{h_t} L.
    """
    v = _check_factors(q, r, readout_weight, output_grads)
    coords = q[..., -1, :, :].mT @ v[..., -1, :, None]
    grads = [q[..., -1, :, :] @ coords]
    for i in range(q.shape[-3] - 2, -1, -1):
        coords = q[..., i, :, :].mT @ v[..., i, :, None] + r[..., i + 1, :, :].mT @ coords
        grads.append(q[..., i, :, :] @ coords)
    return torch.stack(grads[::-1], dim=-3)[..., 0]


def hidden_gradients_printed(q: torch.Tensor, r: torch.Tensor, readout_weight: torch.Tensor,
                             output_grads: torch.Tensor) -> torch.Tensor:
    """The dissertation's Eq. (4.14) as printed, from the transposed QR of Eq. (4.11).

    sum_{s>=t} Q~_s (R~_s ... R~_{t+1}) Q~_t^T W^T grad_{o_s} L with J_r^T Q~_{r-1} = Q~_r R~_r. Not the
    gradient in general (it is when the J_r commute); kept to show by how much it misses. No backward
    recursion exists for this ordering, so it costs O(T^2) products: one pass per lag s - t,
    vectorised over t. Meant for the check's sizes (T of tens).

    Args and returns as :func:`hidden_gradients_qr`, with q, r from the transposed recursion.
    """
    v = _check_factors(q, r, readout_weight, output_grads)
    steps = q.shape[-3]
    grads = q @ (q.mT @ v[..., None])  # lag 0: Q_t Q_t^T W^T g_t
    products = None  # (..., T - lag, N, N): R~_{t+lag} ... R~_{t+1} for t = 1 ... T - lag
    for lag in range(1, steps):
        head = r[..., lag:, :, :]
        products = head if products is None else head @ products[..., :-1, :, :]
        projected = q[..., : steps - lag, :, :].mT @ v[..., lag:, :, None]  # Q~_t^T W^T g_{t+lag}
        term = q[..., lag:, :, :] @ (products @ projected)
        grads = grads + torch.nn.functional.pad(term, (0, 0, 0, 0, 0, lag))
    return grads[..., 0]


def recurrent_weight_gradient(rnn: VanillaRNN, trajectory: Trajectory, hidden_grads: torch.Tensor) -> torch.Tensor:
    """Eq. (4.6): grad_V L = sum_t diag(phi'(a_t)) grad_{h_t} L h_{t-1}^T, per sequence.

    Args:
        rnn: the network (for phi').
        trajectory: the forward pass that produced the states, from :func:`~lyapbook.gradients.rnn_forward`.
        hidden_grads: (batch, T, N) grad_{h_t} L (total derivative, through all later steps), e.g. from
            :func:`hidden_gradients_qr`.

    Returns:
        (batch, N, N): row i, column j is dL/dV_ij for each sequence's own loss.
    """
    if hidden_grads.shape != trajectory.states.shape:
        raise ValueError(f"hidden_grads must have the trajectory's shape {tuple(trajectory.states.shape)} (batch, T, N), "
                         f"got {tuple(hidden_grads.shape)}")
    delta = activation_derivative(rnn, trajectory) * hidden_grads
    return torch.einsum("btn,btm->bnm", delta, trajectory.previous_states)


@dataclass(frozen=True)
class AutogradGradients:
    """Backpropagation by torch.func, per sequence: the reference for the Q/R identities.

    Attributes:
        hidden: (batch, T, N) grad_{h_t} L, index t - 1 holds step t.
        recurrent: (batch, N, N) grad_V L.
        loss: (batch,) L = sum of the cross-entropies at the steps that carry a loss.
    """

    hidden: torch.Tensor
    recurrent: torch.Tensor
    loss: torch.Tensor


def autograd_gradients(rnn: VanillaRNN, x: torch.Tensor, targets: torch.Tensor, h0: torch.Tensor | None = None,
                       loss_at: str = "all") -> AutogradGradients:
    """grad_{h_t} L and grad_V L of each sequence's cross-entropy loss by automatic differentiation.

    The total derivative grad_{h_t} L is the gradient with respect to a zero perturbation added to
    h_t after phi (so it includes every later step). One ``vmap`` over the sequences, no Python loop
    over samples.

    Args:
        rnn: the network.
        x: (batch, T, input_size); h0: (batch, N) or None (zeros).
        targets: class ids (batch,) or (batch, T).
        loss_at: ``"all"`` or ``"last"`` (see :func:`~lyapbook.gradients.cross_entropy_output_gradients`).
    """
    x, h0 = check_inputs(rnn, x, h0)
    batch, steps = x.shape[:2]
    targets = check_targets(targets, batch, steps, rnn.output_size)
    mask = step_mask(loss_at, steps, x)

    def loss(recurrent_weight, perturbation, x_i, y_i, h0_i):
        states, _ = _unroll(rnn, recurrent_weight, x_i, h0_i, perturbation)
        log_p = torch.log_softmax(_readout(rnn, states), dim=-1)
        return -(log_p.gather(-1, y_i[:, None])[:, 0] * mask).sum()

    zero = x.new_zeros(steps, rnn.hidden_size)
    per_sequence = vmap(grad_and_value(loss, argnums=(0, 1)), in_dims=(None, None, 0, 0, 0))
    (recurrent, hidden), value = per_sequence(rnn.recurrent_weight, zero, x, targets, h0)
    return AutogradGradients(hidden=hidden, recurrent=recurrent, loss=value)
