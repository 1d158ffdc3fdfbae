"""PyTorch's own recurrent modules (nn.RNN, nn.LSTM, nn.GRU) as dynamical systems.

The module's weights are read as they are (no copy is trained or changed). One step of the
system is one time step of the whole stack of layers, and the Jacobian is the block
lower-triangular matrix of the dissertation's Eq. (2.6): block (k, j) is
dh^k_t / dh^j_{t-1} = D_k D_{k-1} ... D_{j+1} A_j, where A_j = dh^j_t / dh^j_{t-1} is the
layer's own recurrent Jacobian and D_i = dh^i_t / dh^{i-1}_t its input Jacobian.

Every Jacobian is built from batched elementwise products of gate derivatives with weight
matrices ``coef[:, :, None] * W[None]``: no per-unit loops and no diagonal matrices. Applied
to k tangent vectors without being formed (``step_with_tangent``), it is one matmul of the
stacked gate weights with all the batch's vectors, then the same gate derivatives
elementwise: about k / n of the work of forming it, which pays when k << n.

State layout (batch, state_dim): the layers' states concatenated, layer 1 first. For an LSTM
a layer's state is (h, c). With ``full_state=True`` (what ``state="full"``, the engine's
default, builds) the LSTM's Jacobian covers (h, c): the map the module computes. With
``full_state=False`` (``state="hidden"``) it covers only the hidden vectors h, the cell states
carried along but held fixed when differentiating: the convention of the dissertation's code.

A group of modules of one configuration (:meth:`TorchRNN.group`) is one system whose weights
carry a leading network axis; its batch holds each network's sequences in turn.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..systems import DynamicalSystem
from .functional import gate_sum, linear, scaled
from .parameters import effective_tensors, raw_version
from .stack import LayerLinearization, check_finite_parameters, stack_input_jacobian, stack_jacobian

__all__ = ["TorchRNN"]

_GATES = {"LSTM": 4, "GRU": 3, "RNN_TANH": 1, "RNN_RELU": 1}


class TorchRNN(DynamicalSystem):
    """An ``nn.RNN`` (tanh or relu), ``nn.LSTM`` or ``nn.GRU`` of any depth as a system.

    Args:
        module: the network; unidirectional, any ``num_layers``, with or without bias. An LSTM
            with ``proj_size > 0`` is not supported. Dropout between layers is not applied
            (exponents describe the network as evaluated).
        full_state: differentiate an LSTM's full (h, c) state instead of h alone (the others carry h
            alone, so for them it changes nothing).
        differentiable: compute with the module's parameters themselves, so that autograd
            reaches them; by default with detached copies (no graph is built by any call).
    """

    unbatched_input = True

    def __init__(self, module: nn.Module, full_state: bool = False, *, differentiable: bool = False):
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
        self.full_state = bool(full_state) and self.is_lstm  # an RNN's or GRU's full state is its hidden vector
        self.differentiable = bool(differentiable)
        self.layer_state = 2 * self.hidden if self.is_lstm else self.hidden
        self.layer_tangent = 2 * self.hidden if self.full_state else self.hidden
        self.state_dim = self.layers * self.layer_state
        self.groups: int | None = None
        self._stacked: dict[str, torch.Tensor] | None = None
        self._tensors: tuple[tuple, dict[str, torch.Tensor]] | None = None
        self.tensors()  # a reparametrisation lyapbook cannot read is refused here, before any work

    @classmethod
    def group(cls, modules: Sequence[nn.Module], full_state: bool = False, *, differentiable: bool = False) -> TorchRNN:
        """One system for G modules of one configuration, each with its own weights.

        The batch of this system holds G blocks of rows, block g belonging to ``modules[g]``;
        the weights are stacked to (G, ...) when the group is made (a snapshot: train the
        modules, then make the group). The caller checks that the configurations agree.
        """
        systems = [cls(module, full_state, differentiable=differentiable) for module in modules]
        system = systems[0]
        per_module = [effective_tensors(module, detach=not differentiable) for module in modules]
        system._stacked = {name: torch.stack([tensors[name] for tensors in per_module]) for name in per_module[0]}
        system.groups = len(modules)
        return system

    @property
    def tangent_dim(self) -> int:
        return self.layers * self.layer_tangent

    @property
    def dtype(self) -> torch.dtype:
        return self.module.weight_hh_l0.dtype

    @property
    def device(self) -> torch.device:
        return self.module.weight_hh_l0.device

    @property
    def state_description(self) -> str:
        """How the flat state is made up, for error messages."""
        if self.is_lstm:
            return (f"num_layers x (h, c) = {self.layers} x 2 x {self.hidden}; or the module's own layout, a tuple "
                    f"(h0, c0) of (num_layers, batch, hidden) tensors")
        return f"num_layers x hidden = {self.layers} x {self.hidden}; or the module's own (num_layers, batch, hidden)"

    def tangent_index(self) -> torch.Tensor:
        """(tangent_dim,) positions in the carried state of the coordinates J differentiates."""
        index = torch.arange(self.state_dim).reshape(self.layers, self.layer_state)
        return index[:, : self.layer_tangent].reshape(-1)

    def prefers_matrix_free(self, k: int) -> bool:
        """Apply J to k vectors without forming it when that is cheaper (see ``lyapunov_spectrum(method=)``).

        Forming J costs about ``gates * n^2`` elementwise operations per layer and row (memory
        bound), applying it ``gates * n^2 * k`` multiply-adds inside one GEMM (compute bound).
        Measured per step on a CPU, the GEMM is faster up to k of about n / 4 (LSTM, GRU) to n / 2
        (plain RNN), by 5-12x at k = 16, n = 1024; at n of a few dozen the two are equal. The
        rule k <= n / 8 stays on the safe side of the crossover.
        """
        return 8 * k <= self.tangent_dim

    # ----------------------------------------------------------------------------------------
    # Conversions between the module's conventions and the system's (batch, ...) layout.

    def prepare(self, x, h0):
        """Inputs in the module's layout (``batch_first``), h0 in its own state layout or flat."""
        unbatched = (isinstance(h0, torch.Tensor) and h0.ndim == 2 and tuple(h0.shape) == (self.layers, self.hidden)
                     and h0.shape[1] != self.state_dim)
        if isinstance(h0, tuple) or (isinstance(h0, torch.Tensor) and h0.ndim == 3) or unbatched:
            h0 = self.state_from_module(h0)
        return super().prepare(x, h0)

    def state_from_module(self, h0: torch.Tensor | tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """``h0`` as the module takes it ((layers, batch, n), or (h0, c0) for an LSTM) -> (batch, state_dim).

        Unbatched states ((layers, n), as ``nn.LSTM`` takes them with unbatched input) become one row.
        """
        if self.is_lstm:
            if not (isinstance(h0, tuple) and len(h0) == 2):
                raise TypeError("h0: an LSTM's initial state is a tuple (h0, c0) of (num_layers, batch, hidden) tensors")
            h, c = (self._batched(part) for part in h0)
            self._check_module_state(h, "h0[0]")
            self._check_module_state(c, "h0[1]")
            return torch.cat([h, c], dim=-1).permute(1, 0, 2).reshape(h.shape[1], -1)
        h0 = self._batched(h0)
        self._check_module_state(h0, "h0")
        return h0.permute(1, 0, 2).reshape(h0.shape[1], -1)

    def _batched(self, tensor: object) -> object:
        if isinstance(tensor, torch.Tensor) and tensor.ndim == 2 and tensor.shape == (self.layers, self.hidden):
            return tensor.unsqueeze(1)
        return tensor

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

    def tensors(self) -> dict[str, torch.Tensor]:
        """The weights by name (``weight_ih_l0``, ...) as the module's forward uses them, parametrized,
        pruned or normalised ones included (:func:`~lyapbook.rnn.parameters.effective_tensors`;
        detached unless ``differentiable``), or stacked (G, ...) for a group. Evaluated again only
        when a raw parameter changes, or at every call while a graph is being built."""
        if self._stacked is not None:
            return self._stacked
        building = self.differentiable and torch.is_grad_enabled()
        key = None if building else raw_version(self.module)
        if key is None or self._tensors is None or self._tensors[0] != key:
            self._tensors = (key, effective_tensors(self.module, detach=not self.differentiable))
        return self._tensors[1]

    def step(self, state: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
        return self._advance(state, x, linearize=False)[0]

    def jacobian(self, state: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
        return stack_jacobian(self._advance(state, x)[1])

    def step_with_jacobian(self, state: torch.Tensor, x: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        new_state, layers, _ = self._advance(state, x)
        return new_state, stack_jacobian(layers)

    def step_with_tangent(
        self, state: torch.Tensor, x: torch.Tensor | None, tangent: torch.Tensor, *, transpose: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(next state, J @ tangent) without forming J; ``transpose=True`` forms J and returns J^T @ tangent."""
        if transpose:
            return super().step_with_tangent(state, x, tangent, transpose=True)
        new_state, _, rows = self._advance(state, x, rows=tangent.mT)
        return new_state, rows.mT

    def input_jacobian(self, state: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
        """d(tangent coordinates of the next state)/d(x_t), (batch, tangent_dim, input_dim), every layer."""
        return stack_input_jacobian(self._advance(state, x)[1])

    def _advance(self, state: torch.Tensor, x: torch.Tensor, linearize: bool = True, rows: torch.Tensor | None = None):
        """One step of the stack: (new state, each layer's linearisation, and with tangent ``rows`` (batch, K,
        tangent_dim) their images J rows, else None).

        With rows, each layer multiplies its weights once by the state's rows and the tangent's
        together (one GEMM reads each weight matrix once per step, not twice), layer by layer:
        a layer's input tangent is the tangent of the layer below, just computed."""
        layer_fn = {"LSTM": _lstm_layer, "GRU": _gru_layer}.get(self.kind, _rnn_layer)
        tensors = self.tensors()
        new_states, linearizations, new_rows, layer_input, below = [], [], [], x, None
        for k in range(self.layers):
            weights = [tensors.get(f"{name}_l{k}") for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
            layer_state = state[:, k * self.layer_state : (k + 1) * self.layer_state]
            own = None if rows is None else rows[..., k * self.layer_tangent : (k + 1) * self.layer_tangent]
            products = _Products(weights, layer_state[:, : self.hidden], layer_input,
                                 None if own is None else own[..., : self.hidden], below)
            new_state, linearization = layer_fn(weights, layer_state, products, self, linearize or rows is not None)
            new_states.append(new_state)
            linearizations.append(linearization)
            if rows is not None:
                new_rows.append(linearization.act_products(own, products.tangent_hidden, products.tangent_input))
                below = new_rows[-1][..., : self.hidden]
            layer_input = new_state[:, : self.hidden]
        image = None if rows is None else new_rows[0] if len(new_rows) == 1 else torch.cat(new_rows, dim=-1)
        return torch.cat(new_states, dim=-1), linearizations, image


class _Products:
    """A layer's weight products: ``from_input`` = W_ih x + b_ih and ``from_hidden`` = W_hh h + b_hh, each
    (batch, gates * n); with tangent rows v (batch, K, n) of h and w (batch, K, input) of x, also
    ``tangent_hidden`` = v W_hh^T and ``tangent_input`` = w W_ih^T (batch, K, gates * n), else None.

    A state and its tangent rows meet each weight in one product (rows [x; w] and [h; v]), so
    the weights, the largest operand when the batch is small, are read once per step."""

    def __init__(self, weights: list, h: torch.Tensor, x: torch.Tensor, v: torch.Tensor | None, w: torch.Tensor | None):
        w_ih, w_hh, b_ih, b_hh = weights
        self.from_input, self.tangent_input = _with_rows(x, w, w_ih)
        self.from_hidden, self.tangent_hidden = _with_rows(h, v, w_hh)
        if b_ih is not None:
            self.from_input = _add_bias(self.from_input, b_ih)
            self.from_hidden = _add_bias(self.from_hidden, b_hh)

    def total(self) -> torch.Tensor:
        return self.from_input + self.from_hidden


def _with_rows(values: torch.Tensor, rows: torch.Tensor | None, weight: torch.Tensor):
    """(values W^T, rows W^T) from one product; values (batch, in), rows (batch, K, in) or None."""
    if rows is None:
        return linear(values, weight), None
    both = linear(torch.cat([values.unsqueeze(1), rows], dim=1), weight)
    return both[:, 0], both[:, 1:]


def _add_bias(values: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """values (B, c) + bias, for a shared bias (c,) or one per network (G, c)."""
    if bias.ndim == 1:
        return values + bias
    return (values.reshape(bias.shape[0], -1, bias.shape[-1]) + bias.unsqueeze(1)).reshape(values.shape)


def _sum_present(hidden: torch.Tensor | None, inputs: torch.Tensor | None) -> torch.Tensor:
    """v W_hh^T + w W_ih^T from whichever of the two products exists: the pre-activation tangent."""
    if hidden is None:
        return inputs
    return hidden if inputs is None else hidden + inputs


class _TorchLinearization(LayerLinearization):
    """A PyTorch layer's linearisation: ``act`` forms the tangent's weight products and hands them to
    ``act_products``, which the fused step (:class:`_Products`) calls with products it already has."""

    w_ih: torch.Tensor
    w_hh: torch.Tensor

    def act(self, v, w):
        hidden = linear(v[..., : self.hidden], self.w_hh) if v is not None else None
        inputs = linear(w, self.w_ih) if w is not None else None
        return self.act_products(v, hidden, inputs)

    def act_products(self, v: torch.Tensor | None, hidden: torch.Tensor | None, inputs: torch.Tensor | None) -> torch.Tensor:
        """Rows of A v + D w from v (batch, K, n_k) and the products ``hidden`` = v_h W_hh^T and ``inputs`` = w W_ih^T
        (batch, K, gates * n) (None where that tangent is zero)."""
        raise NotImplementedError


def _rows(coef: torch.Tensor) -> torch.Tensor:
    """A per-row coefficient (B, c) broadcast over the K tangent rows of (B, K, c)."""
    return coef.unsqueeze(1)


class _RNNLinearization(_TorchLinearization):
    """h' = phi(W_ih x + W_hh h + b): A = diag(phi') W_hh, D = diag(phi') W_ih."""

    def __init__(self, slope, w_ih, w_hh):
        self.slope, self.w_ih, self.w_hh = slope, w_ih, w_hh
        self.size = self.hidden = slope.shape[-1]

    def own(self):
        return scaled(self.slope, self.w_hh)

    def wrt_input(self):
        return scaled(self.slope, self.w_ih)

    def act_products(self, v, hidden, inputs):
        return _sum_present(hidden, inputs) * _rows(self.slope)


def _rnn_layer(weights, h, products, system, linearize):
    pre = products.total()
    if system.kind == "RNN_TANH":
        new_h = torch.tanh(pre)
        slope = 1.0 - new_h * new_h if linearize else None
    else:
        new_h = torch.relu(pre)
        slope = (pre > 0).to(pre.dtype) if linearize else None
    return new_h, (_RNNLinearization(slope, weights[0], weights[1]) if linearize else None)


class _GRULinearization(_TorchLinearization):
    """h' = (1 - z) n + z h:  dh'/dv = (h - n) dz/dv + (1 - z) dn/dv (+ diag(z) for v = h), with
    dz/dv = z(1-z) W_z, dn/dv = (1 - n^2) [ r W_hn (v = h only) + hidden_n r(1-r) W_r  (+ W_in for v = x) ]."""

    def __init__(self, r, z, dr, dz, dn, w_ih, w_hh):
        self.r, self.z, self.dr, self.dz, self.dn, self.w_ih, self.w_hh = r, z, dr, dz, dn, w_ih, w_hh
        self.size = self.hidden = z.shape[-1]

    def _wrt(self, weight, candidate_coef):
        n = self.size
        return gate_sum(torch.cat([self.dr, self.dz, candidate_coef], dim=-1), weight[..., : 3 * n, :], 3)

    def own(self):
        own = self._wrt(self.w_hh, self.dn * self.r)
        own.diagonal(dim1=-2, dim2=-1).add_(self.z)
        return own

    def wrt_input(self):
        return self._wrt(self.w_ih, self.dn)

    def act_products(self, v, hidden, inputs):
        n = self.size
        if hidden is None:
            reset_update, candidate = inputs[..., : 2 * n], inputs[..., 2 * n :]
        else:
            candidate = _rows(self.r) * hidden[..., 2 * n :]
            reset_update = hidden[..., : 2 * n]
            if inputs is not None:
                reset_update = reset_update + inputs[..., : 2 * n]
                candidate = candidate + inputs[..., 2 * n :]
        out = (_rows(self.dr) * reset_update[..., :n] + _rows(self.dz) * reset_update[..., n:]
               + _rows(self.dn) * candidate)
        return out if v is None else out + _rows(self.z) * v


def _gru_layer(weights, h, products, system, linearize):
    n = h.shape[-1]
    from_input, from_hidden = products.from_input, products.from_hidden
    r = torch.sigmoid(from_input[:, :n] + from_hidden[:, :n])
    z = torch.sigmoid(from_input[:, n : 2 * n] + from_hidden[:, n : 2 * n])
    hidden_n = from_hidden[:, 2 * n :]  # W_hn h + b_hn
    cand = torch.tanh(from_input[:, 2 * n :] + r * hidden_n)
    new_h = (1.0 - z) * cand + z * h
    if not linearize:
        return new_h, None
    dz = z * (1.0 - z) * (h - cand)
    dn = (1.0 - cand * cand) * (1.0 - z)
    dr = dn * hidden_n * r * (1.0 - r)
    return new_h, _GRULinearization(r, z, dr, dz, dn, weights[0], weights[1])


class _LSTMLinearization(_TorchLinearization):
    """c' = f c + i g, h' = o tanh(c'):  dc'/dv = sum over gates of coef_gate W_gate, and
    dh'/dv = o (1 - tanh^2 c') dc'/dv + tanh(c') o(1-o) W_o; with the full state also
    dh'/dc = o (1 - tanh^2 c') f and dc'/dc = f."""

    def __init__(self, f, dtanh, coef_c, coef_o, w_ih, w_hh, full_state):
        self.f, self.dtanh, self.coef_c, self.coef_o = f, dtanh, coef_c, coef_o
        self.w_ih, self.w_hh, self.full_state = w_ih, w_hh, full_state
        self.hidden = f.shape[-1]
        self.size = 2 * self.hidden if full_state else self.hidden

    def _gate_sum(self, coef, weight, gates):
        """sum_g diag(coef_g) W_g over ``gates`` stacked gate blocks: (batch, n, columns)."""
        n = self.hidden
        return gate_sum(coef, weight[..., : gates * n, :], gates)

    def _folded(self):
        """dh'/d(pre-activations) with c held fixed: o (1 - tanh^2) folded into the c-gate coefficients, (B, 4n)."""
        return torch.cat([self.coef_c * self.dtanh.repeat(1, 3), self.coef_o], dim=-1)

    def _wrt(self, weight):
        n = self.hidden
        if not self.full_state:  # dh'/dv alone
            return self._gate_sum(self._folded(), weight, 4), None
        dc = self._gate_sum(self.coef_c, weight, 3)
        return self.dtanh.unsqueeze(-1) * dc + scaled(self.coef_o, weight[..., 3 * n :, :]), dc

    def own(self):
        n = self.hidden
        dh_dh, dc_dh = self._wrt(self.w_hh)
        if not self.full_state:
            return dh_dh
        own = dh_dh.new_zeros(dh_dh.shape[0], 2 * n, 2 * n)
        own[:, :n, :n] = dh_dh
        own[:, n:, :n] = dc_dh
        own[:, :n, n:].diagonal(dim1=-2, dim2=-1).copy_(self.dtanh * self.f)  # dh'/dc = o (1 - tanh^2 c') f
        own[:, n:, n:].diagonal(dim1=-2, dim2=-1).copy_(self.f)  # dc'/dc = f
        return own

    def wrt_input(self):
        dh_dx, dc_dx = self._wrt(self.w_ih)
        return torch.cat([dh_dx, dc_dx], dim=1) if self.full_state else dh_dx

    def act_products(self, v, hidden, inputs):
        n = self.hidden
        pre = _sum_present(hidden, inputs)
        if not self.full_state:  # one product with the folded coefficients, one sum over the 4 gates
            return (pre * _rows(self._folded())).unflatten(-1, (4, n)).sum(dim=-2)
        dc = (pre[..., : 3 * n] * _rows(self.coef_c)).unflatten(-1, (3, n)).sum(dim=-2)
        if self.full_state and v is not None:
            dc = dc + _rows(self.f) * v[..., n:]
        dh = _rows(self.dtanh) * dc + _rows(self.coef_o) * pre[..., 3 * n :]
        return torch.cat([dh, dc], dim=-1) if self.full_state else dh


def _lstm_layer(weights, state, products, system, linearize):
    n = state.shape[-1] // 2
    c = state[:, n:]
    pre = products.total()
    i = torch.sigmoid(pre[:, :n])
    f = torch.sigmoid(pre[:, n : 2 * n])
    g = torch.tanh(pre[:, 2 * n : 3 * n])
    o = torch.sigmoid(pre[:, 3 * n :])
    new_c = f * c + i * g
    tanh_c = torch.tanh(new_c)
    new_h = o * tanh_c
    new_state = torch.cat([new_h, new_c], dim=-1)
    if not linearize:
        return new_state, None
    dtanh = o * (1.0 - tanh_c * tanh_c)
    coef_c = torch.cat([g * i * (1.0 - i), c * f * (1.0 - f), i * (1.0 - g * g)], dim=-1)
    coef_o = tanh_c * o * (1.0 - o)
    return new_state, _LSTMLinearization(f, dtanh, coef_c, coef_o, weights[0], weights[1], system.full_state)
