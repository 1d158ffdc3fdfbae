"""The inventory, the verdict API, the judges and the scorecard built from a manifest."""

import json
import re
from pathlib import Path

import pytest

from lyapbook.book import publish, verdicts
from lyapbook.book.chapters import discover
from lyapbook.book.html.scorecard import NO_VERDICT, NOT_BUILT, scorecard_markdown
from lyapbook.book.inventory import load_inventory

ROOT = Path(__file__).resolve().parents[1]


def test_the_inventory_lists_the_dissertations_53_items_once_each():
    inventory = load_inventory()
    ids = [item.id for item in inventory.items]
    assert len(ids) == 53 == len(set(ids))
    assert {item.chapter for item in inventory.items} == {1, 2, 3, 4}
    assert all(publish.ITEM_ID.match(item_id) for item_id in ids)
    assert {"fig-3-b1", "fig-3-b2", "fig-3-b3", "eq-4-14", "tab-2-speed"} <= set(ids)


def test_every_item_a_chapter_publishes_or_judges_is_in_the_inventory():
    inventory = load_inventory()
    published = re.compile(r'"((?:fig|tab|eq)-[0-9]+-[0-9a-z]+)"')
    for chapter in discover(ROOT):
        text = chapter.source.read_text()
        # the first item ID among the arguments of each book.figure / book.table call
        named = {published.search(text, call.end()).group(1)
                 for call in re.finditer(r"book\.(?:figure|table)\(", text)}
        named |= set(re.findall(r'book\.judge\(\s*"([a-z0-9-]+)"', text))
        missing = sorted(item for item in named if not inventory.publishes(item))
        assert not missing, f"{chapter.stem} names items missing from inventory.yml: {missing}"
        judged_own = sorted(item for item in named if item not in inventory and inventory.publishes(item)
                            and f'book.judge("{item}"' in text)
        assert not judged_own, f"{chapter.stem} judges claims on the book's own items: {judged_own}"
    assert {"tab-2-relations", "tab-4-controls", "fig-4-transient"} <= {b.id for b in inventory.book_items}


def test_judge_refuses_bad_input_naming_the_argument():
    with pytest.raises(ValueError, match="fig-9-9.*not listed in lyapbook/book/inventory.yml"):
        verdicts.judge("fig-9-9", "x", quantity="q", estimate=1, interval=(0, 2))
    with pytest.raises(ValueError, match="fig-1-2 has no claim 'nothing'.*its claims: sum-rule"):
        verdicts.judge("fig-1-2", "nothing", quantity="q", estimate=1, interval=(0, 2))
    with pytest.raises(ValueError, match="needs estimate and interval"):
        verdicts.judge("fig-1-2", "chaos-28", quantity="q", estimate=1.0)
    with pytest.raises(ValueError, match="interval must be"):
        verdicts.judge("fig-1-2", "chaos-28", quantity="q", estimate=1.0, interval=(2.0, 1.0))
    with pytest.raises(ValueError, match="scale must be one of"):
        verdicts.judge("fig-1-2", "chaos-28", quantity="q", estimate=1.0, interval=(0.5, 1.5), scale="huge")


def _decide(interval, *, null=0.0, direction=1, paper=None, tolerance=None, matches=False, exact=False):
    return verdicts.decide(estimate=sum(interval) / 2, interval=interval, null=null, direction=direction,
                           paper_value=paper, tolerance=tolerance, matches_setting=matches, exact=exact)


@pytest.mark.parametrize(
    "case, expected",
    [
        (dict(interval=(0.8, 1.2), paper=1.0), "reproduced"),
        (dict(interval=(0.2, 0.5)), "reproduced"),  # a claimed direction without a size
        (dict(interval=(0.3, 0.6), paper=1.0), "reproduced, smaller"),
        (dict(interval=(1.3, 1.6), paper=1.0), "reproduced, larger"),
        (dict(interval=(-0.6, -0.3), paper=1.0, direction=-1), "reproduced, larger"),
        (dict(interval=(0.9, 1.2), paper=1.0, tolerance=0.2), "reproduced"),
        (dict(interval=(0.3, 0.7), paper=1.0, tolerance=0.31), "reproduced"),  # within the stated tolerance
        (dict(interval=(-0.2, 0.4), paper=1.0), "not reproduced at this scale"),
        (dict(interval=(-0.5, -0.1), paper=1.0), "not reproduced at this scale"),  # other side, another setting
        (dict(interval=(-0.5, -0.1), paper=1.0, matches=True), "contradicted"),
        (dict(interval=(-0.3, -0.3), exact=True), "contradicted"),  # mathematics
        (dict(interval=(0.0, 0.0), null=None, direction=None, paper=0.0, exact=True), "reproduced"),
        (dict(interval=(0.5, 0.5), null=None, direction=None, paper=0.0, tolerance=1e-6, exact=True), "contradicted"),
        (dict(interval=(0.4, 0.6), null=None, direction=None, paper=1.0, tolerance=0.1), "not reproduced at this scale"),
    ],
)
def test_every_rule_on_hand_made_cases(case, expected):
    verdict, why, power = _decide(**case)
    assert verdict == expected, why
    assert why


