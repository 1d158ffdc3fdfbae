"""Helpers that chapters call to publish their figures and tables.

Under the book runner (``python -m lyapbook.book``) each item is saved to the build folder
(PNG for figures, CSV for tables), recorded for the manifest, and glued as a MyST block with
its caption and INVENTORY ID as label, so that the chapter's prose places it with
``{glue:md}`` and refers to it with ``{numref}``. Run interactively (Jupyter, papermill,
nbval), the same calls simply show the figure or table and write nothing.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from IPython.display import Markdown, display

__all__ = ["BookContext", "context", "figure", "table", "value"]

OUTPUT_DIR_ENV = "LYAPBOOK_OUTPUT_DIR"
CHAPTER_ENV = "LYAPBOOK_CHAPTER"
PROFILE_ENV = "LYAPBOOK_PROFILE"
MISSING_CELL = re.compile(r"(?<=\|)(\s*)(?:nan|None|<NA>)(\s*)(?=\|)")  # a table cell holding only a missing value
ITEM_ID = re.compile(r"^(fig|tab|eq)-[0-9]+-[0-9a-z]+$")


@dataclass(frozen=True)
class BookContext:
    """Where the runner wants outputs: ``output_dir`` is the staged book's source folder."""

    output_dir: Path | None
    chapter: str | None
    profile: str

    @property
    def in_book(self) -> bool:
        return self.output_dir is not None


def context() -> BookContext:
    """The runner's context, read from the environment it gives the kernel."""
    out = os.environ.get(OUTPUT_DIR_ENV)
    return BookContext(
        output_dir=Path(out) if out else None,
        chapter=os.environ.get(CHAPTER_ENV),
        profile=os.environ.get(PROFILE_ENV, "interactive"),
    )


def _check_id(item_id: str, kind: str) -> None:
    if not ITEM_ID.match(item_id) or not item_id.startswith(kind):
        raise ValueError(f"item_id must look like '{kind}-<chapter>-<name>' (an INVENTORY.md ID), got {item_id!r}")


def _record(ctx: BookContext, item_id: str, kind: str, files: list[str], caption: str) -> None:
    records = ctx.output_dir / "records" / (ctx.chapter or "unknown")
    records.mkdir(parents=True, exist_ok=True)
    entry = {"id": item_id, "kind": kind, "chapter": ctx.chapter, "files": files, "caption": caption}
    (records / f"{item_id}.json").write_text(json.dumps(entry, indent=1))


def _glue_markdown(item_id: str, text: str) -> None:
    from myst_nb import glue

    glue(item_id, Markdown(text), display=False)


def figure(fig, item_id: str, caption: str, *, width: str = "100%") -> None:
    """Publish a matplotlib figure as numbered figure ``item_id`` with ``caption`` (MyST text).

    The chapter places it with a ``{glue:md}`` directive (``:format: myst``) naming ``item_id``.
    """
    import matplotlib.pyplot as plt

    _check_id(item_id, "fig")
    ctx = context()
    if not ctx.in_book:
        display(fig)
        plt.close(fig)
        return
    relative = f"figures/{item_id}.png"
    path = ctx.output_dir / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150, bbox_inches="tight")
    plt.close(fig)
    _record(ctx, item_id, "figure", [relative], caption)
    # A leading "/" makes Sphinx resolve the image against the book's source folder.
    _glue_markdown(item_id, f":::{{figure}} /{relative}\n:name: {item_id}\n:width: {width}\n\n{caption}\n:::\n")


def table(frame: pd.DataFrame, item_id: str, caption: str, *, floatfmt: str = ".4g") -> None:
    """Publish a DataFrame as numbered table ``item_id`` with ``caption``; CSV saved beside it.

    Missing values (NaN, None) show as a dash in the book and stay empty in the CSV.
    """
    _check_id(item_id, "tab")
    ctx = context()
    if not ctx.in_book:
        display(frame)
        return
    relative = f"tables/{item_id}.csv"
    path = ctx.output_dir / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    caption = " ".join(caption.split())  # a table caption is the directive's one-line argument
    _record(ctx, item_id, "table", [relative], caption)
    body = _escape_pipes(frame).to_markdown(index=False, floatfmt=floatfmt)
    body = MISSING_CELL.sub(lambda m: m.group(1) + "–" + m.group(2), body)
    _glue_markdown(item_id, f":::{{table}} {caption}\n:name: {item_id}\n:align: center\n\n{body}\n:::\n")


def _escape_pipes(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy whose text cells and headers can hold '|' inside a Markdown table."""
    escaped = frame.rename(columns=lambda c: str(c).replace("|", "\\|"))
    for column in escaped.columns:
        escaped[column] = escaped[column].map(lambda v: v.replace("|", "\\|") if isinstance(v, str) else v)
    return escaped


def value(name: str, number: float) -> float:
    """Glue a number for use in prose: ``{glue:text}`name:.3f``` prints it with that format."""
    from myst_nb import glue

    number = float(number)
    glue(name, number, display=False)
    return number
