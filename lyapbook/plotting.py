"""One figure style for the whole book."""

from __future__ import annotations

import matplotlib as mpl
import seaborn as sns

__all__ = ["use_book_style", "PALETTE", "spectrum_axes"]

# The dissertation's colour order for its four-panel comparisons (blue, orange, green, red).
PALETTE = sns.color_palette("tab10", 4)


def use_book_style() -> None:
    """Seaborn's white-grid theme with the book's sizes; call once at the top of a chapter."""
    sns.set_theme(context="notebook", style="whitegrid", palette="tab10")
    mpl.rcParams.update(
        {
            "figure.figsize": (8.0, 4.5),
            "figure.dpi": 100,
            "axes.titlesize": 11,
            "axes.labelsize": 10,
            "legend.fontsize": 9,
            "savefig.bbox": "tight",
        }
    )


def spectrum_axes(ax, xlabel: str = "exponent index $i$", ylabel: str = r"$\lambda_i$") -> None:
    """Label an axis that shows a spectrum against its index, with the zero line drawn."""
    ax.axhline(0.0, color="0.3", lw=0.8, zorder=0)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
