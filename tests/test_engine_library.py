"""The engine as a library meets a user's own module: no silent wrong answer, the module's own
dynamics by default, diagnostics a user can see.

What is asserted:
- a parametrized, pruned, orthogonal, spectral- or weight-normed module gives the Jacobian of its
  own forward (against autograd through the module itself, float64, 1e-12), and a parametrized
  network gives the exponents of the same network written plainly (1e-10); a forward pre-hook
  the engine cannot read is refused with a message;
- the default exponents (``state="full"``) equal the growth rate of a twin trajectory run through
  the module's own forward, for every architecture, within their noise; ``state="hidden"`` is the
  dissertation's convention and can differ in sign;
- diagnostics are recorded on the result, warned every time, say "upper bound" and what to do,
  and tell an overflow of the tangent product from a state that diverges;
- nothing is ignored silently: training-mode dropout warns, ``differentiable`` under no_grad and
  unknown options are refused, float32 runs accumulate in float64;
- the result says its units, has a short repr, and reads option names as field names.
"""

import warnings

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize, prune

import lyapbook
from lyapbook.reference import autograd_jacobian, twin_trajectory_exponent
from lyapbook.rnn import LEM, AntisymmetricRNN, CoRNN, LipschitzRNN, NoisyRNN, as_system


class Shift(nn.Module):
    def forward(self, bias):
        return bias + 0.5


def _states(model, batch=4):
    system = as_system(model)
    return (torch.randn(batch, system.state_dim, dtype=torch.float64),
            torch.randn(batch, system.input_dim, dtype=torch.float64))


REPARAMETRIZE = {
    "parametrized bias": lambda m: parametrize.register_parametrization(m, "bias_ih_l0", Shift()),
    "orthogonal": lambda m: nn.utils.parametrizations.orthogonal(m, "weight_hh_l0"),
    "spectral norm": lambda m: nn.utils.parametrizations.spectral_norm(m, "weight_hh_l0"),
    "weight norm": lambda m: nn.utils.parametrizations.weight_norm(m, "weight_hh_l0"),
    "pruned": lambda m: prune.l1_unstructured(m, "weight_hh_l0", amount=0.4),
    "pruned twice": lambda m: prune.random_unstructured(prune.l1_unstructured(m, "weight_ih_l0", 0.3), "weight_ih_l0", 0.3),
    "hook weight norm": lambda m: nn.utils.weight_norm(m, "weight_hh_l0"),
    "hook spectral norm": lambda m: nn.utils.spectral_norm(m, "weight_hh_l0"),
}


@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch's hook-based weight_norm is deprecated
@pytest.mark.parametrize("how", REPARAMETRIZE)
@pytest.mark.parametrize("make", [nn.RNN, nn.GRU, nn.LSTM])
def test_a_reparametrized_module_gives_the_jacobian_of_its_own_forward(make, how):
    torch.manual_seed(0)
    model = make(3, 6, num_layers=2).double()
    REPARAMETRIZE[how](model)
    model.eval()
    h, x_t = _states(model)
    assert (lyapbook.jacobian(model, h, x_t) - autograd_jacobian(model, h, x_t)).abs().max() < 1e-12


@pytest.mark.parametrize("make", [nn.RNN, nn.GRU, nn.LSTM])
def test_a_parametrized_network_has_the_exponents_of_the_same_network_written_plainly(make):
    torch.manual_seed(1)
    model = make(3, 6).double()
    plain = make(3, 6).double()
    plain.load_state_dict(model.state_dict())
    with torch.no_grad():
        plain.bias_ih_l0.add_(0.5)
    parametrize.register_parametrization(model, "bias_ih_l0", Shift())
    x = torch.randn(40, 5, 3, dtype=torch.float64)
    ours, expected = (lyapbook.lyapunov_spectrum(m, x, warmup=5).exponents for m in (model, plain))
    assert (ours - expected).abs().max() < 1e-10
    group = lyapbook.lyapunov_spectra([model, model], x, warmup=5)
    assert (group[0].exponents - expected).abs().max() < 1e-10


