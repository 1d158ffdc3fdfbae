"""Known answers for lyapbook.aelle (dissertation ch. 3; spec chapters-3-4 §1.2-§1.5, figs 3.5, 3.13-3.15).

What is asserted:
* interpolation: the midpoint rule on hand examples; exactness on spectra linear in the index for
  every ratio; midpoint and linear rules identical for power-of-two ratios; non-finite spectra
  rejected and counted; unequal lengths refused without ``length``;
* recall / precision / F1 from hand-counted confusion tables, and each undefined case;
* bootstrap by network: the interval holds the estimate and narrows with n; resampling networks
  of three identical epochs gives exactly the draws of one row per network;
* classifiers on constructed data: best-F1 threshold (and its scan against brute force), median
  classifier with the direction from training, the 2^d-orthant rule on a 2-d toy, the loss rule;
* splits by network keep a network's rows together and honour fractions and strata;
* PCA: variances are the covariance eigenvalues, and every PC puts the good class to the right;
* the autoencoder (float64, one thread): layer sizes of spec §1.3, the α schedule, seeded and
  free of global random state, the kept state really is the best-validation one, standardised
  targets, and two synthetic spectrum families separated on held-out networks; a group of
  autoencoders (and of PredNets) trains each member as it trains alone, whatever its neighbours;
* Eq. 3.7: the pseudo-inverse shift moves the head's output by exactly ΔT; the zero-loss
  hyperplane's samples are predicted at exactly the zero-loss target;
* Fig 3.5 features on linear and piecewise-linear spectra; Table D5 composition by hand; PredNet.
Tolerances: 1e-12 for float64 identities (a few roundings of O(1) numbers); statistical
assertions state their margin where they are made.
"""

import numpy as np
import pytest
import torch

from lyapbook import aelle


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ---------------------------------------------------------------------------------- interpolation
def test_midpoint_rule_hand_examples():
    np.testing.assert_array_equal(aelle.interpolate_spectrum([4.0, 3.0, 1.0], 6), [4, 3.5, 3, 2, 1, 0])
    # two doublings: [2, 0] -> [2, 1, 0, -1] -> midpoints again, the end continuing the last slope
    np.testing.assert_array_equal(aelle.interpolate_spectrum([2.0, 0.0], 8), [2, 1.5, 1, 0.5, 0, -0.5, -1, -1.5])
    np.testing.assert_array_equal(aelle.interpolate_spectrum([3.0, 1.0], 2), [3.0, 1.0])


@pytest.mark.parametrize("n, length", [(5, 40), (16, 64), (5, 12), (7, 30), (12, 8)])
def test_interpolation_exact_on_linear_spectra(n, length):
    a, b = 0.3, -1.7
    spectrum = a + b * np.arange(n)
    expected = a + b * np.arange(length) * n / length  # output j reads fractional index j N / L
    np.testing.assert_allclose(aelle.interpolate_spectrum(spectrum, length), expected, atol=1e-12)
    np.testing.assert_allclose(aelle.interpolate_spectrum(spectrum, length, rule="linear"), expected, atol=1e-12)


def test_midpoint_and_linear_rules_agree_on_power_of_two_ratios():
    rng = np.random.default_rng(0)
    spectra = -np.sort(-rng.normal(size=(3, 9)), axis=1)
    for length in (18, 36, 144):
        np.testing.assert_allclose(aelle.interpolate_spectrum(spectra, length, rule="midpoint"),
                                   aelle.interpolate_spectrum(spectra, length, rule="linear"), atol=1e-12)
    # inside the spectrum the linear rule is np.interp on the grid i/N
    out = aelle.interpolate_spectrum(spectra[0], 20)
    positions = np.arange(20) / 20
    inside = positions <= 8 / 9
    np.testing.assert_allclose(out[inside], np.interp(positions[inside], np.arange(9) / 9, spectra[0]), atol=1e-12)


def test_prepare_spectra_rejects_and_counts_non_finite():
    spectra = [np.array([1.0, 0.0]), np.array([np.nan, 0.0, -1.0, -2.0]), np.array([0.5, 0.0, -0.5, -1.0]),
               np.array([np.inf, 1.0])]
    prepared = aelle.prepare_spectra(spectra, length=8)
    assert prepared.n_rejected == 2
    np.testing.assert_array_equal(prepared.kept, [0, 2])
    np.testing.assert_array_equal(prepared.rejected, [1, 3])
    np.testing.assert_array_equal(prepared.original_lengths, [2, 4, 4, 2])
    np.testing.assert_array_equal(prepared.spectra[0], aelle.interpolate_spectrum([1.0, 0.0], 8))
    assert np.isfinite(prepared.spectra).all() and prepared.spectra.shape == (2, 8)


