"""Other ways to rank the pixels of the flip test, and the controls that show what the test can find.

The flip test of :mod:`.flips` asks whether the pixels read at the steps of largest log R_1 matter
more than random ones. A null answer means something only if the same test finds an effect where
one exists, and a positive one only if a simpler explanation is ruled out. Every function here
returns per-step scores (batch, T) (step t reads position ``permutation[t]``); give them to
:func:`~lyapbook.gradients.order_by_step_scores` for the ordering that the flips use.

* :func:`input_saliency` — |dL/dx_t| of the loss after the last step: the positive control (the
  gradient says directly which inputs the loss is sensitive to).
* :func:`reading_recency` — the step index itself: "last read, first flipped" (a network that
  forgets is most sensitive to what it read last).
* :func:`future_stretch` — sum_{r > t} log r_r^1. With the loss at T only, the corrected Eq. 4.14
  reads grad_{h_t} L = Q_t (R_T ... R_{t+1})^T Q_T^T W^T grad_{o_T} L; the first row of a
  transposed upper-triangular product has one entry, so the component of grad_{h_t} L along
  q_{t,1} is exactly (prod_{r>t} r_r^1) times the fixed number [Q_T^T W^T grad_{o_T} L]_1.
* :func:`skip_first_steps` — any score with the first steps sent to the end of the order.
* :func:`time_matched_positions` — random positions whose reading steps follow those a ranking
  chose: a random control that shares the ranking's preference for early or late pixels.
* :func:`single_flip_damage` — the loss increase of flipping each position alone.
"""

from __future__ import annotations

import torch

from .flips import _losses, _reading_order, as_sequence, flip_images
from .model import VanillaRNN, check_network, final_logits

__all__ = ["future_stretch", "input_saliency", "reading_recency", "single_flip_damage", "skip_first_steps",
           "time_matched_positions"]


def _check_log_r(log_r: torch.Tensor) -> None:
    if not isinstance(log_r, torch.Tensor) or log_r.ndim != 3:
        raise ValueError(f"log_r must be a tensor (batch, T, k), got {getattr(log_r, 'shape', type(log_r).__name__)}")


def future_stretch(log_r: torch.Tensor) -> torch.Tensor:
    """(batch, T) sum_{r > t} log r_r^1: the log of the factor that carries grad_{o_T} L back to h_t along q_{t,1}.

    Args:
        log_r: (batch, T, k) log r_t^i of the forward recursion J_t Q_{t-1} = Q_t R_t (the engine's
            ``log_r``), one pixel per step. The last step's score is 0 (an empty sum).
    """
    _check_log_r(log_r)
    first = log_r[..., 0]
    return first.sum(dim=-1, keepdim=True) - first.cumsum(dim=-1)


