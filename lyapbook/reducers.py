"""Reductions of the tangent trajectory: what :func:`lyapbook.lyapunov_spectrum` keeps of it.

Each reducer sees every :class:`~lyapbook.tangent.TangentStep` once and keeps only its own
output, so memory is the size of what is kept plus a constant: frames are written into one
tensor allocated when the first frame arrives (its final size), never gathered in a list and
stacked (which would hold everything twice). A run that keeps an autograd graph
(``differentiable=True``) collects in lists instead, since the graph holds every step anyway.
"""

from __future__ import annotations

from collections.abc import Collection

import torch

from .tangent import TangentStep, float_floor

__all__ = ["Collector", "FrameReducer", "InputJacobianReducer", "LogRReducer", "RMatrixReducer", "SpectrumReducer"]


class Collector:
    """(batch, count, ...) from ``count`` tensors (batch, ...) added one at a time."""

    def __init__(self, count: int, preallocate: bool):
        self.count, self.preallocate = count, preallocate
        self._out: torch.Tensor | None = None
        self._parts: list[torch.Tensor] = []
        self._filled = 0

    def add(self, value: torch.Tensor) -> None:
        if not self.preallocate:
            self._parts.append(value)
            return
        if self._out is None:
            self._out = value.new_empty(value.shape[0], self.count, *value.shape[1:])
        self._out[:, self._filled] = value
        self._filled += 1

    def result(self) -> torch.Tensor:
        if not self.preallocate:
            return torch.stack(self._parts, dim=1)
        assert self._filled == self.count, f"collected {self._filled} of {self.count}"
        return self._out


class SpectrumReducer:
    """Accumulated log stretch per row (batch, k), in float64 whatever the run's dtype, and a record
    of the QR steps whose stretches cannot be trusted (see :mod:`lyapbook.diagnostics`).

    Per row it counts the QR steps where a stretch collapsed (below the dtype's smallest normal
    number), where a stretch hit the rounding floor (R_kk / R_11 below 10 eps) and where the
    stretches were not finite while the state was (the tangent product overflowed), with the
    first such step and the most columns touched in one step. All of it stays on the device
    (no synchronisation per step) and is read once, at the end.
    """

    def __init__(self, batch: int, k: int, like: torch.Tensor, in_place: bool = True):
        self.total = like.new_zeros(batch, k, dtype=torch.float64)
        self.tiny = torch.finfo(like.dtype).tiny
        self.floor = float_floor(like.dtype)
        self.in_place = in_place
        self.events = {kind: _EventCounts(batch, like.device) for kind in ("floor", "collapse", "overflow")}

    def update(self, step: TangentStep) -> None:
        if not step.accumulating or step.qr is None:
            return
        stretch = step.qr.stretch
        plain = stretch.detach()
        largest = plain.amax(dim=-1, keepdim=True).clamp_min(self.tiny)
        collapsed = plain < self.tiny
        count = step.counted
        self.events["collapse"].add(collapsed.sum(-1), count)
        self.events["floor"].add(((plain / largest < self.floor) & ~collapsed).sum(-1), count)
        overflow = ~torch.isfinite(plain).all(-1) & torch.isfinite(step.state.detach()).all(-1)
        self.events["overflow"].add(overflow * plain.shape[-1], count)
        log_stretch = stretch.clamp_min(self.tiny).log().to(torch.float64)
        self.total = self.total.add_(log_stretch) if self.in_place else self.total + log_stretch

    @property
    def collapsed(self) -> torch.Tensor:
        """(batch,) rows where a stretch fell to zero."""
        return self.events["collapse"].steps > 0

    @property
    def floored(self) -> torch.Tensor:
        """(batch,) rows that reached the rounding floor."""
        return self.events["floor"].steps > 0


class _EventCounts:
    """Per row: QR steps with the event, the first of them (-1: none), the most columns in one step."""

    def __init__(self, batch: int, device: torch.device):
        self.steps = torch.zeros(batch, dtype=torch.long, device=device)
        self.first = torch.full((batch,), -1, dtype=torch.long, device=device)
        self.columns = torch.zeros(batch, dtype=torch.long, device=device)

    def add(self, columns: torch.Tensor, count: int) -> None:
        hit = columns > 0
        self.steps += hit
        self.first = torch.where(hit & (self.first < 0), count, self.first)
        self.columns = torch.maximum(self.columns, columns.long())


class LogRReducer:
    """log diag(R) at every accumulating QR step, (batch, n_qr, k), in Q's column order."""

    def __init__(self, count: int, preallocate: bool, tiny: float):
        self.values = Collector(count, preallocate)
        self.tiny = tiny

    def update(self, step: TangentStep) -> None:
        if step.accumulating and step.qr is not None:
            self.values.add(step.qr.stretch.clamp_min(self.tiny).log())


class FrameReducer:
    """Q after selected accumulating QR steps (``keep``: their step counts since warm-up), first ``columns`` columns."""

    def __init__(self, keep: Collection[int], columns: int, preallocate: bool, warmup: int):
        self.keep, self.columns, self.warmup = set(keep), columns, warmup
        self.values = Collector(len(self.keep), preallocate)

    def update(self, step: TangentStep) -> None:
        if step.accumulating and step.qr is not None and step.t + 1 - self.warmup in self.keep:
            self.values.add(step.qr.q[..., : self.columns])


class RMatrixReducer:
    """R (upper triangular, positive diagonal) at every accumulating QR step, (batch, n_qr, k, k)."""

    def __init__(self, count: int, preallocate: bool):
        self.values = Collector(count, preallocate)

    def update(self, step: TangentStep) -> None:
        if step.accumulating and step.qr is not None:
            self.values.add(step.qr.r)


class InputJacobianReducer:
    """d(tangent coordinates of h_t)/d(x_t) at every accumulating step, (batch, steps, n, input_dim)."""

    def __init__(self, count: int, preallocate: bool):
        self.values = Collector(count, preallocate)

    def update(self, step: TangentStep) -> None:
        if step.accumulating:
            self.values.add(step.input_jacobian)
