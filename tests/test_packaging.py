"""What `pip install .` brings is what lyapbook imports: every third-party package that a module of
the package imports at any depth is declared in pyproject.toml (in the core dependencies, or in the
extra of the part that needs it), and every module imports."""

import ast
import importlib
import importlib.metadata
import pkgutil
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

import lyapbook

ROOT = Path(__file__).resolve().parents[1]
# Parts of the package that may use an extra's packages; everything else only the core dependencies.
EXTRAS_OF = {"lyapbook/book": "book", "lyapbook/tasks/cluster.py": "cluster"}


def declared() -> dict[str, set[str]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {"core": {canonicalize_name(Requirement(r).name) for r in project["dependencies"]}}
    for extra, requirements in project["optional-dependencies"].items():
        names[extra] = {canonicalize_name(Requirement(r).name) for r in requirements}
    return names


def third_party_imports(path: Path) -> set[str]:
    """Top-level names of the absolute imports in a file (inside functions too), less the standard library."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return {name for name in names if name not in sys.stdlib_module_names and name not in ("lyapbook", "__future__")}


def test_every_imported_package_is_declared():
    distributions = importlib.metadata.packages_distributions()
    allowed = declared()
    missing = []
    for path in sorted((ROOT / "lyapbook").rglob("*.py")):
        relative = path.relative_to(ROOT).as_posix()
        extra = next((name for prefix, name in EXTRAS_OF.items() if relative.startswith(prefix)), None)
        usable = allowed["core"] | (allowed[extra] if extra else set())
        for module in third_party_imports(path):
            providers = {canonicalize_name(d) for d in distributions.get(module, [module])}
            if not providers & usable:
                missing.append(f"{relative} imports {module} ({', '.join(sorted(providers))}): declare it"
                               + (f" in the {extra!r} extra" if extra else " in dependencies"))
    assert not missing, "\n".join(missing)


def test_the_tests_packages_are_declared_in_some_extra():
    distributions = importlib.metadata.packages_distributions()
    everything = set().union(*declared().values())
    local = {path.stem for path in (ROOT / "tests").glob("*.py")}  # conftest and the test modules themselves
    for path in sorted((ROOT / "tests").glob("*.py")):
        for module in third_party_imports(path) - local:
            providers = {canonicalize_name(d) for d in distributions.get(module, [module])}
            assert providers & everything, f"tests/{path.name} imports {module}, which pyproject.toml does not declare"


def test_every_module_of_the_package_imports():
    modules = [m.name for m in pkgutil.walk_packages(lyapbook.__path__, "lyapbook.") if not m.name.endswith(".__main__")]
    assert "lyapbook.tasks.cluster" in modules
    for name in modules:
        importlib.import_module(name)