def reading_recency(batch: int, steps: int, *, dtype: torch.dtype = torch.float64, device=None) -> torch.Tensor:
    """(batch, T) the step index 0 ... T-1 of every step: ordered by it, the last pixel read is flipped first."""
    for name, value in (("batch", batch), ("steps", steps)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    return torch.arange(steps, dtype=dtype, device=device).expand(batch, -1).clone()


def skip_first_steps(step_scores: torch.Tensor, steps: int) -> torch.Tensor:
    """A copy of ``step_scores`` (batch, T) with the first ``steps`` steps set to -inf (flipped last)."""
    if not isinstance(step_scores, torch.Tensor) or step_scores.ndim != 2:
        raise ValueError("step_scores must be a tensor (batch, T)")
    if isinstance(steps, bool) or not isinstance(steps, int) or not 0 <= steps < step_scores.shape[1]:
        raise ValueError(f"steps must be an int in [0, {step_scores.shape[1] - 1}] (fewer than the sequence), got {steps!r}")
    out = step_scores.clone()
    out[:, :steps] = -torch.inf
    return out


def input_saliency(rnn: VanillaRNN, images: torch.Tensor, labels: torch.Tensor, *, permutation=None,
                   batch_size: int = 1024) -> torch.Tensor:
    """(batch, T) |dL/dx_t|: the gradient of the cross-entropy after the last step with respect to the pixel read at step t.

    Args:
        rnn: a pixel-wise network (input_size 1).
        images: (batch, P) flattened images in natural order; labels: (batch,) class ids.
        permutation: (P,) the reading order, or None.
    """
    check_network(rnn)
    if rnn.input_size != 1:
        raise ValueError(f"input_saliency is per pixel: the network must read one value per step, got input_size {rnn.input_size}")
    if not isinstance(images, torch.Tensor) or images.ndim != 2:
        raise ValueError("images must be a tensor (batch, P) of flattened images")
    labels = torch.as_tensor(labels, device=images.device).long()
    out = []
    for start in range(0, images.shape[0], batch_size):
        x = as_sequence(images[start : start + batch_size].to(rnn.dtype), permutation).requires_grad_(True)
        with torch.enable_grad():
            loss = torch.nn.functional.cross_entropy(final_logits(rnn, x), labels[start : start + batch_size],
                                                     reduction="sum")
            (gradient,) = torch.autograd.grad(loss, x)
        out.append(gradient[..., 0].abs())
    return torch.cat(out)


def time_matched_positions(chosen_steps: torch.Tensor, steps: int, *, draws: int, window: int, permutation=None,
                           generator: torch.Generator | None = None) -> torch.Tensor:
    """Random positions read at about the same steps as ``chosen_steps``, per image.

    Each image's k chosen steps define a weight on every step: the number of chosen steps within
    ``window`` of it. Each draw takes k distinct steps with probability proportional to that weight
    (without replacement), so the random set is read when the chosen one was, give or take
    ``window`` steps, and is otherwise blind to the ranking.

    Args:
        chosen_steps: (batch, k) the steps (0-based) a ranking selected.
        steps: T, the sequence length.
        draws: random sets per image.
        window: half-width of the matching window, in steps (0: the same steps; then every draw is the ranking's own set).
        permutation: (T,) the reading order, to turn steps into positions; None for the identity.

    Returns:
        (draws, batch, k) positions.
    """
    if not isinstance(chosen_steps, torch.Tensor) or chosen_steps.ndim != 2:
        raise ValueError("chosen_steps must be a tensor (batch, k) of steps")
    if isinstance(window, bool) or not isinstance(window, int) or window < 0:
        raise ValueError(f"window must be a non-negative int (steps), got {window!r}")
    if isinstance(draws, bool) or not isinstance(draws, int) or draws < 1:
        raise ValueError(f"draws must be a positive int, got {draws!r}")
    batch, k = chosen_steps.shape
    if bool(((chosen_steps < 0) | (chosen_steps >= steps)).any()):
        raise ValueError(f"chosen_steps must lie in [0, {steps - 1}]")
    all_steps = torch.arange(steps, device=chosen_steps.device)
    near = (all_steps[None, None, :] - chosen_steps[:, :, None]).abs() <= window  # (batch, k, T)
    weight = near.sum(dim=1).to(torch.float64)  # (batch, T)
    if bool(((weight > 0).sum(-1) < k).any()):
        raise ValueError(f"window={window} leaves fewer than k={k} steps to draw from; widen it")
    rows = weight.repeat(draws, 1).cpu()  # (draws * batch, T)
    picked = torch.multinomial(rows, k, replacement=False, generator=generator).to(chosen_steps.device)
    order = _reading_order(permutation, steps, chosen_steps.device)
    return order[picked].reshape(draws, batch, k)


def single_flip_damage(rnn: VanillaRNN, images: torch.Tensor, labels: torch.Tensor, *, permutation=None,
                       threshold: float = 1e-3, batch_size: int = 2048) -> torch.Tensor:
    """(batch, P) the loss increase when position p alone is flipped (Algorithm 3 with k = 1, every p)."""
    check_network(rnn)
    if not isinstance(images, torch.Tensor) or images.ndim != 2:
        raise ValueError("images must be a tensor (batch, P) of flattened images")
    batch, positions = images.shape
    labels = torch.as_tensor(labels, device=images.device).long()
    images = images.to(rnn.dtype)
    with torch.no_grad():
        base = _losses(rnn, images, labels, permutation, batch_size)
        every = torch.arange(positions, device=images.device)[:, None]  # one position per flip
        flipped = torch.cat([flip_images(images, p.expand(batch, 1), threshold)[0] for p in every])
        losses = _losses(rnn, flipped, labels.repeat(positions), permutation, batch_size)
    return (losses.reshape(positions, batch) - base).T
