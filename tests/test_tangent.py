"""The tangent-trajectory core and its reducers, the two orientations, matrix-free propagation, and
differentiable spectra.

Identities checked (float64 throughout):
- matrix-free J @ Q equals the formed Jacobian times Q, and every input Jacobian equals autograd
  through the module's own forward, for every architecture;
- at every QR step, (Jacobian products since the last frame) @ Q_prev = Q R with R upper
  triangular with a positive diagonal, in either orientation (J, or J^T);
- log diag(R) is ``log_r``, its running mean is ``ftle``, frames kept every m steps are the full
  run's frames, and a frame selection never changes the spectrum;
- the gradient of the leading exponents equals central finite differences.
"""

import math

import pytest
import torch
from torch import nn

import lyapbook
from lyapbook.reference import autograd_input_jacobian
from lyapbook.rnn import LEM, AntisymmetricRNN, CoRNN, LipschitzRNN, Rank1Reservoir, StackedCells, as_system
from lyapbook.systems import DynamicalSystem, Linear

# Rounding of float64 products of O(n) terms with O(1) entries: far below any real discrepancy.
EXACT = 1e-11


def _model(name):
    torch.manual_seed(3)
    make = {
        "lstm1": lambda: nn.LSTM(3, 5),
        "lstm3": lambda: nn.LSTM(3, 5, num_layers=3),
        "gru2": lambda: nn.GRU(3, 5, num_layers=2, batch_first=True),
        "gru2_nobias": lambda: nn.GRU(3, 5, num_layers=2, bias=False),
        "rnn_tanh2": lambda: nn.RNN(3, 5, num_layers=2),
        "rnn_relu2": lambda: nn.RNN(3, 5, num_layers=2, nonlinearity="relu"),
        "asrnn": lambda: AntisymmetricRNN(3, 5, eps=0.5, gamma=0.1),
        "cornn": lambda: CoRNN(3, 5, dt=0.3),
        "lipschitz": lambda: LipschitzRNN(3, 5, dt=0.3),
        "lem": lambda: LEM(3, 5, dt=0.7),
        "reservoir": lambda: Rank1Reservoir(5, g=1.5, input_size=3),
        "stack": lambda: StackedCells([LEM(3, 4), CoRNN(4, 5, dt=0.3), AntisymmetricRNN(5, 3, eps=0.5)]),
    }[name]
    model = make().double().eval()
    if isinstance(model, Rank1Reservoir):
        with torch.no_grad():
            model.w_out.normal_(0.0, 0.3)  # an active feedback loop
    return model


MODELS = ["lstm1", "lstm3", "gru2", "gru2_nobias", "rnn_tanh2", "rnn_relu2", "asrnn", "cornn", "lipschitz", "lem",
          "reservoir", "stack"]
WITH_FULL_STATE = {"lstm1", "lstm3", "cornn", "lem", "stack"}
CASES = [(name, full) for name in MODELS for full in ((False, True) if name in WITH_FULL_STATE else (False,))]


@pytest.mark.parametrize("name, full_state", CASES)
def test_matrix_free_product_equals_the_formed_jacobian(name, full_state):
    system = as_system(_model(name), "full" if full_state else "hidden")
    state = torch.randn(4, system.state_dim, dtype=torch.float64) * 0.8
    x_t = torch.randn(4, 3, dtype=torch.float64)
    frame = torch.linalg.qr(torch.randn(4, system.tangent_dim, 3, dtype=torch.float64))[0]
    new_state, jac = system.step_with_jacobian(state, x_t)
    free_state, product = system.step_with_tangent(state, x_t, frame)
    # PyTorch's modules multiply the state and its tangent by each weight in one product, so the
    # state agrees to rounding (the product's blocking), not bit for bit.
    assert (free_state - new_state).abs().max() <= EXACT
    assert (product - jac @ frame).abs().max() <= EXACT
    _, transposed = system.step_with_tangent(state, x_t, frame, transpose=True)
    assert (transposed - jac.mT @ frame).abs().max() <= EXACT


