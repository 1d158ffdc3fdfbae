"""What went wrong in a run, recorded on its result and said every time it happens.

Three things can make some exponents of a run untrustworthy, and each is recorded as a
:class:`Diagnostic` on :attr:`lyapbook.LyapunovResult.diagnostics` and announced with a
:class:`LyapunovWarning`, every time (Python's default shows a warning once per line of code,
which in a loop over networks would hide all but the first):

- ``"floor"``: at some QR step a stretch R_kk fell below 10 eps x R_11. Such a stretch is
  rounding error, larger than the true one, so the exponents it feeds are too high: upper bounds.
- ``"collapse"``: a stretch was exactly 0 (a saturated tanh, a ReLU at rest) and its logarithm
  was clamped to log(tiny): again too high, an upper bound.
- ``"overflow"``: the product of the Jacobians between two QR steps overflowed while the state
  stayed finite (a chaotic network, many steps between QRs, float32). The exponents are lost;
  the run raises (or, in a group with ``nonfinite="nan"``, returns NaN) and says so.
"""

from __future__ import annotations

import sys
import warnings
from dataclasses import dataclass

import torch

__all__ = ["Diagnostic", "LyapunovWarning", "TITLES", "warn_every_time", "advice", "remedies"]

TITLES = {"floor": "rounding floor", "collapse": "collapsed tangent direction", "overflow": "tangent product overflow"}


class LyapunovWarning(RuntimeWarning):
    """A run's exponents are bounds rather than estimates, or its input was read in a way worth saying."""


@dataclass(frozen=True)
class Diagnostic:
    """One kind of trouble in a run.

    Attributes:
        kind: ``"floor"``, ``"collapse"`` or ``"overflow"`` (see the module docstring).
        rows: the batch rows (sequences) it touched.
        first_step: the first QR step where it happened, counted in steps after warm-up.
        qr_steps: at how many QR steps it happened (summed over rows).
        exponents: how many of the lowest exponents it touched (for ``"overflow"``: all).
        meaning: what the affected numbers are.
        advice: what to change.
    """

    kind: str
    rows: tuple[int, ...]
    first_step: int
    qr_steps: int
    exponents: int
    meaning: str
    advice: str

    def __str__(self) -> str:
        rows = ", ".join(map(str, self.rows[:8])) + (" ..." if len(self.rows) > 8 else "")
        return (f"{TITLES[self.kind]}: {self.meaning} (rows {rows}; first at step {self.first_step}, at "
                f"{self.qr_steps} QR step(s) in all; the lowest {self.exponents} exponent(s)). {self.advice}")


def remedies(t_on: int, dtype: torch.dtype) -> list[str]:
    """What resolves a stretch that the rounding floor, an underflow or an overflow hides."""
    parts = []
    if t_on > 1:
        parts.append(f"re-orthonormalise more often (a smaller t_on; t_on={t_on} now)")
    if dtype != torch.float64:
        parts.append("compute in float64 (model.double() and float64 inputs)")
    return parts


def advice(t_on: int, dtype: torch.dtype) -> str:
    """:func:`remedies` as a sentence; or, when a QR every step in float64 is already there, that nothing finer exists."""
    parts = remedies(t_on, dtype)
    if not parts:
        return ("With a QR every step in float64 already, these directions contract by more than float64 resolves "
                "in one step relative to the leading one: read the affected exponents as upper bounds.")
    return "To resolve them: " + ", or ".join(parts) + "."


def warn_every_time(message: str, *, stacklevel: int = 2) -> None:
    """Issue a :class:`LyapunovWarning` attributed to the caller ``stacklevel`` frames up, every time it
    happens (filters set with :mod:`warnings`, e.g. ``"ignore"``, still apply)."""
    frame = sys._getframe(1)
    for _ in range(stacklevel - 1):  # as far up as asked, or as the stack goes
        frame = frame.f_back or frame
    warnings.warn_explicit(
        message, LyapunovWarning, frame.f_code.co_filename, frame.f_lineno,
        module=frame.f_globals.get("__name__", "<unknown>"), registry={},
    )
