"""Helpers that chapters call to publish their figures, tables, numbers and verdicts.

Under the book runner (``python -m lyapbook.book``) each item is saved to the build folder
(PNG for figures, CSV for tables), recorded for the manifest, and glued as a MyST block with
its caption and its ID in ``lyapbook/book/inventory.yml`` as label, so that the chapter's prose
places it with ``{glue:md}`` and refers to it with ``{numref}``. :func:`record_verdict` stores
the verdicts that :func:`lyapbook.book.verdicts.judge` reaches, for the reproduction scorecard.
Run interactively
(Jupyter, Colab, papermill, nbval), the same calls simply show the figure or table and write
nothing.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from IPython.display import Markdown, display

__all__ = ["BookContext", "context", "figure", "table", "show_table", "value", "words", "record_verdict"]

OUTPUT_DIR_ENV = "LYAPBOOK_OUTPUT_DIR"
CHAPTER_ENV = "LYAPBOOK_CHAPTER"
PROFILE_ENV = "LYAPBOOK_PROFILE"
MISSING_CELL = re.compile(r"(?<=\|)(\s*)(?:nan|None|<NA>)(\s*)(?=\|)")  # a table cell holding only a missing value
ITEM_ID = re.compile(r"^(fig|tab|eq)-[0-9]+-[0-9a-z]+$")
SCROLL_CLASS = "lyapbook-scroll"  # a table that may scroll sideways, with a visible scroll bar


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


def _check_id(item_id: str, *kinds: str) -> None:
    if not ITEM_ID.match(item_id) or not item_id.startswith(tuple(f"{kind}-" for kind in kinds)):
        shapes = " or ".join(f"'{kind}-<chapter>-<name>'" for kind in kinds)
        raise ValueError(f"item_id must look like {shapes} (an ID of lyapbook/book/inventory.yml), got {item_id!r}")


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


def table(
    frame: pd.DataFrame, item_id: str, caption: str, *, floatfmt: str = ".4g", scroll: bool = False
) -> None:
    """Publish a DataFrame as numbered table ``item_id`` (``tab-...``, or ``eq-...`` for the
    numerical check of an equation) with ``caption``; CSV saved beside it.

    Missing values (NaN, None) show as a dash in the book and stay empty in the CSV. A table
    should fit the text column (round numbers, abbreviate headers, split it); ``scroll=True``
    lets one that cannot fit scroll sideways behind a visible scroll bar instead.
    """
    _check_id(item_id, "tab", "eq")  # an equation's numerical check is published as a table
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
    classes = f":class: {SCROLL_CLASS}\n" if scroll else ""
    _glue_markdown(item_id, f":::{{table}} {caption}\n:name: {item_id}\n:align: center\n{classes}\n{body}\n:::\n")


def show_table(frame: pd.DataFrame, title: str, *, floatfmt: str = ".4g") -> None:
    """Show a DataFrame that is not an inventory item: a bold title, then its rows, no index.

    Use it for any table a chapter displays besides its numbered items (a plain ``frame`` at
    the end of a cell shows the index and no title).
    """
    if not title.strip():
        raise ValueError("title must say what the table shows, got an empty string")
    body = _escape_pipes(frame).to_markdown(index=False, floatfmt=floatfmt)
    body = MISSING_CELL.sub(lambda m: m.group(1) + "–" + m.group(2), body)
    display(Markdown(f"**{' '.join(title.split())}**\n\n{body}\n"))


def _escape_pipes(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy whose text cells and headers can hold '|' inside a Markdown table."""
    escaped = frame.rename(columns=lambda c: str(c).replace("|", "\\|"))
    for column in escaped.columns:
        escaped[column] = escaped[column].map(lambda v: v.replace("|", "\\|") if isinstance(v, str) else v)
    return escaped


def value(name: str, number: float) -> float:
    """Glue a number for use in prose: ``{glue:text}`name:.3f``` prints it with that format.

    Outside the book the number is only returned (myst-nb need not be installed).
    """
    number = float(number)
    if context().in_book:
        from myst_nb import glue

        glue(name, number, display=False)
    return number


def words(name: str, text: str) -> str:
    """Glue a phrase for use in prose: ``{glue:md}`name``` places it (Markdown allowed).

    For sentences whose wording depends on the numbers (which statistic was strongest, whether a
    difference is within the noise): the chapter's code chooses the words, the prose never
    asserts what the computation did not show. Outside the book the text is only returned.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a string, got {type(text).__name__}; use book.value for numbers")
    if context().in_book:
        from IPython.display import Markdown
        from myst_nb import glue

        glue(name, Markdown(text), display=False)
    return text


def record_verdict(record: dict) -> None:
    """Write one verdict record (from :func:`lyapbook.book.verdicts.judge`) for the manifest and the
    scorecard; outside the book runner nothing is written. A claim recorded again replaces itself."""
    ctx = context()
    if not ctx.in_book:
        return
    folder = ctx.output_dir / "records" / (ctx.chapter or "unknown") / "verdicts"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{record['item']}.json"
    claims = json.loads(path.read_text()) if path.is_file() else []
    claims = [c for c in claims if (c["claim"], c["scale"]) != (record["claim"], record["scale"])] + [record]
    path.write_text(json.dumps(claims, indent=1))
