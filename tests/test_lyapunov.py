"""The QR engine against reference values, exact identities and its own contract."""

import math
import warnings

import pytest
import torch

import lyapbook
from lyapbook.systems import DynamicalSystem, Henon, Linear, Lorenz, trajectory

TRACE = -(10.0 + 1.0 + 8.0 / 3.0)


@pytest.fixture(scope="module")
def lorenz_converged():
    """rho = 28, t = 1000 after 100 of transient, 4 initial conditions (about 25 s)."""
    h0 = torch.tensor([1.0, 1.0, 1.0], dtype=torch.float64) + torch.randn(4, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    return lyapbook.lyapunov_spectrum(Lorenz(dt=0.01), 110_000, h0, warmup=10_000, t_on=10)


def test_lorenz_matches_reference_values(lorenz_converged):
    l1, l2, l3 = lorenz_converged.exponents.tolist()
    assert abs(l1 - 0.9056) < 0.01 * 0.9056
    assert abs(l2) < 0.005
    assert abs(l3 + 14.5723) < 0.005 * 14.5723
    assert abs(l1 + l2 + l3 - TRACE) < 0.01


def test_henon_matches_reference_values():
    result = lyapbook.lyapunov_spectrum(Henon(), 101_000, Henon().initial_state(16), warmup=1_000)
    l1, l2 = result.exponents.tolist()
    assert l1 == pytest.approx(0.41922, rel=0.005)
    assert l2 == pytest.approx(-1.62319, rel=0.005)
    assert l1 + l2 == pytest.approx(math.log(0.3), abs=1e-12)


@pytest.mark.parametrize("t_on", [1, 7])
def test_sum_equals_time_average_of_log_det_along_the_same_trajectory(t_on):
    system = Lorenz(dt=0.01)
    h0 = torch.randn(3, 3, dtype=torch.float64) * 5
    steps, warmup = 503, 100
    result = lyapbook.lyapunov_spectrum(system, steps, h0, warmup=warmup, t_on=t_on)
    path = trajectory(system, steps, h0)
    jac = torch.stack([system.jacobian(path[:, t]) for t in range(warmup, steps)], dim=1)
    mean_log_det = torch.linalg.slogdet(jac).logabsdet.mean(dim=1) / system.dt
    assert torch.allclose(result.per_sequence.sum(dim=1), mean_log_det, rtol=0, atol=1e-10)


def test_non_normal_linear_map_gives_log_moduli_of_eigenvalues():
    A = torch.tensor([[0.9, 5.0, 0.0], [0.0, 1.1, 3.0], [0.0, 0.0, 0.3]], dtype=torch.float64)
    system = Linear(A)
    result = lyapbook.lyapunov_spectrum(system, 3000, warmup=100)
    assert torch.allclose(result.exponents, system.exact_exponents(), atol=2e-3)


def test_rotation_with_scaling_gives_equal_exponents():
    angle = 0.7
    A = 0.8 * torch.tensor([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]], dtype=torch.float64)
    result = lyapbook.lyapunov_spectrum(Linear(A), 200)
    assert torch.allclose(result.exponents, torch.full((2,), math.log(0.8), dtype=torch.float64), atol=1e-12)


def test_invariant_subspace_trap_is_avoided_by_the_random_start():
    # A constant upper-triangular J never mixes the columns of I: e_1 is an eigenvector with
    # eigenvalue 0.5, so an identity start reports log 0.5 as the largest exponent.
    system = Linear([[0.5, 10.0], [0.0, 1.2]])
    trapped = lyapbook.lyapunov_spectrum(system, 500, k=1, q0="identity")
    assert trapped.exponents.item() == pytest.approx(math.log(0.5), abs=1e-12)
    for seed in range(5):
        free = lyapbook.lyapunov_spectrum(system, 500, warmup=20, k=1, seed=seed)
        assert free.exponents.item() == pytest.approx(math.log(1.2), abs=1e-3)
    full = lyapbook.lyapunov_spectrum(system, 500, q0="identity")
    assert full.exponents.tolist() == sorted(full.exponents.tolist(), reverse=True)


def test_t_on_keeps_leading_exponents():
    system = Lorenz(dt=0.01)
    every = lyapbook.lyapunov_spectrum(system, 20_000, warmup=1000, t_on=1)
    sparse = lyapbook.lyapunov_spectrum(system, 20_000, warmup=1000, t_on=10)
    # Same trajectory and frame: QR every 10 steps changes only rounding.
    assert torch.allclose(every.exponents, sparse.exponents, atol=1e-8)


