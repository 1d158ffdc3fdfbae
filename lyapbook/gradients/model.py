"""The vanilla RNN of Eq. (4.5), read out of a PyTorch module, and its forward pass.

    o_t = W h_t + c,    h_t = phi(a_t),    a_t = V h_{t-1} + U x_t + b          (Eq. 4.5)

(c, the readout bias, is not written in the dissertation; PyTorch's ``nn.Linear`` has it.) Every
function of :mod:`lyapbook.gradients` works on a :class:`VanillaRNN`, a snapshot of these five
tensors, so that one convention holds everywhere:

* inputs ``x`` are batch first, (batch, time, input_size), whatever the module's ``batch_first``;
* step t = 1 ... T is array index t - 1 on the time axis; ``h0`` is h_0 (zeros when not given);
* dropout is never applied (the network as evaluated; spec §3.4 reading of the dissertation).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

__all__ = [
    "NONLINEARITIES", "Trajectory", "VanillaRNN", "activation_derivative", "check_targets", "cross_entropy_output_gradients",
    "final_logits", "rnn_forward", "step_jacobians", "vanilla_rnn",
]

NONLINEARITIES = ("tanh", "relu", "identity")
SUPPORTED = (
    "a VanillaRNN, a one-layer unidirectional nn.RNN (tanh or relu, with or without bias) together with "
    "readout=nn.Linear(hidden, classes), or a lyapbook.tasks.SequenceModel with arch='rnn'"
)


@dataclass(frozen=True)
class VanillaRNN:
    """The parameters of Eq. (4.5), detached copies (a snapshot: training the module later changes nothing here).

    Attributes:
        input_weight: U, (N, m).
        recurrent_weight: V, (N, N).
        bias: b, (N,), or None (PyTorch's two biases are summed into one).
        readout_weight: W, (C, N).
        readout_bias: c, (C,), or None.
        nonlinearity: phi, ``"tanh"``, ``"relu"`` or ``"identity"`` (the last one only for hand-built
            linear networks, e.g. the commuting case of the Eq. (4.14) check).
    """

    input_weight: torch.Tensor
    recurrent_weight: torch.Tensor
    bias: torch.Tensor | None
    readout_weight: torch.Tensor
    readout_bias: torch.Tensor | None
    nonlinearity: str = "tanh"

    def __post_init__(self):
        u, w = self.input_weight, self.readout_weight
        if u.ndim != 2 or w.ndim != 2:
            raise ValueError(f"input_weight (U) and readout_weight (W) must be matrices, "
                             f"got shapes {tuple(u.shape)}, {tuple(w.shape)}")
        n = u.shape[0]
        expected = {"recurrent_weight": (self.recurrent_weight, (n, n)), "readout_weight": (w, (w.shape[0], n)),
                    "bias": (self.bias, (n,)), "readout_bias": (self.readout_bias, (w.shape[0],))}
        for name, (tensor, shape) in expected.items():
            if tensor is not None and tuple(tensor.shape) != shape:
                raise ValueError(f"{name} must have shape {shape} to match input_weight (N={n}), got {tuple(tensor.shape)}")
        for name, tensor in self._tensors().items():
            if not tensor.is_floating_point():
                raise TypeError(f"{name} must be a floating-point tensor, got dtype {tensor.dtype}")
            if tensor.dtype != self.recurrent_weight.dtype or tensor.device != self.recurrent_weight.device:
                raise ValueError(f"{name} must share recurrent_weight's dtype and device ({self.recurrent_weight.dtype}, "
                                 f"{self.recurrent_weight.device}), got {tensor.dtype} on {tensor.device}")
            if not bool(torch.isfinite(tensor).all()):
                raise ValueError(f"{name} contains NaN or inf values")
        if self.nonlinearity not in NONLINEARITIES:
            raise ValueError(f"nonlinearity must be one of {', '.join(NONLINEARITIES)}, got {self.nonlinearity!r}")

    def _tensors(self) -> dict[str, torch.Tensor]:
        named = {"input_weight": self.input_weight, "recurrent_weight": self.recurrent_weight,
                 "bias": self.bias, "readout_weight": self.readout_weight, "readout_bias": self.readout_bias}
        return {name: tensor for name, tensor in named.items() if tensor is not None}

    @property
    def hidden_size(self) -> int:
        return self.recurrent_weight.shape[0]

    @property
    def input_size(self) -> int:
        return self.input_weight.shape[1]

    @property
    def output_size(self) -> int:
        return self.readout_weight.shape[0]

    @property
    def dtype(self) -> torch.dtype:
        return self.recurrent_weight.dtype

    @property
    def device(self) -> torch.device:
        return self.recurrent_weight.device


def vanilla_rnn(model: VanillaRNN | nn.Module, readout: nn.Linear | None = None) -> VanillaRNN:
    """Read Eq. (4.5)'s U, V, b, W, c out of a network.

    Args:
        model: a :class:`VanillaRNN` (returned as is); a one-layer unidirectional ``nn.RNN``
            (tanh or relu, bias or not; b = b_ih + b_hh); or a ``lyapbook.tasks.SequenceModel``
            with ``arch="rnn"`` (its dropout is ignored; a model with an embedding takes
            ``model.core_inputs(x)`` as its ``x`` in this module).
        readout: the ``nn.Linear(hidden, classes)`` after an ``nn.RNN``; required for it, refused otherwise.

    Returns:
        A :class:`VanillaRNN` snapshot of the weights.
    """
    from ..tasks.models import SequenceModel  # local: the tasks package is not needed to import this module

    if isinstance(model, VanillaRNN):
        if readout is not None:
            raise ValueError("readout: a VanillaRNN already holds its readout; pass readout=None")
        return model
    if isinstance(model, SequenceModel):
        if model.arch != "rnn":
            raise TypeError(f"model: a SequenceModel with arch={model.arch!r} is not the vanilla RNN of Eq. (4.5); "
                            f"the gradient helpers take {SUPPORTED}")
        if readout is not None:
            raise ValueError("readout: a SequenceModel brings its own readout; pass readout=None")
        return vanilla_rnn(model.core, model.readout)
    if not isinstance(model, nn.RNN):
        raise TypeError(f"model: {type(model).__name__} is not supported; the gradient helpers take {SUPPORTED}")
    if model.num_layers != 1 or model.bidirectional:
        raise ValueError(f"model: Eq. (4.5) is one unidirectional layer; got num_layers={model.num_layers}, "
                         f"bidirectional={model.bidirectional}")
    if not isinstance(readout, nn.Linear):
        raise TypeError(f"readout: an nn.RNN needs its readout, readout=nn.Linear({model.hidden_size}, classes); "
                        f"got {type(readout).__name__}")
    if readout.in_features != model.hidden_size:
        raise ValueError(f"readout: in_features={readout.in_features} does not match the RNN's hidden_size={model.hidden_size}")
    bias = (model.bias_ih_l0 + model.bias_hh_l0).detach() if model.bias else None
    return VanillaRNN(
        input_weight=_snapshot(model.weight_ih_l0), recurrent_weight=_snapshot(model.weight_hh_l0), bias=bias,
        readout_weight=_snapshot(readout.weight), readout_bias=_snapshot(readout.bias), nonlinearity=model.nonlinearity,
    )


def _snapshot(parameter: torch.Tensor | None) -> torch.Tensor | None:
    return None if parameter is None else parameter.detach().clone()


def _phi(nonlinearity: str, a: torch.Tensor) -> torch.Tensor:
    if nonlinearity == "tanh":
        return torch.tanh(a)
    if nonlinearity == "relu":
        return torch.relu(a)
    return a


def _unroll(rnn: VanillaRNN, recurrent_weight: torch.Tensor, x: torch.Tensor, h0: torch.Tensor,
            perturbation: torch.Tensor | None = None, keep: bool = True):
    """Eq. (4.5) over time for (..., T, m) inputs; ``perturbation`` (..., T, N) is added to each h_t.

    Written with ``recurrent_weight`` as an argument and no in-place writes so that torch.func can
    differentiate it. Returns (states, preactivations) stacked on the time axis, or the last state.
    """
    drive = x @ rnn.input_weight.mT
    if rnn.bias is not None:
        drive = drive + rnn.bias
    h, states, pre = h0, [], []
    for t in range(x.shape[-2]):
        a = h @ recurrent_weight.mT + drive[..., t, :]
        h = _phi(rnn.nonlinearity, a)
        if perturbation is not None:
            h = h + perturbation[..., t, :]
        if keep:
            states.append(h)
            pre.append(a)
    if not keep:
        return h
    return torch.stack(states, dim=-2), torch.stack(pre, dim=-2)


def _readout(rnn: VanillaRNN, h: torch.Tensor) -> torch.Tensor:
    out = h @ rnn.readout_weight.mT
    return out if rnn.readout_bias is None else out + rnn.readout_bias


def check_network(rnn: object) -> None:
    """Refuse anything but a VanillaRNN, saying how to make one."""
    if not isinstance(rnn, VanillaRNN):
        raise TypeError(f"rnn must be a VanillaRNN, got {type(rnn).__name__}; "
                        "convert with lyapbook.gradients.vanilla_rnn(model, readout)")


def check_inputs(rnn: VanillaRNN, x: torch.Tensor, h0: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate x (batch, time, input_size) and h0 (batch, N); cast x to the network's dtype; zeros for h0=None."""
    check_network(rnn)
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise TypeError("x must be a floating-point tensor (batch, time, input_size); for a model with an embedding "
                        "pass model.core_inputs(tokens)")
    if x.ndim != 3 or x.shape[-1] != rnn.input_size or x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"x must have shape (batch, time, {rnn.input_size}) (batch first), got {tuple(x.shape)}")
    if x.device != rnn.device:
        raise ValueError(f"x is on {x.device} but the network is on {rnn.device}; move one of them")
    if not bool(torch.isfinite(x).all()):
        raise ValueError("x contains NaN or inf values")
    x = x.to(rnn.dtype)
    if h0 is None:
        return x, x.new_zeros(x.shape[0], rnn.hidden_size)
    if not isinstance(h0, torch.Tensor) or tuple(h0.shape) != (x.shape[0], rnn.hidden_size):
        shape = tuple(h0.shape) if isinstance(h0, torch.Tensor) else type(h0).__name__
        raise ValueError(f"h0 must be a tensor (batch, hidden) = {(x.shape[0], rnn.hidden_size)}, got {shape}")
    if h0.device != rnn.device or not bool(torch.isfinite(h0).all()):
        raise ValueError(f"h0 must be finite and on the network's device {rnn.device}")
    return x, h0.to(rnn.dtype)


