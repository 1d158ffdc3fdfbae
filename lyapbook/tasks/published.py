"""The dissertation authors' published data, packed as numbers under ``data/published/``.

Two sources, both public repositories without a licence file; the numbers are the authors'
measurements and checkpoints, attributed to them, never the book's own results:

- ``charrnn_grid``: 110 one-layer LSTMs of 512 units trained on War and Peace over a grid of
  11 dropout x 10 learning-rate values (shlizee/lyapunov-hyperopt): each network's mean Lyapunov
  spectrum and its spread at two checkpoints (e4, e15) and its validation loss at 15 checkpoints.
- ``smnist_rnns``: tanh RNNs of 3 and 16 units on row-wise sequential MNIST, checkpoints across
  training for five init scales, and the 25 digits the authors fed them (ryanavogt/FTLE-gradients).

:func:`pack` converts the original files (pickles and torch checkpoints) into one deterministic
archive per source (a zip of ``.npy`` arrays plus a JSON member; no pickle inside), after checking
every file's SHA-256 against ``provenance.json``: a file that does not match is refused before it
is opened, because unpickling runs code. :func:`charrnn_grid` and :func:`smnist_rnns` read the
archives that ship with the project, so the book builds offline. The one conversion: the authors'
exponents are in log base 2 per step; the archives hold natural log per step (x ln 2), the unit of
the rest of the book.

Rebuild the archives (``--from``: the folder that holds ``lyapunov-hyperopt/`` and
``FTLE-gradients/`` as committed; ``--download``: fetch the pinned commits, where a network exists)::

    python -m lyapbook.tasks.published --from ../shared/published
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import math
import os
import pickle
import re
import sys
import urllib.parse
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .download import sha256_of

__all__ = ["SOURCES", "CharRNNGrid", "PublishedError", "PublishedRNNs", "Source", "archive_path", "charrnn_grid",
           "download_originals", "pack", "provenance", "published_dir", "smnist_rnns"]

PUBLISHED_ENV = "LYAPBOOK_PUBLISHED"
LN2 = math.log(2.0)
EPOCH_STEPS = 375  # SGD steps per epoch of the FTLE-gradients networks (48,000 training digits, batch 128)
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # fixed member times: the same data give the same bytes


class PublishedError(RuntimeError):
    """An original file is missing, differs from its recorded SHA-256, or an archive is absent."""


@dataclass(frozen=True)
class Source:
    """One published repository: where its files come from and what the book packs of them."""

    name: str
    repository: str
    commit: str
    folder: str   # its folder in a local copy (``<from>/<folder>/<path in the repository>``)
    prefix: str   # the part of the repository that is packed
    authors: str
    what: str


SOURCES = {
    "charrnn_grid": Source(
        name="charrnn_grid", repository="shlizee/lyapunov-hyperopt", commit="5908e4526f06d46972b8e9266fcd3d739b176bbe",
        folder="lyapunov-hyperopt", prefix="CharRNN/WP/HP/Grid Search/",
        authors="Ryan Vogt, Maximilian Puelma Touzel, Eli Shlizerman, Guillaume Lajoie",
        what="110 CharRNN LSTMs (512 units, War and Peace), 11 dropout x 10 learning rates: mean Lyapunov "
             "spectrum and its spread over 10 sequences at checkpoints e4 and e15, validation loss at e0..e14"),
    "smnist_rnns": Source(
        name="smnist_rnns", repository="ryanavogt/FTLE-gradients", commit="91238f3afe4c2d606d95189de011db1ef5b65963",
        folder="FTLE-gradients", prefix="SMNIST/",
        authors="Ryan Vogt, Eli Shlizerman",
        what="tanh RNNs (3 and 16 units, no biases) on row-wise sequential MNIST: weights at checkpoints over "
             "training for init std 0.005-0.025, and the 25 MNIST digits used as input for the exponents"),
}

CONVERSION = ("Exponents: the authors' log base 2 per step multiplied by ln 2 (natural log per step), stored as "
              "float32 as published. Grid coordinates parsed from the file names and rounded (dropout to 2, "
              "learning rate to 3 decimals; the names carry float artefacts such as lr0.009000000000000001). "
              "Validation losses as stored (the authors' running loss / (batches + 1), i.e. scaled by 32/33). "
              "Checkpoints: the weights (weight_ih, weight_hh, fc.weight), validation loss and accuracy (NaN "
              "where an e0 file stores 0 as a placeholder); optimiser states and per-batch loss lists are not "
              "packed; the one checkpoint with 7 inputs per step (insize7) is not packed; eK_iter375 holds the same "
              "weights as eK (checked) and is packed once, as eK.")


def published_dir() -> Path:
    """``$LYAPBOOK_PUBLISHED`` if set, else ``data/published`` at the repository root."""
    configured = os.environ.get(PUBLISHED_ENV)
    return Path(configured) if configured else Path(__file__).resolve().parents[2] / "data" / "published"


def archive_path(name: str, folder: Path | None = None) -> Path:
    if name not in SOURCES:
        raise ValueError(f"name must be one of {sorted(SOURCES)}, got {name!r}")
    return Path(folder or published_dir()) / f"{name}.zip"


def provenance(folder: Path | None = None) -> dict:
    """The shipped ``provenance.json``: per source its repository, commit and every original file's
    path, size and SHA-256, and the conversion done."""
    path = Path(folder or published_dir()) / "provenance.json"
    if not path.is_file():
        raise PublishedError(f"{path} is missing: the published data ship with a checkout of the project "
                             f"(or set {PUBLISHED_ENV} to the folder that holds the archives)")
    return json.loads(path.read_text())


# ----------------------------------------------------------------------------------------------
# Reading the packed archives.


@dataclass(frozen=True)
class CharRNNGrid:
    """The 110-network grid (order: dropout, then learning rate). Exponents in nats per step, in the
    order the authors' QR method returns them: nearly decreasing, with small local inversions (a mean
    over 10 sequences of unsorted estimates), so :meth:`max_le` takes the maximum, not the first."""

    dropout: np.ndarray         # (networks,)
    learning_rate: np.ndarray   # (networks,)
    val_loss: np.ndarray        # (networks, 15): checkpoints e0 (untrained) .. e14
    spectra: dict               # {"e4", "e15"} -> (networks, 512) mean over the 10 input sequences
    spread: dict                # {"e4", "e15"} -> (networks, 512) its standard deviation over them
    names: tuple                # the original file names' common stem, one per network

    def __len__(self) -> int:
        return len(self.dropout)

    @property
    def final_loss(self) -> np.ndarray:
        """(networks,) validation loss at the last checkpoint (e14)."""
        return self.val_loss[:, -1]

    def max_le(self, checkpoint: str = "e15") -> np.ndarray:
        return self._spectrum(checkpoint).max(1)

    def mean_le(self, checkpoint: str = "e15") -> np.ndarray:
        return self._spectrum(checkpoint).mean(1)

    def _spectrum(self, checkpoint: str) -> np.ndarray:
        if checkpoint not in self.spectra:
            raise ValueError(f"checkpoint must be one of {sorted(self.spectra)}, got {checkpoint!r}")
        return self.spectra[checkpoint].astype(np.float64)


@dataclass(frozen=True)
class PublishedRNNs:
    """The authors' row-wise RNNs of one size: every packed checkpoint, and their 25 input digits."""

    hidden: int
    std: np.ndarray          # (checkpoints,) init std of the recurrent and input weights
    epoch: np.ndarray        # (checkpoints,) training position in epochs (375 SGD steps each)
    tag: tuple               # the original checkpoint tag: "e3", "e1_iter150", ...
    val_loss: np.ndarray     # (checkpoints,) NaN at e0 (not measured)
    accuracy: np.ndarray     # (checkpoints,) validation accuracy, NaN at e0
    weight_ih: np.ndarray    # (checkpoints, hidden, 28)
    weight_hh: np.ndarray    # (checkpoints, hidden, hidden)
    readout: np.ndarray      # (checkpoints, 10, hidden)
    inputs: np.ndarray       # (25, 28, 28) the digits, normalised (x - 0.1307) / 0.3081, rows as steps
    labels: np.ndarray       # (25,)

    def index(self, std: float, epoch: float) -> int:
        """The checkpoint of init ``std`` at training position ``epoch``."""
        hits = np.flatnonzero(np.isclose(self.std, std) & np.isclose(self.epoch, epoch))
        if len(hits) != 1:
            raise ValueError(f"no checkpoint with std={std} at epoch={epoch}; stds {sorted(set(self.std.tolist()))}, "
                             f"epochs {sorted(set(self.epoch.round(3).tolist()))}")
        return int(hits[0])

    def network(self, i: int, dtype=None):
        """Checkpoint ``i`` as a :class:`lyapbook.gradients.VanillaRNN` (tanh, no biases)."""
        import torch
        from torch import nn

        from ..gradients import vanilla_rnn

        dtype = dtype or torch.float64
        core = nn.RNN(self.weight_ih.shape[-1], self.hidden, bias=False, batch_first=True).to(dtype)
        readout = nn.Linear(self.hidden, self.readout.shape[1], bias=False).to(dtype)
        with torch.no_grad():
            core.weight_ih_l0.copy_(torch.as_tensor(self.weight_ih[i]))
            core.weight_hh_l0.copy_(torch.as_tensor(self.weight_hh[i]))
            readout.weight.copy_(torch.as_tensor(self.readout[i]))
        return vanilla_rnn(core, readout)


