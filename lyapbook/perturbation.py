"""A switch that perturbs random initial conditions at the rounding level: another machine, simulated.

Two CPUs round the same computation differently (another instruction set, another order of a
sum), and a chaotic estimate amplifies that difference into another realisation of its own
noise. The book's checked numbers must survive this, so the test suite executes every checked
chapter a second time with ``LYAPBOOK_PERTURB`` set (to ``1e-12``). While it is set:

- every random floating-point draw made through PyTorch is perturbed just after it is drawn:
  initial states and frames, inputs, and the initial weights of every network (PyTorch's and
  :mod:`torch.nn.init`'s initialisers draw through the same functions);
- a system's default initial state (:meth:`lyapbook.systems.DynamicalSystem.initial_state`:
  zeros for a network, the Hénon map's and the Lorenz system's starting points) is perturbed,
  whether the engine asks for it or a chapter does.

Computations that share a draw or a given ``h0`` still share it, so exact identities (an
analytic Jacobian against autograd from the same state) stay exact. The disk caches of trained
networks and fits use a separate folder (:func:`cache_tag`): a perturbed run trains its own
networks and never touches the others.

Each value ``v`` becomes ``v + level * u * |v|`` (``level * u`` where ``v`` is 0), ``u`` uniform
in [-1, 1], from a generator of its own with a fixed seed (a perturbed run is reproducible; the
draws themselves, and so every seeded sequence of them, are unchanged). The level is at least 4
units in the last place of the dtype: 1e-12 is below what float32 can hold, and a perturbation
that rounds away would test nothing. Off by default; :func:`install` is called by
``import lyapbook``.
"""

from __future__ import annotations

import functools
import os

import torch

__all__ = ["PERTURB_ENV", "level", "active", "install", "perturb_", "perturbed_start", "cache_tag"]

PERTURB_ENV = "LYAPBOOK_PERTURB"
_SEED = 8191
_DRAWING_FUNCTIONS = ("rand", "randn", "rand_like", "randn_like", "normal")  # torch.<name>, return a new tensor
_DRAWING_METHODS = ("uniform_", "normal_", "exponential_", "cauchy_", "log_normal_")  # torch.Tensor.<name>, in place
_state = {"installed": False, "generator": None}
_rand = torch.rand  # the original, for the perturbation's own draws once torch.rand is wrapped


def level() -> float:
    """The relative perturbation asked for by ``$LYAPBOOK_PERTURB`` (0.0 when unset or empty)."""
    text = os.environ.get(PERTURB_ENV, "").strip()
    if not text:
        return 0.0
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"${PERTURB_ENV} must be a relative size such as 1e-12, got {text!r}") from None
    if not 0.0 <= value < 1e-3:
        raise ValueError(f"${PERTURB_ENV} must be in [0, 1e-3) (a rounding-level perturbation), got {value}")
    return value


def active() -> bool:
    """Whether random draws are being perturbed (``$LYAPBOOK_PERTURB`` set and :func:`install` done)."""
    return _state["installed"] and level() > 0.0


@torch.no_grad()
def perturb_(tensor: torch.Tensor) -> torch.Tensor:
    """Perturb a floating-point ``tensor`` in place at :func:`level` (nothing when off); returns it."""
    size = level()
    if size == 0.0 or not tensor.is_floating_point() or tensor.numel() == 0:
        return tensor
    size = max(size, 4.0 * torch.finfo(tensor.dtype).eps)
    if _state["generator"] is None:
        _state["generator"] = torch.Generator().manual_seed(_SEED)
    u = _rand(tensor.shape, generator=_state["generator"], dtype=torch.float64).mul_(2.0).sub_(1.0)
    base = tensor.detach().to(device="cpu", dtype=torch.float64)
    scale = torch.where(base != 0, base.abs(), torch.ones_like(base))
    return tensor.copy_(base + size * u * scale)


def perturbed_start(initial_state):
    """Wrap a system's ``initial_state`` method so that its result is perturbed when asked for."""

    @functools.wraps(initial_state)
    def wrapped(*args, **kwargs):
        state = initial_state(*args, **kwargs)
        return perturb_(state.clone()) if level() > 0.0 else state

    return wrapped


def _perturbing_function(draw):
    @functools.wraps(draw)
    def wrapped(*args, **kwargs):
        out = draw(*args, **kwargs)
        if isinstance(out, torch.Tensor) and not out.requires_grad:
            perturb_(out)
        return out

    return wrapped


def _perturbing_method(draw):
    @functools.wraps(draw)
    def wrapped(self, *args, **kwargs):
        out = draw(self, *args, **kwargs)
        perturb_(out)
        return out

    return wrapped


def install() -> bool:
    """Wrap PyTorch's drawing functions when ``$LYAPBOOK_PERTURB`` is set; returns whether it did.

    Called once by ``import lyapbook``; a second call does nothing.
    """
    if _state["installed"] or level() == 0.0:
        return _state["installed"]
    for name in _DRAWING_FUNCTIONS:
        setattr(torch, name, _perturbing_function(getattr(torch, name)))
    for name in _DRAWING_METHODS:
        setattr(torch.Tensor, name, _perturbing_method(getattr(torch.Tensor, name)))
    _state["installed"] = True
    return True


def cache_tag() -> str:
    """The cache subfolder that keeps perturbed results apart: ``""`` when off, else ``"perturbed-<level>"``."""
    size = level()
    return f"perturbed-{size:.0e}" if size else ""
