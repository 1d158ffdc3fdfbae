"""Optimisers over stacked parameters: many small models, each with a leading model dimension.

Used wherever a group of models of one shape trains as one batched model (zoo ensembles of
:mod:`lyapbook.tasks.ensemble`, groups of autoencoders of :mod:`lyapbook.aelle`). Each model keeps
its own state and learning rate, and its state changes only while it is active; the update rules
are PyTorch's (same defaults), element by element, so a model updated in a group follows the
trajectory it follows alone.
"""

from __future__ import annotations

import torch

__all__ = ["OPTIMIZERS", "BatchedOptimizer"]

OPTIMIZERS = ("adam", "sgd", "rmsprop", "adagrad")


class BatchedOptimizer:
    """Adam, SGD, RMSprop or Adagrad over stacked parameters ``params`` {name: (E, ...)} with one
    learning rate per model, ``lr`` (E,); ``step(active)`` updates the models flagged in ``active``
    (E,) only, leaving the parameters and optimiser state of the others untouched."""

    def __init__(self, name: str, params: dict[str, torch.Tensor], lr: torch.Tensor):
        if name not in OPTIMIZERS:
            raise ValueError(f"optimizer: unknown {name!r}; choose one of {', '.join(OPTIMIZERS)}")
        self.name, self.params, self.lr = name, params, lr
        self.steps = torch.zeros_like(lr)
        self.state = {key: [torch.zeros_like(p) for _ in range(2 if name == "adam" else 1)] for key, p in params.items()}

    @torch.no_grad()
    def step(self, active: torch.Tensor) -> None:
        self.steps += active.to(self.steps.dtype)
        if self.name == "adam" and bool(active.all()) and all(p.dtype == self.lr.dtype for p in self.params.values()):
            self._adam_in_place()
            return
        for key, param in self.params.items():
            grad = param.grad if param.grad is not None else torch.zeros_like(param)
            shape = (-1,) + (1,) * (param.ndim - 1)
            mask, lr = active.view(shape), self.lr.view(shape)
            state = self.state[key]
            if self.name == "sgd":
                new = param - lr * grad
            elif self.name == "adam":  # betas (0.9, 0.999), eps 1e-8, as torch.optim.Adam
                first = state[0].lerp(grad, 0.1)
                second = state[1] * 0.999 + 0.001 * grad * grad
                steps = self.steps.view(shape)
                denom = (second.sqrt() / torch.sqrt(1.0 - 0.999**steps)) + 1e-8
                new = param - (lr / (1.0 - 0.9**steps)) * (first / denom)
                state[0].copy_(torch.where(mask, first, state[0]))
                state[1].copy_(torch.where(mask, second, state[1]))
            elif self.name == "rmsprop":  # alpha 0.99, eps 1e-8, as torch.optim.RMSprop
                square = state[0] * 0.99 + 0.01 * grad * grad
                new = param - lr * (grad / (square.sqrt() + 1e-8))
                state[0].copy_(torch.where(mask, square, state[0]))
            else:  # adagrad: eps 1e-10, no decay, as torch.optim.Adagrad
                total = state[0] + grad * grad
                new = param - lr * (grad / (total.sqrt() + 1e-10))
                state[0].copy_(torch.where(mask, total, state[0]))
            param.copy_(torch.where(mask, new, param))

    def _adam_in_place(self) -> None:
        """The Adam step of every model, in place: the same arithmetic, in the same order, as the masked
        step below (so the same rounding, given ``lr`` in the parameters' dtype), in half the passes
        over memory and without its copies."""
        for key, param in self.params.items():
            grad = param.grad if param.grad is not None else torch.zeros_like(param)
            first, second = self.state[key]
            shape = (-1,) + (1,) * (param.ndim - 1)
            steps = self.steps.view(shape)
            first.lerp_(grad, 0.1)
            second.mul_(0.999).add_(torch.mul(grad, 0.001).mul_(grad))
            denom = second.sqrt().div_(torch.sqrt(1.0 - 0.999**steps)).add_(1e-8)
            param.sub_(torch.div(first, denom, out=denom).mul_(self.lr.view(shape) / (1.0 - 0.9**steps)))
