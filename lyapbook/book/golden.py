"""Checked numbers: a chapter's key results compared with recorded golden values within their noise.

A chapter states what it checks in a hidden cell tagged ``nbval-check-output``::

    with book.checks("regimes") as check:
        check.estimate("lambda_1, sigma_V^2 = 100", l1, se=l1_se, what="over 8 runs")
        check.at_most("max |lyapbook - autograd|", error, 1e-12, why="float64 rounding")
        check.equal("blocks above the diagonal", 6)

Three kinds, each with the tolerance its nature allows:

- ``estimate``: a number with sampling noise. It passes when it lies within ``Z_SCORE`` (6)
  standard errors of the golden value; two independent realisations of the same estimate differ
  by more with probability 2e-5. A floor (``rounding``, by default 1e-6 of the value) covers
  numbers whose noise is only rounding. An explicit ``tolerance`` with its ``why`` serves
  numbers whose noise is not a standard error (a grid step, a bootstrap). Each estimate has a
  *regime*, the range of values that mean the same thing (by default: the same sign); a golden
  whose tolerance reaches outside its regime would accept another regime's value and is refused.
- ``at_most``: an error that must stay below a bound set by floating-point precision.
- ``equal``: a count, a category or a truth value, compared exactly.

How a check group behaves depends on ``$LYAPBOOK_CHECKS``, which the book's tooling sets:
``compare`` (the test suite: the values are compared with ``$LYAPBOOK_GOLDEN``, a failure raises
:class:`CheckFailure` naming both values and the tolerance, and the cell prints a summary that
depends on the golden file alone, which nbval compares); ``record`` (``make golden``: the records
are emitted for the recorder); unset (a reader's run: the checked values are listed).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from IPython.display import display

__all__ = [
    "CHECKS_ENV", "GOLDEN_ENV", "MIME", "Z_SCORE", "Check", "CheckFailure", "CheckGroup", "checks",
    "golden_file", "read_golden", "write_golden", "summary",
]

CHECKS_ENV = "LYAPBOOK_CHECKS"
GOLDEN_ENV = "LYAPBOOK_GOLDEN"
MIME = "application/vnd.lyapbook.checks+json"
Z_SCORE = 6.0
KINDS = ("estimate", "at_most", "equal")
DEFAULT_ROUNDING = 1e-6  # relative: float64 results with a little amplification of rounding


class CheckFailure(AssertionError):
    """A checked value moved further from its golden value than its tolerance allows."""


@dataclass(frozen=True)
class Check:
    """One checked value and how it may vary.

    ``tolerance``: for an estimate, the largest allowed |new - golden|; for ``at_most``, the bound;
    ``None`` for ``equal``. ``regime``: for an estimate, (low, high) with ``None`` for no limit.
    ``why``: where the tolerance comes from, in words.
    """

    name: str
    kind: str
    value: float | int | bool | str
    tolerance: float | None
    why: str
    regime: tuple[float | None, float | None] | None = None

    def accepts(self, new: object) -> bool:
        if self.kind == "equal":
            return new == self.value and type(new) is type(self.value)
        if not _is_number(new) or not math.isfinite(float(new)):
            return False
        if self.kind == "at_most":
            return float(new) <= self.tolerance
        return abs(float(new) - float(self.value)) <= self.tolerance

    def failure(self, new: object) -> str:
        """One line saying how ``new`` misses this check (both values, the tolerance and its reason)."""
        if self.kind == "equal":
            return f"{self.name}: golden {self.value!r}, here {new!r} (compared exactly: {self.why})"
        if self.kind == "at_most":
            return f"{self.name}: must be at most {self.tolerance:.3g} ({self.why}), here {_show(new)}"
        off = abs(float(new) - float(self.value)) / self.tolerance if _is_number(new) and self.tolerance else math.inf
        return (f"{self.name}: golden {_show(self.value)} ± {self.tolerance:.2g} ({self.why}), here {_show(new)}: "
                f"off by {off:.1f} tolerances")

    def regime_problem(self) -> str | None:
        """Why this golden is refused (its tolerance reaches another regime), or None."""
        if self.kind != "estimate":
            return None
        low, high = self.regime
        value, tol = float(self.value), self.tolerance
        if (low is not None and value - tol <= low) or (high is not None and value + tol >= high):
            return (f"{self.name}: golden {_show(value)} ± {tol:.2g} reaches outside its regime "
                    f"({_bound(low, '-inf')}, {_bound(high, 'inf')}): it would accept a value that means "
                    "something else")
        return None

    def line(self) -> str:
        """How the check reads in a summary, from the golden record alone."""
        if self.kind == "equal":
            return f"{self.name} = {self.value!r}"
        if self.kind == "at_most":
            return f"{self.name} <= {self.tolerance:.3g}"
        return f"{self.name} = {_show(self.value)} ± {self.tolerance:.2g}"

    def to_json(self) -> dict:
        record = asdict(self)
        if self.kind == "estimate":
            record["value"] = float(f"{float(self.value):.10g}")
            record["regime"] = list(self.regime)
        else:
            record.pop("regime")
        if self.kind == "at_most":  # for information only: the bound is what is compared
            record["value"] = float(f"{float(self.value):.3g}")
        if self.tolerance is not None:
            record["tolerance"] = _round_up(self.tolerance)
        return record

    @classmethod
    def from_json(cls, record: dict) -> Check:
        regime = record.get("regime")
        return cls(record["name"], record["kind"], record["value"], record.get("tolerance"), record["why"],
                   tuple(regime) if regime is not None else None)


def _is_number(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _show(x: object) -> str:
    return f"{float(x):.6g}" if _is_number(x) else repr(x)


def _bound(x: float | None, unbounded: str) -> str:
    return unbounded if x is None else f"{x:g}"


def _round_up(x: float) -> float:
    """Two significant digits, rounded away from zero: a stored tolerance never shrinks."""
    if x == 0 or not math.isfinite(x):
        return float(x)
    exponent = math.floor(math.log10(abs(x))) - 1
    scaled = math.ceil(abs(x) / 10.0**exponent - 1e-9)
    return math.copysign(float(f"{scaled * 10.0**exponent:.2g}"), x)


def summary(group: str, records: list[Check]) -> str:
    """The text a passing group prints: made from the golden records alone, so it is the same on every machine."""
    lines = [f"checks {group!r}: all {len(records)} within tolerance"]
    lines += [f"  {r.line()}" for r in records]
    return "\n".join(lines) + "\n"


def _scalar(value: object, name: str) -> float | int | bool | str:
    """A Python scalar from a number, a 0-d tensor or array, a bool or a string."""
    if isinstance(value, (bool, str)):
        return value
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:
        value = value.item()
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    raise TypeError(f"check {name!r}: value must be a number, a 0-d tensor, a bool or a string, got {type(value).__name__}")


class CheckGroup:
    """The checks of one cell; see the module docstring. Use as a context manager, or call :meth:`report`."""

    def __init__(self, group: str):
        if not isinstance(group, str) or not group.strip():
            raise ValueError(f"group must be a non-empty name for the cell's checks, got {group!r}")
        self.group = group
        self.records: list[Check] = []
        self.values: dict[str, object] = {}

    def _add(self, record: Check, value: object) -> None:
        if record.name in self.values:
            raise ValueError(f"check group {self.group!r}: the name {record.name!r} is used twice")
        self.records.append(record)
        self.values[record.name] = value

    def estimate(self, name: str, value: object, *, se: float | None = None, tolerance: float | None = None,
                 what: str = "", why: str = "", rounding: float = DEFAULT_ROUNDING,
                 regime: tuple[float | None, float | None] | str = "sign") -> None:
        """A number with noise: within ``Z_SCORE`` x ``se`` (``what``: over what the s.e. was taken), or
        within an explicit ``tolerance`` (``why``: its reason), never below ``rounding`` x max(1, |value|).

        ``regime``: (low, high), the values that mean the same as this one (``None`` for no limit), or
        ``"sign"`` (the default) for the value's own sign.
        """
        number = _scalar(value, name)
        if not _is_number(number) or not math.isfinite(float(number)):
            raise ValueError(f"check {name!r}: an estimate must be a finite number, got {value!r}")
        if (se is None) == (tolerance is None):
            raise ValueError(f"check {name!r}: give exactly one of se= (with what=) or tolerance= (with why=)")
        floor = rounding * max(1.0, abs(float(number)))
        if se is not None:
            se = float(_scalar(se, name))
            if not (math.isfinite(se) and se >= 0):
                raise ValueError(f"check {name!r}: se must be a finite number >= 0, got {se}")
            if not what:
                raise ValueError(f"check {name!r}: say over what the standard error was taken (what=)")
            width = max(Z_SCORE * se, floor)
            reason = f"{Z_SCORE:g} s.e. of {se:.2g} {what}" if Z_SCORE * se >= floor else f"rounding floor; s.e. {se:.2g} {what}"
        else:
            tolerance = float(tolerance)
            if not (math.isfinite(tolerance) and tolerance > 0):
                raise ValueError(f"check {name!r}: tolerance must be a finite number > 0, got {tolerance}")
            if not why:
                raise ValueError(f"check {name!r}: say where the tolerance comes from (why=)")
            width, reason = max(tolerance, floor), why
        if regime == "sign":
            if float(number) == 0.0:
                raise ValueError(f"check {name!r}: the value is 0, so it has no sign; give regime=(low, high)")
            regime = (0.0, None) if float(number) > 0 else (None, 0.0)
        else:
            low, high = regime
            regime = (None if low is None else float(low), None if high is None else float(high))
        self._add(Check(name, "estimate", float(number), width, reason, regime), float(number))

    def at_most(self, name: str, value: object, bound: float, *, why: str) -> None:
        """An error that must not exceed ``bound`` (``why``: the precision argument behind it)."""
        number = _scalar(value, name)
        if not _is_number(number):
            raise ValueError(f"check {name!r}: at_most needs a number, got {value!r}")
        if not why:
            raise ValueError(f"check {name!r}: say why the bound is {bound} (why=)")
        self._add(Check(name, "at_most", float(number), float(bound), why), float(number))

    def equal(self, name: str, value: object, *, why: str = "a count or a category") -> None:
        """A count, a category or a truth value, compared exactly."""
        scalar = _scalar(value, name)
        if isinstance(scalar, float):
            raise ValueError(f"check {name!r}: a float is never compared exactly; use estimate or at_most")
        self._add(Check(name, "equal", scalar, None, why), scalar)

    def report(self) -> None:
        """Compare, record or list the group's checks, as ``$LYAPBOOK_CHECKS`` says."""
        mode = os.environ.get(CHECKS_ENV, "")
        if mode == "compare":
            self._compare(Path(os.environ[GOLDEN_ENV]))
        elif mode == "record":
            stored = [Check.from_json(r.to_json()) for r in self.records]  # as the golden file will hold them
            problems = [p for p in (r.regime_problem() for r in stored) if p]
            if problems:
                raise ValueError(f"check group {self.group!r}: " + "; ".join(problems))
            records = {"group": self.group, "checks": [r.to_json() for r in self.records]}
            display({MIME: records, "text/plain": summary(self.group, self.records)}, raw=True)
        else:
            print(summary(self.group, self.records).replace("within tolerance", "checked"), end="")

    def _compare(self, path: Path) -> None:
        golden = {g["group"]: g for g in read_golden(path)} if path.is_file() else {}
        if self.group not in golden:
            raise CheckFailure(f"check group {self.group!r} has no golden record in {path}: run `make golden`")
        records = [Check.from_json(r) for r in golden[self.group]["checks"]]
        names, here = [r.name for r in records], list(self.values)
        if names != here:
            raise CheckFailure(
                f"check group {self.group!r}: the golden record checks {names}, this cell checks {here}; "
                "the cell changed since the golden values were recorded: run `make golden`"
            )
        failures = [r.failure(self.values[r.name]) for r in records if not r.accepts(self.values[r.name])]
        if failures:
            raise CheckFailure(f"{len(failures)} of {len(records)} checks of {self.group!r} failed:\n  " + "\n  ".join(failures))
        print(summary(self.group, records), end="")

    def __enter__(self) -> CheckGroup:
        return self

    def __exit__(self, kind, error, traceback) -> None:
        if kind is None:
            self.report()


def checks(group: str) -> CheckGroup:
    """The checks of one cell (a cell tagged ``nbval-check-output``): ``with book.checks("name") as check:``."""
    return CheckGroup(group)


def golden_file(root: Path, stem: str) -> Path:
    """Where a chapter's golden record lives: ``tests/golden/<stem>.json``."""
    return Path(root) / "tests" / "golden" / f"{stem}.json"


def read_golden(path: Path) -> list[dict]:
    """The groups of a chapter's golden file, in the order its checked cells run."""
    return json.loads(Path(path).read_text())["groups"]


def write_golden(path: Path, chapter: str, groups: list[dict]) -> None:
    """Write a chapter's golden file; the same groups always give the same bytes."""
    payload = {"chapter": chapter, "about": "checked values, their tolerances and reasons (lyapbook.book.golden)",
               "groups": groups}
    Path(path).write_text(json.dumps(payload, indent=1, sort_keys=True, ensure_ascii=False) + "\n")