def check_targets(targets: torch.Tensor, batch: int, steps: int, classes: int) -> torch.Tensor:
    """Class ids (batch,) (one label per sequence, used at every step) or (batch, time) -> (batch, time) int64."""
    if not isinstance(targets, torch.Tensor) or targets.is_floating_point() or targets.is_complex():
        raise TypeError("targets must be an integer tensor of class ids, (batch,) or (batch, time)")
    if targets.ndim == 1:
        targets = targets[:, None].expand(-1, steps)
    if tuple(targets.shape) != (batch, steps):
        raise ValueError(f"targets must have shape ({batch},) or ({batch}, {steps}), got {tuple(targets.shape)}")
    if bool(((targets < 0) | (targets >= classes)).any()):
        raise ValueError(f"targets must be class ids in [0, {classes - 1}]")
    return targets.long()


@dataclass(frozen=True)
class Trajectory:
    """One forward pass of Eq. (4.5). Time axis: index t - 1 holds step t = 1 ... T.

    Attributes:
        h0: (batch, N) the initial state h_0.
        states: (batch, T, N) h_1 ... h_T.
        preactivations: (batch, T, N) a_1 ... a_T.
        outputs: (batch, T, C) o_1 ... o_T (logits; the readout at every step).
    """

    h0: torch.Tensor
    states: torch.Tensor
    preactivations: torch.Tensor
    outputs: torch.Tensor

    @property
    def previous_states(self) -> torch.Tensor:
        """(batch, T, N) h_0 ... h_{T-1}: the state each step's recurrent weight acts on."""
        return torch.cat([self.h0[:, None], self.states[:, :-1]], dim=1)


