"""Training loops: backpropagation through time for the task models, FORCE for the reservoir."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from ..lyapunov import lyapunov_spectrum
from ..optim import OPTIMIZERS  # what train and the ensemble trainer offer, PyTorch's defaults
from ..rnn import Rank1Reservoir
from .data import Split
from .models import SequenceModel

__all__ = ["OPTIMIZERS", "EarlyStopping", "EpochRecord", "epochs_at_fractions", "evaluate", "train", "spectrum_callback",
           "force_train", "force_train_ensemble", "make_optimizer", "train_step"]


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


class EarlyStopping:
    """Patience on the validation loss, for one network or a vector of networks.

    After each epoch's validation, :meth:`update` compares each network's loss with its best so
    far (epoch 0, before training, counts): an improvement by more than ``min_delta`` makes it the
    new best; ``patience`` epochs in a row without one stop the network. Non-finite losses never
    improve. ``patience=None`` never stops (the epoch cap alone ends training).
    """

    def __init__(self, networks: int, patience: int | None | torch.Tensor, min_delta: float = 0.0):
        if isinstance(patience, torch.Tensor):
            self.patience = patience.to(torch.float64)
        else:
            if patience is not None and (isinstance(patience, bool) or not isinstance(patience, int) or patience < 1):
                raise ValueError(f"patience must be a positive int (epochs without improvement) or None, got {patience!r}")
            self.patience = torch.full((networks,), float("inf") if patience is None else float(patience), dtype=torch.float64)
        if min_delta < 0:
            raise ValueError(f"min_delta must be >= 0, got {min_delta}")
        self.min_delta = float(min_delta)
        self.best = torch.full((networks,), float("inf"), dtype=torch.float64)
        self.best_epoch = torch.zeros(networks, dtype=torch.int64)
        self.waited = torch.zeros(networks, dtype=torch.int64)

    def update(self, epoch: int, val_loss: torch.Tensor, active: torch.Tensor | None = None) -> torch.Tensor:
        """Record ``val_loss`` (networks,) of the ``active`` networks; return the mask of those that stop now."""
        val_loss = torch.as_tensor(val_loss, dtype=torch.float64).reshape(-1)
        active = torch.ones_like(val_loss, dtype=torch.bool) if active is None else active.cpu()
        better = active & torch.isfinite(val_loss) & (val_loss < self.best - self.min_delta)
        self.best = torch.where(better, val_loss, self.best)
        self.best_epoch = torch.where(better, torch.full_like(self.best_epoch, epoch), self.best_epoch)
        self.waited = torch.where(better, torch.zeros_like(self.waited), self.waited + active.long())
        return active & (self.waited >= self.patience)


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
    like = next(model.parameters())
    for start in range(0, len(split), batch_size):
        x = _as_model_dtype(split.x[start : start + batch_size], like).to(like.device)
        y = _as_model_dtype(split.y[start : start + batch_size], like).to(like.device)
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


def make_optimizer(name: str, parameters, lr: float) -> torch.optim.Optimizer:
    """One of :data:`OPTIMIZERS` with PyTorch's defaults and learning rate ``lr``."""
    optimizers = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD, "rmsprop": torch.optim.RMSprop, "adagrad": torch.optim.Adagrad}
    if name not in optimizers:
        raise ValueError(f"optimizer: unknown {name!r}; choose one of {', '.join(OPTIMIZERS)}")
    return optimizers[name](parameters, lr=lr)


def train_step(model: SequenceModel, opt: torch.optim.Optimizer, loss_fn: Callable, x: torch.Tensor, y: torch.Tensor,
               clip: float | None) -> float:
    """One optimiser step on the batch (x, y) with gradient-norm clipping; returns the batch's mean loss."""
    opt.zero_grad()
    loss = loss_fn(model(x), y)
    loss.backward()
    if clip is not None:
        nn.utils.clip_grad_norm_(model.parameters(), clip)
    opt.step()
    return loss.item()


