"""Verdicts a reader can cite: one written rule per verdict word, applied once per claim and scale.

The dissertation's claims are listed, with what the dissertation reports, in
``lyapbook/book/inventory.yml`` (each item's ``claims``): a stable key, the claim in our words,
the dissertation's statement, and where the claim is an effect, its direction against a null and
the dissertation's size of it, all stated before anything is computed. A chapter measures the
quantity the claim is about, with a 95 % interval, and calls :func:`judge`; the rule below picks
the verdict from those numbers alone, and the record (claim, quantity, estimate and interval,
null, the dissertation's value, scale, number of networks or sequences, control or power,
verdict, why) goes to the build's manifest and the scorecard.

The rules, one per verdict word (:data:`RULES` holds them as the scorecard prints them):

- ``reproduced``: the interval excludes the null in the dissertation's direction and holds the
  dissertation's value (or lies within the tolerance stated with the claim). For a claim of a
  value without a null (an exact identity, a reference value): the interval holds the value.
- ``reproduced, smaller`` / ``reproduced, larger``: the direction holds (the null is excluded on
  the dissertation's side), the size does not (the interval excludes the dissertation's value).
- ``not reproduced at this scale``: the interval includes the null, or excludes it in the opposite
  direction at a setting that differs from the dissertation's; the record says whether an effect
  of the dissertation's size is excluded (the power statement).
- ``contradicted``: the interval excludes the null in the opposite direction at a setting that
  matches the claim's, or the claim is mathematics or physics shown false (scale ``exact``).
- ``not testable here``: the data cannot answer (a zoo without spread in the quantity judged, a
  positive control that fails); the reason is recorded.
- ``illustration``: an item that is true by construction or makes no claim; the reason is recorded.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass

__all__ = ["VERDICTS", "RULES", "SCALES", "Verdict", "decide", "judge", "recorded", "verdict_table", "show_verdicts"]

VERDICTS = ("reproduced", "reproduced, smaller", "reproduced, larger", "not reproduced at this scale",
            "contradicted", "not testable here", "illustration")
SCALES = ("exact", "published", "paper", "teaching", "ci", "interactive")
RULES = {
    "reproduced": "the 95 % interval excludes the null in the dissertation's direction and holds the dissertation's "
                  "value (or lies within the tolerance stated with the claim); a claimed value without a null: the "
                  "interval holds it",
    "reproduced, smaller": "the interval excludes the null in the dissertation's direction, but lies entirely "
                           "between the null and the dissertation's value",
    "reproduced, larger": "the interval excludes the null in the dissertation's direction, but lies entirely beyond "
                          "the dissertation's value",
    "not reproduced at this scale": "the interval includes the null (or excludes it the other way at a setting "
                                    "unlike the dissertation's); the record says whether an effect of the "
                                    "dissertation's size is excluded",
    "contradicted": "the interval excludes the null in the opposite direction at a setting that matches the "
                    "claim's, or the claim is mathematics or physics shown false",
    "not testable here": "the data cannot answer: no spread in the quantity judged, or a positive control that "
                         "fails; the reason is given",
    "illustration": "true by construction, or no claim to test; the reason is given",
}


@dataclass(frozen=True)
class Verdict:
    """One claim judged at one scale. ``interval`` is the 95 % interval of ``estimate`` (None only with a
    ``reason``: not testable, or an illustration). ``power`` is the statement about the smallest
    effect the interval excludes, for a claim of an effect that was not reproduced."""

    item: str
    claim: str
    text: str
    quantity: str
    estimate: float | None
    interval: tuple[float, float] | None
    null: float | None
    direction: int | None
    paper: str
    paper_value: float | None
    scale: str
    n: int | None
    unit: str | None
    verdict: str
    why: str
    control: str | None = None
    reason: str | None = None

    def to_json(self) -> dict:
        record = asdict(self)
        record["interval"] = list(self.interval) if self.interval else None
        return record


def _fmt(x: float, resolution: float | None = None) -> str:
    """A number to 3 significant digits, or finer when a tolerance asks for it."""
    if resolution and resolution > 0 and x != 0:
        digits = max(3, int(math.floor(math.log10(abs(x)))) - int(math.floor(math.log10(resolution))) + 1)
        return f"{x:.{digits}g}"
    return f"{x:.3g}"


def _side(lo: float, hi: float, null: float, direction: int) -> int:
    """+1: the interval excludes the null on the claimed side; -1: on the other side; 0: it holds the null."""
    if lo > null:
        return 1 if direction > 0 else -1
    if hi < null:
        return 1 if direction < 0 else -1
    return 0


def decide(*, estimate: float, interval: tuple[float, float], null: float | None, direction: int | None,
           paper_value: float | None, tolerance: float | None, matches_setting: bool, exact: bool) -> tuple[str, str, str | None]:
    """The rule of :data:`RULES` as code: (verdict, why, power statement or None)."""
    lo, hi = interval
    res = tolerance if tolerance else None
    ours = f"the value {_fmt(lo, res)}" if lo == hi else f"the interval [{_fmt(lo, res)}, {_fmt(hi, res)}]"
    holds_paper = paper_value is not None and (lo - (tolerance or 0.0) <= paper_value <= hi + (tolerance or 0.0))
    near = f" (within the stated tolerance {_fmt(tolerance)})" if tolerance else ""
    against = "mathematics shows it false" if exact else "at a setting that matches the claim's"
    if direction is None or null is None:  # a claimed value
        if paper_value is None:
            raise ValueError("a claim without a null and a direction needs the dissertation's value (value: in the inventory)")
        claimed = _fmt(paper_value, res)
        if holds_paper:
            return "reproduced", f"{ours} holds the claimed {claimed}{near}", None
        if matches_setting or exact:
            return "contradicted", f"{ours} excludes the claimed {claimed}: {against}", None
        return "not reproduced at this scale", f"{ours} excludes the claimed {claimed}, at a setting unlike the dissertation's", None
    side = _side(lo, hi, null, direction)
    wanted = "above" if direction > 0 else "below"
    if side == 1:
        if paper_value is None or holds_paper:
            value = "" if paper_value is None else f" and holds the dissertation's {_fmt(paper_value, res)}{near}"
            return "reproduced", f"{ours} lies {wanted} {_fmt(null)}{value}", None
        beyond = (lo > paper_value) if direction > 0 else (hi < paper_value)
        word = "larger" if beyond else "smaller"
        return f"reproduced, {word}", (f"{ours} lies {wanted} {_fmt(null)} but excludes the dissertation's "
                                        f"{_fmt(paper_value, res)}: the effect is {word}"), None
    power = None
    if paper_value is not None:
        power = (f"an effect of the dissertation's size ({_fmt(paper_value, res)}) is "
                 f"{'not excluded' if holds_paper else 'excluded'} by the interval")
    if side == -1 and (matches_setting or exact):
        return "contradicted", f"{ours} lies on the other side of {_fmt(null)}: {against}", power
    if side == -1:
        return "not reproduced at this scale", (f"{ours} lies on the other side of {_fmt(null)}, at a setting unlike "
                                                "the dissertation's"), power
    holds = "sits at" if lo == hi else "includes"
    return "not reproduced at this scale", f"{ours} {holds} {_fmt(null)}", power


_RECORDED: dict[tuple[str, str, str], Verdict] = {}


def judge(item: str, claim: str, *, quantity: str, estimate: float | None = None,
          interval: tuple[float, float] | None = None, n: int | None = None, unit: str | None = None,
          paper_value: float | None = None, matches_setting: bool = False, control: str | None = None,
          control_interval: tuple[float, float] | None = None, not_testable: str | None = None,
          illustration: str | None = None, scale: str | None = None) -> Verdict:
    """Judge ``claim`` (a key of ``item``'s claims in the inventory) from our ``estimate`` of ``quantity``
    and its 95 % ``interval``, by the rules of this module; record the verdict for the scorecard.

    Args:
        item, claim: the inventory item and the key of one of its claims.
        quantity: what was measured, in words (unique across the book: one quantity, one claim).
        estimate, interval: our number and its 95 % interval.
        n, unit: how many networks (sequences, images, ...) the estimate rests on.
        paper_value: the dissertation's value when the package holds it (e.g. a printed table);
            otherwise the claim's ``value`` in the inventory.
        matches_setting: our setting matches the claim's (size, data, training), so an effect
            in the opposite direction contradicts it.
        control: the positive control that shows the test can find an effect (or None); the record
            keeps it together with the power statement, if the rule makes one.
        control_interval: the positive control's own 95 % interval, for the same quantity on a case
            where the effect is known to exist. If it does not exclude the claim's null in the
            claim's direction, the test has shown no power and the verdict is "not testable here".
        not_testable, illustration: the reason, when the data cannot answer or the item is true
            by construction; no estimate is needed then.
        scale: ``"exact"`` for mathematics, ``"published"`` for the authors' own data; by default
            the claim's own scale from the inventory, else the profile of the run.

    Returns:
        The :class:`Verdict`. Recording the same claim at the same scale twice with another verdict
        raises: one claim, one verdict per scale.
    """
    from .inventory import load_inventory
    from .publish import context, record_verdict

    spec = load_inventory().claim(item, claim)
    scale = scale or spec.scale or context().profile
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
    if not quantity or not quantity.strip():
        raise ValueError("quantity must say what was measured")
    if spec.value is not None and paper_value is not None and not math.isclose(spec.value, paper_value, rel_tol=1e-9):
        raise ValueError(f"{item}/{claim}: paper_value {paper_value} contradicts the inventory's value {spec.value}")
    paper_value = spec.value if paper_value is None else float(paper_value)
    if not_testable and illustration:
        raise ValueError("give not_testable or illustration, not both")
    if control_interval is not None and not not_testable and not illustration:
        if not control or spec.null is None or spec.direction is None:
            raise ValueError(f"{item}/{claim}: control_interval needs a control (what it is) and a claim with a null "
                             "and a direction")
        low, high = _interval(control_interval)
        found = _side(low, high, spec.null, spec.direction) == 1
        span = f"[{_fmt(low)}, {_fmt(high)}]"
        if found:
            control = f"positive control, {control}: {span}, the effect found"
        else:
            not_testable = (f"the positive control ({control}) finds no effect either: {span} does not lie "
                            f"{'above' if spec.direction > 0 else 'below'} {_fmt(spec.null)}, so the test shows no power here")
    reason = not_testable or illustration
    if reason:
        verdict, why, power = ("not testable here" if not_testable else "illustration"), reason, None
        interval = None if interval is None else _interval(interval)
    else:
        if estimate is None or interval is None:
            raise ValueError(f"{item}/{claim}: a judged claim needs estimate and interval (or a not_testable or "
                             "illustration reason)")
        interval = _interval(interval)
        verdict, why, power = decide(estimate=float(estimate), interval=interval, null=spec.null,
                                     direction=spec.direction, paper_value=paper_value, tolerance=spec.tolerance,
                                     matches_setting=matches_setting, exact=scale == "exact")
    record = Verdict(item=item, claim=claim, text=spec.text, quantity=" ".join(quantity.split()),
                     estimate=None if estimate is None else float(estimate), interval=interval, null=spec.null,
                     direction=spec.direction, paper=spec.paper, paper_value=paper_value, scale=scale,
                     n=None if n is None else int(n), unit=unit, verdict=verdict, why=why,
                     control="; ".join(filter(None, (control, power))) or None, reason=reason)
    key = (item, claim, scale)
    previous = _RECORDED.get(key)
    if previous is not None and previous.verdict != record.verdict:
        raise ValueError(f"{item}/{claim} at scale {scale!r} was judged {previous.verdict!r} already and now "
                         f"{record.verdict!r}: one claim, one verdict per scale")
    _RECORDED[key] = record
    record_verdict(record.to_json())
    return record


def _interval(interval: tuple[float, float]) -> tuple[float, float]:
    low, high = (float(x) for x in interval)
    if not (math.isfinite(low) and math.isfinite(high) and low <= high):
        raise ValueError(f"interval must be (low, high) with finite low <= high, got {interval!r}")
    return low, high


def verdict_table(records: list[Verdict] | None = None, *, role: bool = True) -> str:
    """A Markdown table of verdicts (by default those this kernel recorded, in order): claim, verdict
    and why, ours [95 %] with the scale, the dissertation. ``role``: mark verdict words with the book's
    ``{verdict}`` role (its colour class); False for plain Markdown."""
    records = list(_RECORDED.values()) if records is None else records
    rows = ["| Claim | Verdict | Ours [95 %] (scale) | Dissertation |", "|---|---|---|---|"]
    for r in records:
        ours = "–" if r.estimate is None else _fmt(r.estimate)
        if r.interval and r.estimate is not None and r.interval[0] != r.interval[1]:
            ours += f" [{_fmt(r.interval[0])}, {_fmt(r.interval[1])}]"
        ours += f" ({r.scale}" + (f", n = {r.n} {r.unit or ''}".rstrip() if r.n else "") + ")"
        why = r.why + (f"; {r.control}" if r.control else "")
        word = f"{{verdict}}`{r.verdict}`" if role else f"**{r.verdict}**"
        cells = [f"{r.text} (`{r.item}`: {r.quantity})", f"{word}: {why}", ours, r.paper]
        rows.append("| " + " | ".join(" ".join(str(c).split()).replace("|", "\\|") for c in cells) + " |")
    return "\n".join(rows) + "\n"


def show_verdicts() -> None:
    """Show the verdicts this page recorded, as a table (the cell a page ends its verdicts with)."""
    from IPython.display import Markdown, display

    if not _RECORDED:
        raise ValueError("show_verdicts: this page has judged no claim yet (book.judge)")
    display(Markdown(":::{container} lyapbook-scorecard\n" + verdict_table() + ":::\n"))


def load_records(path) -> list[Verdict]:
    """Verdict records from a JSON list (as the runner writes them)."""
    return [Verdict(**{**r, "interval": tuple(r["interval"]) if r.get("interval") else None})
            for r in json.loads(open(path).read())]


def recorded(page: str, item: str, claim: str) -> Verdict | None:
    """The verdict another page of this build recorded for ``item``/``claim`` (None when that page has
    not run in this build, or outside the book runner), so that a summary can follow it."""
    from .publish import context

    ctx = context()
    if not ctx.in_book:
        return None
    path = ctx.output_dir / "records" / page / "verdicts" / f"{item}.json"
    if not path.is_file():
        return None
    matching = [r for r in load_records(path) if r.claim == claim]
    return matching[-1] if matching else None