def _read_archive(name: str, folder: Path | None) -> tuple[dict[str, np.ndarray], dict]:
    path = archive_path(name, folder)
    if not path.is_file():
        raise PublishedError(f"{path} is missing: rebuild it with `python -m lyapbook.tasks.published --from FOLDER` "
                             f"(FOLDER holding the authors' files) or set {PUBLISHED_ENV}")
    with np.load(path, allow_pickle=False) as arrays:
        data = {key: arrays[key] for key in arrays.files}
    with zipfile.ZipFile(path) as archive:
        meta = json.loads(archive.read("meta.json"))
    return data, meta


def charrnn_grid(folder: Path | None = None) -> CharRNNGrid:
    """The 110-network CharRNN grid from ``data/published/charrnn_grid.zip``."""
    data, meta = _read_archive("charrnn_grid", folder)
    checkpoints = meta["checkpoints"]
    return CharRNNGrid(dropout=data["dropout"], learning_rate=data["learning_rate"], val_loss=data["val_loss"],
                       spectra={c: data[f"spectrum_{c}"] for c in checkpoints},
                       spread={c: data[f"spread_{c}"] for c in checkpoints}, names=tuple(meta["names"]))


def smnist_rnns(hidden: int = 16, folder: Path | None = None) -> PublishedRNNs:
    """The authors' row-wise MNIST RNNs of ``hidden`` units (3 or 16) from ``data/published/smnist_rnns.zip``."""
    data, meta = _read_archive("smnist_rnns", folder)
    sizes = meta["hidden_sizes"]
    if hidden not in sizes:
        raise ValueError(f"hidden must be one of {sizes}, got {hidden!r}")
    p = f"h{hidden}_"
    return PublishedRNNs(hidden=hidden, std=data[p + "std"], epoch=data[p + "epoch"], tag=tuple(meta["tags"][str(hidden)]),
                         val_loss=data[p + "val_loss"], accuracy=data[p + "accuracy"], weight_ih=data[p + "weight_ih"],
                         weight_hh=data[p + "weight_hh"], readout=data[p + "readout"], inputs=data["inputs"],
                         labels=data["labels"])