@pytest.mark.parametrize("make", [LEM, CoRNN])
def test_parametrized_cells_use_their_parametrized_weights(make):
    torch.manual_seed(2)
    cell = make(3, 5).double()
    parametrize.register_parametrization(cell.V, "bias", Shift())
    nn.utils.parametrizations.orthogonal(cell.W, "weight")
    h, x_t = _states(cell)
    assert (lyapbook.jacobian(cell, h, x_t) - autograd_jacobian(cell, h, x_t)).abs().max() < 1e-12
    outputs, _ = cell(torch.randn(2, 4, 3, dtype=torch.float64))  # trains through the parametrization
    outputs.sum().backward()
    assert cell.W.parametrizations.weight.original.grad is not None


def test_a_hook_the_engine_cannot_read_is_refused():
    model = nn.GRU(3, 4)
    model.register_forward_pre_hook(lambda module, inputs: None)
    with pytest.raises(ValueError, match="forward pre-hook .* lyapbook cannot read.*Remove it"):
        lyapbook.lyapunov_spectrum(model, torch.randn(5, 2, 3))


TWINS = {
    "rnn": lambda: nn.RNN(4, 12, batch_first=True),
    "gru": lambda: nn.GRU(4, 12, batch_first=True),
    "lstm, open forget gates": lambda: _open_forget_gates(nn.LSTM(4, 12, batch_first=True)),
    "lstm, two layers": lambda: nn.LSTM(4, 8, num_layers=2, batch_first=True),
    "asrnn": lambda: AntisymmetricRNN(4, 12),
    "cornn": lambda: CoRNN(4, 12),
    "lem": lambda: LEM(4, 12),
    "lipschitz": lambda: LipschitzRNN(4, 12),
    "noisy": lambda: NoisyRNN(4, 12).eval(),
}


def _open_forget_gates(lstm):
    with torch.no_grad():
        lstm.bias_ih_l0[lstm.hidden_size : 2 * lstm.hidden_size] += 3.0
    return lstm


@pytest.mark.parametrize("name", TWINS)
def test_the_default_exponent_is_the_growth_rate_of_a_twin_run_of_the_module(name):
    torch.manual_seed(3)
    model = TWINS[name]().double()
    x = torch.randn(6, 400, 4, dtype=torch.float64)
    result = lyapbook.lyapunov_spectrum(model, x, warmup=100, k=1)
    twin = twin_trajectory_exponent(model, x, warmup=100)
    # The same trajectories: the two differ by the twin's finite-time alignment, far within the noise.
    assert (result.per_sequence[:, 0] - twin).abs().max() < max(0.2 * float(result.sem[0]), 1e-6)


def test_the_hidden_convention_is_an_option_and_can_have_the_other_sign():
    """An LSTM with open forget gates and strong recurrence is (weakly) chaotic as a module, while
    its hidden-only Jacobian contracts: the dissertation's convention answers another question."""
    torch.manual_seed(0)
    lstm = nn.LSTM(4, 32, batch_first=True).double()
    _open_forget_gates(lstm)
    with torch.no_grad():
        lstm.weight_hh_l0.mul_(6.0)
    x = torch.randn(8, 1500, 4, dtype=torch.float64)
    full = lyapbook.lyapunov_spectrum(lstm, x, warmup=300, k=1)
    hidden = lyapbook.lyapunov_spectrum(lstm, x, warmup=300, k=1, state="hidden")
    twin = twin_trajectory_exponent(lstm, x, warmup=300).mean()
    assert abs(float(full.exponents[0] - twin)) < float(full.sem[0])
    assert full.exponents[0] > 0 > hidden.exponents[0] + 0.3
    with pytest.warns(DeprecationWarning, match="full_state= is deprecated; write state='hidden'"):
        older = lyapbook.lyapunov_spectrum(lstm, x[:, :50], k=1, full_state=False)
    assert torch.equal(older.exponents, lyapbook.lyapunov_spectrum(lstm, x[:, :50], k=1, state="hidden").exponents)


def test_float32_with_a_long_t_on_says_upper_bound_and_suggests_a_smaller_t_on():
    torch.manual_seed(0)
    model = nn.RNN(4, 32, batch_first=True)
    with torch.no_grad():
        model.weight_hh_l0.mul_(0.15)  # every direction contracts faster than float32 can follow over 50 steps
    x = torch.randn(8, 50, 4)
    with pytest.warns(lyapbook.diagnostics.LyapunovWarning, match=r"upper bounds.*smaller t_on; t_on=50.*float64"):
        result = lyapbook.lyapunov_spectrum(model, x, t_on=50)
    (found,) = result.diagnostics
    assert found.kind == "collapse" and found.exponents == 32 and found.rows == tuple(range(8))
    exact = lyapbook.lyapunov_spectrum(model.double(), x.double(), t_on=1)
    assert (result.exponents.double() > exact.exponents).all()  # too high, as the warning says


