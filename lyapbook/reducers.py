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
    """Accumulated log stretch per row (batch, k), and per-row flags for collapsed and floored stretches.

    A stretch below the dtype's smallest normal number is a tangent direction that collapsed
    (R_ii = 0); a ratio R_kk / R_11 below 10 eps at a QR step is the rounding floor: the
    smallest stretches of that step are rounding errors (QR too rarely for the spread of the
    spectrum in that dtype). Both are tracked as running minima and read once, at the end.
    """

    def __init__(self, batch: int, k: int, like: torch.Tensor, in_place: bool = True):
        self.total = like.new_zeros(batch, k)
        self.tiny = torch.finfo(like.dtype).tiny
        self.floor = float_floor(like.dtype)
        self.in_place = in_place
        self.smallest = like.new_full((batch,), float("inf"))  # smallest stretch seen, per row
        self.lowest_ratio = like.new_full((batch,), float("inf"))  # smallest R_kk / R_11 among non-collapsed steps

    def update(self, step: TangentStep) -> None:
        if not step.accumulating or step.qr is None:
            return
        stretch = step.qr.stretch
        smallest, largest = stretch.detach().aminmax(dim=-1)
        self.smallest = torch.minimum(self.smallest, smallest)
        ratio = torch.where(smallest >= self.tiny, smallest / largest.clamp_min(self.tiny), 1.0)
        self.lowest_ratio = torch.minimum(self.lowest_ratio, ratio)
        log_stretch = stretch.clamp_min(self.tiny).log()
        self.total = self.total.add_(log_stretch) if self.in_place else self.total + log_stretch

    @property
    def collapsed(self) -> torch.Tensor:
        """(batch,) rows where a stretch fell to zero."""
        return self.smallest < self.tiny

    @property
    def floored(self) -> torch.Tensor:
        """(batch,) rows that reached the rounding floor."""
        return self.lowest_ratio < self.floor


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
