"""Reader notebooks: MyST prose turned into Jupyter Markdown, results embedded as outputs."""

import base64
from pathlib import Path

import nbformat
import pytest

from lyapbook.book.html.downloads import Glued, myst_to_markdown, reader_notebook
from lyapbook.book.html.links import repoint

PIXEL = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
)


class FakeResolver:
    numbers = {"fig-9-a": "Fig. 9.1", "tab-9-b": "Table 9.1", "ex-9-one": "Exercise 9.1"}

    def numref(self, label):
        return self.numbers[label]

    def section(self, label):
        return {"ch-nine": "Nine"}[label]

    def equation(self, label):
        return {"eq-nine": "9.2"}[label]

    def cite(self, keys):
        return "[" + "; ".join({"vogt2023": "Vogt, 2023", "sprott2003": "Sprott, 2003"}[k] for k in keys) + "]"


GLUED = Glued({"gap": {"text/plain": "0.0012345"}, "name": {"text/plain": "'lorenz'"}})


@pytest.mark.parametrize(
    "myst, markdown",
    [
        ("See {numref}`fig-9-a` and {numref}`Table %s <tab-9-b>`.", "See Fig. 9.1 and Table 9.1."),
        ("Gap {glue:text}`gap:.2e`, as {cite}`vogt2023,sprott2003` says.", "Gap 1.23e-03, as [Vogt, 2023; Sprott, 2003] says."),
        ("By {eq}`eq-nine` in {ref}`ch-nine`; {ref}`that section <ch-nine>`.", "By Eq. 9.2 in Nine; that section."),
        ("(ch-nine)=\n# Nine\n\nThe {index}`Lyapunov exponent` and $x$.", "# Nine\n\nThe Lyapunov exponent and $x$."),
        ("```{math}\n:label: eq-nine\nx = 1\n```", "$$\nx = 1 \\tag{9.2}\n$$"),
        (":::{admonition} Note this\n:class: tip\n\nBody {numref}`fig-9-a`.\n:::", "> **Note this**\n>\n> Body Fig. 9.1."),
        (":::{exercise} Title\n:label: ex-9-one\n\nDo it.\n:::", "> **Exercise 9.1: Title**\n>\n> Do it."),
        (":::{solution-start} ex-9-one\n:class: dropdown\n:::\n\nBecause.", "> **Solution to Exercise 9.1**\n\nBecause."),
        (":::{solution-end}\n:::\n\n```{index} QR method\n```\nText.", "Text."),
        ("```python\nprint(1)\n```", "```python\nprint(1)\n```"),
    ],
)
def test_myst_becomes_jupyter_markdown(myst, markdown):
    assert myst_to_markdown(myst, FakeResolver(), GLUED) == markdown


def test_an_unknown_glued_name_is_an_error():
    with pytest.raises(KeyError, match="no value glued under 'nothing'"):
        myst_to_markdown("{glue:text}`nothing:.3f`", FakeResolver(), GLUED)


def _glue_output(name, mime, data):
    return nbformat.v4.new_output(
        "display_data", data={f"application/papermill.record/{mime}": data},
        metadata={"scrapbook": {"name": name, "mime_prefix": "application/papermill.record/"}},
    )


def test_reader_notebook_embeds_figures_and_tables_and_installs_itself(tmp_path: Path):
    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / "fig-9-a.png").write_bytes(PIXEL)
    figure_md = ":::{figure} /figures/fig-9-a.png\n:name: fig-9-a\n:width: 100%\n\nA *pixel*, {cite}`vogt2023`.\n:::\n"
    table_md = ":::{table} Sizes.\n:name: tab-9-b\n:align: center\n\n| n |\n|--:|\n| 3 |\n:::\n"
    code = nbformat.v4.new_code_cell("book.figure(...)")
    code.outputs = [
        nbformat.v4.new_output("stream", name="stdout", text="one\n"),
        nbformat.v4.new_output("stream", name="stdout", text="two\n"),
        _glue_output("fig-9-a", "text/markdown", figure_md),
        _glue_output("tab-9-b", "text/markdown", table_md),
        _glue_output("gap", "text/plain", "0.5"),
    ]
    notebook = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# Nine"),
        code,
        nbformat.v4.new_markdown_cell("```{glue:md} fig-9-a\n:format: myst\n```\n\nSee {numref}`fig-9-a`, gap {glue:text}`gap:.1f`."),
    ])
    reader = reader_notebook(notebook, FakeResolver(), tmp_path, "https://github.com/owner/repo")
    assert "pip" in reader.cells[2].source and "git+https://github.com/owner/repo" in reader.cells[2].source
    outputs = reader.cells[3].outputs
    assert [o.output_type for o in outputs] == ["stream", "display_data", "display_data"]
    assert outputs[0].text == "one\ntwo\n"
    assert base64.b64decode(outputs[1].data["image/png"]) == PIXEL
    assert outputs[2].data["text/markdown"] == "| n |\n|--:|\n| 3 |"
    assert reader.cells[4].source == "**Fig. 9.1.** A *pixel*, [Vogt, 2023].\n\nSee Fig. 9.1, gap 0.5."
    assert notebook.cells[1].outputs[2].metadata["scrapbook"]["name"] == "fig-9-a", "the input is unchanged"


@pytest.mark.parametrize(
    "url, expected",
    [
        ("https://colab.research.google.com/github/o/r/blob/main/chapters/01_x.ipynb",
         "https://colab.research.google.com/github/o/r/blob/gh-pages/_sources/chapters/01_x.ipynb"),
        ("https://mybinder.org/v2/gh/o/r/main?urlpath=lab/tree/chapters/01_x.ipynb",
         "https://mybinder.org/v2/gh/o/r/main?urlpath=lab/tree/chapters/01_x.md"),
        ("https://github.com/o/r/edit/main/chapters/01_x.ipynb", "https://github.com/o/r/edit/main/chapters/01_x.md"),
        ("https://github.com/o/r/issues/new?title=x", "https://github.com/o/r/issues/new?title=x"),
    ],
)
def test_launch_and_edit_links_point_at_files_that_exist(url, expected):
    assert repoint(url, "chapters/01_x", "main") == expected

