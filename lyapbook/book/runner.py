"""Execute chapters with papermill under a profile; write notebooks, figures, tables, manifest."""

from __future__ import annotations

import datetime as _dt
import fcntl
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path

import nbformat

from .chapters import Chapter, discover, toc_pages
from .golden import CHECKS_ENV, GOLDEN_ENV, golden_file
from .profiles import BookError, check_profile, load_profiles, resolve_parameters
from .publish import CHAPTER_ENV, OUTPUT_DIR_ENV, PROFILE_ENV

__all__ = ["build_dir", "select_chapters", "run_chapters", "run_lanes", "lanes", "stage_book", "KERNEL_NAME"]

KERNEL_NAME = "python3"
KERNEL_STARTS = 3  # attempts to start a page's kernel (see _execute)
# Files the rendered book needs besides the executed chapters and the pages named in _toc.yml.
BOOK_FILES = ("_config.yml", "_toc.yml", "references.bib")
TRACKED_PACKAGES = (
    "lyapbook", "torch", "numpy", "scipy", "pandas", "matplotlib", "seaborn", "scikit-learn",
    "jupyter-book", "myst-nb", "sphinx", "jupytext", "papermill", "nbval",
)


def build_dir(root: Path, profile: str) -> Path:
    """``_build/<profile>``: the staged book source, its outputs and the rendered HTML."""
    return root / "_build" / profile


def select_chapters(root: Path, names: list[str] | None) -> list[Chapter]:
    """All chapters, or those whose stem equals or starts with one of ``names``.

    ``02`` selects every page of chapter 2 (``02_rnn_maps``, ``02b_rnn_training``); a full stem selects one.
    """
    chapters = discover(root)
    if not names:
        return chapters
    chosen: list[Chapter] = []
    for name in names:
        exact = [c for c in chapters if c.stem == name]
        matches = exact or [c for c in chapters if c.stem.startswith(name)]
        if not matches:
            known = ", ".join(c.stem for c in chapters)
            raise BookError(f"--chapter {name!r} matches no chapter; chapters are {known}")
        chosen.extend(c for c in matches if c not in chosen)
    return chosen


