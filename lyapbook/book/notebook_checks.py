"""Notebook checks: chapters at the ``ci`` profile, their checked values against golden records.

A cell tagged ``nbval-check-output`` states its checks with :func:`lyapbook.book.checks`
(see :mod:`lyapbook.book.golden`): values, tolerances and the reason for each. Three commands
use them:

- :func:`record_golden` (``make golden``) executes every chapter at the ``ci`` profile and
  writes its checks to ``tests/golden/<chapter>.json``: one group per checked cell, in order.
- The ``ci`` book build of ``make test`` runs each chapter as it is, comparing every group with
  its golden record (:func:`compare_environment`); a check outside its tolerance stops the page
  with both values.
- :func:`prepare` writes ``_build/nbval/<chapter>.ipynb`` for ``pytest --nbval-lax``: the ``ci``
  parameters injected, the random draws perturbed at the 1e-12 level (a stand-in for another
  machine's rounding, :mod:`lyapbook.perturbation`), each checked cell comparing its values and
  printing a summary made from the golden file alone, which nbval compares with the summary
  stored in the prepared notebook.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import nbformat

from ..perturbation import PERTURB_ENV
from .chapters import Chapter
from .golden import CHECKS_ENV, GOLDEN_ENV, MIME, Check, golden_file, read_golden, summary, write_golden
from .profiles import BookError, load_profiles, resolve_parameters
from .publish import CHAPTER_ENV, OUTPUT_DIR_ENV, PROFILE_ENV
from .runner import KERNEL_NAME

__all__ = ["CHECK_TAG", "NBVAL_PERTURBATION", "compare_environment", "golden_path", "prepare", "record_golden"]

CHECK_TAG = "nbval-check-output"
PROFILE = "ci"
NBVAL_PERTURBATION = "1e-12"


def golden_path(root: Path, chapter: Chapter) -> Path:
    return golden_file(root, chapter.stem)


def compare_environment(root: Path, chapter: Chapter) -> dict[str, str]:
    """The kernel environment that makes a chapter's checked cells compare with its golden file."""
    return {CHECKS_ENV: "compare", GOLDEN_ENV: str(golden_path(root, chapter).resolve())}


def _checked_cells(notebook: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [c for c in notebook.cells if c.cell_type == "code" and CHECK_TAG in c.metadata.get("tags", [])]


def _parameterized(root: Path, chapter: Chapter) -> nbformat.NotebookNode:
    from papermill.parameterize import parameterize_notebook

    parameters = resolve_parameters(chapter, PROFILE, load_profiles(root))
    notebook = chapter.notebook()
    notebook.metadata.setdefault("papermill", {})
    return parameterize_notebook(notebook, parameters, kernel_name=KERNEL_NAME, language="python")


def _setup_cell(environment: dict[str, str]) -> nbformat.NotebookNode:
    """A first cell that sets the kernel's environment before anything imports lyapbook."""
    lines = ["import os"] + [f"os.environ[{key!r}] = {value!r}" for key, value in environment.items()]
    return nbformat.v4.new_code_cell("\n".join(lines), metadata={"tags": ["nbval-setup"]})


def prepare(root: Path, chapters: list[Chapter]) -> list[Path]:
    """Write the nbval notebooks (perturbed, comparing); fail if a checked cell has no golden record."""
    out = root / "_build" / "nbval"
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for chapter in chapters:
        notebook = _parameterized(root, chapter)
        golden_file = golden_path(root, chapter)
        groups = read_golden(golden_file) if golden_file.is_file() else []
        cells = _checked_cells(notebook)
        for number, cell in enumerate(cells, start=1):
            if number > len(groups) or f'"{groups[number - 1]["group"]}"' not in cell.source:
                raise BookError(
                    f"{chapter.stem}: checked cell {number} (tagged {CHECK_TAG}, starting "
                    f"{cell.source.strip().splitlines()[0]!r}) has no golden record in "
                    f"{golden_file.relative_to(root)}; run `make golden`"
                )
            cell.execution_count = number  # nbval ignores outputs of cells it thinks never ran
            group = groups[number - 1]
            text = summary(group["group"], [Check.from_json(r) for r in group["checks"]])
            cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=text)]
        if len(groups) != len(cells):
            raise BookError(f"{chapter.stem}: {len(cells)} checked cells but {len(groups)} golden groups; run `make golden`")
        environment = {**compare_environment(root, chapter), PERTURB_ENV: NBVAL_PERTURBATION}
        notebook.cells.insert(0, _setup_cell(environment))
        path = out / f"{chapter.stem}.ipynb"
        nbformat.write(notebook, path)
        written.append(path)
    return written


def record_golden(root: Path, chapters: list[Chapter], *, folder: Path | None = None,
                  perturbation: str | None = None) -> list[Path]:
    """Execute each chapter at the ``ci`` profile, unperturbed, and store its checks.

    ``folder`` (default ``tests/golden``) and ``perturbation`` (a ``$LYAPBOOK_PERTURB`` level)
    serve a comparison of a perturbed run with the recorded one.
    """
    import papermill

    written = []
    for chapter in chapters:
        notebook = _parameterized(root, chapter)
        with tempfile.TemporaryDirectory() as scratch:
            path = Path(scratch) / f"{chapter.stem}.ipynb"
            nbformat.write(notebook, path)
            unset = (OUTPUT_DIR_ENV, CHAPTER_ENV, PROFILE_ENV, PERTURB_ENV, GOLDEN_ENV)
            saved = {key: os.environ.pop(key, None) for key in (*unset, CHECKS_ENV)}
            os.environ[CHECKS_ENV] = "record"
            if perturbation:
                os.environ[PERTURB_ENV] = perturbation
            try:
                executed = papermill.execute_notebook(
                    str(path), str(path), kernel_name=KERNEL_NAME, cwd=scratch, progress_bar=False
                )
            finally:
                os.environ.pop(CHECKS_ENV)
                os.environ.pop(PERTURB_ENV, None)
                os.environ.update({k: v for k, v in saved.items() if v is not None})
        groups = []
        for cell in _checked_cells(executed):
            found = [o.data[MIME] for o in cell.outputs if o.output_type == "display_data" and MIME in o.get("data", {})]
            if len(found) != 1:
                raise BookError(
                    f"{chapter.stem}: a cell tagged {CHECK_TAG} must report one group of checks "
                    f"(`with book.checks(\"name\") as check: ...`), this one reported {len(found)}: "
                    f"{cell.source.strip().splitlines()[0]!r}"
                )
            groups.append(found[0])
        names = [g["group"] for g in groups]
        if len(set(names)) != len(names):
            raise BookError(f"{chapter.stem}: check group names must be unique in a chapter, got {names}")
        target = golden_path(root, chapter) if folder is None else Path(folder) / f"{chapter.stem}.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        write_golden(target, chapter.stem, groups)
        print(f"[lyapbook] {chapter.stem}: {len(groups)} checked cell(s) recorded in {target}")
        written.append(target)
    return written