def test_an_overflowing_tangent_product_is_named_apart_from_a_diverging_state():
    torch.manual_seed(0)
    model = nn.RNN(4, 32, batch_first=True)
    with torch.no_grad():
        model.weight_hh_l0.mul_(12.0)
    x = torch.randn(8, 400, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(FloatingPointError, match=r"tangent product .* overflowed while the state stayed finite.*"
                                                     r"smaller t_on; t_on=200.*float64"):
            lyapbook.lyapunov_spectrum(model, x, t_on=200)
        results = lyapbook.lyapunov_spectra([model, model], x, t_on=200, nonfinite="nan")
    assert any(d.kind == "overflow" for d in results[0].diagnostics)
    assert lyapbook.lyapunov_spectrum(model.double(), x.double(), t_on=1, k=1).exponents[0] > 0


def test_diagnostics_warn_every_time_in_a_loop():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        for _ in range(3):
            lyapbook.lyapunov_spectrum(lyapbook.systems.Linear([[1.0, 0.0], [0.0, 0.0]]), 10, warmup=1)
    assert sum("collapsed tangent direction" in str(w.message) for w in caught) == 3


def test_training_mode_dropout_is_said_and_eval_mode_is_silent():
    model = nn.LSTM(3, 4, num_layers=2, dropout=0.3)
    with pytest.warns(lyapbook.diagnostics.LyapunovWarning, match="training mode.*spectrum of model.eval()"):
        lyapbook.lyapunov_spectrum(model, torch.randn(5, 2, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lyapbook.lyapunov_spectrum(model.eval(), torch.randn(5, 2, 3))


def test_differentiable_under_no_grad_and_unknown_options_are_refused():
    model = nn.GRU(3, 4)
    with torch.no_grad(), pytest.raises(ValueError, match=r"differentiable=True inside torch.no_grad\(\)"):
        lyapbook.lyapunov_spectrum(model, torch.randn(5, 2, 3), differentiable=True)
    with pytest.raises(TypeError, match="tangent_trajectory got unknown option.*ftle.*its options are"):
        lyapbook.tangent_trajectory(model, torch.randn(5, 2, 3), ftle=True)


def test_float32_runs_accumulate_their_log_stretches_in_float64():
    torch.manual_seed(0)
    model = nn.GRU(3, 8, batch_first=True)
    x = torch.randn(2, 20_000, 3)
    ours = lyapbook.lyapunov_spectrum(model, x, k=2)
    steps = [s.qr.stretch.double().log() for s in lyapbook.tangent_trajectory(model, x, k=2)]
    exact = torch.stack(steps).sum(0) / 20_000  # per row, summed in float64
    assert ours.exponents.dtype == torch.float32
    assert (ours.per_sequence - exact.sort(-1, descending=True).values.float()).abs().max() < 1e-6


def test_the_result_says_its_units_reads_option_names_and_prints_short():
    lorenz = lyapbook.lyapunov_spectrum(lyapbook.systems.Lorenz(dt=0.01), 300, warmup=50, r_matrices=True)
    assert lorenz.units == "per unit time (dt = 0.01 per step)" and lorenz.r_matrices is lorenz.r
    gru = lyapbook.lyapunov_spectrum(nn.GRU(3, 4), torch.randn(6, 2, 3), input_jacobians=True, q_vectors=True)
    assert gru.units == "per step" and gru.input_jacobians is gru.input_jacobian and gru.q_vectors is gru.q
    text = repr(gru)
    assert text.startswith("LyapunovResult(4 exponents per step: [") and len(text) < 300
    assert "input_jacobian(2, 6, 4, 3)" in text


def test_a_progress_bar_on_request(capsys):
    lyapbook.lyapunov_spectrum(nn.GRU(3, 4), torch.randn(6, 2, 3), progress=True)
    assert "Lyapunov spectrum" in capsys.readouterr().err
