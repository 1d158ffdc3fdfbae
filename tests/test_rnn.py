"""Analytic Jacobians of PyTorch's recurrent modules against autograd through the module itself."""

import pytest
import torch
from torch import nn

import lyapbook
from lyapbook.reference import autograd_jacobian, reference_step
from lyapbook.rnn import TorchRNN



pytestmark = pytest.mark.usefixtures("float64_default")

ARCHITECTURES = {
    "rnn_tanh": lambda **kw: nn.RNN(nonlinearity="tanh", **kw),
    "rnn_relu": lambda **kw: nn.RNN(nonlinearity="relu", **kw),
    "lstm": lambda **kw: nn.LSTM(**kw),
    "gru": lambda **kw: nn.GRU(**kw),
}


def make(kind, layers=2, bias=True, batch_first=False, hidden=5, inputs=3):
    torch.manual_seed(layers * 10 + bias)
    module = ARCHITECTURES[kind](input_size=inputs, hidden_size=hidden, num_layers=layers, bias=bias, batch_first=batch_first)
    return module.double()


def module_step(system, state, x_t):
    """One step of the module's own forward, on the system's state layout."""
    return reference_step(system.module)[1](state, x_t)


CASES = [
    (kind, layers, bias, full)
    for kind in ARCHITECTURES
    for layers in (1, 2, 3)
    for bias in (True, False)
    for full in ((False, True) if kind == "lstm" else (False,))
]


@pytest.mark.parametrize("kind, layers, bias, full_state", CASES)
def test_jacobian_matches_autograd(kind, layers, bias, full_state):
    system = TorchRNN(make(kind, layers, bias), full_state=full_state)
    state = torch.randn(4, system.state_dim) * 0.8
    x_t = torch.randn(4, 3)
    new_state, jac = system.step_with_jacobian(state, x_t)
    assert torch.allclose(new_state, module_step(system, state, x_t), rtol=0, atol=1e-13)
    expected = autograd_jacobian(system.module, state, x_t, state="full" if full_state else "hidden")
    assert jac.shape == expected.shape == (4, system.tangent_dim, system.tangent_dim)
    assert (jac - expected).abs().max() <= 1e-10 * expected.abs().max()


def test_multilayer_jacobian_is_block_lower_triangular():
    system = TorchRNN(make("lstm", layers=3), full_state=True)
    jac = system.jacobian(torch.randn(2, system.state_dim), torch.randn(2, 3))
    n = system.layer_tangent
    for row in range(3):
        for col in range(row + 1, 3):
            assert torch.count_nonzero(jac[:, row * n : (row + 1) * n, col * n : (col + 1) * n]) == 0
        assert torch.count_nonzero(jac[:, row * n : (row + 1) * n, : (row + 1) * n]) > 0


@pytest.mark.parametrize("batch_first", [True, False])
def test_spectrum_follows_the_module_layout_and_final_state(batch_first):
    module = make("gru", layers=2, batch_first=batch_first)
    x = torch.randn(3, 40, 3)
    x_module = x if batch_first else x.transpose(0, 1)
    result = lyapbook.lyapunov_spectrum(module, x_module, warmup=5)
    _, h_final = module(x_module)
    assert result.per_sequence.shape == (3, 10)
    assert torch.allclose(TorchRNN(module).state_to_module(result.final_state), h_final, atol=1e-12)


def test_lstm_module_state_round_trip_and_public_jacobian():
    module = make("lstm", layers=2)
    system = TorchRNN(module)
    h0, c0 = torch.randn(2, 4, 5), torch.randn(2, 4, 5)
    state = system.state_from_module((h0, c0))
    h_back, c_back = system.state_to_module(state)
    assert torch.equal(h_back, h0) and torch.equal(c_back, c0)
    x_t = torch.randn(4, 3)
    assert torch.equal(lyapbook.jacobian(module, (h0, c0), x_t, state="hidden"), system.jacobian(state, x_t))
    assert lyapbook.jacobian(module, (h0, c0), x_t).shape == (4, 20, 20)  # the full (h, c) state by default


def test_linear_rnn_gives_log_moduli_of_eigenvalues():
    # A relu RNN whose pre-activations stay positive acts as the linear map h -> W h + b.
    module = nn.RNN(2, 4, nonlinearity="relu", bias=True)
    with torch.no_grad():
        module.weight_hh_l0.copy_(torch.tensor([[0.9, 0.5, 0.0, 0.0], [0.0, 0.8, 0.0, 0.0], [0.0, 0.0, 0.6, 0.2], [0.0, 0.0, 0.0, 0.3]]))
        module.weight_ih_l0.zero_()
        module.bias_ih_l0.fill_(1.0)
        module.bias_hh_l0.zero_()
    result = lyapbook.lyapunov_spectrum(module, torch.zeros(300, 1, 2), warmup=20)
    expected = torch.log(torch.tensor([0.9, 0.8, 0.6, 0.3]))
    assert torch.allclose(result.exponents, expected, atol=2e-3)


