"""Ensembles: many networks of one architecture and size trained as one batched model.

Every weight carries a leading network dimension (E, ...), each time step is one batched matrix
product over the group, and each network keeps its own optimiser state, learning rate, schedule,
gradient clipping and early stopping. PyTorch's RNN, LSTM and GRU run through hand-written
backward passes (:mod:`lyapbook.tasks.recurrences`); the other cores through autograd. With the
same seed and batches, each network follows the trajectory it would follow trained alone by
:func:`lyapbook.tasks.training.train` (to floating-point rounding), because networks share no
parameter: the summed loss of the group has, for each network, the gradient of that network's
own loss.

Randomness (dropout, the Noisy RNN's noise) is drawn for each network from its own generator,
seeded by that network's seed alone, so a network's training does not depend on which other
networks share its group; it does differ from :func:`train`'s draws from PyTorch's global
generator. Without dropout and noise, ensemble and separate training agree.

A network whose training loss (or validation loss) is not finite is marked failed at that epoch:
from the step where it happened it is no longer updated, while the others go on.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from .data import Split
from .models import CELL_OPTIONS, SequenceModel
from .recurrences import gru_sequence, lstm_sequence, rnn_sequence
from .recurrences import tanh as _tanh
from ..diagnostics import LyapunovWarning
from ..lyapunov import lyapunov_spectra
from ..optim import BatchedOptimizer as _BatchedOptimizer
from .training import EarlyStopping, EpochRecord

__all__ = ["Ensemble", "MemberHistory", "ensemble_step", "evaluate_ensemble", "make_ensemble_optimizer", "member_spectra",
           "noise_seed", "train_ensemble"]

# Constructor arguments that must agree inside an ensemble (dropout and cell values may differ).
_SHARED = ("arch", "input_size", "hidden_size", "output_size", "vocabulary", "output", "loss", "bias")


def noise_seed(seed: int) -> int:
    """The seed of a network's dropout and noise generator, derived from its training seed alone."""
    return int(np.random.SeedSequence([int(seed), 0x5EED]).generate_state(1)[0])


def _linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """Per-network affine map: x (E, ..., in), weight (E, out, in), bias (E, out) -> (E, ..., out)."""
    flat = x.reshape(x.shape[0], -1, x.shape[-1])
    if bias is None:
        out = torch.bmm(flat, weight.transpose(1, 2))
    else:
        out = torch.baddbmm(bias.unsqueeze(1), flat, weight.transpose(1, 2))
    return out.reshape(*x.shape[:-1], weight.shape[1])


