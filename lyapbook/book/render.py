"""Render the executed chapters to HTML with Jupyter Book, without executing them again."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from .chapters import Chapter
from .profiles import BookError
from .runner import build_dir, stage_book

__all__ = ["render_html"]


def render_html(root: Path, profile: str, chapters: list[Chapter]) -> Path:
    """Build ``_build/<profile>/_build/html`` with warnings as errors (``-W -n --keep-going``).

    Every chapter must have been executed under ``profile`` first (``run`` does that).
    """
    out = build_dir(root, profile)
    missing = [c.stem for c in chapters if not (out / "chapters" / f"{c.stem}.ipynb").is_file()]
    if missing:
        raise BookError(
            f"not executed yet under profile {profile!r}: {', '.join(missing)}; "
            f"run `python -m lyapbook.book run --profile {profile}` first"
        )
    stage_book(root, out)
    executable = Path(sys.executable).parent / "jupyter-book"
    command = [str(executable), "build", str(out), "--builder", "html", "-W", "-n", "--keep-going", "--quiet"]
    print(f"[lyapbook] rendering HTML: {' '.join(command[1:])}", flush=True)
    if subprocess.run(command).returncode != 0:
        raise BookError("jupyter-book build failed (warnings are errors): see the messages above")
    index = out / "_build" / "html" / "index.html"
    print(f"[lyapbook] book written to {index}", flush=True)
    return index
