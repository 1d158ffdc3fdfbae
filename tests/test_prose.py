"""Sentences that follow their numbers: each phrase of lyapbook.book.prose, with its inputs flipped,
flips its words; and no glued phrase of the built book reads like a sentence written for one outcome.

What is asserted: counts and shares never print "0 of", "all but 0 %", "1 of the networks are";
comparisons say "about as many" within the noise and flip with their inputs; the rendered ci book
holds none of the patterns a reader trips over.
"""

import re
from pathlib import Path

import pytest

from lyapbook.book import prose

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("k, n, expected", [
    (0, 6, "none of the 6 networks"), (1, 6, "1 of the 6 networks"), (6, 6, "all 6 networks"),
    (4, 6, "4 of the 6 networks"), (1, 1, "the one network"), (0, 1, "not the one network"),
])
def test_counts_read_for_every_outcome(k, n, expected):
    assert prose.count_of(k, n, "network") == expected
    assert prose.count_of(2, 8, "architecture") == "2 of the 8 architectures"
    with pytest.raises(ValueError, match="k must lie in"):
        prose.count_of(7, 6, "network")


@pytest.mark.parametrize("share, expected", [
    (0.0, "none"), (1.0, "all"), (0.37, "37 %"), (0.001, "under 1 %"), (0.999, "over 99 %"),
])
def test_shares_never_print_zero_or_all_for_what_is_not(share, expected):
    assert prose.share_of(share) == expected


def test_comparisons_flip_with_their_inputs_and_hold_within_the_noise():
    assert prose.compare(0.46, 0.30) == "more" and prose.compare(0.30, 0.46) == "fewer"
    assert prose.compare(0.4574, 0.4594, noise=0.05) == "about as many"
    assert prose.sign_word(0.2, "rises", "falls") == "rises" and prose.sign_word(-0.2, "rises", "falls") == "falls"
    assert prose.sign_word(0.01, "rises", "falls", "stays", noise=0.05) == "stays"


# What a reader trips over: a count of zero or one read with the wrong words, a comparison that
# contradicts its own numbers, a sentence cut after a glued number.
ODD = [
    r"all but 0 ?%", r"\bin 0 of [0-9]+", r"\b1 of the [a-z]+ (are|bring|have|lie)\b", r"\bnone of the 1 \b",
    r"([0-9.]+) ?% against \1 ?%[^.]{0,60}(fewer|more)",
]


def test_interval_words_follow_the_interval_and_lists_read_naturally():
    words = dict(above="above", below="below", includes="holds")
    assert prose.by_interval(0.1, 0.5, **words) == "above"
    assert prose.by_interval(-0.5, -0.1, **words) == "below"
    assert prose.by_interval(-0.1, 0.5, **words) == "holds"
    assert prose.by_interval(0.0, 0.5, **words) == "holds"  # touching the null is not excluding it
    assert prose.by_interval(0.7, 0.9, null=0.6, **words) == "above"
    with pytest.raises(ValueError, match="low must not exceed high"):
        prose.by_interval(1.0, 0.0, **words)
    assert [prose.listing(items) for items in ([], [4], [4, 5], [4, 5, 6])] == ["none", "4", "4 and 5", "4, 5 and 6"]
    assert prose.listing([], empty="no k") == "no k"


def test_the_built_book_holds_no_sentence_written_for_one_outcome():
    pages = sorted((ROOT / "_build" / "ci" / "_build" / "html" / "chapters").glob("*.html"))
    if not pages:
        pytest.skip("the ci book is not built (make test builds it first)")
    for page in pages:
        text = re.sub(r"<[^>]+>", " ", page.read_text())
        text = re.sub(r"\s+", " ", text)
        for pattern in ODD:
            match = re.search(pattern, text)
            assert not match, f"{page.name}: {match.group(0)!r}"
