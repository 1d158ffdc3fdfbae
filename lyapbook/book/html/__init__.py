"""The Sphinx side of the book: what readers meet in the rendered HTML.

Loaded by Jupyter Book as the extension ``lyapbook.book.html`` (see ``_config.yml``). Each module
has one job: MathJax shipped with the book (:mod:`.offline`), author-year reference labels
(:mod:`.citations`), figure alt text from captions (:mod:`.figures`), repository and launch
links driven by one setting (:mod:`.links`), downloadable notebooks with their results
(:mod:`.downloads`), and the reproduction scorecard (:mod:`.scorecard`).
"""

from __future__ import annotations

from pathlib import Path

from . import citations, downloads, figures, links, offline, scorecard

STATIC = Path(__file__).parent / "static"


def setup(app) -> dict:
    for module in (offline, citations, figures, links, downloads, scorecard):
        module.setup(app)
    app.connect("config-inited", _configure)
    app.add_css_file("lyapbook.css")
    return {"parallel_read_safe": True, "parallel_write_safe": True}


def _configure(app, config) -> None:
    config.html_static_path.append(str(STATIC))
    # An empty default colour mode makes the theme's script log an error on a first visit.
    options = config.html_theme_options
    config.html_context.setdefault("default_mode", "light")
    # One search field, in the sidebar: none in the header bar above it.
    options.setdefault("navbar_persistent", [])