class Ensemble:
    """E networks of one architecture and size as one batched model.

    Build it with :meth:`from_models` from ordinary :class:`~lyapbook.tasks.models.SequenceModel`
    instances; take them back with :meth:`member` / :meth:`members` (their ``state_dict`` is the
    network's slice of every stacked weight). All weights live in one leaf tensor ``flat``
    (E, weights per network), so that clipping and the optimiser step are a few operations on it
    whatever the number of weights; ``params`` maps each ``state_dict`` name to its detached view
    (E, *shape) of ``flat`` (a forward pass makes its own views, which carry the graph). ``cell``
    maps each cell hyperparameter to (E, 1, 1) (``cell_values``: the same as Python floats);
    ``dropout`` lists each network's dropout rate.
    """

    def __init__(self, models: Sequence[SequenceModel]):
        if not models:
            raise ValueError("models: an ensemble needs at least one network")
        first = models[0]
        for k, model in enumerate(models):
            if not isinstance(model, SequenceModel):
                raise TypeError(f"models[{k}] must be a lyapbook.tasks.models.SequenceModel, got {type(model).__name__}")
            for key in _SHARED:
                if model.config[key] != first.config[key]:
                    raise ValueError(
                        f"models[{k}] has {key} {model.config[key]!r} but models[0] has {first.config[key]!r}: an ensemble "
                        "holds networks of one architecture and size; group them first (run_zoo does so automatically)"
                    )
            dtype, device = next(model.parameters()).dtype, next(model.parameters()).device
            if (dtype, device) != (next(first.parameters()).dtype, next(first.parameters()).device):
                raise ValueError(f"models[{k}] is {dtype} on {device}, unlike models[0]: convert them to one dtype and device")
        self.config = {key: first.config[key] for key in _SHARED}
        self.arch, self.count = first.arch, len(models)
        self.training = True
        with torch.no_grad():
            stacked = {name: torch.stack([m.state_dict()[name] for m in models]) for name in first.state_dict()}
            self.flat = torch.cat([value.reshape(self.count, -1) for value in stacked.values()], dim=1).requires_grad_(True)
        self._shapes = {name: value.shape[1:] for name, value in stacked.items()}
        self._bound: dict[str, torch.Tensor] | None = None  # the views of the forward pass under way
        like = self.flat
        self.cell_values = {name: [m.cell_options()[name] for m in models] for name in CELL_OPTIONS[self.arch]}
        self.cell = {name: torch.tensor(values, dtype=like.dtype, device=like.device).reshape(-1, 1, 1)
                     for name, values in self.cell_values.items()}
        self.dropout = [float(m.dropout.p) for m in models]

    def _views(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each weight's view (E, *shape) of ``flat``."""
        views, start = {}, 0
        for name, shape in self._shapes.items():
            size = math.prod(shape)
            views[name] = flat[:, start : start + size].view(self.count, *shape)
            start += size
        return views

    @property
    def params(self) -> dict[str, torch.Tensor]:
        """Each weight by ``state_dict`` name, (E, *shape): a detached view of ``flat``, for reading."""
        return self._views(self.flat.detach())

    @classmethod
    def from_models(cls, models: Sequence[SequenceModel]) -> Ensemble:
        """The ensemble of ``models`` (their weights are copied; the modules are not changed)."""
        return cls(models)

    @property
    def dtype(self) -> torch.dtype:
        return self.flat.dtype

    @property
    def device(self) -> torch.device:
        return self.flat.device

    def train(self, mode: bool = True) -> Ensemble:
        self.training = mode
        return self

    def eval(self) -> Ensemble:
        return self.train(False)

    def member(self, k: int) -> SequenceModel:
        """Network ``k`` as an ordinary module (a copy of its current weights)."""
        if not 0 <= k < self.count:
            raise IndexError(f"member: index {k} outside the ensemble of {self.count}")
        cell = {name: values[k] for name, values in self.cell_values.items()}
        model = SequenceModel(**self.config, dropout=self.dropout[k], cell=cell).to(dtype=self.dtype, device=self.device)
        model.load_state_dict({name: value[k].detach().clone() for name, value in self.params.items()})
        return model

    def members(self) -> list[SequenceModel]:
        return [self.member(k) for k in range(self.count)]

    def state_dicts(self) -> list[dict[str, torch.Tensor]]:
        """Each network's ``state_dict`` (detached copies, on the CPU)."""
        return [{name: value[k].detach().cpu().clone() for name, value in self.params.items()} for k in range(self.count)]

    # ------------------------------------------------------------------------------------------
    # Forward pass: x (E, batch, time, features) or token ids (E, batch, time).

    def forward(self, x: torch.Tensor, generators: Sequence[torch.Generator] | None = None) -> torch.Tensor:
        """Outputs (E, batch, output_size) (``output="last"``) or (E, batch, time, output_size).

        In training mode, dropout and noise are drawn from ``generators`` (one per network).
        """
        p = self._bound = self._views(self.flat)  # views that carry the graph back to flat
        try:
            if self.config["vocabulary"]:
                rows = torch.arange(self.count, device=x.device).view(-1, 1, 1)
                x = p["embedding.weight"][rows, x]
            noisy = self.training and generators is not None
            hidden = _CORES[self.arch](self, x, generators if noisy else None)  # (E, batch, time, hidden)
        finally:
            self._bound = None
        if noisy and any(rate > 0 for rate in self.dropout):
            hidden = hidden * self._dropout_masks(hidden.shape[1:], generators)
        if self.config["output"] == "last":
            hidden = hidden[:, :, -1]
        return _linear(hidden, p["readout.weight"], p["readout.bias"])

    __call__ = forward

    def _dropout_masks(self, shape: torch.Size, generators: Sequence[torch.Generator]) -> torch.Tensor:
        masks = []
        for k, rate in enumerate(self.dropout):
            if rate == 0.0:
                masks.append(torch.ones(shape, dtype=self.dtype, device=self.device))
            else:
                keep = torch.rand(shape, generator=generators[k], dtype=self.dtype, device=self.device) >= rate
                masks.append(keep.to(self.dtype) / (1.0 - rate))
        return torch.stack(masks)

    def losses(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """(E,) each network's mean loss, as :func:`lyapbook.tasks.training.train` averages it."""
        if self.config["loss"] == "mse":
            return ((out - y) ** 2).reshape(self.count, -1).mean(1)
        per = nn.functional.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1), reduction="none")
        return per.reshape(self.count, -1).mean(1)

    def core_param(self, name: str) -> torch.Tensor | None:
        """The core's weight ``name`` (E, *shape); inside a forward pass, the view that carries the graph."""
        return (self.params if self._bound is None else self._bound).get(f"core.{name}")


