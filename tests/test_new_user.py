"""What a new user ran into (issue 10, section 4), one test each: every case either gives the right
answer or fails before any work with a message that names the argument and the fix."""

import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import lyapbook
from lyapbook.systems import DynamicalSystem, Henon, Linear

README = Path(__file__).resolve().parents[1] / "README.md"


def test_unbatched_input_on_a_time_first_module_is_one_sequence():
    torch.manual_seed(0)
    model = nn.LSTM(4, 16)
    x = torch.randn(300, 4)
    one = lyapbook.lyapunov_spectrum(model, x, warmup=20)
    assert one.per_sequence.shape == (1, 32)  # the full (h, c) state
    assert torch.equal(one.per_sequence, lyapbook.lyapunov_spectrum(model, x.unsqueeze(1), warmup=20).per_sequence)
    batch_first = nn.GRU(4, 8, batch_first=True)
    assert torch.equal(lyapbook.lyapunov_spectrum(batch_first, x).per_sequence,
                       lyapbook.lyapunov_spectrum(batch_first, x.unsqueeze(0)).per_sequence)


class _TimeFirst(DynamicalSystem):
    state_dim, input_dim, batch_first = 2, 3, False

    def step(self, state, x=None):
        return torch.tanh(state + x[:, :2])


def test_shape_errors_use_the_users_layout_and_the_right_hint():
    with pytest.raises(ValueError, match=r"x must have shape \(time, batch, 3\), got \(5, 1, 2\)"):
        lyapbook.lyapunov_spectrum(nn.GRU(3, 4), torch.zeros(5, 1, 2))
    with pytest.raises(ValueError, match=r"x must have shape \(batch, time, 3\), got \(5, 1, 2\)"):
        lyapbook.lyapunov_spectrum(nn.GRU(3, 4, batch_first=True), torch.zeros(5, 1, 2))
    with pytest.raises(ValueError, match=r"\(time, batch, 3\).*x.unsqueeze\(1\)"):
        lyapbook.lyapunov_spectrum(_TimeFirst(), torch.zeros(5, 3))


def test_mixed_dtypes_are_refused_not_cast():
    with pytest.raises(TypeError, match="model's parameters are torch.float64"):
        lyapbook.lyapunov_spectrum(nn.LSTM(3, 4).double(), torch.zeros(5, 1, 3))
    with pytest.raises(TypeError, match="model's parameters are torch.float32"):
        lyapbook.lyapunov_spectrum(nn.LSTM(3, 4), torch.zeros(5, 1, 3, dtype=torch.float64))
    with pytest.raises(TypeError, match="x is torch.float32 but h0 is torch.float64"):
        lyapbook.lyapunov_spectrum(_TimeFirst(), torch.zeros(5, 1, 3), torch.zeros(1, 2, dtype=torch.float64))


def test_the_rounding_floor_is_announced():
    torch.manual_seed(0)
    model = nn.LSTM(4, 32)
    x = torch.randn(100, 4, 4)
    with pytest.warns(RuntimeWarning, match=r"rounding floor.*t_on=5.*float64"):
        lyapbook.lyapunov_spectrum(model, x, state="full", t_on=5, warmup=20)
    with warnings_as_errors():
        lyapbook.lyapunov_spectrum(model.double(), x.double(), state="full", t_on=1, warmup=20)
    # A contraction beyond float64 in one step: a QR every step cannot help, and the warning says so.
    steep = Linear(torch.diag(torch.tensor([1.0, 1e-17], dtype=torch.float64)))
    with pytest.warns(RuntimeWarning, match=r"rounding floor: .*upper bounds.*QR every step in float64 already"):
        lyapbook.lyapunov_spectrum(steep, 20, torch.ones(1, 2, dtype=torch.float64))


class warnings_as_errors:
    def __enter__(self):
        import warnings
        self._context = warnings.catch_warnings()
        self._context.__enter__()
        warnings.simplefilter("error")

    def __exit__(self, *exc):
        return self._context.__exit__(*exc)


def test_q0_must_be_orthonormal_and_shaped_by_the_tangent_dimension():
    model = nn.LSTM(3, 4, num_layers=2)
    x = torch.randn(10, 2, 3)
    q = torch.linalg.qr(torch.randn(2, 8, 3)).Q
    assert lyapbook.lyapunov_spectrum(model, x, q0=q, state="hidden").exponents.shape == (3,)
    with pytest.raises(ValueError, match="orthonormal columns"):
        lyapbook.lyapunov_spectrum(model, x, q0=10 * q, state="hidden")
    with pytest.raises(ValueError, match=r"q0 must have shape \(batch, tangent_dim, k\) = \(2, 16, 3\) \(tangent_dim = 16"):
        lyapbook.lyapunov_spectrum(model, x, q0=q)  # the full state of two layers of (h, c): 16


