"""Spectra of a group of networks in one batched computation equal the separate spectra.

Identity checked: for every network g, ``lyapunov_spectra(models, ...)[g]`` equals
``lyapunov_spectrum(models[g], ...)`` (float64; the two differ only in rounding, since the
group runs the same products on stacked weights), for PyTorch's modules and lyapbook's cells,
shared and per-network inputs, mixed groups, and every reducer.
"""

import warnings

import pytest
import torch
from torch import nn

import lyapbook
from lyapbook.rnn import LEM, CoRNN, LipschitzRNN, Rank1Reservoir, StackedCells

# Rounding of the same float64 arithmetic in a different batch order (bmm vs mm).
EXACT = 1e-10


def _assert_same(group, separate, exact=EXACT):
    assert torch.allclose(group.per_sequence, separate.per_sequence, rtol=0, atol=exact)
    assert torch.allclose(group.final_state, separate.final_state, rtol=0, atol=exact)
    for name in ("ftle", "log_r", "q", "r", "input_jacobian"):
        a, b = getattr(group, name), getattr(separate, name)
        assert (a is None) == (b is None)
        if a is not None:
            assert torch.allclose(a, b, rtol=0, atol=exact), name


def _networks(make, count=3):
    torch.manual_seed(7)
    return [make().double() for _ in range(count)]


# A two-layer LSTM's full state holds directions that contract e^-11 per step faster than its
# leading one; float64 resolves their stretches only to eps e^11 ~ 1e-11, times the QR's
# conditioning: compared at t_on = 1 and to 1e-9 there.
@pytest.mark.parametrize(
    "make, state, t_on, exact",
    [(lambda: nn.LSTM(3, 4, num_layers=2), "hidden", 2, EXACT), (lambda: nn.LSTM(3, 4, num_layers=2), "full", 1, 1e-9),
     (lambda: nn.GRU(3, 4, batch_first=True), None, 2, EXACT), (lambda: nn.RNN(3, 5, bias=False), None, 2, EXACT)],
)
def test_group_of_torch_modules_equals_separate_spectra(make, state, t_on, exact):
    models = _networks(make)
    x = torch.randn(2, 25, 3, dtype=torch.float64)
    x = x if models[0].batch_first else x.transpose(0, 1)
    options = dict(warmup=3, t_on=t_on, ftle=True, q_vectors=True, r_matrices=True, input_jacobians=True, state=state)
    group = lyapbook.lyapunov_spectra(models, x, **options)
    for model, result in zip(models, group):
        _assert_same(result, lyapbook.lyapunov_spectrum(model, x, **options), exact)


@pytest.mark.parametrize("method", ["formed", "matrix_free"])
def test_group_of_cells_with_per_network_inputs_equals_separate_spectra(method):
    models = _networks(lambda: StackedCells([LEM(3, 4), CoRNN(4, 3, dt=0.3)]))
    x = torch.randn(3, 2, 20, 3, dtype=torch.float64)  # one set of sequences per network
    group = lyapbook.lyapunov_spectra(models, x, state="full", k=5, method=method)
    for g, model in enumerate(models):
        _assert_same(group[g], lyapbook.lyapunov_spectrum(model, x[g], state="full", k=5, method=method))


def test_mixed_group_is_split_and_keeps_the_order():
    torch.manual_seed(1)
    models = [nn.LSTM(3, 4).double(), nn.GRU(3, 4).double(), nn.LSTM(3, 4).double(), nn.LSTM(3, 6).double()]
    x = torch.randn(15, 2, 3, dtype=torch.float64)
    group = lyapbook.lyapunov_spectra(models, x, seed=4)
    assert [r.per_sequence.shape[1] for r in group] == [8, 4, 8, 12]  # an LSTM's full state is (h, c)
    for model, result in zip(models, group):
        _assert_same(result, lyapbook.lyapunov_spectrum(model, x, seed=4))