def test_spectrum_input_errors():
    with pytest.raises(ValueError, match="lengths differ.*pass length="):
        aelle.prepare_spectra([np.zeros(4), np.zeros(8)])
    with pytest.raises(ValueError, match="power of two"):
        aelle.interpolate_spectrum(np.zeros(5), 12, rule="midpoint")
    with pytest.raises(ValueError, match="length: must be a positive integer"):
        aelle.interpolate_spectrum(np.zeros(5), 0)
    with pytest.raises(ValueError, match=r"shape \(n, N\)"):
        aelle.prepare_spectra(np.zeros((2, 3, 4)))


# ---------------------------------------------------------------------------------- scores
def test_prf1_by_hand():
    good = np.array([1, 1, 1, 1, 1, 0, 0, 0, 0, 0], dtype=bool)
    predicted = np.array([1, 1, 1, 0, 0, 1, 0, 0, 0, 0], dtype=bool)  # TP 3, FN 2, FP 1, TN 4
    s = aelle.prf1(predicted, good)
    assert (s.tp, s.fn, s.fp, s.tn, s.n) == (3, 2, 1, 4, 10)
    assert s.recall == pytest.approx(3 / 5, abs=1e-15) and s.precision == pytest.approx(3 / 4, abs=1e-15)
    assert s.f1 == pytest.approx(2 * 0.75 * 0.6 / 1.35, abs=1e-15)


def test_prf1_undefined_cases():
    nothing_predicted = aelle.prf1([False, False, False], [True, False, False])
    assert np.isnan(nothing_predicted.precision) and nothing_predicted.recall == 0 and nothing_predicted.f1 == 0
    nothing_good = aelle.prf1([False, False], [False, False])
    assert np.isnan(nothing_good.recall) and np.isnan(nothing_good.precision) and np.isnan(nothing_good.f1)
    wrong_only = aelle.prf1([True, False], [False, False])
    assert wrong_only.precision == 0 and np.isnan(wrong_only.recall) and wrong_only.f1 == 0
    with pytest.raises(ValueError, match="same length"):
        aelle.prf1([True], [True, False])


def test_label_good_is_strictly_below_the_median():
    labels = aelle.label_good([0.4, 0.1, 0.3, 0.2])
    assert labels.threshold == pytest.approx(0.25)
    np.testing.assert_array_equal(labels.good, [False, True, False, True])
    np.testing.assert_array_equal(aelle.label_good([1.0, 2.0, 3.0], threshold=2.0).good, [True, False, False])
    with pytest.raises(ValueError, match="NaN"):
        aelle.label_good([1.0, np.nan])


def _noisy_classifier(n, rng):
    good = rng.random(n) < 0.5
    predicted = np.where(rng.random(n) < 0.8, good, ~good)  # right 80 % of the time
    return predicted, good


def test_bootstrap_interval_contains_estimate_and_narrows_with_n():
    rng = np.random.default_rng(0)
    widths = []
    for n in (40, 640):
        predicted, good = _noisy_classifier(n, rng)
        out = aelle.bootstrap_scores(predicted, good, n_draws=1000, seed=1)
        for interval in (out.recall, out.precision, out.f1):
            assert interval.low <= interval.estimate <= interval.high
        assert out.f1.estimate == out.point.f1 and out.draws["f1"].shape == (1000,)
        widths.append(out.f1.high - out.f1.low)
    # width ~ 1/sqrt(n): 16x the networks gives ~1/4 the width; 0.5 leaves room for sampling noise
    assert widths[1] < 0.5 * widths[0]


def test_bootstrap_resamples_networks_not_rows():
    rng = np.random.default_rng(2)
    predicted, good = _noisy_classifier(60, rng)
    single = aelle.bootstrap_scores(predicted, good, n_draws=300, seed=5)
    # each network seen at three epochs with the same outcome: counts triple, scores are unchanged
    tripled = aelle.bootstrap_scores(np.repeat(predicted, 3), np.repeat(good, 3), groups=np.repeat(np.arange(60), 3),
                                     n_draws=300, seed=5)
    for name in ("recall", "precision", "f1"):
        np.testing.assert_allclose(tripled.draws[name], single.draws[name], atol=1e-12)
    assert tripled.n_groups == 60
    as_rows = aelle.bootstrap_scores(np.repeat(predicted, 3), np.repeat(good, 3), n_draws=300, seed=5)
    assert as_rows.f1.high - as_rows.f1.low < tripled.f1.high - tripled.f1.low  # rows as networks: overconfident