def rnn_forward(rnn: VanillaRNN, x: torch.Tensor, h0: torch.Tensor | None = None) -> Trajectory:
    """Run Eq. (4.5) on x (batch, time, input_size) from h0 (batch, N) (zeros if None); keeps every step."""
    x, h0 = check_inputs(rnn, x, h0)
    states, pre = _unroll(rnn, rnn.recurrent_weight, x, h0)
    return Trajectory(h0=h0, states=states, preactivations=pre, outputs=_readout(rnn, states))


def final_logits(rnn: VanillaRNN, x: torch.Tensor, h0: torch.Tensor | None = None) -> torch.Tensor:
    """(batch, C) the readout of the last state, o_T, without keeping the intermediate states (memory O(batch N))."""
    x, h0 = check_inputs(rnn, x, h0)
    return _readout(rnn, _unroll(rnn, rnn.recurrent_weight, x, h0, keep=False))


def activation_derivative(rnn: VanillaRNN, trajectory: Trajectory) -> torch.Tensor:
    """(batch, T, N) phi'(a_t): 1 - h_t^2 for tanh, [a_t > 0] for relu, ones for identity."""
    if rnn.nonlinearity == "tanh":
        return 1 - trajectory.states**2
    if rnn.nonlinearity == "relu":
        return (trajectory.preactivations > 0).to(trajectory.states.dtype)
    return torch.ones_like(trajectory.states)


