"""What "nothing half-written" means, checked in the database and the blob directory
after a fault: every row that a change writes has the audit event written with it, and
every face and review has the files it points at."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from tests.faults.conftest import rows

DECISION_ACTIONS = {"verify": "verify.decision", "search": "search.decision"}


def half_written(database_url: str, blob_dir: Path) -> Mapping[str, list[str]]:
    """Each invariant's violations (ids); all lists empty when nothing is half-written."""
    indexed: set[str] = set()
    for (details,) in rows(database_url, "SELECT details FROM audit_events "
                                         "WHERE action = 'face.index' AND outcome = 'indexed'"):
        indexed.update(json.loads(details).get("face_ids", []))
    faces = rows(database_url, "SELECT f.face_id, f.collection_id, c.keep_face_crops "
                               "FROM faces f JOIN collections c "
                               "ON c.collection_id = f.collection_id")
    # A decision's own event: verify.decision, search.decision (compare: face.compare).
    decisions = rows(database_url, "SELECT d.id, d.kind, e.action FROM decisions d "
                                   "LEFT JOIN audit_events e ON e.id = d.audit_event_id")
    review_events: set[str] = set()
    for (details,) in rows(database_url, "SELECT details FROM audit_events "
                                         "WHERE action = 'review.create'"):
        review_events.add(json.loads(details).get("review_id", ""))
    reviews = rows(database_url, "SELECT id, evidence, evidence_purged FROM reviews")
    return {
        "face_without_its_index_event": [f for f, _, _ in faces if f not in indexed],
        "face_without_its_crop": [f for f, c, keep in faces
                                  if keep and not (blob_dir / "faces" / c / f"{f}.jpg").is_file()],
        "decision_without_its_event": [
            d for d, kind, action in decisions
            if action != DECISION_ACTIONS.get(kind, action) or action is None],
        "review_without_its_event": [r for r, _, _ in reviews if r not in review_events],
        "review_without_its_evidence": [
            r for r, evidence, purged in reviews if not purged and not all(
                (blob_dir / "reviews" / r / name).is_file() for name in json.loads(evidence))],
    }


def assert_nothing_half_written(database_url: str, blob_dir: Path) -> None:
    found = {name: ids for name, ids in half_written(database_url, blob_dir).items() if ids}
    assert not found, found
