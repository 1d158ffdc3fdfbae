"""Zoos: sampled as in the dissertation with sizes from the caller, trained as ensembles, cached per
network (with weights), resumable, and holding what chapters 2 and 3 read from them."""

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

import lyapbook.tasks.zoo as zoo_module
from lyapbook.tasks import DownloadError
from lyapbook.tasks.training import evaluate
from lyapbook.tasks.zoo import (DIGITS_SHORT, SMNIST_INIT, NetworkSpec, ZooCache, load_network, network_key, plan_groups, run_zoo,
                                sample_specs, zoo_sizes)

# ci sizes of the chapter-3 zoos (a chapter keeps its own in chapters/profiles.yml).
CI = {
    "smnist": dict(per_arch=1, archs=("gru", "lem", "asrnn"), hidden=6, epochs=2, train_size=96, val_size=64, le_sequences=4),
    "charrnn": dict(per_size=2, sizes=(6,), epochs=2, train_size=60, val_size=40, le_sequences=2),
    "target_paper": dict(per_g=1, gains=(1.3, 1.8), hidden=30, epochs=2, test_epochs=1, le_sequences=3, le_steps=40, le_warmup=20),
    "asrnn_grid": dict(hidden=6, epochs=2, eps=(0.01, 1.0), gammas=(0.1,), sigmas=(1.0,), lrs=(0.1,), le_warmup=16,
                       le_steps=32, train_size=96, val_size=64, le_sequences=3),
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def zoos(tmp_path_factory):
    """Each ci zoo trained once into one cache: {zoo: (specs, frame, cache folder)}."""
    cache = tmp_path_factory.mktemp("zoo")
    found = {}
    for zoo, sizes in CI.items():
        specs = sample_specs(zoo, seed=1, **sizes)
        found[zoo] = (specs, run_zoo(specs, cache=cache, progress=False), cache)
    return found


def final_rows(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame.epoch == frame.stopped_epoch]


def test_paper_sizes_give_the_dissertations_zoos():
    smnist = sample_specs("smnist", per_arch=200, hidden=64, epochs=10, dataset="mnist")
    assert len(smnist) == 1600 and {s.hidden for s in smnist} == {64}
    assert all(SMNIST_INIT[s.arch][0] <= s.init_p <= SMNIST_INIT[s.arch][1] for s in smnist)
    assert {(s.lr, s.batch_size, s.le_sequences, s.le_protocol, s.cell) for s in smnist} == {(1e-2, 128, 128, "repeat", ())}
    assert smnist[0].spectrum_epochs == (0, 1, 2, 3, 4, 5, 10)
    charrnn = sample_specs("charrnn", per_size=300, sizes=(64, 128, 256, 512), epochs=15, dataset="war_and_peace")
    assert len(charrnn) == 1200 and all(0.04 <= s.init_p <= 0.40 and s.subsample == 0.3 and not s.bias for s in charrnn)
    assert {(s.lr, s.dropout) for s in charrnn} == {(2e-3, 0.1)} and charrnn[0].spectrum_epochs == tuple(range(16))
    # the 8-step digits take their own ranges, step sizes and learning rates, per architecture
    short = sample_specs("smnist", per_arch=50, hidden=16, epochs=50, patience=4)
    assert all(DIGITS_SHORT[s.arch].init_range[0] <= s.init_p <= DIGITS_SHORT[s.arch].init_range[1] for s in short)
    assert {s.arch: dict(s.cell).get("eps") for s in short}["asrnn"] == 1.0
    assert {s.arch: s.lr for s in short}["cornn"] == 2e-2 and {s.patience for s in short} == {4}
    assert sample_specs("smnist", per_arch=1, hidden=4, epochs=2, settings="dissertation")[3].cell == ()
    with pytest.raises(ValueError, match="settings: unknown 'long'"):
        sample_specs("smnist", per_arch=1, hidden=4, epochs=2, settings="long")
    # a teaching zoo may take spectra at 40 % of training and at the end only (the final epoch is always kept)
    assert sample_specs("charrnn", per_size=1, sizes=(8,), epochs=5, spectrum_epochs=[2])[0].spectrum_epochs == (2, 5)
    with pytest.raises(ValueError, match="spectrum_epochs: epochs between 0 and 5"):
        sample_specs("charrnn", per_size=1, sizes=(8,), epochs=5, spectrum_epochs=[7])
    target = sample_specs("target_paper", per_g=120, hidden=512, epochs=15)
    assert len(target) == 1200 and sorted({s.init_p for s in target}) == pytest.approx(np.arange(1.1, 2.01, 0.1))
    assert {(s.test_epochs, s.cell, s.le_sequences, s.le_steps) for s in target} == {(15, (("tau", 1.0),), 10, 200)}
    grid = sample_specs("asrnn_grid", hidden=128, epochs=142, eps=(0.01, 0.1, 1.0), gammas=(0.001, 0.01, 0.1),
                        sigmas=(1, 2, 4, 8, 16), lrs=(0.1, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0), le_warmup=500, le_steps=500,
                        dataset="mnist")
    assert len(grid) == 315 and {(s.optimizer, s.init, s.task) for s in grid} == {("adagrad", "asrnn_normal", "digits_pixels")}
    assert sample_specs("smnist", seed=3, **CI["smnist"]) == sample_specs("smnist", seed=3, **CI["smnist"])


def test_sizes_come_from_the_caller_and_missing_ones_are_named():
    with pytest.raises(ValueError, match=r"sample_specs\('smnist'\): missing size\(s\) per_arch, epochs"):
        sample_specs("smnist", hidden=16)
    with pytest.raises(ValueError, match="unknown size\\(s\\) depth; it takes per_arch, hidden, epochs"):
        sample_specs("smnist", per_arch=1, hidden=4, epochs=1, depth=2)
    with pytest.raises(TypeError):  # sizes are keywords; there is no profile argument
        sample_specs("charrnn", "teaching")
    with pytest.raises(ValueError, match="zoo: unknown 'speech'"):
        sample_specs("speech")
    assert zoo_sizes("target_paper")[0] == ("per_g", "hidden", "epochs")


def test_sequential_digits_zoo_holds_what_chapter_3_needs(zoos):
    specs, frame, cache = zoos["smnist"]
    assert frame.seed.nunique() == len(specs) == 3 and (frame.group_size == 1).all()
    final = final_rows(frame)
    with_spectra = frame.dropna(subset=["spectrum_seconds"])
    assert sorted(with_spectra.epoch.unique()) == [0, 1, 2]  # epochs 0-5 and the final one, capped at 2 here
    assert all(np.isfinite(s).all() and s.shape == (6,) for s in with_spectra.spectrum)
    assert np.isfinite(final.test_loss).all() and final.test_accuracy.between(0, 1).all()
    # Plain mean cross-entropy: an untrained 10-class network sits near log 10 (bounds: init scales up to 50 saturate).
    assert frame[frame.epoch == 0].val_loss.between(1.0, 60.0).all()
    # Trained weights come back as a module whose validation loss is the recorded one (the one shared split).
    spec = specs[0]
    model = load_network(spec, cache)
    (_, validation, _), _ = zoo_module._task_data(spec)
    recorded = final[final.seed == spec.seed].val_loss.item()
    assert evaluate(model, zoo_module._limit(validation, spec.val_size))[0] == pytest.approx(recorded, rel=1e-5)


def test_character_zoo_records_spectra_every_epoch_on_per_network_subsamples(zoos):
    specs, frame, _ = zoos["charrnn"]
    assert sorted(frame.dropna(subset=["spectrum_seconds"]).epoch.unique()) == [0, 1, 2]
    a, b = specs
    rows_a, rows_b = (zoo_module._subsample(s, 60, 1) for s in (a, b))
    assert len(rows_a) == len(rows_b) == 18 and not torch.equal(rows_a, rows_b)  # 30 % of 60, each its own


def test_target_learning_zoo_on_the_paper_target(zoos):
    specs, frame, cache = zoos["target_paper"]
    assert len(frame) == 2 and (frame.epoch == 2).all()
    assert all(s.shape == (30,) and np.isfinite(s).all() for s in frame.spectrum)
    assert (frame.val_loss > 0).all() and frame.val_accuracy.notna().all()
    reservoir = load_network(specs[0], cache)
    assert reservoir.tau == 1.0 and reservoir.w_out.abs().sum() > 0
    # the stored free run is the network's output over the first test epoch, and its MAE part of val_loss
    for row in frame.itertuples():
        assert row.free_run.shape == row.free_run_target.shape == (1200,)
        assert np.abs(row.free_run - row.free_run_target).mean() == pytest.approx(row.val_loss, rel=1e-5)


def test_reservoir_spectra_do_not_depend_on_t_on():
    # dt = 0.1: one step stretches tangent vectors by at most e^(0.1 lambda), so a QR every 10 steps
    # loses nothing; the diagonal of a product of triangular R's is the product of their diagonals
    from lyapbook import lyapunov_spectrum
    from lyapbook.rnn import Rank1Reservoir

    reservoir = Rank1Reservoir(40, g=1.5, tau=1.0, seed=3).double()
    with torch.no_grad():
        reservoir.w_out.copy_(0.3 * torch.randn(40, generator=torch.Generator().manual_seed(1), dtype=torch.float64))
    starts = 0.5 * torch.randn(3, 40, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    every = lyapunov_spectrum(reservoir, 300, starts, warmup=100, t_on=1)
    tenth = lyapunov_spectrum(reservoir, 300, starts, warmup=100, t_on=10)
    torch.testing.assert_close(tenth.per_sequence, every.per_sequence, rtol=0, atol=1e-10)
    assert sample_specs("target_paper", per_g=1, hidden=8, epochs=1)[0].le_t_on == 10


def test_asrnn_grid_records_jacobian_eigenvalues_and_spectra(zoos):
    specs, frame, _ = zoos["asrnn_grid"]
    final = final_rows(frame)
    assert len(final) == 2 and all(np.iscomplexobj(e) and e.shape == (6,) for e in final.eigenvalues)
    # eps = 0.01: J = I + eps diag(tanh') (W - W^T - gamma I) keeps every eigenvalue within eps (1 + |W|) of 1.
    small = final[final.cell.map(dict).map(lambda c: c["eps"]) == 0.01].eigenvalues.item()
    assert np.abs(small - 1).max() < 0.1
    assert all(s.shape == (6,) for s in final.spectrum)


def test_resumed_sweeps_retrain_nothing_and_zoos_share_networks(zoos, monkeypatch):
    specs, frame, cache = zoos["smnist"]
    more = sample_specs("smnist", seed=2, **CI["smnist"])
    trained = []
    original = zoo_module.train_group

    def recording(group, device="cpu"):
        trained.extend(group)
        return original(group, device)

    monkeypatch.setattr(zoo_module, "train_group", recording)
    again = run_zoo(specs + more, cache=cache, progress=False)
    assert trained == more  # only the new networks, grouped by architecture
    pd.testing.assert_frame_equal(again[again.seed.isin([s.seed for s in specs])].reset_index(drop=True),
                                  frame.reset_index(drop=True))
    renamed = [dataclasses.replace(spec, zoo="another_chapter") for spec in specs]
    trained.clear()
    shared = run_zoo(renamed, cache=cache, progress=False)
    assert trained == [] and set(shared.zoo) == {"another_chapter"}


def test_ensembles_group_what_they_can_and_match_networks_trained_alone(tmp_path):
    sizes = dict(CI["smnist"], archs=("gru",), per_arch=3, epochs=1)
    specs = sample_specs("smnist", seed=4, **sizes)
    mixed = specs + [dataclasses.replace(specs[0], hidden=5), dataclasses.replace(specs[0], arch="lstm")]
    assert [len(g) for g in plan_groups(mixed)] == [3, 1, 1]
    assert [len(g) for g in plan_groups(specs, n_jobs=2)] == [2, 1]
    together = run_zoo(specs, cache=tmp_path / "group", progress=False)
    alone = pd.concat([run_zoo([s], cache=tmp_path / "alone", progress=False) for s in specs], ignore_index=True)
    assert together.group_size.max() == 3 and (alone.group_size == 1).all()
    assert np.allclose(together.val_loss, alone.val_loss, rtol=1e-4)  # float32 rounding of differently batched products
    assert np.allclose(np.stack(together.dropna(subset=["spectrum_seconds"]).spectrum),
                       np.stack(alone.dropna(subset=["spectrum_seconds"]).spectrum), atol=1e-4)


def test_a_diverging_network_is_recorded_as_failed(tmp_path):
    good = sample_specs("smnist", seed=5, **dict(CI["smnist"], archs=("rnn",), per_arch=2, epochs=2))
    bad = dataclasses.replace(good[1], lr=1e38, optimizer="sgd", clip=None)  # one step takes float32 logits to inf
    frame = run_zoo([good[0], bad], cache=tmp_path, progress=False)
    failed = frame.groupby("seed").failed.first()
    assert not failed[good[0].seed] and failed[bad.seed]
    assert frame[frame.seed == bad.seed].epoch.max() == frame[frame.seed == bad.seed].failed_epoch.max() == 1
    assert frame[frame.seed == good[0].seed].epoch.max() == 2
    assert frame[frame.seed == good[0].seed].spectrum.map(lambda s: np.isfinite(s).all()).all()


def test_one_validation_split_per_dataset():
    specs = sample_specs("smnist", seed=0, **CI["smnist"])
    validations = [zoo_module._task_data(s)[0][1] for s in specs]
    assert all(torch.equal(v.x, validations[0].x) for v in validations)


def test_bad_zoo_requests_are_refused_before_training():
    bad = NetworkSpec("smnist", "digits_rows", "gru", 0, 0.5, 1, 0)
    with pytest.raises(ValueError, match="impossible sizes"):
        run_zoo([bad], progress=False)
    with pytest.raises(ValueError, match="arch: unknown 'mamba'"):
        run_zoo([NetworkSpec("smnist", "digits_rows", "mamba", 8, 0.5, 1, 0)], progress=False)
    with pytest.raises(ValueError, match="dataset: 'kinect' is not available for the signal task"):
        run_zoo([NetworkSpec("ch2_signal", "signal", "lstm", 8, 0.1, 1, 0, dataset="kinect")], progress=False)
    with pytest.raises(ValueError, match="trials: dataset 'cmu_mocap' needs the CMU trial ids"):
        run_zoo([NetworkSpec("ch2_signal", "signal", "lstm", 8, 0.1, 1, 0, dataset="cmu_mocap")], progress=False)
    with pytest.raises(ValueError, match="optimizer: unknown 'lbfgs'"):
        run_zoo([NetworkSpec("smnist", "digits_rows", "gru", 8, 0.5, 1, 0, optimizer="lbfgs")], progress=False)
    too_long = sample_specs("asrnn_grid", seed=0, **dict(CI["asrnn_grid"], le_warmup=500, le_steps=500, le_sequences=5))
    with pytest.raises(ValueError, match="5000 steps exceed the 4096 steps of the validation stream"):  # 64 images x 64 pixels
        run_zoo(too_long, progress=False)
    with pytest.raises(ValueError, match="cell: \\['tau'\\] are not options of 'gru'"):
        run_zoo([NetworkSpec("smnist", "digits_rows", "gru", 8, 0.5, 1, 0, cell=(("tau", 1.0),))], progress=False)


def test_a_dataset_missing_while_offline_fails_at_once_naming_the_file(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a network was trained before its data were available")

    monkeypatch.setenv("LYAPBOOK_CACHE", str(tmp_path / "empty"))
    monkeypatch.setenv("LYAPBOOK_OFFLINE", "1")
    monkeypatch.setattr(zoo_module, "train_group", refuse)
    specs = sample_specs("smnist", seed=0, **dict(CI["smnist"], dataset="mnist"))
    with pytest.raises(DownloadError, match="train-images-idx3-ubyte.gz is not in the cache and LYAPBOOK_OFFLINE is set.*place it at"):
        run_zoo(specs, cache=tmp_path / "zoo", progress=False)
    chars = sample_specs("ch2_charrnn", seed=0, count=4, hidden=8, epochs=1, train_size=64)
    chars = [dataclasses.replace(s, dataset="war_and_peace") for s in chars]
    with pytest.raises(DownloadError, match="war_and_peace_pg2600.txt is not in the cache"):
        run_zoo(chars, cache=tmp_path / "zoo", progress=False)
    # a chapter checks all its zoos at once, before the first one trains
    offline_too = sample_specs("charrnn", seed=0, **dict(CI["charrnn"], dataset="war_and_peace"))
    with pytest.raises(DownloadError, match="war_and_peace_pg2600.txt is not in the cache"):
        zoo_module.check_datasets(sample_specs("target_paper", seed=0, **CI["target_paper"]) + offline_too)


def test_cache_entries_are_keyed_without_the_zoo_name(tmp_path):
    spec = sample_specs("target_paper", seed=0, **CI["target_paper"])[0]
    assert network_key(spec) == network_key(dataclasses.replace(spec, zoo="elsewhere"))
    assert network_key(spec) != network_key(dataclasses.replace(spec, seed=spec.seed + 1))
    store = ZooCache(tmp_path)
    store.store(spec, {"rows": [{"zoo": "x", "epoch": 1}], "state_dict": {}})
    assert store.has(spec) and store.load(spec)["rows"] == [{"zoo": "target_paper", "epoch": 1}]
    assert not list(tmp_path.rglob("*.part"))


CH2_CI = {  # chapter 2's ci sizes, smaller still (chapters/profiles.yml holds the chapter's own)
    "ch2_evolution": dict(ps=(0.04, 0.5), hidden=8, epochs=2, train_size=64),
    "ch2_charrnn": dict(count=2, hidden=8, epochs=1, train_size=64),
    "ch2_signal": dict(count=2, hidden=8, epochs=1, sequences=40),
}


@pytest.mark.parametrize("zoo", list(CH2_CI))
def test_chapter_2_zoos_keep_their_columns(zoo, tmp_path):
    specs = sample_specs(zoo, seed=0, **CH2_CI[zoo])
    frame = run_zoo(specs, n_jobs=1, progress=False, cache=tmp_path)
    final = frame[frame.epoch == frame.epoch.max()]
    assert len(final) == len(specs) and all(np.isfinite(s).all() for s in final.spectrum)
    assert {"arch", "hidden", "init_p", "seed", "val_loss", "val_accuracy", "train_loss", "epoch_lr", "epochs", "dataset",
            "task", "dropout", "lr", "best_epoch", "stopped_epoch"} <= set(frame.columns)
    assert (final.epoch_seconds > 0).all() and (final.spectrum_seconds > 0).all()
