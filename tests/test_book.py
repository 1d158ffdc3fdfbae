"""The book machinery: profiles, chapters, publishing helpers, the runner and its errors."""

import os
import json
import re
from pathlib import Path

import matplotlib

matplotlib.use("agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from lyapbook.book import notebook_checks, publish
from lyapbook.book.chapters import book_root, discover
from lyapbook.book.cli import main
from lyapbook.book.profiles import PROFILES, BookError, load_profiles, resolve_parameters
from lyapbook.book.render import render_html
from lyapbook.book.runner import run_chapters, select_chapters

from conftest import TINY_CHAPTER  # the tiny book's chapter (its fixture, tiny_book, is in conftest)

ROOT = Path(__file__).resolve().parents[1]


def test_every_profile_names_only_existing_parameters():
    profiles = load_profiles(ROOT)
    chapters = discover(ROOT)
    assert chapters, "no chapters found in _toc.yml"
    known = {c.stem for c in chapters}
    for profile in PROFILES:
        assert set(profiles[profile]) <= known, f"profile {profile} names unknown chapters"
        for chapter in chapters:
            parameters = resolve_parameters(chapter, profile, profiles)
            assert "seed" in parameters, f"{chapter.stem} must take a seed"


def test_every_published_item_is_placed_and_referenced_in_its_chapter():
    for chapter in discover(ROOT):
        text = chapter.source.read_text()
        published = set(re.findall(r'book\.(?:figure|table)\(\s*\w+,\s*"([a-z0-9-]+)"', text))
        assert published, f"{chapter.stem} publishes no figure or table"
        for item in published:
            assert f"```{{glue:md}} {item}\n:format: myst" in text, f"{item} is never placed with glue:md"
            assert f"{{numref}}`{item}`" in text, f"{item} is never referenced with numref"


def _prose(text: str) -> str:
    """A chapter's Markdown outside its code cells and directives' fenced blocks."""
    return re.sub(r"```.*?```", "", text, flags=re.S)


def test_glued_words_and_numbers_are_placed_with_their_own_role():
    """book.words glues Markdown (placed with glue:md; glue:text would print the object's repr);
    book.value glues a number (glue:text with a format). A prose line starting with % is a MyST
    comment, so a sentence wrapped there silently loses its end."""
    for chapter in discover(ROOT):
        text = chapter.source.read_text()
        words = {w for w in re.findall(r'book\.words\(\s*f?"([a-z0-9{}_-]+)"', text)}
        patterns = [re.compile("^" + re.sub(r"\\{[^}]*\\}", "[a-z0-9.-]+", re.escape(w)) + "$") for w in words]
        prose = _prose(text)
        for name in re.findall(r"\{glue:text\}`([a-z0-9.-]+)(?::[^`]*)?`", prose):
            assert not any(p.match(name) for p in patterns), f"{chapter.stem}: {name} is words, place it with glue:md"
        for line in prose.splitlines():
            assert not line.startswith("%"), f"{chapter.stem}: a prose line starts with % (a MyST comment): {line!r}"
        # Inline glue:md renders CommonMark unless told ":myst": math and roles in a phrase
        # would print as raw "$R_1$" and "{ref}`...`".
        plain = re.findall(r"\{glue:md\}`([a-z0-9.-]+)`", prose)
        assert not plain, f"{chapter.stem}: place {plain} as {{glue:md}}`name:myst`"


def test_unknown_profile_and_parameter_are_rejected_before_running():
    chapter = discover(ROOT)[0]
    profiles = load_profiles(ROOT)
    with pytest.raises(BookError, match="unknown profile 'fast'"):
        resolve_parameters(chapter, "fast", profiles)
    with pytest.raises(BookError, match=r"-p: chapter .* has no parameter\(s\) no_such_thing"):
        resolve_parameters(chapter, "ci", profiles, {"no_such_thing": 1})


def test_a_chapter_number_selects_all_its_pages_and_a_stem_one():
    stems = [c.stem for c in discover(ROOT)]
    chapter_two = [stem for stem in stems if stem.startswith("02")]
    assert len(chapter_two) >= 2
    assert [c.stem for c in select_chapters(ROOT, ["02"])] == chapter_two
    assert [c.stem for c in select_chapters(ROOT, [chapter_two[0]])] == chapter_two[:1]
    assert [c.stem for c in select_chapters(ROOT, ["01", "01"])] == [stems[0]]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["build", "--profile", "fast"], "unknown profile 'fast': choose one of ci, teaching, paper"),
        (["run", "--profile", "ci", "--chapter", "01", "-p", "no_such_thing", "3"], "has no parameter(s) no_such_thing"),
        (["run", "--chapter", "99"], "--chapter '99' matches no chapter"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_cli_errors_are_one_line(argv, message, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err
    assert len(err.splitlines()) == 1


def test_helpers_write_nothing_outside_the_book(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for key in (publish.OUTPUT_DIR_ENV, publish.CHAPTER_ENV):
        monkeypatch.delenv(key, raising=False)
    fig, ax = plt.subplots()
    publish.figure(fig, "fig-1-1", "caption")
    publish.table(pd.DataFrame({"a": [1]}), "tab-1-ref", "caption")
    publish.show_table(pd.DataFrame({"a": [1]}), "A title")
    assert publish.value("x", np.float32(0.5)) == 0.5
    assert publish.words("pairing", "the reverse") == "the reverse"
    with pytest.raises(TypeError, match="book.value for numbers"):
        publish.words("x", 0.5)
    from lyapbook.book import verdicts

    monkeypatch.setattr(verdicts, "_RECORDED", {})
    record = verdicts.judge("fig-1-2", "chaos-28", quantity="lambda_1", estimate=0.9, interval=(0.8, 1.0))
    assert record.verdict == "reproduced"
    assert list(tmp_path.iterdir()) == []
    assert not plt.get_fignums()


def test_helpers_save_record_and_validate_ids(tmp_path, monkeypatch):
    monkeypatch.setenv(publish.OUTPUT_DIR_ENV, str(tmp_path))
    monkeypatch.setenv(publish.CHAPTER_ENV, "09_demo")
    fig, ax = plt.subplots()
    ax.plot([0, 1])
    publish.figure(fig, "fig-9-a", "A *caption*.")
    publish.table(pd.DataFrame({"x|y": ["log|det|"], "v": [1.5]}), "tab-9-b", "Table\ncaption")
    assert (tmp_path / "figures" / "fig-9-a.png").stat().st_size > 1000
    assert pd.read_csv(tmp_path / "tables" / "tab-9-b.csv").columns.tolist() == ["x|y", "v"]
    record = json.loads((tmp_path / "records" / "09_demo" / "tab-9-b.json").read_text())
    assert record == {"id": "tab-9-b", "kind": "table", "chapter": "09_demo", "files": ["tables/tab-9-b.csv"], "caption": "Table caption"}
    assert publish._escape_pipes(pd.DataFrame({"a|b": ["c|d"]})).to_markdown(index=False).count("\\|") == 2
    gaps = pd.DataFrame({"a": [1.5, np.nan], "b": ["nan bread", None]}).to_markdown(index=False)
    rows = publish.MISSING_CELL.sub(lambda m: m.group(1) + "–" + m.group(2), gaps).split("\n")
    assert [cell.strip() for cell in rows[-1].strip("|").split("|")] == ["–", "–"] and "nan bread" in rows[-2]
    with pytest.raises(ValueError, match="item_id must look like 'fig-<chapter>-<name>'"):
        publish.figure(fig, "figure one", "caption")
    # an equation's numerical check is a table with the equation's ID; a figure ID is not a table
    publish.table(pd.DataFrame({"t": [1], "error": [1e-15]}), "eq-9-c", "Check")
    assert (tmp_path / "tables" / "eq-9-c.csv").is_file()
    with pytest.raises(ValueError, match="'tab-<chapter>-<name>' or 'eq-<chapter>-<name>'"):
        publish.table(pd.DataFrame({"a": [1]}), "fig-9-a", "caption")


def test_a_run_keeps_what_another_run_wrote_to_the_manifest_meanwhile(tiny_book, monkeypatch):
    from lyapbook.book import runner

    out = tiny_book / "_build" / "ci"
    real_execute = runner._execute

    def execute_while_another_run_finishes(chapter, parameters, profile, folder, environment=None):
        seconds = real_execute(chapter, parameters, profile, folder, environment)
        other = json.loads((out / "manifest.json").read_text()) if (out / "manifest.json").is_file() \
            else {"chapters": {}, "items": {}}
        other["chapters"]["08_other"] = {"notebook": "chapters/08_other.ipynb"}
        (out / "manifest.json").write_text(json.dumps(other))
        return seconds

    monkeypatch.setattr(runner, "_execute", execute_while_another_run_finishes)
    manifest = run_chapters(tiny_book, "ci", select_chapters(tiny_book, ["09"]))
    assert {"08_other", "09_tiny"} <= set(manifest["chapters"])
    assert manifest == json.loads((out / "manifest.json").read_text())
    assert not list(out.glob("*.part"))


def test_runner_executes_and_writes_the_manifest(tiny_book):
    assert book_root(tiny_book) == tiny_book
    manifest = run_chapters(tiny_book, "ci", select_chapters(tiny_book, ["09"]))
    out = tiny_book / "_build" / "ci"
    assert set(manifest["items"]) == {"fig-9-line", "tab-9-size", "fig-1-1"}
    judged = manifest["items"]["fig-1-1"]
    assert judged["kind"] == "check" and judged["chapter"] == "09_tiny" and judged["profile"] == "ci"
    (record,) = judged["verdicts"]
    assert (record["claim"], record["scale"], record["estimate"], record["interval"]) == ("orbits", "ci", 5.0, [4.0, 6.0])
    assert record["verdict"] == "reproduced" and record["paper"] == "orbits about an attractor (Fig. 1.1)"
    item = manifest["items"]["fig-9-line"]
    for field in ("chapter", "files", "profile", "parameters", "seed", "runtime_s", "git_commit", "packages", "device"):
        assert field in item
    assert item["parameters"] == {"seed": 0, "size": 5} and item["profile"] == "ci" and item["seed"] == 0
    assert (out / item["files"][0]).is_file()
    assert json.loads((out / "manifest.json").read_text())["chapters"]["09_tiny"]["parameters"]["size"] == 5
    executed = (out / "chapters" / "09_tiny.ipynb").read_text()
    assert "How this page was made" in executed and "Profile **ci**" in executed
    assert (out / "intro.md").is_file() and (out / "_config.yml").is_file()
    # Overrides are checked against the chapter before anything runs.
    with pytest.raises(BookError, match="no parameter"):
        run_chapters(tiny_book, "ci", select_chapters(tiny_book, ["09"]), {"sizes": 4})


def test_an_unchanged_chapter_is_kept_and_any_change_executes_it_again(tiny_book, monkeypatch, capsys):
    from lyapbook.book import runner

    executed = []
    real_execute = runner._execute

    def counting(chapter, parameters, profile, folder, environment=None):
        executed.append(dict(parameters))
        return real_execute(chapter, parameters, profile, folder, environment)

    monkeypatch.setattr(runner, "_execute", counting)
    chapter = select_chapters(tiny_book, ["09"])
    out = tiny_book / "_build" / "ci"
    first = run_chapters(tiny_book, "ci", chapter)
    assert run_chapters(tiny_book, "ci", chapter) == first and len(executed) == 1
    assert "unchanged since its run" in capsys.readouterr().out
    run_chapters(tiny_book, "ci", chapter, rerun=True)
    assert len(executed) == 2
    run_chapters(tiny_book, "ci", chapter, {"size": 6})  # other parameters
    assert executed[-1]["size"] == 6
    (out / "figures" / "fig-9-line.png").unlink()  # an output lost
    run_chapters(tiny_book, "ci", chapter, {"size": 6})
    assert len(executed) == 4 and (out / "figures" / "fig-9-line.png").is_file()
    source = tiny_book / "chapters" / "09_tiny.md"
    source.write_text(source.read_text() + "\nOne more sentence.\n")  # the chapter edited
    run_chapters(tiny_book, "ci", chapter, {"size": 6})
    assert len(executed) == 5
    run_chapters(tiny_book, "ci", chapter, {"size": 6})
    assert len(executed) == 5
    module = tiny_book / "lyapbook" / "engine.py"  # the package edited
    module.parent.mkdir()
    module.write_text("STEP = 1\n")
    run_chapters(tiny_book, "ci", chapter, {"size": 6})
    module.write_text("STEP = 2\n")
    run_chapters(tiny_book, "ci", chapter, {"size": 6})
    assert len(executed) == 7


def test_lanes_keep_the_pages_of_a_chapter_in_order_and_timing_pages_alone(tmp_path):
    from lyapbook.book.chapters import Chapter
    from lyapbook.book.runner import lanes

    def page(stem, alone=False):
        header = "---\nlyapbook:\n  runs_alone: true\n---\n" if alone else ""
        (tmp_path / f"{stem}.md").write_text(header + "# A page\n")
        return Chapter(stem, tmp_path / f"{stem}.md")

    pages = [page("01_a"), page("02_a", alone=True), page("02b_b"), page("03a_a"), page("03b_b"), page("04a_a")]
    alone, parallel = lanes(pages)
    assert [c.stem for c in alone] == ["02_a"]
    assert [[c.stem for c in lane] for lane in parallel] == [["01_a"], ["02b_b"], ["03a_a", "03b_b"], ["04a_a"]]


def test_chapters_run_side_by_side_into_one_manifest(tiny_book, capsys):
    from lyapbook.book.cli import main
    from lyapbook.book.runner import run_lanes

    other = TINY_CHAPTER.replace("fig-9-line", "fig-8-line").replace("tab-9-size", "tab-8-size")
    (tiny_book / "chapters" / "08_other.md").write_text(other.replace('"fig-1-1", "orbits"', '"fig-1-2", "chaos-28"'))
    toc = tiny_book / "_toc.yml"
    toc.write_text(toc.read_text() + "  - file: chapters/08_other\n")
    manifest = run_lanes(tiny_book, "ci", select_chapters(tiny_book, None), jobs=2)
    assert set(manifest["chapters"]) == {"08_other", "09_tiny"}
    assert {"fig-8-line", "fig-9-line", "tab-8-size", "tab-9-size"} <= set(manifest["items"])
    assert manifest["items"]["fig-8-line"]["chapter"] == "08_other"
    assert main(["run", "--profile", "ci", "--jobs", "0"]) == 2
    assert "--jobs must be a whole number of at least 1" in capsys.readouterr().err


def test_nbval_preparation_needs_golden_records(tiny_book):
    chapters = discover(tiny_book)
    with pytest.raises(BookError, match="has no golden record.*run `make golden`"):
        notebook_checks.prepare(tiny_book, chapters)
    notebook_checks.record_golden(tiny_book, chapters)
    golden = json.loads((tiny_book / "tests" / "golden" / "09_tiny.json").read_text())
    (group,) = golden["groups"]
    assert group["group"] == "size"
    assert [(c["name"], c["kind"], c["value"]) for c in group["checks"]] == [
        ("twice the size", "equal", 10), ("a measured number", "estimate", 1.005)]
    assert group["checks"][1]["tolerance"] == 0.06  # 6 standard errors of 0.01
    (path,) = notebook_checks.prepare(tiny_book, chapters)
    text = path.read_text()
    assert "size = 5" in text and "LYAPBOOK_PERTURB" in text and "all 2 within tolerance" in text


def test_rendered_html_numbers_and_labels_each_item(tiny_book):
    chapters = select_chapters(tiny_book, None)
    with pytest.raises(BookError, match="not executed yet"):
        render_html(tiny_book, "ci", chapters)
    run_chapters(tiny_book, "ci", chapters)
    index = render_html(tiny_book, "ci", chapters)
    page = (index.parent / "chapters" / "09_tiny.html").read_text()
    assert 'id="fig-9-line"' in page and 'id="tab-9-size"' in page
    assert re.search(r'caption-number">Fig\. \d+ ', page) and re.search(r'caption-number">Table \d+ ', page)
    assert "A line of 5 points." in page
    assert 'href="#fig-9-line"' in page and 'href="#tab-9-size"' in page
    assert "How this page was made" in page
    # The page's download is a notebook with its results, its prose in plain Jupyter Markdown.
    reader = json.loads((index.parent / "_sources" / "chapters" / "09_tiny.ipynb").read_text())
    outputs = [o for cell in reader["cells"] for o in cell.get("outputs", [])]
    assert any("image/png" in o.get("data", {}) for o in outputs)
    assert any("".join(o.get("data", {}).get("text/markdown", "")).startswith("|   n |") for o in outputs)
    prose = "\n".join("".join(cell["source"]) for cell in reader["cells"] if cell["cell_type"] == "markdown")
    assert "See Fig. 1 and Table 1 ([Vogt, 2023])." in prose and "**Fig. 1.** A line of 5 points." in prose
    assert "{glue" not in prose and "{numref}" not in prose


def test_kernels_get_passive_openmp_threads_unless_the_user_chose(monkeypatch):
    from lyapbook.book import cli

    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    cli.main(["render", "--profile", "no-such-profile"])  # refused at once; the environment is set first
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    cli.main(["render", "--profile", "no-such-profile"])
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"


def test_a_kernel_that_dies_while_starting_is_started_again(tiny_book, monkeypatch, capsys):
    """Two lanes can start kernels on the same free port; the page is executed again, from scratch,
    up to runner.KERNEL_STARTS times, and any other error is not retried."""
    import papermill

    real = papermill.execute_notebook
    calls = []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("Kernel died before replying to kernel_info")
        return real(*args, **kwargs)

    monkeypatch.setattr(papermill, "execute_notebook", flaky)
    manifest = run_chapters(tiny_book, "ci", select_chapters(tiny_book, ["09"]), rerun=True)
    assert len(calls) == 2 and "09_tiny" in manifest["chapters"]
    assert "the kernel died while starting" in capsys.readouterr().err

    def broken(*args, **kwargs):
        calls.append(1)
        raise RuntimeError("something else")

    monkeypatch.setattr(papermill, "execute_notebook", broken)
    calls.clear()
    with pytest.raises(RuntimeError, match="something else"):
        run_chapters(tiny_book, "ci", select_chapters(tiny_book, ["09"]), rerun=True)
    assert len(calls) == 1
