"""A module's weights as its ``forward`` uses them, whatever reparametrises them.

``module.named_parameters()`` lists the raw tensors, which are not always what the module
computes with: :mod:`torch.nn.utils.parametrize` (``orthogonal``, and the parametrization-based
``spectral_norm`` and ``weight_norm``) moves ``weight`` to ``parametrizations.weight.original``
and computes ``module.weight`` from it; the older hook-based tools (:mod:`torch.nn.utils.prune`,
``torch.nn.utils.weight_norm``, ``torch.nn.utils.spectral_norm``) keep ``weight_orig`` (or
``weight_g`` and ``weight_v``) as parameters and recompute ``module.weight`` in a forward
pre-hook. :func:`effective_tensors` returns each tensor under the plain name ``forward`` reads
(``weight_hh_l0``, ``W.weight``) with the value ``forward`` would use; a forward pre-hook it does
not know, which might change the weights, is refused with a message instead of being ignored.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize, prune

__all__ = ["effective_tensors", "raw_version"]


def _hook_tensor(module: nn.Module, hook: object) -> tuple[str, torch.Tensor, tuple[str, ...]] | None:
    """(name, value, raw names it replaces) for a known reparametrising pre-hook, else None."""
    from torch.nn.utils.spectral_norm import SpectralNorm
    from torch.nn.utils.weight_norm import WeightNorm

    if isinstance(hook, prune.BasePruningMethod):
        name = hook._tensor_name
        return name, hook.apply_mask(module), (f"{name}_orig",)
    if isinstance(hook, WeightNorm):
        return hook.name, hook.compute_weight(module), (f"{hook.name}_g", f"{hook.name}_v")
    if isinstance(hook, SpectralNorm):  # the power iteration's current vectors, as in eval mode
        return hook.name, hook.compute_weight(module, do_power_iteration=False), (f"{hook.name}_orig",)
    return None


def effective_tensors(module: nn.Module, *, buffers: bool = False, detach: bool = True) -> dict[str, torch.Tensor]:
    """{dotted name: tensor} of every parameter (and, with ``buffers``, buffer) as ``forward`` uses it.

    Parametrized tensors are evaluated (``getattr``); tensors behind a pruning, weight-norm or
    spectral-norm hook are recomputed by that hook; ``detach`` drops the autograd graph (pass
    False to differentiate through the parametrization to its original parameters).

    Raises:
        ValueError: the module (or a submodule) has a forward pre-hook that is not one of those,
            naming it and the fix.
    """
    tensors: dict[str, torch.Tensor] = {}
    with torch.set_grad_enabled(torch.is_grad_enabled() and not detach):
        for prefix, sub in module.named_modules():
            if isinstance(sub, parametrize.ParametrizationList) or ".parametrizations." in f".{prefix}.":
                continue  # the originals behind a parametrization, reached through their owner
            dot = f"{prefix}." if prefix else ""
            own = {name: value for name, value in sub._parameters.items() if value is not None}
            if buffers:
                own.update({name: value for name, value in sub._buffers.items() if value is not None})
            if parametrize.is_parametrized(sub):
                own.update({name: getattr(sub, name) for name in sub.parametrizations})
            for hook in sub._forward_pre_hooks.values():
                known = _hook_tensor(sub, hook)
                if known is None:
                    where = f"model.{prefix}" if prefix else "the model"
                    raise ValueError(
                        f"model: {where} has a forward pre-hook ({type(hook).__name__}) that lyapbook cannot read; it may "
                        "change the weights forward uses. Remove it (handle.remove()), or pass a copy of the module "
                        "without it; pruning, weight_norm and spectral_norm hooks and torch.nn.utils.parametrize are read"
                    )
                name, value, replaced = known
                for raw in replaced:
                    own.pop(raw, None)
                own[name] = value
            for name, value in own.items():
                tensors[dot + name] = value.detach() if detach else value
    return tensors


def raw_version(module: nn.Module) -> tuple:
    """A key that changes when any raw parameter or buffer of ``module`` is replaced or changed in place."""
    return tuple((name, t.data_ptr(), t._version) for name, t in (*module.named_parameters(), *module.named_buffers()))
