"""Keep ``environment.yml`` and ``requirements.lock`` on the same exact pins."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

__all__ = ["read_lock", "read_environment", "write_environment"]

PIN = re.compile(r"^([A-Za-z0-9_.\-\[\]]+)==([^\s;#]+)$")
TORCH_CPU_INDEX = "--extra-index-url https://download.pytorch.org/whl/cpu"


def _pins(lines: list[str], source: str) -> dict[str, str]:
    pins = {}
    for line in lines:
        line = line.strip()
        if not line or line.startswith(("#", "-")):  # comments, --index options, -e .
            continue
        match = PIN.match(line)
        if not match:
            raise ValueError(f"{source}: every requirement must be pinned as name==version, got {line!r}")
        pins[match.group(1).lower().replace("_", "-")] = match.group(2)
    return pins


def read_lock(path: Path) -> dict[str, str]:
    """{normalised name: version} from a pip lock of ``name==version`` lines."""
    return _pins(path.read_text().splitlines(), path.name)


def read_environment(path: Path) -> tuple[str, dict[str, str]]:
    """(python version, {normalised name: version}) from a conda ``environment.yml``."""
    data = yaml.safe_load(path.read_text())
    python, pip_lines = None, []
    for dependency in data.get("dependencies", []):
        if isinstance(dependency, dict):
            pip_lines.extend(dependency.get("pip", []))
        elif str(dependency).startswith("python="):
            python = str(dependency).split("=", 1)[1]
    return python, _pins(pip_lines, path.name)


def write_environment(lock: Path, target: Path, python: str = "3.11") -> None:
    """Write ``target`` (environment.yml) with the lock's pins, installed by conda's pip."""
    lines = [line.strip() for line in lock.read_text().splitlines()]
    pins = [line for line in lines if line and not line.startswith("#")]
    body = "\n".join(f"      - {pin}" for pin in pins)
    target.write_text(
        "# The conda environment of the book, with the exact pins of requirements.lock\n"
        "# (tests/test_environment.py checks that the two agree; `make environment` rewrites this file).\n"
        "name: lyapbook\n"
        "channels:\n  - conda-forge\n"
        f"dependencies:\n  - python={python}\n  - pip\n  - pip:\n"
        f"      - {TORCH_CPU_INDEX}\n"
        "      - -e .\n"
        f"{body}\n"
    )
