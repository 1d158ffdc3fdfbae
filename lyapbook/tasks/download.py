"""Downloads for the dissertation's datasets (checksummed, atomic, clear when offline) and the cache folder."""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import joblib

__all__ = ["DownloadError", "cache_dir", "dump_atomically", "fetch", "fetch_recorded", "is_offline", "sha256_of"]

CACHE_ENV = "LYAPBOOK_CACHE"
OFFLINE_ENV = "LYAPBOOK_OFFLINE"


class DownloadError(RuntimeError):
    """A download failed, was refused (offline) or did not match its checksum."""


def cache_dir() -> Path:
    """``$LYAPBOOK_CACHE`` if set, else ``data/cache`` at the repository root."""
    configured = os.environ.get(CACHE_ENV)
    return Path(configured) if configured else Path(__file__).resolve().parents[2] / "data" / "cache"


def dump_atomically(value: object, target: Path) -> None:
    """``joblib.dump`` to ``target`` through a temporary file in the same folder, then a rename:
    a reader (or a second process) never sees a half-written cache file."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, partial = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=".part", dir=target.parent)
    os.close(handle)
    try:
        joblib.dump(value, partial)
        os.replace(partial, target)
    finally:
        if os.path.exists(partial):
            os.remove(partial)


def is_offline() -> bool:
    """True when ``$LYAPBOOK_OFFLINE`` is set (to anything but "", "0"): downloads are refused at once."""
    return os.environ.get(OFFLINE_ENV, "") not in ("", "0")


def _missing(url: str, target: Path, reason: str) -> DownloadError:
    return DownloadError(
        f"{target.name} is not in the cache and {reason}. Download {url} on a machine that is online and "
        f"place it at {target} (or set {CACHE_ENV} to a folder that holds it), or use the dataset's embedded default"
    )


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(url: str, filename: str, sha256: str, *, folder: Path | None = None, timeout: float = 30.0) -> Path:
    """Return the cached file ``filename``, downloading ``url`` first if it is not there.

    The file is written to a temporary name in the same folder and renamed into place only once
    its SHA-256 equals ``sha256``, so an interrupted or corrupted download never leaves a file
    behind under the final name. A cached file with a wrong checksum is refused, not reused.
    """
    folder = Path(folder) if folder is not None else cache_dir()
    target = folder / filename
    if target.exists():
        found = sha256_of(target)
        if found != sha256:
            raise DownloadError(
                f"{target} has SHA-256 {found}, expected {sha256}: delete it and download again"
            )
        return target
    if is_offline():
        raise _missing(url, target, f"{OFFLINE_ENV} is set")
    folder.mkdir(parents=True, exist_ok=True)
    handle, partial = tempfile.mkstemp(prefix=f".{filename}.", suffix=".part", dir=folder)
    try:
        with os.fdopen(handle, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as response:
                    for block in iter(lambda: response.read(1 << 20), b""):
                        out.write(block)
            except (urllib.error.URLError, OSError) as error:
                raise _missing(url, target, f"could not download {url} ({error})") from None
        found = sha256_of(Path(partial))
        if found != sha256:
            raise DownloadError(f"{url} gave SHA-256 {found}, expected {sha256}; nothing was kept")
        os.replace(partial, target)
    finally:
        if os.path.exists(partial):
            os.remove(partial)
    return target


def fetch_recorded(url: str, filename: str, *, folder: Path | None = None, timeout: float = 30.0) -> Path:
    """Like :func:`fetch` for a source that publishes no fixed checksum (a living text file).

    The first download's SHA-256 is recorded in ``filename.sha256`` beside it; every later use
    verifies the file against that record, so a changed or corrupted copy is refused.
    """
    folder = Path(folder) if folder is not None else cache_dir()
    target, record = folder / filename, folder / f"{filename}.sha256"
    if record.exists():
        return fetch(url, filename, record.read_text().strip(), folder=folder, timeout=timeout)
    if target.exists():
        raise DownloadError(f"{target} exists without its checksum record {record.name}: delete it and download again")
    if is_offline():
        raise _missing(url, target, f"{OFFLINE_ENV} is set")
    folder.mkdir(parents=True, exist_ok=True)
    handle, partial = tempfile.mkstemp(prefix=f".{filename}.", suffix=".part", dir=folder)
    os.close(handle)
    try:
        try:
            urllib.request.urlretrieve(url, partial)
        except (urllib.error.URLError, OSError) as error:
            raise _missing(url, target, f"could not download {url} ({error})") from None
        record.write_text(sha256_of(Path(partial)) + "\n")
        os.replace(partial, target)
    finally:
        if os.path.exists(partial):
            os.remove(partial)
    return target
