"""One step of a stack of recurrent layers and its block lower-triangular Jacobian (Eq. 2.6)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

__all__ = ["LayerStep", "advance_stack", "check_finite_parameters"]

# (layer state, layer input, need input Jacobian) -> (new state, own Jacobian, input Jacobian)
LayerStep = Callable[[torch.Tensor, torch.Tensor | None, bool], tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]]


def check_finite_parameters(model: torch.nn.Module) -> None:
    """Refuse a network with NaN or inf weights before any work, naming the parameter."""
    for name, parameter in model.named_parameters():
        if not bool(torch.isfinite(parameter).all()):
            raise ValueError(f"model: parameter {name} contains NaN or inf values")


def advance_stack(
    state: torch.Tensor,
    x: torch.Tensor | None,
    steps: Sequence[LayerStep],
    state_sizes: Sequence[int],
    tangent_sizes: Sequence[int],
    hidden_sizes: Sequence[int],
    with_jacobian: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Advance every layer once, layer k taking layer k-1's new hidden vector as its input.

    Args:
        state: (batch, sum(state_sizes)), the layers' states concatenated, layer 1 first.
        x: (batch, input) external input of layer 1.
        steps: one function per layer; ``own`` is d(layer tangent)/d(its tangent at t-1), (batch,
            n_k, n_k), and ``wrt_input`` d(layer tangent)/d(its input), (batch, n_k, hidden_{k-1}).
        state_sizes, tangent_sizes, hidden_sizes: per layer; a layer's hidden vector is the first
            ``hidden`` entries of its state and of its tangent.

    Returns:
        (new state, Jacobian (batch, sum(tangent_sizes), sum(tangent_sizes)) or None). Block (k, j)
        for j < k is D_k @ (rows of h^{k-1}_t in block row k-1): the composition of Eq. (2.6).
    """
    batch = state.shape[0]
    total = sum(tangent_sizes)
    jac = state.new_zeros(batch, total, total) if with_jacobian else None
    new_states, layer_input, input_rows = [], x, None
    state_start = tangent_start = 0
    for k, step in enumerate(steps):
        layer_state = state[:, state_start : state_start + state_sizes[k]]
        new_state, own, wrt_input = step(layer_state, layer_input, with_jacobian and k > 0)
        new_states.append(new_state)
        if with_jacobian:
            block = slice(tangent_start, tangent_start + tangent_sizes[k])
            jac[:, block, block] = own
            if k > 0:
                jac[:, block, :tangent_start] = wrt_input @ input_rows
            end = tangent_start + tangent_sizes[k]
            input_rows = jac[:, tangent_start : tangent_start + hidden_sizes[k], :end]
        layer_input = new_state[:, : hidden_sizes[k]]
        state_start += state_sizes[k]
        tangent_start += tangent_sizes[k]
    return torch.cat(new_states, dim=-1), jac