def test_first_k_exponents_agree_with_the_full_spectrum():
    A = torch.diag(torch.tensor([1.5, 1.0, 0.5, 0.25], dtype=torch.float64))
    A[0, 3] = 2.0
    system = Linear(A)
    full = lyapbook.lyapunov_spectrum(system, 2000, warmup=50)
    first_two = lyapbook.lyapunov_spectrum(system, 2000, warmup=50, k=2)
    assert first_two.exponents.shape == (2,)
    assert torch.allclose(first_two.exponents, full.exponents[:2], atol=1e-3)


def test_float32_agrees_with_float64():
    h0 = Lorenz().initial_state(2)
    double = lyapbook.lyapunov_spectrum(Lorenz(dt=0.01), 3000, h0, warmup=500)
    single = lyapbook.lyapunov_spectrum(Lorenz(dt=0.01), 3000, h0.float(), warmup=500)
    assert single.exponents.dtype == torch.float32
    # Chaos separates the two trajectories, so only the statistics agree, not the digits.
    assert torch.allclose(single.exponents.double(), double.exponents, atol=0.15)
    assert abs(single.exponents.sum().item() - TRACE) < 1e-3


def test_warmup_ftle_and_q_vectors_shapes_and_consistency():
    system = Henon()
    result = lyapbook.lyapunov_spectrum(system, 105, system.initial_state(3), warmup=5, t_on=10, ftle=True, q_vectors=True)
    assert result.steps == 100 and result.warmup == 5 and result.t_on == 10
    assert result.ftle.shape == (3, 10, 2) and result.log_r.shape == (3, 10, 2)
    assert result.times.tolist() == [10.0 * (i + 1) for i in range(10)]
    assert result.q.shape == (3, 10, 2, 2)
    eye = torch.eye(2, dtype=torch.float64)
    assert torch.allclose(result.q.transpose(-1, -2) @ result.q, eye.expand(3, 10, 2, 2), atol=1e-12)
    final = result.ftle[:, -1].sort(dim=-1, descending=True).values
    assert torch.allclose(final, result.per_sequence)
    assert torch.allclose(result.log_r.sum(dim=1).sort(dim=-1, descending=True).values / 100, result.per_sequence)
    assert torch.allclose(result.std, result.per_sequence.std(dim=0))  # ddof = 1: sem is the usual standard error
    assert torch.allclose(result.sem, result.per_sequence.std(dim=0) / 3**0.5)


def test_last_partial_block_is_accumulated():
    # 23 steps with t_on = 10: QR after steps 10, 20 and the final 23.
    result = lyapbook.lyapunov_spectrum(Linear([[2.0, 0.0], [0.0, 0.5]]), 23, t_on=10, ftle=True, q0="identity")
    assert result.times.tolist() == [10.0, 20.0, 23.0]
    assert torch.allclose(result.exponents, torch.tensor([math.log(2.0), math.log(0.5)], dtype=torch.float64))


def test_results_are_reproducible_and_seeded():
    a = lyapbook.lyapunov_spectrum(Henon(), 300, seed=3)
    b = lyapbook.lyapunov_spectrum(Henon(), 300, seed=3)
    assert torch.equal(a.per_sequence, b.per_sequence)


def test_collapsed_direction_warns_and_stays_finite():
    with pytest.warns(RuntimeWarning, match="collapsed tangent direction: .*too high, upper bounds"):
        result = lyapbook.lyapunov_spectrum(Linear([[1.0, 0.0], [0.0, 0.0]]), 10, warmup=1)
    assert torch.isfinite(result.exponents).all()
    (found,) = result.diagnostics
    assert (found.kind, found.rows, found.first_step, found.qr_steps, found.exponents) == ("collapse", (0,), 1, 9, 1)
    assert result.exponents[0].item() == pytest.approx(0.0, abs=1e-12)


