"""The built book opened in a real browser (headless Chromium), as a reader with no network would.

:func:`check_site` opens every page of a built book over http (a local server) and as file://,
with every host but the local one blocked, and reports each :class:`Problem`:

- ``console``: a JavaScript exception or console error (failed loads included);
- ``remote-request``: a request to any host that is not this machine;
- ``unrendered-math``: maths left as raw TeX, or a MathJax error node;
- ``object-repr``: a Python object's repr in the prose (``<IPython.core.display.Markdown object>``:
  a glued phrase placed as text instead of Markdown);
- ``missing-image``: an image that did not load;
- ``too-wide``: a display equation or a table wider than the text column (a table marked
  ``lyapbook-scroll`` may be wider if its own box scrolls and fits the column, but not its
  caption, which would be cut at the column's edge);
- ``broken-link``: a link to a page or anchor of the book that does not exist;
- ``print``: printed, the page loses its chapter number or shows folded code as an empty box.

Chromium is driven through the DevTools protocol over a pipe (``--remote-debugging-pipe``), so
nothing but Debian's ``chromium`` is needed. It is started headless with a fresh profile and the
switches that keep it from calling Google's hosts on its own.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import select
import shutil
import signal
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

__all__ = ["Problem", "Chromium", "find_chromium", "check_site", "site_pages", "serve", "BROWSER_ENV"]

BROWSER_ENV = "LYAPBOOK_CHROMIUM"  # path of the browser, if not chromium on PATH
CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
SWITCHES = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--disable-extensions", "--mute-audio", "--hide-scrollbars=false",
    # Every name resolves to nothing and every connection that is not to this machine goes to a
    # closed local port: the page cannot reach the network, and each attempt is still seen below.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
    "--proxy-server=http://127.0.0.1:9", "--proxy-bypass-list=<-loopback>;127.0.0.1;localhost",
    "--remote-debugging-pipe",
)
LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", "[::1]"}
VIEWPORT = (1280, 900)


@dataclass(frozen=True)
class Problem:
    page: str  # path of the page inside the site
    mode: str  # "http" or "file"
    kind: str
    detail: str

    def __str__(self) -> str:
        return f"{self.page} ({self.mode}): {self.kind}: {self.detail}"


def find_chromium() -> str | None:
    """The Chromium to use: ``$LYAPBOOK_CHROMIUM``, else the first of :data:`CANDIDATES` on PATH."""
    chosen = os.environ.get(BROWSER_ENV)
    if chosen:
        return chosen if Path(chosen).is_file() else None
    return next((path for path in map(shutil.which, CANDIDATES) if path), None)


class Chromium:
    """A headless Chromium and one page, driven over the DevTools protocol's pipe."""

    def __init__(self, executable: str | None = None, *, timeout: float = 30.0) -> None:
        self.executable = executable or find_chromium()
        if not self.executable:
            raise RuntimeError("no Chromium found: install Debian's chromium (apt-get install chromium)")
        self.timeout = timeout
        self._profile = tempfile.TemporaryDirectory(prefix="lyapbook-chromium-")
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        # The protocol pipe is the browser's fds 3 (in) and 4 (out); our ends of it are moved
        # above 9 first, so that they cannot be fds 3 or 4 themselves.
        to_browser_r, from_browser_w = (_above(fd, 10) for fd in (to_browser_r, from_browser_w))
        arguments = [self.executable, *SWITCHES, f"--user-data-dir={self._profile.name}", "about:blank"]
        self.process = _Process(os.posix_spawn(self.executable, arguments, dict(os.environ), file_actions=[
            (os.POSIX_SPAWN_DUP2, to_browser_r, 3),
            (os.POSIX_SPAWN_DUP2, from_browser_w, 4),
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
            (os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0),
        ]))
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict] = []
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable", session=True)
        width, height = VIEWPORT
        self.call("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}, session=True)

    # -- protocol ---------------------------------------------------------------------------
    def _read(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or self.process.poll() is not None:
                raise TimeoutError("Chromium did not answer in time" if left <= 0 else "Chromium exited")
            ready, _, _ = select.select([self._from_browser], [], [], left)
            if ready:
                chunk = os.read(self._from_browser, 1 << 20)
                if not chunk:
                    raise RuntimeError("Chromium closed its DevTools pipe")
                self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def call(self, method: str, params: dict | None = None, *, session: bool = False, timeout: float | None = None) -> dict:
        """Send one command and return its result; events that arrive meanwhile are kept."""
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = self.session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error'].get('message')}")
                return reply.get("result", {})
            if "method" in reply:
                self.events.append(reply)

    def wait_for(self, method: str, timeout: float | None = None) -> dict:
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            for index, event in enumerate(self.events):
                if event["method"] == method:
                    return self.events.pop(index)
            self.events.append(self._read(deadline))

    # -- pages ------------------------------------------------------------------------------
    def open(self, url: str) -> None:
        """Load ``url`` and wait for its load event; earlier events are dropped."""
        self.events.clear()
        self.call("Page.navigate", {"url": url}, session=True)
        self.wait_for("Page.loadEventFired")

    def evaluate(self, expression: str, timeout: float | None = None):
        result = self.call("Runtime.evaluate", {"expression": expression, "awaitPromise": True, "returnByValue": True},
                           session=True, timeout=timeout)
        if "exceptionDetails" in result:
            raise RuntimeError(f"page script failed: {result['exceptionDetails'].get('text')}")
        return result["result"].get("value")

    def screenshot(self, path: Path, *, full_page: bool = False) -> None:
        import base64

        params = {"format": "png", "captureBeyondViewport": full_page}
        if full_page:
            height = self.evaluate("document.documentElement.scrollHeight")
            params["clip"] = {"x": 0, "y": 0, "width": VIEWPORT[0], "height": min(height, 16000), "scale": 1}
        Path(path).write_bytes(base64.b64decode(self.call("Page.captureScreenshot", params, session=True)["data"]))

    def pdf(self, path: Path) -> None:
        import base64

        data = self.call("Page.printToPDF", {"printBackground": False}, session=True, timeout=120)["data"]
        Path(path).write_bytes(base64.b64decode(data))

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout=5)
        except (RuntimeError, TimeoutError, OSError):
            pass
        self.process.stop(timeout=10)
        for fd in (self._to_browser, self._from_browser):
            try:
                os.close(fd)
            except OSError:
                pass
        self._profile.cleanup()

    def __enter__(self) -> "Chromium":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _above(fd: int, lowest: int) -> int:
    """A duplicate of ``fd`` numbered at least ``lowest`` (closed on exec); ``fd`` is closed."""
    import fcntl

    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, lowest)
    os.close(fd)
    return moved


