"""Checked numbers compared within their noise (lyapbook.book.golden) and the switch that stands
in for another machine (lyapbook.perturbation).

What is asserted:
- each kind of check accepts what it should and refuses a value moved by a few tolerances, with a
  message holding both values, the tolerance and its reason;
- a golden whose tolerance reaches into another regime (a stable lambda_1 for a chaotic one) is
  refused, when it is recorded and in every golden file of the book;
- every golden file of the book is canonical (written again, the same bytes) and each of its
  checks fails when its value is moved by three tolerances;
- the whole path works end to end: a recorded chapter passes nbval perturbed, and fails, naming
  both values, once its golden value is moved;
- the perturbation moves random draws and default initial states at the asked level, changes a
  chaotic estimate, leaves exact identities exact, and keeps its results in a cache of its own.
"""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import lyapbook
from lyapbook import perturbation
from lyapbook.book import golden
from lyapbook.book.golden import Check, CheckFailure, CheckGroup

ROOT = Path(__file__).resolve().parents[1]
GOLDEN_FILES = sorted((ROOT / "tests" / "golden").glob("*.json"))


def _recorded(group: CheckGroup) -> list[Check]:
    """The group's checks as a golden file stores them."""
    return [Check.from_json(c.to_json()) for c in group.records]


def test_an_estimate_passes_within_six_standard_errors_and_fails_beyond():
    group = CheckGroup("g")
    group.estimate("lambda_1", 0.58, se=0.01, what="over 20 runs")
    (check,) = _recorded(group)
    assert check.tolerance == pytest.approx(0.06) and "6 s.e. of 0.01 over 20 runs" in check.why
    assert check.accepts(0.58 + 0.059) and check.accepts(0.58 - 0.059)
    assert not check.accepts(0.58 + 3 * 0.06)
    message = check.failure(0.76)
    assert "golden 0.58 ± 0.06" in message and "here 0.76" in message and "3.0 tolerances" in message
    assert not check.accepts(float("nan")) and not check.accepts("0.58")


def test_a_rounding_floor_keeps_a_noiseless_estimate_from_a_zero_tolerance():
    group = CheckGroup("g")
    group.estimate("mean", -3.5, se=0.0, what="over 8 runs")
    (check,) = _recorded(group)
    assert check.tolerance == pytest.approx(3.5e-6) and "rounding floor" in check.why


def test_at_most_and_equal():
    group = CheckGroup("g")
    group.at_most("error", 3e-16, 1e-12, why="float64 rounding")
    group.equal("count", 6)
    group.equal("flag", True)
    error, count, flag = _recorded(group)
    assert error.accepts(9e-13) and not error.accepts(3e-12)
    assert "must be at most 1e-12 (float64 rounding), here 3e-12" in error.failure(3e-12)
    assert count.accepts(6) and not count.accepts(7) and not count.accepts(6.0)
    assert flag.accepts(True) and not flag.accepts(1)


def test_bad_checks_are_refused_with_the_fix():
    group = CheckGroup("g")
    with pytest.raises(ValueError, match="exactly one of se="):
        group.estimate("x", 1.0)
    with pytest.raises(ValueError, match="say over what"):
        group.estimate("x", 1.0, se=0.1)
    with pytest.raises(ValueError, match="no sign; give regime"):
        group.estimate("x", 0.0, tolerance=0.1, why="w")
    with pytest.raises(ValueError, match="a float is never compared exactly"):
        group.equal("x", 0.5)
    group.equal("x", 1)
    with pytest.raises(ValueError, match="used twice"):
        group.equal("x", 1)


def test_a_tolerance_reaching_another_regime_is_refused_when_recorded(monkeypatch):
    """A chaotic network's lambda_1 = 0.05 with an s.e. of 0.02 would accept a stable network's."""
    monkeypatch.setenv(golden.CHECKS_ENV, "record")
    group = CheckGroup("regimes")
    group.estimate("lambda_1", 0.05, se=0.02, what="over 4 runs")
    assert "reaches outside its regime (0, inf)" in group.records[0].regime_problem()
    with pytest.raises(ValueError, match="would accept a value that means something else"):
        group.report()
    narrow = CheckGroup("near zero")
    narrow.estimate("lambda_1 - reference", 0.01, se=0.01, what="over 10 runs", regime=(-1, 1))
    assert narrow.records[0].regime_problem() is None


