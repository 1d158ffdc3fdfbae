"""PyTorch's own recurrent modules (nn.RNN, nn.LSTM, nn.GRU) as dynamical systems.

The module's weights are read as they are (no copy is trained or changed). One step of the
system is one time step of the whole stack of layers, and the Jacobian is the block
lower-triangular matrix of the dissertation's Eq. (2.6): block (k, j) is
dh^k_t / dh^j_{t-1} = D_k D_{k-1} ... D_{j+1} A_j, where A_j = dh^j_t / dh^j_{t-1} is the
layer's own recurrent Jacobian and D_i = dh^i_t / dh^{i-1}_t its input Jacobian.

Every Jacobian is built from batched elementwise products of gate derivatives with weight
matrices ``coef[:, :, None] * W[None]``: no per-unit loops and no diagonal matrices.

State layout (batch, state_dim): the layers' states concatenated, layer 1 first. For an LSTM
a layer's state is (h, c). With ``full_state=False`` the LSTM's Jacobian covers only the
hidden vectors h (the cell states are carried along but held fixed when differentiating,
the convention of the dissertation's code); with ``full_state=True`` it covers (h, c).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..systems import DynamicalSystem
from .stack import advance_stack, check_finite_parameters

__all__ = ["TorchRNN"]


@dataclass(frozen=True)
class _Layer:
    w_ih: torch.Tensor  # (gates * n, m)
    w_hh: torch.Tensor  # (gates * n, n)
    b_ih: torch.Tensor | None
    b_hh: torch.Tensor | None


class TorchRNN(DynamicalSystem):
    """An ``nn.RNN`` (tanh or relu), ``nn.LSTM`` or ``nn.GRU`` of any depth as a system.

    Args:
        module: the network; unidirectional, any ``num_layers``, with or without bias. An LSTM
            with ``proj_size > 0`` is not supported. Dropout between layers is not applied
            (exponents describe the network as evaluated).
        full_state: LSTM only: differentiate the full (h, c) state instead of h alone.
    """

    def __init__(self, module: nn.Module, full_state: bool = False):
        if not isinstance(module, (nn.RNN, nn.LSTM, nn.GRU)):
            raise TypeError(f"module must be nn.RNN, nn.LSTM or nn.GRU, got {type(module).__name__}")
        if module.bidirectional:
            raise ValueError(
                "model: a bidirectional RNN is not a dynamical system in time (its backward half runs "
                "the other way); pass a unidirectional module"
            )
        if isinstance(module, nn.LSTM) and module.proj_size:
            raise ValueError("model: nn.LSTM with proj_size > 0 is not supported; use proj_size=0")
        check_finite_parameters(module)
        self.module = module
        self.kind = "LSTM" if isinstance(module, nn.LSTM) else "GRU" if isinstance(module, nn.GRU) else module.mode
        self.layers = module.num_layers
        self.hidden = module.hidden_size
        self.input_dim = module.input_size
        self.batch_first = module.batch_first
        self.is_lstm = self.kind == "LSTM"
        self.full_state = bool(full_state) and self.is_lstm
        self.layer_state = 2 * self.hidden if self.is_lstm else self.hidden
        self.layer_tangent = 2 * self.hidden if self.full_state else self.hidden
        self.state_dim = self.layers * self.layer_state

    @property
    def tangent_dim(self) -> int:
        return self.layers * self.layer_tangent

    def tangent_index(self) -> torch.Tensor:
        """(tangent_dim,) positions in the carried state of the coordinates J differentiates."""
        index = torch.arange(self.state_dim).reshape(self.layers, self.layer_state)
        return index[:, : self.layer_tangent].reshape(-1)

    # ----------------------------------------------------------------------------------------
    # Conversions between the module's conventions and the system's (batch, ...) layout.

    def prepare(self, x, h0):
        """Inputs in the module's layout (``batch_first``), h0 in its own state layout or flat."""
        if isinstance(h0, tuple) or (isinstance(h0, torch.Tensor) and h0.ndim == 3):
            h0 = self.state_from_module(h0)
        return super().prepare(x, h0)

    def state_from_module(self, h0: torch.Tensor | tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """``h0`` as the module takes it ((layers, batch, n), or (h0, c0) for an LSTM) -> (batch, state_dim)."""
        if self.is_lstm:
            if not (isinstance(h0, tuple) and len(h0) == 2):
                raise TypeError("h0: an LSTM's initial state is a tuple (h0, c0) of (num_layers, batch, hidden) tensors")
            h, c = h0
            self._check_module_state(h, "h0[0]")
            self._check_module_state(c, "h0[1]")
            return torch.cat([h, c], dim=-1).permute(1, 0, 2).reshape(h.shape[1], -1)
        self._check_module_state(h0, "h0")
        return h0.permute(1, 0, 2).reshape(h0.shape[1], -1)

    def state_to_module(self, state: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """(batch, state_dim) -> the module's own state layout."""
        per_layer = state.reshape(state.shape[0], self.layers, self.layer_state).permute(1, 0, 2).contiguous()
        if self.is_lstm:
            return per_layer[..., : self.hidden].contiguous(), per_layer[..., self.hidden :].contiguous()
        return per_layer

    def _check_module_state(self, tensor: object, name: str) -> None:
        if not isinstance(tensor, torch.Tensor) or tensor.ndim != 3 or tensor.shape[0] != self.layers or tensor.shape[2] != self.hidden:
            shape = tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else type(tensor).__name__
            raise ValueError(f"{name} must have shape (num_layers, batch, hidden) = ({self.layers}, batch, {self.hidden}), got {shape}")

    # ----------------------------------------------------------------------------------------

    def _weights(self, k: int, like: torch.Tensor) -> _Layer:
        def get(name: str) -> torch.Tensor | None:
            value = getattr(self.module, f"{name}_l{k}", None)
            return None if value is None else value.detach().to(dtype=like.dtype, device=like.device)

        return _Layer(get("weight_ih"), get("weight_hh"), get("bias_ih"), get("bias_hh"))

    def step(self, state: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
        return self._advance(state, x, with_jacobian=False)[0]

    def jacobian(self, state: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
        return self._advance(state, x, with_jacobian=True)[1]

    def step_with_jacobian(self, state: torch.Tensor, x: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return self._advance(state, x, with_jacobian=True)

    def _advance(self, state: torch.Tensor, x: torch.Tensor, with_jacobian: bool):
        layer_fn = {"LSTM": _lstm_layer, "GRU": _gru_layer}.get(self.kind, _rnn_layer)

        def layer(k: int):
            weights = self._weights(k, state)
            return lambda s, inp, need: layer_fn(weights, s, inp, with_jacobian, self.kind, self.full_state, need)

        sizes = [self.layer_state] * self.layers
        return advance_stack(
            state, x, [layer(k) for k in range(self.layers)], sizes,
            [self.layer_tangent] * self.layers, [self.hidden] * self.layers, with_jacobian,
        )


def _affine(weights: _Layer, h: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(W_ih x + b_ih, W_hh h + b_hh), each (batch, gates * n)."""
    from_input = x @ weights.w_ih.T
    from_hidden = h @ weights.w_hh.T
    if weights.b_ih is not None:
        from_input = from_input + weights.b_ih
        from_hidden = from_hidden + weights.b_hh
    return from_input, from_hidden


def _scaled(coef: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """diag(coef) @ weight for a batch of coefficient vectors: (batch, r) x (r, c) -> (batch, r, c)."""
    return coef.unsqueeze(-1) * weight


def _rnn_layer(weights, h, x, with_jacobian, kind, full_state, need_input):
    pre = sum(_affine(weights, h, x))
    if kind == "RNN_TANH":
        new_h = torch.tanh(pre)
        slope = 1.0 - new_h * new_h
    else:
        new_h = torch.relu(pre)
        slope = (pre > 0).to(pre.dtype)
    if not with_jacobian:
        return new_h, None, None
    own = _scaled(slope, weights.w_hh)
    wrt_input = _scaled(slope, weights.w_ih) if need_input else None
    return new_h, own, wrt_input


def _gru_layer(weights, h, x, with_jacobian, kind, full_state, need_input):
    n = h.shape[-1]
    from_input, from_hidden = _affine(weights, h, x)
    r = torch.sigmoid(from_input[:, :n] + from_hidden[:, :n])
    z = torch.sigmoid(from_input[:, n : 2 * n] + from_hidden[:, n : 2 * n])
    hidden_n = from_hidden[:, 2 * n :]  # W_hn h + b_hn
    cand = torch.tanh(from_input[:, 2 * n :] + r * hidden_n)
    new_h = (1.0 - z) * cand + z * h
    if not with_jacobian:
        return new_h, None, None
    # h' = (1 - z) n + z h:  dh'/dv = (h - n) dz/dv + (1 - z) dn/dv (+ diag(z) for v = h), with
    # dz/dv = z(1-z) W_z, dn/dv = (1 - n^2) [ r W_hn (v = h only) + hidden_n r(1-r) W_r  (+ W_in for v = x) ].
    dz = z * (1.0 - z) * (h - cand)
    dn = (1.0 - cand * cand) * (1.0 - z)
    dr = dn * hidden_n * r * (1.0 - r)

    def wrt(weight: torch.Tensor, candidate_coef: torch.Tensor) -> torch.Tensor:
        return _scaled(dr, weight[:n]) + _scaled(dz, weight[n : 2 * n]) + _scaled(candidate_coef, weight[2 * n :])

    own = wrt(weights.w_hh, dn * r)
    own.diagonal(dim1=-2, dim2=-1).add_(z)
    wrt_input = wrt(weights.w_ih, dn) if need_input else None
    return new_h, own, wrt_input


def _lstm_layer(weights, state, x, with_jacobian, kind, full_state, need_input):
    n = state.shape[-1] // 2
    h, c = state[:, :n], state[:, n:]
    pre = sum(_affine(weights, h, x))
    i = torch.sigmoid(pre[:, :n])
    f = torch.sigmoid(pre[:, n : 2 * n])
    g = torch.tanh(pre[:, 2 * n : 3 * n])
    o = torch.sigmoid(pre[:, 3 * n :])
    new_c = f * c + i * g
    tanh_c = torch.tanh(new_c)
    new_h = o * tanh_c
    new_state = torch.cat([new_h, new_c], dim=-1)
    if not with_jacobian:
        return new_state, None, None
    # c' = f c + i g, h' = o tanh(c'):  dc'/dv = sum over gates of coef_gate W_gate, and
    # dh'/dv = o (1 - tanh^2 c') dc'/dv + tanh(c') o(1-o) W_o.
    dtanh = o * (1.0 - tanh_c * tanh_c)
    coef_c = torch.cat([g * i * (1.0 - i), c * f * (1.0 - f), i * (1.0 - g * g)], dim=-1)
    coef_o = tanh_c * o * (1.0 - o)

    def gate_sum(coef: torch.Tensor, weight: torch.Tensor, gates: int) -> torch.Tensor:
        """sum_g diag(coef_g) W_g over ``gates`` stacked gate blocks: (batch, n, columns)."""
        return _scaled(coef, weight[: gates * n]).unflatten(1, (gates, n)).sum(dim=1)

    def wrt(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        if not full_state:  # dh'/dv alone: fold o (1 - tanh^2) into the c-gate coefficients
            return gate_sum(torch.cat([coef_c * dtanh.repeat(1, 3), coef_o], dim=-1), weight, 4), None
        dc = gate_sum(coef_c, weight, 3)
        return _scaled(dtanh, dc) + _scaled(coef_o, weight[3 * n :]), dc

    dh_dh, dc_dh = wrt(weights.w_hh)
    if full_state:
        own = state.new_zeros(state.shape[0], 2 * n, 2 * n)
        own[:, :n, :n] = dh_dh
        own[:, n:, :n] = dc_dh
        own[:, :n, n:].diagonal(dim1=-2, dim2=-1).copy_(dtanh * f)  # dh'/dc = o (1 - tanh^2 c') f
        own[:, n:, n:].diagonal(dim1=-2, dim2=-1).copy_(f)  # dc'/dc = f
    else:
        own = dh_dh
    wrt_input = None
    if need_input:
        dh_dx, dc_dx = wrt(weights.w_ih)
        wrt_input = torch.cat([dh_dx, dc_dx], dim=1) if full_state else dh_dx
    return new_state, own, wrt_input
