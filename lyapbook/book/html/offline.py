"""MathJax shipped with the book, so that equations render without a network.

The files come from the pinned PyPI package ``sphinx-mathjax-offline`` (MathJax 3.2.2). Only
what the book's pages use is copied into ``_static/mathjax``: the TeX-to-CommonHTML component,
the TeX extensions it loads on demand, its web fonts, and the menu's accessibility modules.
Nothing is fetched when the book is read.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

__all__ = ["MATHJAX_SCRIPT", "mathjax_source", "setup"]

CARRIER = "sphinx-mathjax-offline"  # the package's import name has hyphens
MATHJAX_SCRIPT = "mathjax/tex-chtml.js"
# Paths under MathJax's folder that the tex-chtml component loads (menu, a11y and speech on demand).
NEEDED = ("tex-chtml.js", "input/tex/extensions", "output/chtml/fonts/woff-v2", "a11y", "ui", "sre")


def mathjax_source() -> Path:
    """The folder holding MathJax's files inside the installed carrier package."""
    spec = importlib.util.find_spec(CARRIER)
    if spec is None or spec.origin is None:
        raise RuntimeError(
            f"the book ships MathJax from the package {CARRIER!r}, which is not installed: "
            "install the pins of requirements.lock (`make book` does)"
        )
    folder = Path(spec.origin).parent / "static" / "mathjax"
    if not (folder / "tex-chtml.js").is_file():
        raise RuntimeError(f"{folder} holds no tex-chtml.js: reinstall {CARRIER}")
    return folder


def _use_local_mathjax(app, config) -> None:
    mathjax_source()  # fail before the build, not after it
    config.mathjax_path = MATHJAX_SCRIPT  # relative: Sphinx serves it from _static/


def _copy_mathjax(app, exception) -> None:
    if exception is not None or app.builder.format != "html":
        return
    source, target = mathjax_source(), Path(app.outdir) / "_static" / "mathjax"
    for name in NEEDED:
        if (source / name).is_dir():
            shutil.copytree(source / name, target / name, dirs_exist_ok=True)
        else:
            target.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source / name, target / name)


def setup(app) -> None:
    app.connect("config-inited", _use_local_mathjax)
    app.connect("build-finished", _copy_mathjax)
