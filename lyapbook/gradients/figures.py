"""Drawing helpers for the chapter-4 figures (alignment histograms and maps, flipped images).

Each helper draws into axes it is given and returns what it computed, so a chapter composes the
panels and keeps the numbers it prints beside them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from .alignment import AlignmentDistribution, alignment_distribution, alignment_std_map

__all__ = ["alignment_histogram_grid", "alignment_std_panel", "flip_examples", "image_panel", "output_bars"]

SET_TITLES = {"first": "first", "last": "last", "random": "random"}
RANDOM_SHADES = ("tab:red", "orangered", "tab:orange", "gold", "khaki")


def alignment_histogram_grid(axes, alignments: Mapping[str, torch.Tensor], q_sets: Mapping[str, torch.Tensor],
                             sv_index: torch.Tensor, *, bins: int = 100, baseline: float | None = None,
                             set_size: int = 10) -> dict[tuple[str, str], AlignmentDistribution]:
    """Figs. 4.1 and C2: one row per checkpoint (``alignments``: label -> (T, batch, N, N)), one column
    per Q set; histograms of each singular vector's alignments stacked, the pooled std in the corner,
    dashed lines at +-``baseline`` (1/sqrt(N)). ``sv_index``: (count,) fixed or (T, count) per step
    (:func:`~lyapbook.gradients.singular_vector_index`), masked entries left out.

    Returns:
        (checkpoint label, set name) -> the :class:`AlignmentDistribution` drawn.
    """
    import matplotlib.pyplot as plt

    sv_index = torch.as_tensor(sv_index)
    count = sv_index.shape[-1]
    colours = plt.get_cmap("viridis")(np.linspace(0.1, 0.9, count))
    # fixed indices are named by their number; per-step ones (counted inside the range) by their slot
    names = [f"{int(i) + 1}" for i in sv_index] if sv_index.ndim == 1 else [f"{j + 1}" for j in range(count)]
    out = {}
    for r, (row, (label, a)) in enumerate(zip(np.atleast_2d(axes), alignments.items())):
        for c, (ax, (name, index)) in enumerate(zip(row, q_sets.items())):
            dist = alignment_distribution(a, index, sv_index, bins=bins)
            centres = (0.5 * (dist.edges[1:] + dist.edges[:-1])).numpy()
            bottom = np.zeros(bins)
            for j, counts in enumerate(dist.counts.numpy()):
                ax.bar(centres, counts, width=2.0 / bins, bottom=bottom, color=colours[j],
                       label=names[j] if r == 0 and c == 0 else None)
                bottom += counts
            if baseline is not None:
                for sign in (-1, 1):
                    ax.axvline(sign * baseline, color="0.3", ls="--", lw=0.8)
            ax.text(0.03, 0.95, f"std {dist.std:.3f}", transform=ax.transAxes, va="top", fontsize=8)
            ax.set_title(f"{label}: {SET_TITLES.get(name, name)} {set_size} Q", fontsize=9)
            ax.set_xlim(-1, 1)
            out[(label, name)] = dist
    return out


def alignment_std_panel(ax, alignments: torch.Tensor, sv_index: torch.Tensor, random_index: torch.Tensor,
                        *, baseline: float | None = None):
    """Fig. 4.2, one panel: std of the alignment per (step, Q index), dots coloured by step, the random-Q line red.

    Returns the :class:`~lyapbook.gradients.AlignmentStdMap`.
    """
    import matplotlib.pyplot as plt

    result = alignment_std_map(alignments, sv_index, random_index)
    std = result.std.numpy()
    steps, n = std.shape
    colours = plt.get_cmap("viridis")(np.linspace(0, 1, steps))
    for t in range(steps):
        ax.scatter(np.arange(1, n + 1), std[t], s=5, color=colours[t])
    ax.axhline(result.baseline, color="tab:red", lw=1.2)
    if baseline is not None:
        ax.axhline(baseline, color="0.3", ls="--", lw=0.8)
    ax.set_xlabel("Q index")
    ax.set_ylabel("std of alignment")
    return result


def image_panel(ax, image: torch.Tensor, side: int, title: str, marked: torch.Tensor | None = None) -> None:
    """A flattened image (P,) shown as side x side; ``marked`` positions outlined."""
    ax.imshow(image.reshape(side, side).cpu().numpy(), cmap="gray_r", vmin=0, vmax=1)
    if marked is not None:
        rows, cols = np.divmod(marked.cpu().numpy(), side)
        ax.scatter(cols, rows, s=max(4, 400 // side), facecolors="none", edgecolors="tab:blue", linewidths=0.8)
    ax.set_title(title, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])


def output_bars(ax, probabilities: Sequence[np.ndarray], labels: Sequence[str], colours: Sequence[str],
                true_class: int) -> None:
    """Softmax outputs over the classes as grouped bars (original, R-flipped, random flips)."""
    width = 0.8 / len(probabilities)
    for i, (p, label, colour) in enumerate(zip(probabilities, labels, colours)):
        ax.bar(np.arange(len(p)) + (i - (len(probabilities) - 1) / 2) * width, p, width=width, color=colour, label=label)
    ax.set_xticks(range(len(probabilities[0])))
    ax.set_ylim(0, 1)
    ax.set_xlabel(f"class (true: {true_class})", fontsize=8)
    ax.tick_params(labelsize=7)


def flip_examples(axes_rows, rnn, images, labels, side: int, orders, chosen: Sequence[int], k: int,
                  random_sets: Sequence[torch.Tensor], *, permutation=None, random_colours: Sequence[str] = RANDOM_SHADES
                  ) -> dict[int, np.ndarray]:
    """Figs. 4.5 and D3: for each chosen image, three axes: the image, the image with its k positions of
    largest score flipped (circled) and the softmax outputs for the original (black), the R-flipped
    image (blue) and one flip per random set (``random_sets``: (k,) positions each).

    Returns:
        image index -> (2 + len(random_sets), C) the probabilities drawn.
    """
    from .flips import flip_images, flipped_probabilities

    drawn = {}
    for (ax_image, ax_flipped, ax_bars), i in zip(axes_rows, chosen):
        one = images[i : i + 1]
        order = orders[i, :k]
        probabilities = [flipped_probabilities(rnn, one, permutation=permutation)[0],
                         flipped_probabilities(rnn, one, order[None], permutation=permutation)[0]]
        probabilities += [flipped_probabilities(rnn, one, p, permutation=permutation)[0] for p in random_sets]
        image_panel(ax_image, images[i], side, f"test image {i}")
        image_panel(ax_flipped, flip_images(one, order[None])[0][0], side, f"{k} largest $R_1$ flipped", marked=order)
        colours = ["black", "tab:blue", *random_colours[: len(random_sets)]]
        names = ["original", "largest $R_1$", *[f"random {j + 1}" for j in range(len(random_sets))]]
        output_bars(ax_bars, [p.cpu().numpy() for p in probabilities], names, colours, int(labels[i]))
        drawn[int(i)] = torch.stack(probabilities).cpu().numpy()
    return drawn
