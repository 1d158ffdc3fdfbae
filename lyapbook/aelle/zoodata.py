"""A zoo's spectra as AeLLE's input: one row per (network, epoch), at one length, with the final loss.

:func:`zoo_spectra` reads the frame :func:`lyapbook.tasks.zoo.run_zoo` returns (one row per
network and recorded epoch). Every row's target is its network's *final* loss, the quantity the
dissertation predicts (ch. 3: "the validation loss after training"; for the pre-trained AeLLE, the
final loss of a network whose spectrum was taken early). Networks that cannot be used are left
out and listed with the reason, never silently replaced: failed in training, a final loss that is
not finite, or a requested spectrum that is missing or not finite (a diverged network).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .. import stats
from .interpolate import prepare_spectra

__all__ = ["ZooSpectra", "zoo_spectra"]

_KEEP = ("zoo", "task", "arch", "hidden", "init_p", "seed", "cell", "lr", "optimizer", "epochs", "test_epochs")


@dataclass
class ZooSpectra:
    """Spectra of a zoo at one length, aligned row by row with their networks.

    ``spectra`` (n, L) interpolated (AeLLE's input); ``raw`` the n spectra as computed (their own
    lengths; the statistics :attr:`mean_le` and :attr:`max_le` are read from these); ``loss`` (n,)
    the final loss of each row's network (``loss_name`` of the frame); ``network`` (n,) network ids
    (the zoo's seeds); ``epoch`` (n,) the epoch each spectrum was taken after (0: untrained);
    ``rows`` (n rows) the networks' hyperparameters, ``epoch_loss`` (the validation loss at that
    epoch) and ``final_epoch_loss`` (the validation loss after the last epoch); ``excluded`` one
    row per network left out, with its reason.
    """

    spectra: np.ndarray
    raw: list[np.ndarray]
    loss: np.ndarray
    network: np.ndarray
    epoch: np.ndarray
    rows: pd.DataFrame
    excluded: pd.DataFrame
    length: int
    loss_name: str

    def __len__(self) -> int:
        return len(self.loss)

    @property
    def n_networks(self) -> int:
        return len(np.unique(self.network))

    @property
    def mean_le(self) -> np.ndarray:
        """Mean exponent of each row's spectrum as computed (n,)."""
        return np.array([stats.mean_exponent(s) for s in self.raw], dtype=np.float64)

    @property
    def max_le(self) -> np.ndarray:
        """Largest exponent of each row's spectrum as computed (n,)."""
        return np.array([stats.max_exponent(s) for s in self.raw], dtype=np.float64)

    def select(self, mask) -> ZooSpectra:
        """The rows where ``mask`` (n,) is true (or the rows of an index array)."""
        index = np.flatnonzero(mask) if np.asarray(mask).dtype == bool else np.asarray(mask, dtype=int)
        return ZooSpectra(spectra=self.spectra[index], raw=[self.raw[i] for i in index], loss=self.loss[index],
                          network=self.network[index], epoch=self.epoch[index],
                          rows=self.rows.iloc[index].reset_index(drop=True), excluded=self.excluded,
                          length=self.length, loss_name=self.loss_name)

    def at_epoch(self, epoch: int) -> ZooSpectra:
        """The spectra taken after ``epoch`` (one per network)."""
        if epoch not in set(self.epoch.tolist()):
            raise ValueError(f"epoch: no spectra after epoch {epoch}; these have epochs {sorted(set(self.epoch.tolist()))}")
        return self.select(self.epoch == epoch)


def _is_spectrum(value) -> bool:
    return isinstance(value, np.ndarray) and value.ndim == 1 and value.size > 0


def zoo_spectra(frame: pd.DataFrame, *, length: int, loss: str = "test_loss",
                epochs: str | Sequence[int] = "final") -> ZooSpectra:
    """AeLLE's input from a zoo frame: spectra at ``epochs`` of every usable network, interpolated to ``length``.

    ``loss`` names the frame column that holds each network's final loss, read on its last row
    (``"test_loss"`` for the sequential-digits zoo, ``"val_loss"`` for character prediction and
    target learning). ``epochs="final"`` takes each network's spectrum after its last epoch; a list
    takes the spectra after each of those epochs (a network lacking any of them is left out as a
    whole, so that splits by network stay clean). Raises before any work if a column is missing.
    """
    for column in ("seed", "epoch", "spectrum", loss):
        if column not in frame.columns:
            raise ValueError(f"frame: no column {column!r}; pass the frame run_zoo returns (and loss= one of its loss "
                             f"columns: {', '.join(c for c in frame.columns if c.endswith('loss'))})")
    if isinstance(epochs, str) and epochs != "final":
        raise ValueError(f"epochs: 'final' or a list of epochs, got {epochs!r}")
    wanted = None if isinstance(epochs, str) else [int(e) for e in epochs]
    if wanted is not None and not wanted:
        raise ValueError("epochs: give at least one epoch")
    identity = [c for c in ("arch", "hidden", "init_p") if c in frame.columns]
    clash = frame.groupby("seed")[identity].nunique().gt(1).any(axis=1) if identity else pd.Series(dtype=bool)
    if clash.any():
        raise ValueError(f"frame: seeds {clash[clash].index.tolist()[:3]} name more than one network; pass one zoo's frame")
    kept, excluded = [], []
    for seed, rows in frame.groupby("seed", sort=False):
        rows = rows.sort_values("epoch")
        last = rows.iloc[-1]
        final_loss = float(last[loss]) if pd.notna(last[loss]) else np.nan
        reason = None
        if bool(last.get("failed", False)):
            reason = "failed in training"
        elif not np.isfinite(final_loss):
            reason = f"final {loss} not finite"
        picks = [last] if wanted is None else [rows[rows.epoch == e].iloc[0] if (rows.epoch == e).any() else None
                                               for e in wanted]
        if reason is None and any(p is None for p in picks):
            reason = "no spectrum at epoch " + ", ".join(str(e) for e, p in zip(wanted, picks) if p is None)
        if reason is None and not all(_is_spectrum(p["spectrum"]) and np.isfinite(p["spectrum"]).all() for p in picks):
            reason = "spectrum not finite or missing"
        base = {c: last[c] for c in _KEEP if c in rows.columns}
        if reason is not None:
            excluded.append({**base, "reason": reason})
            continue
        for pick in picks:
            kept.append({**base, "epoch": int(pick["epoch"]), "epoch_loss": float(pick.get("val_loss", np.nan)),
                         "final_epoch_loss": float(last.get("val_loss", np.nan)), "final_loss": final_loss,
                         "spectrum": np.asarray(pick["spectrum"], dtype=np.float64)})
    if not kept:
        raise ValueError(f"frame: no usable network ({len(excluded)} left out: "
                         f"{pd.Series([e['reason'] for e in excluded]).value_counts().to_dict()})")
    table = pd.DataFrame(kept)
    prepared = prepare_spectra(list(table.spectrum), length)  # all finite here: nothing is rejected
    return ZooSpectra(spectra=prepared.spectra, raw=list(table.spectrum), loss=table.final_loss.to_numpy(),
                      network=table.seed.to_numpy(), epoch=table.epoch.to_numpy(),
                      rows=table.drop(columns=["spectrum"]),
                      excluded=pd.DataFrame(excluded, columns=[*[c for c in _KEEP if c in frame.columns], "reason"]),
                      length=int(length), loss_name=loss)
