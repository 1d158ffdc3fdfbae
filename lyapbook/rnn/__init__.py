"""Recurrent networks as dynamical systems, with analytic Jacobians."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
from torch import nn

from ..systems import DynamicalSystem
from ..validation import check_dtypes, check_state, check_step_input
from .cell_system import CellSystem
from .cells import LEM, AntisymmetricRNN, CoRNN, LipschitzRNN, NoisyRNN, Rank1Reservoir, RecurrentCell, StackedCells
from .torch_rnn import TorchRNN

__all__ = [
    "AntisymmetricRNN", "CellSystem", "CoRNN", "LEM", "LipschitzRNN", "NoisyRNN", "Rank1Reservoir",
    "RecurrentCell", "STATES", "StackedCells", "TorchRNN", "as_group_system", "as_system", "check_state_option",
    "configuration", "jacobian",
]

SUPPORTED = (
    "nn.RNN (tanh, relu), nn.LSTM, nn.GRU, lyapbook's cells (AntisymmetricRNN, CoRNN, LipschitzRNN, "
    "NoisyRNN, LEM, Rank1Reservoir, StackedCells), or a lyapbook.systems.DynamicalSystem"
)
_MODULES = (nn.RNN, nn.LSTM, nn.GRU, RecurrentCell, StackedCells)
STATES = ("full", "hidden")


def check_state_option(state: str | None, full_state: bool | None = None, *, where: str = "lyapunov_spectrum") -> str | None:
    """The ``state`` option checked, or taken from the deprecated ``full_state`` (with a warning).

    ``"full"`` (the default): the Jacobian over every coordinate the network carries, an LSTM's
    (h, c), coRNN's and LEM's (y, z), so the exponents describe the map the module computes.
    ``"hidden"``: over the hidden vector alone, the other coordinates carried along but held
    fixed when differentiating (the dissertation's convention and its code's). For networks
    whose state is their hidden vector (RNN, GRU, ASRNN, Lipschitz, noisy RNN, the reservoir)
    the two are the same. ``None`` means the default.
    """
    if full_state is not None:
        if state is not None:
            raise ValueError(f"{where}: give state= or the older full_state=, not both")
        replacement = "'full'" if full_state else "'hidden'"
        warnings.warn(f"{where}: full_state= is deprecated; write state={replacement} (state='full' is the default)",
                      DeprecationWarning, stacklevel=3)
        state = "full" if full_state else "hidden"
    if state is not None and state not in STATES:
        raise ValueError(
            f"state must be 'full' (every coordinate the network carries: an LSTM's (h, c), coRNN's and LEM's (y, z); "
            f"the default) or 'hidden' (the hidden vector alone, the rest held fixed: the dissertation's convention), "
            f"got {state!r}"
        )
    return state


def as_system(model: object, state: str | None = None, *, differentiable: bool = False) -> DynamicalSystem:
    """The dynamical system behind ``model``: a system passes through, a supported module is wrapped
    over its ``state`` coordinates (see :func:`check_state_option`; ``"full"`` by default), computing
    with its parameters themselves when ``differentiable``."""
    state = check_state_option(state)
    if isinstance(model, DynamicalSystem):
        if state is not None:
            raise ValueError(
                f"state={state!r}: {type(model).__name__} is already a system with its own tangent space; "
                "state applies when passing a network (nn.LSTM, CoRNN, LEM)"
            )
        return model
    full = state != "hidden"
    if isinstance(model, (nn.RNN, nn.LSTM, nn.GRU)):
        return TorchRNN(model, full_state=full, differentiable=differentiable)
    if isinstance(model, (RecurrentCell, StackedCells)):
        return CellSystem(model, full_state=full, differentiable=differentiable)
    raise TypeError(f"model: {type(model).__name__} is not supported; lyapunov_spectrum takes {SUPPORTED}{_inner_hint(model)}")


def _inner_hint(model: object) -> str:
    """For a user's module that wraps a supported one: where it is, and that it is what to pass."""
    if not isinstance(model, nn.Module):
        return ""
    for name, module in model.named_modules():
        if name and isinstance(module, _MODULES):
            return (
                f". It contains a supported {type(module).__name__} at model.{name}: pass that module, "
                f"lyapunov_spectrum(model.{name}, x_seen_by_it), with the inputs it receives inside your model"
            )
    return ""