def _as_model_dtype(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Float inputs in the model's precision (token ids stay integers)."""
    return x.to(like.dtype) if x.is_floating_point() else x


def train(model: SequenceModel, train_split: Split, val_split: Split, *, epochs: int, lr: float = 1e-3,
          batch_size: int = 64, optimizer: str = "adam", lr_decay: float = 1.0, decay_after: int = 0,
          clip: float | None = 5.0, seed: int = 0, patience: int | None = None, min_delta: float = 0.0,
          callbacks: dict[int, Callable[[SequenceModel, int], dict]] | None = None,
          checkpoints: dict[int, str] | None = None) -> list[EpochRecord]:
    """Backpropagation through time over whole sequences; returns one record per epoch (0 = untrained).

    ``epochs`` is the cap; with ``patience`` (see :class:`EarlyStopping`) training ends earlier,
    after ``patience`` epochs without a lower validation loss, and the history ends there.
    ``callbacks`` maps an epoch number to a function (model, epoch) -> dict, run after that
    epoch's validation (e.g. :func:`spectrum_callback`); its dict goes into ``EpochRecord.extras``.
    ``lr_decay`` multiplies the learning rate after every epoch past ``decay_after``.
    ``checkpoints`` maps epochs to file paths where the model's ``state_dict`` is saved.
    """
    if epochs < 0 or batch_size < 1 or not lr > 0:
        raise ValueError(f"need epochs >= 0, batch_size >= 1, lr > 0; got {epochs}, {batch_size}, {lr}")
    stopping = EarlyStopping(1, patience, min_delta)
    opt = make_optimizer(optimizer, model.parameters(), lr)
    schedule = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=lr_decay)
    loss_fn, callbacks, checkpoints = _loss_fn(model), callbacks or {}, checkpoints or {}
    like = next(model.parameters())
    generator = torch.Generator().manual_seed(seed)
    history = []

    def record(epoch: int, train_loss: float | None, lr_used: float | None, seconds: float | None = None) -> bool:
        val_loss, val_accuracy = evaluate(model, val_split)
        extras = callbacks[epoch](model, epoch) if epoch in callbacks else {}
        if epoch in checkpoints:
            torch.save(model.state_dict(), checkpoints[epoch])
        history.append(EpochRecord(epoch, train_loss, val_loss, val_accuracy, lr_used, extras, seconds))
        return bool(stopping.update(epoch, torch.tensor([val_loss]))[0])

    record(0, None, None)
    for epoch in range(1, epochs + 1):
        lr_used, started = opt.param_groups[0]["lr"], time.perf_counter()
        model.train()
        order = torch.randperm(len(train_split), generator=generator)
        total, count = 0.0, 0
        for start in range(0, len(order), batch_size):
            index = order[start : start + batch_size]
            x = _as_model_dtype(train_split.x[index], like).to(like.device)
            y = _as_model_dtype(train_split.y[index], like).to(like.device)
            loss = train_step(model, opt, loss_fn, x, y, clip)
            total, count = total + loss * len(index), count + len(index)
        if epoch > decay_after:
            schedule.step()
        if record(epoch, total / count, lr_used, time.perf_counter() - started):
            break
    return history


def spectrum_callback(sequences: torch.Tensor, *, warmup: int = 0, k: int | None = None, t_on: int = 1,
                      state: str = "hidden") -> Callable:
    """A training callback that records the core's Lyapunov spectrum on held-out ``sequences``.

    ``sequences`` are task inputs (batch, time, ...) as the model takes them; the spectrum is
    computed on ``model.core`` in float64 with the model in evaluation mode, over the hidden
    vector alone by default (``state="hidden"``, the dissertation's convention). The extras hold
    ``spectrum`` (k,), ``spectrum_std`` (k,) and ``spectrum_seconds`` (its wall time).
    """

    def callback(model: SequenceModel, epoch: int) -> dict:
        was_training, dtype = model.training, next(model.core.parameters()).dtype
        model.eval()
        with torch.no_grad():
            inputs = model.core_inputs(sequences.to(next(model.parameters()).device))
        started = time.perf_counter()
        try:
            result = lyapunov_spectrum(model.core.double(), inputs.double(), warmup=warmup, k=k, t_on=t_on,
                                       state=state)
        finally:
            model.core.to(dtype)
            model.train(was_training)
        return {"spectrum": result.exponents.float().cpu(), "spectrum_std": result.std.float().cpu(),
                "spectrum_seconds": time.perf_counter() - started}

    return callback


@torch.no_grad()
def force_train(reservoir: Rank1Reservoir, target: torch.Tensor, *, val_points: int, alpha: float = 1.0,
                update_every: int = 2, state0: torch.Tensor | None = None) -> dict[str, float | torch.Tensor]:
    """FORCE learning (recursive least squares on the fed-back readout, Sussillo and Abbott 2009).

    The autonomous reservoir runs along ``target`` (points,), a continuous signal: during the
    first ``len(target) - val_points`` steps ``w_out`` is updated every ``update_every`` steps
    so that z = w_out . tanh(x) follows it; over the last ``val_points`` it runs freely with
    ``w_out`` fixed. ``state0`` (hidden,) is the initial currents (default: the reservoir's
    ``initial_state``). Returns the free run's mean absolute error ("val_mae"), its output, and
    the mean absolute error over the last ``val_points`` training steps ("train_mae").
    One network of :func:`force_train_ensemble`.
    """
    if target.ndim != 1:
        raise ValueError(f"target must be 1-D (points,), got shape {tuple(target.shape)}")
    result = force_train_ensemble([reservoir], target.unsqueeze(0), val_points=val_points, alpha=alpha,
                                  update_every=update_every, states0=None if state0 is None else state0.unsqueeze(0))
    return {"val_mae": float(result["val_mae"][0]), "output": result["output"][0], "train_mae": float(result["train_mae"][0])}


