"""`faceapi calibrate` on a small labelled set from tests/data, with the local engine:
the report's table against a direct computation, the chosen threshold, the per-group
breakdown, valid PNG plots, and `--write-policy` (validated, new version, audited)."""

from __future__ import annotations

import csv
import io
import itertools
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from PIL import Image
from sqlalchemy import select

from faceapi.adapters.engines.local import LocalEngine
from faceapi.adapters.images import decode_image
from faceapi.adapters.policy_files import read_policy_file
from faceapi.adapters.store import Store
from faceapi.adapters.store.tables import audit_events
from faceapi.config import KNOWN_FORMATS, Settings
from faceapi.entrypoints.cli import cli
from tests.conftest import REPO

FACES = REPO / "tests" / "data" / "faces"
DEEPFACE = FACES / "deepface" / "tests" / "unit" / "dataset"
FACEAPI = FACES / "face-api.js" / "examples" / "images"
EINSTEIN = FACES / "CompreFace" / "embedding-calculator" / "src" / "services" / "imgtools" / \
    "test" / "files" / "einstein"
# (file, identity, group): 6 identities, 6 genuine and 49 impostor pairs, two groups.
LABELLED = [
    (DEEPFACE / "img5.jpg", "angelina", "colour"), (DEEPFACE / "img6.jpg", "angelina", "colour"),
    (DEEPFACE / "img11.jpg", "angelina", "colour"), (DEEPFACE / "img12.jpg", "jennifer", "colour"),
    (DEEPFACE / "img55.jpg", "jennifer", "colour"), (FACEAPI / "amy" / "amy1.png", "amy", "gray"),
    (FACEAPI / "amy" / "amy2.png", "amy", "gray"),
    (FACEAPI / "sheldon" / "sheldon1.png", "sheldon", "gray"),
    (Path(f"{EINSTEIN}.jpeg"), "einstein", "gray"), (Path(f"{EINSTEIN}.png"), "einstein", "gray"),
    (FACES / "mtcnn" / "tests" / "images" / "ivan.jpg", "ivan", "colour"),
]
TARGET = 0.05


