"""Figures whose image has no alt text get their caption as alt text (not the file path)."""

from __future__ import annotations

import re

from docutils import nodes

__all__ = ["plain_caption", "setup"]

TEX_COMMAND = re.compile(r"\\([A-Za-z]+)")


def plain_caption(text: str) -> str:
    """Caption text for screen readers: TeX commands as words, no braces or dollar signs."""
    text = TEX_COMMAND.sub(r"\1", text)
    text = text.replace("{", "").replace("}", "").replace("$", "")
    return " ".join(text.split())


def _caption_as_alt(app, doctree, docname) -> None:
    for figure in doctree.findall(nodes.figure):
        captions = list(figure.findall(nodes.caption))
        if not captions:
            continue
        for image in figure.findall(nodes.image):
            if not image.get("alt") or image["alt"] == image.get("uri"):
                image["alt"] = plain_caption(captions[0].astext())


def setup(app) -> None:
    # doctree-resolved: citations in captions are resolved to their text by then
    app.connect("doctree-resolved", _caption_as_alt)