def test_generic_bootstrap_matches_score_bootstrap():
    rng = np.random.default_rng(3)
    predicted, good = _noisy_classifier(50, rng)
    groups = np.repeat(np.arange(25), 2)
    interval, draws = aelle.bootstrap(lambda rows: aelle.prf1(predicted[rows], good[rows]).f1, 50, groups,
                                      n_draws=200, seed=9)
    scores = aelle.bootstrap_scores(predicted, good, groups, n_draws=200, seed=9)
    np.testing.assert_allclose(draws, scores.draws["f1"], atol=1e-12)  # same seed: the same resamples
    assert interval.estimate == scores.f1.estimate


# ---------------------------------------------------------------------------------- classifiers
def test_best_f1_threshold_by_hand():
    statistic = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    good = np.array([0, 0, 1, 0, 1, 1], dtype=bool)
    scan = aelle.best_f1_threshold(statistic, good)
    # good above 2.5: TP 3, FP 1, FN 0 -> F1 = 6/7, the best of the ten candidates
    assert scan.rule == aelle.ThresholdRule(2.5, 1) and scan.best_f1 == pytest.approx(6 / 7, abs=1e-15)
    np.testing.assert_array_equal(scan.thresholds, [1.5, 2.5, 3.5, 4.5, 5.5])
    mirrored = aelle.best_f1_threshold(-statistic, good)
    assert mirrored.rule == aelle.ThresholdRule(-2.5, -1) and mirrored.best_f1 == pytest.approx(6 / 7, abs=1e-15)
    np.testing.assert_array_equal(scan.rule.predict([2.5, 2.6, 0.0]), [False, True, False])


def test_best_f1_scan_matches_brute_force_with_ties():
    rng = np.random.default_rng(4)
    statistic = rng.integers(0, 12, size=80).astype(float)  # many ties
    good = rng.random(80) < 0.4 + 0.04 * statistic
    scan = aelle.best_f1_threshold(statistic, good)
    for t, up, down in zip(scan.thresholds, scan.f1_above, scan.f1_below):
        assert up == pytest.approx(aelle.prf1(statistic > t, good).f1, abs=1e-14)
        assert down == pytest.approx(aelle.prf1(statistic < t, good).f1, abs=1e-14)
    assert scan.best_f1 == max(scan.f1_above.max(), scan.f1_below.max())


def test_median_classifier_direction_from_training():
    train_statistic = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    train_good = np.array([1, 1, 1, 0, 0, 1], dtype=bool)  # 3 of 4 good below the median 3.5
    assert aelle.median_direction(train_statistic, train_good) == -1
    statistic = np.array([10.0, 20.0, 30.0, 40.0, 50.0])
    good = np.array([1, 0, 1, 0, 0], dtype=bool)
    out = aelle.median_classifier(statistic, good, train_statistic=train_statistic, train_good=train_good)
    # boundary = median of the evaluated set (30, itself predicted bad); good below: {10, 20}
    assert out.rule == aelle.ThresholdRule(30.0, -1) and out.direction_from == "train"
    np.testing.assert_array_equal(out.predicted, [True, True, False, False, False])
    assert (out.scores.tp, out.scores.fp, out.scores.fn) == (1, 1, 1)
    # "all networks" variant: direction chosen on the evaluated set (2 good below 30, none above)
    assert aelle.median_classifier(statistic, good).rule.direction == -1


def test_orthant_rule_on_a_two_dimensional_toy():
    cells = {(1, 1): (3, 1), (-1, 1): (2, 2), (1, -1): (1, 3), (-1, -1): (4, 0)}  # (good, bad) per quadrant
    points, good = [], []
    for (sx, sy), (n_good, n_bad) in cells.items():
        points += [(sx * (1 + 0.1 * i), sy * (1 + 0.1 * i)) for i in range(n_good + n_bad)]
        good += [True] * n_good + [False] * n_bad
    points, good = np.array(points), np.array(good)
    rule = aelle.orthant_classifier(points, good, d=2)
    np.testing.assert_allclose(rule.medians, [0.0, 0.0], atol=1e-15)  # 8 points each side on both axes
    assert rule.n_nonempty == 4
    # codes: bit 0 = x above, bit 1 = y above; optimal = strictly more good: (+,+) and (-,-) only
    assert set(rule.cells[rule.optimal].tolist()) == {0b11, 0b00}
    test = np.array([[0.5, 2.0], [-3.0, -3.0], [-1.0, 1.0], [1.0, -1.0]])
    np.testing.assert_array_equal(rule.predict(test), [True, True, False, False])
    first_pc = aelle.orthant_classifier(points, good, d=1)  # x > 0: 4 good 4 bad (tie); x < 0: 6 good 2 bad
    assert first_pc.n_nonempty == 2 and first_pc.cells[first_pc.optimal].tolist() == [0]
    # a cell empty in training is never optimal: a third PC equal to the first leaves (x>0, z<0) empty
    three = aelle.orthant_classifier(np.column_stack([points, points[:, 0]]), good, d=3)
    assert three.n_nonempty == 4 and not three.predict(np.array([[1.0, 1.0, -1.0]]))[0]


