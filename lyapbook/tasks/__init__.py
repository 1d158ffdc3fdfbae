"""Tasks of the dissertation: embedded datasets, checksummed downloads, models and training loops.

Zoos (``lyapbook.tasks.zoo``), ensembles (``lyapbook.tasks.ensemble``) and the cluster runner
(``lyapbook.tasks.cluster``) are imported from their modules."""

from .data import (DATASETS, CharData, Split, char_data, check_dataset, digits_data, four_sine, four_sine_paper, lorenz96_data,
                   stream_pieces)
from .download import DownloadError, cache_dir, fetch, fetch_recorded, is_offline, sha256_of
from .mocap import mocap_data, parse_amc
from .models import ARCHITECTURES, SequenceModel, build_model
from .training import EarlyStopping, EpochRecord, evaluate, force_train, force_train_ensemble, spectrum_callback, train

__all__ = [
    "ARCHITECTURES", "DATASETS", "CharData", "DownloadError", "EarlyStopping", "EpochRecord", "SequenceModel", "Split",
    "build_model", "cache_dir", "char_data", "check_dataset", "digits_data", "evaluate", "fetch", "fetch_recorded",
    "force_train", "force_train_ensemble", "four_sine", "four_sine_paper", "is_offline", "lorenz96_data", "mocap_data",
    "parse_amc", "sha256_of", "spectrum_callback", "stream_pieces", "train",
]
