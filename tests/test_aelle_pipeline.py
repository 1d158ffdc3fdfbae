"""The chapter-level AeLLE pipeline: zoo frames to spectra, seed-averaged scores, cross-validation by
network, the pre-trained experiment and the fit cache (spec chapters-3-4 §1.5–§1.6, Tables B2–B4, 3.1–3.3).

Known answers: which networks a frame yields and why others are left out; seed-averaged bootstrap
scores equal the one-seed ones when the seeds agree; a classifier minus itself is exactly zero;
every network predicted exactly once out of fold; a statistic that *is* the label is scored F1 = 1
by every rule; a cached group comes back equal without training. Autoencoders are float64 and
tiny (a few epochs), so these tests check bookkeeping, not learning (tests/test_aelle.py does that).
"""

import numpy as np
import pandas as pd
import pytest
import torch

from lyapbook import aelle

AE = dict(latent=2, epochs_per_stage=2, batch_size=16, lr=3e-3, progress=False, dtype=torch.float64)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def fake_zoo(n=40, epochs=(0, 1, 2, 3), seed=0, sizes=(4, 8)):
    """A zoo frame as run_zoo returns it: good networks (even index) have a flatter spectrum."""
    rng = np.random.default_rng(seed)
    rows = []
    for k in range(n):
        hidden = sizes[k % len(sizes)]
        good = k % 2 == 0
        final = (0.2 if good else 1.0) + 0.05 * rng.standard_normal()
        for e in epochs:
            x = np.arange(1, hidden + 1) / hidden
            spectrum = (-0.5 * x if good else -2.0 * x) + 0.02 * rng.standard_normal(hidden)
            rows.append({"zoo": "fake", "arch": ["lstm", "gru"][k % 2 ^ (k // 2) % 2], "hidden": hidden,
                         "init_p": 0.1 * k, "seed": 1000 + k, "epoch": e, "stopped_epoch": epochs[-1],
                         "failed": False, "val_loss": final + 0.1 * (epochs[-1] - e),
                         "test_loss": final if e == epochs[-1] else np.nan, "spectrum": spectrum})
    return pd.DataFrame(rows)


def test_zoo_spectra_keeps_usable_networks_and_says_why_others_are_left_out():
    frame = fake_zoo(n=8)
    frame.loc[(frame.seed == 1001) & (frame.epoch == 3), "spectrum"] = np.nan  # a network without final spectrum
    frame.loc[(frame.seed == 1002) & (frame.epoch == 1), "spectrum"] = pd.Series(
        [np.full(4, np.inf)], index=frame.index[(frame.seed == 1002) & (frame.epoch == 1)])
    frame.loc[frame.seed == 1003, "failed"] = True
    frame.loc[(frame.seed == 1004) & (frame.epoch == 3), "test_loss"] = np.nan
    final = aelle.zoo_spectra(frame, length=8)
    assert final.n_networks == len(final) == 5 and final.spectra.shape == (5, 8) and (final.epoch == 3).all()
    reasons = dict(zip(final.excluded.seed, final.excluded.reason))
    assert reasons == {1001: "spectrum not finite or missing", 1003: "failed in training",
                       1004: "final test_loss not finite"}
    # the spectrum at epoch 1 of network 1002 is infinite: asking for it leaves the whole network out
    # (1001 lacks only its final spectrum, not asked for here)
    early = aelle.zoo_spectra(frame, length=8, epochs=[0, 1])
    assert sorted(set(early.network)) == [1000, 1001, 1005, 1006, 1007]
    assert len(early) == 10 and set(early.epoch) == {0, 1}
    # statistics come from the spectra as computed, targets are the final loss of each row's network
    row = frame[(frame.seed == 1000) & (frame.epoch == 3)].iloc[0]
    assert final.max_le[0] == pytest.approx(row.spectrum.max()) and final.mean_le[0] == pytest.approx(row.spectrum.mean())
    assert early.loss[early.network == 1000] == pytest.approx([row.test_loss] * 2)
    np.testing.assert_allclose(early.rows.epoch_loss[early.network == 1000], [row.val_loss + 0.3, row.val_loss + 0.2])
    assert early.at_epoch(1).epoch.tolist() == [1] * 5


def test_zoo_summary_counts_who_learned_and_when_a_zoo_cannot_judge():
    frame = fake_zoo(n=8)
    last = frame.epoch == 3
    frame.loc[last, "test_accuracy"] = np.where(frame.loc[last, "seed"] % 2 == 0, 0.9, 0.2)
    frame["patience"] = 2
    frame["early_stopped"] = frame.seed < 1002
    data = aelle.zoo_spectra(frame, length=8)
    table = aelle.zoo_summary(data, "fake", "arch").set_index("architecture")
    assert table.loc["all", "networks"] == 8 and table.loc["all", "share accurate (%)"] == 50.0
    assert table.loc["all", "median accuracy (%)"] == pytest.approx(55.0)
    assert table.loc["all", "stopped early (%)"] == 25.0
    assert table.loc["all", "IQR accuracy (%)"] == "20 – 90"
    # without accuracies (a FORCE zoo) the loss is summarised, and nothing stops early without patience
    force = aelle.zoo_summary(aelle.zoo_spectra(fake_zoo(n=8), length=8), "force").iloc[0]
    assert "median MAE" in force and np.isnan(force["stopped early (%)"])
    assert aelle.untestable_reason([0.1, 0.2, 0.3], 0.5, "a silent output") is None
    reason = aelle.untestable_reason([0.4, 0.6, 0.7], 0.5, "a silent output")
    assert "no better than a silent output (0.5)" in reason and "33 %" in reason
    runs = pd.DataFrame({"free_run_target": [np.array([1.0, -1.0]), None, np.array([0.5, -0.5])]})
    assert aelle.silent_output_mae(runs) == pytest.approx(0.75)
    with pytest.raises(ValueError, match="no column 'free_run_target'"):
        aelle.silent_output_mae(frame)


def test_zoo_spectra_bad_input():
    frame = fake_zoo(n=4)
    with pytest.raises(ValueError, match="no column 'test_los'"):
        aelle.zoo_spectra(frame, length=8, loss="test_los")
    with pytest.raises(ValueError, match="epochs: 'final' or a list"):
        aelle.zoo_spectra(frame, length=8, epochs="last")
    clash = frame.copy()
    clash.loc[clash.index[:2], "arch"] = "rnn"
    with pytest.raises(ValueError, match="name more than one network"):
        aelle.zoo_spectra(clash, length=8)
    broken = frame.assign(failed=True)
    with pytest.raises(ValueError, match=r"no usable network \(4 left out"):
        aelle.zoo_spectra(broken, length=8)


def test_seed_scores_reduce_to_the_one_seed_bootstrap():
    rng = np.random.default_rng(3)
    good = rng.random(60) < 0.5
    predicted = np.where(rng.random(60) < 0.8, good, ~good)
    one = aelle.bootstrap_scores(predicted, good, n_draws=500, seed=2)
    three = aelle.bootstrap_seed_scores(np.stack([predicted] * 3), good, n_draws=500, seed=2)
    for a, b in ((one.f1, three.f1), (one.recall, three.recall), (one.precision, three.precision)):
        assert (a.estimate, a.low, a.high) == pytest.approx((b.estimate, b.low, b.high), abs=1e-12)
    np.testing.assert_allclose(three.seed_sd, 0.0, atol=1e-15)  # std of three equal numbers: rounding only
    other = predicted.copy()
    other[:10] = ~other[:10]
    mixed = aelle.bootstrap_seed_scores(np.stack([predicted, other]), good, n_draws=200)
    f1s = [aelle.prf1(p, good).f1 for p in (predicted, other)]
    assert mixed.f1.estimate == pytest.approx(np.mean(f1s)) and mixed.seed_sd[2] == pytest.approx(np.std(f1s, ddof=1))
    assert aelle.bootstrap_f1_difference(predicted, predicted, good).low == 0.0
    gap = aelle.bootstrap_f1_difference(np.stack([good, good]), predicted, good, n_draws=300)
    assert gap.estimate == pytest.approx(1 - one.f1.estimate) and gap.low > 0  # perfect minus noisy


def test_cross_validation_predicts_every_network_once_and_finds_a_perfect_statistic():
    data = aelle.zoo_spectra(fake_zoo(n=40, epochs=(0, 3)), length=8)
    cv = aelle.cross_validate(data, folds=4, seeds=(0, 1), strata="hidden", cache=False, **AE)
    tested = np.sort(np.concatenate([s.test for s in cv.splits]))
    np.testing.assert_array_equal(tested, np.arange(40))
    assert cv.heldout["AeLLE"].shape == (2, 40) and cv.heldout["mean LE"].shape == (1, 40)
    assert len(cv.fits) == 2 and len(cv.fits[0]) == 4 and cv.fits[1][3].settings["seed"] == 1003
    # the spectra's slope is the label: cut at the median of all 40 (20 good) mean LE is perfect; cut at
    # a fold's training median it errs only where that fold's classes are not exactly half and half
    table = cv.table(n_draws=200).set_index("classifier")
    assert table.loc["mean LE", "f1_all"] == 1.0 and table.loc["mean LE", "f1"] > 0.85
    expected = []
    for split in cv.splits:
        cut = np.median(data.mean_le[split.train])
        expected.append(data.mean_le[split.test] > cut)  # good networks have the larger mean LE
    pooled = np.empty(40, dtype=bool)
    pooled[np.concatenate([s.test for s in cv.splits])] = np.concatenate(expected)
    np.testing.assert_array_equal(cv.heldout["mean LE"][0], pooled)
    assert table.loc["mean LE", "f1_seed_sd"] == 0.0 and cv.threshold == pytest.approx(np.median(data.loss))
    scores, held = cv.embedding(seed_index=1, fold=2)
    assert scores.shape == (40, 2) and held.sum() == 10 and held[cv.splits[2].test].all()
    assert cv.final_state_heldout().shape == (2, 40)
    # without a validation part the kept state is the final one, so both readings must agree
    no_val = aelle.cross_validate(data, folds=4, seeds=(0,), strata="hidden", val_fraction=0.0, cache=False, **AE)
    assert all(f.best_epoch == len(f.history) for f in no_val.fits[0])
    np.testing.assert_array_equal(no_val.final_state_heldout(), no_val.heldout["AeLLE"])
    diff = cv.difference("mean LE", "max LE", n_draws=100)
    assert diff.estimate == pytest.approx(table.loc["mean LE", "f1"] - table.loc["max LE", "f1"])
    with pytest.raises(ValueError, match="one spectrum per network"):
        aelle.cross_validate(aelle.zoo_spectra(fake_zoo(n=8), length=8, epochs=[0, 1]), cache=False, **AE)


def test_alpha_is_chosen_per_fold_by_the_validation_prediction_loss():
    data = aelle.zoo_spectra(fake_zoo(n=40, epochs=(0, 3)), length=8)
    cv = aelle.cross_validate(data, folds=4, seeds=(0, 1), strata="hidden", alphas=(1.0, 100.0), cache=False, **AE)
    assert set(cv.sweep) == {1.0, 100.0} and len(cv.alphas_chosen) == 4
    for f, chosen in enumerate(cv.alphas_chosen):
        losses = {a: np.mean([cv.sweep[a][i][f].best.val_prediction for i in range(2)]) for a in cv.sweep}
        assert chosen == min(losses, key=losses.get)
        assert cv.fits[1][f] is cv.sweep[chosen][1][f]
    sweep = cv.alpha_table(n_draws=50).set_index("alpha0")
    assert sweep.folds_chosen.sum() == 4 and ((0 <= sweep.cos_head_pc1) & (sweep.cos_head_pc1 <= 1 + 1e-12)).all()
    assert ((sweep.head_variance_share > 0) & (sweep.head_variance_share <= 1 + 1e-12)).all()
    for bad, message in (((), "distinct positive"), ((1.0, 1.0), "distinct positive"), ((0.0,), "distinct positive")):
        with pytest.raises(ValueError, match=message):
            aelle.cross_validate(data, folds=4, seeds=(0,), alphas=bad, cache=False, **AE)
    with pytest.raises(ValueError, match="needs validation networks"):
        aelle.cross_validate(data, folds=4, seeds=(0,), alphas=(1.0, 10.0), val_fraction=0.0, cache=False, **AE)
    with pytest.raises(ValueError, match="alphas=\\[a\\]"):
        aelle.cross_validate(data, folds=4, seeds=(0,), alpha0=3.0, cache=False, **AE)


def test_matched_readouts_score_every_representation_alike():
    data = aelle.zoo_spectra(fake_zoo(n=40, epochs=(0, 3)), length=8)
    cv = aelle.cross_validate(data, folds=4, seeds=(0, 1), strata="hidden", cache=False, **AE)
    rng = np.random.default_rng(0)
    noise = rng.standard_normal((40, 1))  # hyperparameters that know nothing
    read = aelle.matched_readouts(cv, noise)
    assert read.dims["mean + max LE"] == 2 and read.median["mean + max LE"] is None
    assert read.linear["mean LE"].shape == (2, 40)
    # the median rule on the mean exponent is the cross-validation's own
    np.testing.assert_array_equal(read.median["mean LE"][0], cv.heldout["mean LE"][0])
    table = read.table(comparator="hyperparameters", n_draws=200).set_index("representation")
    assert table.loc["mean LE", "auc"] == pytest.approx(1.0) and table.loc["mean LE", "auc_gap_low"] > 0
    assert np.isnan(table.loc["hyperparameters", "auc_gap"]) and table.loc["hyperparameters", "auc_low"] < 0.5
    assert read.difference("mean LE", "mean LE", "linear", n_draws=50).estimate == 0.0
    with pytest.raises(ValueError, match="unknown 'recipe'; choose from 'mean LE'"):
        read.table(comparator="recipe")
    with pytest.raises(ValueError, match="readout: 'auc', 'linear' or 'median'"):
        read.difference("mean LE", "max LE", "roc")
    with pytest.raises(ValueError, match="has no median rule"):
        read.difference("mean + max LE", "mean LE", "median")
    assert aelle.auc(np.array([0.1, 0.2, 0.3, 0.4]), np.array([False, False, True, True])) == 1.0
    assert aelle.auc(np.array([1.0, 1.0]), np.array([True, False])) == 0.5
    rows = pd.DataFrame({"arch": ["a", "b", "a", "b"], "init_p": [0.1, 1.0, 0.2, 2.0], "lr": [0.01] * 4,
                         "copy": ["a", "b", "a", "b"]})
    x = aelle.hyperparameter_features(rows, ["arch", "init_p", "lr", "copy"])
    assert x.shape == (4, 3)  # two one-hot columns and log p; the constant lr and the copy dropped
    with pytest.raises(ValueError, match="'size' is not a column"):
        aelle.hyperparameter_features(rows, ["size"])
    with pytest.raises(ValueError, match="do not vary"):
        aelle.hyperparameter_features(rows, ["lr"])
    with pytest.raises(ValueError, match="at least one"):
        aelle.hyperparameter_features(rows, [])


def test_a_split_with_an_empty_class_is_refused_before_training():
    frame = fake_zoo(n=6, epochs=(0, 3))
    data = aelle.zoo_spectra(frame, length=8)
    with pytest.raises(ValueError, match="only (high|low)-accuracy rows"):
        aelle.cross_validate(data, folds=3, seeds=(0,), threshold=0.0, cache=False, **AE)


def test_pretrained_experiment_bookkeeping():
    data = aelle.zoo_spectra(fake_zoo(n=30, epochs=(0, 1, 2, 3)), length=8, epochs=[0, 1, 2, 3])
    stages = {"0%": 0, "50%": 2}
    out = aelle.pretrained_aelle(data, stages=stages, fit_epochs=(0, 1, 2), seeds=(0, 1), strata="hidden",
                                 dims=(1, 2), cache=False, **AE)
    test_networks = set(out.split.networks["test"])
    for stage, epoch in stages.items():
        rows = out.test_rows(stage)
        assert set(data.network[rows]) == test_networks and (data.epoch[rows] == epoch).all()
    assert out.settings["n_train"] == 3 * len(out.split.networks["train"])  # epochs 0, 1, 2 of each
    table = out.table(n_draws=100)
    assert set(table.stage) == {"0%", "50%"} and "loss" not in set(table[table.stage == "0%"].classifier)
    # mean LE is a perfect statistic here; the loss classifier reads val_loss at the epoch
    assert (table[table.classifier == "mean LE"].f1 == 1.0).all()
    loss = out.predictions("loss", "50%")[0]
    rows = out.test_rows("50%")
    np.testing.assert_array_equal(loss, data.rows.epoch_loss.to_numpy()[rows] < out.loss_threshold)
    orthants = out.orthant_table(dims=(1, 2), stages=("0%",), n_draws=50)
    assert orthants.cells.tolist() == [2, 4] and (orthants.nonempty_cells <= orthants.cells).all()
    with pytest.raises(ValueError, match=r"no spectra after epoch\(s\) \[5\]"):
        aelle.pretrained_aelle(data, stages={"50%": 5}, fit_epochs=(0, 1), cache=False, **AE)
    # hyperparameters that are the label are read perfectly, the same at every stage; the wrong shape is refused
    recipe = (data.network % 2 == 0).astype(float)[:, None]  # even networks are the good ones
    with_recipe = aelle.pretrained_aelle(data, stages=stages, fit_epochs=(0, 1, 2), seeds=(0,), strata="hidden",
                                         dims=(1,), hyperparameters=recipe, cache=False, **AE)
    recipe_rows = with_recipe.table(("hyperparameters",), n_draws=50)
    assert (recipe_rows.f1 == 1.0).all() and len(recipe_rows) == 2
    with pytest.raises(ValueError, match="one row per spectrum"):
        aelle.pretrained_aelle(data, stages=stages, fit_epochs=(0, 1, 2), hyperparameters=recipe[:5], cache=False,
                               **AE)


def test_fit_cache_returns_the_stored_group(tmp_path, monkeypatch):
    data = aelle.zoo_spectra(fake_zoo(n=12, epochs=(3,)), length=8)
    train = [(data.spectra, data.loss)]
    first = aelle.cached_fit_group(train, None, seeds=[4], cache=tmp_path, **AE)
    assert len(list(tmp_path.glob("*.pkl"))) == 1

    def no_training(*args, **kwargs):
        raise AssertionError("a cached group was trained again")

    monkeypatch.setattr("lyapbook.aelle.cache.fit_aelle_group", no_training)
    again = aelle.cached_fit_group(train, None, seeds=[4], cache=tmp_path, **{**AE, "progress": True})
    assert [e.train_prediction for e in again[0].history] == [e.train_prediction for e in first[0].history]
    with pytest.raises(AssertionError, match="trained again"):  # another seed is another group
        aelle.cached_fit_group(train, None, seeds=[5], cache=tmp_path, **AE)
