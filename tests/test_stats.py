import numpy as np
import pytest
import torch

from lyapbook import stats


def test_kaplan_yorke_of_reference_spectra():
    # Lorenz: 2 + 0.9056 / 14.5723; Hénon: 1 + 0.41922 / 1.62319 (Sprott 2003).
    assert stats.kaplan_yorke_dimension([0.9056, 0.0, -14.5723]) == pytest.approx(2.0621, abs=1e-4)
    assert stats.kaplan_yorke_dimension([0.41922, -1.62319]) == pytest.approx(1.2583, abs=1e-4)


def test_kaplan_yorke_edge_cases_and_batches():
    assert stats.kaplan_yorke_dimension([-0.1, -1.0]) == 0.0  # stable fixed point
    assert stats.kaplan_yorke_dimension([0.5, 0.2]) == 2.0  # nothing contracts
    batch = torch.tensor([[0.9056, 0.0, -14.5723], [-1.0, -2.0, -3.0], [1.0, -3.0, 0.5]])
    np.testing.assert_allclose(stats.kaplan_yorke_dimension(batch), [2.0621, 0.0, 2.5], atol=1e-4)


def test_summary_statistics():
    spectrum = np.array([-2.0, 1.0, 0.0])  # unsorted on purpose
    out = stats.summary(spectrum)
    assert out["max"] == 1.0
    assert out["mean"] == pytest.approx(-1.0 / 3.0)
    assert out["sum"] == pytest.approx(-1.0)
    assert out["variance"] == pytest.approx(np.var([1.0, 0.0, -2.0]))
    assert out["positive"] == 1


def test_empty_spectrum_is_rejected():
    with pytest.raises(ValueError, match="at least one exponent"):
        stats.max_exponent(np.zeros((3, 0)))


def test_correlation_interval_matches_scipy():
    from scipy.stats import pearsonr

    rng = np.random.default_rng(0)
    x = rng.normal(size=30)
    y = 0.6 * x + rng.normal(size=30)
    r, low, high = stats.correlation(x, y)
    reference = pearsonr(x, y)
    interval = reference.confidence_interval(0.95)
    assert np.isclose(r, reference.statistic, atol=1e-12)
    assert np.isclose(low, interval.low, atol=1e-9) and np.isclose(high, interval.high, atol=1e-9)
    assert low < r < high
    with pytest.raises(ValueError, match="at least 4 pairs"):
        stats.correlation([1, 2, 3], [1, 2, 4])


def test_partial_correlation_matches_the_precision_matrix():
    # For jointly observed (x, y, z), the partial correlation of x and y given z equals
    # -P_xy / sqrt(P_xx P_yy), P the inverse of the correlation matrix: an independent formula.
    rng = np.random.default_rng(1)
    z = rng.normal(size=(60, 2))
    x = z @ [1.0, -0.5] + rng.normal(size=60)
    y = z @ [0.8, 0.3] + 0.4 * x + rng.normal(size=60)
    precision = np.linalg.inv(np.corrcoef(np.column_stack([x, y, z]).T))
    expected = -precision[0, 1] / np.sqrt(precision[0, 0] * precision[1, 1])
    r, low, high = stats.partial_correlation(x, y, z)
    assert r == pytest.approx(expected, abs=1e-12)
    assert low < r < high
    # Fisher's interval with n - 3 - c degrees of freedom: narrower with more data.
    assert high - low > stats.partial_correlation(np.tile(x, 4), np.tile(y, 4), np.tile(z, (4, 1)))[2] - \
        stats.partial_correlation(np.tile(x, 4), np.tile(y, 4), np.tile(z, (4, 1)))[1]


def test_partial_correlation_removes_a_common_driver():
    # x and y both follow a swept hyperparameter and nothing else: raw r is large, partial r ~ 0.
    rng = np.random.default_rng(2)
    hyper = np.linspace(-1, 1, 200)
    x = hyper + 0.1 * rng.normal(size=200)
    y = hyper + 0.1 * rng.normal(size=200)
    assert stats.correlation(x, y)[0] > 0.9
    r, low, high = stats.partial_correlation(x, y, hyper)
    assert abs(r) < 0.15 and low < 0 < high


def test_partial_correlation_rejects_bad_input():
    with pytest.raises(ValueError, match="one row per pair"):
        stats.partial_correlation(np.arange(10.0), np.arange(10.0), np.arange(9.0))
    with pytest.raises(ValueError, match="at least 6 pairs"):
        stats.partial_correlation(np.arange(5.0), np.arange(5.0) ** 2, np.ones((5, 2)))
    with pytest.raises(ValueError, match="finite"):
        stats.partial_correlation([1, 2, np.nan, 4, 5], [1, 2, 3, 4, 6], [0, 1, 0, 1, 0])


def test_relations_table_agrees_with_the_single_functions():
    import pandas as pd

    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"lr": rng.uniform(size=40), "a": rng.normal(size=40)})
    frame["loss"] = -frame.lr + 0.3 * frame.a + 0.1 * rng.normal(size=40)
    frame["b"] = frame.lr + 0.1 * rng.normal(size=40)
    table = stats.relations(frame, {"a": "A", "b": "B"}, "loss", ["lr"])
    assert list(table.statistic) == ["A", "B"] and (table.n == 40).all()
    assert table.loc[0, "r"] == pytest.approx(stats.correlation(frame.a, frame.loss)[0])
    assert table.loc[1, "partial r"] == pytest.approx(stats.partial_correlation(frame.b, frame.loss, frame.lr)[0])
    # b only goes with the loss through lr: strong raw correlation, weak partial one.
    assert table.loc[1, "r"] < -0.5 and abs(table.loc[1, "partial r"]) < 0.3 < table.loc[0, "partial r"]


def test_a_stratified_bootstrap_keeps_each_stratum_whole():
    strata = np.array([0, 0, 0, 1, 1, 2])
    seen = []

    def statistic(rows):
        seen.append(np.bincount(strata[rows], minlength=3))
        return float(rows.mean())

    estimate, low, high = stats.bootstrap_interval(6, statistic, draws=50, seed=0, strata=strata)
    assert all((counts == [3, 2, 1]).all() for counts in seen)
    assert estimate == pytest.approx(2.5) and low <= high
    with pytest.raises(ValueError, match="one label per row"):
        stats.bootstrap_interval(6, statistic, strata=[0, 1])


def test_a_partial_correlation_without_residual_variance_is_nan_and_silent():
    import warnings

    rng = np.random.default_rng(0)
    x, y = np.full(20, 3.0), rng.normal(size=20)  # a resample in which x took one value
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any RuntimeWarning fails the test
        r, low, high = stats.partial_correlation(x, y, rng.normal(size=20))
    assert np.isnan(r) and np.isnan(low) and np.isnan(high)
