"""PredNet: a one-hidden-layer regressor from a spectrum (or eigenvalues) to the loss (Figs 3.1, 3.4).

Dissertation ch. 3, L578–589 and L622–636: a fully connected network with 50 hidden units (10 for
Fig 3.4) predicts a network's validation loss from its spectrum. The original notebook's choices,
kept here: a bias-free first layer, LeakyReLU, one linear output, MSE, Adam (lr 1e-4), full-batch
steps (25 000 for Fig 3.1). Inputs and targets are used as given (no scaling).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..optim import BatchedOptimizer
from .model import _check_pair, cpu_threads

__all__ = ["PredNet", "PredNetFit", "fit_prednet", "fit_prednet_group"]


class PredNet(nn.Module):
    """Linear(d, hidden, bias=False) → LeakyReLU → Linear(hidden, 1); input (n, d), output (n,)."""

    def __init__(self, inputs: int, hidden: int = 50):
        super().__init__()
        for name, value in (("inputs", inputs), ("hidden", hidden)):
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name}: must be a positive integer, got {value!r}")
        self.net = nn.Sequential(nn.Linear(inputs, hidden, bias=False), nn.LeakyReLU(), nn.Linear(hidden, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)


@dataclass
class PredNetFit:
    """A fitted PredNet and its curves: ``train_loss`` (steps,) full-batch MSE before each step,
    ``val_loss`` (steps,) validation MSE after each step (None without a validation set)."""

    model: PredNet
    train_loss: np.ndarray
    val_loss: np.ndarray | None
    seconds: float

    def predict(self, x) -> np.ndarray:
        """Predicted losses (n,) for inputs (n, d), float64."""
        reference = next(self.model.parameters())
        inputs = torch.as_tensor(np.asarray(x, dtype=np.float64), device=reference.device, dtype=reference.dtype)
        with torch.no_grad():
            return self.model(inputs).cpu().to(torch.float64).numpy()


def _stack(models: list[PredNet]) -> dict[str, torch.Tensor]:
    """Stacked weights of E PredNets: W1 (E, d, H), W2 (E, H, 1), b2 (E, 1, 1)."""
    params = {"W1": torch.stack([m.net[0].weight.detach().t() for m in models]).contiguous(),
              "W2": torch.stack([m.net[2].weight.detach().t() for m in models]).contiguous(),
              "b2": torch.stack([m.net[2].bias.detach().view(1, 1) for m in models]).contiguous()}
    return params


def _forward(params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """(E, n) predictions of E stacked PredNets for inputs (E, n, d)."""
    hidden = nn.functional.leaky_relu(torch.bmm(x, params["W1"]))
    return torch.baddbmm(params["b2"], hidden, params["W2"]).squeeze(-1)


def _masked_mse(predicted: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    return (((predicted - target) ** 2) * valid).sum(1) / valid.sum(1)


def fit_prednet_group(train: Sequence[tuple], val: Sequence[tuple] | None = None, *, seeds: Sequence[int],
                      hidden: int = 50, steps: int = 25_000, lr: float = 1e-4, device: str | torch.device = "cpu",
                      dtype: torch.dtype = torch.float32, progress: bool = True,
                      num_threads: int | None = 1) -> list[PredNetFit]:
    """E PredNets trained at once, PredNet k on ``train[k]`` = (x (n_k, d), y (n_k,)), validated on
    ``val[k]``, initialised from ``seeds[k]``; each follows :func:`fit_prednet` exactly (networks
    share no weight, and Adam acts element by element). Inputs of every member have the same
    width d; the numbers of rows may differ. Returns one :class:`PredNetFit` per member.
    """
    if not train or len(seeds) != len(train):
        raise ValueError(f"seeds: one per training set, got {len(seeds)} seeds for {len(train)} sets")
    data = []
    for k, pair in enumerate(train):
        data.append(_check_pair(*pair, (f"train[{k}] x", f"train[{k}] y"), data[0][0].shape[1] if data else None))
    checked_val = None
    if val is not None:
        if len(val) != len(train):
            raise ValueError(f"val: one (x, y) pair per training set, got {len(val)} for {len(train)}")
        checked_val = [_check_pair(*pair, (f"val[{k}] x", f"val[{k}] y"), data[0][0].shape[1])
                       for k, pair in enumerate(val)]
    if not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"steps: must be a positive integer, got {steps!r}")
    device = torch.device(device)
    start = time.perf_counter()
    models = []
    with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):
        for seed in seeds:
            torch.manual_seed(int(seed))
            models.append(PredNet(data[0][0].shape[1], hidden).to(dtype=dtype))

    def padded(pairs):
        x = torch.nn.utils.rnn.pad_sequence([torch.as_tensor(a) for a, _ in pairs], batch_first=True)
        y = torch.nn.utils.rnn.pad_sequence([torch.as_tensor(b) for _, b in pairs], batch_first=True)
        valid = (torch.arange(x.shape[1]) < torch.tensor([len(b) for _, b in pairs])[:, None])
        return (t.to(device=device, dtype=dtype) for t in (x, y, valid))

    count = len(data)
    with cpu_threads(num_threads):
        params = {k: v.to(device).requires_grad_(True) for k, v in _stack(models).items()}
        x, y, valid = padded(data)
        if checked_val is not None:
            xv, yv, valid_v = padded(checked_val)
        optimizer = BatchedOptimizer("adam", params, torch.full((count,), lr, dtype=dtype, device=device))
        active = torch.ones(count, dtype=torch.bool, device=device)
        train_loss = torch.empty(steps, count, dtype=dtype, device=device)
        val_loss = torch.empty(steps, count, dtype=dtype, device=device) if checked_val is not None else None
        iterator = range(steps)
        if progress:
            from tqdm.auto import tqdm

            iterator = tqdm(iterator, desc=f"PredNet x{count}", unit="step", mininterval=1.0)
        for step in iterator:
            loss = _masked_mse(_forward(params, x), y, valid)
            for p in params.values():
                p.grad = None
            loss.sum().backward()
            optimizer.step(active)
            train_loss[step] = loss.detach()
            if val_loss is not None:
                with torch.no_grad():
                    val_loss[step] = _masked_mse(_forward(params, xv), yv, valid_v)
    seconds = time.perf_counter() - start
    fits = []
    for k, model in enumerate(models):
        with torch.no_grad():
            model.net[0].weight.copy_(params["W1"][k].t())
            model.net[2].weight.copy_(params["W2"][k].t())
            model.net[2].bias.copy_(params["b2"][k].view(1))
        fits.append(PredNetFit(model=model.to(device).eval(),
                               train_loss=train_loss[:, k].to(torch.float64).cpu().numpy(),
                               val_loss=None if val_loss is None else val_loss[:, k].to(torch.float64).cpu().numpy(),
                               seconds=seconds))
    return fits


def fit_prednet(x, y, x_val=None, y_val=None, *, hidden: int = 50, steps: int = 25_000, lr: float = 1e-4,
                seed: int = 0, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                progress: bool = True, num_threads: int | None = 1) -> PredNetFit:
    """Fit a :class:`PredNet` on inputs x (n, d) and losses y (n,) by ``steps`` full-batch Adam steps.

    The initialisation follows ``seed`` (the global torch random state is left untouched); the
    validation MSE is recorded after every step, for the learning curves of Fig 3.4. ``num_threads``
    sets the torch CPU threads for the fit only (default 1, the fastest for a model this small; None
    leaves torch's setting alone). Several PredNets (folds, feature sets of one width) train faster
    together: :func:`fit_prednet_group`, of which this is a group of one.
    """
    has_val = x_val is not None or y_val is not None
    if has_val and (x_val is None or y_val is None):
        raise ValueError("x_val and y_val: give both or neither")
    return fit_prednet_group([(x, y)], [(x_val, y_val)] if has_val else None, seeds=[seed], hidden=hidden,
                             steps=steps, lr=lr, device=device, dtype=dtype, progress=progress,
                             num_threads=num_threads)[0]
