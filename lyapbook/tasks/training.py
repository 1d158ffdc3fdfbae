"""Training loops: backpropagation through time for the task models, FORCE for the reservoir."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from ..lyapunov import lyapunov_spectrum
from ..rnn import Rank1Reservoir
from .data import Split
from .models import SequenceModel

__all__ = ["EpochRecord", "epochs_at_fractions", "evaluate", "train", "spectrum_callback", "force_train"]


@dataclass
class EpochRecord:
    """One row of a training history; ``epoch`` 0 is before any training."""

    epoch: int
    train_loss: float | None
    val_loss: float
    val_accuracy: float | None
    lr: float | None = None  # learning rate used during this epoch
    extras: dict = field(default_factory=dict)
    seconds: float | None = None  # wall time of this epoch's training steps (validation and callbacks excluded)


def _loss_fn(model: SequenceModel) -> Callable:
    """loss(out, y, reduction): per prediction for cross-entropy (every step's class counts once), per entry for MSE."""
    if model.loss == "mse":
        return nn.functional.mse_loss

    def cross_entropy(out: torch.Tensor, y: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        return nn.functional.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1), reduction=reduction)

    return cross_entropy


@torch.no_grad()
def evaluate(model: SequenceModel, split: Split, batch_size: int = 256) -> tuple[float, float | None]:
    """(mean loss, accuracy or None) on ``split``, in evaluation mode.

    The loss is averaged like the training loss (per prediction, or per entry for MSE); accuracy is
    the fraction of correct predictions (every step's when the model predicts at every step).
    """
    was_training = model.training
    model.eval()
    loss_fn, total, correct, count = _loss_fn(model), 0.0, 0, 0
    device = next(model.parameters()).device
    for start in range(0, len(split), batch_size):
        x, y = split.x[start : start + batch_size].to(device), split.y[start : start + batch_size].to(device)
        out = model(x)
        total += loss_fn(out, y, reduction="sum").item()
        if model.loss == "cross_entropy":
            correct += (out.argmax(-1) == y).sum().item()
        count += y.numel()
    model.train(was_training)
    return total / count, (correct / count if model.loss == "cross_entropy" else None)


def epochs_at_fractions(epochs: int, fractions: tuple[float, ...]) -> tuple[int, ...]:
    """The epochs closest to ``fractions`` of training (0 = before training, 1 = the end)."""
    if any(not 0.0 <= f <= 1.0 for f in fractions):
        raise ValueError(f"fractions must lie in [0, 1], got {fractions}")
    return tuple(sorted({int(round(f * epochs)) for f in fractions}))


def train(model: SequenceModel, train_split: Split, val_split: Split, *, epochs: int, lr: float = 1e-3,
          batch_size: int = 64, optimizer: str = "adam", lr_decay: float = 1.0, decay_after: int = 0,
          clip: float | None = 5.0, seed: int = 0,
          callbacks: dict[int, Callable[[SequenceModel, int], dict]] | None = None,
          checkpoints: dict[int, str] | None = None) -> list[EpochRecord]:
    """Backpropagation through time over whole sequences; returns one record per epoch (0 = untrained).

    ``callbacks`` maps an epoch number to a function (model, epoch) -> dict, run after that
    epoch's validation (e.g. :func:`spectrum_callback`); its dict goes into ``EpochRecord.extras``.
    ``lr_decay`` multiplies the learning rate after every epoch past ``decay_after``.
    ``checkpoints`` maps epochs to file paths where the model's ``state_dict`` is saved.
    """
    if epochs < 0 or batch_size < 1 or not lr > 0:
        raise ValueError(f"need epochs >= 0, batch_size >= 1, lr > 0; got {epochs}, {batch_size}, {lr}")
    optimizers = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD, "rmsprop": torch.optim.RMSprop}
    if optimizer not in optimizers:
        raise ValueError(f"optimizer: unknown {optimizer!r}; choose one of {', '.join(optimizers)}")
    opt = optimizers[optimizer](model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=lr_decay)
    loss_fn, callbacks, checkpoints = _loss_fn(model), callbacks or {}, checkpoints or {}
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    history = []

    def record(epoch: int, train_loss: float | None, lr_used: float | None, seconds: float | None = None) -> None:
        val_loss, val_accuracy = evaluate(model, val_split)
        extras = callbacks[epoch](model, epoch) if epoch in callbacks else {}
        if epoch in checkpoints:
            torch.save(model.state_dict(), checkpoints[epoch])
        history.append(EpochRecord(epoch, train_loss, val_loss, val_accuracy, lr_used, extras, seconds))

    record(0, None, None)
    for epoch in range(1, epochs + 1):
        lr_used, started = opt.param_groups[0]["lr"], time.perf_counter()
        model.train()
        order = torch.randperm(len(train_split), generator=generator)
        total, count = 0.0, 0
        for start in range(0, len(order), batch_size):
            index = order[start : start + batch_size]
            x, y = train_split.x[index].to(device), train_split.y[index].to(device)
            opt.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            if clip is not None:
                nn.utils.clip_grad_norm_(model.parameters(), clip)
            opt.step()
            total, count = total + loss.item() * len(index), count + len(index)
        if epoch > decay_after:
            schedule.step()
        record(epoch, total / count, lr_used, time.perf_counter() - started)
    return history


