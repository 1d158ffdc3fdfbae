"""The rank bound of the per-sequence weight gradient and the alignment statistics that respect it.

Asserted (float64): Delta V_t, a sum of t outer products, has no singular value beyond the t-th
above 1e-12 of the largest (rounding of an SVD of a 12 x 12 matrix); singular vectors counted
inside the range are the ones the rank allows; statistics over masked alignments equal the same
statistics over the entries left, computed by numpy.
"""

import numpy as np
import pytest
import torch
from torch import nn

from lyapbook import gradients as lg

pytestmark = pytest.mark.usefixtures("float64_default")


def test_delta_v_has_rank_at_most_t():
    torch.manual_seed(0)
    net = lg.vanilla_rnn(nn.RNN(3, 12, batch_first=True), nn.Linear(12, 5))
    gen = torch.Generator().manual_seed(1)
    x, h0 = torch.randn(4, 9, 3, generator=gen), torch.randn(4, 12, generator=gen)
    y = torch.randint(0, 5, (4,), generator=gen)
    s = lg.gradient_svd(lg.per_step_weight_gradients(net, x, y, h0)).s  # (T, batch, N)
    for t in range(9):
        assert float((s[t, :, t + 1 :] / s[t, :, :1]).max()) < 1e-12
        assert float((s[t, :, : t + 1] / s[t, :, :1]).min()) > 1e-8  # and the t directions are used
    assert lg.range_rank(9, 12).tolist() == [1, 2, 3, 4, 5, 6, 7, 8, 9]
    assert lg.range_rank(5, 3).tolist() == [1, 2, 3, 3, 3]


def test_singular_vectors_are_counted_inside_the_range():
    first = lg.singular_vector_index(6, 3, "first", steps=4)
    last = lg.singular_vector_index(6, 3, "last", steps=4)
    assert first.tolist() == [[0, -1, -1], [0, 1, -1], [0, 1, 2], [0, 1, 2]]
    assert last.tolist() == [[-1, -1, 0], [-1, 0, 1], [0, 1, 2], [1, 2, 3]]
    assert lg.singular_vector_index(6, 3, "last").tolist() == [3, 4, 5]  # the dissertation's, null space included
    with pytest.raises(ValueError, match="steps must be a positive int"):
        lg.singular_vector_index(6, 3, steps=0)


def test_masked_statistics_equal_those_of_the_entries_left():
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(4, 5, 6, 6, generator=gen)  # (T, batch, k, S)
    q_index, svs = torch.tensor([0, 2, 4]), lg.singular_vector_index(6, 3, "last", steps=4)
    dist = lg.alignment_distribution(a, q_index, svs, bins=10)
    kept = [a[t][:, q_index][:, :, int(j)].flatten() for t in range(4) for j in svs[t] if j >= 0]
    pooled = torch.cat(kept).numpy()
    assert dist.std == pytest.approx(float(np.std(pooled, ddof=1)), rel=1e-12)
    assert int(dist.counts.sum()) == pooled.size
    assert dist.std_over([0, 0, 3]) == pytest.approx(
        float(np.nanstd(dist.values[:, [0, 0, 3]].numpy(), ddof=1)), rel=1e-12)
    maps = lg.alignment_std_map(a, svs, random_index=torch.tensor([1, 3]))
    t, q = 1, 5  # step 2 holds two singular vectors inside the range: 0 and 1
    assert float(maps.std[t, q]) == pytest.approx(float(np.std(a[t, :, q, :2].numpy(), ddof=1)), rel=1e-12)
    values = torch.tensor([[1.0, float("nan"), 3.0], [float("nan")] * 3])
    assert lg.nan_std(values, dim=-1)[0] == pytest.approx(np.sqrt(2.0)) and torch.isnan(lg.nan_std(values, dim=-1)[1])
    with pytest.raises(ValueError, match="one row per step"):
        lg.alignment_distribution(a, q_index, lg.singular_vector_index(6, 3, steps=3))