@torch.no_grad()
def force_train_ensemble(reservoirs: list[Rank1Reservoir], targets: torch.Tensor, *, val_points: int, alpha: float = 1.0,
                         update_every: int = 2, states0: torch.Tensor | None = None,
                         keep_states: int = 0) -> dict[str, torch.Tensor]:
    """FORCE learning of E reservoirs of one size at once (batched matrix products over networks).

    Each reservoir runs x <- x + (dt/tau)(-x + g J r + w_f z), r = tanh(x), z = w_out . r, along its
    own target (row of ``targets`` (E, points)); RLS updates of its own ``w_out`` and precision
    matrix P (E, n, n), P_0 = I / alpha, every ``update_every`` steps of the first
    ``points - val_points``; then a free run of ``val_points`` steps. Gains, time constants and
    targets may differ between networks; the trained ``w_out`` is written back into each module.

    Returns (E,) "val_mae" (free run), "train_mae" (last ``val_points`` training steps), "output"
    (E, val_points), and with ``keep_states`` > 0 "states" (E, keep_states, n): the currents at
    ``keep_states`` evenly spaced steps of the free run (starting points for spectra).
    """
    if not reservoirs:
        raise ValueError("reservoirs: give at least one")
    first = reservoirs[0]
    for k, reservoir in enumerate(reservoirs):
        if not isinstance(reservoir, Rank1Reservoir):
            raise TypeError(f"reservoirs[{k}] must be a Rank1Reservoir, got {type(reservoir).__name__}")
        if reservoir.input_size:
            raise ValueError(f"reservoirs[{k}]: FORCE here drives an autonomous reservoir (input_size=0)")
        if reservoir.hidden_size != first.hidden_size or reservoir.w_out.dtype != first.w_out.dtype:
            raise ValueError(f"reservoirs[{k}] has hidden size {reservoir.hidden_size} ({reservoir.w_out.dtype}); "
                             f"reservoirs[0] has {first.hidden_size} ({first.w_out.dtype}): train groups of one size and dtype")
    count, n, dtype, device = len(reservoirs), first.hidden_size, first.w_out.dtype, first.w_out.device
    if targets.ndim != 2 or targets.shape[0] != count or not 0 < val_points < targets.shape[1]:
        raise ValueError(f"targets must be (networks, points) = ({count}, points) with points > val_points > 0; "
                         f"got {tuple(targets.shape)} and val_points {val_points}")
    if not 0 <= keep_states <= val_points:
        raise ValueError(f"keep_states must be in [0, val_points = {val_points}], got {keep_states}")
    targets = targets.to(dtype=dtype, device=device)
    # (g J)^T, so that the recurrent drive is the row-vector product r^T (g J)^T: on a CPU a batched
    # row-vector product is several times faster than bmm with a column vector
    gain_t = torch.stack([(r.g * r.J).t() for r in reservoirs]).to(dtype).contiguous()  # (E, n, n)
    feedback = torch.stack([r.w_f for r in reservoirs]).to(dtype)  # (E, n)
    leak = torch.tensor([r.dt / r.tau for r in reservoirs], dtype=dtype, device=device).unsqueeze(-1)  # (E, 1)
    w_out = torch.zeros(count, n, dtype=dtype, device=device)
    if states0 is None:
        state = torch.cat([r.initial_state(1, w_out) for r in reservoirs])
    else:
        if states0.shape != (count, n):
            raise ValueError(f"states0 must have shape (networks, hidden) = ({count}, {n}), got {tuple(states0.shape)}")
        state = states0.to(dtype=dtype, device=device).clone()
    precision = torch.eye(n, dtype=dtype, device=device).repeat(count, 1, 1) / alpha

    def advance(state: torch.Tensor, rate: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One Euler step from (x, tanh x): the new state and its rate."""
        recurrent = torch.bmm(rate.unsqueeze(1), gain_t).squeeze(1)
        z = (w_out * rate).sum(-1, keepdim=True)
        state = state + leak * (recurrent + feedback * z - state)
        return state, torch.tanh(state)

    train_points = targets.shape[1] - val_points
    errors = torch.empty(count, train_points, dtype=dtype, device=device)
    rate = torch.tanh(state)
    for step in range(train_points):
        state, rate = advance(state, rate)
        error = (w_out * rate).sum(-1) - targets[:, step]
        errors[:, step] = error.abs()
        if (step + 1) % update_every == 0:
            gain = torch.bmm(rate.unsqueeze(1), precision).squeeze(1)  # P r = (r^T P)^T, P symmetric
            c = 1.0 / (1.0 + (rate * gain).sum(-1))
            precision.baddbmm_((-c)[:, None, None] * gain.unsqueeze(-1), gain.unsqueeze(-2))  # P -= c (P r)(P r)^T
            w_out -= (c * error).unsqueeze(-1) * gain
    keep_at = set(torch.linspace(0, val_points - 1, keep_states).round().long().tolist()) if keep_states else set()
    outputs, kept = torch.empty(count, val_points, dtype=dtype, device=device), []
    for step in range(val_points):
        state, rate = advance(state, rate)
        outputs[:, step] = (w_out * rate).sum(-1)
        if step in keep_at:
            kept.append(state)
    for k, reservoir in enumerate(reservoirs):
        reservoir.w_out.copy_(w_out[k])
    result = {
        "val_mae": (outputs - targets[:, train_points:]).abs().mean(-1),
        "output": outputs,
        "train_mae": errors[:, -val_points:].mean(-1),
    }
    if keep_states:
        result["states"] = torch.stack(kept, dim=1)
    return result
