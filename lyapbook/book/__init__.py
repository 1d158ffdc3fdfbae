"""The book machinery: profiles, the papermill runner, the manifest, and the helpers chapters
call to publish figures, tables, numbers and verdicts (:func:`figure`, :func:`table`,
:func:`show_table`, :func:`value`, :func:`verdict` with :func:`judge_value` and :func:`judge_sign`)."""

from .publish import (
    VERDICTS, context, figure, judge_sign, judge_value, show_table, table, value, verdict,
)

__all__ = [
    "VERDICTS", "context", "figure", "judge_sign", "judge_value", "show_table", "table", "value",
    "verdict",
]
