"""The authors' published data: packed archives, provenance, refusal of unverified files, loaders."""

import hashlib
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from lyapbook.tasks import published
from lyapbook.tasks.grid_study import held_out, prediction_table, split_folds
from lyapbook.tasks.published import PublishedError, charrnn_grid, pack, provenance, smnist_rnns

ROOT = Path(__file__).resolve().parents[1]
ORIGINALS = ROOT.parent / "shared" / "published"
needs_originals = pytest.mark.skipif(not (ORIGINALS / "MANIFEST.tsv").is_file(),
                                     reason=f"the authors' original files are not at {ORIGINALS}")


def test_the_shipped_archives_match_their_provenance():
    recorded = provenance()
    assert set(recorded["sources"]) == set(published.SOURCES)
    assert "ln 2" in recorded["conversion"]
    for name, entry in recorded["sources"].items():
        path = published.archive_path(name)
        assert hashlib.sha256(path.read_bytes()).hexdigest() == entry["archive_sha256"]
        assert entry["repository"] == published.SOURCES[name].repository
        assert all(len(f["sha256"]) == 64 and f["bytes"] > 0 for f in entry["files"])
    assert (ROOT / "data" / "published" / "README.md").is_file()


def test_the_grid_loads_with_its_shapes_and_units():
    grid = charrnn_grid()
    assert len(grid) == 110 and grid.val_loss.shape == (110, 15)
    assert sorted(set(grid.dropout.round(2))) == [round(0.02 * k, 2) for k in range(11)]
    assert sorted(set(grid.learning_rate.round(3))) == [round(0.001 * k, 3) for k in range(1, 11)]
    for checkpoint in ("e4", "e15"):
        spectra = grid.spectra[checkpoint]
        assert spectra.shape == (110, 512)
        # QR order: nearly decreasing (the first tenth lies above the last tenth in every network)
        assert np.all(spectra[:, :51].mean(1) > spectra[:, -51:].mean(1))
        assert np.all(grid.spread[checkpoint] >= 0)
        assert np.array_equal(grid.max_le(checkpoint), spectra.max(1).astype(float))
        assert np.all(grid.max_le(checkpoint) >= spectra[:, 0])
    with pytest.raises(ValueError, match="checkpoint must be one of"):
        grid.max_le("e7")


@needs_originals
def test_the_archives_hold_the_authors_numbers_converted_to_nats():
    grid = charrnn_grid()
    name = grid.names[17]
    folder = ORIGINALS / "lyapunov-hyperopt" / "CharRNN" / "WP" / "HP" / "Grid Search"
    with open(folder / f"{name}_e15_LEStats.p", "rb") as handle:
        mean, std = pickle.load(handle)
    np.testing.assert_allclose(grid.spectra["e15"][17], mean.double().numpy() * np.log(2), rtol=1e-6)
    with open(folder / f"{name}_valLossFull.p", "rb") as handle:
        assert np.array_equal(grid.val_loss[17], np.asarray(pickle.load(handle)))


@needs_originals
def test_rebuilding_from_the_original_files_reproduces_the_archives_byte_for_byte(tmp_path):
    result = pack(ORIGINALS, tmp_path, recorded=provenance())
    for name in published.SOURCES:
        assert (tmp_path / f"{name}.zip").read_bytes() == published.archive_path(name).read_bytes()
    assert result == json.loads((ROOT / "data" / "published" / "provenance.json").read_text())