@pytest.mark.parametrize("name, full_state", CASES)
def test_input_jacobian_matches_autograd_for_every_layer(name, full_state):
    model = _model(name)
    system = as_system(model, "full" if full_state else "hidden")
    state = torch.randn(4, system.state_dim, dtype=torch.float64) * 0.8
    x_t = torch.randn(4, 3, dtype=torch.float64)
    expected = autograd_input_jacobian(model, state, x_t, state="full" if full_state else "hidden")
    actual = system.input_jacobian(state, x_t)
    assert actual.shape == expected.shape == (4, system.tangent_dim, 3)
    assert (actual - expected).abs().max() <= EXACT


def test_matrix_free_and_formed_spectra_agree():
    model = _model("lstm3")
    x = torch.randn(60, 3, 3, dtype=torch.float64)
    formed = lyapbook.lyapunov_spectrum(model, x, k=4, method="formed", warmup=5)
    free = lyapbook.lyapunov_spectrum(model, x, k=4, method="matrix_free", warmup=5)
    assert torch.allclose(formed.per_sequence, free.per_sequence, rtol=0, atol=1e-12)


def _trajectory_jacobians(model, x, h0, full_state=False):
    """The step Jacobians along the trajectory from h0, formed, (batch, steps, n, n)."""
    system = as_system(model, "full" if full_state else "hidden")
    state, jacobians = h0, []
    for t in range(x.shape[1]):
        state, jac = system.step_with_jacobian(state, x[:, t])
        jacobians.append(jac)
    return torch.stack(jacobians, dim=1)


@pytest.mark.parametrize("orientation", ["forward", "transposed"])
@pytest.mark.parametrize("t_on", [1, 3])
def test_every_qr_step_factorises_the_propagated_frame(orientation, t_on):
    model = _model("gru2")  # batch_first: x is (batch, time, features)
    x = torch.randn(2, 10, 3, dtype=torch.float64)
    h0 = torch.randn(2, as_system(model).state_dim, dtype=torch.float64) * 0.5
    result = lyapbook.lyapunov_spectrum(model, x, h0, t_on=t_on, q0="identity", q_vectors=True, r_matrices=True,
                                        ftle=True, orientation=orientation)
    jacobians = _trajectory_jacobians(model, x, h0)
    if orientation == "transposed":
        jacobians = jacobians.mT
    n = jacobians.shape[-1]
    previous, start = torch.eye(n, dtype=torch.float64).expand(2, n, n), 0
    for i, elapsed in enumerate(result.times.tolist()):
        product = previous
        for t in range(start, int(elapsed)):
            product = jacobians[:, t] @ product
        q, r = result.q[:, i], result.r[:, i]
        assert torch.allclose(q @ r, product, rtol=0, atol=EXACT)
        assert torch.equal(r, r.triu()) and (torch.diagonal(r, dim1=-2, dim2=-1) > 0).all()
        assert torch.allclose(q.mT @ q, torch.eye(n, dtype=torch.float64).expand(2, n, n), atol=EXACT)
        # Columns in QR order: log diag(R) is log_r, in the same column order as ftle.
        assert torch.allclose(torch.diagonal(r, dim1=-2, dim2=-1).log(), result.log_r[:, i], atol=EXACT)
        previous, start = q, int(elapsed)
    assert result.times.tolist() == sorted({float(s) for s in range(t_on, 11, t_on)} | {10.0})
    assert torch.allclose(result.ftle, result.log_r.cumsum(dim=1) / result.times[None, :, None], atol=EXACT)


def test_transposed_orientation_is_the_reversed_time_product():
    # For J_1 ... J_T the transposed recursion factorises J_1^T ... J_T^T's transpose order:
    # its exponents are those of the reversed product; a constant J gives log|eig| either way.
    A = torch.tensor([[0.9, 2.0, 0.0], [0.0, 0.5, 1.0], [0.3, 0.0, 0.2]], dtype=torch.float64)
    linear = Linear(A)
    forward = lyapbook.lyapunov_spectrum(linear, 3000, warmup=100)
    transposed = lyapbook.lyapunov_spectrum(linear, 3000, warmup=100, orientation="transposed")
    assert torch.allclose(forward.exponents, linear.exact_exponents(), atol=2e-3)
    assert torch.allclose(transposed.exponents, linear.exact_exponents(), atol=2e-3)
    assert transposed.orientation == "transposed" and forward.orientation == "forward"
    model = _model("lstm1")
    x = torch.randn(80, 4, 3, dtype=torch.float64)
    f = lyapbook.lyapunov_spectrum(model, x, warmup=10)
    t = lyapbook.lyapunov_spectrum(model, x, warmup=10, orientation="transposed")
    # A determinant ignores order: the sums agree exactly; the spectra themselves need not.
    assert torch.allclose(f.per_sequence.sum(dim=1), t.per_sequence.sum(dim=1), atol=1e-10)


