"""``python -m lyapbook.book``: execute, render and check the book.

    python -m lyapbook.book build [--profile ci|teaching|paper] [--chapter 01] [-p NAME VALUE ...]
                                  [--jobs N] [--rerun]
    python -m lyapbook.book run    ...   execute only (notebooks, figures, tables, manifest)
    python -m lyapbook.book render [--profile P]   HTML from notebooks already executed
    python -m lyapbook.book nbval-prepare          notebooks for `pytest --nbval-lax`
    python -m lyapbook.book golden                 re-record the checked outputs (ci profile)
    python -m lyapbook.book environment            rewrite environment.yml from requirements.lock
    python -m lyapbook.book check-browser [--profile P] [--screenshots DIR]
                                                   the built book in headless Chromium, offline
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import yaml

from . import notebook_checks
from .chapters import book_root
from .environment import write_environment
from .profiles import DEFAULT_PROFILE, BookError, check_profile
from .render import render_html
from .runner import run_chapters, run_lanes, select_chapters


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not the usage block
        raise BookError(message)


def _jobs(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"--jobs must be a whole number of at least 1, got {text!r}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m lyapbook.book", description="Execute, render and check the lyapbook book.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name, text in (("build", "execute chapters, then render HTML"), ("run", "execute chapters only")):
        sub = commands.add_parser(name, help=text)
        sub.add_argument("--profile", default=DEFAULT_PROFILE, help="ci, teaching (default) or paper")
        sub.add_argument("--chapter", action="append", help="a chapter stem or its number prefix (repeatable)")
        sub.add_argument(
            "-p", "--parameter", nargs=2, action="append", metavar=("NAME", "VALUE"), default=[],
            help="override one parameter of the chosen chapter (VALUE is read as YAML: 3, 0.5, true, text)",
        )
        sub.add_argument(
            "--jobs", type=_jobs, default=1, metavar="N",
            help="run up to N chapters at once (default 1); pages of one chapter run in order, and pages "
                 "that time something run alone",
        )
        sub.add_argument(
            "--check-golden", action="store_true",
            help="compare every checked cell with its golden record in tests/golden/ (ci profile; make test)",
        )
        sub.add_argument(
            "--rerun", action="store_true",
            help="execute every chosen chapter, even one unchanged since its last run (same source, "
                 "parameters, package and lock file), which is otherwise kept",
        )
    render = commands.add_parser("render", help="render HTML from executed notebooks")
    render.add_argument("--profile", default=DEFAULT_PROFILE)
    for name, text in (("nbval-prepare", "write the nbval notebooks"), ("golden", "re-record golden outputs")):
        sub = commands.add_parser(name, help=text)
        sub.add_argument("--chapter", action="append")
    commands.add_parser("environment", help="rewrite environment.yml from requirements.lock")
    check = commands.add_parser("check-browser", help="open the built book in headless Chromium, offline")
    check.add_argument("--profile", default=DEFAULT_PROFILE)
    check.add_argument("--screenshots", type=Path, help="write a full-page PNG of every page here")
    return parser


# Kernels inherit this: OpenMP threads that sleep between parallel regions instead of spinning.
# The chapters are full of small tensor operations; on a machine whose cores are busy with other
# work, spinning threads made them 10-20 times slower (a Henon spectrum: 105 s against 11 s).
KERNEL_ENVIRONMENT = {"OMP_WAIT_POLICY": "PASSIVE"}


def main(argv: list[str] | None = None) -> int:
    for name, value in KERNEL_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    try:
        args = _parser().parse_args(argv)
        root = book_root()
        if args.command in ("build", "run", "render", "check-browser"):
            check_profile(args.profile)
        if args.command == "check-browser":
            return _check_browser(root, args.profile, args.screenshots)
        chapters = select_chapters(root, getattr(args, "chapter", None))
        if args.command in ("build", "run"):
            overrides = {name: yaml.safe_load(value) for name, value in args.parameter}
            if args.jobs > 1 and not overrides and len(chapters) > 1:
                run_lanes(root, args.profile, chapters, args.jobs, rerun=args.rerun, check_golden=args.check_golden)
            else:
                run_chapters(root, args.profile, chapters, overrides, rerun=args.rerun,
                             check_golden=args.check_golden)
            if args.command == "build":
                render_html(root, args.profile, select_chapters(root, None))
        elif args.command == "render":
            render_html(root, args.profile, chapters)
        elif args.command == "nbval-prepare":
            for path in notebook_checks.prepare(root, chapters):
                print(f"[lyapbook] nbval notebook: {path.relative_to(root)}")
        elif args.command == "golden":
            notebook_checks.record_golden(root, chapters)
        elif args.command == "environment":
            write_environment(root / "requirements.lock", root / "environment.yml")
    except (BookError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


def _check_browser(root: Path, profile: str, screenshots: Path | None) -> int:
    from .browser import check_site, find_chromium, site_pages
    from .runner import build_dir

    site = build_dir(root, profile) / "_build" / "html"
    if not site.is_dir():
        raise BookError(f"{site} is not built: run `python -m lyapbook.book build --profile {profile}` first")
    if not find_chromium():
        raise BookError("no Chromium found: install Debian's chromium (apt-get install chromium) or set LYAPBOOK_CHROMIUM")
    problems = check_site(site, screenshots=screenshots)
    for problem in problems:
        print(problem)
    checked = len(site_pages(site))
    found = (f"{len(problems)} problem(s) on {len({p.page for p in problems})} of {checked} pages" if problems
             else f"no problems on any of {checked} pages")
    print(f"[lyapbook] browser check of {site}: {found}")
    return 1 if problems else 0