def test_divergence_raises_instead_of_returning_nan():
    with pytest.raises(FloatingPointError, match="not finite"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            lyapbook.lyapunov_spectrum(Henon(), 200, torch.tensor([[5.0, 5.0]], dtype=torch.float64))


class Driven(DynamicalSystem):
    state_dim = 2
    input_dim = 3

    def step(self, state, x=None):
        return torch.tanh(state + x[:, :2])


def test_input_driven_system_uses_x_and_autograd_fallback():
    x = torch.randn(4, 50, 3, dtype=torch.float64)
    result = lyapbook.lyapunov_spectrum(Driven(), x, warmup=5)
    assert result.per_sequence.shape == (4, 2)
    assert (result.exponents < 0).all()


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda: lyapbook.lyapunov_spectrum(object(), 10), TypeError, "system must be a lyapbook.systems.DynamicalSystem"),
        (lambda: lyapbook.lyapunov_spectrum(Henon(), torch.zeros(1, 5, 2)), TypeError, "autonomous"),
        (lambda: lyapbook.lyapunov_spectrum(Henon(), 0), ValueError, "at least 1"),
        (lambda: lyapbook.lyapunov_spectrum(Henon(), 10, torch.zeros(2)), ValueError, r"h0 must have shape \(batch, 2\).*unsqueeze"),
        (lambda: lyapbook.lyapunov_spectrum(Henon(), 10, torch.zeros(1, 3)), ValueError, r"h0 must have shape \(batch, 2\)"),
        (lambda: lyapbook.lyapunov_spectrum(Henon(), 10, torch.tensor([[float("nan"), 0.0]])), ValueError, "h0 contains NaN"),
        (lambda: lyapbook.lyapunov_spectrum(Henon(), 10, k=3), ValueError, r"k must be an int in \[1, 2\]"),
        (lambda: lyapbook.lyapunov_spectrum(Henon(), 10, warmup=10), ValueError, "warmup must be in"),
        (lambda: lyapbook.lyapunov_spectrum(Henon(), 10, t_on=0), ValueError, "t_on must be at least 1"),
        (lambda: lyapbook.lyapunov_spectrum(Henon(), 10, q0="eye"), ValueError, "q0 must be"),
        (lambda: lyapbook.lyapunov_spectrum(Driven(), 10), TypeError, r"pass a tensor \(batch, time, 3\)"),
        (lambda: lyapbook.lyapunov_spectrum(Driven(), torch.zeros(5, 3)), ValueError, r"x must have shape \(batch, time, 3\)"),
        (lambda: lyapbook.lyapunov_spectrum(Driven(), torch.zeros(2, 5, 4)), ValueError, r"x must have shape \(batch, time, 3\), got \(2, 5, 4\)"),
        (lambda: lyapbook.lyapunov_spectrum(Driven(), torch.zeros(2, 5, 3), torch.zeros(3, 2)), ValueError, "batch size 3 but x has batch size 2"),
        (lambda: lyapbook.lyapunov_spectrum(Lorenz(rho=[1.0, 2.0]), 10, torch.zeros(3, 3)), ValueError, "batched parameters"),
    ],
)
def test_bad_input_is_rejected_with_a_message_naming_the_argument(call, error, message):
    with pytest.raises(error, match=message):
        call()


class Scaled(DynamicalSystem):
    """h -> a h with a trainable a: the engine must not build an autograd graph over the run."""

    state_dim = 1

    def __init__(self):
        self.a = torch.nn.Parameter(torch.tensor(0.5, dtype=torch.float64))

    def step(self, state, x=None):
        return self.a * state

    def jacobian(self, state, x=None):
        return self.a.expand(state.shape[0], 1, 1)


def test_no_graph_is_built_for_trainable_parameters():
    result = lyapbook.lyapunov_spectrum(Scaled(), 50, torch.ones(2, 1, dtype=torch.float64))
    assert not result.per_sequence.requires_grad and not result.final_state.requires_grad
    assert result.exponents.item() == pytest.approx(math.log(0.5))


def test_implicit_householder_frame_matches_explicit_qr():
    from lyapbook.orthonormalize import TangentFrame, qr_stretch, random_orthonormal

    q = random_orthonormal(3, 6, 6, seed=1, dtype=torch.float64, device="cpu")
    frame, explicit = TangentFrame(q.clone(), implicit=True), q.clone()
    assert frame.implicit
    for _ in range(20):
        jac = torch.randn(3, 6, 6, dtype=torch.float64)
        frame.multiply(jac)
        explicit, expected = qr_stretch(jac @ explicit)
        assert torch.allclose(frame.reorthonormalize().stretch, expected, rtol=1e-10, atol=0)
    assert torch.allclose(frame.matrix().abs(), explicit.abs(), atol=1e-10)