def test_loss_classifier_agrees_with_labels():
    loss = np.array([0.1, 0.5, 0.2, 0.9])
    labels = aelle.label_good(loss)
    np.testing.assert_array_equal(aelle.loss_classifier(labels.threshold).predict(loss), labels.good)


def test_classifiers_refuse_one_class():
    with pytest.raises(ValueError, match="both classes"):
        aelle.best_f1_threshold([1.0, 2.0, 3.0], [True, True, True])
    with pytest.raises(ValueError, match="both classes"):
        aelle.median_classifier([1.0, 2.0], [True, False], train_statistic=[1.0, 2.0], train_good=[False, False])
    with pytest.raises(ValueError, match="both classes"):
        aelle.orthant_classifier(np.zeros((4, 2)), [False] * 4, d=2)
    with pytest.raises(ValueError, match="both classes"):
        aelle.fit_pca(np.random.default_rng(0).normal(size=(5, 3)), [True] * 5)


# ---------------------------------------------------------------------------------- splits
def test_split_by_network_keeps_networks_whole():
    ids = np.repeat(np.arange(10), 3)  # 10 networks at 3 epochs
    split = aelle.split_by_network(ids, (0.7, 0.1, 0.2), seed=3)
    assert [len(split.networks[p]) for p in ("train", "val", "test")] == [7, 1, 2]
    assert [len(getattr(split, p)) for p in ("train", "val", "test")] == [21, 3, 6]
    rows = np.concatenate([split.train, split.val, split.test])
    assert sorted(rows.tolist()) == list(range(30))
    for part in ("train", "val", "test"):
        assert set(ids[getattr(split, part)]) == set(split.networks[part].tolist())
    again = aelle.split_by_network(ids, (0.7, 0.1, 0.2), seed=3)
    np.testing.assert_array_equal(again.test, split.test)


def test_split_strata_and_empty_class_error():
    arch = np.repeat(["lstm", "gru"], 10)
    split = aelle.split_by_network(np.arange(20), (0.2, 0.2, 0.6), strata=arch)
    for part, count in (("train", 2), ("val", 2), ("test", 6)):
        assert (arch[getattr(split, part)] == "lstm").sum() == count
    good = np.zeros(20, dtype=bool)
    good[:2] = True
    with pytest.raises(ValueError, match="class is empty"):
        aelle.split_by_network(np.arange(20), (0.7, 0.1, 0.2), good=good)
    with pytest.raises(ValueError, match="got no networks"):
        aelle.split_by_network(np.arange(3), (0.9, 0.05, 0.05))


def test_kfold_tests_every_network_once():
    ids = np.repeat(np.arange(12), 2)
    folds = aelle.kfold_by_network(ids, k=4, val_fraction=0.2, seed=1)
    tested = np.concatenate([f.networks["test"] for f in folds])
    assert sorted(tested.tolist()) == list(range(12))
    for f in folds:
        assert len(f.networks["val"]) == 2 and len(f.networks["train"]) == 7
        assert not set(f.train) & set(f.test) and not set(f.val) & set(f.test)


# ---------------------------------------------------------------------------------- PCA
def test_pca_is_exact_and_puts_good_to_the_right():
    rng = np.random.default_rng(5)
    good = rng.random(60) < 0.5
    x = rng.normal(size=(60, 4)) * [3.0, 2.0, 1.0, 0.5] + np.outer(good, [1.0, -1.0, 0.5, 0.0])
    pca = aelle.fit_pca(x, good)
    eigenvalues = np.sort(np.linalg.eigvalsh(np.cov(x, rowvar=False)))[::-1]
    np.testing.assert_allclose(pca.explained_variance, eigenvalues, rtol=1e-12)
    np.testing.assert_allclose(pca.components @ pca.components.T, np.eye(4), atol=1e-12)
    scores = pca.transform(x)
    np.testing.assert_allclose(scores.mean(axis=0), 0.0, atol=1e-12)
    assert pca.oriented.all() and (scores[good].mean(axis=0) > scores[~good].mean(axis=0)).all()
    np.testing.assert_allclose(pca.inverse_transform(scores), x, atol=1e-12)
    flipped = aelle.fit_pca(x, ~good)  # swapping the classes flips every component
    np.testing.assert_allclose(flipped.components, -pca.components, atol=1e-12)