class _Process:
    """The browser's process, started by ``os.posix_spawn``: poll it, and stop it."""

    def __init__(self, pid: int) -> None:
        self.pid, self.returncode = pid, None

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def stop(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        if self.poll() is None:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
            self.returncode = -signal.SIGKILL


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # the check reports what matters
        pass


@functools.lru_cache(maxsize=None)
def _ids(path: Path) -> frozenset[str]:
    text = path.read_text(errors="replace")
    return frozenset(re.findall(r"""\s(?:id|name)=["']([^"']+)["']""", text))


class serve:
    """``with serve(folder) as base_url``: a local http server of ``folder`` on a free port."""

    def __init__(self, folder: Path) -> None:
        handler = functools.partial(_QuietHandler, directory=str(folder))
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        return f"http://127.0.0.1:{self.server.server_address[1]}/"

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


# Runs in the page once it has loaded: waits for MathJax and images, then measures.
PAGE_SCRIPT = r"""
(async () => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
    await MathJax.startup.promise;
  }
  await Promise.all([...document.images].map(img => img.complete ? null :
    new Promise(done => { img.addEventListener('load', done); img.addEventListener('error', done); })));
  const found = [];
  const skip = 'script, style, pre, code, textarea, mjx-container, mjx-assistive-mml, .highlight';
  const walker = document.createTreeWalker(document.body || document.documentElement, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const text = node.textContent;
    if (/\\\(|\\\)|\\\[|\\\]|\$\$|\\begin\{/.test(text) && !node.parentElement.closest(skip)) {
      found.push(['unrendered-math', text.trim().slice(0, 80)]);
    }
    const repr = text.match(/<[A-Za-z_][\w.]* object(?: at 0x[0-9a-f]+)?>/);
    if (repr && !node.parentElement.closest(skip)) {
      found.push(['object-repr', repr[0]]);
    }
  }
  for (const error of document.querySelectorAll('mjx-merror, [data-mjx-error]')) {
    found.push(['unrendered-math', 'MathJax error: ' +
      (error.getAttribute('data-mjx-error') || error.textContent).slice(0, 80)]);
  }
  for (const img of document.images) {
    if (!img.naturalWidth) { found.push(['missing-image', img.getAttribute('src')]); }
  }
  const column = document.querySelector('article.bd-article') || document.querySelector('main') || document.body;
  const style = getComputedStyle(column);
  const box = column.getBoundingClientRect();
  const left = box.left + parseFloat(style.paddingLeft), right = box.right - parseFloat(style.paddingRight);
  const slack = 1;
  const label = el => {
    const named = el.closest('[id]');
    return (named ? '#' + named.id + ' ' : '') + el.textContent.trim().replace(/\s+/g, ' ').slice(0, 60);
  };
  const visible = el => el.getClientRects().length > 0 && !el.closest('.toggle-hidden, details:not([open])');
  for (const math of document.querySelectorAll('mjx-container[display="true"]')) {
    const inner = math.querySelector('mjx-math') || math;
    const width = inner.getBoundingClientRect().width;
    if (visible(math) && width > right - left + slack) {
      found.push(['too-wide', `equation ${Math.round(width)} px in a ${Math.round(right - left)} px column: ${label(math)}`]);
    }
  }
  for (const table of column.querySelectorAll('table')) {
    if (!visible(table)) continue;
    const width = table.getBoundingClientRect().width;
    if (width <= right - left + slack) continue;
    const scroller = table.classList.contains('lyapbook-scroll') && table.parentElement;
    const scrolls = scroller && ['auto', 'scroll'].includes(getComputedStyle(scroller).overflowX)
      && scroller.getBoundingClientRect().right <= right + slack;
    if (!scrolls) {
      found.push(['too-wide', `table ${Math.round(width)} px in a ${Math.round(right - left)} px column: ${label(table)}`]);
    }
    const caption = table.querySelector(':scope > caption');
    if (scrolls && caption && caption.getBoundingClientRect().width > right - left + slack) {
      found.push(['too-wide', `caption ${Math.round(caption.getBoundingClientRect().width)} px of a scrolling table in a ${Math.round(right - left)} px column (cut at the edge): ${label(table)}`]);
    }
  }
  const links = [...document.querySelectorAll('a[href]')].map(a => a.href);
  return {found, links};
})()
"""


# Runs with print media emulated: the numbered title and no folded-code boxes must show.
PRINT_SCRIPT = r"""
(() => {
  const found = [];
  const shown = el => el.getClientRects().length > 0 && getComputedStyle(el).visibility !== 'hidden';
  const numbered = document.querySelector('article h1 .section-number');
  const titles = [...document.querySelectorAll('h1')].filter(shown);
  if (numbered && !(titles.length && titles[0].querySelector('.section-number'))) {
    found.push(['print', 'the first printed title has no chapter number: ' +
      (titles.length ? titles[0].textContent.trim().slice(0, 60) : 'no title')]);
  }
  for (const folded of document.querySelectorAll('details.hide')) {
    if (shown(folded) && !folded.open) {
      found.push(['print', 'a folded code cell prints as an empty box: ' +
        folded.textContent.trim().replace(/\s+/g, ' ').slice(0, 60)]);
    }
  }
  return found;
})()
"""


def site_pages(site: Path) -> list[Path]:
    """The pages :func:`check_site` opens: every HTML file outside the build's ``_`` folders."""
    return sorted(
        p for p in site.rglob("*.html")
        if not p.relative_to(site).parts[0].startswith("_")
    )


def _console_problems(events: list[dict]) -> list[tuple[str, str]]:
    found = []
    for event in events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            text = details.get("exception", {}).get("description") or details.get("text", "")
            found.append(("console", text.splitlines()[0] if text else "exception"))
        elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
            args = " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
            found.append(("console", args[:200]))
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            if not entry.get("url", "").endswith("/favicon.ico"):  # the browser asks for it by itself
                found.append(("console", f"{entry.get('text', '')} {entry.get('url', '')}".strip()[:200]))
    return found


def _remote_requests(events: list[dict]) -> list[tuple[str, str]]:
    found = []
    for event in events:
        if event.get("method") != "Network.requestWillBeSent":
            continue
        url = event["params"]["request"]["url"]
        parts = urlsplit(url)
        if parts.scheme in ("http", "https", "ws", "wss") and parts.hostname not in LOCAL_HOSTS:
            found.append(("remote-request", url[:200]))
    return found


def _broken_links(links: list[str], base: str, site: Path) -> list[tuple[str, str]]:
    found = []
    for link in links:
        if not link.startswith(base):
            continue  # another site (the repository, Binder, Colab) or a javascript: link
        parts = urlsplit(link)
        relative = unquote(link[len(base):].split("#", 1)[0].split("?", 1)[0])
        target = site / relative if relative else site / "index.html"
        if target.is_dir():
            target = target / "index.html"
        if not target.is_file():
            found.append(("broken-link", f"{relative} does not exist"))
        elif parts.fragment and target.suffix == ".html" and unquote(parts.fragment) not in _ids(target):
            found.append(("broken-link", f"{relative}#{parts.fragment}: no such anchor"))
    return found


REDIRECT = re.compile(r'^\s*<meta http-equiv="Refresh" content="0; url=([^"]+)"\s*/?>\s*$', re.IGNORECASE)


def _redirect_target(path: Path) -> str | None:
    """The target of a page that only redirects (Sphinx's root ``index.html``), else None."""
    match = REDIRECT.match(path.read_text(encoding="utf-8", errors="replace"))
    return match.group(1) if match else None


def check_page(browser: Chromium, url: str, base: str, site: Path, page: str, mode: str) -> list[Problem]:
    """Every problem of one page (see the module docstring).

    A page that only redirects is not opened (the browser would be measuring it while it leaves);
    its target must exist.
    """
    target = _redirect_target(site / page)
    if target is not None:
        missing = not (site / page).parent.joinpath(target.split("#")[0]).is_file()
        return [Problem(page, mode, "broken-link", f"redirects to {target}, which does not exist")] if missing else []
    browser.open(url)
    measured = browser.evaluate(PAGE_SCRIPT, timeout=60)
    time.sleep(0.05)  # let late console messages arrive
    browser.call("Runtime.evaluate", {"expression": "0"}, session=True)
    browser.call("Emulation.setEmulatedMedia", {"media": "print"}, session=True)
    printed = browser.evaluate(PRINT_SCRIPT)
    browser.call("Emulation.setEmulatedMedia", {"media": ""}, session=True)
    found = measured["found"] + printed + _console_problems(browser.events) + _remote_requests(browser.events)
    found += _broken_links(measured["links"], base, site)
    unique = list(dict.fromkeys(tuple(f) for f in found))
    return [Problem(page, mode, kind, detail) for kind, detail in unique]


def check_site(site: Path, *, modes: tuple[str, ...] = ("http", "file"), pages: list[str] | None = None,
               screenshots: Path | None = None, executable: str | None = None) -> list[Problem]:
    """Open every page of the built site ``site`` (an ``_build/html`` folder); return the problems."""
    site = Path(site).resolve()
    chosen = [site / p for p in pages] if pages else site_pages(site)
    if not chosen:
        raise FileNotFoundError(f"{site} holds no HTML pages: build the book first")
    problems: list[Problem] = []
    with Chromium(executable) as browser:
        for mode in modes:
            if mode == "http":
                with serve(site) as base:
                    for path in chosen:
                        page = path.relative_to(site).as_posix()
                        problems += check_page(browser, base + page, base, site, page, mode)
            elif mode == "file":
                base = site.as_uri() + "/"
                for path in chosen:
                    page = path.relative_to(site).as_posix()
                    problems += check_page(browser, path.as_uri(), base, site, page, mode)
                    if screenshots is not None:
                        screenshots.mkdir(parents=True, exist_ok=True)
                        browser.screenshot(screenshots / (page.replace("/", "_") + ".png"), full_page=True)
            else:
                raise ValueError(f"modes must be 'http' and/or 'file', got {mode!r}")
    return problems
