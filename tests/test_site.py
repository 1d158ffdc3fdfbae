"""The built ci book as files: offline assets, citations, alt text, downloadable notebooks.

These read ``_build/ci/_build/html`` (``make test`` builds it first) and are skipped, saying
so, when it is not there. The browser check (tests/test_browser.py) opens the same pages.
"""

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SITE = ROOT / "_build" / "ci" / "_build" / "html"
REMOTE_ASSET = re.compile(r'(?:src|href)="https?://[^"]*\.(?:js|css|woff2?|ttf|png|svg|jpg)[^"]*"')

pytestmark = pytest.mark.skipif(
    not SITE.is_dir(), reason=f"{SITE.relative_to(ROOT)} is not built (`python -m lyapbook.book build --profile ci`)"
)


def pages():
    return [p for p in SITE.rglob("*.html") if not p.relative_to(SITE).parts[0].startswith("_")]


def test_no_page_loads_a_remote_script_style_font_or_image():
    found = {p.name: REMOTE_ASSET.findall(p.read_text()) for p in pages()}
    assert not {k: v for k, v in found.items() if v}
    assert (SITE / "_static" / "mathjax" / "tex-chtml.js").is_file()
    assert list((SITE / "_static" / "mathjax" / "output" / "chtml" / "fonts" / "woff-v2").glob("*.woff"))


def test_no_thebe_and_one_search_field():
    chapter = (SITE / "chapters" / "01_lyapunov_maps.html").read_text()
    assert "thebe" not in chapter.lower()
    assert chapter.count("search-button-field") == 1  # in the sidebar; the form is its pop-up
    assert re.search(r'<header id="pst-header"[^>]*>\s*</header>', chapter), "the header holds nothing"


def test_citations_read_author_year_in_the_text_and_in_the_list():
    references = (SITE / "references.html").read_text()
    labels = re.findall(r'fn-bracket">\[</span>([^<]+)<', references)
    assert labels and all(re.fullmatch(r"[^\d]+, \d{4}[a-z]?", label) for label in labels), labels
    chapter = (SITE / "chapters" / "01_lyapunov_maps.html").read_text()
    assert ">Vogt, 2023</a>]" in chapter and "Vogt, 2023" in labels


def test_figure_alt_text_is_the_caption():
    chapter = (SITE / "chapters" / "01_lyapunov_maps.html").read_text()
    alts = re.findall(r'<img alt="([^"]*)" src="[^"]*fig-1-\d\.png"', chapter)
    assert len(alts) == 2 and all(alt.startswith(("Lorenz trajectories", "Running Lyapunov")) for alt in alts)


def test_downloaded_notebooks_carry_their_results():
    for notebook_path in (SITE / "_sources" / "chapters").glob("*.ipynb"):
        notebook = json.loads(notebook_path.read_text())
        prose = "\n".join("".join(c["source"]) for c in notebook["cells"] if c["cell_type"] == "markdown")
        leftovers = re.findall(r"\{[a-z:-]+\}`[^`]*`|```\{[a-z:-]+\}|:::\{[a-z:-]+\}", prose)
        assert not leftovers, f"{notebook_path.name}: MyST left in the prose: {leftovers[:5]}"
        images = [o for c in notebook["cells"] for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
        assert images, f"{notebook_path.name} has no figure"
        assert "pip" in "".join(notebook["cells"][1 + 1]["source"]), "the install cell comes second"


def test_the_scorecard_lists_all_53_items():
    page = (SITE / "scorecard.html").read_text()
    assert "of 53 items</strong> in this build" in page and "rules" in page
    for item_id in ("fig-1-1", "fig-1-2", "tab-1-ref", "fig-3-b2", "eq-4-14"):
        assert f">{item_id}<" in page
