import shutil
import textwrap
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module of small models: a second thread only waits on the first,
    and on a busy machine it spins. Use with ``pytestmark = pytest.mark.usefixtures(...)``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def float64_default():
    """float64 as torch's default dtype for one test; the previous default is restored."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


# A one-page book for the book machinery's tests: a figure, a table, a verdict and a checked cell.
TINY_CHAPTER = textwrap.dedent(
    '''\
    ---
    jupytext:
      text_representation:
        extension: .md
        format_name: myst
    kernelspec:
      display_name: Python 3
      language: python
      name: python3
    ---

    # Tiny

    ```{code-cell} ipython3
    :tags: [parameters]

    seed = 0
    size = 3
    ```

    ```{code-cell} ipython3
    import matplotlib.pyplot as plt
    import pandas as pd
    from lyapbook import book
    fig, ax = plt.subplots()
    ax.plot(range(size))
    book.figure(fig, "fig-9-line", f"A line of {size} points.")
    book.table(pd.DataFrame({"n": [size]}), "tab-9-size", "The size.")
    book.judge("fig-1-1", "orbits", quantity="a distance", estimate=size, interval=(size - 1, size + 1))
    print(size * 2)
    ```

    ```{code-cell} ipython3
    :tags: [remove-cell, nbval-check-output]

    with book.checks("size") as check:
        check.equal("twice the size", size * 2)
        check.estimate("a measured number", 1.0 + 0.001 * size, se=0.01, what="by fiat")
    ```

    ```{glue:md} fig-9-line
    :format: myst
    ```

    ```{glue:md} tab-9-size
    :format: myst
    ```

    See {numref}`fig-9-line` and {numref}`tab-9-size` ({cite}`vogt2023`).
    '''
)


@pytest.fixture
def tiny_book(tmp_path):
    (tmp_path / "chapters").mkdir()
    (tmp_path / "chapters" / "09_tiny.md").write_text(TINY_CHAPTER)
    (tmp_path / "chapters" / "profiles.yml").write_text("ci:\n  09_tiny:\n    size: 5\n")
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: intro\nchapters:\n  - file: chapters/09_tiny\n")
    for name in ("_config.yml", "references.bib"):
        shutil.copy2(ROOT / name, tmp_path / name)
    (tmp_path / "intro.md").write_text("# Tiny book\n\n```{bibliography}\n```\n")
    return tmp_path
