"""One step of a stack of recurrent layers, linearised: its block lower-triangular Jacobian (Eq. 2.6),
that Jacobian applied to tangent vectors without forming it, and the Jacobian with respect to the input.

Each layer's step returns its new state and a :class:`LayerLinearization`: the layer's own
Jacobian A_k = d(layer tangent)/d(its tangent at t-1) and input Jacobian D_k = d(layer
tangent)/d(its input), which can be formed as matrices or applied to vectors. The stack's
Jacobian has blocks (k, k) = A_k and (k, j < k) = D_k (rows of h^{k-1} in block row k-1).

Tangent vectors travel as *rows*: a frame of K vectors is (batch, K, n). Applying a layer to
them is a matmul of the rows with the (stacked) weights, which PyTorch runs as one GEMM over
all batch * K rows, followed by elementwise gate factors.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["LayerLinearization", "check_finite_parameters", "stack_apply", "stack_input_jacobian", "stack_jacobian"]


class LayerLinearization:
    """The linear part of one layer's step at one state and input.

    Attributes:
        size: the layer's tangent dimension n_k.
        hidden: its first ``hidden`` tangent coordinates are the layer's output h (the next layer's input).
    """

    size: int
    hidden: int

    def own(self) -> torch.Tensor:
        """A_k, (batch, n_k, n_k)."""
        raise NotImplementedError

    def wrt_input(self) -> torch.Tensor:
        """D_k, (batch, n_k, input size of the layer)."""
        raise NotImplementedError

    def act(self, v: torch.Tensor | None, w: torch.Tensor | None) -> torch.Tensor:
        """Rows of A_k v + D_k w without forming A_k or D_k: v (batch, K, n_k), w (batch, K, input) -> (batch, K, n_k).

        Either may be ``None`` (a zero tangent), not both.
        """
        raise NotImplementedError


def check_finite_parameters(model: torch.nn.Module) -> None:
    """Refuse a network with NaN or inf weights (as its forward uses them) before any work, naming the parameter."""
    from .parameters import effective_tensors

    for name, parameter in effective_tensors(model).items():
        if not bool(torch.isfinite(parameter).all()):
            raise ValueError(f"model: parameter {name} contains NaN or inf values")


def stack_jacobian(layers: Sequence[LayerLinearization]) -> torch.Tensor:
    """The stack's Jacobian (batch, N, N), N = sum of the layers' tangent sizes.

    Block (k, j) for j < k is D_k @ (rows of h^{k-1} in block row k-1): the composition of Eq. (2.6).
    """
    if len(layers) == 1:
        return layers[0].own()
    total = sum(layer.size for layer in layers)
    block_rows, start, input_rows = [], 0, None
    for k, layer in enumerate(layers):
        own = layer.own()
        right = own.new_zeros(own.shape[0], layer.size, total - start - layer.size)
        blocks = [own, right] if k == 0 else [layer.wrt_input() @ input_rows, own, right]
        block_rows.append(torch.cat(blocks, dim=-1))
        start += layer.size
        input_rows = block_rows[-1][:, : layer.hidden, :start]
    # Assembled by concatenation, not written into a preallocated matrix, so that autograd can
    # differentiate it (differentiable spectra of stacked networks).
    return torch.cat(block_rows, dim=1)


def stack_apply(layers: Sequence[LayerLinearization], rows: torch.Tensor) -> torch.Tensor:
    """Rows of J V for tangent rows V (batch, K, N), layer by layer, without forming J.

    Layer k's new tangent is A_k v_k + D_k (new tangent of h^{k-1}): the same recursion as the
    states themselves, one layer feeding the next.
    """
    out, start, below = [], 0, None
    for layer in layers:
        new = layer.act(rows[..., start : start + layer.size], below)
        out.append(new)
        below = new[..., : layer.hidden]
        start += layer.size
    return out[0] if len(out) == 1 else torch.cat(out, dim=-1)


def stack_input_jacobian(layers: Sequence[LayerLinearization]) -> torch.Tensor:
    """d(state tangent)/d(x_t) for every layer, (batch, N, input size of layer 1).

    Layer 1's block is D_1; layer k's is D_k applied to the h-rows of layer k-1's block.
    """
    blocks = [layers[0].wrt_input()]
    for k in range(1, len(layers)):
        below = blocks[-1][:, : layers[k - 1].hidden].mT  # rows: one per input coordinate
        blocks.append(layers[k].act(None, below).mT)
    return blocks[0] if len(blocks) == 1 else torch.cat(blocks, dim=1)
