"""Q, R and log R of a vanilla RNN from lyapbook's engine, and the Eq. (4.14) check built on them.

:class:`VanillaRNNSystem` presents a :class:`~lyapbook.gradients.VanillaRNN` to the engine
(:func:`lyapbook.lyapunov_spectrum`) as a driven map h_t = phi(V h_{t-1} + U x_t + b) with its
analytic Jacobian J_t = diag(phi'(a_t)) V (Eq. 4.8). :func:`qr_factors` runs the engine once with
what chapter 4 needs (Q_0 = I, a QR step at every input, no warm-up, all N directions): nothing of
the QR loop is written here.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..lyapunov import LyapunovResult, lyapunov_spectrum
from ..systems import DynamicalSystem
from .alignment import alignment
from .delta_v import gradient_svd, participation_ratio, per_step_weight_gradients
from .identity import autograd_gradients, hidden_gradients_printed, hidden_gradients_qr, recurrent_weight_gradient
from .model import VanillaRNN, _phi, check_inputs, check_network, cross_entropy_output_gradients, rnn_forward

__all__ = ["Eq414Check", "GradientAlignment", "VanillaRNNSystem", "eq_4_14_check", "gradient_alignment", "qr_factors"]

ORIENTATIONS = ("forward", "transposed")


class VanillaRNNSystem(DynamicalSystem):
    """Eq. (4.5)'s state update as an engine system: state h (batch, N), input x_t (batch, m)."""

    def __init__(self, rnn: VanillaRNN):
        check_network(rnn)
        self.rnn = rnn
        self.state_dim = rnn.hidden_size
        self.input_dim = rnn.input_size

    @property
    def dtype(self) -> torch.dtype:
        return self.rnn.dtype

    @property
    def device(self) -> torch.device:
        return self.rnn.device

    def _pre(self, state: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        a = state @ self.rnn.recurrent_weight.mT + x @ self.rnn.input_weight.mT
        return a if self.rnn.bias is None else a + self.rnn.bias

    def _derivative(self, a: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        if self.rnn.nonlinearity == "tanh":
            return 1 - h**2
        if self.rnn.nonlinearity == "relu":
            return (a > 0).to(h.dtype)
        return torch.ones_like(h)

    def step(self, state: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
        return _phi(self.rnn.nonlinearity, self._pre(state, x))

    def step_with_jacobian(self, state: torch.Tensor, x: torch.Tensor | None = None):
        a = self._pre(state, x)
        h = _phi(self.rnn.nonlinearity, a)
        return h, self._derivative(a, h)[..., :, None] * self.rnn.recurrent_weight

    def jacobian(self, state: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
        return self.step_with_jacobian(state, x)[1]

    def input_jacobian(self, state: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
        a = self._pre(state, x)
        return self._derivative(a, _phi(self.rnn.nonlinearity, a))[..., :, None] * self.rnn.input_weight


def qr_factors(rnn: VanillaRNN, x: torch.Tensor, h0: torch.Tensor | None = None, *, orientation: str = "forward",
               k: int | None = None, r_matrices: bool = False, q_vectors: bool = True, q_columns: int | None = None,
               ftle: bool = True, input_jacobians: bool = False, warmup: int = 0,
               q0: str | torch.Tensor = "identity") -> LyapunovResult:
    """The engine's QR recursion along one forward pass of Eq. (4.5): one QR step per input, Q_0 = I.

    ``orientation="forward"``: J_t Q_{t-1} = Q_t R_t (Eq. 4.2, the corrected Eq. 4.14);
    ``"transposed"``: J_t^T Q_{t-1} = Q_t R_t (Eq. 4.11 as printed, the original chapter-4 code).
    Every R has a positive diagonal.

    Args:
        rnn: the network; x: (batch, T, m) batch first; h0: (batch, N) or None (zeros) — use the
            same h0 as the gradients it is compared with.
        k: Q vectors kept (None: all N, a square Q, which the gradient identities need).
        r_matrices, q_vectors, q_columns, ftle, input_jacobians: what to keep (see
            :func:`lyapbook.lyapunov_spectrum`).
        warmup: the first ``warmup`` inputs of x move h and Q without being recorded (Algorithm 2's
            warm-up); the results then cover the T - warmup steps after them.
        q0: the initial frame: ``"identity"`` (Q_0 = I, the dissertation's) or a tensor
            (batch, N, k) with orthonormal columns, e.g. a frame that has already settled.

    Returns:
        The engine's result: ``q`` (batch, T, N, k), ``r`` (batch, T, k, k), ``log_r`` and
        ``ftle`` (batch, T, k), index t - 1 holding step t, the layout of this package.
    """
    if orientation not in ORIENTATIONS:
        raise ValueError(f"orientation must be 'forward' (J Q, Eq. 4.2) or 'transposed' (J^T Q, Eq. 4.11), got {orientation!r}")
    x, h0 = check_inputs(rnn, x, h0)
    return lyapunov_spectrum(VanillaRNNSystem(rnn), x, h0, warmup=warmup, t_on=1, k=k, ftle=ftle, q_vectors=q_vectors,
                             q_columns=q_columns, r_matrices=r_matrices, input_jacobians=input_jacobians,
                             q0=q0, orientation=orientation, method="formed")


@dataclass(frozen=True)
class Eq414Check:
    """Relative errors of the Q/R forms of grad_{h_t} L against automatic differentiation.

    Attributes:
        corrected: (batch, T) |g_QR - g_auto| / |g_auto| per sequence and step, corrected Eq. (4.14).
        printed: (batch, T) the same for Eq. (4.14) as printed (transposed QR).
        weight_error: relative error of Eq. (4.6) built from the corrected gradients, against
            autograd's grad_V L (largest over the sequences).
    """

    corrected: torch.Tensor
    printed: torch.Tensor
    weight_error: float

    def frame(self):
        """A DataFrame, one row per step t: the largest error over the sequences of each form."""
        import pandas as pd

        return pd.DataFrame({"t": range(1, self.corrected.shape[1] + 1),
                             "corrected": self.corrected.amax(0).cpu().numpy(),
                             "printed": self.printed.amax(0).cpu().numpy()})


def eq_4_14_check(rnn: VanillaRNN, x: torch.Tensor, targets: torch.Tensor, h0: torch.Tensor | None = None,
                  loss_at: str = "all") -> Eq414Check:
    """Both forms of Eq. (4.14), with Q and R from the engine, against autograd (spec §3.3).

    Use float64: the corrected form then agrees to about 1e-15; the printed one misses by what the
    non-commuting Jacobians make of it.
    """
    x, h0 = check_inputs(rnn, x, h0)
    reference = autograd_gradients(rnn, x, targets, h0, loss_at)
    trajectory = rnn_forward(rnn, x, h0)
    output_grads = cross_entropy_output_gradients(trajectory.outputs, targets, loss_at)
    errors = {}
    for name, orientation, formula in (("corrected", "forward", hidden_gradients_qr),
                                       ("printed", "transposed", hidden_gradients_printed)):
        factors = qr_factors(rnn, x, h0, orientation=orientation, r_matrices=True, ftle=False)
        ours = formula(factors.q, factors.r, rnn.readout_weight, output_grads)
        errors[name] = (ours - reference.hidden).norm(dim=-1) / reference.hidden.norm(dim=-1)
        if name == "corrected":
            weight = recurrent_weight_gradient(rnn, trajectory, ours)
            diff = (weight - reference.recurrent).flatten(1).norm(dim=-1) / reference.recurrent.flatten(1).norm(dim=-1)
            weight_error = float(diff.max())
    return Eq414Check(corrected=errors["corrected"], printed=errors["printed"], weight_error=weight_error)


@dataclass(frozen=True)
class GradientAlignment:
    """Q vectors against the singular vectors of Delta V_t, for one network and a batch of sequences.

    Attributes:
        alignments: (T, batch, N, N) A_t of Eq. (4.15): [t - 1, b, i, j] = q_{t,i} . e_{t,j}.
        singular_values: (T, batch, N) of Delta V_t, descending.
        participation: (T, batch) participation ratio of each Delta V_t (Appendix B).
        q: (batch, T, N, N) the frames used.
        log_r: (batch, T, N) log R_ii of the same recursion.
    """

    alignments: torch.Tensor
    singular_values: torch.Tensor
    participation: torch.Tensor
    q: torch.Tensor
    log_r: torch.Tensor


def gradient_alignment(rnn: VanillaRNN, x: torch.Tensor, targets: torch.Tensor, h0: torch.Tensor | None = None, *,
                       orientation: str = "transposed") -> GradientAlignment:
    """Eq. (4.15) for every step and sequence: Q from the engine, Delta V_t by torch.func, one h0 for both.

    ``orientation="transposed"`` is the recursion of Eq. (4.11) and of the authors' alignment code
    (spec §3.2 reading); ``"forward"`` the ordinary one of Eq. (4.2).
    """
    x, h0 = check_inputs(rnn, x, h0)
    factors = qr_factors(rnn, x, h0, orientation=orientation)
    svd = gradient_svd(per_step_weight_gradients(rnn, x, targets, h0))
    return GradientAlignment(alignments=alignment(factors.q.transpose(0, 1), svd.vh), singular_values=svd.s,
                             participation=participation_ratio(svd.s), q=factors.q, log_r=factors.log_r)
