"""Tasks of the dissertation: embedded datasets, checksummed downloads, models and training loops."""

from .data import DATASETS, CharData, Split, char_data, check_dataset, digits_data, four_sine, lorenz96_data
from .download import DownloadError, cache_dir, fetch, fetch_recorded, sha256_of
from .mocap import mocap_data, parse_amc
from .models import ARCHITECTURES, SequenceModel, build_model
from .training import EpochRecord, evaluate, force_train, spectrum_callback, train

__all__ = [
    "ARCHITECTURES", "DATASETS", "CharData", "DownloadError", "EpochRecord", "SequenceModel", "Split",
    "build_model", "cache_dir", "char_data", "check_dataset", "digits_data", "evaluate", "fetch",
    "fetch_recorded", "force_train", "four_sine", "lorenz96_data", "mocap_data", "parse_amc", "sha256_of",
    "spectrum_callback", "train",
]
