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
its gradients against finite differences (``torch.autograd.gradcheck``, float64). The backward
passes are differentiable once (no gradient of a gradient, e.g. no gradient penalty through them).
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

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


class _Gradients:
    """What every backward pass starts with: zeroed weight gradients, dL/dinputs when the inputs need
    it (with its per-step views ``x``, else None per step) and the transposed weights."""

    def __init__(self, ctx, inputs: torch.Tensor, weight_in: torch.Tensor, weight: torch.Tensor):
        self.inputs = torch.empty_like(inputs) if ctx.needs_input_grad[0] else None
        self.x = self.inputs.unbind(0) if self.inputs is not None else [None] * inputs.shape[0]
        self.weight_in, self.weight = _zeros(weight_in), _zeros(weight)
        self.weight_in_t, self.weight_t = weight_in.transpose(1, 2), weight.transpose(1, 2)

    def add_input_step(self, t: int, x_t: torch.Tensor, grad_drive: torch.Tensor) -> None:
        """Add step t's share of dL/dweight_in (x_t (E, B, in), grad_drive (E, B, G n)); write dL/dx_t when needed."""
        self.weight_in.baddbmm_(x_t.transpose(1, 2), grad_drive)
        if self.inputs is not None:
            torch.bmm(grad_drive, self.weight_in_t, out=self.x[t])


class _RNN(torch.autograd.Function):
    """h_t = tanh(x_t W_in + h_{t-1} W) (nn.RNN with tanh); ``weight`` (E, n, n) is W_hh^T."""

    @staticmethod
    def forward(ctx, inputs, weight_in, weight):
        T, E, B, _ = inputs.shape
        states = inputs.new_empty(T, E, B, weight.shape[-1])
        x, h = inputs.unbind(0), states.unbind(0)
        for t in range(T):
            torch.bmm(x[t], weight_in, out=h[t])
            if t > 0:
                h[t].baddbmm_(h[t - 1], weight)
            _tanh_into(h[t], h[t])
        ctx.save_for_backward(inputs, weight_in, weight, states)
        return states

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_states):
        inputs, weight_in, weight, states = ctx.saved_tensors
        grads = _Gradients(ctx, inputs, weight_in, weight)
        x, h, grad_h = inputs.unbind(0), states.unbind(0), grad_states.unbind(0)
        step = torch.empty_like(h[0])  # dL/d(pre-activation) of step t
        carried = None
        for t in range(len(h) - 1, -1, -1):
            torch.mul(h[t], h[t], out=step).neg_().add_(1.0)  # tanh'
            step.mul_(grad_h[t] if carried is None else grad_h[t] + carried)
            grads.add_input_step(t, x[t], step)
            if t > 0:
                carried = torch.bmm(step, grads.weight_t)
                grads.weight.baddbmm_(h[t - 1].transpose(1, 2), step)
        return grads.inputs, grads.weight_in, grads.weight


