"""The dissertation's chapter-3 numbers, as printed, and the arithmetic that checks them.

Copied from Vogt (2023), ch. 3: Tables 3.1–3.3 (L754–810), B2–B4 (L929–978), D5 (L1089–1099) and
A1 (L895–907); recall and precision in percent as printed, F1 as printed. Chapters set them beside
their own numbers; :func:`f1_from` recomputes an F1 from a printed recall and precision, which is
how the book finds the tables' internal inconsistencies (spec §6, items 5 and 6).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["TASK_TITLES", "TABLE_B", "TABLE_31", "TABLE_32", "TABLE_33", "TABLE_D5", "TABLE_A1", "f1_from", "inconsistencies",
           "interval_text", "median_comparison", "stage_comparison"]

# The chapter's three tasks (the keys of TABLE_B), as the book names them in prose and captions
TASK_TITLES = {"target": "FORCE learning", "charrnn": "character prediction", "smnist": "sequential digits"}

# Tables B2-B4: median classifiers per task, (recall %, precision %, F1)
TABLE_B = {
    "target": {"mean LE": (70.2, 70.9, 0.705), "max LE": (50.1, 50.6, 0.504), "LE PCA": (70.6, 70.0, 0.703),
               "AeLLE": (72.1, 72.8, 0.724)},
    "charrnn": {"mean LE": (83.6, 83.3, 0.834), "max LE": (86.0, 85.8, 0.859), "LE PCA": (86.0, 86.0, 0.860),
                "AeLLE": (87.6, 87.7, 0.877)},
    "smnist": {"mean LE": (61.0, 60.9, 0.609), "max LE": (56.6, 56.7, 0.566), "LE PCA": (60.8, 60.8, 0.608),
               "AeLLE": (85.9, 85.9, 0.859)},
}

# Table 3.1: pre-trained AeLLE (and, in brackets, the loss at that epoch); None = "[-]"
TABLE_31 = {
    "0%": {"AeLLE": (93.8, 77.0, 0.85), "loss": None},
    "10%": {"AeLLE": (91.5, 86.6, 0.89), "loss": (16.9, 95.1, 0.35)},
    "20%": {"AeLLE": (91.8, 86.5, 0.90), "loss": (45.8, 97.7, 0.66)},
    "50%": {"AeLLE": (88.6, 83.7, 0.86), "loss": (77.7, 97.3, 0.86)},
}

# Table 3.2: best-F1 thresholds of the LE statistics beside the pre-trained AeLLE
TABLE_32 = {
    "0%": {"mean LE": (99.1, 55.6, 0.71), "max LE": (65.3, 90.3, 0.72), "LE PCA": (100.0, 55.9, 0.76),
           "AeLLE": (93.8, 77.0, 0.85)},
    "10%": {"mean LE": (97.7, 58.3, 0.73), "max LE": (60.7, 92.6, 0.74), "LE PCA": (96.8, 60.0, 0.74),
            "AeLLE": (91.5, 86.6, 0.89)},
    "20%": {"mean LE": (97.6, 58.5, 0.73), "max LE": (59.5, 94.3, 0.73), "LE PCA": (96.6, 60.3, 0.74),
            "AeLLE": (91.8, 86.5, 0.90)},
    "50%": {"mean LE": (96.4, 58.9, 0.73), "max LE": (58.8, 94.3, 0.72), "LE PCA": (94.9, 60.4, 0.74),
            "AeLLE": (88.6, 83.7, 0.86)},
}

# Table 3.3: F1 of the 2^d-orthant rule on the first d AeLLE PCs
TABLE_33 = {"0%": {1: 0.81, 2: 0.81, 4: 0.84, 10: 0.89}, "50%": {1: 0.84, 2: 0.84, 4: 0.87, 10: 0.91}}

# Table D5: composition (%) of the region right of the AeLLE PC1 median and mean
TABLE_D5 = {"lstm": (19.8, 14.5), "gru": (18.6, 13.5), "rnn": (0.0, 0.0), "asrnn": (5.5, 12.6), "cornn": (0.4, 17.9),
            "lipschitz": (23.9, 17.2), "noisy": (20.7, 16.1), "lem": (11.1, 8.2)}

# Table A1: (task, network, hidden sizes, init range, networks, loss)
TABLE_A1 = [
    ("target learning", "random RNN (FORCE)", "512", "1.0 – 2.0", "1200", "MAE"),
    ("CharRNN", "LSTM", "64, 128, 256, 512", "0.04 – 0.40", "1200", "CE"),
    ("SMNIST", "RNN / LSTM / GRU", "64", "0.1 – 3.0", "200 each", "CE"),
    ("SMNIST", "coRNN / ASRNN", "64", "0.1 – 30", "200 each", "CE"),
    ("SMNIST", "Lipschitz RNN", "64", "0.1 – 20", "200", "CE"),
    ("SMNIST", "Noisy RNN", "64", "0.1 – 5", "200", "CE"),
    ("SMNIST", "LEM", "64", "0.1 – 10", "200", "CE"),
]


def f1_from(recall_percent: float, precision_percent: float) -> float:
    """F1 = 2PR / (P + R) from a recall and precision printed in percent."""
    r, p = recall_percent / 100.0, precision_percent / 100.0
    return 2 * p * r / (p + r) if p + r > 0 else 0.0


def inconsistencies(tolerance: float = 0.006) -> pd.DataFrame:
    """Every printed F1 of Tables 3.1, 3.2 and B2–B4 that differs from 2PR/(P+R) of its own printed
    recall and precision by more than ``tolerance`` (0.005 is the rounding of a two-decimal F1, plus a
    little for the rounding of R and P to 0.1 %).

    Columns: table, stage, classifier, recall, precision, printed F1, F1 from R and P, difference.
    """
    entries = [("3.1", stage, name, v) for stage, row in TABLE_31.items() for name, v in row.items() if v]
    entries += [("3.2", stage, name, v) for stage, row in TABLE_32.items() for name, v in row.items()]
    entries += [(f"B{2 + i}", "", name, v) for i, row in enumerate(TABLE_B.values()) for name, v in row.items()]
    rows = []
    for table, stage, name, (recall, precision, printed) in entries:
        computed = f1_from(recall, precision)
        if abs(computed - printed) > tolerance:
            rows.append({"table": table, "stage": stage, "classifier": name, "recall": recall, "precision": precision,
                         "printed F1": printed, "F1 from R and P": round(computed, 3),
                         "difference": round(printed - computed, 3)})
    return pd.DataFrame(rows)


def interval_text(estimate: float, low: float, high: float, digits: int = 2) -> str:
    """"0.73 [0.62, 0.82]": an estimate and its interval, for a table cell."""
    return f"{estimate:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def _paper_cells(values) -> dict:
    if values is None:
        return {"paper R / P (%)": "–", "paper F1": None}
    recall, precision, f1 = values
    return {"paper R / P (%)": f"{recall:.1f} / {precision:.1f}", "paper F1": f1}


def _percent(value: float) -> str:
    """A share as a whole percent, or a dash where it is undefined (a precision with no positives)."""
    return "–" if not np.isfinite(value) else f"{100 * value:.0f}"


def _our_cells(row) -> dict:
    return {"ours R / P (%)": f"{_percent(row.recall)} / {_percent(row.precision)}",
            "ours F1 [95 %]": interval_text(row.f1, row.f1_low, row.f1_high),
            "sd, seeds": round(float(row.f1_seed_sd), 3)}


# The matched read-out of each median classifier (lyapbook.aelle.readouts names)
_READOUT_OF = {"mean LE": "mean LE", "max LE": "max LE", "LE PCA": "LE PCA (2 PCs)", "AeLLE": "AeLLE (2 PCs)",
               "AeLLE head": "AeLLE head"}


def median_comparison(table: pd.DataFrame, task: str, readouts: pd.DataFrame | None = None) -> pd.DataFrame:
    """Tables B2–B4 side by side: the dissertation's recall / precision / F1 (``task`` one of
    :data:`TABLE_B`) and ours from :meth:`CrossValidation.table` (held out, seed-averaged, 95 %
    bootstrap interval over networks, spread over seeds), with the all-networks reading's F1.

    With ``readouts`` (:meth:`Readouts.table`), each row also carries its matched read-outs (the
    logistic classifier's F1 and AUC on the representation's features, the PCs as a plane) and
    the representations that have no median rule (the (mean, max) pair, the hyperparameters) are
    added as rows of their own."""
    extra = {} if readouts is None else readouts.set_index("representation").to_dict("index")

    def matched(name):
        row = extra.get(name)
        if row is None:
            return {}
        gap = ("–" if pd.isna(row.get("auc_gap")) else
               interval_text(row["auc_gap"], row["auc_gap_low"], row["auc_gap_high"]))
        return {"linear F1 [95 %]": interval_text(row["linear_f1"], row["linear_f1_low"], row["linear_f1_high"]),
                "AUC [95 %]": interval_text(row["auc"], row["auc_low"], row["auc_high"]),
                "AUC minus hyperparameters": gap}

    rows = []
    for row in table.itertuples():
        rows.append({"classifier": row.classifier, **_paper_cells(TABLE_B[task].get(row.classifier)),
                     **_our_cells(row), "ours F1, all networks": round(float(row.f1_all), 3),
                     **matched(_READOUT_OF.get(row.classifier, row.classifier))})
    for name in extra:
        if name not in _READOUT_OF.values():
            rows.append({"classifier": name, **_paper_cells(None), **matched(name)})
    return pd.DataFrame(rows)


def stage_comparison(table: pd.DataFrame, reference: dict, extra: tuple[str, ...] = ()) -> pd.DataFrame:
    """Tables 3.1 and 3.2 side by side: ``table`` from :meth:`Pretrained.table` (one row per stage
    and classifier), ``reference`` :data:`TABLE_31` or :data:`TABLE_32`; rows the dissertation does
    not print are dropped, except the classifiers named in ``extra`` (paper cells empty)."""
    rows = []
    for row in table.itertuples():
        if row.classifier not in reference.get(row.stage, {}) and row.classifier not in extra:
            continue
        rows.append({"training": row.stage, "classifier": row.classifier,
                     **_paper_cells(reference.get(row.stage, {}).get(row.classifier)), **_our_cells(row)})
    return pd.DataFrame(rows)