def test_a_null_result_says_which_effect_size_it_excludes():
    _, _, power = _decide((-0.2, 0.3), paper=1.0)
    assert power == "an effect of the dissertation's size (1) is excluded by the interval"
    _, _, power = _decide((-0.2, 1.3), paper=1.0)
    assert power == "an effect of the dissertation's size (1) is not excluded by the interval"


def test_reasons_give_the_two_verdicts_without_numbers_and_one_claim_one_verdict(monkeypatch):
    monkeypatch.setattr(verdicts, "_RECORDED", {})
    record = verdicts.judge("tab-2-a1", "span", quantity="share of the range", illustration="true by construction")
    assert (record.verdict, record.reason, record.interval) == ("illustration", "true by construction", None)
    record = verdicts.judge("fig-2-6", "one-over-t", quantity="slope", not_testable="two networks")
    assert record.verdict == "not testable here" and record.scale == "interactive"
    verdicts.judge("fig-1-2", "chaos-28", quantity="lambda_1", estimate=0.9, interval=(0.8, 1.0))
    with pytest.raises(ValueError, match="judged 'reproduced' already and now 'not reproduced at this scale'"):
        verdicts.judge("fig-1-2", "chaos-28", quantity="lambda_1", estimate=0.1, interval=(-0.1, 0.3))
    exact = verdicts.judge("fig-1-2", "chaos-16", quantity="eigenvalue", estimate=-0.3, interval=(-0.3, -0.3))
    assert exact.scale == "exact" and exact.verdict == "contradicted"


def test_a_positive_control_that_finds_nothing_makes_the_claim_untestable(monkeypatch):
    monkeypatch.setattr(verdicts, "_RECORDED", {})
    found = verdicts.judge("tab-4-1", "k100", quantity="delta", estimate=0.1, interval=(-0.3, 0.5),
                           control="saliency", control_interval=(0.4, 2.0), scale="teaching")
    assert found.verdict == "not reproduced at this scale"
    assert found.control.startswith("positive control, saliency: [0.4, 2], the effect found")
    assert "is excluded by the interval" in found.control  # the power statement is kept beside it
    monkeypatch.setattr(verdicts, "_RECORDED", {})
    blind = verdicts.judge("tab-4-1", "k100", quantity="delta", estimate=0.1, interval=(-0.3, 0.5),
                           control="saliency", control_interval=(-0.2, 0.9), scale="teaching")
    assert blind.verdict == "not testable here" and "finds no effect either" in blind.reason
    assert blind.interval == (-0.3, 0.5)  # the estimate stays on the record
    with pytest.raises(ValueError, match="control_interval needs a control"):
        verdicts.judge("tab-4-1", "k100", quantity="delta", estimate=0.1, interval=(-0.3, 0.5),
                       control_interval=(0.4, 2.0), scale="paper")


def test_a_page_reads_the_verdict_another_page_recorded(tmp_path, monkeypatch):
    monkeypatch.setattr(verdicts, "_RECORDED", {})
    monkeypatch.setenv(publish.OUTPUT_DIR_ENV, str(tmp_path))
    monkeypatch.setenv(publish.CHAPTER_ENV, "04b_demo")
    monkeypatch.setenv(publish.PROFILE_ENV, "teaching")
    verdicts.judge("fig-4-4", "r-flips-hurt-range", quantity="delta", estimate=-0.2, interval=(-0.5, 0.1))
    record = verdicts.recorded("04b_demo", "fig-4-4", "r-flips-hurt-range")
    assert record.verdict == "not reproduced at this scale" and record.interval == (-0.5, 0.1)
    assert verdicts.recorded("04b_demo", "fig-4-4", "nothing") is None
    assert verdicts.recorded("04z_absent", "fig-4-4", "r-flips-hurt-range") is None


