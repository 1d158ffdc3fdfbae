"""Chapter 3's reference numbers, figure helpers and page parameters.

* the dissertation's tables as printed, and the arithmetic that finds their slips (spec §6,
  items 5 and 6): every flagged F1 really differs from 2PR/(P+R) beyond rounding, every other one
  agrees within it;
* the figure helpers draw one point per network and say what they drew;
* the pages of chapter 3 that train the same zoo ask for it with the same sizes in every profile
  (otherwise a build would train, and a reader compare, two different zoos).
"""

from pathlib import Path

import matplotlib

matplotlib.use("agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from lyapbook.aelle import figures, paper  # noqa: E402
from lyapbook.book.chapters import discover  # noqa: E402
from lyapbook.book.profiles import PROFILES, load_profiles, resolve_parameters  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def test_f1_from_recall_and_precision_by_hand():
    assert paper.f1_from(50.0, 50.0) == pytest.approx(0.5)
    assert paper.f1_from(100.0, 55.9) == pytest.approx(2 * 0.559 / 1.559)
    assert paper.f1_from(0.0, 0.0) == 0.0


def test_the_dissertations_slips_are_found_and_nothing_else():
    flagged = paper.inconsistencies()
    found = set(zip(flagged.table, flagged.stage, flagged.classifier))
    # spec §6: Table 3.1's loss F1 at 10 and 20 %, Table 3.2's swapped F1 at 0 % (LE Max, LE PCA),
    # AeLLE at 20 % (0.90 printed, 0.891 from R and P), and LE Max at 10 % of Table 3.2 (0.74, 0.733)
    assert found == {("3.1", "10%", "loss"), ("3.1", "20%", "loss"), ("3.2", "0%", "max LE"),
                     ("3.2", "0%", "LE PCA"), ("3.1", "20%", "AeLLE"), ("3.2", "20%", "AeLLE"),
                     ("3.2", "10%", "max LE")}
    swapped = flagged.set_index(["table", "stage", "classifier"])["F1 from R and P"]
    assert swapped[("3.2", "0%", "max LE")] == pytest.approx(0.758, abs=1e-3)  # printed 0.72
    assert swapped[("3.2", "0%", "LE PCA")] == pytest.approx(0.717, abs=1e-3)  # printed 0.76
    for table in (paper.TABLE_B, ):
        for task in table.values():
            for recall, precision, f1 in task.values():
                assert abs(paper.f1_from(recall, precision) - f1) <= 0.006  # B2-B4 add up


def test_comparison_tables_put_the_dissertation_beside_ours():
    ours = pd.DataFrame([{"classifier": "AeLLE", "recall": 0.7, "precision": 0.6, "f1": 0.646,
                          "f1_low": 0.5, "f1_high": 0.75, "f1_seed_sd": 0.02, "f1_all": 0.66}])
    row = paper.median_comparison(ours, "smnist").iloc[0]
    assert row["paper R / P (%)"] == "85.9 / 85.9" and row["paper F1"] == 0.859
    assert row["ours R / P (%)"] == "70 / 60" and row["ours F1 [95 %]"] == "0.65 [0.50, 0.75]"
    staged = pd.DataFrame([{**ours.iloc[0].to_dict(), "stage": s, "classifier": c}
                           for s, c in (("0%", "loss"), ("10%", "loss"), ("10%", "AeLLE"))])
    table = paper.stage_comparison(staged, paper.TABLE_31)
    assert table.training.tolist() == ["0%", "10%", "10%"]  # the undefined loss row is shown as such
    assert table.iloc[0]["paper R / P (%)"] == "–" and table.iloc[1]["paper F1"] == 0.35


def test_figure_helpers_draw_every_network_once():
    rng = np.random.default_rng(0)
    points, good = rng.normal(size=(30, 2)), np.arange(30) % 3 == 0
    fig, axes = plt.subplots(1, 4)
    drawn = figures.accuracy_scatter(axes[0], points, good, held=np.arange(30) < 5, boundary=0.0)
    assert [len(d.get_offsets()) for d in drawn] == [10, 20]
    # only the 5 held-out networks (2 good: 0 and 3; 3 bad: 1, 2, 4) carry an edge
    assert [int((np.asarray(d.get_linewidths()) > 0).sum()) for d in drawn] == [2, 3]
    counts = figures.stacked_histogram(axes[1], points[:, 0], good, bins=5)
    assert counts[-1].sum() == 30  # the top of the stack counts every network
    groups = figures.category_scatter(axes[2], points, np.array(["a", "b", "c"] * 10))
    assert sum(len(g.get_offsets()) for g in groups) == 30 and len(groups) == 3
    assert figures.draw_aelle_diagram(axes[3], 128, 32, 32) == 6
    plt.close(fig)


def shared_zoo_parameters(profile: str) -> dict:
    """{parameter: {page: value}} for the zoo parameters that several chapter-3 pages take."""
    pages = [c for c in discover(ROOT) if c.stem.startswith("03")]
    profiles = load_profiles(ROOT)
    values: dict = {}
    for page in pages:
        for name, value in resolve_parameters(page, profile, profiles).items():
            if name.endswith("_zoo") or name in ("length", "ae_seeds", "ae_epochs", "ae_lr", "folds", "alphas"):
                values.setdefault(name, {})[page.stem] = value
    return {name: by_page for name, by_page in values.items() if len(by_page) > 1}


@pytest.mark.parametrize("profile", PROFILES)
def test_pages_that_share_a_zoo_ask_for_the_same_one(profile):
    shared = shared_zoo_parameters(profile)
    assert "smnist_zoo" in shared and "charrnn_zoo" in shared  # each zoo feeds two pages
    for name, by_page in shared.items():
        assert len({repr(v) for v in by_page.values()}) == 1, f"{profile}: {name} differs: {by_page}"
