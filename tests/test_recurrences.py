"""The hand-written recurrences equal PyTorch's modules forward, and finite differences backward.

Forward: each network of the batch gives nn.RNN / nn.LSTM / nn.GRU's hidden states from a zero
initial state (float64, 1e-12). Backward: ``torch.autograd.gradcheck`` compares the hand-written
gradients with central finite differences (float64) for every input (inputs, weights, biases),
with a gradient reaching every step or only the last one.
"""

import pytest
import torch
from torch import nn

from lyapbook.tasks.recurrences import gru_sequence, lstm_sequence, rnn_sequence

pytestmark = pytest.mark.usefixtures("one_torch_thread")

GATES = {"rnn": 1, "lstm": 4, "gru": 3}
MODULES = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


def _run(arch, x, weight_ih, bias_ih, bias_hh, weight_hh):
    if arch == "gru":
        return gru_sequence(x, weight_ih, bias_ih, bias_hh, weight_hh)
    bias = None if bias_ih is None else bias_ih + bias_hh
    return (rnn_sequence if arch == "rnn" else lstm_sequence)(x, weight_ih, bias, weight_hh)


@pytest.mark.parametrize("arch", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("bias", [True, False])
def test_each_network_gives_the_torch_module_states(arch, bias):
    torch.manual_seed(0)
    E, T, B, n, inputs = 3, 6, 4, 5, 2
    modules = [MODULES[arch](inputs, n, batch_first=True, bias=bias).double() for _ in range(E)]
    x = torch.randn(T, E, B, inputs, dtype=torch.float64)

    def stacked(name):
        return torch.stack([getattr(m, name) for m in modules]) if bias or "bias" not in name else None

    with torch.no_grad():
        states = _run(arch, x, stacked("weight_ih_l0"), stacked("bias_ih_l0"), stacked("bias_hh_l0"), stacked("weight_hh_l0"))
        for k, m in enumerate(modules):
            expected = m(x[:, k].transpose(0, 1))[0].transpose(0, 1)  # (T, B, n)
            torch.testing.assert_close(states[:, k], expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("arch", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("last_only", [False, True])
def test_hand_written_gradients_equal_finite_differences(arch, last_only):
    torch.manual_seed(1)
    E, T, B, n, inputs, gates = 2, 4, 3, 3, 2, GATES[arch] * 3
    args = [torch.randn(T, E, B, inputs), 0.8 * torch.randn(E, gates, inputs), 0.5 * torch.randn(E, gates),
            0.5 * torch.randn(E, gates), 0.6 * torch.randn(E, gates, n)]
    args = tuple(a.double().requires_grad_() for a in args)

    def states(*a):
        out = _run(arch, *a)
        return out[-1] if last_only else out

    assert torch.autograd.gradcheck(states, args, eps=1e-6, atol=1e-7, rtol=1e-6)


def test_a_gradient_of_the_gradient_is_refused_plainly_and_backward_frees_the_buffers():
    torch.manual_seed(3)
    weights = (0.5 * torch.randn(2, 12, 2), None, 0.5 * torch.randn(2, 12, 3))
    weights = tuple(None if w is None else w.double().requires_grad_() for w in weights)
    out = lstm_sequence(torch.randn(4, 2, 3, 2, dtype=torch.float64), *weights)
    (grad,) = torch.autograd.grad((out * out).sum(), weights[0], create_graph=True)  # a gradient penalty's first half
    with pytest.raises(RuntimeError, match="once_differentiable"):
        grad.sum().backward()
    out = lstm_sequence(torch.randn(4, 2, 3, 2, dtype=torch.float64), *weights)
    out.sum().backward()
    # Every buffer went through save_for_backward, so backward released it; none hangs on the node.
    with pytest.raises(RuntimeError, match="freed"):
        out.grad_fn.saved_tensors
    kept = [v for v in vars(out.grad_fn).values() if isinstance(v, (torch.Tensor, tuple, list))]
    assert kept == []
