"""Bulk import: subjects from folders, file names or a CSV; a report row for every file;
a second run resumes instead of indexing twice; the real CLI with the local engine."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import Table, func, select

from faceapi.adapters.store import Store
from faceapi.adapters.store.tables import audit_events, consents, faces
from faceapi.bootstrap import bootstrap
from faceapi.config import Settings
from faceapi.domain.audit import Actor
from faceapi.domain.collections import ConsentBasis
from faceapi.entrypoints.cli import cli
from faceapi.entrypoints.cli.imports import (
    Importer,
    ImportItem,
    import_items,
    plan,
    subject_from_filename,
)
from faceapi.services.collections import ConsentInput, CreateCollectionRequest, create_collection
from tests.conftest import FIXTURE_FACES, solid_image
from tests.fakes import FakeClock, FakeEngine, ScriptedFace, face, unit_vector

ACTOR = Actor.system("import")
BATCH = ConsentInput(ConsentBasis.EXPLICIT_CONSENT, "batch-42")


def write_image(path: Path, engine: FakeEngine, seed: int, faces_found: int = 1) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = solid_image(24, 24, color=(seed % 251, 40, 200))
    path.write_bytes(data)
    engine.script(data, [ScriptedFace(face(left=0.1 + 0.3 * i), unit_vector(seed * 10 + i))
                         for i in range(faces_found)])


@pytest.fixture
def people(tmp_path: Path, fake_engine: FakeEngine) -> Path:
    root = tmp_path / "people"
    write_image(root / "alice" / "a1.png", fake_engine, 1)
    write_image(root / "alice" / "a2.png", fake_engine, 2)
    write_image(root / "bob" / "b1.png", fake_engine, 3)
    write_image(root / "bob" / "empty.png", fake_engine, 4, faces_found=0)
    (root / "bob" / "notes.txt").write_text("not an image")
    (root / "carol").mkdir()
    (root / "carol" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    write_image(root / "loose.png", fake_engine, 5)
    return root


def importer(store: Store, settings: Settings, engine: FakeEngine,
             consent: ConsentInput | None = BATCH) -> Importer:
    # The importer calls the use cases of a container on the test's database.
    container = bootstrap(settings, engine=engine, clock=FakeClock())
    container.store = store
    return Importer(collection_id="staff", actor=ACTOR, use_cases=container.use_cases,
                    max_image_bytes=settings.max_image_bytes, consent=consent)


@pytest.fixture
def staff(store: Store, fake_engine: FakeEngine) -> str:
    create_collection(CreateCollectionRequest("staff"), actor=ACTOR, engine=fake_engine,
                      uow=store.uow(), clock=FakeClock())
    return "staff"


def run(path: Path, items: list[ImportItem], imp: Importer) -> list[dict[str, str]]:
    with path.open("w", newline="", encoding="utf-8") as report:
        import_items(items, imp, report)
    with path.open(newline="", encoding="utf-8") as report:
        return list(csv.DictReader(report))


def cli_env(settings: Settings) -> dict[str, str]:
    """The environment a `faceapi` command needs to reach this test's store."""
    return {"FACEAPI_ENV": "test", "FACEAPI_DATA_DIR": str(settings.data_dir),
            "FACEAPI_DATABASE_URL": settings.resolved_database_url}


def create_stars(runner: CliRunner, env: dict[str, str]) -> None:
    created = runner.invoke(cli, ["collections", "create", "stars"], env=env)
    assert created.exit_code == 0, created.output


def count(store: Store, table: Table) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


@pytest.mark.parametrize(("stem", "subject"), [("alice_02", "alice"), ("bob-1", "bob"),
                                               ("carol", "carol"), ("dave 003", "dave"),
                                               ("r2d2", "r2d")])
def test_the_subject_is_the_file_name_without_its_number(stem: str, subject: str) -> None:
    assert subject_from_filename(stem) == subject


def test_subjects_come_from_folder_names_and_loose_files_have_none(people: Path) -> None:
    items = {i.relative: i for i in plan(people, subject_from="folder")}
    assert sorted(items) == ["alice/a1.png", "alice/a2.png", "bob/b1.png", "bob/empty.png",
                             "carol/broken.jpg", "loose.png"]
    assert items["alice/a2.png"].subject_id == "alice"
    assert items["loose.png"].problem == "no_subject"


