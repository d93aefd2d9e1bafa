"""Dependencies point inward: domain and services import no framework, SQL or SDK."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "faceapi"
FORBIDDEN = ("flask", "werkzeug", "sqlalchemy", "alembic", "boto3", "botocore", "dlib",
             "psycopg", "flask_smorest", "marshmallow")


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def inner_modules() -> list[Path]:
    return sorted([*(PACKAGE / "domain").rglob("*.py"), *(PACKAGE / "services").rglob("*.py")])


@pytest.mark.parametrize("path", inner_modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_domain_and_services_import_no_framework_sql_or_sdk(path: Path) -> None:
    bad = {name for name in imported_modules(path) if name.split(".")[0] in FORBIDDEN}
    assert not bad, f"{path.name} imports {sorted(bad)}"


def test_domain_imports_nothing_of_ours_outside_the_domain() -> None:
    for path in (PACKAGE / "domain").rglob("*.py"):
        ours = {name for name in imported_modules(path)
                if name.startswith("faceapi.") and not name.startswith("faceapi.domain")}
        assert not ours, f"{path.name} imports {sorted(ours)}"


def test_boto3_is_imported_only_by_the_rekognition_adapter() -> None:
    for path in PACKAGE.rglob("*.py"):
        if path.name == "rekognition.py":
            continue
        roots = {name.split(".")[0] for name in imported_modules(path)}
        assert "boto3" not in roots, f"{path.relative_to(PACKAGE)} imports boto3"