def configuration(model: nn.Module) -> tuple:
    """What must agree for networks to be computed as one group: types, sizes, hyperparameters,
    the names, shapes, dtypes and devices of their tensors (not their values, and not what acts
    only in training: dropout, noise levels)."""
    ignored = {"training", "dropout", "sigma_add", "sigma_mult"}
    parts = []
    for name, module in model.named_modules():
        settings = tuple(
            sorted((key, value) for key, value in vars(module).items()
                   if not key.startswith("_") and key not in ignored and isinstance(value, (bool, int, float, str)))
        )
        parts.append((name, type(module).__name__, settings))
    tensors = [*model.named_parameters(), *model.named_buffers()]
    parts.append(tuple((name, tuple(t.shape), t.dtype, str(t.device)) for name, t in tensors))
    return tuple(parts)


def as_group_system(models: Sequence[nn.Module], state: str | None = None, *, differentiable: bool = False) -> DynamicalSystem:
    """One system for networks of one configuration (see :func:`configuration`), each with its own weights.

    Its batch holds G blocks of rows, block g for ``models[g]``.
    """
    first = models[0]
    for index, model in enumerate(models):
        if not isinstance(model, _MODULES):
            raise TypeError(
                f"models[{index}]: {type(model).__name__} is not supported; a group takes nn.RNN, nn.LSTM, nn.GRU, "
                "lyapbook's cells or StackedCells"
            )
    key = configuration(first)
    for index, model in enumerate(models[1:], start=1):
        if configuration(model) != key:
            raise ValueError(
                f"models[{index}] differs in architecture or size from models[0] ({type(model).__name__} vs "
                f"{type(first).__name__}); group only networks of one configuration"
            )
    full = check_state_option(state) != "hidden"
    if isinstance(first, (nn.RNN, nn.LSTM, nn.GRU)):
        return TorchRNN.group(models, full, differentiable=differentiable)
    return CellSystem.group(models, full, differentiable=differentiable)


def jacobian(model: object, h: torch.Tensor | tuple, x_t: torch.Tensor | None = None, state: str | None = None, *,
             full_state: bool | None = None) -> torch.Tensor:
    """Analytic Jacobian dh_t/dh_{t-1} of ``model`` at state ``h`` and input ``x_t``.

    Args:
        model: a supported module or a :class:`~lyapbook.systems.DynamicalSystem`.
        h: (batch, state_dim), or a PyTorch module's own state layout ((layers, batch, hidden),
            or a tuple (h, c) for an LSTM). The flat layout concatenates the layers' states,
            layer 1 first; an LSTM layer's state is (h, c), a coRNN's and a LEM's (y, z).
        x_t: (batch, input_size) input at this step (``None`` for an autonomous system).
        state: ``"full"`` (default) differentiates every coordinate the network carries,
            ``"hidden"`` the hidden vectors alone (see :func:`check_state_option`).
        full_state: deprecated spelling of ``state``.

    Returns:
        (batch, n, n) with n the tangent dimension: layers x hidden, or x 2 for the full state
        of an LSTM, coRNN or LEM; rows and columns in the layout of ``h``, less what is held fixed.
    """
    system = as_system(model, check_state_option(state, full_state, where="jacobian"))
    _, h = system.prepare(None, h)
    h = check_state(system, h, None, name="h")
    check_step_input(system, x_t, h.shape[0])
    check_dtypes(system, h, x_t, state_name="h")
    return system.jacobian(h, x_t)
