"""Visible code is at most 88 characters a line, on screen and in print (issue 14).

Every code cell a reader can see counts, folded ones included (a reader unfolds them and print
shows them); cells tagged ``remove-cell`` or ``remove-input`` are never shown. Code blocks in
the Markdown of every page of the book count too.
"""

import re
from pathlib import Path

import pytest

from lyapbook.book.chapters import discover, toc_pages

ROOT = Path(__file__).resolve().parents[1]
LIMIT = 88  # black's default; what fits the text column at the book's font size
HIDDEN = {"remove-cell", "remove-input"}
FENCE = re.compile(r"^\s*(`{3,}|~{3,})(.*)$")
CODE_DIRECTIVES = ("", "{code-block}", "{code}", "{code-cell}")  # fences that show code


def code_block_lines(text: str) -> list[str]:
    """Lines inside fenced code blocks (```python, ```{code-block} ...), not other directives."""
    lines, inside, fence, shown = [], False, "", False
    for line in text.split("\n"):
        match = FENCE.match(line)
        if not inside and match:
            inside, fence = True, match.group(1)
            word = match.group(2).strip().split(" ")[0] if match.group(2).strip() else ""
            shown = not word.startswith("{") or word in CODE_DIRECTIVES
        elif inside and match and match.group(1) == fence and not match.group(2).strip():
            inside = False
        elif inside and shown and not line.lstrip().startswith(":"):
            lines.append(line)
    return lines


def too_long(lines: list[str]) -> list[str]:
    return [f"{len(line)} chars: {line.strip()[:60]}..." for line in lines if len(line) > LIMIT]


@pytest.mark.parametrize("chapter", discover(ROOT), ids=lambda c: c.stem)
def test_visible_code_cells_fit_88_characters(chapter):
    long = []
    for cell in chapter.notebook().cells:
        if cell.cell_type == "code" and not HIDDEN & set(cell.metadata.get("tags", [])):
            long += too_long(cell.source.split("\n"))
    assert not long, f"{chapter.stem}: {len(long)} visible code line(s) over {LIMIT}:\n" + "\n".join(long)


PAGES = [p for p in toc_pages(ROOT) if p.is_file() and p.parent.name != "chapters"]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.stem)
def test_code_blocks_in_pages_fit_88_characters(page):
    long = too_long(code_block_lines(page.read_text()))
    assert not long, f"{page.name}: code blocks with lines over {LIMIT}:\n" + "\n".join(long)


def test_the_width_check_sees_a_long_line():
    assert too_long(["x" * 88, "y" * 89]) == [f"89 chars: {'y' * 60}..."]
    page = "text\n```bash\n" + "z" * 90 + "\n```\n\n```{math}\n" + "w" * 99 + "\n```\n"
    assert code_block_lines(page) == ["z" * 90]
