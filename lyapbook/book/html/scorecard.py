"""The reproduction scorecard: the ``{scorecard}`` directive builds it from the manifest.

For every item of ``lyapbook/book/inventory.yml``, by chapter: the dissertation's claim and
number, ours (with its 95% interval where there is one), the verdict that the chapter's code
recorded with :func:`lyapbook.book.verdict`, the profile that produced it, and a link to the
item. Items that no chapter has built in this build are listed as not built yet. Nothing on
the page is typed: it is rebuilt from ``manifest.json`` (in the book's source folder, written
by the runner) whenever the book is rendered.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.util.docutils import SphinxDirective

from ..inventory import INVENTORY_FILE, Inventory, InventoryItem, load_inventory
from ..publish import VERDICTS

__all__ = ["ScorecardDirective", "scorecard_markdown", "setup"]

NOT_BUILT = "not built yet"
NO_VERDICT = "built; no verdict recorded"


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _said(claim: str, paper: str) -> str:
    return f"{_cell(claim)}. *Paper:* {_cell(paper)}"


def _link(item: InventoryItem, entry: dict) -> str:
    if entry.get("kind") in ("figure", "table"):
        return f"{{numref}}`{item.id}` `{item.id}`"
    return f"`{item.id}` ({{doc}}`chapter </chapters/{entry['chapter']}>`)"


def _ours(claim: dict) -> str:
    interval = claim.get("interval")
    ours = _cell(claim["ours"])
    return f"{ours} (95%: {interval[0]:.3g} to {interval[1]:.3g})" if interval else ours


def scorecard_markdown(inventory: Inventory, manifest: dict, chapter: int | None = None) -> list[str]:
    """MyST Markdown lines of the scorecard for ``manifest`` (a build's manifest.json).

    With ``chapter`` (e.g. ``2``), only that chapter's table, without the book-wide tally: the
    summary table a chapter shows at its end.
    """
    items = manifest.get("items", {})
    if chapter is not None:
        if chapter not in inventory.chapters:
            raise ValueError(f"scorecard: no chapter {chapter!r} in the inventory; chapters are "
                             f"{', '.join(map(str, inventory.chapters))}")
        return _chapter_table(inventory, items, chapter)
    counts: Counter = Counter()
    built = 0
    for item in inventory.items:
        entry = items.get(item.id)
        if entry:
            built += 1
            counts.update(claim["verdict"] for claim in entry.get("verdicts", []))
    tally = ", ".join(f"{counts[v]} {v}" for v in VERDICTS if counts[v]) or "none yet"
    lines = [
        f"**{built} of {len(inventory.items)} items built** in this build (profile "
        f"`{manifest.get('profile', 'unknown')}`); claims judged: {tally}.",
        "",
    ]
    for chapter, title in inventory.chapters.items():
        lines += [f"**Chapter {chapter}: {title}**", "", *_chapter_table(inventory, items, chapter)]
    return lines


def _chapter_table(inventory: Inventory, items: dict, chapter: int) -> list[str]:
    lines = ["| Item | The dissertation | Ours | Verdict (profile) |", "|---|---|---|---|"]
    for item in (item for item in inventory.items if item.chapter == chapter):
        entry = items.get(item.id)
        if not entry:
            lines.append(f"| `{item.id}` | {_said(item.claim, item.paper)} | – | *{NOT_BUILT}* |")
            continue
        claims = entry.get("verdicts") or [None]
        for number, claim in enumerate(claims):
            first = _link(item, entry) if number == 0 else ""
            profile = f"(`{entry.get('profile', '?')}`)"
            if claim is None:
                said = _said(item.claim, item.paper)
                lines.append(f"| {first} | {said} | – | *{NO_VERDICT}* {profile} |")
            else:
                said = _said(claim["claim"], claim["paper"])
                lines.append(f"| {first} | {said} | {_ours(claim)} | **{claim['verdict']}** {profile} |")
    lines.append("")
    return lines


class ScorecardDirective(SphinxDirective):
    """``{scorecard}``: the scorecard of this build; ``:chapter: 2`` shows one chapter's table."""

    has_content = False
    option_spec = {"chapter": int}

    def run(self) -> list[nodes.Node]:
        manifest_path = Path(self.env.srcdir) / "manifest.json"
        self.env.note_dependency(str(manifest_path))
        self.env.note_dependency(str(INVENTORY_FILE))
        manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
        container = nodes.container(classes=["lyapbook-scorecard"])
        lines = scorecard_markdown(load_inventory(), manifest, self.options.get("chapter"))
        self.state.nested_parse(StringList(lines, source="scorecard"), self.content_offset, container)
        return [container]


def setup(app) -> None:
    app.add_directive("scorecard", ScorecardDirective)