def labelled_csv(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, (path, identity, group) in enumerate(LABELLED):
        name = f"{i:02d}-{path.name}"
        shutil.copy(path, folder / name)
        rows.append(f"{name},{identity},{group}")
    csv_path = folder / "labels.csv"
    csv_path.write_text("path,identity,group\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return csv_path


def direct_scores() -> tuple[list[float], list[float]]:
    """Every pair's similarity, computed without the calibrate code."""
    settings = Settings(image_formats=KNOWN_FORMATS)
    engine = LocalEngine(settings)
    embedded = []
    for path, identity, _ in LABELLED:
        _, faces = engine.embed_faces(decode_image(path.read_bytes(), settings))
        largest = max(faces, key=lambda f: f.detail.width_px * f.detail.height_px)
        embedded.append((identity, largest.embedding))
    genuine, impostor = [], []
    for (ia, ea), (ib, eb) in itertools.combinations(embedded, 2):
        (genuine if ia == ib else impostor).append(engine.similarity(ea, eb))
    return genuine, impostor


def run(args: list[str], env: dict[str, str]) -> Any:
    result = CliRunner().invoke(cli, ["calibrate", *args], env=env)
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("calibrate")
    env = {"FACEAPI_DATA_DIR": str(base / "data"), "FACEAPI_ENV": "test"}
    out = base / "report"
    run([str(labelled_csv(base / "set")), "--out", str(out), "--target-fmr", str(TARGET),
         "--bootstrap", "200"], env)
    return out


def test_the_table_matches_a_direct_computation_of_fmr_and_fnmr(report: Path) -> None:
    genuine, impostor = direct_scores()
    assert (len(genuine), len(impostor)) == (6, 49)
    with (report / "table.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["threshold"]) for r in rows] == list(range(100))
    for row in rows:
        t = float(row["threshold"])
        false_matches = sum(1 for s in impostor if s >= t)
        misses = sum(1 for s in genuine if s < t)
        assert int(row["false_matches"]) == false_matches, t
        assert int(row["false_non_matches"]) == misses, t
        assert float(row["fmr"]) == pytest.approx(false_matches / 49, abs=1e-6)
        assert float(row["fnmr"]) == pytest.approx(misses / 6, abs=1e-6)


def test_the_chosen_threshold_is_the_smallest_meeting_the_target(report: Path) -> None:
    _, impostor = direct_scores()
    summary = json.loads((report / "summary.json").read_text(encoding="utf-8"))
    chosen = summary["threshold"]
    assert sum(1 for s in impostor if s >= chosen) / 49 <= TARGET
    below = round(chosen - 0.1, 1)
    assert sum(1 for s in impostor if s >= below) / 49 > TARGET
    low, high = summary["interval"]
    assert low <= chosen <= high
    assert "identities" in summary["interval_method"]
    # Per group, as the CSV's group column says; pairs across groups are their own.
    assert set(summary["groups"]) == {"colour", "gray", "cross-group"}
    assert summary["groups"]["gray"]["genuine"] == 2
    report_md = (report / "report.md").read_text(encoding="utf-8")
    assert "## Per group" in report_md
    assert f"**Threshold for FMR <= {TARGET:g}: {chosen:.1f}**" in report_md


@pytest.mark.parametrize("name", ["roc.png", "det.png", "distributions.png"])
def test_the_plots_are_valid_pngs(report: Path, name: str) -> None:
    data = (report / name).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(io.BytesIO(data)) as image:
        image.verify()
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "PNG"
        assert image.size[0] >= 400
        assert image.size[1] >= 300


def test_a_csv_of_pairs_is_calibrated_too_and_says_its_interval_is_weaker(
        tmp_path: Path) -> None:
    folder = tmp_path / "pairs"
    folder.mkdir()
    for path, *_ in LABELLED[:5]:
        shutil.copy(path, folder / path.name)
    (folder / "pairs.csv").write_text(
        "path_a,path_b,same\nimg5.jpg,img6.jpg,1\nimg5.jpg,img11.jpg,yes\n"
        "img5.jpg,img12.jpg,0\nimg6.jpg,img55.jpg,false\nimg11.jpg,img12.jpg,0\n",
        encoding="utf-8")
    out = tmp_path / "out"
    run([str(folder / "pairs.csv"), "--out", str(out), "--target-fmr", "0.4",
         "--bootstrap", "50"], {"FACEAPI_DATA_DIR": str(tmp_path / "data"),
                                "FACEAPI_ENV": "test"})
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert (summary["genuine_pairs"], summary["impostor_pairs"]) == (2, 3)
    assert "too narrow" in summary["interval_method"]


def test_a_csv_cannot_name_files_outside_its_folder(tmp_path: Path) -> None:
    (tmp_path / "set").mkdir()
    shutil.copy(DEEPFACE / "img5.jpg", tmp_path / "set" / "a.jpg")
    (tmp_path / "set" / "labels.csv").write_text(
        f"path,identity\na.jpg,x\n../outside.jpg,y\n{DEEPFACE / 'img6.jpg'},x\n",
        encoding="utf-8")
    result = CliRunner().invoke(cli, ["calibrate", str(tmp_path / "set" / "labels.csv"),
                                      "--out", str(tmp_path / "out"), "--bootstrap", "50"],
                                env={"FACEAPI_DATA_DIR": str(tmp_path / "data"),
                                     "FACEAPI_ENV": "test"})
    # The two files outside count as images without a face: only a.jpg was read.
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "out" / "summary.json").read_text(encoding="utf-8"))
    assert summary["images_without_face"] == 2


def test_write_policy_rewrites_the_threshold_validated_versioned_and_audited(
        tmp_path: Path, database_url: str, report: Path) -> None:
    policies = tmp_path / "policies"
    shutil.copytree(REPO / "policies", policies)
    before = read_policy_file(policies / "photo_tagging.yaml")
    settings = Settings(env="test", data_dir=tmp_path / "data", database_url=database_url,
                        policies_dir=policies)
    store = Store.from_settings(settings)
    store.upgrade()
    env = {"FACEAPI_DATA_DIR": str(settings.data_dir), "FACEAPI_ENV": "test",
           "FACEAPI_POLICIES_DIR": str(policies)}
    if settings.database_url:
        env["FACEAPI_DATABASE_URL"] = settings.database_url
    try:
        result = run([str(labelled_csv(tmp_path / "set")), "--out", str(tmp_path / "out"),
                      "--target-fmr", str(TARGET), "--bootstrap", "50",
                      "--write-policy", "photo_tagging"], env)
        summary = json.loads((tmp_path / "out" / "summary.json").read_text(encoding="utf-8"))
        after = read_policy_file(policies / "photo_tagging.yaml")
        assert after.min_similarity == pytest.approx(summary["threshold"])
        assert after.version != before.version
        assert "audited: policy.calibrate" in result.output
        text = (policies / "photo_tagging.yaml").read_text(encoding="utf-8")
        assert "# faceapi calibrate: FMR <= 0.05" in text
        assert text.startswith("# Photo tagging")  # the file's own header is kept
        with store.engine.connect() as conn:
            event = conn.execute(select(audit_events).where(
                audit_events.c.action == "policy.calibrate")).one()
        assert event.policy_version == after.version
        assert json.loads(event.scores)["min_similarity"] == after.min_similarity
        assert json.loads(event.details)["previous_version"] == before.version
        with store.read_uow() as uow:
            recorded = uow.policy_versions.get("photo_tagging", after.version)
        assert recorded is not None
        assert recorded.canonical_text == after.canonical_text()
        # A threshold the policy loader refuses (outside dataset_cleaning's review band
        # [50, 87)) writes nothing and audits nothing.
        cleaning = (policies / "dataset_cleaning.yaml").read_bytes()
        refused = CliRunner().invoke(cli, [
            "calibrate", str(tmp_path / "set" / "labels.csv"), "--out", str(tmp_path / "out3"),
            "--target-fmr", str(TARGET), "--bootstrap", "50",
            "--write-policy", "dataset_cleaning"], env=env)
        assert refused.exit_code == 1
        assert "policy not written" in refused.output
        assert "band" in refused.output
        assert (policies / "dataset_cleaning.yaml").read_bytes() == cleaning
        # A policy that does not exist, or a name that is a path, writes nothing.
        for bad in ("nope", "../login"):
            refused = CliRunner().invoke(cli, [
                "calibrate", str(tmp_path / "set" / "labels.csv"), "--out",
                str(tmp_path / "out2"), "--bootstrap", "50", "--write-policy", bad], env=env)
            assert refused.exit_code != 0
        with store.engine.connect() as conn:
            events = conn.execute(select(audit_events).where(
                audit_events.c.action == "policy.calibrate")).all()
        assert len(events) == 1  # only the write that happened
    finally:
        store.dispose()
