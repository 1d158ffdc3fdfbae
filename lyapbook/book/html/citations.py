"""One author-year style for citations, in the text and in the list of references.

sphinxcontrib-bibtex writes citations in the text as "[Vogt, 2023]" (``bibtex_reference_style:
author_year``), but labels the list with its formatting style's labels ("[Vog23]" for the
default ``alpha``). The formatting style ``lyapbook`` registered here is pybtex's ``plain``
(sorted by author, year, title) with labels written the way the text cites: "Vogt, 2023",
"Kaplan and Yorke, 1979", "Benettin et al., 1980", with a, b, ... after the year when two
entries would share a label.
"""

from __future__ import annotations

from collections import Counter
from string import ascii_lowercase

from pybtex.plugin import register_plugin
from pybtex.richtext import Text
from pybtex.style.formatting.plain import Style as PlainStyle
from pybtex.style.labels import BaseLabelStyle

__all__ = ["STYLE", "author_year_label", "AuthorYearLabels", "AuthorYearStyle", "setup"]

STYLE = "lyapbook"


def _last_name(person) -> str:
    return Text.from_latex(" ".join(person.prelast_names + person.last_names)).render_as("text")


def author_year_label(entry) -> str:
    """"Vogt, 2023" for one author, "A and B, ..." for two, "A, B, and C" for three, "A et al." beyond.

    The same names and separators as sphinxcontrib-bibtex's ``author_year`` citations in the text.
    """
    persons = entry.persons.get("author") or entry.persons.get("editor") or []
    names = [_last_name(p) for p in persons]
    if not names:
        who = entry.fields.get("key") or entry.fields.get("title", entry.key)
    elif len(names) == 1:
        who = names[0]
    elif len(names) == 2:
        who = f"{names[0]} and {names[1]}"
    elif len(names) == 3:
        who = f"{names[0]}, {names[1]}, and {names[2]}"
    else:
        who = f"{names[0]} et al."
    return f"{who}, {entry.fields.get('year', 'n.d.')}"


class AuthorYearLabels(BaseLabelStyle):
    """Author-year labels, with a letter after the year to tell equal labels apart."""

    def format_labels(self, sorted_entries):
        entries = list(sorted_entries)
        labels = [author_year_label(entry) for entry in entries]
        repeated = {label for label, count in Counter(labels).items() if count > 1}
        seen: Counter = Counter()
        for label in labels:
            if label in repeated:
                yield label + ascii_lowercase[seen[label]]
                seen[label] += 1
            else:
                yield label


class AuthorYearStyle(PlainStyle):
    default_label_style = "lyapbook-author-year"


register_plugin("pybtex.style.labels", "lyapbook-author-year", AuthorYearLabels, force=True)
register_plugin("pybtex.style.formatting", STYLE, AuthorYearStyle, force=True)


def _use_style(app, config) -> None:
    config.bibtex_default_style = STYLE


def setup(app) -> None:
    app.connect("config-inited", _use_style)