def test_the_compare_mode_raises_with_both_values(tmp_path, monkeypatch, capsys):
    recorded = CheckGroup("regimes")
    recorded.estimate("lambda_1", 0.58, se=0.01, what="over 20 runs")
    recorded.equal("count", 3)
    path = tmp_path / "golden.json"
    golden.write_golden(path, "02", [{"group": "regimes", "checks": [c.to_json() for c in recorded.records]}])
    monkeypatch.setenv(golden.CHECKS_ENV, "compare")
    monkeypatch.setenv(golden.GOLDEN_ENV, str(path))
    with golden.checks("regimes") as check:
        check.estimate("lambda_1", 0.61, se=0.02, what="over 20 runs")  # the new run's own s.e. is not used
        check.equal("count", 3)
    assert capsys.readouterr().out == golden.summary("regimes", _recorded(recorded))
    with pytest.raises(CheckFailure, match=r"lambda_1: golden 0.58 ± 0.06 .*here 0.7: off by 2.0 tolerances"):
        with golden.checks("regimes") as check:
            check.estimate("lambda_1", 0.70, se=0.01, what="over 20 runs")
            check.equal("count", 3)
    with pytest.raises(CheckFailure, match="run `make golden`"):
        with golden.checks("regimes") as check:
            check.equal("count", 3)
    with pytest.raises(CheckFailure, match="no golden record"):
        with golden.checks("other") as check:
            check.equal("count", 3)


def test_stored_tolerances_round_up():
    assert golden._round_up(0.0612) == 0.062 and golden._round_up(0.06) == 0.06
    assert golden._round_up(1.0001e-12) == 1.1e-12


@pytest.mark.parametrize("path", GOLDEN_FILES, ids=lambda p: p.stem)
def test_every_golden_file_is_canonical_sharp_and_within_its_regimes(path, tmp_path):
    groups = golden.read_golden(path)
    assert groups, f"{path.name} holds no checks"
    again = tmp_path / path.name
    golden.write_golden(again, json.loads(path.read_text())["chapter"], groups)
    assert again.read_bytes() == path.read_bytes(), "the recorder must write the same bytes for the same checks"
    for group in groups:
        for record in group["checks"]:
            check = Check.from_json(record)
            assert check.why, f"{check.name}: a tolerance needs its reason"
            assert check.regime_problem() is None, check.regime_problem()
            if check.kind == "estimate":
                assert check.accepts(check.value + 0.5 * check.tolerance)
                moved = [check.value + 3 * check.tolerance, check.value - 3 * check.tolerance]
            elif check.kind == "at_most":
                assert check.accepts(check.value)
                moved = [check.tolerance + 3 * max(abs(check.tolerance), 1e-300)]
            else:
                assert check.accepts(check.value)
                moved = [not check.value] if isinstance(check.value, bool) else [check.value + 1] \
                    if isinstance(check.value, int) else [check.value + "?"]
            for value in moved:
                assert not check.accepts(value), f"{path.stem}/{check.name}: {value!r} should fail"


def test_every_checked_cell_of_the_book_has_its_golden_group():
    from lyapbook.book.chapters import discover
    from lyapbook.book.notebook_checks import CHECK_TAG, _checked_cells

    for chapter in discover(ROOT):
        cells = _checked_cells(chapter.notebook())
        path = golden.golden_file(ROOT, chapter.stem)
        groups = golden.read_golden(path) if path.is_file() else []
        assert len(cells) == len(groups), f"{chapter.stem}: {len(cells)} cells tagged {CHECK_TAG}, {len(groups)} golden groups"
        for cell, group in zip(cells, groups):
            assert f'book.checks("{group["group"]}")' in cell.source, f"{chapter.stem}: cells and groups out of order"


def _nbval(notebook: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pytest", str(notebook), "--nbval-lax", "--nbval-current-env",
         "-p", "no:cacheprovider", "-q"], cwd=notebook.parent, capture_output=True, text=True, timeout=300,
    )


def test_a_recorded_chapter_passes_nbval_perturbed_and_fails_once_its_golden_value_moves(tiny_book):
    from lyapbook.book import notebook_checks
    from lyapbook.book.chapters import discover

    chapters = discover(tiny_book)
    notebook_checks.record_golden(tiny_book, chapters)
    (notebook,) = notebook_checks.prepare(tiny_book, chapters)
    passed = _nbval(notebook)
    assert passed.returncode == 0, passed.stdout[-3000:]
    path = tiny_book / "tests" / "golden" / "09_tiny.json"
    record = json.loads(path.read_text())
    estimate = record["groups"][0]["checks"][1]
    estimate["value"] += 3 * estimate["tolerance"]
    path.write_text(json.dumps(record))
    (notebook,) = notebook_checks.prepare(tiny_book, chapters)
    failed = _nbval(notebook)
    assert failed.returncode != 0
    assert "a measured number: golden 1.185 ± 0.06 (6 s.e. of 0.01 by fiat), here 1.005" in failed.stdout


