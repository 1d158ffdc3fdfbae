"""Downloadable notebooks that open in Jupyter or Colab with their results, and run there.

The book renders executed notebooks whose figures and tables are glued (papermill records that
point at files the download does not carry) and whose prose holds MyST roles (``{glue:text}``,
``{numref}``, ``{cite}``) that plain Jupyter does not render. After the HTML is written, each
chapter's ``_sources/<page>.ipynb`` (what the page's download button serves) is replaced by a
*reader notebook*: the same cells, with

- every figure embedded as a PNG output of the cell that drew it and every table as a Markdown
  output of the cell that computed it, each captioned where the page places it;
- glued numbers, cross-references ("Fig. 1.2", "Eq. 1.5", "Exercise 1.1") and citations
  ("[Vogt, 2023]") written out as the page shows them;
- MyST directives turned into Jupyter Markdown (display maths with its number, admonitions and
  exercises as quotes);
- a first cell that installs lyapbook from the repository when it is missing (Colab).
"""

from __future__ import annotations

import base64
import copy
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import jupytext
import nbformat

__all__ = ["Resolver", "Glued", "reader_notebook", "myst_to_markdown", "setup"]

GLUE_PREFIX = "application/papermill.record/"
FENCE_OPEN = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|:{3,})\{(?P<name>[\w:.-]+)\}[ \t]*(?P<argument>.*)$")
OPTION = re.compile(r"^:(?P<key>[\w-]+):[ \t]*(?P<value>.*)$")
ROLE = re.compile(r"\{(?P<name>[\w:.-]+)\}`(?P<content>[^`]*)`")
TARGET = re.compile(r"^\([\w:.-]+\)=[ \t]*$", re.MULTILINE)
EXPLICIT = re.compile(r"^(?P<text>.*?)\s*<(?P<target>[^<>]+)>$", re.DOTALL)
ADMONITIONS = {"note", "tip", "hint", "important", "warning", "caution", "attention", "danger", "error", "seealso"}
DROPPED = {"bibliography", "tableofcontents", "index", "exercise-end", "solution-end"}


class Resolver(Protocol):
    """What the page shows for a cross-reference: the book's numbers and citation labels."""

    def numref(self, label: str) -> str: ...  # "Fig. 1.2", "Table 1.1", "Exercise 1.1"
    def section(self, label: str) -> str: ...  # a section's title
    def equation(self, label: str) -> str: ...  # "1.5"
    def cite(self, keys: list[str]) -> str: ...  # "[Vogt, 2023]"


@dataclass
class Glued:
    """The values a notebook glued, by name: {mime type: data}."""

    values: dict[str, dict[str, object]] = field(default_factory=dict)

    @classmethod
    def from_notebook(cls, notebook) -> "Glued":
        glued = cls()
        for cell in notebook.cells:
            for output in cell.get("outputs", []):
                name = _glue_name(output)
                if name:
                    glued.values[name] = {k[len(GLUE_PREFIX):]: v for k, v in output.get("data", {}).items()}
        return glued

    def text(self, spec: str) -> str:
        """``{glue:text}`name:format``` as the page prints it."""
        name, _, form = spec.partition(":")
        if name not in self.values:
            raise KeyError(f"no value glued under {name!r}")
        plain = str(self.values[name].get("text/plain", "")).strip()
        if not form:
            return plain
        try:
            return format(float(plain), form)
        except ValueError:
            return plain


def _glue_name(output) -> str | None:
    return (output.get("metadata") or {}).get("scrapbook", {}).get("name")


def _split_directive(lines: list[str]) -> tuple[dict[str, str], list[str]]:
    """Options (``:key: value`` lines or a ``---`` YAML block) and the content after them."""
    options: dict[str, str] = {}
    index = 0
    if lines and lines[0].strip() == "---":
        end = next((i for i in range(1, len(lines)) if lines[i].strip() == "---"), len(lines))
        for line in lines[1:end]:
            key, _, value = line.partition(":")
            options[key.strip()] = value.strip()
        index = end + 1
    else:
        while index < len(lines) and OPTION.match(lines[index].strip()):
            match = OPTION.match(lines[index].strip())
            options[match["key"]] = match["value"]
            index += 1
    return options, lines[index:]


def _quote(title: str, body: str) -> str:
    """A Markdown quote: the bold title, then the body (if any) after a blank quoted line."""
    lines = [f"**{title}**"] if title else []
    if body.strip():
        lines += [""] * bool(lines) + body.strip("\n").split("\n")
    return "\n".join(("> " + line).rstrip() for line in lines)


