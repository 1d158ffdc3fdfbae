"""The book's chapters: where they are, in what order, and which parameters they take."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import jupytext
import nbformat
import yaml

__all__ = ["Chapter", "book_root", "discover", "toc_pages", "read_notebook", "parameters_cell"]

PARAMETERS_TAG = "parameters"


@dataclass(frozen=True)
class Chapter:
    """One Jupytext chapter: ``stem`` (e.g. ``01_lyapunov_maps``) is its name everywhere."""

    stem: str
    source: Path

    def notebook(self) -> nbformat.NotebookNode:
        return read_notebook(self.source)

    def defaults(self) -> dict[str, object]:
        """The chapter's parameters cell: its ``teaching`` defaults, by name."""
        return parameters_cell(self.notebook())

    @property
    def number(self) -> str:
        """The chapter number of this page: ``02`` for both ``02_rnn_maps`` and ``02b_rnn_training``."""
        return self.stem[:2]

    @property
    def runs_alone(self) -> bool:
        """Front matter ``lyapbook: {runs_alone: true}``: the page times something, so no other
        page may run beside it."""
        options = self.notebook().metadata.get("lyapbook", {})
        return bool(options.get("runs_alone", False)) if isinstance(options, dict) else False


def book_root(start: Path | None = None) -> Path:
    """The folder holding ``_toc.yml``: ``start`` or the current folder or one of their parents."""
    candidates = [start] if start else [Path.cwd(), Path(__file__).resolve().parents[2]]
    for candidate in candidates:
        for folder in (candidate, *candidate.parents):
            if (folder / "_toc.yml").is_file() and (folder / "chapters").is_dir():
                return folder
    raise FileNotFoundError("no book found: run from the repository (the folder with _toc.yml and chapters/)")


def toc_pages(root: Path) -> list[Path]:
    """Every page of _toc.yml (root included) as a ``.md`` path, in order."""
    toc = yaml.safe_load((root / "_toc.yml").read_text())
    files: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("file"), str):
                files.append(node["file"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(toc)
    names = [toc["root"], *files] if isinstance(toc.get("root"), str) else files
    return [root / (name if name.endswith(".md") else name + ".md") for name in names]


def discover(root: Path) -> list[Chapter]:
    """Executable chapters in table-of-contents order (every ``chapters/*.md`` listed in _toc.yml)."""
    return [
        Chapter(stem=path.stem, source=path)
        for path in toc_pages(root)
        if path.parent.name == "chapters" and path.is_file()
    ]


def read_notebook(path: Path) -> nbformat.NotebookNode:
    """Read a Jupytext MyST chapter as a notebook (no outputs); every cell gets a tags list."""
    notebook = jupytext.read(path, fmt="md:myst")
    for cell in notebook.cells:
        cell.metadata.setdefault("tags", [])
    return notebook


def parameters_cell(notebook: nbformat.NotebookNode) -> dict[str, object]:
    """Names and literal values assigned in the cell tagged ``parameters``."""
    cells = [c for c in notebook.cells if c.cell_type == "code" and PARAMETERS_TAG in c.metadata.get("tags", [])]
    if len(cells) != 1:
        raise ValueError(f"a chapter needs exactly one code cell tagged '{PARAMETERS_TAG}', found {len(cells)}")
    values: dict[str, object] = {}
    for node in ast.parse(cells[0].source).body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Name):
                    values[target.id] = ast.literal_eval(node.value)
    return values
