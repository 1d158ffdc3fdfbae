"""lyapbook: Lyapunov spectra of dynamical systems and recurrent neural networks.

The computing half of the lyapbook companion book to Vogt (2023). Start with
:func:`lyapunov_spectrum` and the systems in :mod:`lyapbook.systems`; :func:`lyapunov_spectra`
computes a group of networks at once, and :func:`tangent_trajectory` streams the steps the
spectra are reduced from.
"""

from . import perturbation, rnn, stats, systems
from .lyapunov import LyapunovResult, lyapunov_spectra, lyapunov_spectrum
from .rnn import jacobian
from .tangent import tangent_trajectory

__version__ = "0.1.0"

perturbation.install()  # only when $LYAPBOOK_PERTURB is set: the test suite's stand-in for another machine

__all__ = [
    "LyapunovResult", "jacobian", "lyapunov_spectra", "lyapunov_spectrum", "rnn", "stats", "systems",
    "tangent_trajectory", "__version__",
]