# ----------------------------------------------------------------------------------------------
# Packing the original files.


def _expected_files(source: Source, originals: Path, recorded: dict | None) -> list[dict]:
    """The files of ``source`` to pack, with their SHA-256: from the shipped provenance when there is
    one (a rebuild), else from the ``MANIFEST.tsv`` beside the originals (the first packing)."""
    if recorded is not None:
        return recorded["sources"][source.name]["files"]
    manifest = originals / "MANIFEST.tsv"
    if not manifest.is_file():
        raise PublishedError(f"{originals} holds no MANIFEST.tsv and no provenance.json was given: nothing to check "
                             "the files against")
    files = []
    for line in manifest.read_text().splitlines()[1:]:
        sha, size, repository, commit, path = line.split("\t")
        if repository == source.repository and commit == source.commit and path.startswith(source.prefix):
            if source.name == "smnist_rnns" and "_insize7_" in path:
                continue  # another input size; see CONVERSION
            files.append({"path": path, "bytes": int(size), "sha256": sha})
    return sorted(files, key=lambda f: f["path"])


def _verified(source: Source, originals: Path, files: list[dict]) -> dict[str, Path]:
    """Every file's local path, after its SHA-256 matched; raises before anything is opened otherwise."""
    paths = {}
    for entry in files:
        path = originals / source.folder / entry["path"]
        if not path.is_file():
            raise PublishedError(f"{path} is missing (expected {entry['path']} of {source.repository} at {source.commit[:7]})")
        actual = sha256_of(path)
        if actual != entry["sha256"]:
            raise PublishedError(f"{path}: SHA-256 {actual} differs from the recorded {entry['sha256']}; the file "
                                 "was not opened (unpickling an unknown file can run code)")
        paths[entry["path"]] = path
    return paths