def test_verdicts_are_recorded_per_claim_under_the_runner(tmp_path, monkeypatch):
    monkeypatch.setattr(verdicts, "_RECORDED", {})
    monkeypatch.setenv(publish.OUTPUT_DIR_ENV, str(tmp_path))
    monkeypatch.setenv(publish.CHAPTER_ENV, "01_demo")
    monkeypatch.setenv(publish.PROFILE_ENV, "teaching")
    verdicts.judge("fig-1-2", "sum-rule", quantity="gap", estimate=1e-9, interval=(1e-9, 1e-9))
    verdicts.judge("fig-1-2", "chaos-28", quantity="lambda_1", estimate=0.9, interval=(0.8, 1.0), n=8,
                   unit="initial conditions")
    claims = json.loads((tmp_path / "records" / "01_demo" / "verdicts" / "fig-1-2.json").read_text())
    assert [(c["claim"], c["verdict"], c["scale"], c["interval"]) for c in claims] == [
        ("sum-rule", "reproduced", "teaching", [1e-9, 1e-9]), ("chaos-28", "reproduced", "teaching", [0.8, 1.0])]
    assert {"claim", "verdict", "scale", "estimate", "interval", "paper", "why", "quantity", "n"} <= set(claims[0])


def _record(item, claim, verdict, **extra):
    base = {"item": item, "claim": claim, "text": f"claim {claim}", "quantity": f"q {claim}", "estimate": 0.9,
            "interval": [0.8, 1.0], "paper": "paper says", "scale": "teaching", "n": 8, "unit": "runs",
            "verdict": verdict, "why": "because", "control": None}
    return {**base, **extra}


def test_the_scorecard_tallies_by_verdict_and_lists_every_claim():
    manifest = {
        "profile": "teaching",
        "items": {
            "fig-1-2": {"kind": "figure", "chapter": "01_x", "verdicts": [
                _record("fig-1-2", "sum-rule", "reproduced"),
                _record("fig-1-2", "chaos-16", "contradicted", scale="exact", text="a | b"),
                _record("fig-1-2", "chaos-28", "reproduced", scale="published", page="01z_published")]},
            "fig-1-1": {"kind": "figure", "chapter": "01_x"},
            "eq-4-14": {"kind": "check", "chapter": "04_x", "verdicts": [
                _record("eq-4-14", "printed", "contradicted", estimate=None, interval=None)]},
        },
    }
    text = "\n".join(scorecard_markdown(load_inventory(), manifest))
    assert "**4 claims judged on 3 of 53 items**" in text
    assert "{verdict}`reproduced` 2 · {verdict}`contradicted` 2" in text
    # a verdict judged on another page (the authors' data) links to that page
    assert "| `fig-1-2` ({doc}`page </chapters/01z_published>`): claim chaos-28" in text
    assert ("| {numref}`fig-1-2` (`fig-1-2`): claim sum-rule *(q sum-rule)* | {verdict}`reproduced`: because | "
            "0.9 [0.8, 1] (teaching, n = 8 runs) | paper says |") in text
    assert "a \\| b" in text and "– (teaching)" in text
    assert f"*{NO_VERDICT}*" in text and "{doc}`page </chapters/04_x>`" in text
    assert text.count(f"*{NOT_BUILT}*") == 50
    for chapter in (1, 2, 3, 4):
        assert f"**Chapter {chapter}: " in text


def test_one_chapter_table_for_the_end_of_a_chapter():
    manifest = {"profile": "ci", "items": {"fig-1-2": {"kind": "figure", "chapter": "01_x", "verdicts": [
        _record("fig-1-2", "chaos-28", "reproduced", scale="ci")]}}}
    text = "\n".join(scorecard_markdown(load_inventory(), manifest, chapter=1))
    assert "items**" not in text and "**Chapter" not in text  # no book-wide tally or headings
    assert "1 claims: {verdict}`reproduced` 1." in text
    assert "fig-2-1" not in text and f"*{NOT_BUILT}*" in text  # fig-1-1 and tab-1-ref not built here
    with pytest.raises(ValueError, match="no chapter 7"):
        scorecard_markdown(load_inventory(), manifest, chapter=7)


def _judge_calls(text: str):
    """(item, claim, scale) of every ``book.judge(...)`` call in a page's source; scale "profile"
    unless the call names one (e.g. ``scale="published"``)."""
    for match in re.finditer(r'book\.judge\(\s*"([a-z0-9-]+)",\s*f?"([a-z0-9{}_-]+)"', text):
        depth, end = 0, match.start() + len("book.judge")
        for end in range(end, len(text)):
            depth += {"(": 1, ")": -1}.get(text[end], 0)
            if depth == 0:
                break
        scale = re.search(r'scale\s*=\s*"([a-z]+)"', text[match.start():end])
        yield match[1], match[2], scale[1] if scale else "profile"


def test_judge_calls_are_read_with_their_scale():
    text = 'book.judge("fig-2-7", "max-le-chars", quantity=f"x {y(1)}", scale="published")\nbook.judge("fig-2-7", "c", n=1)'
    assert list(_judge_calls(text)) == [("fig-2-7", "max-le-chars", "published"), ("fig-2-7", "c", "profile")]