def _roles(text: str, resolver: Resolver, glued: Glued) -> str:
    def replace(match: re.Match) -> str:
        name, content = match["name"], match["content"]
        explicit = EXPLICIT.match(content)
        shown, target = (explicit["text"], explicit["target"]) if explicit else (None, content)
        if name == "glue:text" or name == "glue":
            return glued.text(content)
        if name == "numref":
            number = resolver.numref(target)
            return shown.replace("%s", number.split()[-1]) if shown else number
        if name == "ref":
            return shown or resolver.section(target)
        if name == "eq":
            return f"Eq. {resolver.equation(target)}"
        if name.startswith("cite"):
            return resolver.cite([key.strip() for key in content.split(",")])
        if name == "math":
            return f"${content}$"
        return shown or content  # index, term, doc, abbr, ...: the text the page shows

    return ROLE.sub(replace, text)


def myst_to_markdown(text: str, resolver: Resolver, glued: Glued, captions: dict[str, str] | None = None) -> str:
    """Jupyter Markdown for a cell of MyST Markdown (see the module docstring)."""
    captions = captions or {}
    lines = TARGET.sub("", text).split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        match = FENCE_OPEN.match(lines[i])
        if not match:
            out.append(lines[i])
            i += 1
            continue
        fence, indent = match["fence"], match["indent"]
        end = i + 1
        while end < len(lines) and not (
            lines[end].strip().startswith(fence[0] * len(fence)) and set(lines[end].strip()) == {fence[0]}
            and len(lines[end].strip()) >= len(fence)
        ):
            end += 1
        body = [line[len(indent):] if line.startswith(indent) else line for line in lines[i + 1 : end]]
        options, content = _split_directive(body)
        block = _directive(match["name"], match["argument"].strip(), options, "\n".join(content), resolver, glued, captions)
        out.extend(indent + line if line else line for line in block.split("\n"))
        i = end + 1
    text = _roles("\n".join(out), resolver, glued)
    return re.sub(r"\n{3,}", "\n\n", text).strip("\n")  # where dropped directives stood


def _directive(name, argument, options, content, resolver, glued, captions) -> str:
    def inner(text: str) -> str:
        return myst_to_markdown(text, resolver, glued, captions)

    if name in DROPPED:
        return ""
    if name == "math":
        label = options.get("label")
        tag = f" \\tag{{{resolver.equation(label)}}}" if label else ""
        return f"$$\n{content.strip()}{tag}\n$$"
    if name.startswith("glue"):
        return captions.get(argument, "")
    if name == "admonition":
        return _quote(argument, inner(content))
    if name in ADMONITIONS:
        return _quote(name.capitalize(), inner(" ".join([argument, content]).strip()))
    if name in ("exercise", "exercise-start"):
        label = options.get("label")
        title = resolver.numref(label) if label else "Exercise"
        return _quote(f"{title}" + (f": {argument}" if argument else ""), inner(content))
    if name in ("solution", "solution-start"):
        return _quote(f"Solution to {resolver.numref(argument)}", inner(content))
    if name in ("code-block", "code", "sourcecode"):
        return f"```{argument}\n{content}\n```"
    if name in ("figure", "image"):
        return f"![{inner(content) or argument}]({argument})"
    return inner(content)


def _figure_output(png: Path, caption: str) -> nbformat.NotebookNode:
    data = base64.b64encode(png.read_bytes()).decode("ascii")
    return nbformat.v4.new_output("display_data", data={"image/png": data, "text/plain": f"<Figure: {caption}>"})


def _table_output(glued_markdown: str) -> nbformat.NotebookNode:
    rows = [line for line in glued_markdown.split("\n") if line.startswith("|")]
    body = "\n".join(rows)
    return nbformat.v4.new_output("display_data", data={"text/markdown": body, "text/plain": body})


def _merge_streams(outputs: list) -> list:
    merged: list = []
    for output in outputs:
        previous = merged[-1] if merged else None
        if (
            output.get("output_type") == "stream" and previous is not None
            and previous.get("output_type") == "stream" and previous.get("name") == output.get("name")
        ):
            previous["text"] = previous["text"] + output["text"]
        else:
            merged.append(output)
    return merged


def _caption_of(markdown: str) -> str:
    """The caption of a glued ``{figure}`` or ``{table}`` block, as MyST text."""
    first = markdown.split("\n", 1)[0]
    table = re.match(r"^:{3,}\{table\}\s*(.*)$", first)
    if table:
        return table.group(1)
    lines = markdown.split("\n")
    _, content = _split_directive(lines[1:])
    return "\n".join(line for line in content if not line.startswith(":::")).strip()