_GRID_NAME = re.compile(r"lstm_L1_H512_drop(?P<drop>[0-9.]+)_lr(?P<lr>[0-9.]+)_adam_uniform0\.08_")


def _pack_grid(paths: dict[str, Path]) -> tuple[dict[str, np.ndarray], dict]:
    stems = sorted({re.sub(r"_(e4_LEStats|e15_LEStats|valLossFull)\.p$", "", Path(p).name) for p in paths})
    folder = {Path(p).name: path for p, path in paths.items()}
    rows = []
    for stem in stems:
        match = _GRID_NAME.match(stem + "_")
        if match is None:
            raise PublishedError(f"unexpected file name {stem!r} in the CharRNN grid")
        rows.append((round(float(match["drop"]), 2), round(float(match["lr"]), 3), stem))
    rows.sort()
    data: dict[str, list] = {"dropout": [], "learning_rate": [], "val_loss": []}
    for checkpoint in ("e4", "e15"):
        data[f"spectrum_{checkpoint}"], data[f"spread_{checkpoint}"] = [], []
    for drop, lr, stem in rows:
        data["dropout"].append(drop)
        data["learning_rate"].append(lr)
        with open(folder[f"{stem}_valLossFull.p"], "rb") as handle:
            data["val_loss"].append(np.asarray(pickle.load(handle), dtype=np.float64))
        for checkpoint in ("e4", "e15"):
            with open(folder[f"{stem}_{checkpoint}_LEStats.p"], "rb") as handle:
                mean, std = pickle.load(handle)
            data[f"spectrum_{checkpoint}"].append((mean.double().numpy() * LN2).astype(np.float32))
            data[f"spread_{checkpoint}"].append((std.double().numpy() * LN2).astype(np.float32))
    arrays = {key: np.stack(value) if isinstance(value[0], np.ndarray) else np.asarray(value) for key, value in data.items()}
    return arrays, {"checkpoints": ["e4", "e15"], "names": [stem for _, _, stem in rows],
                    "val_loss_checkpoints": [f"e{k}" for k in range(arrays["val_loss"].shape[1])]}


_CKPT_NAME = re.compile(r"rnn_L1_H(?P<hidden>\d+)_tanh_drop0\.1_sgd_lr0\.002_normal_(?P<std>[0-9.]+)_insize28_"
                        r"(?P<tag>e(?P<epoch>\d+)(?:_iter(?P<iter>\d+))?)\.ckpt$")