def test_a_csv_names_subjects_and_cannot_reach_outside_the_folder(people: Path,
                                                                    tmp_path: Path) -> None:
    listing = tmp_path / "list.csv"
    listing.write_text("file,identity\nalice/a1.png,Alice.K\nmissing.png,x\n"
                       "../secret.png,x\nbob/b1.png,bad id!\n", encoding="utf-8")
    (tmp_path / "secret.png").write_bytes(b"x")
    items = plan(people, subject_from="csv", csv_file=listing, subject_column="identity")
    assert [(i.relative, i.subject_id, i.problem) for i in items] == [
        ("alice/a1.png", "Alice.K", None),
        ("missing.png", "x", "file_not_found"),
        ("../secret.png", "x", "outside_folder"),
        ("bob/b1.png", "bad id!", "invalid_subject_id")]


@pytest.mark.usefixtures("staff")
def test_every_file_gets_a_report_row_with_face_ids_or_the_reason(
        people: Path, store: Store, settings: Settings, fake_engine: FakeEngine,
        tmp_path: Path) -> None:
    rows = run(tmp_path / "report.csv", plan(people, subject_from="folder"),
               importer(store, settings, fake_engine))
    by_file = {r["file"]: r for r in rows}
    assert by_file["alice/a1.png"]["status"] == "indexed"
    assert len(by_file["alice/a1.png"]["face_ids"]) == 36
    assert (by_file["bob/empty.png"]["status"], by_file["bob/empty.png"]["reason"]) == \
        ("not_indexed", "no_face")
    assert (by_file["carol/broken.jpg"]["status"], by_file["carol/broken.jpg"]["reason"]) == \
        ("failed", "invalid_image")
    assert by_file["loose.png"]["reason"] == "no_subject"
    assert count(store, faces) == 3
    # The batch consent is recorded once per subject, not once per image.
    assert count(store, consents) == 2


@pytest.mark.usefixtures("staff")
def test_a_second_run_skips_what_is_already_indexed(
        people: Path, store: Store, settings: Settings, fake_engine: FakeEngine,
        tmp_path: Path) -> None:
    items = plan(people, subject_from="folder")
    first = run(tmp_path / "first.csv", items[:2], importer(store, settings, fake_engine))
    assert [r["status"] for r in first] == ["indexed", "indexed"]  # then "interrupted"
    second = run(tmp_path / "second.csv", items, importer(store, settings, fake_engine))
    statuses = {r["file"]: (r["status"], r["face_ids"]) for r in second}
    for row in first:
        assert statuses[row["file"]] == ("skipped", row["face_ids"])
    assert statuses["bob/b1.png"][0] == "indexed"
    assert count(store, faces) == 3


@pytest.mark.usefixtures("staff")
def test_without_a_consent_every_file_of_a_consent_collection_fails_with_the_reason(
        people: Path, store: Store, settings: Settings, fake_engine: FakeEngine,
        tmp_path: Path) -> None:
    rows = run(tmp_path / "r.csv", plan(people, subject_from="folder")[:3],
               importer(store, settings, fake_engine, consent=None))
    assert {r["reason"] for r in rows} == {"consent_required"}
    assert count(store, faces) == 0


def test_the_cli_imports_a_folder_with_the_local_engine_and_resumes(
        tmp_path: Path, settings: Settings, store: Store) -> None:
    folder = tmp_path / "photos"
    source = FIXTURE_FACES / "deepface" / "tests" / "unit" / "dataset"
    for subject, names in (("angelina_jolie", ("img5.jpg", "img6.jpg")),
                           ("jennifer_aniston", ("img12.jpg",))):
        (folder / subject).mkdir(parents=True)
        for name in names:
            shutil.copy(source / name, folder / subject / name)
    (folder / "blank").mkdir()
    shutil.copy(FIXTURE_FACES / "face-api.js" / "test" / "images" / "white.png",
                folder / "blank" / "white.png")
    env = cli_env(settings)
    runner = CliRunner()
    create_stars(runner, env)
    report = tmp_path / "report.csv"
    args = ["import", str(folder), "--collection", "stars", "--consent-basis",
            "explicit_consent", "--consent-reference", "batch-1", "--report", str(report)]
    first = runner.invoke(cli, args, env=env)
    assert first.exit_code == 0, first.output
    assert "3 indexed" in first.output
    with report.open(newline="", encoding="utf-8") as handle:
        rows = {r["file"]: r for r in csv.DictReader(handle)}
    assert rows["blank/white.png"]["reason"] == "no_face"
    assert rows["angelina_jolie/img5.jpg"]["status"] == "indexed"
    again = runner.invoke(cli, args, env=env)
    assert again.exit_code == 0, again.output
    assert "3 skipped" in again.output
    with store.engine.connect() as conn:
        runs = conn.execute(select(func.count()).select_from(audit_events)
                            .where(audit_events.c.action == "import.run")).scalar_one()
    assert runs == 2
    assert count(store, faces) == 3
    listed = runner.invoke(cli, ["collections", "list"], env=env)
    assert "stars\tfaces=3\tsubjects=2" in listed.output