def test_claims_named_in_the_chapters_are_in_the_inventory_and_judged_on_one_page():
    """One page per claim and scale: a claim judged at the profile's scale on one page may be judged
    at scale "published" (the authors' data) on another."""
    calls = {}
    for chapter in discover(ROOT):
        for item, claim, scale in _judge_calls(chapter.source.read_text()):
            calls.setdefault((item, claim), {}).setdefault(scale, []).append(chapter.stem)
    inventory = load_inventory()
    claims = {(item.id, c.key) for item in inventory.items for c in item.claims}
    expanded = set()
    for (item, claim), scales in calls.items():
        if "{" in claim:  # a key built in a loop, e.g. f"{claim}-given-{given}"
            pattern = re.compile("^" + re.sub(r"\\{[^}]*\\}", "[a-z0-9-]+", re.escape(claim)) + "$")
            matched = {(i, c) for i, c in claims if i == item and pattern.match(c)}
            assert matched, f"{item}/{claim} matches no claim of the inventory"
            expanded |= matched
        else:
            assert (item, claim) in claims, f"{scales}: {item}/{claim} is not a claim of the inventory"
            # branches of one cell (judged, or not testable) are one place; two pages are not
            for scale, where in scales.items():
                assert len(set(where)) == 1, (f"{item}/{claim} at scale {scale} is judged on {sorted(set(where))}: "
                                              "one claim, one page per scale")
            expanded.add((item, claim))


def test_the_built_manifest_holds_one_verdict_per_claim_and_scale_and_one_claim_per_quantity():
    """Every verdict record of the ci build has the fields a reader cites; no claim is judged twice at
    one scale, no quantity under two claims."""
    manifest_path = ROOT / "_build" / "ci" / "manifest.json"
    if not manifest_path.is_file():
        pytest.skip("the ci book is not built (make test builds it first)")
    records = [r for entry in json.loads(manifest_path.read_text())["items"].values() for r in entry.get("verdicts", [])]
    assert records, "the ci build recorded no verdict"
    seen, quantities = {}, {}
    for r in records:
        assert r["verdict"] in verdicts.VERDICTS and r["scale"] in verdicts.SCALES
        assert {"claim", "verdict", "scale", "estimate", "paper"} <= set(r)
        assert r.get("interval") is not None or r.get("reason"), f"{r['item']}/{r['claim']}: interval or reason"
        key = (r["item"], r["claim"], r["scale"])
        assert key not in seen, f"{key} is judged twice"
        seen[key] = r["verdict"]
        claim = (r["item"], r["claim"])
        assert quantities.setdefault(r["quantity"], claim) == claim, \
            f"the quantity {r['quantity']!r} is judged under {quantities[r['quantity']]} and {claim}"
    inventory = load_inventory()
    built = json.loads(manifest_path.read_text())["items"]
    for item in inventory.items:
        if item.id in built:
            judged = {r["claim"] for r in built[item.id].get("verdicts", [])}
            missing = {c.key for c in item.claims} - judged
            assert not missing, f"{item.id}: claims of the inventory that the build did not judge: {sorted(missing)}"


def test_the_manifest_keeps_the_verdicts_every_page_recorded_for_one_item(tmp_path):
    """One item judged on two pages (teaching scale on one, the authors' data on another): recording
    either page again replaces its own verdicts and keeps the other's."""
    from types import SimpleNamespace

    from lyapbook.book.runner import _record as record_page

    environment = {"created": "now", "git_commit": "abc", "packages": {}}
    manifest = tmp_path / "manifest.json"

    def record(page, verdicts, figure=False):
        out = tmp_path / page
        folder = out / "records" / page
        (folder / "verdicts").mkdir(parents=True, exist_ok=True)
        if figure:
            (folder / "fig-2-7.json").write_text(json.dumps({"id": "fig-2-7", "kind": "figure", "chapter": page,
                                                             "files": [], "caption": ""}))
        (folder / "verdicts" / "fig-2-7.json").write_text(json.dumps(verdicts))
        record_page(manifest, SimpleNamespace(stem=page), "teaching", {}, 1.0, "cpu", "k", environment, out)
        return json.loads(manifest.read_text())["items"]["fig-2-7"]

    record("02b", [_record("fig-2-7", "max-le-chars", "reproduced")], figure=True)
    both = record("02c", [_record("fig-2-7", "max-le-chars", "reproduced", scale="published")])
    assert both["chapter"] == "02b" and both["kind"] == "figure"
    assert sorted((v["page"], v["scale"]) for v in both["verdicts"]) == [("02b", "teaching"), ("02c", "published")]
    again = record("02b", [_record("fig-2-7", "max-le-chars", "not reproduced at this scale")], figure=True)
    assert sorted((v["page"], v["verdict"]) for v in again["verdicts"]) == [
        ("02b", "not reproduced at this scale"), ("02c", "reproduced")]
