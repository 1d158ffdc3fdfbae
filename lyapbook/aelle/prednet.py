"""PredNet: a one-hidden-layer regressor from a spectrum (or eigenvalues) to the loss (Figs 3.1, 3.4).

Dissertation ch. 3, L578–589 and L622–636: a fully connected network with 50 hidden units (10 for
Fig 3.4) predicts a network's validation loss from its spectrum. The original notebook's choices,
kept here: a bias-free first layer, LeakyReLU, one linear output, MSE, Adam (lr 1e-4), full-batch
steps (25 000 for Fig 3.1). Inputs and targets are used as given (no scaling).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .model import _check_pair, cpu_threads

__all__ = ["PredNet", "PredNetFit", "fit_prednet"]


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


def fit_prednet(x, y, x_val=None, y_val=None, *, hidden: int = 50, steps: int = 25_000, lr: float = 1e-4,
                seed: int = 0, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                progress: bool = True, num_threads: int | None = 1) -> PredNetFit:
    """Fit a :class:`PredNet` on inputs x (n, d) and losses y (n,) by ``steps`` full-batch Adam steps.

    The initialisation follows ``seed`` (the global torch random state is left untouched); the
    validation MSE is recorded after every step, for the learning curves of Fig 3.4. ``num_threads``
    sets the torch CPU threads for the fit only (default 1, the fastest for a model this small; None
    leaves torch's setting alone).
    """
    x_np, y_np = _check_pair(x, y, ("x", "y"), None)
    has_val = x_val is not None or y_val is not None
    if has_val:
        if x_val is None or y_val is None:
            raise ValueError("x_val and y_val: give both or neither")
        xv_np, yv_np = _check_pair(x_val, y_val, ("x_val", "y_val"), x_np.shape[1])
    if not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"steps: must be a positive integer, got {steps!r}")
    device = torch.device(device)
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        model = PredNet(x_np.shape[1], hidden).to(device=device, dtype=dtype)
    as_t = lambda a: torch.as_tensor(a, device=device, dtype=dtype)  # noqa: E731
    xt, yt = as_t(x_np), as_t(y_np)
    if has_val:
        xv, yv = as_t(xv_np), as_t(yv_np)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    train_loss = torch.empty(steps, dtype=torch.float64)
    val_loss = torch.empty(steps, dtype=torch.float64) if has_val else None
    iterator = range(steps)
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(iterator, desc="PredNet", unit="step", mininterval=1.0)
    with cpu_threads(num_threads):
        for step in iterator:
            loss = nn.functional.mse_loss(model(xt), yt)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            train_loss[step] = loss.detach()
            if has_val:
                with torch.no_grad():
                    val_loss[step] = nn.functional.mse_loss(model(xv), yv)
    return PredNetFit(model=model.eval(), train_loss=train_loss.numpy(),
                      val_loss=None if val_loss is None else val_loss.numpy(), seconds=time.perf_counter() - start)
