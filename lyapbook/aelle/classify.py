"""The simple classifiers of chapter 3 (spec §1.5): median, best-F1 threshold, 2^d orthants, loss.

Every classifier predicts *high accuracy* (the positive class, ``good``). A statistic s (mean LE,
max LE, LE-PC1, AeLLE-PC1, or the loss itself) is cut at one threshold t; a rule's ``direction`` is
+1 when good means s > t and −1 when good means s < t, and a value exactly at t is predicted bad.
Rules are fitted on one split and applied unchanged to another; fitting on a single class raises.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .metrics import PRF1, _bool_vector, _float_vector, prf1

__all__ = ["ThresholdRule", "ThresholdScan", "MedianClassification", "OrthantRule", "best_f1_threshold",
           "median_direction", "median_classifier", "orthant_classifier", "loss_classifier"]


def _paired(statistic, good, what: str) -> tuple[np.ndarray, np.ndarray]:
    values, labels = _float_vector(statistic, f"{what} statistic"), _bool_vector(good, f"{what} good")
    if values.shape != labels.shape:
        raise ValueError(f"{what}: statistic and good must have the same length, got {len(values)} and {len(labels)}")
    if labels.all() or not labels.any():
        raise ValueError(f"{what} good: a classifier needs both classes to be fitted, got {int(labels.sum())} good and "
                         f"{int((~labels).sum())} bad; choose the label threshold inside the range of the losses "
                         f"(e.g. their median) or a split that holds both classes")
    return values, labels


@dataclass(frozen=True)
class ThresholdRule:
    """Predict good when ``direction * (s - threshold) > 0``."""

    threshold: float
    direction: int

    def __post_init__(self):
        if self.direction not in (1, -1):
            raise ValueError(f"direction: must be +1 (good above) or -1 (good below), got {self.direction}")

    def predict(self, statistic) -> np.ndarray:
        """Predicted-good flags (n,) for statistic values (n,)."""
        return self.direction * (_float_vector(statistic, "statistic") - self.threshold) > 0

    def evaluate(self, statistic, good) -> PRF1:
        return prf1(self.predict(statistic), good)


def median_direction(statistic, good) -> int:
    """+1 if more good networks lie above the median of ``statistic`` than below it, else −1 (ties: +1).

    With PCs oriented "good to the right" (:func:`~lyapbook.aelle.fit_pca`) the answer is usually +1.
    """
    values, labels = _paired(statistic, good, "direction")
    median = np.median(values)
    above, below = int((labels & (values > median)).sum()), int((labels & (values < median)).sum())
    return 1 if above >= below else -1


@dataclass(frozen=True)
class MedianClassification:
    """The median classifier evaluated on one set (Tables B2–B4).

    ``rule.threshold`` is the median of the evaluated statistic, ``rule.direction`` came from
    ``direction_from`` ("train" or "evaluated"); ``predicted`` (n,) are the evaluated flags.
    """

    rule: ThresholdRule
    scores: PRF1
    predicted: np.ndarray
    direction_from: str


def median_classifier(statistic, good, *, train_statistic=None, train_good=None) -> MedianClassification:
    """Cut ``statistic`` (n,) at its own median; score against ``good`` (n,) (Tables B2–B4, Figs 3.7–3.9).

    The dissertation takes both medians (labels and statistic) on the evaluated set, which is why
    P ≈ R in its tables; the labels are the caller's (:func:`label_good` on the same set). The side
    predicted good is chosen on the training split when ``train_statistic``/``train_good`` are
    given (the held-out reading of spec §1.5), else on the evaluated set itself (the "all networks"
    variant, as the original code computed it).
    """
    values, labels = _float_vector(statistic, "statistic"), _bool_vector(good, "good")
    if values.shape != labels.shape:
        raise ValueError(f"statistic and good must have the same length, got {len(values)} and {len(labels)}")
    if (train_statistic is None) != (train_good is None):
        raise ValueError("train_statistic and train_good: give both (direction from training) or neither")
    if train_statistic is None:
        direction, source = median_direction(values, labels), "evaluated"
    else:
        direction, source = median_direction(train_statistic, train_good), "train"
    rule = ThresholdRule(float(np.median(values)), direction)
    predicted = rule.predict(values)
    return MedianClassification(rule=rule, scores=prf1(predicted, labels), predicted=predicted, direction_from=source)


@dataclass(frozen=True)
class ThresholdScan:
    """The best-F1 rule and every candidate it was chosen from (fitting set).

    ``thresholds`` (m,) are the midpoints between consecutive distinct sorted values; ``f1_above``
    and ``f1_below`` (m,) the F1 of "good above" and "good below" at each.
    """

    rule: ThresholdRule
    best_f1: float
    thresholds: np.ndarray
    f1_above: np.ndarray
    f1_below: np.ndarray


def best_f1_threshold(statistic, good) -> ThresholdScan:
    """The threshold and direction that maximise F1 on (``statistic``, ``good``), both (n,) (Table 3.2).

    Candidates are all midpoints between consecutive distinct values, in both directions; the
    trivial all-good and all-bad rules are not candidates. Ties go to "good above", then to the
    smallest threshold. Fitted on the training split for LE mean/max/PC1 (Table 3.2, Fig 3.11) and
    on the validation split for AeLLE-PC1 (Table 3.1, Fig 3.10); apply with ``scan.rule.predict``.
    """
    values, labels = _paired(statistic, good, "best_f1_threshold")
    order = np.argsort(values, kind="stable")
    values, labels = values[order], labels[order]
    cuts = np.flatnonzero(np.diff(values) > 0) + 1  # first index of the upper group at each cut
    if cuts.size == 0:
        raise ValueError("statistic: all values are equal, so no threshold separates anything")
    thresholds = 0.5 * (values[cuts - 1] + values[cuts])
    good_below = np.cumsum(labels)[cuts - 1]  # good networks strictly below each cut
    n_good, n = labels.sum(), len(labels)
    # good above: TP = good above, FP = (n - cut) - TP, FN = good below
    tp_up = n_good - good_below
    f1_above = 2 * tp_up / (2 * tp_up + (n - cuts - tp_up) + good_below)
    f1_below = 2 * good_below / (2 * good_below + (cuts - good_below) + tp_up)
    both = np.concatenate([f1_above, f1_below])
    best = int(np.argmax(both))
    rule = ThresholdRule(float(thresholds[best % len(cuts)]), 1 if best < len(cuts) else -1)
    return ThresholdScan(rule=rule, best_f1=float(both[best]), thresholds=thresholds, f1_above=f1_above,
                         f1_below=f1_below)


def _score_matrix(scores, d: int) -> np.ndarray:
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2 or scores.shape[1] < d:
        raise ValueError(f"scores: expected shape (n, >= {d}) (PC scores), got {scores.shape}; pass at least d columns")
    return scores


def _cell_codes(scores: np.ndarray, medians: np.ndarray) -> np.ndarray:
    """Bit j of a sample's code is set when its score on PC j lies above that PC's median."""
    d = len(medians)
    return (scores[:, :d] > medians).astype(np.int64) @ (np.int64(1) << np.arange(d, dtype=np.int64))


@dataclass(frozen=True)
class OrthantRule:
    """The 2^d-orthant union rule (Table 3.3), fitted on training scores.

    ``medians`` (d,) split each PC; a cell's code has bit j set when PC j lies above its median.
    ``cells`` (c,) are the codes of the non-empty training cells with their ``cell_good`` and
    ``cell_bad`` counts; ``optimal`` (c,) marks cells with strictly more good than bad samples.
    """

    medians: np.ndarray
    cells: np.ndarray
    cell_good: np.ndarray
    cell_bad: np.ndarray
    optimal: np.ndarray

    @property
    def d(self) -> int:
        return len(self.medians)

    @property
    def n_nonempty(self) -> int:
        return len(self.cells)

    def cell_of(self, scores) -> np.ndarray:
        """Cell codes (n,) of scores (n, ≥d) (only the first d columns are read)."""
        return _cell_codes(_score_matrix(scores, self.d), self.medians)

    def predict(self, scores) -> np.ndarray:
        """Predicted good (n,): the sample's cell is an optimal training cell (empty cells never are)."""
        return np.isin(self.cell_of(scores), self.cells[self.optimal])