def test_frame_selections_are_the_full_runs_frames():
    model = _model("lstm3")
    x = torch.randn(31, 2, 3, dtype=torch.float64)
    full = lyapbook.lyapunov_spectrum(model, x, warmup=3, t_on=2, q_vectors=True)
    qr_steps = full.q_times.tolist()  # 2, 4, ..., 28 accumulated steps
    assert qr_steps == [2.0 * i for i in range(1, 15)]
    every = lyapbook.lyapunov_spectrum(model, x, warmup=3, t_on=2, q_every=3)
    assert torch.equal(every.q, full.q[:, 2::3]) and every.q_times.tolist() == qr_steps[2::3]
    chosen = lyapbook.lyapunov_spectrum(model, x, warmup=3, t_on=2, q_steps=[4, 28, 10], q_columns=2)
    assert torch.equal(chosen.q, full.q[:, [1, 4, 13], :, :2]) and chosen.q_times.tolist() == [4.0, 10.0, 28.0]
    assert torch.equal(chosen.per_sequence, full.per_sequence)
    with pytest.raises(ValueError, match=r"q_steps: \[5\] are not QR steps"):
        lyapbook.lyapunov_spectrum(model, x, warmup=3, t_on=2, q_steps=[5])


def test_the_stream_yields_states_tangents_and_factors():
    model = _model("rnn_tanh2")
    x = torch.randn(12, 2, 3, dtype=torch.float64)
    h0 = torch.zeros(2, 10, dtype=torch.float64)
    steps = list(lyapbook.tangent_trajectory(model, x, h0, warmup=2, t_on=4, q0="identity", input_jacobians=True))
    jacobians = _trajectory_jacobians(model, x.transpose(0, 1), h0)
    assert [s.t for s in steps] == list(range(12)) and [s.accumulating for s in steps] == [False] * 2 + [True] * 10
    assert [s.t for s in steps if s.qr is not None] == [1, 5, 9, 11]  # warm-up end, then every 4 and the last
    assert torch.allclose(steps[0].tangent, jacobians[:, 0], atol=EXACT)  # J_1 I
    assert torch.allclose(steps[2].tangent, jacobians[:, 2] @ steps[1].qr.q, atol=EXACT)
    assert steps[1].input_jacobian is None and steps[2].input_jacobian.shape == (2, 10, 3)
    assert torch.equal(steps[-1].state, lyapbook.lyapunov_spectrum(model, x, h0, warmup=2, t_on=4).final_state)


class _Rotation(DynamicalSystem):
    """h -> A h with A = a R(angle): a system with only a formed Jacobian (the default step_with_tangent)."""

    state_dim = 2

    def __init__(self, a, angle):
        self.A = a * torch.tensor([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]], dtype=torch.float64)

    def step(self, state, x=None):
        return state @ self.A.T

    def jacobian(self, state, x=None):
        return self.A.expand(state.shape[0], 2, 2)


def test_a_custom_system_keeps_working_on_every_path():
    system = _Rotation(0.8, 0.3)
    assert not system.prefers_matrix_free(1)
    for method in ("formed", "matrix_free", "auto"):
        result = lyapbook.lyapunov_spectrum(system, 50, torch.ones(1, 2, dtype=torch.float64), method=method)
        assert torch.allclose(result.exponents, torch.full((2,), math.log(0.8), dtype=torch.float64), atol=1e-12)


def _leading_exponents(weight, model, x, k, method):
    with torch.no_grad():
        model.weight_hh_l0.copy_(weight)
    return lyapbook.lyapunov_spectrum(model, x, k=k, seed=1, warmup=5, method=method).exponents


