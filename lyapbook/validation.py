"""Checks of what a user hands the engine, each failing with a message that names the argument and the fix.

Everything here runs before any long work. Shapes are reported in the user's own layout (a
time-first module's inputs are (time, batch, features)), not in the engine's.
"""

from __future__ import annotations

import numbers

import torch

from .systems import DynamicalSystem

__all__ = [
    "check_count", "check_dtypes", "check_float", "check_inputs", "check_state", "check_step_input", "check_system_definition",
    "layout_of",
]

_UNSUPPORTED_DTYPES = (torch.float16, torch.bfloat16)


def check_count(name: str, value: object, minimum: int) -> int:
    """An integer argument (Python or NumPy integer, not a bool) of at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    value = int(value)
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return value


def check_system_definition(system: DynamicalSystem) -> None:
    """A user's DynamicalSystem subclass declares what the engine needs."""
    name = type(system).__name__
    state_dim = getattr(system, "state_dim", None)
    if isinstance(state_dim, bool) or not isinstance(state_dim, numbers.Integral) or state_dim < 1:
        raise TypeError(
            f"system: {name} must set state_dim, the size of its state, as a positive int "
            f"(a class attribute or set in __init__), got {state_dim!r}"
        )
    input_dim = getattr(system, "input_dim", 0)
    if isinstance(input_dim, bool) or not isinstance(input_dim, numbers.Integral) or input_dim < 0:
        raise TypeError(f"system: {name}.input_dim must be a non-negative int (0 for an autonomous system), got {input_dim!r}")
    tangent_dim = system.tangent_dim
    if isinstance(tangent_dim, bool) or not isinstance(tangent_dim, numbers.Integral) or not 1 <= tangent_dim <= state_dim:
        raise TypeError(f"system: {name}.tangent_dim must be an int in [1, state_dim = {state_dim}], got {tangent_dim!r}")


def layout_of(system: DynamicalSystem) -> tuple[str, int]:
    """("(batch, time, features)" or "(time, batch, features)", position of the batch axis) for the user's x."""
    if system.batch_first:
        return "(batch, time, features)", 0
    return "(time, batch, features)", 1


def check_inputs(system: DynamicalSystem, x: object) -> object:
    """Validate ``x`` in the user's layout; return it, with a batch axis added to one unbatched sequence.

    A driven system takes a tensor in its layout; an autonomous one the number of steps.
    """
    name = type(getattr(system, "module", None) or getattr(system, "model", None) or system).__name__
    if system.input_dim == 0:
        if isinstance(x, bool) or not isinstance(x, numbers.Integral):
            raise TypeError(f"x: {name} is autonomous (no input); pass the number of steps as an int, got {type(x).__name__}")
        return check_count("x: the number of steps", x, 1)
    layout, batch_axis = layout_of(system)
    expected = layout.replace("features", str(system.input_dim))
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x: {name} is driven by input; pass a tensor {expected}, got {type(x).__name__}")
    if x.ndim == 2 and x.shape[-1] == system.input_dim:
        if system.unbatched_input:  # one sequence (time, features), as nn.LSTM takes it
            x = x.unsqueeze(batch_axis)
        else:
            raise ValueError(
                f"x must have shape {expected}, got {tuple(x.shape)}; for one sequence add a batch axis "
                f"with x.unsqueeze({batch_axis})"
            )
    if x.ndim != 3 or x.shape[-1] != system.input_dim:
        raise ValueError(f"x must have shape {expected}, got {tuple(x.shape)}")
    if x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"x must hold at least one sequence of at least one step, got shape {tuple(x.shape)} {layout}")
    check_float("x", x.dtype)
    if not bool(torch.isfinite(x).all()):
        raise ValueError("x contains NaN or inf values")
    return x


def check_float(name: str, dtype: torch.dtype) -> None:
    if not dtype.is_floating_point:
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {dtype}")
    if dtype in _UNSUPPORTED_DTYPES:
        raise TypeError(
            f"{name} is {dtype}: Lyapunov spectra need float32 or float64 (the QR factorisation has no "
            f"half-precision kernels, and half precision cannot resolve exponents); convert with .float()"
        )


def check_state(system: DynamicalSystem, h0: object, batch: int | None, *, name: str = "h0") -> torch.Tensor:
    """Validate a flat state (batch, state_dim) whose batch must equal ``batch`` when given."""
    if not isinstance(h0, torch.Tensor):
        raise TypeError(f"{name} must be a tensor (batch, {system.state_dim}) or None, got {type(h0).__name__}")
    width = getattr(system, "state_description", None)
    described = f" ({width})" if width else ""
    if h0.ndim != 2 or h0.shape[1] != system.state_dim:
        hint = f"; add a batch axis with {name}.unsqueeze(0)" if h0.ndim == 1 and h0.shape[0] == system.state_dim else ""
        raise ValueError(f"{name} must have shape (batch, {system.state_dim}){described}, got {tuple(h0.shape)}{hint}")
    if batch is not None and h0.shape[0] != batch:
        raise ValueError(f"{name} has batch size {h0.shape[0]} but x has batch size {batch}; they must match")
    check_float(name, h0.dtype)
    if not bool(torch.isfinite(h0).all()):
        raise ValueError(f"{name} contains NaN or inf values")
    return h0


def check_dtypes(system: DynamicalSystem, state: torch.Tensor, inputs: torch.Tensor | None, *, state_name: str = "h0") -> None:
    """State, inputs and the model's parameters share one dtype and one device (nothing is cast silently)."""
    if inputs is not None and inputs.dtype != state.dtype:
        raise TypeError(
            f"x is {inputs.dtype} but {state_name} is {state.dtype}; give both one dtype "
            f"(e.g. x.to({state.dtype}))"
        )
    if inputs is not None and inputs.device != state.device:
        raise ValueError(f"x is on {inputs.device} but {state_name} is on {state.device}; move both to one device")
    model_device = system.device
    if model_device is not None and model_device != state.device:
        raise ValueError(
            f"{state_name}/x are on {state.device} but the model is on {model_device}; move them with "
            f".to({str(model_device)!r}) (or the model to {state.device})"
        )
    model_dtype = system.dtype
    if model_dtype is not None and model_dtype != state.dtype:
        check_float("model", model_dtype)
        raise TypeError(
            f"{state_name}/x are {state.dtype} but the model's parameters are {model_dtype}; convert one of them "
            f"(model.to({state.dtype}), or x.to({model_dtype})), as nn.LSTM would refuse the mix too"
        )


def check_step_input(system: DynamicalSystem, x_t: object, batch: int) -> None:
    """One step's input (batch, input_dim) for a driven system; None for an autonomous one."""
    name = type(getattr(system, "module", None) or getattr(system, "model", None) or system).__name__
    if system.input_dim == 0:
        if x_t is not None:
            raise ValueError(f"x_t: {name} is autonomous (no input); leave x_t out")
        return
    if x_t is None:
        raise ValueError(f"x_t: {name} is driven by input; pass this step's input x_t, shape (batch, {system.input_dim})")
    if not isinstance(x_t, torch.Tensor):
        raise TypeError(f"x_t must be a tensor (batch, {system.input_dim}), got {type(x_t).__name__}")
    if x_t.ndim != 2 or x_t.shape[1] != system.input_dim:
        raise ValueError(f"x_t must have shape (batch, {system.input_dim}), got {tuple(x_t.shape)}")
    if x_t.shape[0] != batch:
        raise ValueError(f"x_t has batch size {x_t.shape[0]} but the state has batch size {batch}; they must match")
    check_float("x_t", x_t.dtype)