def orthant_classifier(scores, good, d: int) -> OrthantRule:
    """Fit the union-of-orthants rule on the first ``d`` columns of training ``scores`` (n, ≥d).

    Each PC is split at its training median; of the 2^d cells, the predicted-good region is the
    union of those holding strictly more good than bad training samples (ties and empty cells are
    not optimal). With d = 10 there are 1024 cells, most of them empty unless n is in the thousands:
    ``n_nonempty`` says how many were seen.
    """
    if not isinstance(d, (int, np.integer)) or not 1 <= d <= 62:
        raise ValueError(f"d: must be an integer between 1 and 62, got {d!r}")
    scores = _score_matrix(scores, d)
    labels = _paired(scores[:, 0], good, "orthant_classifier")[1]
    medians = np.median(scores[:, :d], axis=0)
    cells, inverse = np.unique(_cell_codes(scores, medians), return_inverse=True)
    cell_good = np.bincount(inverse, weights=labels, minlength=len(cells)).astype(int)
    cell_bad = np.bincount(inverse, weights=~labels, minlength=len(cells)).astype(int)
    return OrthantRule(medians=medians, cells=cells, cell_good=cell_good, cell_bad=cell_bad,
                       optimal=cell_good > cell_bad)


def loss_classifier(threshold: float) -> ThresholdRule:
    """The loss-based classifier of Table 3.1 (bracketed numbers): good iff the loss *at this epoch* < threshold.

    Use the label threshold, so the rule agrees with the labels on the final loss; it is undefined
    before training (epoch 0, "[–]"), where there is no loss that says anything yet.
    """
    return ThresholdRule(float(threshold), -1)
