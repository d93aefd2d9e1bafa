"""Kept face chips in SQL, sealed at rest with the store's secret box (AES-256-GCM under
the credentials key, the same key file as SigV4 secrets: one server secret to keep
outside the database). The row's collection, subject and face ids are the associated
data, so a sealed chip copied onto another face's row does not open. Chips are zlib
compressed before sealing (lossless: the descriptor needs the exact pixels)."""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import structlog
from sqlalchemy import delete, insert, select
from sqlalchemy.engine import Connection

from faceapi.adapters.secret_box import SecretBox, SecretBoxError
from faceapi.adapters.store.tables import face_chips
from faceapi.domain.collections import FaceChip

_BATCH = 500

log = structlog.get_logger(__name__)


def _context(collection_id: str, subject_id: str, face_id: str) -> str:
    return f"face_chips/{collection_id}/{subject_id}/{face_id}"


class SqlFaceChipsRepo:
    def __init__(self, conn: Connection, secret_box: SecretBox | None) -> None:
        self._conn = conn
        self._box = secret_box

    def _require_box(self) -> SecretBox:
        if self._box is None:
            raise RuntimeError("this store has no secret box: face chips cannot be kept")
        return self._box

    def add(self, chip: FaceChip) -> None:
        sealed = self._require_box().seal_bytes(
            zlib.compress(chip.pixels, 6),
            context=_context(chip.collection_id, chip.subject_id, chip.face_id))
        self._conn.execute(insert(face_chips).values(
            face_id=chip.face_id, collection_id=chip.collection_id,
            subject_id=chip.subject_id, chip_format=chip.chip_format, sealed=sealed))

    def get_many(self, collection_id: str, face_ids: Sequence[str]) -> dict[str, FaceChip]:
        box = self._require_box()
        found: dict[str, FaceChip] = {}
        wanted = list(dict.fromkeys(face_ids))
        for start in range(0, len(wanted), _BATCH):
            rows = self._conn.execute(select(face_chips).where(
                face_chips.c.collection_id == collection_id,
                face_chips.c.face_id.in_(wanted[start:start + _BATCH])))
            for row in rows:
                try:
                    pixels = zlib.decompress(box.open_bytes(
                        bytes(row.sealed),
                        context=_context(row.collection_id, row.subject_id, row.face_id)))
                except (SecretBoxError, zlib.error):
                    # Sealed under a key no longer configured, or moved or altered: it
                    # is not used (the face then counts as having no chip).
                    log.warning("face_chip_unopenable", collection_id=collection_id,
                                face_id=row.face_id)
                    continue
                found[row.face_id] = FaceChip(collection_id=row.collection_id,
                                              subject_id=row.subject_id, face_id=row.face_id,
                                              chip_format=row.chip_format, pixels=pixels)
        return found

    def delete(self, collection_id: str, face_ids: Sequence[str]) -> int:
        wanted = list(dict.fromkeys(face_ids))
        count = 0
        for start in range(0, len(wanted), _BATCH):
            result = self._conn.execute(delete(face_chips).where(
                face_chips.c.collection_id == collection_id,
                face_chips.c.face_id.in_(wanted[start:start + _BATCH])))
            count += int(result.rowcount)
        return count

    def delete_for_subject(self, collection_id: str, subject_id: str | None) -> int:
        stmt = delete(face_chips).where(face_chips.c.collection_id == collection_id)
        if subject_id is not None:
            stmt = stmt.where(face_chips.c.subject_id == subject_id)
        return int(self._conn.execute(stmt).rowcount)