def step_jacobians(rnn: VanillaRNN, trajectory: Trajectory) -> torch.Tensor:
    """(batch, T, N, N) J_t = dh_t/dh_{t-1} = diag(phi'(a_t)) V (Eq. 4.8), row = output unit.

    This is the standard orientation; the dissertation's Eq. (4.1) defines its transpose (spec §6
    item 24). Memory is batch x T x N^2 numbers: for long sequences take Q and R from the engine.
    """
    return activation_derivative(rnn, trajectory)[..., :, None] * rnn.recurrent_weight


def cross_entropy_output_gradients(outputs: torch.Tensor, targets: torch.Tensor, loss_at: str = "all") -> torch.Tensor:
    """grad_{o_s} L for the softmax cross-entropy, softmax(o_s) - onehot(y_s) (the dissertation's y_hat - y).

    Args:
        outputs: (batch, T, C) logits o_1 ... o_T.
        targets: class ids (batch,) (the same label at every step) or (batch, T).
        loss_at: ``"all"`` (L = sum_s CE(o_s, y_s), Eq. 4.7's cumulative loss) or ``"last"``
            (L = CE(o_T, y_T), classification).

    Returns:
        (batch, T, C), zero at steps without a loss.
    """
    if outputs.ndim != 3:
        raise ValueError(f"outputs must have shape (batch, T, C), got {tuple(outputs.shape)}")
    batch, steps, classes = outputs.shape
    targets = check_targets(targets, batch, steps, classes)
    grads = torch.softmax(outputs, dim=-1) - nn.functional.one_hot(targets, classes).to(outputs.dtype)
    return grads * step_mask(loss_at, steps, outputs)[:, None]


def step_mask(loss_at: str, steps: int, like: torch.Tensor) -> torch.Tensor:
    """(T,) weight of each step's loss: ones for ``"all"``, the last step only for ``"last"``."""
    if loss_at == "all":
        return like.new_ones(steps)
    if loss_at == "last":
        mask = like.new_zeros(steps)
        mask[-1] = 1
        return mask
    raise ValueError(f"loss_at must be 'all' (a loss at every step) or 'last' (only the last step), got {loss_at!r}")
