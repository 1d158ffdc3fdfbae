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

__all__ = ["ZooSpectra", "silent_output_mae", "untestable_reason", "zoo_spectra", "zoo_summary"]

_KEEP = ("zoo", "task", "arch", "hidden", "init_p", "seed", "cell", "lr", "optimizer", "epochs", "test_epochs", "patience")


@dataclass
class ZooSpectra:
    """Spectra of a zoo at one length, aligned row by row with their networks.

    ``spectra`` (n, L) interpolated (AeLLE's input); ``raw`` the n spectra as computed (their own
    lengths; the statistics :attr:`mean_le` and :attr:`max_le` are read from these); ``loss`` (n,)
    the final loss of each row's network (``loss_name`` of the frame); ``network`` (n,) network ids
    (the zoo's seeds); ``epoch`` (n,) the epoch each spectrum was taken after (0: untrained);
    ``rows`` (n rows) the networks' hyperparameters, ``epoch_loss`` (the validation loss at that
    epoch), ``final_epoch_loss`` (the validation loss after the last epoch), ``stopped_epoch``,
    ``early_stopped``, ``test_accuracy`` (NaN where none) and ``bounded`` (how many of the lowest
    exponents of that spectrum are only upper bounds, see :mod:`lyapbook.diagnostics`); ``excluded`` one
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
                         "stopped_epoch": int(last.get("stopped_epoch", last["epoch"])),
                         "early_stopped": bool(last.get("early_stopped", False)),
                         "test_accuracy": float(last.get("test_accuracy", np.nan) if pd.notna(last.get("test_accuracy"))
                                                else np.nan),
                         "bounded": int(pick.get("spectrum_bounded", 0) if pd.notna(pick.get("spectrum_bounded"))
                                        else 0),
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


def _span(values: np.ndarray, scale: float, digits: int) -> str:
    low, high = np.percentile(values, [25, 75]) * scale
    return f"{low:.{digits}f} – {high:.{digits}f}"


def zoo_summary(data: ZooSpectra, zoo: str, by: str | None = None) -> pd.DataFrame:
    """How well a zoo learned, one row per value of ``by`` (a column of ``data.rows``, e.g. "arch")
    and one for the whole zoo: networks; median and interquartile range of the test accuracy (%)
    where the zoo records one, else of the loss (a FORCE zoo's free-run MAE); the share accurate
    (final loss below the *zoo's* median loss, the label of every AeLLE comparison) and the share
    of networks that stopped early (before their epoch cap; NaN where none was set)."""
    rows = data.rows
    accuracy = rows["test_accuracy"].to_numpy(dtype=float) if "test_accuracy" in rows else np.full(len(rows), np.nan)
    has_accuracy = np.isfinite(accuracy).all()
    good = data.loss < np.median(data.loss)
    groups = [("all", np.ones(len(rows), dtype=bool))]
    if by is not None:
        groups += [(str(value), (rows[by] == value).to_numpy()) for value in pd.unique(rows[by])]
    out = []
    for name, mask in groups:
        row = {"zoo": zoo, "architecture": name, "networks": int(mask.sum())}
        if has_accuracy:
            row.update({"median accuracy (%)": float(np.median(accuracy[mask]) * 100),
                        "IQR accuracy (%)": _span(accuracy[mask], 100, 0)})
        else:
            row.update({"median MAE": float(np.median(data.loss[mask])), "IQR MAE": _span(data.loss[mask], 1, 2)})
        row["share accurate (%)"] = float(good[mask].mean() * 100)
        capped = "early_stopped" in rows and "patience" in rows and rows["patience"].notna().all()
        row["stopped early (%)"] = float(rows["early_stopped"].to_numpy()[mask].mean() * 100) if capped else np.nan
        out.append(row)
    return pd.DataFrame(out)


def untestable_reason(loss: np.ndarray, baseline: float, baseline_name: str) -> str | None:
    """Why a zoo cannot judge a claim about its accurate networks, or None when it can.

    The label of every comparison is "final loss below the zoo's median". That label means
    "learned the task" only when the median itself beats a trivial baseline (``baseline``, in loss
    units: a silent output's error, or guessing): otherwise the "accurate" half holds networks that
    do worse than doing nothing, and any verdict about them is about noise.
    """
    loss = np.asarray(loss, dtype=float)
    median, beating = float(np.median(loss)), float(np.mean(loss < baseline))
    if median < baseline:
        return None
    return (f"the zoo's median loss ({median:.3g}) is no better than {baseline_name} ({baseline:.3g}); only "
            f"{100 * beating:.0f} % of its networks beat it, so its 'accurate' half has not learned the task")


def silent_output_mae(frame: pd.DataFrame) -> float:
    """The free-run MAE of a FORCE network that outputs nothing, over a zoo frame's targets (the
    mean size of the target, averaged over networks): the trivial baseline of a FORCE zoo."""
    if "free_run_target" not in frame:
        raise ValueError("frame: no column 'free_run_target'; pass the frame run_zoo returns for a FORCE zoo")
    targets = frame.free_run_target.dropna()
    if targets.empty:
        raise ValueError("frame: no free-run target recorded (a FORCE zoo records it on each network's last row)")
    return float(np.mean([np.abs(np.asarray(t)).mean() for t in targets]))