# ----------------------------------------------------------------------------------------------
# The eight cores, batched over networks. Each returns the hidden sequence (E, batch, time, n).
# They implement the same updates as lyapbook.rnn's cells and PyTorch's RNNs (tests compare them).


def _drive(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
    """The input drive of every step, x (E, batch, time, in) -> time tensors (E, batch, out).

    The (small) inputs are put time-major first, so each step's drive is a view and the backward
    pass gathers all steps in one operation."""
    return _linear(x.transpose(1, 2), weight, bias).unbind(1)


# PyTorch's three recurrences run through lyapbook.tasks.recurrences (hand-written backward passes):
# inputs go in time-major (time, E, batch, in); states come back as a (E, batch, time, n) view.


def _torch_rnn(ens: Ensemble, x, generators):
    weights = (ens.core_param("weight_ih_l0"), ens.core_param("bias_ih_l0"), ens.core_param("bias_hh_l0"),
               ens.core_param("weight_hh_l0"))
    inputs = x.permute(2, 0, 1, 3)
    if ens.arch == "gru":
        states = gru_sequence(inputs, *weights)
    else:
        weight_ih, bias_ih, bias_hh, weight_hh = weights
        bias = None if bias_ih is None else bias_ih + bias_hh
        states = (lstm_sequence if ens.arch == "lstm" else rnn_sequence)(inputs, weight_ih, bias, weight_hh)
    return states.permute(1, 2, 0, 3)


def _eye_like(weight: torch.Tensor) -> torch.Tensor:
    return torch.eye(weight.shape[-1], dtype=weight.dtype, device=weight.device)


def _asrnn(ens: Ensemble, x, generators):
    W = ens.core_param("W")
    matrix = W - W.transpose(1, 2) - ens.cell["gamma"] * _eye_like(W)  # W - W^T - gamma I (Eq. 3.3)
    drive_t = _drive(x, ens.core_param("V.weight"), ens.core_param("V.bias"))
    eps, matrix_t = ens.cell["eps"], matrix.transpose(1, 2)
    h = drive_t[0].new_zeros(x.shape[0], x.shape[1], W.shape[-1])
    out = []
    for t in range(len(drive_t)):
        h = h + eps * _tanh(torch.baddbmm(drive_t[t], h, matrix_t))
        out.append(h)
    return torch.stack(out, dim=2)


def _cornn(ens: Ensemble, x, generators):
    both = torch.cat([ens.core_param("W.weight"), ens.core_param("W_z.weight")], dim=-1).transpose(1, 2)  # (E, 2n, n)
    drive_t = _drive(x, ens.core_param("V.weight"), ens.core_param("V.bias"))
    dt, gamma, eps = ens.cell["dt"], ens.cell["gamma"], ens.cell["eps"]
    y = drive_t[0].new_zeros(x.shape[0], x.shape[1], both.shape[-1])
    z = torch.zeros_like(y)
    out = []
    for t in range(len(drive_t)):
        activation = _tanh(torch.baddbmm(drive_t[t], torch.cat([y, z], dim=-1), both))
        z = z + dt * (activation - gamma * y - eps * z)
        y = y + dt * z
        out.append(y)
    return torch.stack(out, dim=2)


def _lipschitz_matrices(ens: Ensemble) -> torch.Tensor:
    """[A; W] stacked (E, 2n, n): A = (1 - b)(M + M^T) + b (M - M^T) - g I for (M_A, beta_a, gamma_a) and (M_W, ...)."""
    def compose(M, beta, gamma):
        return (1.0 - beta) * (M + M.transpose(1, 2)) + beta * (M - M.transpose(1, 2)) - gamma * _eye_like(M)

    cell = ens.cell
    A = compose(ens.core_param("M_A"), cell["beta_a"], cell["gamma_a"])
    W = compose(ens.core_param("M_W"), cell["beta_w"], cell["gamma_w"])
    return torch.cat([A, W], dim=1)


def _lipschitz(ens: Ensemble, x, generators):
    both_t = _lipschitz_matrices(ens).transpose(1, 2)  # (E, n, 2n)
    n = both_t.shape[1]
    drive_t = _drive(x, ens.core_param("U.weight"), ens.core_param("U.bias"))
    dt = ens.cell["dt"]
    noise = _noise(ens, generators, x.shape[2], x.shape[1], n, drive_t[0]) if ens.arch == "noisy" else None
    h = drive_t[0].new_zeros(x.shape[0], x.shape[1], n)
    out = []
    for t in range(len(drive_t)):
        product = torch.bmm(h, both_t)
        new_h = h + dt * (product[..., :n] + _tanh(product[..., n:] + drive_t[t]))
        if noise is not None:  # the Noisy RNN's training noise, scaled by the old state (as lyapbook.rnn.NoisyRNN)
            new_h = new_h + torch.sqrt(dt) * (ens.cell["sigma_add"] * noise[0][:, t] + ens.cell["sigma_mult"] * h * noise[1][:, t])
        h = new_h
        out.append(h)
    return torch.stack(out, dim=2)


def _noise(ens: Ensemble, generators, steps: int, batch: int, n: int, like: torch.Tensor):
    """Two standard normal draws (E, time, batch, n) per network from its own generator, or None (evaluation)."""
    if generators is None:
        return None
    draws = [torch.randn(2, steps, batch, n, generator=g, dtype=like.dtype, device=like.device) for g in generators]
    stacked = torch.stack(draws, dim=1)  # (2, E, time, batch, n)
    return stacked[0], stacked[1]


def _lem(ens: Ensemble, x, generators):
    W = ens.core_param("W.weight").transpose(1, 2)  # (E, n, 3n): W_1, W_2, W_z
    W_y = ens.core_param("W_y.weight").transpose(1, 2)
    n, dt = W_y.shape[1], ens.cell["dt"]
    drive_t = _drive(x, ens.core_param("V.weight"), ens.core_param("V.bias"))  # (E, batch, 4n) per step: V_1, V_2, V_z, V_y
    y = drive_t[0].new_zeros(x.shape[0], x.shape[1], n)
    z = torch.zeros_like(y)
    out = []
    for t in range(len(drive_t)):
        d = drive_t[t]
        from_y = torch.baddbmm(d[..., : 3 * n], y, W)
        step1 = dt * torch.sigmoid(from_y[..., :n])
        step2 = dt * torch.sigmoid(from_y[..., n : 2 * n])
        z = (1.0 - step1) * z + step1 * _tanh(from_y[..., 2 * n :])
        y = (1.0 - step2) * y + step2 * _tanh(torch.baddbmm(d[..., 3 * n :], z, W_y))
        out.append(y)
    return torch.stack(out, dim=2)


_CORES = {"lstm": _torch_rnn, "gru": _torch_rnn, "rnn": _torch_rnn, "asrnn": _asrnn, "cornn": _cornn, "lipschitz": _lipschitz,
          "noisy": _lipschitz, "lem": _lem}


# ----------------------------------------------------------------------------------------------
# Optimisers with a leading network dimension (PyTorch's defaults; per-network learning rates):
# lyapbook.optim.BatchedOptimizer.


def make_ensemble_optimizer(name: str, ensemble: Ensemble, lr: float | Sequence[float]) -> _BatchedOptimizer:
    """One of :data:`~lyapbook.tasks.training.OPTIMIZERS` over the ensemble, one learning rate per network."""
    return _BatchedOptimizer(name, {"flat": ensemble.flat}, _per_network("lr", lr, ensemble.count).to(ensemble.dtype).to(ensemble.device))


def ensemble_step(ensemble: Ensemble, opt: _BatchedOptimizer, x: torch.Tensor, y: torch.Tensor, active: torch.Tensor,
                  clips: torch.Tensor, generators: Sequence[torch.Generator] | None = None) -> torch.Tensor:
    """One optimiser step of every ``active`` network (E,) on its batch (x, y) (E, batch, ...), each
    network's gradient clipped to its own ``clips`` norm; returns each network's mean loss (E,), on the
    CPU. A network whose loss is not finite is not updated (nor is any inactive one)."""
    losses = ensemble.losses(ensemble(x, generators), y)
    updating = active & torch.isfinite(losses.detach()).cpu()
    ensemble.flat.grad = None
    if bool(updating.any()):
        mask = updating.to(ensemble.device)
        torch.where(mask, losses, torch.zeros_like(losses)).sum().backward()
        _clip_per_network(ensemble.flat.grad, clips)
        opt.step(mask)
    return losses.detach().cpu()


def _clip_per_network(grad: torch.Tensor, clip: torch.Tensor) -> None:
    """torch.nn.utils.clip_grad_norm_ applied to each network's gradients (a row of ``grad`` (E, weights)) with its
    own ``clip`` (E,) (inf: no clipping)."""
    factor = (clip / (grad.norm(dim=1) + 1e-6)).clamp(max=1.0)
    grad.mul_(torch.where(torch.isinf(clip), torch.ones_like(factor), factor).unsqueeze(1))


# ----------------------------------------------------------------------------------------------
# Evaluation and training.


def _as_float(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return x.to(dtype) if x.is_floating_point() else x


@torch.no_grad()
def evaluate_ensemble(ensemble: Ensemble, split: Split, index: torch.Tensor | None = None,
                      batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Each network's (mean loss (E,), accuracy (E,) or None) on ``split`` (rows ``index`` (E, m) of it
    per network, default all), in evaluation mode; averaged as :func:`lyapbook.tasks.training.evaluate`."""
    was_training = ensemble.training
    ensemble.eval()
    count = ensemble.count
    index = torch.arange(len(split)).expand(count, -1) if index is None else index
    total = torch.zeros(count, dtype=torch.float64, device=ensemble.device)
    correct = torch.zeros_like(total)
    entries = 0
    for start in range(0, index.shape[1], batch_size):
        rows = index[:, start : start + batch_size]
        x = _as_float(split.x[rows], ensemble.dtype).to(ensemble.device)
        y = _as_float(split.y[rows], ensemble.dtype).to(ensemble.device)
        out = ensemble(x)
        total += ensemble.losses(out, y).double() * y[0].numel()
        if ensemble.config["loss"] == "cross_entropy":
            correct += (out.argmax(-1) == y).reshape(count, -1).sum(1).double()
        entries += y[0].numel()
    ensemble.train(was_training)
    accuracy = (correct / entries).cpu() if ensemble.config["loss"] == "cross_entropy" else None
    return (total / entries).cpu(), accuracy


def member_spectra(ensemble: Ensemble, which: Sequence[int], sequences: torch.Tensor, *, warmup: int = 0,
                   k: int | None = None, t_on: int = 1, state: str = "hidden") -> list[dict]:
    """The Lyapunov spectrum of each network in ``which`` on ``sequences`` (task inputs (batch, time, ...)).

    All networks in one batched run of :func:`lyapbook.lyapunov_spectra` on the members' cores
    (float64, evaluation mode; each core reads its own embedded inputs), which equals the
    networks' separate spectra to rounding. ``state="hidden"`` (the dissertation's convention,
    which its zoos' spectra follow) takes an LSTM's, coRNN's and LEM's hidden vector alone;
    ``"full"`` their whole state. Each dict holds ``spectrum`` (k,), ``spectrum_std`` (k,),
    ``spectrum_seconds`` (the group's wall time shared equally among its networks) and
    ``spectrum_bounded``: how many of the lowest exponents are only upper bounds (stretches at the
    rounding floor or clamped, :mod:`lyapbook.diagnostics`; 0 for none). The engine's warnings are
    recorded there instead of printed once per network, so a zoo's pages can count them.
    """
    if not which:
        return []
    members = [ensemble.member(j).double().eval() for j in which]
    with torch.no_grad():
        inputs = torch.stack([m.core_inputs(sequences.to(ensemble.device)) for m in members])
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LyapunovWarning)
        results = lyapunov_spectra([m.core for m in members], inputs.double(), warmup=warmup, k=k, t_on=t_on,
                                   state=state)
    seconds = (time.perf_counter() - started) / len(members)
    return [{"spectrum": r.exponents.float().cpu(), "spectrum_std": r.std.float().cpu(), "spectrum_seconds": seconds,
             "spectrum_bounded": max((d.exponents for d in r.diagnostics), default=0)} for r in results]


def _per_network(name: str, value, count: int, dtype=torch.float64) -> torch.Tensor:
    values = list(value) if isinstance(value, (list, tuple, np.ndarray, torch.Tensor)) else [value] * count
    if len(values) != count:
        raise ValueError(f"{name}: give one value or one per network ({count}), got {len(values)}")
    return torch.tensor([float("inf") if v is None else float(v) for v in values], dtype=dtype)


@dataclass
class MemberHistory:
    """One network's training in an ensemble: its records (epoch 0 = untrained) and how it ended.

    ``stopped_epoch``: its last trained epoch (the cap, or earlier by early stopping or failure);
    ``best_epoch``: the epoch of its lowest validation loss; ``failed_epoch``: the epoch in which
    its loss stopped being finite (None if never).
    """

    records: list[EpochRecord] = field(default_factory=list)
    stopped_epoch: int = 0
    best_epoch: int = 0
    failed_epoch: int | None = None
    early_stopped: bool = False


Callback = Callable[[Ensemble, list[int], int], list[dict]]


def train_ensemble(ensemble: Ensemble, train_split: Split, val_split: Split, *, epochs: int, seeds: Sequence[int],
                   lr: float | Sequence[float] = 1e-3, batch_size: int = 64, optimizer: str = "adam",
                   lr_decay: float | Sequence[float] = 1.0, decay_after: int | Sequence[int] = 0,
                   clip: float | None | Sequence[float | None] = 5.0, patience: int | None | Sequence[int | None] = None,
                   min_delta: float = 0.0, train_index: torch.Tensor | None = None, val_index: torch.Tensor | None = None,
                   callbacks: dict[int, Callback] | None = None, final_callback: Callback | None = None,
                   max_batches: int | None = None) -> list[MemberHistory]:
    """Train every network of ``ensemble`` at once; one :class:`MemberHistory` per network.

    Per network (one value, or one per network): ``seeds`` (its batch order, as ``train(seed=)``;
    and, through :func:`noise_seed`, its dropout and noise), ``lr``, ``lr_decay`` after epoch
    ``decay_after``, gradient-norm ``clip`` (None: none) and early-stopping ``patience`` (None:
    none). ``train_index`` / ``val_index`` (E, m) select each network's rows of the splits (all
    networks the same number; default: every row). ``callbacks[epoch](ensemble, members, epoch)``
    returns one extras dict per listed member after that epoch's validation; ``final_callback``
    likewise for networks at their last epoch when that epoch has no callback. ``max_batches``
    caps the batches of an epoch (benchmarks).
    """
    count = ensemble.count
    if epochs < 0 or batch_size < 1:
        raise ValueError(f"need epochs >= 0 and batch_size >= 1; got {epochs} and {batch_size}")
    if len(seeds) != count:
        raise ValueError(f"seeds: give one per network ({count}), got {len(seeds)}")
    lrs = _per_network("lr", lr, count)
    if not bool((lrs > 0).all()) or not bool(torch.isfinite(lrs).all()):
        raise ValueError(f"lr must be positive and finite for every network, got {lrs.tolist()}")
    decays, decay_after = _per_network("lr_decay", lr_decay, count), _per_network("decay_after", decay_after, count)
    clips = _per_network("clip", clip, count).to(ensemble.dtype)
    stopping = EarlyStopping(count, _per_network("patience", patience, count), min_delta)
    device = ensemble.device
    train_index = torch.arange(len(train_split)).expand(count, -1) if train_index is None else train_index.cpu()
    if train_index.shape[0] != count or (val_index is not None and val_index.shape[0] != count):
        raise ValueError(f"train_index and val_index must have one row per network ({count})")
    callbacks = callbacks or {}
    order_generators = [torch.Generator().manual_seed(int(s)) for s in seeds]
    noise_generators = [torch.Generator(device=device).manual_seed(noise_seed(s)) for s in seeds]
    train_x, train_y = _as_float(train_split.x, ensemble.dtype).to(device), _as_float(train_split.y, ensemble.dtype).to(device)
    opt = make_ensemble_optimizer(optimizer, ensemble, lrs)
    clips = clips.to(device)
    active = torch.ones(count, dtype=torch.bool)
    histories = [MemberHistory() for _ in range(count)]

    def validate(epoch: int, train_loss: torch.Tensor | None, lr_used: torch.Tensor | None, seconds: float | None,
                 members: list[int]) -> None:
        val_loss, val_accuracy = evaluate_ensemble(ensemble, val_split, val_index)
        for j in members:
            if not math.isfinite(float(val_loss[j])) and histories[j].failed_epoch is None:
                histories[j].failed_epoch = epoch
                active[j] = False
        stops = stopping.update(epoch, val_loss, active)
        active[stops] = False
        extras = {j: {} for j in members}
        if epoch in callbacks:
            usable = [j for j in members if histories[j].failed_epoch is None]
            extras.update(zip(usable, callbacks[epoch](ensemble, usable, epoch)))
        ending = [j for j in members if not active[j] and histories[j].failed_epoch is None]
        if final_callback is not None and epoch not in callbacks and (ending or epoch == epochs):
            last = sorted(set(ending) | ({j for j in members if active[j]} if epoch == epochs else set()))
            extras.update(zip(last, final_callback(ensemble, last, epoch)))
        for j in members:
            histories[j].records.append(EpochRecord(
                epoch, None if train_loss is None else float(train_loss[j]), float(val_loss[j]),
                None if val_accuracy is None else float(val_accuracy[j]), None if lr_used is None else float(lr_used[j]),
                extras[j], seconds))
            histories[j].stopped_epoch, histories[j].best_epoch = epoch, int(stopping.best_epoch[j])
            histories[j].early_stopped = bool(stops[j])

    validate(0, None, None, None, list(range(count)))
    n_rows = train_index.shape[1]
    for epoch in range(1, epochs + 1):
        members = [j for j in range(count) if active[j]]
        if not members:
            break
        started = time.perf_counter()
        lr_used = opt.lr.detach().cpu().clone()
        ensemble.train()
        orders = torch.stack([torch.randperm(n_rows, generator=g) for g in order_generators])
        total = torch.zeros(count, dtype=torch.float64)
        seen = 0
        for batch, start in enumerate(range(0, n_rows, batch_size)):
            if max_batches is not None and batch >= max_batches:
                break
            rows = torch.gather(train_index, 1, orders[:, start : start + batch_size]).to(device)
            losses = ensemble_step(ensemble, opt, train_x[rows], train_y[rows], active, clips, noise_generators)
            for j in torch.nonzero(active & ~torch.isfinite(losses)).flatten().tolist():
                histories[j].failed_epoch = epoch
                active[j] = False
            total += losses.double() * rows.shape[1]
            seen += rows.shape[1]
        with torch.no_grad():
            decaying = (epoch > decay_after).to(device)
            opt.lr = torch.where(decaying, opt.lr * decays.to(opt.lr), opt.lr)
        seconds = (time.perf_counter() - started) / len(members)  # the group's wall time per trained network
        validate(epoch, total / seen, lr_used, seconds, members)
    return histories
