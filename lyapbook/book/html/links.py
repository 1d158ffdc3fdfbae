"""Repository, issue, edit and launch links that point at files that exist.

``_config.yml`` names the repository once (``repository: url``); sphinx-book-theme derives the
repository, issue, "suggest edit", Binder and Colab buttons from it. The theme assumes that a
page's source in the repository has the suffix of the page it renders, but the book renders
executed notebooks (``.ipynb``) made from Jupytext chapters (``.md``). This module points:

- "suggest edit" and Binder at the chapter's ``.md`` (Binder opens it as a notebook through
  Jupytext; ``postBuild`` makes that the default), built from ``environment.yml``;
- Colab at the executed notebook that the published site carries, with its outputs, on the
  branch that GitHub Pages serves (:data:`PAGES_BRANCH`, written by the publishing workflow).
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["PAGES_BRANCH", "repoint", "setup"]

PAGES_BRANCH = "gh-pages"


def repoint(url: str, pagename: str, branch: str) -> str:
    """``url`` of a header button, pointed at the file that exists for chapter ``pagename``."""
    notebook = f"{pagename}.ipynb"
    if notebook not in url:
        return url
    if "colab.research.google.com" in url:
        return url.replace(f"/blob/{branch}/{notebook}", f"/blob/{PAGES_BRANCH}/_sources/{notebook}")
    return url.replace(notebook, f"{pagename}.md")


def _walk(buttons: list[dict], pagename: str, branch: str) -> None:
    for button in buttons:
        if button.get("type") == "group":
            _walk(button.get("buttons", []), pagename, branch)
        elif isinstance(button.get("url"), str):
            button["url"] = repoint(button["url"], pagename, branch)


def _repoint_buttons(app, pagename, templatename, context, doctree) -> None:
    source = Path(app.env.doc2path(pagename)) if pagename in app.env.all_docs else None
    if source is None or source.suffix != ".ipynb":
        return
    branch = app.config.html_theme_options.get("repository_branch") or "main"
    _walk(context.get("header_buttons", []), pagename, branch)


def setup(app) -> None:
    app.connect("html-page-context", _repoint_buttons, priority=600)  # after the theme's 501
