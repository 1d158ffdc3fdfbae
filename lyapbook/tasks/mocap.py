"""CMU motion capture (the dissertation's signal-prediction data), read from the database's AMC files.

The dissertation (§2.5) uses trials from the database's "Sports and Activities" category
(basketball, soccer, walking, jumping) but does not list them, so there is no default selection:
the caller names the trials (``"SS_TT"``, subject and trial number) and each is downloaded once
from the CMU server, its SHA-256 recorded on first download and verified on every later use (the
server publishes no checksums). Preprocessing follows the dissertation: drop every dimension whose
standard deviation over all time points is below 1e-4, normalise the rest by their standard
deviation (after removing the mean), keep the first 20.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

from .data import Split, next_step_splits
from .download import fetch_recorded

__all__ = ["CMU_URL", "parse_amc", "mocap_data"]

CMU_URL = "http://mocap.cs.cmu.edu/subjects/{subject}/{subject}_{trial}.amc"
TRIAL = re.compile(r"^(\d{2,3})_(\d{2})$")


def parse_amc(text: str) -> np.ndarray:
    """Joint angles of an Acclaim motion (AMC) file: (frames, channels), bones in file order.

    Lines starting with ``#`` or ``:`` are header; a line holding one integer starts a frame;
    every other line is ``bone value value ...``.
    """
    frames: list[list[float]] = []
    layout: list[tuple[str, int]] | None = None
    current: list[tuple[str, list[float]]] = []

    def close_frame() -> None:
        nonlocal layout
        if not current:
            return
        shape = [(bone, len(values)) for bone, values in current]
        if layout is None:
            layout = shape
        elif shape != layout:
            raise ValueError(f"AMC frame {len(frames) + 1} lists bones {shape} unlike the first frame's {layout}")
        frames.append([v for _, values in current for v in values])
        current.clear()

    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line[0] in "#:":
            continue
        fields = line.split()
        if len(fields) == 1 and fields[0].isdigit():
            close_frame()
            continue
        try:
            current.append((fields[0], [float(v) for v in fields[1:]]))
        except ValueError:
            raise ValueError(f"AMC line {number} is neither a frame number nor 'bone values...': {line[:60]!r}") from None
    close_frame()
    if not frames:
        raise ValueError("the AMC text holds no frames")
    return np.asarray(frames, dtype=np.float64)


def _trial_file(trial: str, url_template: str, folder) -> Path:
    match = TRIAL.match(trial)
    if not match:
        raise ValueError(f"trials: {trial!r} is not a CMU trial id like '09_01' (subject_trial)")
    subject, number = match.groups()
    url = url_template.format(subject=subject, trial=number)
    return fetch_recorded(url, f"cmu_mocap_{subject}_{number}.amc", folder=folder)


def mocap_data(trials: list[str] | tuple[str, ...], *, features: int = 20, seq_len: int = 100, min_std: float = 1e-4,
               split=(0.8, 0.1, 0.1), seed: int = 0, url_template: str = CMU_URL, folder=None) -> tuple[Split, Split, Split]:
    """Next-step prediction on CMU motion capture: x (N, seq_len, features), y = x shifted by one step.

    ``trials`` are CMU trial ids (``"09_01"``); the dissertation does not list its own, so there
    is no default. Each trial is cut into non-overlapping windows of ``seq_len + 1`` frames; the
    statistics of the preprocessing are taken over all frames of all trials.
    """
    if not trials:
        raise ValueError("trials: name the CMU trials to use (e.g. ['09_01', '16_15']); the dissertation does not list "
                         "its selection, so there is no default")
    if features < 1 or seq_len < 1:
        raise ValueError(f"features and seq_len must be positive, got {features} and {seq_len}")
    recordings = [parse_amc(_trial_file(t, url_template, folder).read_text()) for t in trials]
    channels = {r.shape[1] for r in recordings}
    if len(channels) != 1:
        raise ValueError(f"trials: the recordings have different channel counts {sorted(channels)}; use one skeleton")
    frames = np.concatenate(recordings)
    std = frames.std(axis=0)
    kept = np.flatnonzero(std >= min_std)[:features]
    if len(kept) < features:
        raise ValueError(f"features: only {len(kept)} channels vary by at least {min_std}; ask for at most that many")
    mean = frames.mean(axis=0)
    windows = []
    for recording in recordings:
        normalised = (recording[:, kept] - mean[kept]) / std[kept]
        count = len(normalised) // (seq_len + 1)
        windows.append(normalised[: count * (seq_len + 1)].reshape(count, seq_len + 1, features))
    windows = torch.tensor(np.concatenate(windows), dtype=torch.float32)
    if len(windows) < 3:
        raise ValueError(f"the trials give only {len(windows)} windows of {seq_len + 1} frames; add trials or lower seq_len")
    return next_step_splits(windows, split, seed)
