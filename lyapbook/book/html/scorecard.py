"""The reproduction scorecard: the ``{scorecard}`` directive builds it from the manifest.

For every claim that the chapters judged (:func:`lyapbook.book.judge`), by chapter: the claim,
its verdict and why, our number with its 95 % interval and the scale it was judged at, and the
dissertation's statement, with a link to the figure or table. Above each chapter's table, a tally
by verdict; above everything, the book-wide tally. Items of ``lyapbook/book/inventory.yml`` that
this build did not make are listed as such. ``{verdict-rules}`` prints the rule behind each verdict
word, from :data:`lyapbook.book.verdicts.RULES`. Nothing on the page is typed: it is rebuilt from
``manifest.json`` (in the book's source folder, written by the runner) whenever the book is
rendered. ``{verdict}`reproduced``` marks a verdict word with its colour class (the word is
always written: colour is never the only signal).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.util.docutils import SphinxDirective

from ..inventory import INVENTORY_FILE, Inventory, InventoryItem, load_inventory
from ..verdicts import RULES, VERDICTS

__all__ = ["ScorecardDirective", "VerdictRulesDirective", "scorecard_markdown", "verdict_class", "setup"]

NOT_BUILT = "not built in this build"
NO_VERDICT = "built; no claim judged"


def verdict_class(verdict: str) -> str:
    """The CSS class of a verdict word: ``verdict-reproduced``, ``verdict-not-testable-here``, ..."""
    return "verdict-" + re.sub(r"[^a-z]+", "-", verdict.lower()).strip("-")


def _cell(text: object) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _number(x: float) -> str:
    return f"{x:.3g}"


def _link(item: InventoryItem, entry: dict, record: dict | None = None) -> str:
    """The item's figure or table; for a verdict judged on another page (e.g. on the authors'
    published data), that page."""
    page = (record or {}).get("page", entry["chapter"])
    if entry.get("kind") in ("figure", "table") and page == entry["chapter"]:
        return f"{{numref}}`{item.id}` (`{item.id}`)"
    return f"`{item.id}` ({{doc}}`page </chapters/{page}>`)"


def _ours(record: dict) -> str:
    if record.get("estimate") is None:
        return f"– ({record['scale']})"
    interval = record.get("interval")
    spread = interval and interval[0] != interval[1]  # a number without sampling noise has no interval to show
    text = _number(record["estimate"]) + (f" [{_number(interval[0])}, {_number(interval[1])}]" if spread else "")
    count = f", n = {record['n']} {record.get('unit') or ''}".rstrip() if record.get("n") else ""
    return f"{text} ({record['scale']}{count})"


def _tally(records: list[dict]) -> str:
    counts = Counter(r["verdict"] for r in records)
    return " · ".join(f"{{verdict}}`{v}` {counts[v]}" for v in VERDICTS if counts[v]) or "no claim judged"


def scorecard_markdown(inventory: Inventory, manifest: dict, chapter: int | None = None) -> list[str]:
    """MyST Markdown lines of the scorecard for ``manifest`` (a build's manifest.json).

    With ``chapter`` (e.g. ``2``), only that chapter's tally and table: the summary a chapter
    shows at its end.
    """
    items = manifest.get("items", {})
    if chapter is not None:
        if chapter not in inventory.chapters:
            raise ValueError(f"scorecard: no chapter {chapter!r} in the inventory; chapters are "
                             f"{', '.join(map(str, inventory.chapters))}")
        return _chapter_lines(inventory, items, chapter)
    records = [r for entry in items.values() for r in entry.get("verdicts", [])]
    built = sum(1 for item in inventory.items if item.id in items)
    lines = [f"**{len(records)} claims judged on {built} of {len(inventory.items)} items** in this build (profile "
             f"`{manifest.get('profile', 'unknown')}`): {_tally(records)}.", ""]
    for number in inventory.chapters:
        lines += _chapter_lines(inventory, items, number, heading=True)
    return lines


def _chapter_lines(inventory: Inventory, items: dict, chapter: int, heading: bool = False) -> list[str]:
    chosen = [item for item in inventory.items if item.chapter == chapter]
    records = [r for item in chosen for r in items.get(item.id, {}).get("verdicts", [])]
    title = f"**Chapter {chapter}: {inventory.chapters[chapter]}.** " if heading else ""
    lines = [f"{title}{len(records)} claims: {_tally(records)}.", "",
             "| Claim | Verdict | Ours [95 %] (scale) | Dissertation |", "|---|---|---|---|"]
    for item in chosen:
        entry = items.get(item.id)
        if not entry:
            lines.append(f"| `{item.id}`: {_cell(item.claim)} | *{NOT_BUILT}* | – | {_cell(item.paper)} |")
            continue
        claims = entry.get("verdicts") or []
        if not claims:
            lines.append(f"| {_link(item, entry)}: {_cell(item.claim)} | *{NO_VERDICT}* | – | {_cell(item.paper)} |")
        for record in claims:
            claim = f"{_link(item, entry, record)}: {_cell(record['text'])} *({_cell(record['quantity'])})*"
            why = _cell(record["why"]) + (f"; {_cell(record['control'])}" if record.get("control") else "")
            lines.append(f"| {claim} | {{verdict}}`{record['verdict']}`: {why} | {_cell(_ours(record))} | "
                         f"{_cell(record['paper'])} |")
    lines.append("")
    return lines


def verdict_role(name, rawtext, text, lineno, inliner, options=None, content=None):
    """``{verdict}`reproduced```: the word, in bold, with its colour class."""
    word = " ".join(text.split())
    if word not in VERDICTS:
        message = inliner.reporter.error(f"verdict: {word!r} is not one of {VERDICTS}", line=lineno)
        return [inliner.problematic(rawtext, rawtext, message)], [message]
    return [nodes.strong(rawtext, word, classes=["lyapbook-verdict", verdict_class(word)])], []


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


class VerdictRulesDirective(SphinxDirective):
    """``{verdict-rules}``: every verdict word with its rule, as a definition list."""

    has_content = False

    def run(self) -> list[nodes.Node]:
        lines = []
        for word, rule in RULES.items():
            lines += [f"{{verdict}}`{word}`", f": {rule}.", ""]
        container = nodes.container(classes=["lyapbook-verdict-rules"])
        self.state.nested_parse(StringList(lines, source="verdict-rules"), self.content_offset, container)
        return [container]


def setup(app) -> None:
    app.add_directive("scorecard", ScorecardDirective)
    app.add_directive("verdict-rules", VerdictRulesDirective)
    app.add_role("verdict", verdict_role)
