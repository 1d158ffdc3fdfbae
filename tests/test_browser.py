"""The browser check: broken pages make it fail, and the built ci book passes it.

Needs Chromium (Debian's ``chromium``; ``.ci/run`` installs it). Without one these tests are
skipped with a message saying so, unless ``LYAPBOOK_REQUIRE_BROWSER=1`` (set by ``.ci/run``),
which turns the skip into a failure so that CI always runs them.
"""

import base64
import os
from pathlib import Path

import pytest

from lyapbook.book.browser import check_site, find_chromium

ROOT = Path(__file__).resolve().parents[1]
SITE = ROOT / "_build" / "ci" / "_build" / "html"
CHROMIUM = find_chromium()
# A 1x1 PNG, so that the clean page's image loads.
PIXEL = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
)


def _need_browser() -> None:
    if CHROMIUM:
        return
    message = "browser check skipped: no Chromium found (apt-get install chromium, or set LYAPBOOK_CHROMIUM)"
    if os.environ.get("LYAPBOOK_REQUIRE_BROWSER") == "1":
        pytest.fail(message.replace("skipped", "required"))
    pytest.skip(message)


def _page(body: str, head: str = "") -> str:
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'>{head}</head><body>"
        f"<main><article class='bd-article' style='width: 600px'>{body}</article></main></body></html>"
    )


BROKEN = {
    "remote-script.html": ("remote-request", _page("<p>text</p>", "<script src='https://cdn.example.org/x.js'></script>")),
    "raw-tex.html": ("unrendered-math", _page("<p>An equation: <span class='math'>\\(x^2 + 1\\)</span></p>")),
    "mathjax-error.html": ("unrendered-math", _page("<mjx-container><mjx-merror data-mjx-error='Undefined control sequence \\foo'>x</mjx-merror></mjx-container>")),
    "object-repr.html": ("object-repr", _page("<p>LSTMs of &lt;IPython.core.display.Markdown object&gt; units</p>")),
    "missing-image.html": ("missing-image", _page("<img src='nowhere.png' alt='gone'>")),
    "script-error.html": ("console", _page("<script>notDefinedAnywhere();</script>")),
    "wide-table.html": ("too-wide", _page("<table style='width: 1400px'><tr><td>wide</td></tr></table>")),
    # the rows scroll in their box, but the caption scrolls with them and is cut at the column's edge
    "cut-caption.html": ("too-wide", _page(
        "<div style='overflow-x: scroll'><table class='lyapbook-scroll' style='width: 1400px'>"
        "<caption>A caption as wide as the table</caption><tr><td>scrolls</td></tr></table></div>")),
    "wide-equation.html": (
        "too-wide",
        _page("<mjx-container display='true' style='display: block'><mjx-math style='display: inline-block; width: 1200px'>"
              "</mjx-math></mjx-container>"),
    ),
    "broken-link.html": ("broken-link", _page("<a href='no-such-page.html'>a</a> <a href='clean.html#no-such-anchor'>b</a>")),
    # A page that only redirects (Sphinx's root index.html) is checked for its target, not opened.
    "broken-redirect.html": ("broken-link", '<meta http-equiv="Refresh" content="0; url=gone.html" />'),
    "print-loses-number.html": (
        "print",
        _page("<h1><span class='section-number'>1. </span>Title</h1><details class='hide'><summary>Show code</summary>"
              "<pre>x = 1</pre></details>", "<style>@media print { article h1 { display: none } }</style>"
              "<h1 class='onlyprint'>Title</h1>"),
    ),
}
CLEAN = _page(
    "<p id='top'>Nothing wrong here: <a href='clean.html#top'>a link</a>, <a href='https://example.org/'>another site</a>,"
    " <code>\\(not maths in code\\)</code>.</p><img src='pixel.png' alt='a pixel'>"
    "<div style='overflow-x: scroll; container-type: inline-size'><table class='lyapbook-scroll' style='width: 1400px'>"
    "<caption style='position: sticky; left: 0; width: 100cqw'>A caption that stays in view</caption>"
    "<tr><td>scrolls</td></tr></table></div>"
)


@pytest.fixture(scope="module")
def broken_site(tmp_path_factory):
    _need_browser()
    site = tmp_path_factory.mktemp("site")
    (site / "pixel.png").write_bytes(PIXEL)
    (site / "clean.html").write_text(CLEAN)
    (site / "redirect.html").write_text('<meta http-equiv="Refresh" content="0; url=clean.html" />\n')
    for name, (_, html) in BROKEN.items():
        (site / name).write_text(html)
    return site, check_site(site)


@pytest.mark.parametrize("mode", ["http", "file"])
def test_a_clean_page_passes(broken_site, mode):
    _, problems = broken_site
    assert [str(p) for p in problems if p.page in ("clean.html", "redirect.html") and p.mode == mode] == []


@pytest.mark.parametrize("mode", ["http", "file"])
@pytest.mark.parametrize("page", sorted(BROKEN))
def test_each_broken_page_fails_for_its_reason(broken_site, page, mode):
    _, problems = broken_site
    kinds = {p.kind for p in problems if p.page == page and p.mode == mode}
    assert BROKEN[page][0] in kinds, f"{page} over {mode}: found only {kinds}"


def test_the_remote_request_is_named(broken_site):
    _, problems = broken_site
    details = [p.detail for p in problems if p.page == "remote-script.html" and p.kind == "remote-request"]
    assert details and all(d.startswith("https://cdn.example.org/x.js") for d in details)


def _built_pages() -> list[str]:
    if not SITE.is_dir():
        return []
    return sorted(p.relative_to(SITE).as_posix() for p in SITE.rglob("*.html") if not p.relative_to(SITE).parts[0].startswith("_"))


@pytest.fixture(scope="module")
def book_problems():
    _need_browser()
    if not SITE.is_dir():
        pytest.skip(f"browser check of the book skipped: {SITE.relative_to(ROOT)} is not built "
                    "(`python -m lyapbook.book build --profile ci`; `make test` builds it first)")
    return check_site(SITE)


@pytest.mark.parametrize("page", _built_pages() or ["(book not built)"])
def test_every_page_of_the_built_book_reads_well_offline(book_problems, page):
    found = [str(p) for p in book_problems if p.page == page]
    assert not found, "\n".join(found)