def test_autonomous_group_with_per_network_initial_states():
    models = [Rank1Reservoir(6, g=g, seed=s).double() for g, s in ((1.2, 0), (1.8, 1))]
    h0 = torch.randn(2, 3, 6, dtype=torch.float64)
    group = lyapbook.lyapunov_spectra(models, 40, h0, warmup=5)
    for g, model in enumerate(models):
        _assert_same(group[g], lyapbook.lyapunov_spectrum(model, 40, h0[g], warmup=5))


def test_group_options_and_bad_groups_are_checked():
    models = _networks(lambda: LipschitzRNN(3, 4))
    x = torch.randn(2, 10, 3, dtype=torch.float64)
    q0 = torch.linalg.qr(torch.randn(3, 2, 4, 4, dtype=torch.float64)).Q
    group = lyapbook.lyapunov_spectra(models, x, q0=q0)
    for g, model in enumerate(models):
        _assert_same(group[g], lyapbook.lyapunov_spectrum(model, x, q0=q0[g]))
    with pytest.raises(ValueError, match="x gives 2 per-network entries but there are 3 models"):
        lyapbook.lyapunov_spectra(models, torch.randn(2, 2, 10, 3, dtype=torch.float64))
    with pytest.raises(TypeError, match="unexpected keyword arguments \\['full'\\]"):
        lyapbook.lyapunov_spectra(models, x, full=True)
    with pytest.raises(TypeError, match=r"models\[1\]: each must be a supported network"):
        lyapbook.lyapunov_spectra([models[0], "lstm"], x)
    with pytest.raises(ValueError, match="at least one network"):
        lyapbook.lyapunov_spectra([], x)


def test_a_diverging_network_is_named_or_isolated():
    torch.manual_seed(2)
    models = [nn.RNN(2, 3, nonlinearity="relu", bias=False) for _ in range(3)]
    with torch.no_grad():
        models[1].weight_hh_l0.copy_(1e30 * torch.eye(3))  # three steps between QRs overflow float32
    x = torch.ones(20, 2, 2)
    with pytest.raises(FloatingPointError, match=r"models \[1\] are not finite"):
        lyapbook.lyapunov_spectra(models, x, t_on=3)
    with warnings.catch_warnings():  # the overflow also collapses directions; not what this test is about
        warnings.simplefilter("ignore")
        results = lyapbook.lyapunov_spectra(models, x, t_on=3, nonfinite="nan")
    assert not torch.isfinite(results[1].exponents).all()
    for g in (0, 2):
        separate = lyapbook.lyapunov_spectrum(models[g], x, t_on=3)
        # float32, the same products in another batch order: rounding of a few float32 operations.
        assert torch.allclose(results[g].per_sequence, separate.per_sequence, rtol=0, atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("method", ["formed", "matrix_free"])
def test_cuda_runs_equal_the_cpu_ones(method):
    models = _networks(lambda: nn.LSTM(3, 16, num_layers=2, batch_first=True))
    x = torch.randn(4, 30, 3, dtype=torch.float64)
    cpu = lyapbook.lyapunov_spectra(models, x, k=4, method=method, r_matrices=True)
    gpu = lyapbook.lyapunov_spectra([m.cuda() for m in models], x.cuda(), k=4, method=method, r_matrices=True)
    for a, b in zip(cpu, gpu):
        # Different BLAS and QR kernels: float64 rounding, amplified by 30 steps of products.
        assert torch.allclose(a.per_sequence, b.per_sequence.cpu(), atol=1e-9)
        assert torch.allclose(a.r, b.r.cpu(), atol=1e-9)
    reservoir = Rank1Reservoir(20, g=1.5).double().cuda()
    assert lyapbook.lyapunov_spectrum(reservoir, 50, k=3).exponents.device.type == "cuda"


class _Elsewhere(lyapbook.systems.Henon):
    """A system whose parameters live on another device (the meta device stands in for a GPU)."""

    @property
    def device(self):
        return torch.device("meta")


def test_a_model_on_another_device_is_named():
    with pytest.raises(ValueError, match="h0/x are on cpu but the model is on meta"):
        lyapbook.lyapunov_spectrum(_Elsewhere(), 10, torch.zeros(1, 2, dtype=torch.float64))
