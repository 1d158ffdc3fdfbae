"""Phrases whose words follow their numbers, for prose that states a computed result.

A sentence glued into a page is written for every outcome, not for the one the author saw:
"none of the 6 networks", "1 of the 6 networks", "all 6 networks" rather than "0 of the 6
networks bring" or "in all but 0 %". Each function here returns the words for one number (or
a comparison) and is tested with the inputs flipped (``tests/test_prose.py``).
"""

from __future__ import annotations

__all__ = ["by_interval", "count_of", "listing", "share_of", "compare", "sign_word"]


def _plural(noun: str, plural: str | None) -> str:
    return plural or (noun[:-1] + "ies" if noun.endswith("y") and noun[-2:-1] not in "aeiou" else noun + "s")


def count_of(k: int, n: int, noun: str, plural: str | None = None) -> str:
    """``k`` of ``n`` things in words: "none of the 6 networks", "1 of the 6 networks", "all 6
    networks", "the one network" (n = 1), "4 of the 6 networks"."""
    k, n = int(k), int(n)
    if not 0 <= k <= n:
        raise ValueError(f"count_of: k must lie in [0, n] = [0, {n}], got {k}")
    many = _plural(noun, plural)
    if n == 1:
        return f"the one {noun}" if k == 1 else f"not the one {noun}"
    if k == 0:
        return f"none of the {n} {many}"
    if k == n:
        return f"all {n} {many}"
    return f"{k} of the {n} {many}"


def share_of(share: float, *, digits: int = 0) -> str:
    """A share in [0, 1] as words: "none", "all", or "37 %" (never "0 %" or "100 %" for what is not)."""
    share = float(share)
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"share_of: share must lie in [0, 1], got {share}")
    if share == 0.0:
        return "none"
    if share == 1.0:
        return "all"
    percent = 100 * share
    text = f"{percent:.{digits}f}"
    if float(text) == 0.0:
        return f"under {10 ** -digits:g} %"
    if float(text) == 100.0:
        return f"over {100 - 10 ** -digits:g} %"
    return f"{text} %"


def compare(a: float, b: float, *, noise: float = 0.0, more: str = "more", less: str = "fewer",
            same: str = "about as many") -> str:
    """The word for ``a`` against ``b``: ``more``, ``less``, or ``same`` when they differ by at most
    ``noise`` (say, twice the standard error of the difference)."""
    if abs(float(a) - float(b)) <= noise:
        return same
    return more if a > b else less


def sign_word(value: float, positive: str, negative: str, zero: str | None = None, *, noise: float = 0.0) -> str:
    """``positive`` or ``negative`` by the sign of ``value``; ``zero`` (if given) within ``noise`` of 0."""
    if zero is not None and abs(float(value)) <= noise:
        return zero
    return positive if value > 0 else negative


def by_interval(low: float, high: float, *, above: str, below: str, includes: str, null: float = 0.0) -> str:
    """The words for where a 95 % interval lies against ``null``: ``above`` it, ``below`` it, or
    ``includes`` it (the interval holds the null, or touches it)."""
    low, high = float(low), float(high)
    if not low <= high:
        raise ValueError(f"by_interval: low must not exceed high, got [{low}, {high}]")
    if low > null:
        return above
    if high < null:
        return below
    return includes


def listing(items, *, empty: str = "none", conjunction: str = "and") -> str:
    """Items in words: "none", "a", "a and b", "a, b and c"."""
    items = [str(item) for item in items]
    if not items:
        return empty
    if len(items) == 1:
        return items[0]
    return f"{', '.join(items[:-1])} {conjunction} {items[-1]}"
