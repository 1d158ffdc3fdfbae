"""Finite-time Lyapunov quantities and the loss gradient of a vanilla RNN (dissertation chapter 4).

What is here, by the dissertation's equations:

* :mod:`.model` — the vanilla RNN of Eq. (4.5) read from ``nn.RNN`` + ``nn.Linear`` (or a
  ``SequenceModel`` with ``arch="rnn"``), its forward pass, Jacobians (Eq. 4.8) and grad_o L.
* :mod:`.identity` — grad_{h_t} L from Q and R: the corrected Eq. (4.14) (forward QR) and the
  printed one (transposed QR) for comparison; Eq. (4.6); autograd references.
* :mod:`.delta_v` — per-step, per-sequence Delta V_t (torch.func), its SVD, the participation ratio.
* :mod:`.alignment` — Eq. (4.15) and the statistics of Figs 4.1, 4.2 and C2.
* :mod:`.flips` — R-ordered input positions and the up/down flip protocol (Algorithm 3, Fig. 4.4).
* :mod:`.engine` — Q, R and log R of a vanilla RNN from the engine; the Eq. (4.14) check; Eq. (4.15) for a
  network and its sequences in one call.
* :mod:`.controls` — other rankings of the pixels (future stretch, saliency, recency), a random
  control matched in reading time, single-pixel damage: what tells a null from a powerless test.
* :mod:`.significance` — Table 4.1's one-sided test, a Wilcoxon signed-rank test beside it, and a
  paired comparison with its bootstrap interval.

This package takes Q, R (or log R) as inputs and runs no QR recursion of its own: those come from
the engine (:func:`lyapbook.lyapunov_spectrum`). Conventions shared by every function: inputs are
batch first (batch, T, features); on a time axis index t - 1 holds step t = 1 ... T; Q_t is the
frame after the QR step of step t, with the Q vectors as columns, (..., T, N, k); Delta V and its SVD
are step first, (T, batch, N, N).
"""

from .alignment import (
    AlignmentDistribution, AlignmentStdMap, QIndexSets, alignment, alignment_distribution, alignment_std_map, nan_std,
    q_index_sets, range_rank, singular_vector_index,
)
from .controls import future_stretch, input_saliency, reading_recency, single_flip_damage, skip_first_steps, time_matched_positions
from .delta_v import GradientSVD, gradient_svd, participation_ratio, per_step_weight_gradients
from .engine import Eq414Check, GradientAlignment, VanillaRNNSystem, eq_4_14_check, gradient_alignment, qr_factors
from .flips import (
    FlipResult, ROrdering, as_sequence, check_permutation, flip_experiment, flip_images, flip_increase, flipped_probabilities,
    order_by_step_scores, r_ordered_positions,
)
from .identity import AutogradGradients, autograd_gradients, hidden_gradients_printed, hidden_gradients_qr, recurrent_weight_gradient
from .model import (
    Trajectory, VanillaRNN, activation_derivative, cross_entropy_output_gradients, final_logits, rnn_forward, step_jacobians,
    vanilla_rnn,
)
from .significance import FlipSignificance, PairedFlipTest, flip_significance, one_sided_p, paired_flip_test

__all__ = [
    "AlignmentDistribution", "AlignmentStdMap", "AutogradGradients", "Eq414Check", "GradientAlignment", "VanillaRNNSystem",
    "eq_4_14_check", "gradient_alignment", "qr_factors", "FlipResult", "FlipSignificance", "GradientSVD",
    "QIndexSets", "ROrdering", "Trajectory", "VanillaRNN", "activation_derivative", "alignment", "alignment_distribution",
    "alignment_std_map", "as_sequence", "autograd_gradients", "check_permutation", "cross_entropy_output_gradients",
    "final_logits", "flip_experiment", "flip_images", "flip_increase", "flipped_probabilities", "flip_significance",
    "future_stretch", "gradient_svd", "hidden_gradients_printed", "hidden_gradients_qr", "input_saliency", "nan_std", "one_sided_p",
    "order_by_step_scores", "paired_flip_test", "PairedFlipTest", "participation_ratio", "per_step_weight_gradients",
    "q_index_sets", "r_ordered_positions", "range_rank", "reading_recency", "recurrent_weight_gradient", "rnn_forward",
    "single_flip_damage", "singular_vector_index", "skip_first_steps", "step_jacobians", "time_matched_positions",
    "vanilla_rnn",
]
