"""Every system's analytic Jacobian against autograd, in float64."""

import pytest
import torch

from lyapbook.reference import autograd_jacobian
from lyapbook.systems import DynamicalSystem, Henon, Linear, Lorenz, trajectory


def assert_close(actual, expected):
    scale = expected.abs().max().clamp_min(1.0)
    assert ((actual - expected).abs().max() / scale) < 1e-12


@pytest.mark.parametrize("dt", [0.001, 0.01, 0.05])
def test_lorenz_rk4_jacobian_matches_autograd(dt):
    system = Lorenz(dt=dt)
    state = torch.randn(5, 3, dtype=torch.float64) * 10
    new_state, jac = system.step_with_jacobian(state)
    assert torch.equal(new_state, system.step(state))
    assert_close(jac, autograd_jacobian(system, state))


def test_lorenz_batched_parameters_match_separate_systems():
    rhos = [28.0, 16.0, 5.0]
    batched = Lorenz(rho=rhos, sigma=[10.0, 9.0, 8.0])
    state = torch.randn(3, 3, dtype=torch.float64)
    new_state, jac = batched.step_with_jacobian(state)
    for i, (rho, sigma) in enumerate(zip(rhos, [10.0, 9.0, 8.0])):
        single = Lorenz(rho=rho, sigma=sigma)
        s, j = single.step_with_jacobian(state[i : i + 1])
        assert torch.allclose(new_state[i], s[0], rtol=0, atol=1e-14)
        assert torch.allclose(jac[i], j[0], rtol=0, atol=1e-14)
    assert_close(jac, autograd_jacobian(batched, state))


def test_lorenz_vector_field_jacobian_is_eq_1_14():
    state = torch.tensor([[1.5, -2.0, 20.0]], dtype=torch.float64)
    expected = torch.tensor([[[-10.0, 10.0, 0.0], [28.0 - 20.0, -1.0, -1.5], [-2.0, 1.5, -8.0 / 3.0]]], dtype=torch.float64)
    assert torch.allclose(Lorenz().vector_field_jacobian(state), expected)


def test_lorenz_vector_field_is_eq_1_13_for_any_leading_shape():
    state = torch.randn(2, 4, 3, dtype=torch.float64) * 10
    x, y, z = state.unbind(-1)
    expected = torch.stack((10.0 * (y - x), x * (28.0 - z) - y, x * y - 8.0 / 3.0 * z), dim=-1)
    assert_close(Lorenz().vector_field(state), expected)
    assert Lorenz().vector_field_jacobian(state).shape == (2, 4, 3, 3)


def test_lorenz_rejects_mismatched_parameter_lengths():
    with pytest.raises(ValueError, match="same length"):
        Lorenz(rho=[28.0, 16.0], beta=[1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="dt must be a positive"):
        Lorenz(dt=0.0)


def test_henon_jacobian_matches_autograd_and_has_determinant_minus_b():
    system = Henon(a=1.4, b=0.3)
    state = torch.randn(6, 2, dtype=torch.float64)
    jac = system.jacobian(state)
    assert_close(jac, autograd_jacobian(system, state))
    assert torch.allclose(torch.linalg.det(jac), torch.full((6,), -0.3, dtype=torch.float64))


def test_linear_with_input_matches_autograd():
    A = torch.randn(4, 4, dtype=torch.float64)
    B = torch.randn(4, 2, dtype=torch.float64)
    system = Linear(A, B)
    state = torch.randn(3, 4, dtype=torch.float64)
    x = torch.randn(3, 2, dtype=torch.float64)
    assert torch.allclose(system.step(state, x), state @ A.T + x @ B.T)
    assert_close(system.jacobian(state, x), autograd_jacobian(system, state, x))


def test_linear_rejects_bad_shapes():
    with pytest.raises(ValueError, match="A must be a square matrix"):
        Linear(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="B must have shape"):
        Linear(torch.eye(2), torch.zeros(3, 1))


class Logistic(DynamicalSystem):
    """A user-defined map without an analytic Jacobian: the default uses autograd."""

    state_dim = 1

    def step(self, state, x=None):
        return 3.9 * state * (1.0 - state)


def test_default_jacobian_uses_autograd():
    state = torch.rand(4, 1, dtype=torch.float64)
    expected = (3.9 * (1.0 - 2.0 * state)).unsqueeze(-1)
    assert torch.allclose(Logistic().jacobian(state), expected)


def test_trajectory_starts_at_h0_and_follows_step():
    system = Henon()
    h0 = system.initial_state(2)
    path = trajectory(system, 5, h0)
    assert path.shape == (2, 6, 2)
    assert torch.equal(path[:, 0], h0)
    assert torch.equal(path[:, 3], system.step(path[:, 2]))