@pytest.fixture
def perturbed(monkeypatch):
    """The switch on, as the nbval run of `make test` sets it."""
    monkeypatch.setenv(perturbation.PERTURB_ENV, "1e-12")
    perturbation.install()
    yield
    monkeypatch.delenv(perturbation.PERTURB_ENV)


def _drawn(level: str, draw):
    """draw() after torch.manual_seed(0), with $LYAPBOOK_PERTURB at ``level``."""
    os.environ[perturbation.PERTURB_ENV] = level
    torch.manual_seed(0)
    try:
        return draw().detach()
    finally:
        os.environ[perturbation.PERTURB_ENV] = "1e-12"


def test_the_perturbation_moves_draws_and_default_states_at_its_level(perturbed):
    gaussian = lambda: torch.randn(1000, dtype=torch.float64)  # noqa: E731
    relative = ((_drawn("1e-12", gaussian) - _drawn("", gaussian)) / _drawn("", gaussian)).abs()
    assert 0 < relative.max() <= 1e-12 and relative.mean() > 1e-13
    # float32 cannot hold 1e-12: its weights move by a few units in the last place instead
    weights = lambda: torch.nn.Linear(4, 4).weight  # noqa: E731
    relative = ((_drawn("1e-12", weights) - _drawn("", weights)) / _drawn("", weights)).abs()
    assert 0 < relative.max() <= 5 * torch.finfo(torch.float32).eps  # 4 units, plus rounding to float32
    start = lambda: lyapbook.systems.Henon().initial_state(4)  # noqa: E731
    assert 0 < (_drawn("1e-12", start) - _drawn("", start)).abs().max() <= 1e-12


def test_the_perturbation_changes_a_chaotic_estimate_within_its_noise_and_keeps_exact_identities(perturbed):
    from lyapbook.reference import autograd_jacobian

    henon = lyapbook.systems.Henon()
    moved = lyapbook.lyapunov_spectrum(henon, 3000, warmup=100).exponents
    os.environ[perturbation.PERTURB_ENV] = ""
    plain = lyapbook.lyapunov_spectrum(henon, 3000, warmup=100).exponents
    os.environ[perturbation.PERTURB_ENV] = "1e-12"
    assert 1e-6 < abs(float(moved[0] - plain[0])) < 0.05  # another realisation of the same estimate
    assert abs(float(moved.sum() - math.log(0.3))) < 1e-12  # the sum rule stays exact
    model = torch.nn.GRU(3, 5).double()
    state, x_t = torch.randn(2, 5, dtype=torch.float64), torch.randn(2, 3, dtype=torch.float64)
    assert (lyapbook.jacobian(model, state, x_t) - autograd_jacobian(model, state, x_t)).abs().max() < 1e-13


def test_perturbed_results_are_cached_apart(perturbed):
    from lyapbook.aelle.cache import fit_cache_dir
    from lyapbook.tasks.ftle import ftle_cache_dir
    from lyapbook.tasks.zoo import ZooCache

    for folder in (ZooCache().folder, fit_cache_dir(), ftle_cache_dir()):
        assert "perturbed-1e-12" in folder.parts
    os.environ[perturbation.PERTURB_ENV] = ""
    assert "perturbed-1e-12" not in ZooCache().folder.parts


def test_the_ci_build_compares_with_the_golden_record_and_reruns_when_it_changes(tiny_book):
    from lyapbook.book import notebook_checks
    from lyapbook.book.chapters import discover
    from lyapbook.book.profiles import BookError
    from lyapbook.book.runner import run_chapters

    chapters = discover(tiny_book)
    notebook_checks.record_golden(tiny_book, chapters)
    run_chapters(tiny_book, "ci", chapters, check_golden=True)
    path = tiny_book / "tests" / "golden" / "09_tiny.json"
    record = json.loads(path.read_text())
    record["groups"][0]["checks"][0]["value"] = 11
    path.write_text(json.dumps(record))
    with pytest.raises(BookError, match="CheckFailure: 1 of 2 checks of 'size' failed"):
        run_chapters(tiny_book, "ci", chapters, check_golden=True)
    with pytest.raises(BookError, match="--check-golden compares with the golden records of the ci profile"):
        run_chapters(tiny_book, "teaching", chapters, check_golden=True)
