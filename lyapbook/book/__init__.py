"""The book machinery: profiles, the papermill runner, the manifest, and the helpers chapters
call to publish figures and tables (:func:`figure`, :func:`table`, :func:`value`)."""

from .publish import context, figure, table, value

__all__ = ["context", "figure", "table", "value"]