def spectrum_callback(sequences: torch.Tensor, *, warmup: int = 0, k: int | None = None, t_on: int = 1) -> Callable:
    """A training callback that records the core's Lyapunov spectrum on held-out ``sequences``.

    ``sequences`` are task inputs (batch, time, ...) as the model takes them; the spectrum is
    computed on ``model.core`` in float64 with the model in evaluation mode. The extras hold
    ``spectrum`` (k,), ``spectrum_std`` (k,) and ``spectrum_seconds`` (its wall time).
    """

    def callback(model: SequenceModel, epoch: int) -> dict:
        was_training, dtype = model.training, next(model.core.parameters()).dtype
        model.eval()
        with torch.no_grad():
            inputs = model.core_inputs(sequences.to(next(model.parameters()).device))
        started = time.perf_counter()
        try:
            result = lyapunov_spectrum(model.core.double(), inputs.double(), warmup=warmup, k=k, t_on=t_on)
        finally:
            model.core.to(dtype)
            model.train(was_training)
        return {"spectrum": result.exponents.float().cpu(), "spectrum_std": result.std.float().cpu(),
                "spectrum_seconds": time.perf_counter() - started}

    return callback


@torch.no_grad()
def force_train(reservoir: Rank1Reservoir, target: torch.Tensor, *, val_points: int, alpha: float = 1.0,
                update_every: int = 2) -> dict[str, float | torch.Tensor]:
    """FORCE learning (recursive least squares on the fed-back readout, Sussillo and Abbott 2009).

    The autonomous reservoir runs along ``target`` (points,), a continuous signal: during the
    first ``len(target) - val_points`` steps ``w_out`` is updated every ``update_every`` steps
    so that z = w_out . tanh(x) follows it; over the last ``val_points`` it runs freely with
    ``w_out`` fixed. Returns the free run's mean absolute error ("val_mae"), its output, and the
    mean absolute error over the last ``val_points`` training steps ("train_mae").
    """
    if reservoir.input_size:
        raise ValueError("reservoir: FORCE here drives an autonomous reservoir (input_size=0)")
    if target.ndim != 1 or not 0 < val_points < len(target):
        raise ValueError(f"target must be 1-D and longer than val_points > 0; got {tuple(target.shape)} and {val_points}")
    dtype = reservoir.w_out.dtype
    target = target.to(dtype)
    train_target, val_target = target[:-val_points], target[-val_points:]
    state = reservoir.initial_state(1, target)[0]
    precision = torch.eye(reservoir.hidden_size, dtype=dtype) / alpha
    reservoir.w_out.zero_()
    errors = []
    for step, value in enumerate(train_target, start=1):
        state = reservoir.cell_step(state.unsqueeze(0), None)[0]
        rate = torch.tanh(state)
        error = reservoir.w_out @ rate - value
        errors.append(abs(float(error)))
        if step % update_every == 0:
            gain = precision @ rate
            c = 1.0 / (1.0 + rate @ gain)
            precision -= c * torch.outer(gain, gain)
            reservoir.w_out -= c * error * gain
    outputs = []
    for _ in val_target:
        state = reservoir.cell_step(state.unsqueeze(0), None)[0]
        outputs.append(reservoir.w_out @ torch.tanh(state))
    outputs = torch.stack(outputs)
    return {
        "val_mae": float((outputs - val_target).abs().mean()),
        "output": outputs,
        "train_mae": sum(errors[-val_points:]) / min(len(errors), val_points),
    }
