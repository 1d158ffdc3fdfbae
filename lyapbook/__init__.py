"""lyapbook: Lyapunov spectra of dynamical systems and recurrent neural networks.

The computing half of the lyapbook companion book to Vogt (2023). Start with
:func:`lyapunov_spectrum` and the systems in :mod:`lyapbook.systems`.
"""

from . import rnn, stats, systems
from .lyapunov import LyapunovResult, lyapunov_spectrum
from .rnn import jacobian

__version__ = "0.1.0"

__all__ = ["LyapunovResult", "jacobian", "lyapunov_spectrum", "rnn", "stats", "systems", "__version__"]