@pytest.mark.parametrize("method", ["formed", "matrix_free"])
def test_differentiable_exponents_match_finite_differences(method):
    torch.manual_seed(0)
    model = nn.RNN(2, 4, batch_first=True).double()
    x = torch.randn(2, 40, 2, dtype=torch.float64)
    result = lyapbook.lyapunov_spectrum(model, x, k=2, seed=1, warmup=5, method=method, differentiable=True)
    loss = result.exponents[0] + 0.5 * result.exponents[1]
    (gradient,) = torch.autograd.grad(loss, model.weight_hh_l0)
    weight, step = model.weight_hh_l0.detach().clone(), 1e-6
    numeric = torch.zeros_like(weight)
    for i in range(4):
        for j in range(4):
            shift = torch.zeros_like(weight)
            shift[i, j] = step
            up = _leading_exponents(weight + shift, model, x, 2, method)
            down = _leading_exponents(weight - shift, model, x, 2, method)
            numeric[i, j] = ((up[0] + 0.5 * up[1]) - (down[0] + 0.5 * down[1])) / (2 * step)
    # Central differences with step 1e-6 in float64: truncation ~1e-12, cancellation ~1e-10.
    assert torch.allclose(gradient, numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("make", [lambda: nn.GRU(2, 3, 2), lambda: nn.LSTM(2, 3, 3)])
def test_stacked_layers_differentiate_alike_formed_and_matrix_free(make):
    # The formed Jacobian of a stack is assembled block by block; autograd must reach through it.
    torch.manual_seed(5)
    model = make().double()
    x = torch.randn(12, 2, 2, dtype=torch.float64)
    weights = [model.weight_hh_l0, model.weight_ih_l1]
    gradients = []
    for method in ("formed", "matrix_free"):
        result = lyapbook.lyapunov_spectrum(model, x, k=2, seed=1, method=method, differentiable=True)
        gradients.append(torch.autograd.grad(result.exponents[0] + 0.5 * result.exponents[1], weights))
    for formed, free in zip(*gradients):
        assert formed.abs().max() > 0 and torch.allclose(formed, free, atol=1e-12)


def test_differentiable_run_keeps_the_graph_and_the_default_does_not():
    model = nn.GRU(2, 3).double()
    x = torch.randn(10, 2, 2, dtype=torch.float64)
    kept = lyapbook.lyapunov_spectrum(model, x, differentiable=True, ftle=True, r_matrices=True)
    assert kept.exponents.requires_grad and kept.ftle.requires_grad and kept.r.requires_grad
    plain = lyapbook.lyapunov_spectrum(model, x)
    assert not plain.exponents.requires_grad and not plain.final_state.requires_grad


def test_direct_calls_build_no_graph_and_a_detached_system_refuses_differentiation():
    model = nn.LSTM(3, 4).double()
    state, x_t = torch.zeros(2, 8, dtype=torch.float64), torch.randn(2, 3, dtype=torch.float64)
    assert not lyapbook.jacobian(model, state, x_t).requires_grad
    assert not as_system(model).step_with_jacobian(state, x_t)[1].requires_grad
    with pytest.raises(ValueError, match="computes with detached parameters; pass the network itself"):
        lyapbook.lyapunov_spectrum(as_system(model), torch.randn(5, 2, 3, dtype=torch.float64), differentiable=True)


def test_group_gradients_equal_separate_gradients():
    torch.manual_seed(4)
    models = [nn.RNN(2, 3).double() for _ in range(2)]
    x = torch.randn(20, 2, 2, dtype=torch.float64)
    results = lyapbook.lyapunov_spectra(models, x, k=1, differentiable=True)
    group = torch.autograd.grad(sum(r.exponents[0] for r in results), [m.weight_hh_l0 for m in models])
    for model, gradient in zip(models, group):
        (separate,) = torch.autograd.grad(lyapbook.lyapunov_spectrum(model, x, k=1, differentiable=True).exponents[0],
                                          model.weight_hh_l0)
        assert torch.allclose(gradient, separate, atol=1e-12)