def stage_book(root: Path, out: Path) -> None:
    """Copy the book's configuration and non-chapter pages next to the executed chapters."""
    out.mkdir(parents=True, exist_ok=True)
    pages = [p.relative_to(root) for p in toc_pages(root) if p.parent.name != "chapters"]
    for name in (*BOOK_FILES, *pages):
        if (root / name).is_file():
            (out / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(root / name, out / name)


def run_chapters(
    root: Path, profile: str, chapters: list[Chapter], overrides: dict[str, object] | None = None,
    *, rerun: bool = False, check_golden: bool = False,
) -> dict:
    """Execute ``chapters`` under ``profile`` (plus ``overrides``) and update the manifest.

    Every parameter is checked against every chapter before the first one runs. A chapter whose
    last run in ``_build/<profile>`` had the same :func:`page_key` (chapter source, parameters,
    device, the package's source, the lock file) and whose outputs are all still there is not
    executed again, unless ``rerun``. With ``check_golden`` (the ``ci`` profile without
    overrides, as ``make test`` runs it) every checked cell compares its values with the
    chapter's golden record and a value outside its tolerance fails the page. Returns the
    manifest as written to ``_build/<profile>/manifest.json``.
    """
    check_profile(profile)
    profiles = load_profiles(root)
    overrides = overrides or {}
    if overrides and len(chapters) != 1:
        raise BookError("-p overrides apply to one chapter: add --chapter NAME")
    plans = [(chapter, resolve_parameters(chapter, profile, profiles, overrides)) for chapter in chapters]
    if check_golden and (profile != "ci" or overrides):
        raise BookError("--check-golden compares with the golden records of the ci profile: use --profile ci and no -p")

    out = build_dir(root, profile)
    stage_book(root, out)
    manifest_path = out / "manifest.json"
    environment = _environment(root)
    fingerprint = package_fingerprint(root)
    for chapter, parameters in plans:
        device = _device(parameters)
        golden = golden_file(root, chapter.stem)
        checking = {CHECKS_ENV: "compare", GOLDEN_ENV: str(golden.resolve())} if check_golden else {}
        keyed = parameters  # a checked page is executed again when its golden record changes
        if check_golden:
            keyed = {**parameters, "~golden": hashlib.sha256(golden.read_bytes()).hexdigest() if golden.is_file() else None}
        key = page_key(chapter, profile, keyed, device, fingerprint)
        previous = _read_manifest(manifest_path)["chapters"].get(chapter.stem, {})
        if not rerun and previous.get("key") == key and _outputs_present(out, chapter.stem):
            print(
                f"[lyapbook] {chapter.stem}: unchanged since its run of {previous.get('created', '?')} "
                f"(source, parameters, package, lock file); kept. --rerun executes it again.", flush=True,
            )
            continue
        print(f"[lyapbook] {chapter.stem}: executing with profile {profile!r}", flush=True)
        runtime = _execute(chapter, parameters, profile, out, checking)
        print(f"[lyapbook] {chapter.stem}: done in {runtime:.1f} s", flush=True)
        _add_provenance_note(out / "chapters" / f"{chapter.stem}.ipynb", profile, parameters, runtime, device, environment)
        with _locked(out / "manifest.lock"):
            _record(manifest_path, chapter, profile, parameters, runtime, device, key, environment, out)
    return _read_manifest(manifest_path)


def _record(manifest_path: Path, chapter: Chapter, profile: str, parameters: dict[str, object], runtime: float,
            device: str, key: str, environment: dict, out: Path) -> None:
    """Write one executed chapter and its items into the manifest (hold the manifest lock)."""
    # Read again: another run of this profile (another chapter) may have written it meanwhile.
    manifest = _read_manifest(manifest_path)
    manifest.update(profile=profile, **environment)
    manifest["chapters"][chapter.stem] = {
        "notebook": f"chapters/{chapter.stem}.ipynb",
        "parameters": parameters,
        "runtime_s": round(runtime, 2),
        "device": device,
        "key": key,
        "created": environment["created"],
    }
    previous = manifest["items"]
    # One item can be judged on several pages (one per scale): keep the verdicts other pages recorded.
    others = {item_id: [v for v in item.get("verdicts", []) if v.get("page", item["chapter"]) != chapter.stem]
              for item_id, item in previous.items()}
    manifest["items"] = {k: v for k, v in previous.items() if v["chapter"] != chapter.stem}
    provenance = {
        "profile": profile,
        "parameters": parameters,
        "seed": parameters.get("seed"),
        "runtime_s": round(runtime, 2),
        "device": device,
        "git_commit": environment["git_commit"],
        "packages": environment["packages"],
    }
    records = out / "records" / chapter.stem
    for record_file in sorted(records.glob("*.json")):
        record = json.loads(record_file.read_text())
        manifest["items"][record["id"]] = {**record, **provenance}
    for item_id, verdicts in others.items():
        if verdicts:  # an item this page re-recorded or dropped keeps the other pages' verdicts
            page = verdicts[0].get("page", previous[item_id]["chapter"])
            entry = manifest["items"].setdefault(
                item_id, {"id": item_id, "kind": "check", "chapter": page, "files": [], "caption": ""})
            entry["verdicts"] = [*verdicts]
        elif item_id in manifest["items"]:
            manifest["items"][item_id].pop("verdicts", None)
    for verdict_file in sorted(records.glob("verdicts/*.json")):
        item_id = verdict_file.stem
        entry = manifest["items"].setdefault(
            item_id, {"id": item_id, "kind": "check", "chapter": chapter.stem, "files": [], "caption": "", **provenance}
        )
        judged = [{**v, "page": chapter.stem} for v in json.loads(verdict_file.read_text())]
        entry["verdicts"] = [*entry.get("verdicts", []), *judged]
    partial = manifest_path.with_suffix(".json.part")
    partial.write_text(json.dumps(manifest, indent=1, sort_keys=True, default=str))
    os.replace(partial, manifest_path)  # readers never see a half-written manifest


@contextmanager
def _locked(path: Path):
    """An exclusive lock on ``path`` (created if missing), held by one process at a time."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def lanes(chapters: list[Chapter]) -> tuple[list[Chapter], list[list[Chapter]]]:
    """Split ``chapters`` into pages that must run alone (they time something) and lanes that
    may run side by side: one lane per chapter number, its pages in order, because pages of
    one chapter share trained networks (the first trains them, the next reuse them)."""
    alone = [c for c in chapters if c.runs_alone]
    grouped: dict[str, list[Chapter]] = {}
    for chapter in chapters:
        if chapter not in alone:
            grouped.setdefault(chapter.number, []).append(chapter)
    return alone, list(grouped.values())


def run_lanes(root: Path, profile: str, chapters: list[Chapter], jobs: int, *, rerun: bool = False,
              check_golden: bool = False) -> dict:
    """Execute ``chapters`` with up to ``jobs`` of them at once; returns the manifest.

    Pages that run alone go first, one by one, in this process; then each lane (see
    :func:`lanes`) runs in its own ``python -m lyapbook.book run`` process, ``jobs`` lanes at a
    time, longest chapters first. Every chapter's parameters are checked before anything runs.
    """
    check_profile(profile)
    profiles = load_profiles(root)
    for chapter in chapters:
        resolve_parameters(chapter, profile, profiles, {})
    alone, parallel = lanes(chapters)
    if alone:
        run_chapters(root, profile, alone, rerun=rerun, check_golden=check_golden)
    previous = _read_manifest(build_dir(root, profile) / "manifest.json")["chapters"]
    parallel.sort(key=lambda lane: -sum(previous.get(c.stem, {}).get("runtime_s", 0.0) for c in lane))

    def run_lane(lane: list[Chapter]) -> int:
        command = [sys.executable, "-m", "lyapbook.book", "run", "--profile", profile]
        for chapter in lane:
            command += ["--chapter", chapter.stem]
        flags = [*(["--rerun"] if rerun else []), *(["--check-golden"] if check_golden else [])]
        return subprocess.run([*command, *flags], cwd=root).returncode

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        codes = list(pool.map(run_lane, parallel))
    failed = [c.stem for lane, code in zip(parallel, codes) if code != 0 for c in lane]
    if failed:
        raise BookError(f"chapters {', '.join(failed)} (in the lanes that failed) did not finish; their errors are above")
    return _read_manifest(build_dir(root, profile) / "manifest.json")


def package_fingerprint(root: Path) -> str:
    """SHA-256 over what a chapter's results depend on besides its own source and parameters:
    every file of the ``lyapbook`` package, the lock file (the exact versions of everything
    else), the shipped published data's provenance (which holds each archive's SHA-256) and the
    Python version."""
    digest = hashlib.sha256(platform.python_version().encode())
    files = sorted(p for p in (root / "lyapbook").rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    for path in [*files, root / "requirements.lock", root / "data" / "published" / "provenance.json"]:
        if path.is_file():
            digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def page_key(chapter: Chapter, profile: str, parameters: dict[str, object], device: str, fingerprint: str) -> str:
    """The identity of one execution of a chapter: equal keys give the same page."""
    described = json.dumps(
        {"profile": profile, "parameters": parameters, "device": device, "package": fingerprint},
        sort_keys=True, default=str,
    )
    return hashlib.sha256(chapter.source.read_bytes() + b"\0" + described.encode()).hexdigest()


def _outputs_present(out: Path, stem: str) -> bool:
    """The executed notebook and every file the manifest lists for the chapter's items exist."""
    manifest = _read_manifest(out / "manifest.json")
    if not (out / "chapters" / f"{stem}.ipynb").is_file():
        return False
    files = [f for item in manifest["items"].values() if item.get("chapter") == stem for f in item.get("files", [])]
    return all((out / f).is_file() for f in files)