class _LSTM(torch.autograd.Function):
    """nn.LSTM's cell (gates i, f, g, o); the g columns of ``weight_in`` and ``weight`` (E, n, 4n) come scaled
    by 2, so that one sigmoid gives i, f, o and (tanh(g) + 1) / 2 (:func:`lstm_sequence` scales them)."""

    @staticmethod
    def forward(ctx, inputs, weight_in, weight):
        T, E, B, _ = inputs.shape
        n = weight.shape[1]
        gates = inputs.new_empty(T, E, B, 4 * n)  # sigmoids of the pre-activations
        cells, squashed, states = (inputs.new_empty(T, E, B, n) for _ in range(3))  # c_t, tanh(c_t), h_t
        x, a, c, tc, h = (tensor.unbind(0) for tensor in (inputs, gates, cells, squashed, states))
        for t in range(T):
            torch.bmm(x[t], weight_in, out=a[t])
            if t > 0:
                a[t].baddbmm_(h[t - 1], weight)
            i, f, g, o = a[t].sigmoid_().chunk(4, dim=-1)
            if t == 0:  # c = i (2 g - 1), from c_{-1} = 0
                torch.mul(i, g, out=c[0]).mul_(2.0).sub_(i)
            else:  # c = f c_{t-1} + i (2 g - 1)
                torch.mul(f, c[t - 1], out=c[t]).sub_(i).addcmul_(i, g, value=2.0)
            torch.mul(o, _tanh_into(c[t], tc[t]), out=h[t])
        ctx.save_for_backward(inputs, weight_in, weight, states, gates, cells, squashed)
        return states

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_states):
        inputs, weight_in, weight, states, gates, cells, squashed = ctx.saved_tensors
        n = states.shape[-1]
        grads = _Gradients(ctx, inputs, weight_in, weight)
        x, a, c, tc, h, grad_h = (tensor.unbind(0) for tensor in (inputs, gates, cells, squashed, states, grad_states))
        step = torch.empty_like(a[0])  # dL/d(pre-activations) of step t
        slope = torch.empty_like(a[0])
        along_cell = torch.empty_like(h[0])
        d_i, d_f, d_g, d_o = step.chunk(4, dim=-1)
        carried = grad_cell = None
        for t in range(len(h) - 1, -1, -1):
            i, f, g, o = a[t].chunk(4, dim=-1)
            grad = grad_h[t] if carried is None else grad_h[t] + carried
            torch.mul(tc[t], tc[t], out=along_cell).neg_().add_(1.0).mul_(o)  # dh/dc through o tanh(c)
            grad_cell = grad * along_cell if grad_cell is None else grad_cell.addcmul_(grad, along_cell)
            torch.mul(g, 2.0, out=d_i).sub_(1.0).mul_(grad_cell)  # dL/di = dL/dc (2 g - 1)
            if t > 0:
                torch.mul(grad_cell, c[t - 1], out=d_f)
            else:
                d_f.zero_()
            torch.mul(grad_cell, i, out=d_g)  # times 2 (g = 2 sigmoid - 1) in the slope below
            torch.mul(grad, tc[t], out=d_o)
            _sigmoid_slope(a[t], slope)[..., 2 * n : 3 * n].mul_(2.0)
            step.mul_(slope)
            grads.add_input_step(t, x[t], step)
            if t > 0:
                grad_cell.mul_(f)
                carried = torch.bmm(step, grads.weight_t)
                grads.weight.baddbmm_(h[t - 1].transpose(1, 2), step)
        return grads.inputs, grads.weight_in, grads.weight


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
        x, rec, rz, m, h = (tensor.unbind(0) for tensor in (inputs, recurrent, gates, candidates, states))
        for t in range(T):
            torch.bmm(x[t], weight_in, out=drive)
            if t == 0:
                rec[0].copy_(hidden_bias.expand(E, B, 3 * n))
            else:
                torch.baddbmm(hidden_bias, h[t - 1], weight, out=rec[t])
            r, z = torch.add(drive[..., : 2 * n], rec[t][..., : 2 * n], out=rz[t]).sigmoid_().chunk(2, dim=-1)
            _tanh_into(torch.addcmul(drive[..., 2 * n :], r, rec[t][..., 2 * n :], out=m[t]), m[t])
            if t == 0:  # h' = (1 - z) m
                torch.addcmul(m[0], z, m[0], value=-1.0, out=h[0])
            else:  # h' = m + z (h - m)
                torch.sub(h[t - 1], m[t], out=h[t]).mul_(z).add_(m[t])
        ctx.save_for_backward(inputs, weight_in, weight, states, recurrent, gates, candidates)
        return states

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_states):
        inputs, weight_in, weight, states, recurrent, gates, candidates = ctx.saved_tensors
        E, n = states.shape[1], states.shape[-1]
        grads = _Gradients(ctx, inputs, weight_in, weight)
        grad_hidden_bias = states.new_zeros(E, 1, 3 * n)
        x, rec, rz, m, h, grad_h = (tensor.unbind(0) for tensor in (inputs, recurrent, gates, candidates, states, grad_states))
        grad_drive = torch.empty_like(rec[0])  # dL/d(r, z, m pre-activations)
        grad_recurrent = torch.empty_like(rec[0])  # dL/d(h W + (0, 0, b_hm))
        scratch = torch.empty_like(h[0])
        d_r, d_z, d_m = grad_drive.chunk(3, dim=-1)
        d_hidden = grad_recurrent[..., 2 * n :]
        carried = None
        for t in range(len(h) - 1, -1, -1):
            r, z = rz[t].chunk(2, dim=-1)
            grad = grad_h[t] if carried is None else grad_h[t] + carried
            torch.mul(m[t], m[t], out=d_m).neg_().add_(1.0).mul_(grad)  # (1 - m^2) dh
            d_m.mul_(torch.sub(1.0, z, out=scratch))  # ... (1 - z)
            torch.mul(d_m, r, out=d_hidden)
            torch.mul(d_m, rec[t][..., 2 * n :], out=d_r).mul_(_sigmoid_slope(r, scratch))
            if t > 0:
                torch.sub(h[t - 1], m[t], out=d_z)
            else:
                torch.neg(m[t], out=d_z)
            d_z.mul_(grad).mul_(_sigmoid_slope(z, scratch))
            grad_recurrent[..., : 2 * n] = grad_drive[..., : 2 * n]
            grads.add_input_step(t, x[t], grad_drive)
            grad_hidden_bias.add_(grad_recurrent.sum(dim=1, keepdim=True))
            if t > 0:
                carried = torch.baddbmm(grad * z, grad_recurrent, grads.weight_t)
                grads.weight.baddbmm_(h[t - 1].transpose(1, 2), grad_recurrent)
        return grads.inputs, grads.weight_in, grads.weight, grad_hidden_bias


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