# ---------------------------------------------------------------------------------- autoencoder
def _two_families(n=96, length=16, seed=1):
    """Two spectrum shapes (linear vs quadratic decay) with low and high loss."""
    rng = np.random.default_rng(seed)
    x = np.arange(1, length + 1) / length
    family = np.arange(n) % 2 == 0
    spectra = np.where(family[:, None], 0.1 - 2 * x, -0.5 - x**2) + 0.05 * rng.standard_normal((n, length))
    loss = np.where(family, 0.2, 1.0) + 0.05 * rng.standard_normal(n)
    return spectra, loss, family


@pytest.fixture(scope="module")
def fitted():
    spectra, loss, family = _two_families()
    split = aelle.split_by_network(np.arange(len(loss)), (0.6, 0.2, 0.2), seed=0, strata=family)
    fit = aelle.fit_aelle(spectra[split.train], loss[split.train], spectra[split.val], loss[split.val], latent=4,
                          epochs_per_stage=15, lr=3e-3, batch_size=32, seed=0, progress=False, dtype=torch.float64,
                          num_threads=1)
    return fit, spectra, loss, split


def test_architecture_follows_the_spec():
    model = aelle.AeLLE(128)
    assert [m.weight.shape[::-1] for m in model.encoder if isinstance(m, torch.nn.Linear)] == [(128, 32), (32, 32)]
    assert [type(m) for m in model.encoder] == [torch.nn.Linear, torch.nn.Tanh, torch.nn.Dropout, torch.nn.Linear]
    assert [type(m) for m in model.decoder] == [torch.nn.Linear, torch.nn.Tanh, torch.nn.Dropout, torch.nn.Linear]
    assert model.encoder[2].p == 0.1 and isinstance(model.head, torch.nn.Linear) and model.head.out_features == 1
    assert aelle.alpha_schedule(2.0) == (2.0, 2.0, 3.0, 4.0)


def test_autoencoder_separates_two_families(fitted):
    fit, spectra, loss, split = fitted
    family = loss < 0.6  # the two loss levels are 16 noise deviations apart: labels are the families
    latent = fit.model.encode(spectra)
    pca = aelle.fit_pca(latent[split.train], family[split.train])
    pc1 = pca.transform(latent)[:, 0]
    test_good, test_pc1 = family[split.test], pc1[split.test]
    assert test_pc1[test_good].min() > test_pc1[~test_good].max()  # held-out families fully separated
    median = aelle.median_classifier(test_pc1, test_good, train_statistic=pc1[split.train],
                                     train_good=family[split.train])
    assert median.scores.f1 == 1.0
    # the head predicts the held-out losses; the within-family noise (0.05) caps r below 1
    assert np.corrcoef(fit.model.predict(spectra[split.test]), loss[split.test])[0, 1] > 0.9


def test_fit_history_schedule_and_best_state(fitted):
    fit, spectra, loss, split = fitted
    assert len(fit.history) == 60 and [e.alpha for e in fit.history[::15]] == [1.0, 1.0, 1.5, 2.0]
    assert fit.final.train_reconstruction < 0.5 * fit.history[0].train_reconstruction  # the decoder learns too
    val_prediction = np.array([e.val_prediction for e in fit.history])
    assert fit.best_epoch == int(np.argmin(val_prediction)) + 1
    model = fit.model
    assert float(model.target_mean) == pytest.approx(loss[split.train].mean(), abs=1e-12)
    assert float(model.target_std) == pytest.approx(loss[split.train].std(), abs=1e-12)
    # the returned model's validation prediction loss is the best epoch's, recomputed from scratch
    z_val = model.standardise(loss[split.val])
    best = np.mean((model.predict(spectra[split.val], standardised=True) - z_val) ** 2)
    assert best == pytest.approx(fit.best.val_prediction, rel=1e-10)
    final = np.mean((fit.final_model().predict(spectra[split.val], standardised=True) - z_val) ** 2)
    assert final == pytest.approx(fit.final.val_prediction, rel=1e-10)
    np.testing.assert_allclose(model.predict(spectra[:3]), model.unstandardise(model.predict(spectra[:3],
                                                                                             standardised=True)))