def test_orthogonal_recurrence_with_identity_activation_gives_zeros():
    # A permutation matrix is orthogonal and keeps a positive state positive, so the relu acts
    # as the identity; a random orthogonal matrix goes through the generic linear map.
    permutation = torch.eye(6)[torch.tensor([3, 0, 5, 1, 2, 4])]
    module = nn.RNN(2, 6, nonlinearity="relu", bias=True)
    with torch.no_grad():
        module.weight_hh_l0.copy_(permutation)
        module.weight_ih_l0.zero_()
        module.bias_ih_l0.fill_(1.0)
        module.bias_hh_l0.zero_()
    result = lyapbook.lyapunov_spectrum(module, torch.zeros(200, 2, 2))
    assert result.exponents.abs().max() < 1e-12
    q, _ = torch.linalg.qr(torch.randn(6, 6))
    rotation = lyapbook.lyapunov_spectrum(lyapbook.systems.Linear(q), 200, torch.randn(2, 6))
    assert rotation.exponents.abs().max() < 1e-12


def test_sum_of_exponents_is_mean_log_det_for_an_lstm():
    module = make("lstm", layers=2)
    x = torch.randn(2, 60, 3)
    for full_state in (False, True):
        system = TorchRNN(module, full_state=full_state)
        result = lyapbook.lyapunov_spectrum(module, x.transpose(0, 1), state="full" if full_state else "hidden", warmup=10, t_on=4)
        state = torch.zeros(2, system.state_dim)
        log_det = []
        for t in range(60):
            state, jac = system.step_with_jacobian(state, x[:, t])
            if t >= 10:
                log_det.append(torch.linalg.slogdet(jac).logabsdet)
        assert torch.allclose(result.per_sequence.sum(dim=1), torch.stack(log_det, 1).mean(1), atol=1e-9)


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda: TorchRNN(nn.LSTM(3, 4, bidirectional=True)), ValueError, "bidirectional"),
        (lambda: TorchRNN(nn.LSTM(3, 4, proj_size=2)), ValueError, "proj_size"),
        (lambda: lyapbook.lyapunov_spectrum(nn.Transformer(d_model=8, nhead=2, batch_first=True), torch.zeros(5, 1, 8)), TypeError, "model: Transformer is not supported"),
        (lambda: lyapbook.lyapunov_spectrum(nn.GRU(3, 4), torch.zeros(5, 1, 2)), ValueError, r"x must have shape \(time, batch, 3\), got \(5, 1, 2\)"),
        (lambda: lyapbook.lyapunov_spectrum(nn.GRU(3, 4), torch.zeros(5, 1, 3), k=5), ValueError, r"k must be an int in \[1, 4\]"),
        (lambda: lyapbook.lyapunov_spectrum(nn.GRU(3, 4), torch.zeros(5, 1, 3), torch.zeros(2, 1, 4)), ValueError, r"h0 must have shape \(num_layers, batch, hidden\)"),
        (lambda: lyapbook.lyapunov_spectrum(nn.LSTM(3, 4), torch.zeros(5, 1, 3), torch.zeros(1, 1, 4)), TypeError, r"tuple \(h0, c0\)"),
    ],
)
def test_bad_models_and_inputs_are_rejected(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_nan_weights_are_rejected():
    module = nn.GRU(3, 4)
    with torch.no_grad():
        module.weight_hh_l0[0, 0] = float("nan")
    with pytest.raises(ValueError, match="weight_hh_l0 contains NaN"):
        lyapbook.lyapunov_spectrum(module, torch.zeros(5, 1, 3))


def test_t_on_and_precision_leave_the_leading_exponents_unchanged():
    # QR every t_on steps factorises the same product, so in float64 only rounding differs; in
    # float32 the strongly contracting end of the spectrum degrades first (dissertation Fig. 2.5).
    module = make("lstm", layers=1, hidden=32)
    x = torch.randn(200, 3, 3)
    every = lyapbook.lyapunov_spectrum(module, x, warmup=50)
    sparse = lyapbook.lyapunov_spectrum(module, x, warmup=50, t_on=5)
    assert torch.allclose(every.exponents[:16], sparse.exponents[:16], atol=1e-8)
    single = lyapbook.lyapunov_spectrum(module.float(), x.float(), warmup=50)
    assert torch.allclose(single.exponents[:16].double(), every.exponents[:16], atol=1e-3)


def test_reflector_frame_is_exact_on_an_ill_conditioned_product():
    # J with singular values from 1 down to 1e-12: the frame's QR stays exact (Householder).
    torch.manual_seed(5)
    u, _ = torch.linalg.qr(torch.randn(8, 8))
    v, _ = torch.linalg.qr(torch.randn(8, 8))
    jac = u @ torch.diag(torch.logspace(0, -12, 8)) @ v.T
    system = lyapbook.systems.Linear(jac)
    q0 = lyapbook.orthonormalize.random_orthonormal(1, 8, 8, seed=0, dtype=torch.float64, device="cpu")
    full = lyapbook.lyapunov_spectrum(system, 40, torch.ones(1, 8), q0=q0)
    # k < n keeps an explicit Q; the same first 7 columns span the same nested subspaces.
    explicit = lyapbook.lyapunov_spectrum(system, 40, torch.ones(1, 8), k=7, q0=q0[..., :7].contiguous())
    assert torch.allclose(full.exponents[:7], explicit.exponents, atol=1e-8)
    assert torch.allclose(full.exponents, system.exact_exponents(), atol=0.5)  # 40 steps: close, not converged