def test_importing_into_an_unknown_collection_stops_with_a_message(
        tmp_path: Path, settings: Settings, store: Store) -> None:
    env = cli_env(settings)
    result = CliRunner().invoke(cli, ["import", str(tmp_path), "--collection", "nope"], env=env)
    assert result.exit_code != 0
    assert "not found" in result.output


@pytest.mark.parametrize(("setup", "message"), [
    ("missing_folder", "does not exist"),
    ("csv_not_utf8", "is not a UTF-8 CSV"),
    ("csv_without_columns", "has no column 'file'"),
    ("report_in_missing_folder", "cannot write the report"),
])
def test_a_bad_folder_csv_or_report_path_exits_non_zero_without_a_traceback(
        tmp_path: Path, settings: Settings, store: Store, setup: str, message: str) -> None:
    env = cli_env(settings)
    runner = CliRunner()
    create_stars(runner, env)
    folder = tmp_path / "photos"
    folder.mkdir()
    listing = tmp_path / "subjects.csv"
    args = {
        "missing_folder": [str(tmp_path / "nowhere")],
        "csv_not_utf8": [str(folder), "--csv", str(listing)],
        "csv_without_columns": [str(folder), "--csv", str(listing)],
        "report_in_missing_folder": [str(folder), "--report",
                                     str(tmp_path / "no" / "report.csv")],
    }[setup]
    listing.write_bytes(b"file,subject_id\n\xff\xfe.jpg,alice\n" if setup == "csv_not_utf8"
                        else b"name,who\na.jpg,alice\n")
    result = runner.invoke(cli, ["import", *args, "--collection", "stars"], env=env)
    assert result.exit_code != 0
    assert isinstance(result.exception, SystemExit), result.exception
    assert message in result.output
    assert count(store, faces) == 0


def test_a_csv_row_naming_an_impossible_file_is_reported_not_raised(
        people: Path, tmp_path: Path) -> None:
    listing = tmp_path / "subjects.csv"
    listing.write_text("file,subject_id\nbad\x00name.png,alice\nalice/a1.png,alice\n",
                       encoding="utf-8")
    items = plan(people, subject_from="csv", csv_file=listing, file_column="file",
                 subject_column="subject_id")
    assert [(i.subject_id, i.problem) for i in items] == [("alice", "file_not_found"),
                                                          ("alice", None)]


def test_collections_list_shows_every_collection_with_its_counts(
        settings: Settings, store: Store) -> None:
    env = cli_env(settings)
    runner = CliRunner()
    for name in ("alpha", "beta"):
        assert runner.invoke(cli, ["collections", "create", name], env=env).exit_code == 0
    listed = runner.invoke(cli, ["collections", "list"], env=env)
    assert listed.exit_code == 0, listed.output
    lines = listed.output.splitlines()
    assert [line.split("\t")[:3] for line in lines] == [
        ["alpha", "faces=0", "subjects=0"], ["beta", "faces=0", "subjects=0"]]


def test_a_csv_holding_nuls_is_reported_row_by_row_and_stores_nothing(
        tmp_path: Path, settings: Settings, store: Store) -> None:
    # A CSV is the one CLI input that can carry a NUL to the store (argv and the
    # environment cannot): PostgreSQL takes none in text, so a NUL subject or file name
    # must end as a report row, never as a query.
    env = cli_env(settings)
    runner = CliRunner()
    create_stars(runner, env)
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "a.png").write_bytes(solid_image())
    listing = tmp_path / "subjects.csv"
    listing.write_text("file,subject_id\na.png,al\x00ice\na\x00.png,alice\n", encoding="utf-8")
    report = tmp_path / "report.csv"
    result = runner.invoke(cli, ["import", str(folder), "--collection", "stars", "--csv",
                                 str(listing), "--report", str(report)], env=env)
    assert result.exit_code == 0, result.output
    with report.open(newline="", encoding="utf-8") as handle:
        rows = [(r["status"], r["reason"]) for r in csv.DictReader(handle)]
    assert rows == [("failed", "invalid_subject_id"), ("failed", "file_not_found")]
    assert count(store, faces) == 0