def test_kept_state_is_the_best_not_the_last():
    spectra, loss, family = _two_families(n=48, length=8)
    reversed_loss = np.where(family, 1.0, 0.2)  # validation says the opposite: learning makes it worse
    fit = aelle.fit_aelle(spectra[:32], loss[:32], spectra[32:], reversed_loss[32:], latent=2, epochs_per_stage=5,
                          lr=3e-3, batch_size=16, seed=0, progress=False, dtype=torch.float64)
    assert fit.best_epoch < len(fit.history) and fit.best.val_prediction < fit.final.val_prediction
    z_val = fit.model.standardise(reversed_loss[32:])
    kept = np.mean((fit.model.predict(spectra[32:], standardised=True) - z_val) ** 2)
    last = np.mean((fit.final_model().predict(spectra[32:], standardised=True) - z_val) ** 2)
    assert kept == pytest.approx(fit.best.val_prediction, rel=1e-10)
    assert last == pytest.approx(fit.final.val_prediction, rel=1e-10)


def test_snapshot_is_a_real_copy():
    from lyapbook.aelle.model import _snapshot

    model = aelle.AeLLE(8, latent=2).double()
    state = _snapshot(model)
    before = state["head.weight"].clone()
    with torch.no_grad():
        model.head.weight.add_(1.0)
    assert torch.equal(state["head.weight"], before)  # state_dict() alone would have followed the parameter


def test_fit_is_seeded_and_leaves_global_random_state_alone():
    spectra, loss, _ = _two_families(n=24, length=8)
    rng_state = torch.get_rng_state()
    kwargs = dict(latent=2, epochs_per_stage=2, batch_size=8, seed=7, progress=False, dtype=torch.float64)
    first = aelle.fit_aelle(spectra, loss, **kwargs)
    second = aelle.fit_aelle(spectra, loss, **{**kwargs, "progress": True})  # the progress bar changes nothing
    assert torch.equal(torch.get_rng_state(), rng_state)
    assert first.history == second.history and fit_states_equal(first.final_state, second.final_state)
    other = aelle.fit_aelle(spectra, loss, **{**kwargs, "seed": 8})
    assert other.history != first.history
    assert first.best_epoch == len(first.history)  # without validation the final state is kept


