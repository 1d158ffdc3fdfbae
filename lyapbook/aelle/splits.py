"""Splits by network: all spectra of one network (its epochs) go to the same part, so nothing leaks.

The dissertation splits 70/10/20 (train/validation/test) for the fully trained zoos and 20/20/60 for
the pre-trained experiment (spec §1.6); the teaching profile scores every network by k-fold
cross-validation over networks. Rows are spectra; ``network_ids`` (n_rows,) names each row's network.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["NetworkSplit", "split_by_network", "kfold_by_network"]

_PARTS = ("train", "val", "test")


@dataclass(frozen=True)
class NetworkSplit:
    """Row indices (sorted) of each part, and the network ids each part holds (``networks[part]``)."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    networks: dict[str, np.ndarray]
    seed: int


def _network_table(network_ids, strata) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(unique networks, row -> network code, stratum code per network)."""
    ids = np.asarray(network_ids)
    if ids.ndim != 1 or ids.size == 0:
        raise ValueError(f"network_ids: expected one id per row (a non-empty one-dimensional array), got shape {ids.shape}")
    networks, codes = np.unique(ids, return_inverse=True)
    if strata is None:
        return networks, codes, np.zeros(len(networks), dtype=np.int64)
    strata = np.asarray(strata)
    if strata.shape != ids.shape:
        raise ValueError(f"strata: expected one label per row, shape {ids.shape}, got {strata.shape}")
    _, stratum_codes = np.unique(strata, return_inverse=True)
    per_network = np.full(len(networks), -1)
    per_network[codes] = stratum_codes
    if (per_network[codes] != stratum_codes).any():
        raise ValueError("strata: a network's rows carry different strata; give each network one stratum "
                         "(e.g. its architecture)")
    return networks, codes, per_network


def _largest_remainder(fractions: np.ndarray, total: int) -> np.ndarray:
    """Integer counts summing to ``total``, as close to fractions * total as possible."""
    exact = fractions * total
    counts = np.floor(exact).astype(int)
    order = np.argsort(-(exact - counts), kind="stable")
    counts[order[: total - counts.sum()]] += 1
    return counts


def _check_classes(split: NetworkSplit, good, n_rows: int, required: tuple[str, ...]) -> None:
    if good is None:
        return
    good = np.asarray(good, dtype=bool)
    if good.shape != (n_rows,):
        raise ValueError(f"good: expected one label per row, shape ({n_rows},), got {good.shape}")
    for part in required:
        labels = good[getattr(split, part)]
        if labels.all() or not labels.any():
            raise ValueError(f"split: part {part!r} holds only {'high' if labels.all() else 'low'}-accuracy rows "
                             f"({int(labels.sum())} good, {int((~labels).sum())} bad), so a class is empty; use more "
                             f"networks, other fractions, strata=... or another seed")


def _build(parts: dict[str, np.ndarray], codes: np.ndarray, networks: np.ndarray, seed: int) -> NetworkSplit:
    rows = {part: np.flatnonzero(np.isin(codes, parts.get(part, np.array([], dtype=int))))
            for part in _PARTS}
    return NetworkSplit(**rows, networks={p: networks[np.sort(parts.get(p, np.array([], dtype=int)))] for p in _PARTS},
                        seed=seed)


def split_by_network(network_ids, fractions: tuple[float, ...] = (0.7, 0.1, 0.2), *, seed: int = 0, good=None,
                     strata=None) -> NetworkSplit:
    """Random train / validation / test parts of the networks, in ``fractions`` (2 values: no validation).

    Counts are rounded by largest remainders (per stratum when ``strata`` (n_rows,) is given, e.g. the
    architecture, so each part holds each architecture in proportion). With ``good`` (n_rows,) each
    part of non-zero fraction must hold both classes, else a ``ValueError`` says which part is one-class.
    """
    fractions = np.asarray(fractions, dtype=np.float64)
    if fractions.ndim != 1 or len(fractions) not in (2, 3) or (fractions < 0).any() or abs(fractions.sum() - 1) > 1e-9:
        raise ValueError(f"fractions: expected 2 (train, test) or 3 (train, val, test) non-negative numbers summing to "
                         f"1, got {tuple(fractions.tolist())}")
    names = _PARTS if len(fractions) == 3 else ("train", "test")
    networks, codes, stratum = _network_table(network_ids, strata)
    rng = np.random.default_rng(seed)
    chosen: dict[str, list[np.ndarray]] = {name: [] for name in names}
    for s in np.unique(stratum):
        members = rng.permutation(np.flatnonzero(stratum == s))
        bounds = np.cumsum(_largest_remainder(fractions, len(members)))[:-1]
        for name, piece in zip(names, np.split(members, bounds)):
            chosen[name].append(piece)
    parts = {name: np.concatenate(pieces) for name, pieces in chosen.items()}
    for name, fraction in zip(names, fractions):
        if fraction > 0 and len(parts[name]) == 0:
            raise ValueError(f"split: part {name!r} got no networks ({len(networks)} networks, fractions "
                             f"{tuple(fractions.tolist())}); use more networks or a larger fraction")
    split = _build(parts, codes, networks, seed)
    _check_classes(split, good, len(codes), tuple(n for n, f in zip(names, fractions) if f > 0))
    return split


def kfold_by_network(network_ids, k: int = 5, *, seed: int = 0, val_fraction: float = 0.0, good=None,
                     strata=None) -> list[NetworkSplit]:
    """k folds over networks: fold i tests on one k-th of the networks, trains on the rest.

    Every network is tested exactly once, so pooled out-of-fold predictions score all networks.
    ``val_fraction`` of each fold's training networks (largest-remainder rounding, at least one when
    positive) is moved to a validation part (for the autoencoder's best-state selection). With
    ``strata`` the folds are balanced per stratum; with ``good`` every part must hold both classes.
    """
    networks, codes, stratum = _network_table(network_ids, strata)
    if not isinstance(k, (int, np.integer)) or not 2 <= k <= len(networks):
        raise ValueError(f"k: must be an integer between 2 and the number of networks ({len(networks)}), got {k!r}")
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction: must lie in [0, 1), got {val_fraction}")
    rng = np.random.default_rng(seed)
    fold = np.empty(len(networks), dtype=int)
    offset = 0
    for s in np.unique(stratum):
        members = rng.permutation(np.flatnonzero(stratum == s))
        fold[members] = (offset + np.arange(len(members))) % k
        offset += len(members)
    splits = []
    for i in range(k):
        rest = rng.permutation(np.flatnonzero(fold != i))
        n_val = max(1, int(round(val_fraction * len(rest)))) if val_fraction > 0 else 0
        if n_val >= len(rest):
            raise ValueError(f"val_fraction: {val_fraction} leaves no training networks in fold {i}; use a smaller value")
        parts = {"train": rest[n_val:], "val": rest[:n_val], "test": np.flatnonzero(fold == i)}
        split = _build(parts, codes, networks, seed)
        _check_classes(split, good, len(codes), ("train", "test") + (("val",) if n_val else ()))
        splits.append(split)
    return splits
