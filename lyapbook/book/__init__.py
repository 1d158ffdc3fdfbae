"""The book machinery: profiles, the papermill runner, the manifest, and the helpers chapters
call to publish figures, tables, numbers and verdicts (:func:`figure`, :func:`table`,
:func:`show_table`, :func:`value`, :func:`words`, :func:`verdict` with :func:`judge_value` and :func:`judge_sign`,
and :func:`checks` for the values the test suite compares with their golden records)."""

from .golden import checks
from .publish import (
    VERDICTS, context, figure, judge_sign, judge_value, show_table, table, value, verdict, words,
)

__all__ = [
    "VERDICTS", "checks", "context", "figure", "judge_sign", "judge_value", "show_table", "table", "value",
    "verdict", "words",
]
