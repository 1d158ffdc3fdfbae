"""Batched recurrences of PyTorch's RNN, LSTM and GRU with hand-written backpropagation through time.

An ensemble of small networks spends its training step on the number of tensor operations, not
on arithmetic: autograd records some thirty nodes per LSTM step, allocates a tensor for each, and
replays them backwards. These :class:`torch.autograd.Function` s write every step into buffers
allocated once per sequence and run each step backwards in about a dozen in-place operations,
accumulating the weight gradients step by step while that step's values are still in cache.

Shapes: T steps, E networks, B sequences, n hidden units, G gates. Everything is time-major, so
that each step's slice is contiguous (a batched product written into a strided slice costs
several times more). Each public function takes the inputs ``x`` (T, E, B, in), each network's
weights and biases in PyTorch's layout, and returns the hidden states (T, E, B, n) from a zero
initial state. Inside, the input bias rides along as a column of ones appended to the inputs, so
that one product per step gives the drive with its bias and one product per step its gradient.
``tests/test_recurrences.py`` checks every function against ``nn.RNN``/``nn.LSTM``/``nn.GRU`` and
its gradients against finite differences (``torch.autograd.gradcheck``, float64).
"""

from __future__ import annotations

import torch

__all__ = ["gru_sequence", "lstm_sequence", "rnn_sequence", "tanh"]


def tanh(x: torch.Tensor) -> torch.Tensor:
    """tanh; on the CPU as 2 sigmoid(2x) - 1, which PyTorch's CPU kernels compute several times faster."""
    return torch.tanh(x) if x.is_cuda else torch.sigmoid(2.0 * x) * 2.0 - 1.0


