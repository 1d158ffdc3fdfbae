"""Tasks of the dissertation: embedded datasets and checksummed downloads."""

from .data import DATASETS, CharData, Split, char_data, check_dataset, digits_data, four_sine, lorenz96_data
from .download import DownloadError, cache_dir, fetch, sha256_of

__all__ = [
    "DATASETS", "CharData", "DownloadError", "Split", "cache_dir", "char_data", "check_dataset",
    "digits_data", "fetch", "four_sine", "lorenz96_data", "sha256_of",
]
