"""R-guided pixel flips (dissertation Algorithm 3, Figs 4.3-4.5, D3; spec §3.6).

Pixel-wise sequential images: step t of the sequence reads pixel position ``permutation[t]`` of the
flattened image, x_t = image[permutation[t]] (``permutation=None``: position t). Images are given
flattened in their natural order, (batch, P), values in [0, 1], so that what is flipped is what is
drawn; :func:`as_sequence` makes the network's input.

The score of a step is the mean log R over the first n Q directions at that step,
(1/n) sum_{i<=n} log r_t^i (n = 1: log R_1, the dissertation's choice); a position's score is the
score of the step that read it, so step scores are mapped back through the inverse permutation.
A flip sets a pixel > threshold (0.001) to 0 ("down") and any other to 1 ("up").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .model import VanillaRNN, check_network, final_logits
from .significance import FlipSignificance, flip_significance

__all__ = [
    "FlipResult", "ROrdering", "as_sequence", "check_permutation", "flip_experiment", "flip_images", "flip_increase",
    "flipped_probabilities", "order_by_step_scores", "r_ordered_positions",
]


def check_permutation(permutation, length: int) -> torch.Tensor:
    """Validate that ``permutation`` holds each of 0 ... length-1 exactly once; return it as int64 (length,)."""
    perm = torch.as_tensor(permutation)
    if perm.ndim != 1 or perm.numel() != length or perm.is_floating_point() or perm.dtype == torch.bool:
        raise ValueError(f"permutation must be a 1-D integer sequence of length {length} (one position per step), "
                         f"got shape {tuple(perm.shape)} and dtype {perm.dtype}")
    perm = perm.long()
    if not torch.equal(perm.sort().values.cpu(), torch.arange(length)):
        raise ValueError(f"permutation is not a permutation of 0 ... {length - 1} (a position is missing or repeated)")
    return perm


def _reading_order(permutation, length: int, device: torch.device) -> torch.Tensor:
    return torch.arange(length, device=device) if permutation is None else check_permutation(permutation, length).to(device)


def as_sequence(images: torch.Tensor, permutation=None) -> torch.Tensor:
    """(batch, P) flattened images -> (batch, P, 1) pixel-wise input, step t reading position permutation[t]."""
    if images.ndim != 2:
        raise ValueError(f"images must be flattened, (batch, P), got {tuple(images.shape)}")
    return images[:, _reading_order(permutation, images.shape[1], images.device)].unsqueeze(-1)


@dataclass(frozen=True)
class ROrdering:
    """Pixel positions ordered by their R score (Fig. 4.3 right, Algorithm 3's re-indexing).

    Attributes:
        n: the number of leading R values averaged.
        step_scores: (batch, T) (1/n) sum_{i<=n} log r_t^i per step.
        position_scores: (batch, P) the score of the step that read each position.
        order: (batch, P) positions by decreasing score (stable on ties): the first k are flipped.
        sorted_scores: (batch, P) position_scores in that order (descending).
    """

    n: int
    step_scores: torch.Tensor
    position_scores: torch.Tensor
    order: torch.Tensor
    sorted_scores: torch.Tensor


def r_ordered_positions(log_r: torch.Tensor, n: int = 1, permutation=None) -> ROrdering:
    """Order input positions by the mean log R of the first ``n`` directions at the step that read them.

    Args:
        log_r: (batch, T, k) log r_t^i per step and Q direction, in Q-column order (the engine's
            ``log_r`` with ``ftle=True``, natural log), one pixel read per step.
        n: how many leading R values to average, 1 <= n <= k.
        permutation: (T,) the reading order (step t reads position permutation[t]), or None.
    """
    if not isinstance(log_r, torch.Tensor) or log_r.ndim != 3:
        raise ValueError(f"log_r must be a tensor (batch, T, k), got {getattr(log_r, 'shape', type(log_r).__name__)}")
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= log_r.shape[-1]:
        raise ValueError(f"n must be an int in [1, {log_r.shape[-1]}] (the number of R values per step), got {n!r}")
    step_scores = log_r[..., :n].mean(dim=-1)
    position_scores, order = order_by_step_scores(step_scores, permutation)
    return ROrdering(n=n, step_scores=step_scores, position_scores=position_scores, order=order,
                     sorted_scores=position_scores.gather(-1, order))


def order_by_step_scores(step_scores: torch.Tensor, permutation=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Map per-step scores back to input positions and order the positions by decreasing score.

    Args:
        step_scores: (batch, T) a score for each step (one pixel read per step); -inf sends a step last.
        permutation: (T,) the reading order (step t reads position permutation[t]), or None.

    Returns:
        (position_scores (batch, P), order (batch, P)): the score of the step that read each position,
        and the positions by decreasing score (stable on ties: the earlier position first).
    """
    if not isinstance(step_scores, torch.Tensor) or step_scores.ndim != 2:
        raise ValueError(f"step_scores must be a tensor (batch, T), got {getattr(step_scores, 'shape', type(step_scores).__name__)}")
    inverse = torch.argsort(_reading_order(permutation, step_scores.shape[1], step_scores.device))
    position_scores = step_scores[:, inverse]
    return position_scores, torch.argsort(position_scores, dim=-1, descending=True, stable=True)


def flip_images(images: torch.Tensor, positions: torch.Tensor, threshold: float = 1e-3) -> tuple[torch.Tensor, torch.Tensor]:
    """Algorithm 3: flip the given positions of each image.

    Args:
        images: (batch, P) values in [0, 1].
        positions: (batch, k) positions per image, or (k,) shared by every image; distinct within a row.
        threshold: a pixel above it is set to 0 ("down"), any other to 1 ("up").

    Returns:
        (flipped images (batch, P), up (batch, k) True where the flip was "up").
    """
    if positions.ndim == 1:
        positions = positions.expand(images.shape[0], -1)
    if positions.ndim != 2 or positions.shape[0] != images.shape[0]:
        raise ValueError(f"positions must be (batch, k) or (k,) for images {tuple(images.shape)}, got {tuple(positions.shape)}")
    positions = positions.to(images.device).long()
    if bool(((positions < 0) | (positions >= images.shape[1])).any()):
        raise ValueError(f"positions must lie in [0, {images.shape[1] - 1}]")
    up = images.gather(1, positions) <= threshold
    return images.scatter(1, positions, up.to(images.dtype)), up


@dataclass(frozen=True)
class FlipResult:
    """R-guided and random flips for each k (Fig. 4.4, Table 4.1). Loss = last-step cross-entropy from h_0 = 0.

    Attributes:
        ks: the numbers of flipped pixels, in the order given.
        base_loss: (batch,) loss of the unflipped images.
        r_increase: (K, batch) loss(R-flipped) - loss(original): y_R.
        random_increase: (K, draws, batch) loss(random draw) - loss(original): y_rand.
        up_flips, down_flips: (K, batch) how many of each image's k R-guided flips went up / down.
        order: (batch, P) the ranking used; the R-flipped positions for k are order[:, :k].
        random_positions: one (draws, k) tensor per k; draw j flips the same positions in every image.
    """

    ks: tuple[int, ...]
    base_loss: torch.Tensor
    r_increase: torch.Tensor
    random_increase: torch.Tensor
    up_flips: torch.Tensor
    down_flips: torch.Tensor
    order: torch.Tensor
    random_positions: tuple[torch.Tensor, ...]

    def significance(self) -> tuple[FlipSignificance, ...]:
        """Table 4.1's test (and the Wilcoxon check) for every k, in the order of ``ks``."""
        return tuple(flip_significance(self.r_increase[i], self.random_increase[i]) for i in range(len(self.ks)))

    def table(self):
        """A pandas DataFrame, one row per k: k, mean increases, Delta, sigma, p, Wilcoxon p, median rank."""
        import pandas as pd

        rows = []
        for k, r_inc, rand_inc, test in zip(self.ks, self.r_increase, self.random_increase, self.significance()):
            rows.append({"k": k, "mean_r": float(r_inc.mean()), "mean_random": float(rand_inc.mean()), "delta": test.delta,
                         "standard_error": test.standard_error, "p": test.p, "wilcoxon_p": test.wilcoxon_p,
                         "median_rank": float(np.median(test.ranks))})
        return pd.DataFrame(rows)


def _losses(rnn: VanillaRNN, images: torch.Tensor, labels: torch.Tensor, permutation, batch_size: int) -> torch.Tensor:
    out = []
    for start in range(0, images.shape[0], batch_size):
        logits = final_logits(rnn, as_sequence(images[start : start + batch_size], permutation))
        out.append(torch.nn.functional.cross_entropy(logits, labels[start : start + batch_size], reduction="none"))
    return torch.cat(out)


def flip_increase(rnn: VanillaRNN, images: torch.Tensor, labels: torch.Tensor, positions: torch.Tensor, *,
                  permutation=None, base: torch.Tensor | None = None, threshold: float = 1e-3,
                  batch_size: int = 2048) -> torch.Tensor:
    """Loss increase of each image when the given positions are flipped (Algorithm 3's damage).

    Args:
        rnn, images, labels: as :func:`flip_experiment` (images (batch, P) in [0, 1]).
        positions: (..., batch, k) positions per image (any leading axes, e.g. draws), or (k,) shared.
        base: (batch,) the loss of the unflipped images, if already known.

    Returns:
        (..., batch): cross-entropy after the full sequence from h_0 = 0, flipped minus unflipped.
    """
    check_network(rnn)
    if not isinstance(images, torch.Tensor) or images.ndim != 2 or not images.is_floating_point():
        raise ValueError("images must be a floating-point tensor (batch, P) of flattened images")
    batch = images.shape[0]
    images = images.to(rnn.dtype)
    labels = torch.as_tensor(labels, device=images.device).long()
    positions = torch.as_tensor(positions, device=images.device)
    if positions.ndim == 1:
        positions = positions.expand(batch, -1)
    if positions.ndim < 2 or positions.shape[-2] != batch:
        raise ValueError(f"positions must be (..., batch, k) with batch = {batch}, or (k,), got {tuple(positions.shape)}")
    lead = positions.shape[:-2]
    flat = positions.reshape(-1, batch, positions.shape[-1])
    with torch.no_grad():
        if base is None:
            base = _losses(rnn, images, labels, permutation, batch_size)
        flipped = torch.cat([flip_images(images, p, threshold)[0] for p in flat])
        losses = _losses(rnn, flipped, labels.repeat(flat.shape[0]), permutation, batch_size)
    return (losses.reshape(flat.shape[0], batch) - base).reshape(*lead, batch)


def flip_experiment(rnn: VanillaRNN, images: torch.Tensor, labels: torch.Tensor, order: torch.Tensor, ks: Sequence[int], *,
                    permutation=None, draws: int = 50, seed: int = 0, threshold: float = 1e-3, batch_size: int = 2048) -> FlipResult:
    """The flip protocol of spec §3.6: R-guided top-k flips against ``draws`` random sets of k positions.

    For each k the R-guided flip changes each image's first k positions of ``order``; random draw j
    changes one set of k positions drawn uniformly without replacement and shared by every image (as
    the original code did). The random sets come from a private generator seeded with ``seed``,
    drawn k by k in the order of ``ks``. Each loss is the cross-entropy of the prediction after the
    full sequence from h_0 = 0, with the network in evaluation mode.

    Args:
        rnn: the network (pixel-wise: input_size 1).
        images: (batch, P) flattened images in natural order, values in [0, 1].
        labels: (batch,) class ids.
        order: (batch, P) positions by decreasing score, e.g. :attr:`ROrdering.order`.
        ks: numbers of pixels to flip, each in [1, P].
        permutation: (P,) reading order, step t reads position permutation[t]; None for the identity.
        draws: random sets per k (50 in the dissertation).
        batch_size: sequences per forward pass.
    """
    check_network(rnn)
    if rnn.input_size != 1:
        raise ValueError(f"the flip protocol is pixel-wise: the network must read one pixel per step (input_size 1), "
                         f"got {rnn.input_size}")
    if not isinstance(images, torch.Tensor) or images.ndim != 2 or not images.is_floating_point():
        raise ValueError("images must be a floating-point tensor (batch, P) of flattened images")
    if bool(((images < 0) | (images > 1)).any()):
        raise ValueError("images must hold pixel values in [0, 1] (flips set pixels to 0 or 1); undo any normalisation first")
    batch, positions = images.shape
    ks = tuple(ks)
    if not ks or any(isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= positions for k in ks):
        raise ValueError(f"ks must be a non-empty list of ints in [1, {positions}] (at most the number of positions), got {list(ks)}")
    if isinstance(draws, bool) or not isinstance(draws, int) or draws < 1:
        raise ValueError(f"draws must be a positive int, got {draws!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    labels = torch.as_tensor(labels, device=images.device)
    if labels.shape != (batch,) or labels.is_floating_point() or bool(((labels < 0) | (labels >= rnn.output_size)).any()):
        raise ValueError(f"labels must be {batch} class ids in [0, {rnn.output_size - 1}]")
    order = torch.as_tensor(order, device=images.device)
    every_position = torch.arange(positions, device=order.device).expand(batch, -1)
    if order.shape != (batch, positions) or not torch.equal(order.sort(dim=-1).values, every_position):
        raise ValueError(f"order must be (batch, P) = {(batch, positions)}, each row a permutation of the positions")
    images = images.to(rnn.dtype)
    labels = labels.long()
    _reading_order(permutation, positions, images.device)  # validate once, before the work

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        base = _losses(rnn, images, labels, permutation, batch_size)
    r_inc, rand_inc, ups, random_sets = [], [], [], []
    for k in ks:
        chosen = torch.stack([torch.randperm(positions, generator=generator)[:k] for _ in range(draws)]).to(images.device)
        both = torch.cat([order[None, :, :k], chosen[:, None].expand(-1, batch, -1)])  # (1 + draws, batch, k)
        increase = flip_increase(rnn, images, labels, both, permutation=permutation, base=base, threshold=threshold,
                                 batch_size=batch_size)
        r_inc.append(increase[0])
        rand_inc.append(increase[1:])
        ups.append((images.gather(1, order[:, :k]) <= threshold).sum(dim=-1))
        random_sets.append(chosen)
    up_flips = torch.stack(ups)
    return FlipResult(ks=ks, base_loss=base, r_increase=torch.stack(r_inc), random_increase=torch.stack(rand_inc),
                      up_flips=up_flips, down_flips=torch.tensor(ks, device=images.device)[:, None] - up_flips, order=order,
                      random_positions=tuple(random_sets))


def flipped_probabilities(rnn: VanillaRNN, images: torch.Tensor, positions: torch.Tensor | None = None, *,
                          permutation=None, threshold: float = 1e-3) -> torch.Tensor:
    """Softmax outputs (batch, C) after the full sequence from h_0 = 0, of the images flipped at
    ``positions`` ((batch, k) or (k,) shared; None: the images as they are), Algorithm 3's flip."""
    check_network(rnn)
    if positions is not None:
        images = flip_images(images, positions, threshold)[0]
    with torch.no_grad():
        return torch.softmax(final_logits(rnn, as_sequence(images.to(rnn.dtype), permutation)), dim=-1)
