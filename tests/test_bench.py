"""The benchmark's baselines compute the same Jacobians as lyapbook, and its entry point runs."""

import pytest
import torch
from torch import nn

from lyapbook.bench import _AutogradJacobian, main
from lyapbook.rnn import TorchRNN


@pytest.mark.parametrize("how", ["autograd", "torch.func"])
@pytest.mark.parametrize("module", [nn.LSTM(3, 5, num_layers=2), nn.GRU(3, 5)])
def test_baseline_jacobians_equal_the_analytic_ones(module, how):
    system = TorchRNN(module.double())
    state = torch.randn(4, system.state_dim, dtype=torch.float64)
    x_t = torch.randn(4, 3, dtype=torch.float64)
    expected = system.jacobian(state, x_t)
    assert torch.allclose(_AutogradJacobian(system, how).jacobian(state, x_t), expected, atol=1e-12)


def test_entry_point_prints_the_table(capsys):
    assert main(["--arch", "gru", "--hidden", "4", "--steps", "4", "--baseline-steps", "2", "--t-on", "1", "3", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "J vs ag" in out and out.count("gru      4") == 2