def _tanh_into(x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """tanh(x) written into ``out`` (as :func:`tanh`; ``out`` may be ``x``)."""
    if x.is_cuda:
        return torch.tanh(x, out=out)
    return torch.mul(x, 2.0, out=out).sigmoid_().mul_(2.0).sub_(1.0)


def _sigmoid_slope(sigmoids: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """sigmoid' of the pre-activations, s (1 - s), from their sigmoids ``s``, written into ``out``."""
    return torch.sub(1.0, sigmoids, out=out).mul_(sigmoids)


def _with_bias(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs (T, E, B, in) and input weights (E, out, in) as (T, E, B, in + 1) and (E, in + 1, out): the
    bias (E, out) as the weight of a constant input 1, so that x_t @ weight_in is the drive with its bias."""
    if bias is None:
        return x, weight.transpose(1, 2)
    ones = x.new_ones(*x.shape[:-1], 1)
    return torch.cat([x, ones], dim=-1), torch.cat([weight, bias.unsqueeze(-1)], dim=-1).transpose(1, 2)


def _zeros(like: torch.Tensor) -> torch.Tensor:
    """Contiguous zeros shaped like ``like`` (a gradient accumulated by in-place batched products, which
    take a slow path into a transposed tensor)."""
    return torch.zeros(like.shape, dtype=like.dtype, device=like.device)


def _drive_into(inputs: torch.Tensor, weight_in: torch.Tensor, t: int, out: torch.Tensor) -> torch.Tensor:
    """Step t's input drive, inputs[t] (E, B, in) @ weight_in (E, in, G n), written into ``out``."""
    return torch.bmm(inputs[t], weight_in, out=out)


def _add_input_grads(inputs: torch.Tensor, weight_in: torch.Tensor, t: int, grad_drive: torch.Tensor,
                     grad_weight_in: torch.Tensor, grad_inputs: torch.Tensor | None) -> None:
    """Add step t's share of dL/dweight_in; write dL/dinputs[t] when the inputs need a gradient."""
    grad_weight_in.baddbmm_(inputs[t].transpose(1, 2), grad_drive)
    if grad_inputs is not None:
        torch.bmm(grad_drive, weight_in.transpose(1, 2), out=grad_inputs[t])


class _RNN(torch.autograd.Function):
    """h_t = tanh(x_t W_in + h_{t-1} W) (nn.RNN with tanh); ``weight`` (E, n, n) is W_hh^T."""

    @staticmethod
    def forward(ctx, inputs, weight_in, weight):
        T, E, B, _ = inputs.shape
        states = inputs.new_empty(T, E, B, weight.shape[-1])
        for t in range(T):
            _drive_into(inputs, weight_in, t, states[t])
            if t > 0:
                states[t].baddbmm_(states[t - 1], weight)
            _tanh_into(states[t], states[t])
        ctx.save_for_backward(inputs, weight_in, weight, states)
        return states

    @staticmethod
    def backward(ctx, grad_states):
        inputs, weight_in, weight, states = ctx.saved_tensors
        grad_inputs = torch.empty_like(inputs) if ctx.needs_input_grad[0] else None
        grad_weight_in, grad_weight = _zeros(weight_in), _zeros(weight)
        step = torch.empty_like(states[0])  # dL/d(pre-activation) of step t
        carried = None
        for t in range(states.shape[0] - 1, -1, -1):
            torch.mul(states[t], states[t], out=step).neg_().add_(1.0)  # tanh'
            step.mul_(grad_states[t] if carried is None else grad_states[t] + carried)
            _add_input_grads(inputs, weight_in, t, step, grad_weight_in, grad_inputs)
            if t > 0:
                carried = torch.bmm(step, weight.transpose(1, 2))
                grad_weight.baddbmm_(states[t - 1].transpose(1, 2), step)
        return grad_inputs, grad_weight_in, grad_weight


class _LSTM(torch.autograd.Function):
    """nn.LSTM's cell (gates i, f, g, o); the g columns of ``weight_in`` and ``weight`` (E, n, 4n) come scaled
    by 2, so that one sigmoid gives i, f, o and (tanh(g) + 1) / 2 (:func:`lstm_sequence` scales them)."""

    @staticmethod
    def forward(ctx, inputs, weight_in, weight):
        T, E, B, _ = inputs.shape
        n = weight.shape[1]
        gates = inputs.new_empty(T, E, B, 4 * n)  # sigmoids of the pre-activations
        cells, squashed, states = (inputs.new_empty(T, E, B, n) for _ in range(3))  # c_t, tanh(c_t), h_t
        for t in range(T):
            _drive_into(inputs, weight_in, t, gates[t])
            if t > 0:
                gates[t].baddbmm_(states[t - 1], weight)
            i, f, g, o = gates[t].sigmoid_().chunk(4, dim=-1)
            if t == 0:  # c = i (2 g - 1), from c_{-1} = 0
                torch.mul(i, g, out=cells[0]).mul_(2.0).sub_(i)
            else:  # c = f c_{t-1} + i (2 g - 1)
                torch.mul(f, cells[t - 1], out=cells[t]).sub_(i).addcmul_(i, g, value=2.0)
            torch.mul(o, _tanh_into(cells[t], squashed[t]), out=states[t])
        ctx.save_for_backward(inputs, weight_in, weight, states)
        ctx.intermediates = gates, cells, squashed
        return states

    @staticmethod
    def backward(ctx, grad_states):
        inputs, weight_in, weight, states = ctx.saved_tensors
        gates, cells, squashed = ctx.intermediates
        T, E, B, n = states.shape
        grad_inputs = torch.empty_like(inputs) if ctx.needs_input_grad[0] else None
        grad_weight_in, grad_weight = _zeros(weight_in), _zeros(weight)
        step = torch.empty_like(gates[0])  # dL/d(pre-activations) of step t
        slope = torch.empty_like(gates[0])
        along_cell = torch.empty_like(states[0])
        carried = grad_cell = None
        d_i, d_f, d_g, d_o = step.chunk(4, dim=-1)
        for t in range(T - 1, -1, -1):
            i, f, g, o = gates[t].chunk(4, dim=-1)
            grad_h = grad_states[t] if carried is None else grad_states[t] + carried
            torch.mul(squashed[t], squashed[t], out=along_cell).neg_().add_(1.0).mul_(o)  # dh/dc through o tanh(c)
            grad_cell = grad_h * along_cell if grad_cell is None else grad_cell.addcmul_(grad_h, along_cell)
            torch.mul(g, 2.0, out=d_i).sub_(1.0).mul_(grad_cell)  # dL/di = dL/dc (2 g - 1)
            if t > 0:
                torch.mul(grad_cell, cells[t - 1], out=d_f)
            else:
                d_f.zero_()
            torch.mul(grad_cell, i, out=d_g)  # times 2 (g = 2 sigmoid - 1) in the slope below
            torch.mul(grad_h, squashed[t], out=d_o)
            _sigmoid_slope(gates[t], slope)[..., 2 * n : 3 * n].mul_(2.0)
            step.mul_(slope)
            _add_input_grads(inputs, weight_in, t, step, grad_weight_in, grad_inputs)
            if t > 0:
                grad_cell.mul_(f)
                carried = torch.bmm(step, weight.transpose(1, 2))
                grad_weight.baddbmm_(states[t - 1].transpose(1, 2), step)
        return grad_inputs, grad_weight_in, grad_weight


class _GRU(torch.autograd.Function):
    """nn.GRU's cell: r, z = sigmoid(d_rz + h W_rz); m = tanh(d_m + r (h W_m + b_hm)); h' = (1 - z) m + z h,
    with d = x_t W_in the input drive (biases b_ir + b_hr, b_iz + b_hz, b_im included), ``weight``
    (E, n, 3n) W_hh^T, and ``hidden_bias`` (E, 1, 3n) = (0, 0, b_hm)."""

    @staticmethod
    def forward(ctx, inputs, weight_in, weight, hidden_bias):
        T, E, B, _ = inputs.shape
        n = weight.shape[1]
        drive = inputs.new_empty(E, B, 3 * n)
        recurrent = inputs.new_empty(T, E, B, 3 * n)  # h W + (0, 0, b_hm)
        gates = inputs.new_empty(T, E, B, 2 * n)  # r, z
        candidates, states = inputs.new_empty(T, E, B, n), inputs.new_empty(T, E, B, n)
        for t in range(T):
            _drive_into(inputs, weight_in, t, drive)
            if t == 0:
                recurrent[0].copy_(hidden_bias.expand(E, B, 3 * n))
            else:
                torch.baddbmm(hidden_bias, states[t - 1], weight, out=recurrent[t])
            r, z = torch.add(drive[..., : 2 * n], recurrent[t, ..., : 2 * n], out=gates[t]).sigmoid_().chunk(2, dim=-1)
            m = _tanh_into(torch.addcmul(drive[..., 2 * n :], r, recurrent[t, ..., 2 * n :], out=candidates[t]), candidates[t])
            if t == 0:  # h' = (1 - z) m
                torch.addcmul(m, z, m, value=-1.0, out=states[0])
            else:  # h' = m + z (h - m)
                torch.sub(states[t - 1], m, out=states[t]).mul_(z).add_(m)
        ctx.save_for_backward(inputs, weight_in, weight, states)
        ctx.intermediates = recurrent, gates, candidates
        return states

    @staticmethod
    def backward(ctx, grad_states):
        inputs, weight_in, weight, states = ctx.saved_tensors
        recurrent, gates, candidates = ctx.intermediates
        T, E, B, n = states.shape
        grad_inputs = torch.empty_like(inputs) if ctx.needs_input_grad[0] else None
        grad_weight_in, grad_weight = _zeros(weight_in), _zeros(weight)
        grad_hidden_bias = states.new_zeros(E, 1, 3 * n)
        grad_drive = states.new_empty(E, B, 3 * n)  # dL/d(r, z, m pre-activations)
        grad_recurrent = states.new_empty(E, B, 3 * n)  # dL/d(h W + (0, 0, b_hm))
        scratch = torch.empty_like(states[0])
        d_r, d_z, d_m = grad_drive.chunk(3, dim=-1)
        carried = None
        for t in range(T - 1, -1, -1):
            r, z = gates[t].chunk(2, dim=-1)
            m = candidates[t]
            grad_h = grad_states[t] if carried is None else grad_states[t] + carried
            torch.mul(m, m, out=d_m).neg_().add_(1.0).mul_(grad_h)  # (1 - m^2) dh
            d_m.mul_(torch.sub(1.0, z, out=scratch))  # ... (1 - z)
            torch.mul(d_m, r, out=grad_recurrent[..., 2 * n :])
            torch.mul(d_m, recurrent[t, ..., 2 * n :], out=d_r).mul_(_sigmoid_slope(r, scratch))
            if t > 0:
                torch.sub(states[t - 1], m, out=d_z)
            else:
                torch.neg(m, out=d_z)
            d_z.mul_(grad_h).mul_(_sigmoid_slope(z, scratch))
            grad_recurrent[..., : 2 * n] = grad_drive[..., : 2 * n]
            _add_input_grads(inputs, weight_in, t, grad_drive, grad_weight_in, grad_inputs)
            grad_hidden_bias.add_(grad_recurrent.sum(dim=1, keepdim=True))
            if t > 0:
                carried = torch.baddbmm(grad_h * z, grad_recurrent, weight.transpose(1, 2))
                grad_weight.baddbmm_(states[t - 1].transpose(1, 2), grad_recurrent)
        return grad_inputs, grad_weight_in, grad_weight, grad_hidden_bias


def rnn_sequence(x: torch.Tensor, weight_ih: torch.Tensor, bias: torch.Tensor | None, weight_hh: torch.Tensor) -> torch.Tensor:
    """tanh RNN states (T, E, B, n) for inputs ``x`` (T, E, B, in), ``weight_ih`` (E, n, in), ``bias`` = b_ih + b_hh
    (E, n) or None, and ``weight_hh`` (E, n, n)."""
    return _RNN.apply(*_with_bias(x, weight_ih, bias), weight_hh.transpose(1, 2))


def lstm_sequence(x: torch.Tensor, weight_ih: torch.Tensor, bias: torch.Tensor | None, weight_hh: torch.Tensor) -> torch.Tensor:
    """LSTM states (T, E, B, n) for inputs ``x`` (T, E, B, in), ``weight_ih`` (E, 4n, in), ``bias`` = b_ih + b_hh
    (E, 4n) or None, and ``weight_hh`` (E, 4n, n), gates in nn.LSTM's order (i, f, g, o)."""
    n = weight_hh.shape[-1]
    scale = torch.ones(4 * n, 1, dtype=weight_hh.dtype, device=weight_hh.device)
    scale[2 * n : 3 * n] = 2.0  # the g rows (see _LSTM)
    inputs, weight_in = _with_bias(x, weight_ih * scale, None if bias is None else bias * scale.squeeze(1))
    return _LSTM.apply(inputs, weight_in, (weight_hh * scale).transpose(1, 2))


def gru_sequence(x: torch.Tensor, weight_ih: torch.Tensor, bias_ih: torch.Tensor | None, bias_hh: torch.Tensor | None,
                 weight_hh: torch.Tensor) -> torch.Tensor:
    """GRU states (T, E, B, n) for inputs ``x`` (T, E, B, in), ``weight_ih`` (E, 3n, in), ``bias_ih`` and ``bias_hh``
    (E, 3n) or None, and ``weight_hh`` (E, 3n, n), gates in nn.GRU's order (r, z, n)."""
    n = weight_hh.shape[-1]
    if bias_ih is None:
        drive_bias, hidden_bias = None, weight_hh.new_zeros(weight_hh.shape[0], 1, 3 * n)
    else:  # b_hr and b_hz join the input drive; b_hn stays inside r * (h W_hn + b_hn)
        in_drive = torch.cat([bias_hh[:, : 2 * n], torch.zeros_like(bias_hh[:, 2 * n :])], dim=-1)
        drive_bias, hidden_bias = bias_ih + in_drive, (bias_hh - in_drive).unsqueeze(1)
    return _GRU.apply(*_with_bias(x, weight_ih, drive_bias), weight_hh.transpose(1, 2), hidden_bias)
