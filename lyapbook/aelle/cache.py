"""Fitted autoencoder groups kept on disk, so a rebuilt chapter does not train them again.

A group is keyed by everything that determines it: the training and validation arrays, the seeds,
the settings and :data:`FIT_VERSION` (bumped whenever :func:`~lyapbook.aelle.fit_aelle_group`
changes what a fit produces). Entries live in ``<cache>/aelle/v<FIT_VERSION>/<key>.pkl`` (by
default under :func:`lyapbook.tasks.download.cache_dir`, beside the zoo cache) and are written
atomically.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import joblib
import numpy as np

from ..perturbation import cache_tag
from .fit import fit_aelle_group
from .model import AeLLEFit

__all__ = ["FIT_VERSION", "cached_fit_group", "fit_cache_dir"]

FIT_VERSION = 1


def fit_cache_dir(cache: Path | str | None = None) -> Path:
    """The folder of cached fits: ``cache`` itself, or ``<data cache>/aelle/v<FIT_VERSION>``."""
    if cache is not None:
        return Path(cache)
    from ..tasks.download import cache_dir

    return cache_dir() / cache_tag() / "aelle" / f"v{FIT_VERSION}"


def cached_fit_group(train: Sequence[tuple], val: Sequence[tuple] | None, *, seeds: Sequence[int],
                     cache: Path | str | None | bool = None, **settings) -> list[AeLLEFit]:
    """:func:`~lyapbook.aelle.fit_aelle_group` through the disk cache.

    ``cache=False`` fits without the cache; ``None`` uses the default folder; a path uses that
    folder. ``progress`` and ``num_threads`` do not change a fit and are not part of the key.
    """
    if cache is False:
        return fit_aelle_group(train, val, seeds=seeds, **settings)
    as_arrays = lambda pairs: None if pairs is None else [tuple(np.asarray(a, dtype=np.float64) for a in p)  # noqa: E731
                                                         for p in pairs]
    keyed = {k: v for k, v in settings.items() if k not in ("progress", "num_threads")}
    key = joblib.hash({"train": as_arrays(train), "val": as_arrays(val), "seeds": [int(s) for s in seeds],
                       "settings": {k: str(v) for k, v in sorted(keyed.items())}, "version": FIT_VERSION})
    folder = fit_cache_dir(None if cache is None or cache is True else cache)
    path = folder / f"{key}.pkl"
    if path.exists():
        return joblib.load(path)
    fits = fit_aelle_group(train, val, seeds=seeds, **settings)
    from ..tasks.download import dump_atomically

    for fit in fits:  # stored on the CPU: a cache written on a GPU machine loads anywhere
        fit.model.cpu()
    dump_atomically(fits, path)
    return fits
