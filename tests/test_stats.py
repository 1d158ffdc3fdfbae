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
