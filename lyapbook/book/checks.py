"""Notebook checks: chapters at the ``ci`` profile, validated by nbval against golden outputs.

Cells tagged ``nbval-check-output`` print key numbers (rounded, seeded). ``record_golden``
executes every chapter at the ``ci`` profile and stores those cells' outputs in
``tests/golden/<chapter>.json``; ``prepare`` writes ``_build/nbval/<chapter>.ipynb`` with the
``ci`` parameters injected and the golden outputs in place, for ``pytest --nbval-lax``, which
re-executes each notebook and compares the checked cells.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import nbformat

from .chapters import Chapter
from .profiles import BookError, load_profiles, resolve_parameters
from .publish import CHAPTER_ENV, OUTPUT_DIR_ENV, PROFILE_ENV
from .runner import KERNEL_NAME

__all__ = ["CHECK_TAG", "prepare", "record_golden", "golden_path"]

CHECK_TAG = "nbval-check-output"
PROFILE = "ci"


def golden_path(root: Path, chapter: Chapter) -> Path:
    return root / "tests" / "golden" / f"{chapter.stem}.json"


def _fingerprint(source: str) -> str:
    return hashlib.sha256(source.strip().encode()).hexdigest()[:16]


def _checked_cells(notebook: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [c for c in notebook.cells if c.cell_type == "code" and CHECK_TAG in c.metadata.get("tags", [])]


def _parameterized(root: Path, chapter: Chapter) -> nbformat.NotebookNode:
    from papermill.parameterize import parameterize_notebook

    parameters = resolve_parameters(chapter, PROFILE, load_profiles(root))
    notebook = chapter.notebook()
    notebook.metadata.setdefault("papermill", {})
    return parameterize_notebook(notebook, parameters, kernel_name=KERNEL_NAME, language="python")


def prepare(root: Path, chapters: list[Chapter]) -> list[Path]:
    """Write the nbval notebooks; fail if a checked cell has no golden output."""
    out = root / "_build" / "nbval"
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for chapter in chapters:
        notebook = _parameterized(root, chapter)
        golden_file = golden_path(root, chapter)
        golden = json.loads(golden_file.read_text()) if golden_file.is_file() else {}
        for number, cell in enumerate(_checked_cells(notebook), start=1):
            cell.execution_count = number  # nbval ignores outputs of cells it thinks never ran
            key = _fingerprint(cell.source)
            if key not in golden:
                raise BookError(
                    f"{chapter.stem}: a cell tagged {CHECK_TAG} has no golden output in {golden_file.relative_to(root)} "
                    f"(new or edited cell starting {cell.source.strip().splitlines()[0]!r}); run `make golden`"
                )
            cell.outputs = [nbformat.from_dict(output) for output in golden[key]]
        path = out / f"{chapter.stem}.ipynb"
        nbformat.write(notebook, path)
        written.append(path)
    return written


def record_golden(root: Path, chapters: list[Chapter]) -> list[Path]:
    """Execute each chapter at the ``ci`` profile, as nbval will, and store its checked outputs."""
    import papermill

    written = []
    for chapter in chapters:
        notebook = _parameterized(root, chapter)
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / f"{chapter.stem}.ipynb"
            nbformat.write(notebook, path)
            saved = {key: os.environ.pop(key, None) for key in (OUTPUT_DIR_ENV, CHAPTER_ENV, PROFILE_ENV)}
            try:
                executed = papermill.execute_notebook(
                    str(path), str(path), kernel_name=KERNEL_NAME, cwd=folder, progress_bar=False
                )
            finally:
                os.environ.update({k: v for k, v in saved.items() if v is not None})
        golden = {}
        for cell in _checked_cells(executed):
            outputs = []
            for output in cell.outputs:
                if output.output_type == "stream" and output.name == "stdout":
                    outputs.append({"output_type": "stream", "name": "stdout", "text": output.text})
                elif output.output_type in ("execute_result", "display_data") and "text/plain" in output.data:
                    outputs.append({"output_type": "display_data", "metadata": {}, "data": {"text/plain": output.data["text/plain"]}})
            golden[_fingerprint(cell.source)] = outputs
        target = golden_path(root, chapter)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(golden, indent=1, sort_keys=True) + "\n")
        print(f"[lyapbook] {chapter.stem}: {len(golden)} checked cell(s) recorded in {target.relative_to(root)}")
        written.append(target)
    return written
