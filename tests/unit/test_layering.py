"""Dependencies point inward: entry points -> services -> domain, adapters implement the
ports in services/ports.py. Domain and services import no framework, SQL or SDK."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "faceapi"
FORBIDDEN = ("flask", "werkzeug", "sqlalchemy", "alembic", "boto3", "botocore", "dlib",
             "psycopg", "flask_smorest", "marshmallow", "jwt", "onnx",
             "onnxruntime", "matplotlib")
# Where services may reach inside the package: the domain, the ports and each other.
SERVICE_IMPORTS = ("faceapi.domain", "faceapi.services")


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def layer(name: str) -> list[Path]:
    return sorted((PACKAGE / name).rglob("*.py"))


def ours(path: Path) -> set[str]:
    return {name for name in imported_modules(path) if name.split(".")[0] == "faceapi"}


def inner_modules() -> list[Path]:
    return [*layer("domain"), *layer("services")]


def test_the_package_root_holds_only_its_face_configuration_and_composition_root() -> None:
    # The face: __init__.py and __main__.py (`python -m faceapi`, which runs the CLI).
    loose = {p.name for p in PACKAGE.iterdir() if p.is_file() and p.suffix == ".py"}
    assert loose <= {"__init__.py", "__main__.py", "config.py", "bootstrap.py"}, sorted(loose)


@pytest.mark.parametrize("path", inner_modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_domain_and_services_import_no_framework_sql_or_sdk(path: Path) -> None:
    bad = {name for name in imported_modules(path) if name.split(".")[0] in FORBIDDEN}
    assert not bad, f"{path.name} imports {sorted(bad)}"


def test_domain_imports_nothing_of_ours_outside_the_domain() -> None:
    for path in layer("domain"):
        outside = {name for name in ours(path) if not name.startswith("faceapi.domain")}
        assert not outside, f"{path.name} imports {sorted(outside)}"


def test_services_import_only_the_domain_the_ports_and_other_services() -> None:
    found = set()
    for path in layer("services"):
        for name in ours(path):
            if not name.startswith(SERVICE_IMPORTS):
                found.add((path.name, name))
    assert found == set(), f"services reach outside their layer: {sorted(found)}"


def test_adapters_never_import_entry_points() -> None:
    for path in layer("adapters"):
        bad = {name for name in ours(path) if name.startswith("faceapi.entrypoints")}
        assert not bad, f"{path.relative_to(PACKAGE)} imports {sorted(bad)}"


def test_adapters_import_only_the_domain_the_ports_config_and_other_adapters() -> None:
    allowed = ("faceapi.domain", "faceapi.services.ports", "faceapi.config", "faceapi.adapters")
    for path in layer("adapters"):
        bad = {name for name in ours(path) if not name.startswith(allowed)}
        assert not bad, f"{path.relative_to(PACKAGE)} imports {sorted(bad)}"


def test_only_entry_points_and_the_composition_root_import_entry_points() -> None:
    for path in [*inner_modules(), *layer("adapters"), PACKAGE / "config.py"]:
        bad = {name for name in ours(path) if name.startswith("faceapi.entrypoints")}
        assert not bad, f"{path.relative_to(PACKAGE)} imports {sorted(bad)}"


def test_boto3_is_imported_only_by_the_rekognition_adapter() -> None:
    for path in PACKAGE.rglob("*.py"):
        if path.relative_to(PACKAGE).as_posix() == "adapters/engines/rekognition.py":
            continue
        roots = {name.split(".")[0] for name in imported_modules(path)}
        assert "boto3" not in roots, f"{path.relative_to(PACKAGE)} imports boto3"


def test_matplotlib_is_imported_only_by_the_plots_adapter() -> None:
    # Plots are drawn in one place (adapters/plots.py, Agg backend chosen before any
    # figure); the calibrate service computes figures and tables without it.
    for path in PACKAGE.rglob("*.py"):
        if path.relative_to(PACKAGE).as_posix() == "adapters/plots.py":
            continue
        roots = {name.split(".")[0] for name in imported_modules(path)}
        assert "matplotlib" not in roots, f"{path.relative_to(PACKAGE)} imports matplotlib"


def test_jwt_is_imported_only_by_the_liveness_adapter() -> None:
    # Liveness attestations are verified in one place (adapters/liveness.py); the rules
    # about their claims stay plain domain code.
    for path in PACKAGE.rglob("*.py"):
        if path.relative_to(PACKAGE).as_posix() == "adapters/liveness.py":
            continue
        roots = {name.split(".")[0] for name in imported_modules(path)}
        assert "jwt" not in roots, f"{path.relative_to(PACKAGE)} imports jwt"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Module -> modules of ours it imports, at any depth of the file (function-level and
    TYPE_CHECKING imports count: a cycle hidden in a function is still a cycle).
    `from pkg import sub` points at pkg.sub when sub is a module, not at pkg."""
    paths = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                targets.update(a.name for a in node.names if a.name in paths)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                subs = {f"{node.module}.{a.name}" for a in node.names} & paths.keys()
                if subs:
                    targets |= subs
                if len(subs) < len(node.names) and node.module in paths:
                    targets.add(node.module)
        graph[name] = targets - {name}
    return graph


def test_no_import_cycles() -> None:
    graph = import_graph()
    done: set[str] = set()
    stack: list[str] = []

    def visit(name: str) -> None:
        if name in stack:
            cycle = [*stack[stack.index(name):], name]
            pytest.fail("import cycle: " + " -> ".join(cycle))
        if name in done:
            return
        stack.append(name)
        for target in sorted(graph[name]):
            visit(target)
        stack.pop()
        done.add(name)

    for name in sorted(graph):
        visit(name)
