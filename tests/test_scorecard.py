"""The inventory, the verdict API, the judges and the scorecard built from a manifest."""

import json
import re
from pathlib import Path

import pytest

from lyapbook.book import publish
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
    for chapter in discover(ROOT):
        text = chapter.source.read_text()
        named = set(re.findall(r'book\.(?:figure|table)\(\s*\w+,\s*"([a-z0-9-]+)"', text))
        named |= set(re.findall(r'book\.verdict\(\s*"([a-z0-9-]+)"', text))
        missing = sorted(item for item in named if item not in inventory)
        assert not missing, f"{chapter.stem} names items missing from inventory.yml: {missing}"


def test_verdict_refuses_bad_input_naming_the_argument():
    good = dict(claim="c", paper="p", ours="o", verdict="reproduced")
    with pytest.raises(ValueError, match="verdict must be one of 'reproduced'"):
        publish.verdict("fig-1-2", **{**good, "verdict": "fine"})
    with pytest.raises(ValueError, match="not listed in lyapbook/book/inventory.yml"):
        publish.verdict("fig-9-9", **good)
    with pytest.raises(ValueError, match="claim must be a non-empty string"):
        publish.verdict("fig-1-2", **{**good, "claim": " "})
    with pytest.raises(ValueError, match="interval must be"):
        publish.verdict("fig-1-2", **good, interval=(2.0, 1.0))


def test_verdicts_are_recorded_per_claim_under_the_runner(tmp_path, monkeypatch):
    monkeypatch.setenv(publish.OUTPUT_DIR_ENV, str(tmp_path))
    monkeypatch.setenv(publish.CHAPTER_ENV, "01_demo")
    publish.verdict("fig-1-2", claim="sum rule", paper="0.16", ours="1e-9", verdict="reproduced")
    publish.verdict("fig-1-2", claim="chaos", paper="> 0", ours="0.9", verdict="reproduced", interval=(0.8, 1))
    publish.verdict("fig-1-2", claim="sum rule", paper="0.16", ours="2e-9", verdict="reproduced")
    claims = json.loads((tmp_path / "records" / "01_demo" / "verdicts" / "fig-1-2.json").read_text())
    assert [(c["claim"], c["ours"], c["interval"]) for c in claims] == [("chaos", "0.9", [0.8, 1.0]), ("sum rule", "2e-9", None)]


@pytest.mark.parametrize(
    "ours, paper, tolerance, interval, testable, expected",
    [
        (0.905, 0.9056, 0.01, None, True, "reproduced"),
        (0.85, 0.9056, 0.01, (0.80, 0.95), True, "within noise"),
        (0.85, 0.9056, 0.01, (0.84, 0.86), True, "contradicted"),
        (0.85, 0.9056, 0.01, None, False, "not testable at this scale"),
    ],
)
def test_judge_value(ours, paper, tolerance, interval, testable, expected):
    assert publish.judge_value(ours, paper, tolerance=tolerance, interval=interval, testable=testable) == expected


def test_judge_sign():
    assert publish.judge_sign((0.1, 0.3), +1) == "reproduced"
    assert publish.judge_sign((-0.5, -0.2), +1) == "contradicted"
    assert publish.judge_sign((-0.1, 0.2), -1) == "not testable at this scale"
    with pytest.raises(ValueError, match="expected must be"):
        publish.judge_sign((0, 1), 0)


def test_the_scorecard_lists_every_item_with_its_state():
    manifest = {
        "profile": "teaching",
        "items": {
            "fig-1-2": {"kind": "figure", "chapter": "01_x", "profile": "teaching", "verdicts": [
                {"claim": "sum | rule", "paper": "0.16", "ours": "1e-9", "verdict": "reproduced", "interval": None},
                {"claim": "chaos", "paper": "> 0", "ours": "0.9", "verdict": "contradicted", "interval": [0.8, 1.0]},
            ]},
            "fig-1-1": {"kind": "figure", "chapter": "01_x", "profile": "teaching"},
            "eq-4-14": {"kind": "check", "chapter": "04_x", "profile": "ci", "verdicts": [
                {"claim": "Q R gradient", "paper": "derivation", "ours": "3e-15", "verdict": "reproduced", "interval": None},
            ]},
        },
    }
    text = "\n".join(scorecard_markdown(load_inventory(), manifest))
    assert "**3 of 53 items built**" in text and "2 reproduced, 1 contradicted" in text
    assert "| {numref}`fig-1-2` `fig-1-2` | sum \\| rule. *Paper:* 0.16 | 1e-9 | **reproduced** (`teaching`) |" in text
    assert "|  | chaos. *Paper:* > 0 | 0.9 (95%: 0.8 to 1) | **contradicted** (`teaching`) |" in text
    assert f"*{NO_VERDICT}*" in text and "{doc}`chapter </chapters/04_x>`" in text
    assert text.count(f"*{NOT_BUILT}*") == 50
    for chapter in (1, 2, 3, 4):
        assert f"**Chapter {chapter}: " in text


def test_one_chapter_table_for_the_end_of_a_chapter():
    manifest = {"profile": "ci", "items": {"fig-1-2": {"kind": "figure", "chapter": "01_x", "profile": "ci", "verdicts": [
        {"claim": "chaos", "paper": "> 0", "ours": "0.9", "verdict": "reproduced", "interval": None}]}}}
    text = "\n".join(scorecard_markdown(load_inventory(), manifest, chapter=1))
    assert "items built" not in text and "**Chapter" not in text  # no book-wide tally or headings
    assert "| {numref}`fig-1-2` `fig-1-2` | chaos. *Paper:* > 0 | 0.9 | **reproduced** (`ci`) |" in text
    assert "fig-2-1" not in text and f"*{NOT_BUILT}*" in text  # fig-1-1 and tab-1-ref not built here
    with pytest.raises(ValueError, match="no chapter 7"):
        scorecard_markdown(load_inventory(), manifest, chapter=7)
