"""Drawing helpers for chapter 3's figures: embeddings coloured by accuracy or by a hyperparameter,
the three projections of Figs B1–B4, and the AeLLE diagram of Fig 3.6.

Each helper draws into axes it is given and returns what it drew (so a chapter can add to it and
a test can count it). High accuracy is green, low accuracy red, as in the dissertation.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["GOOD", "BAD", "accuracy_scatter", "stacked_histogram", "value_scatter", "category_scatter",
           "statistics_scatter", "draw_aelle_diagram"]

GOOD, BAD = "tab:green", "tab:red"


def accuracy_scatter(ax, points, good, *, held=None, boundary: float | None = None, size: float = 18,
                     labels: tuple[str, str] = ("PC1", "PC2")):
    """Points (n, 2) green where ``good`` (n,), red elsewhere; ``held`` (n,) flags held-out points
    (drawn with a black edge); ``boundary`` draws the classifier's vertical line. Returns the two
    scatter collections (good, bad)."""
    points, good = np.asarray(points, dtype=float), np.asarray(good, dtype=bool)
    # an edge only where held out: a per-point line width (a colour 'none' would take the alpha)
    widths = np.where(np.asarray(held, dtype=bool), 0.9, 0.0) if held is not None else np.zeros(len(good))
    drawn = []
    for mask, colour, name in ((good, GOOD, "high accuracy"), (~good, BAD, "low accuracy")):
        drawn.append(ax.scatter(points[mask, 0], points[mask, 1], s=size, c=colour, edgecolors="k",
                                linewidths=widths[mask], alpha=0.8, label=name))
    if boundary is not None:
        ax.axvline(boundary, color="k", lw=1.2)
    ax.set_xlabel(labels[0])
    ax.set_ylabel(labels[1])
    return drawn


def stacked_histogram(ax, values, good, *, bins: int = 20, boundary: float | None = None, range_=None):
    """Stacked histogram of ``values`` (n,): high accuracy (green) under low accuracy (red)."""
    values, good = np.asarray(values, dtype=float), np.asarray(good, dtype=bool)
    edges = np.histogram_bin_edges(values, bins=bins, range=range_)
    counts, _, _ = ax.hist([values[good], values[~good]], bins=edges, stacked=True, color=[GOOD, BAD], alpha=0.8)
    if boundary is not None:
        ax.axvline(boundary, color="k", lw=1.2)
    ax.set_ylabel("networks")
    return counts


def value_scatter(ax, points, values, *, cmap: str = "viridis", label: str = "", size: float = 18, log: bool = False):
    """Points (n, 2) coloured by a number per point (``log``: by its base-10 logarithm); returns the
    collection (pass it to ``fig.colorbar``)."""
    points, values = np.asarray(points, dtype=float), np.asarray(values, dtype=float)
    shown = np.log10(values) if log else values
    drawn = ax.scatter(points[:, 0], points[:, 1], c=shown, cmap=cmap, s=size, alpha=0.85)
    drawn.colorbar_label = f"log10 {label}" if log else label
    return drawn


def category_scatter(ax, points, categories, *, order: Sequence | None = None, size: float = 18,
                     palette: str = "tab10"):
    """Points (n, 2) coloured by category (architecture, hidden size), with a legend entry each."""
    import matplotlib

    points, categories = np.asarray(points, dtype=float), np.asarray(categories)
    names = list(order) if order is not None else sorted(set(categories.tolist()), key=str)
    colours = matplotlib.colormaps[palette]
    drawn = []
    for k, name in enumerate(names):
        mask = categories == name
        drawn.append(ax.scatter(points[mask, 0], points[mask, 1], s=size, color=colours(k % colours.N), alpha=0.85,
                                label=str(name)))
    return drawn


def statistics_scatter(ax, mean_le, max_le, good, *, boundaries: bool = True):
    """Fig B1–B3 (top): max LE against mean LE, green/red, black bars at each statistic's median."""
    accuracy_scatter(ax, np.column_stack([mean_le, max_le]), good, labels=("mean LE", "max LE"))
    if boundaries:
        ax.axvline(np.median(mean_le), color="k", lw=1.2)
        ax.axhline(np.median(max_le), color="k", lw=1.2)


def _box(ax, x, y, width, height, text, colour):
    from matplotlib.patches import FancyBboxPatch

    ax.add_patch(FancyBboxPatch((x - width / 2, y - height / 2), width, height, boxstyle="round,pad=0.05",
                                facecolor=colour, edgecolor="k", lw=1.0, zorder=2))
    ax.text(x, y, text, ha="center", va="center", fontsize=9, zorder=3)


def _arrow(ax, start, end):
    from matplotlib.patches import FancyArrowPatch

    ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=14, lw=1.4, color="k", zorder=4))


def draw_aelle_diagram(ax, length: int, hidden: int, latent: int):
    """Fig 3.6 (A): spectrum -> encoder -> latent -> (decoder -> reconstruction; linear head -> loss),
    with the layer sizes of the model actually trained. Returns the number of arrows drawn."""
    ax.set_xlim(0, 12)
    ax.set_ylim(0, 7)
    ax.axis("off")
    boxes = {"spectrum": (1.0, 3.5, f"spectrum Z\n({length})", "0.9"),
             "encoder": (3.4, 3.5, f"encoder φ\n{length} → {hidden}\n→ {latent}", "#9ecae1"),
             "latent": (5.7, 3.5, f"latent\n({latent})", "#bcbddc"),
             "decoder": (8.2, 5.5, f"decoder ψ\n{latent} → {hidden}\n→ {length}", "#fc9272"),
             "head": (8.2, 1.5, f"head ξ (linear)\n{latent} → 1", "#c7e9c0"),
             "recon": (10.9, 5.5, "Ẑ", "0.9"), "loss": (10.9, 1.5, "T̂", "0.9")}
    for x, y, text, colour in boxes.values():
        _box(ax, x, y, 1.7, 1.5, text, colour)
    links = (((1.95, 3.5), (2.45, 3.5)), ((4.35, 3.5), (4.75, 3.5)), ((6.6, 4.0), (7.25, 5.0)),
             ((6.6, 3.0), (7.25, 2.0)), ((9.15, 5.5), (9.95, 5.5)), ((9.15, 1.5), (9.95, 1.5)))
    for start, end in links:
        _arrow(ax, start, end)
    ax.text(10.9, 6.65, "reconstruction loss: mean |Z − Ẑ|", ha="center", fontsize=8)
    ax.text(10.9, 0.25, "prediction loss: (T − T̂)²", ha="center", fontsize=8)
    ax.text(3.4, 0.6, "total = reconstruction + α · prediction\n(α raised in four stages)", ha="center",
            fontsize=9)
    return len(links)