def test_a_file_whose_sha256_differs_is_refused_before_it_is_opened(tmp_path):
    """A pickle that would write a file when loaded: the mismatch is caught and nothing runs."""
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    source = published.SOURCES["charrnn_grid"]
    name = "lstm_L1_H512_drop0.0_lr0.001_adam_uniform0.08_valLossFull.p"
    target = tmp_path / "originals" / source.folder / source.prefix / name
    target.parent.mkdir(parents=True)
    target.write_bytes(pickle.dumps(Payload()))
    recorded = {"sources": {n: {"files": []} for n in published.SOURCES}}
    recorded["sources"]["charrnn_grid"]["files"] = [{"path": source.prefix + name, "bytes": 1, "sha256": "0" * 64}]
    with pytest.raises(PublishedError, match="was not opened"):
        pack(tmp_path / "originals", tmp_path / "out", recorded=recorded)
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_missing_data_and_bad_arguments_say_what_to_do(tmp_path, capsys):
    with pytest.raises(PublishedError, match="python -m lyapbook.tasks.published --from"):
        charrnn_grid(folder=tmp_path)
    with pytest.raises(ValueError, match="name must be one of"):
        published.archive_path("grid")
    with pytest.raises(ValueError, match="hidden must be one of"):
        smnist_rnns(hidden=8)
    assert published.main(["--from", str(tmp_path / "absent")]) == 1
    assert "is not a folder" in capsys.readouterr().err


def test_the_authors_rnns_run_as_their_code_defines_them():
    """h_t = tanh(W_ih x_t + W_hh h_{t-1}), no biases, logits = W_fc h_T: the loaded network
    (through lyapbook.gradients) agrees with the recursion written out."""
    from lyapbook import gradients as lg

    rnns = smnist_rnns(hidden=16)
    assert rnns.weight_hh.shape[1:] == (16, 16) and rnns.inputs.shape == (25, 28, 28) and rnns.labels.shape == (25,)
    keys = set(zip(rnns.std.round(4).tolist(), rnns.epoch.round(4).tolist()))
    assert len(keys) == len(rnns.std), "one checkpoint per init scale and training position"
    assert np.all(np.isnan(rnns.accuracy[rnns.epoch == 0]))
    i = rnns.index(0.01, 10)
    net = rnns.network(i)
    x = torch.as_tensor(rnns.inputs, dtype=torch.float64)
    h = np.zeros((25, 16))
    for t in range(28):
        h = np.tanh(rnns.inputs[:, t].astype(float) @ rnns.weight_ih[i].T.astype(float)
                    + h @ rnns.weight_hh[i].T.astype(float))
    logits = lg.final_logits(net, x, torch.zeros(25, 16, dtype=torch.float64))
    np.testing.assert_allclose(logits.numpy(), h @ rnns.readout[i].T.astype(float), rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="no checkpoint with std=0.5"):
        rnns.index(0.5, 10)


def test_held_out_prediction_finds_a_perfect_feature_and_pairs_the_differences():
    rng = np.random.default_rng(0)
    loss = rng.normal(size=60)
    good = loss <= np.median(loss)
    folds = split_folds(good, 5, seed=0)
    results = [held_out("truth", loss, loss, folds), held_out("noise", rng.normal(size=60), loss, folds)]
    table = prediction_table(results, loss, folds, baseline="noise", draws=200).set_index("features")
    assert table.loc["truth", "rho"] > 0.99 and table.loc["truth", "F1"] > 0.9
    assert table.loc["noise", "F1 - noise"] == 0 and table.loc["noise", "dF1 low"] == 0
    assert table.loc["truth", "drho low"] > 0.3
    with pytest.raises(ValueError, match="folds must lie in"):
        split_folds(good, 1, seed=0)
    with pytest.raises(ValueError, match="baseline must be one of"):
        prediction_table(results, loss, folds, baseline="hyperparameters")


def test_a_monotone_feature_ranks_as_itself_inside_each_fold():
    """The ridge fit of one feature is monotone, so within folds it ranks the networks exactly as
    the raw feature does; pooled across folds, each fold's own intercept would reshuffle them."""
    from scipy.stats import spearmanr

    rng = np.random.default_rng(1)
    feature = rng.normal(size=80)
    loss = feature + rng.normal(scale=0.7, size=80)
    folds = split_folds(loss <= np.median(loss), 5, seed=0)
    table = prediction_table([held_out("feature", feature, loss, folds)], loss, folds, baseline="feature",
                             draws=50).set_index("features")
    raw = np.mean([spearmanr(feature[folds == k], loss[folds == k])[0] for k in range(5)])
    assert table.loc["feature", "rho"] == pytest.approx(raw, abs=1e-12)
