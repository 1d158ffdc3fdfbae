"""The dissertation's chapter-4 numbers as printed, for the "paper" columns of the book.

Sources (seed text of the dissertation): Table 4.1 (L1311-1321), the alignment standard
deviations quoted with Fig. 4.1 (L1240-1242), the pixel counts of the R-guided flips.
"""

from __future__ import annotations

__all__ = ["ALIGNMENT_STD", "FLIP_PIXELS", "PAPER_HIDDEN", "ROW_STEPS", "SINGULAR_VECTORS", "TABLE_4_1", "table_4_1"]

#: k, mu_R - mu_rand, the column printed as "Variance" (a standard error sigma), one-sided p.
TABLE_4_1: tuple[tuple[int, float, float, float], ...] = (
    (1, -0.028, 0.009, 0.998), (5, -0.008, 0.084, 0.540), (10, 0.025, 0.303, 0.468),
    (20, 0.313, 0.341, 0.179), (30, 0.260, 0.359, 0.234), (50, 0.794, 0.523, 0.065),
    (75, 0.814, 0.475, 0.043), (100, 1.050, 0.530, 0.024), (200, 1.363, 0.824, 0.049),
)

#: std of the alignment of the first 5 singular vectors of Delta V with the first, last and
#: random ten Q vectors: (before training, after 5 epochs), RNN of 128 units.
ALIGNMENT_STD: dict[str, tuple[float, float]] = {"first": (0.089, 0.200), "last": (0.089, 0.051),
                                                 "random": (0.088, 0.067)}

#: pixels of one permuted MNIST sequence (the flips' k are counted out of these).
FLIP_PIXELS = 784

#: steps of the row-wise setup: the 28 rows of an MNIST image.
ROW_STEPS = 28

#: singular vectors of Delta V_t in each alignment panel (Figs 4.1, 4.2, C2).
SINGULAR_VECTORS = 5

#: hidden sizes of the two setups: row-wise alignment, pixel-wise flips.
PAPER_HIDDEN = {"rows": 128, "pixels": 512}


def table_4_1():
    """Table 4.1 as a DataFrame: k, share of the pixels, Delta, sigma, p."""
    import pandas as pd

    frame = pd.DataFrame(TABLE_4_1, columns=["k", "delta", "sigma", "p"])
    frame.insert(1, "share", frame.k / FLIP_PIXELS)
    return frame
