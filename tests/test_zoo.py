"""Zoos: sampled as in the dissertation, cached, resumable, parallel."""

import joblib
import numpy as np
import pytest

import lyapbook.tasks.zoo as zoo_module
from lyapbook.tasks import DownloadError
from lyapbook.tasks.zoo import SMNIST_INIT, NetworkSpec, run_zoo, sample_specs, train_network


def test_paper_profiles_have_the_dissertations_sizes_and_ranges():
    smnist = sample_specs("smnist", "paper")
    assert len(smnist) == 1600 and {s.hidden for s in smnist} == {64}
    for spec in smnist:
        low, high = SMNIST_INIT[spec.arch]
        assert low <= spec.init_p <= high
    charrnn = sample_specs("charrnn", "paper")
    assert len(charrnn) == 1200 and sorted({s.hidden for s in charrnn}) == [64, 128, 256, 512]
    assert all(0.04 <= s.init_p <= 0.40 for s in charrnn)
    target = sample_specs("target", "paper")
    assert len(target) == 1200 and sorted({s.init_p for s in target}) == list(np.round(np.arange(1.1, 2.01, 0.1), 1))
    assert sample_specs("smnist", "paper", seed=3) == sample_specs("smnist", "paper", seed=3)
    ch2_chars = sample_specs("ch2_charrnn", "paper")
    assert len(ch2_chars) == 60 and {(s.hidden, s.init_p, s.bias) for s in ch2_chars} == {(512, 0.08, False)}
    assert all(5e-4 <= s.lr <= 6e-3 and 1e-3 <= s.dropout <= 10**-0.9 for s in ch2_chars)
    ch2_signal = sample_specs("ch2_signal", "paper")
    assert len(ch2_signal) == 30 and all(0.05 <= s.init_p <= 0.5 and s.lr == 0.05 for s in ch2_signal)
    evolution = sample_specs("ch2_evolution", "paper")
    assert [s.init_p for s in evolution] == [0.04, 0.08, 0.12, 0.16, 0.2, 0.5]
    assert all(s.hidden == 512 and s.spectrum_epochs == tuple(range(16)) for s in evolution)
    assert {s.dataset for s in ch2_chars + evolution} == {"war_and_peace"}


@pytest.mark.parametrize("zoo", ["smnist", "charrnn", "target", "ch2_evolution", "ch2_charrnn", "ch2_signal"])
def test_ci_zoo_runs_and_records_spectra(zoo, tmp_path):
    specs = sample_specs(zoo, "ci")
    frame = run_zoo(specs, cache=tmp_path, progress=False)
    final = frame[frame.epoch == frame.epoch.max()]
    assert len(final) == len(specs)
    assert all(np.isfinite(s).all() for s in final.spectrum)
    assert {"arch", "hidden", "init_p", "seed", "val_loss", "val_accuracy", "train_loss"} <= set(frame.columns)
    if zoo != "target":  # FORCE has no epochs of backpropagation to time
        assert (final.epoch_seconds > 0).all() and (final.spectrum_seconds > 0).all()


def test_second_run_is_a_cache_hit_and_an_interrupted_sweep_resumes(tmp_path, monkeypatch):
    specs = sample_specs("smnist", "ci") + sample_specs("smnist", "ci", seed=1)
    cached = joblib.Memory(tmp_path, verbose=0).cache(train_network, ignore=["device"])
    run_zoo(specs[:2], cache=tmp_path, progress=False)  # the part that finished before an interruption
    assert [cached.check_call_in_cache(s) for s in specs] == [True, True, False, False]
    run_zoo(specs, cache=tmp_path, progress=False)
    assert all(cached.check_call_in_cache(s) for s in specs)

    def refuse(*args, **kwargs):
        raise AssertionError("a cached network was trained again")

    monkeypatch.setattr(zoo_module, "train", refuse)
    again = run_zoo(specs, cache=tmp_path, progress=False)
    assert len(again) == 2 * len(specs)


def test_parallel_jobs_give_the_same_rows(tmp_path):
    specs = sample_specs("target", "ci")
    serial = run_zoo(specs, cache=tmp_path / "a", progress=False)
    parallel = run_zoo(specs, cache=tmp_path / "b", n_jobs=2, progress=False)
    assert np.allclose(serial.val_loss, parallel.val_loss)


def test_bad_zoo_requests_are_refused_before_training():
    with pytest.raises(ValueError, match="zoo: unknown 'speech'"):
        sample_specs("speech")
    with pytest.raises(ValueError, match="profile: unknown 'huge'"):
        sample_specs("smnist", "huge")
    bad = NetworkSpec("smnist", "digits_rows", "gru", 0, 0.5, 1, 0)
    with pytest.raises(ValueError, match="impossible sizes"):
        run_zoo([bad], progress=False)
    with pytest.raises(ValueError, match="arch: unknown 'mamba'"):
        run_zoo([NetworkSpec("smnist", "digits_rows", "mamba", 8, 0.5, 1, 0)], progress=False)
    with pytest.raises(ValueError, match="dataset: 'kinect' is not available for the signal task"):
        run_zoo([NetworkSpec("ch2_signal", "signal", "lstm", 8, 0.1, 1, 0, dataset="kinect")], progress=False)
    with pytest.raises(ValueError, match="trials: dataset 'cmu_mocap' needs the CMU trial ids"):
        run_zoo([NetworkSpec("ch2_signal", "signal", "lstm", 8, 0.1, 1, 0, dataset="cmu_mocap")], progress=False)


def test_a_download_the_zoo_needs_fails_before_any_training(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a network was trained before its data were available")

    monkeypatch.setenv("LYAPBOOK_CACHE", str(tmp_path / "empty"))
    monkeypatch.setattr(zoo_module, "train", refuse)
    monkeypatch.setattr("lyapbook.tasks.data.WAR_AND_PEACE_URL", (tmp_path / "missing.txt").as_uri())
    specs = [NetworkSpec("ch2_charrnn", "characters", "lstm", 8, 0.08, 1, seed, dataset="war_and_peace") for seed in (1, 2)]
    with pytest.raises(DownloadError, match="could not download .*missing.txt"):
        run_zoo(specs, cache=tmp_path / "zoo", progress=False)
