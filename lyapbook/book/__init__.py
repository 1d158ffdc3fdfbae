"""The book machinery: profiles, the papermill runner, the manifest, and the helpers chapters
call to publish figures, tables, numbers and words (:func:`figure`, :func:`table`,
:func:`show_table`, :func:`value`, :func:`words`), to judge the dissertation's claims by the
package's rules (:func:`judge`, :func:`verdict_table`; :mod:`lyapbook.book.verdicts`), and to
state the values the test suite compares with their golden records (:func:`checks`)."""

from .golden import checks
from .publish import context, figure, show_table, table, value, words
from .verdicts import RULES, VERDICTS, judge, recorded, show_verdicts, verdict_table

__all__ = [
    "RULES", "VERDICTS", "checks", "context", "figure", "judge", "recorded", "show_table", "show_verdicts", "table", "value",
    "verdict_table", "words",
]