def reader_notebook(
    notebook: nbformat.NotebookNode, resolver: Resolver, source_dir: Path, repository: str | None = None
) -> nbformat.NotebookNode:
    """The notebook a reader downloads: see the module docstring. ``notebook`` is not modified."""
    notebook = copy.deepcopy(notebook)
    glued = Glued.from_notebook(notebook)
    captions: dict[str, str] = {}
    for name, data in glued.values.items():
        markdown = data.get("text/markdown")
        if isinstance(markdown, str) and re.match(r"^:{3,}\{(figure|table)\}", markdown):
            caption = myst_to_markdown(_caption_of(markdown), resolver, glued)
            captions[name] = f"**{resolver.numref(name)}.** {caption}"

    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            cell.source = myst_to_markdown(cell.source, resolver, glued, captions)
            continue
        if cell.cell_type != "code":
            continue
        outputs = []
        for output in cell.get("outputs", []):
            name = _glue_name(output)
            if name is None:
                outputs.append(output)
            elif name in captions and name.startswith("fig-"):
                outputs.append(_figure_output(source_dir / "figures" / f"{name}.png", captions[name]))
            elif name in captions and name.startswith(("tab-", "eq-")):  # an equation check is a table
                outputs.append(_table_output(glued.values[name]["text/markdown"]))
        cell.outputs = _merge_streams(outputs)

    notebook.cells = [c for c in notebook.cells if c.cell_type != "markdown" or c.source.strip()]
    if repository:
        notebook.cells[1:1] = _setup_cells(repository)
    notebook.metadata.pop("papermill", None)
    return notebook


def _setup_cells(repository: str) -> list:
    note = (
        "*Downloaded from the lyapbook book with its results. To run it yourself, use an "
        "environment where `lyapbook` is installed (see the book's page \"Run it yourself\"); on "
        "Colab or elsewhere, the next cell installs it from the repository when it is missing.*"
    )
    code = (
        "import importlib.util, subprocess, sys\n\n"
        "if importlib.util.find_spec(\"lyapbook\") is None:  # e.g. on Colab\n"
        "    subprocess.check_call([sys.executable, \"-m\", \"pip\", \"install\", \"--quiet\",\n"
        f"                           \"lyapbook @ git+{repository}\"])"
    )
    return [nbformat.v4.new_markdown_cell(note), nbformat.v4.new_code_cell(code)]


class SphinxResolver:
    """Numbers and labels as the built HTML shows them, from the Sphinx environment."""

    def __init__(self, app) -> None:
        from .citations import author_year_label

        self.env, self.config = app.env, app.config
        self.std = app.env.get_domain("std")
        self._label = author_year_label
        self._entries = {}
        from pybtex.database import parse_file

        for name in getattr(app.config, "bibtex_bibfiles", []):
            self._entries.update(parse_file(str(Path(app.srcdir) / name)).entries)

    def _number(self, docname: str, node_id: str) -> tuple[str, str] | None:
        for figtype, numbers in self.env.toc_fignumbers.get(docname, {}).items():
            if node_id in numbers:
                return figtype, ".".join(str(n) for n in numbers[node_id])
        return None

    def numref(self, label: str) -> str:
        docname, node_id = self.std.anonlabels.get(label, (None, None))
        found = self._number(docname, node_id) if docname else None
        if not found:
            raise KeyError(f"no numbered item labelled {label!r}")
        figtype, number = found
        return self.config.numfig_format.get(figtype, "%s") % number

    def section(self, label: str) -> str:
        return self.std.labels.get(label, (None, None, label))[2]

    def equation(self, label: str) -> str:
        docname, _ = self.env.get_domain("math").equations.get(label, (None, None))
        found = self._number(docname, f"equation-{label}") if docname else None
        if not found:
            raise KeyError(f"no numbered equation labelled {label!r}")
        return found[1]

    def cite(self, keys: list[str]) -> str:
        return "[" + "; ".join(self._label(self._entries[key]) for key in keys) + "]"


def _write_reader_notebooks(app, exception) -> None:
    if exception is not None or app.builder.format != "html":
        return
    resolver = SphinxResolver(app)
    repository = app.config.html_theme_options.get("repository_url")
    for docname in sorted(app.env.found_docs):
        source = Path(app.env.doc2path(docname))
        if source.suffix != ".ipynb":
            continue
        notebook = nbformat.read(source, as_version=4)
        target = Path(app.outdir) / "_sources" / f"{docname}.ipynb"
        target.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(reader_notebook(notebook, resolver, Path(app.srcdir), repository), target)
        # The "download source" button serves the page as a Jupytext Markdown notebook.
        target.with_suffix(".md").write_text(jupytext.writes(notebook, fmt="md:myst"))


def setup(app) -> None:
    app.connect("build-finished", _write_reader_notebooks)