def _position(epoch: int, iteration: str | None) -> float:
    """Training position in epochs: ``eK`` is after K epochs; ``eK_iterN`` is N steps into epoch K
    (its weights at N = 375 equal those of ``eK``, which the packing checks)."""
    return float(epoch) if iteration is None else epoch - 1 + int(iteration) / EPOCH_STEPS


def _pack_rnns(paths: dict[str, Path]) -> tuple[dict[str, np.ndarray], dict]:
    import torch

    checkpoints: dict[int, list] = {}
    inputs = labels = indices = None
    for path_in_repo, path in sorted(paths.items()):
        name = Path(path_in_repo).name
        if name == "le_setup.p":
            inputs, labels = torch.load(path, map_location="cpu", weights_only=True)
            continue
        if name == "training_saveIdcs.p":
            indices = np.asarray(torch.load(path, map_location="cpu", weights_only=True), dtype=np.int64)
            continue
        match = _CKPT_NAME.search(name)
        if match is None:
            raise PublishedError(f"unexpected checkpoint name {name!r}")
        state = torch.load(path, map_location="cpu", weights_only=True)
        weights = state["model_state_dict"]
        measured = "val_loss" in state and not (match["iter"] is None and int(match["epoch"]) == 0)
        checkpoints.setdefault(int(match["hidden"]), []).append({
            "std": float(match["std"]), "epoch": _position(int(match["epoch"]), match["iter"]), "tag": match["tag"],
            "val_loss": float(state["val_loss"]) if measured else math.nan,
            "accuracy": float(state["accuracy"]) if measured else math.nan,
            "weight_ih": weights["rnn_layer.weight_ih_l0"].numpy(), "weight_hh": weights["rnn_layer.weight_hh_l0"].numpy(),
            "readout": weights["fc.weight"].numpy()})
    if inputs is None or indices is None:
        raise PublishedError("le_setup.p or training_saveIdcs.p is missing from the FTLE-gradients files")
    arrays = {"inputs": inputs.numpy().astype(np.float32), "labels": labels.numpy().astype(np.int64),
              "save_indices": indices}
    tags = {}
    for hidden, rows in sorted(checkpoints.items()):
        rows.sort(key=lambda r: (r["std"], r["epoch"], r["tag"]))
        rows = _check_epoch_ends(hidden, rows)
        for key in ("std", "epoch", "val_loss", "accuracy"):
            arrays[f"h{hidden}_{key}"] = np.asarray([r[key] for r in rows], dtype=np.float64)
        for key in ("weight_ih", "weight_hh", "readout"):
            arrays[f"h{hidden}_{key}"] = np.stack([r[key] for r in rows]).astype(np.float32)
        tags[str(hidden)] = [r["tag"] for r in rows]
    return arrays, {"hidden_sizes": sorted(checkpoints), "tags": tags, "epoch_steps": EPOCH_STEPS}


def _check_epoch_ends(hidden: int, rows: list[dict]) -> list[dict]:
    """``rows`` without the ``eK_iter375`` checkpoints, after checking that each holds the same weights
    as ``eK`` (which confirms how tags map to positions; one network, one row)."""
    by_tag = {(r["std"], r["tag"]): r for r in rows}
    kept = []
    for (std, tag), row in by_tag.items():
        match = re.fullmatch(r"e(\d+)_iter375", tag)
        end = by_tag.get((std, f"e{match[1]}")) if match else None
        if end is None:
            kept.append(row)
            continue
        if not all(np.array_equal(row[key], end[key]) for key in ("weight_ih", "weight_hh", "readout")):
            raise PublishedError(f"H{hidden} std {std}: {tag} and e{match[1]} differ, so the tags do not mean what "
                                 "this module assumes (eK_iterN = N steps into epoch K)")
    return kept


