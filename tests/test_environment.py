"""requirements.lock and environment.yml carry the same exact pins."""

import tomllib
from pathlib import Path

from lyapbook.book.environment import read_environment, read_lock

ROOT = Path(__file__).resolve().parents[1]


def test_lock_and_environment_agree():
    lock = read_lock(ROOT / "requirements.lock")
    python, environment = read_environment(ROOT / "environment.yml")
    assert python == "3.11"
    assert environment == lock


def test_lock_pins_the_cpu_torch_and_jupyter_book_1():
    lock = read_lock(ROOT / "requirements.lock")
    assert lock["torch"] == "2.13.0"
    assert lock["jupyter-book"].startswith("1.")


def test_every_declared_dependency_is_locked():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        declared.extend(extra)
    lock = read_lock(ROOT / "requirements.lock")
    for requirement in declared:
        name = requirement.split(">")[0].split("<")[0].split("=")[0].strip().lower()
        assert name in lock, f"{name} is declared in pyproject.toml but missing from requirements.lock"