def test_public_jacobian_validates_its_arguments():
    lstm = nn.LSTM(3, 5, num_layers=2)
    state = torch.zeros(2, 20)
    assert lyapbook.jacobian(lstm, state, torch.zeros(2, 3)).shape == (2, 20, 20)
    assert lyapbook.jacobian(lstm, state, torch.zeros(2, 3), state="hidden").shape == (2, 10, 10)
    with pytest.raises(ValueError, match=r"x_t: LSTM is driven by input; pass this step's input x_t, shape \(batch, 3\)"):
        lyapbook.jacobian(lstm, state)
    with pytest.raises(ValueError, match=r"x_t must have shape \(batch, 3\), got \(2, 4\)"):
        lyapbook.jacobian(lstm, state, torch.zeros(2, 4))
    with pytest.raises(ValueError, match=r"h must have shape \(batch, 20\) \(num_layers x \(h, c\) = 2 x 2 x 5"):
        lyapbook.jacobian(lstm, torch.zeros(2, 10), torch.zeros(2, 3))
    with pytest.raises(TypeError, match="x is torch.float64 but h is torch.float32"):
        lyapbook.jacobian(lstm, state, torch.zeros(2, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="x_t has batch size 3 but the state has batch size 2"):
        lyapbook.jacobian(lstm, state, torch.zeros(3, 3))


class _NoStateDim(DynamicalSystem):
    def step(self, state, x=None):
        return state


class _WrongShape(DynamicalSystem):
    state_dim = 2

    def step(self, state, x=None):
        return state[:, :1]

    def jacobian(self, state, x=None):
        return torch.eye(2, dtype=state.dtype).expand(state.shape[0], 2, 2)


class _Wrapper(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.LSTM(3, 4)

    def forward(self, x):
        return self.rnn(x)[0]


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda: lyapbook.lyapunov_spectrum(nn.GRU(3, 4), torch.zeros(5, 1, 3), state="all"), ValueError,
         "state must be 'full' .* or 'hidden'"),
        (lambda: lyapbook.lyapunov_spectrum(Henon(), 5, state="hidden"), ValueError,
         "Henon is already a system with its own tangent space; state applies when passing a network"),
        (lambda: lyapbook.lyapunov_spectrum(nn.GRU(3, 4).half(), torch.zeros(5, 1, 3, dtype=torch.float16)), TypeError,
         "float32 or float64.*half precision"),
        (lambda: lyapbook.lyapunov_spectrum(Henon(), 10, torch.zeros(1, 2, dtype=torch.bfloat16)), TypeError,
         "bfloat16: Lyapunov spectra need float32 or float64"),
        (lambda: lyapbook.lyapunov_spectrum(_NoStateDim(), 10), TypeError, "_NoStateDim must set state_dim"),
        (lambda: lyapbook.lyapunov_spectrum(_WrongShape(), 10, torch.zeros(3, 2)), ValueError,
         r"_WrongShape.step returned \(3, 1\); it must return the next state \(batch, state_dim\) = \(3, 2\)"),
        (lambda: lyapbook.lyapunov_spectrum(_Wrapper(), torch.zeros(5, 1, 3)), TypeError,
         r"_Wrapper is not supported.*contains a supported LSTM at model.rnn: pass that module"),
        (lambda: lyapbook.lyapunov_spectrum(Henon(), 10, seed="7"), TypeError, "seed must be an int or None"),
    ],
)
def test_edge_cases_fail_with_a_message(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_numpy_integers_and_seed_none_are_accepted():
    x = torch.randn(20, 2, 3)
    model = nn.GRU(3, 6)
    numpy_k = lyapbook.lyapunov_spectrum(model, x, k=np.int64(3), t_on=np.int32(2), warmup=np.int64(1))
    assert torch.equal(numpy_k.per_sequence, lyapbook.lyapunov_spectrum(model, x, k=3, t_on=2, warmup=1).per_sequence)
    torch.manual_seed(0)
    unseeded = [lyapbook.lyapunov_spectrum(Henon(), 5, seed=None, q0="random", k=1).per_sequence for _ in range(2)]
    assert not torch.equal(unseeded[0], unseeded[1])  # a fresh frame each call: 5 steps do not forget it


def _readout_block(heading):
    """The first python block after a README heading."""
    text = README.read_text()
    start = text.index(heading)
    return re.search(r"```python\n(.*?)```", text[start:], re.S).group(1)


def test_readme_logistic_example_shows_a_spread(capsys):
    exec(_readout_block("## Your own system in ten lines"), {})
    printed = capsys.readouterr().out
    mean, spread = (float(v) for v in re.findall(r"[-+]?\d+\.\d+(?:e[-+]?\d+)?", printed)[:2])
    # The logistic map at r = 3.9 has lambda ~ 0.49; eight different starts give eight estimates.
    assert 0.3 < mean < 0.7 and spread > 0


def test_readme_regulariser_example_runs_and_lowers_lambda_1(capsys):
    exec(_readout_block("### Differentiable spectra"), {})
    before, after = (float(v) for v in re.findall(r"lambda_1 ([-+]?\d+\.\d+)", capsys.readouterr().out))
    assert after < before and math.isfinite(after)