def _write_archive(target: Path, arrays: dict[str, np.ndarray], meta: dict) -> None:
    """A zip of ``.npy`` members (readable by ``numpy.load``) and ``meta.json``, byte for byte the same
    for the same data: sorted members, fixed times and permissions."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".zip.part")
    with zipfile.ZipFile(partial, "w") as archive:
        for key in sorted(arrays):
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.ascontiguousarray(arrays[key]), allow_pickle=False)
            _add(archive, f"{key}.npy", buffer.getvalue())
        _add(archive, "meta.json", json.dumps(meta, indent=1, sort_keys=True).encode())
    os.replace(partial, target)


def _add(archive: zipfile.ZipFile, name: str, payload: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    archive.writestr(info, payload, compresslevel=9)


def pack(originals: Path | str, out: Path | str | None = None, *, recorded: dict | None = None) -> dict:
    """Pack the authors' files under ``originals`` into ``out`` (default :func:`published_dir`).

    Every file is checked against its SHA-256 before it is opened: against ``recorded`` (a
    provenance dict; by default the ``provenance.json`` already in ``out``, if any), else against
    the ``MANIFEST.tsv`` in ``originals``. Writes ``<source>.zip`` per source and ``provenance.json``;
    returns the provenance.
    """
    originals, out = Path(originals), Path(out or published_dir())
    if not originals.is_dir():
        raise PublishedError(f"originals: {originals} is not a folder (it should hold lyapunov-hyperopt/ and "
                             "FTLE-gradients/ as committed)")
    if recorded is None and (out / "provenance.json").is_file():
        recorded = json.loads((out / "provenance.json").read_text())
    sources = {}
    for source in SOURCES.values():
        files = _expected_files(source, originals, recorded)
        paths = _verified(source, originals, files)
        arrays, meta = (_pack_grid if source.name == "charrnn_grid" else _pack_rnns)(paths)
        meta = {**meta, "source": source.name, "repository": source.repository, "commit": source.commit}
        _write_archive(out / f"{source.name}.zip", arrays, meta)
        sources[source.name] = {"repository": source.repository, "commit": source.commit, "authors": source.authors,
                                "what": source.what, "archive": f"{source.name}.zip",
                                "archive_sha256": sha256_of(out / f"{source.name}.zip"), "files": files}
    result = {"conversion": CONVERSION, "sources": sources}
    (out / "provenance.json").write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    return result


def download_originals(target: Path | str, *, recorded: dict | None = None) -> Path:
    """Fetch every original file at its pinned commit from GitHub into ``target`` (checked against
    the shipped provenance as it arrives); returns ``target`` for :func:`pack`."""
    from .download import is_offline

    if is_offline():
        raise PublishedError("downloads are switched off (LYAPBOOK_OFFLINE); pass a folder of the files instead")
    recorded = recorded or provenance()
    target = Path(target)
    for name, entry in recorded["sources"].items():
        source = SOURCES[name]
        for file in entry["files"]:
            path = target / source.folder / file["path"]
            if path.is_file() and sha256_of(path) == file["sha256"]:
                continue
            url = (f"https://raw.githubusercontent.com/{source.repository}/{source.commit}/"
                   f"{urllib.parse.quote(file['path'])}")
            path.parent.mkdir(parents=True, exist_ok=True)
            with urllib.request.urlopen(url, timeout=60) as response:
                payload = response.read()
            if hashlib.sha256(payload).hexdigest() != file["sha256"]:
                raise PublishedError(f"{url}: the download's SHA-256 differs from the recorded one; not kept")
            path.write_bytes(payload)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lyapbook.tasks.published", description=__doc__.split("\n\n")[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--from", dest="originals", type=Path, help="folder holding lyapunov-hyperopt/ and FTLE-gradients/")
    group.add_argument("--download", type=Path, metavar="FOLDER", help="download the pinned files into FOLDER first")
    parser.add_argument("--out", type=Path, default=None, help="where the archives go (default: data/published)")
    args = parser.parse_args(argv)
    try:
        originals = args.originals or download_originals(args.download)
        result = pack(originals, args.out)
    except PublishedError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    for name, entry in result["sources"].items():
        print(f"{name}: {len(entry['files'])} files verified -> {entry['archive']} ({entry['archive_sha256'][:12]})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