def _read_manifest(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {"chapters": {}, "items": {}}


def _execute(chapter: Chapter, parameters: dict[str, object], profile: str, out: Path,
             environment: dict[str, str] | None = None) -> float:
    import papermill

    target = out / "chapters" / f"{chapter.stem}.ipynb"
    target.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with _kernel_environment(out, chapter.stem, profile, environment or {}):
        for attempt in range(1, KERNEL_STARTS + 1):
            nbformat.write(chapter.notebook(), target)
            shutil.rmtree(out / "records" / chapter.stem, ignore_errors=True)
            try:
                papermill.execute_notebook(
                    str(target), str(target), parameters=parameters, kernel_name=KERNEL_NAME,
                    cwd=str(target.parent), progress_bar=False,
                )
                break
            except papermill.PapermillExecutionError as error:
                raise BookError(
                    f"chapter {chapter.stem} failed in cell {error.exec_count}: {error.ename}: {error.evalue} "
                    f"(the executed notebook with the traceback is {target})"
                ) from None
            except RuntimeError as error:
                # Kernels started at the same moment by two lanes can draw the same free port;
                # the loser dies before it answers. Nothing of the page ran: start it again.
                if "Kernel died before replying" not in str(error) or attempt == KERNEL_STARTS:
                    raise
                print(f"[lyapbook] {chapter.stem}: the kernel died while starting ({error}); "
                      f"starting it again ({attempt + 1} of {KERNEL_STARTS})", file=sys.stderr, flush=True)
    return time.perf_counter() - started


@contextmanager
def _kernel_environment(out: Path, chapter: str, profile: str, extra: dict[str, str]):
    """Tell the kernel (which inherits this process's environment) where outputs go, and ``extra``."""
    values = {OUTPUT_DIR_ENV: str(out.resolve()), CHAPTER_ENV: chapter, PROFILE_ENV: profile, "MPLBACKEND": "agg",
              CHECKS_ENV: "", GOLDEN_ENV: "", **extra}
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


def _device(parameters: dict[str, object]) -> str:
    requested = str(parameters.get("device", "cpu"))
    import torch

    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda") and torch.cuda.is_available():
        return f"{requested} ({torch.cuda.get_device_name()})"
    return requested


def _environment(root: Path) -> dict[str, object]:
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True)
        except (OSError, subprocess.CalledProcessError):
            return None
        return done.stdout.strip()

    packages = {}
    for name in TRACKED_PACKAGES:
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            packages[name] = None
    status = git("status", "--porcelain", "--untracked-files=no")
    return {
        "git_commit": git("rev-parse", "HEAD"),
        "git_dirty": bool(status) if status is not None else None,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": packages,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
    }