def test_a_group_trains_each_autoencoder_as_alone():
    # three autoencoders on different folds (13, 20 and 27 rows: 1, 2 and 2 batches of 16), dropout on
    spectra, loss, _ = _two_families(n=60, length=8)
    parts = [(spectra[:13], loss[:13]), (spectra[13:33], loss[13:33]), (spectra[33:], loss[33:])]
    val = [(spectra[k::7], loss[k::7]) for k in range(3)]
    kwargs = dict(latent=2, epochs_per_stage=3, batch_size=16, lr=3e-3, progress=False, dtype=torch.float64)
    group = aelle.fit_aelle_group(parts, val, seeds=[5, 6, 7], **kwargs)
    for k, fit in enumerate(group):
        alone = aelle.fit_aelle(*parts[k], *val[k], seed=5 + k, **kwargs)
        # float64; the only difference is the order of a few sums (batched against single products)
        np.testing.assert_allclose([e.val_prediction for e in fit.history], [e.val_prediction for e in alone.history],
                                   rtol=1e-10)
        np.testing.assert_allclose([e.train_reconstruction for e in fit.history],
                                   [e.train_reconstruction for e in alone.history], rtol=1e-10)
        assert fit.best_epoch == alone.best_epoch and fit.settings["n_train"] == len(parts[k][1])
        for key in alone.final_state:
            torch.testing.assert_close(fit.final_state[key], alone.final_state[key], rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(fit.model.predict(spectra[:4]), alone.model.predict(spectra[:4]), rtol=1e-10)
    # a member's training does not depend on its neighbours: drop one, the others are unchanged
    pair = aelle.fit_aelle_group(parts[1:], val[1:], seeds=[6, 7], **kwargs)
    assert [e.val_prediction for e in pair[1].history] == pytest.approx([e.val_prediction for e in group[2].history],
                                                                          rel=1e-10)


def test_group_input_errors():
    spectra, loss, _ = _two_families(n=16, length=8)
    with pytest.raises(ValueError, match="seeds: one per autoencoder, got 1 seeds for 2"):
        aelle.fit_aelle_group([(spectra, loss), (spectra, loss)], seeds=[0], progress=False)
    with pytest.raises(ValueError, match=r"train\[1\] spectra: expected shape \(n, 8\)"):
        aelle.fit_aelle_group([(spectra, loss), (spectra[:, :4], loss)], seeds=[0, 1], progress=False)
    with pytest.raises(ValueError, match="val: one .* pair per training set"):
        aelle.fit_aelle_group([(spectra, loss)], [], seeds=[0], progress=False)
    with pytest.raises(ValueError, match=r"train\[0\] targets: all 16 losses are equal"):
        aelle.fit_aelle_group([(spectra, np.ones(16))], seeds=[0], progress=False)


def fit_states_equal(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_fit_input_errors():
    spectra, loss, _ = _two_families(n=8, length=8)
    bad = spectra.copy()
    bad[2, 3] = np.nan
    with pytest.raises(ValueError, match="spectra: contains NaN"):
        aelle.fit_aelle(bad, loss, progress=False)
    with pytest.raises(ValueError, match="targets: expected one value per row"):
        aelle.fit_aelle(spectra, loss[:-1], progress=False)
    with pytest.raises(ValueError, match="all 8 losses are equal"):
        aelle.fit_aelle(spectra, np.ones(8), progress=False)
    with pytest.raises(ValueError, match="reconstruction and prediction"):
        aelle.fit_aelle(spectra, loss, reconstruction="huber", progress=False)
    with pytest.raises(ValueError, match=r"val_spectra: expected shape \(n, 8\)"):
        aelle.fit_aelle(spectra, loss, spectra[:, :4], loss, progress=False)


# ---------------------------------------------------------------------------------- Eq. 3.7
def test_perturbation_moves_the_head_by_exactly_delta_t(fitted):
    fit, spectra, _, _ = fitted
    latent = fit.model.encode(spectra[:10])
    grid = np.array([-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0])
    out = aelle.latent_perturbation(fit.model, latent, grid, decode=True)
    np.testing.assert_allclose(out.predicted - out.base_prediction, np.broadcast_to(grid[:, None], (7, 10)),
                               atol=1e-12)
    w, _ = fit.model.head_weights()
    shift = out.perturbed - latent
    expected = np.broadcast_to(grid[:, None, None] * w / (w @ w), shift.shape)  # along w, minimum norm
    np.testing.assert_allclose(shift, expected, atol=1e-12)
    assert out.decoded.shape == (7, 10, spectra.shape[1])
    np.testing.assert_allclose(out.decoded[3], fit.model.decode(latent), atol=1e-12)
    in_loss = aelle.latent_perturbation(fit.model, latent, [0.1], units="loss")
    np.testing.assert_allclose(fit.model.unstandardise(in_loss.predicted[0]) - fit.model.unstandardise(
        in_loss.base_prediction), 0.1, atol=1e-12)


def test_zero_loss_hyperplane(fitted):
    fit, spectra, _, split = fitted
    latent = fit.model.encode(spectra[split.train])
    plane = aelle.zero_loss_hyperplane(fit.model, latent, n_samples=50, decode=True)
    w, b = fit.model.head_weights()
    assert plane.target == pytest.approx((0.0 - float(fit.model.target_mean)) / float(fit.model.target_std))
    np.testing.assert_allclose(fit.model.predict_latent(plane.samples, standardised=True), plane.target, atol=1e-12)
    np.testing.assert_allclose(fit.model.predict_latent(plane.samples), 0.0, atol=1e-12)  # zero loss, loss units
    np.testing.assert_allclose(plane.basis.T @ plane.basis, np.eye(3), atol=1e-12)
    np.testing.assert_allclose(w @ plane.basis, 0.0, atol=1e-12)
    # the origin-centred plane point is the minimum-norm one: parallel to w
    np.testing.assert_allclose(plane.offset - w * (plane.offset @ w) / (w @ w), 0.0, atol=1e-12)
    assert plane.decoded.shape == (50, spectra.shape[1])
    centred = aelle.zero_loss_hyperplane(fit.model, latent, centre="data")
    step = centred.offset - latent.mean(axis=0)
    np.testing.assert_allclose(step - w * (step @ w) / (w @ w), 0.0, atol=1e-12)


# ---------------------------------------------------------------------------------- features, D5, PredNet
def test_spectrum_features_on_known_spectra():
    n = 40
    x = np.arange(1, n + 1) / n
    linear = 0.5 - 3.0 * x
    f = aelle.spectrum_features(linear)
    assert f.window == 4 and f.max == pytest.approx(0.5 - 3.0 / n) and f.n_positive == 6
    assert f.initial_slope == pytest.approx(-3.0, abs=1e-12) and f.final_slope == pytest.approx(-3.0, abs=1e-12)
    kinked = np.where(x <= 0.5, -0.2 * x, -0.1 - 4.0 * (x - 0.5))  # flat start, steep end
    g = aelle.spectrum_features(np.stack([kinked, linear]))
    np.testing.assert_allclose(g.initial_slope, [-0.2, -3.0], atol=1e-12)
    np.testing.assert_allclose(g.final_slope, [-4.0, -3.0], atol=1e-12)
    np.testing.assert_array_equal(g.n_positive, [0, 6])


def test_side_composition_by_hand():
    score = np.array([3.0, 2.0, 1.0, 0.0, -1.0, -2.0])
    arch = np.array(["lstm", "gru", "lstm", "rnn", "gru", "rnn"])
    out = aelle.side_composition(score, arch)  # median 0.5: right = lstm, gru, lstm
    np.testing.assert_array_equal(out.groups, ["gru", "lstm", "rnn"])
    np.testing.assert_array_equal(out.right, [1, 2, 0])
    np.testing.assert_allclose(out.composition, [1 / 3, 2 / 3, 0.0])
    np.testing.assert_allclose(out.fraction_right, [0.5, 1.0, 0.0])
    assert aelle.side_composition(score, arch, "mean").boundary == pytest.approx(0.5)
    assert aelle.side_composition(score, arch, 2.5).right.tolist() == [0, 1, 0]


def test_prednet_learns_a_linear_map():
    rng = np.random.default_rng(6)
    x = rng.normal(size=(64, 6))
    y = x @ rng.normal(size=6)
    fit = aelle.fit_prednet(x[:48], y[:48], x[48:], y[48:], hidden=16, steps=400, lr=1e-2, seed=0, progress=False,
                            dtype=torch.float64)
    assert fit.model.net[0].bias is None and isinstance(fit.model.net[1], torch.nn.LeakyReLU)
    assert fit.train_loss.shape == (400,) and fit.val_loss.shape == (400,)
    # a 16-unit LeakyReLU net fits a linear map well: the validation MSE drops 20-fold from its start
    assert fit.val_loss[-1] < fit.val_loss[0] / 20
    again = aelle.fit_prednet(x[:48], y[:48], hidden=16, steps=5, lr=1e-2, seed=0, progress=False, dtype=torch.float64)
    np.testing.assert_array_equal(again.train_loss, fit.train_loss[:5])
    assert fit.predict(x[:2]).shape == (2,)


def test_a_prednet_group_trains_each_as_alone():
    rng = np.random.default_rng(7)
    x = rng.normal(size=(40, 5))
    y = x @ rng.normal(size=5)
    parts = [(x[:15], y[:15]), (x[15:], y[15:])]  # different row counts
    val = [(x[15:20], y[15:20]), (x[:5], y[:5])]
    kwargs = dict(hidden=8, steps=30, lr=1e-2, progress=False, dtype=torch.float64)
    group = aelle.fit_prednet_group(parts, val, seeds=[3, 4], **kwargs)
    for k, fit in enumerate(group):
        alone = aelle.fit_prednet(*parts[k], *val[k], seed=3 + k, **kwargs)
        # float64; batched and single products differ only in the order of a few sums
        np.testing.assert_allclose(fit.train_loss, alone.train_loss, rtol=1e-10)
        np.testing.assert_allclose(fit.val_loss, alone.val_loss, rtol=1e-10)
        np.testing.assert_allclose(fit.predict(x[:3]), alone.predict(x[:3]), rtol=1e-10)
    with pytest.raises(ValueError, match="seeds: one per training set"):
        aelle.fit_prednet_group(parts, seeds=[1], **kwargs)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_fit_and_perturb_on_cuda():
    spectra, loss, _ = _two_families(n=32, length=8)
    kwargs = dict(latent=2, epochs_per_stage=3, batch_size=8, seed=3, progress=False, dtype=torch.float64,
                  device="cuda")
    fit = aelle.fit_aelle(spectra[:24], loss[:24], spectra[24:], loss[24:], **kwargs)
    assert next(fit.model.parameters()).is_cuda and next(fit.final_model().parameters()).is_cuda
    again = aelle.fit_aelle(spectra[:24], loss[:24], spectra[24:], loss[24:], **kwargs)
    # seeded on the device too (1e-10: cuBLAS may order a float64 reduction differently between runs)
    np.testing.assert_allclose([e.val_prediction for e in again.history], [e.val_prediction for e in fit.history],
                               rtol=1e-10)
    latent = fit.model.encode(spectra)
    assert isinstance(latent, np.ndarray) and latent.shape == (32, 2)
    out = aelle.latent_perturbation(fit.model, latent, [-1.0, 1.0], decode=True)
    np.testing.assert_allclose(out.predicted - out.base_prediction, [[-1.0] * 32, [1.0] * 32], atol=1e-12)
    prednet = aelle.fit_prednet(spectra, loss, hidden=4, steps=3, device="cuda", progress=False)
    assert prednet.predict(spectra).shape == (32,)