def _add_provenance_note(
    notebook_path: Path, profile: str, parameters: dict[str, object], runtime: float, device: str, environment: dict
) -> None:
    """Insert a note after the parameters saying how this page was made; hide papermill's cell."""
    notebook = nbformat.read(notebook_path, as_version=4)
    index = 0
    for i, cell in enumerate(notebook.cells):
        tags = cell.metadata.get("tags", [])
        if "injected-parameters" in tags:
            cell.metadata["tags"] = [*tags, "remove-cell"]
            index = i + 1
        elif "parameters" in tags and not index:
            index = i + 1
    commit = (environment["git_commit"] or "unknown")[:10] + (" (modified)" if environment["git_dirty"] else "")
    listed = ", ".join(f"`{key} = {value!r}`" for key, value in parameters.items())
    note = (
        ":::{admonition} How this page was made\n:class: note\n\n"
        f"Profile **{profile}**; executed in **{runtime:.1f} s** on `{device}`; lyapbook "
        f"{environment['packages']['lyapbook']}, torch {environment['packages']['torch']}, commit `{commit}`, "
        f"{environment['created'][:10]}.\n\nParameters: {listed}.\n\n"
        f"Rerun this page: `python -m lyapbook.book build --profile {profile} --chapter {notebook_path.stem}`.\n:::\n"
    )
    notebook.cells.insert(index, nbformat.v4.new_markdown_cell(note))
    nbformat.write(notebook, notebook_path)
