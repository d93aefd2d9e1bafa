"""Collections, subjects, faces and consents in SQL (SQLAlchemy Core on the unit of
work's connection; the unit of work commits)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Row, delete, func, insert, select, tuple_, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from faceapi.adapters.store.tables import collections, consents, face_chips, faces, subjects
from faceapi.domain.collections import (
    Collection,
    CollectionExists,
    CollectionStats,
    Consent,
    ConsentBasis,
    MultipleFaces,
    StoredFace,
    Subject,
)
from faceapi.domain.faces import BoundingBox, Pose, Quality


def _utc(moment: datetime) -> datetime:
    # SQLite hands back naive datetimes; we only ever store UTC.
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _collection(row: Row[Any]) -> Collection:
    return Collection(collection_id=row.collection_id, description=row.description,
                      engine=row.engine, model_version=row.model_version,
                      created_at=_utc(row.created_at), version=int(row.version),
                      consent_required=bool(row.consent_required),
                      keep_face_crops=bool(row.keep_face_crops),
                      keep_chips=bool(row.keep_chips),
                      policies=policies_from_text(row.policies),
                      multiple_faces=MultipleFaces(row.multiple_faces))


def policies_to_text(names: Sequence[str]) -> str:
    """The stored form of a policy binding: sorted names, comma-separated."""
    return ",".join(sorted(set(names)))


def policies_from_text(text: str | None) -> tuple[str, ...]:
    return tuple(sorted({n for n in (text or "").split(",") if n}))


class SqlCollectionsRepo:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def add(self, collection: Collection) -> None:
        # A savepoint, so a duplicate id leaves the outer transaction usable.
        try:
            with self._conn.begin_nested():
                self._conn.execute(insert(collections).values(
                    collection_id=collection.collection_id,
                    description=collection.description, engine=collection.engine,
                    model_version=collection.model_version, version=collection.version,
                    consent_required=collection.consent_required,
                    keep_face_crops=collection.keep_face_crops,
                    keep_chips=collection.keep_chips,
                    policies=policies_to_text(collection.policies),
                    multiple_faces=collection.multiple_faces.value,
                    created_at=collection.created_at))
        except IntegrityError as exc:
            raise CollectionExists(f"collection {collection.collection_id!r} already exists",
                                   details={"collection_id": collection.collection_id}) from exc

    def get(self, collection_id: str) -> Collection | None:
        row = self._conn.execute(
            select(collections).where(collections.c.collection_id == collection_id)).first()
        return None if row is None else _collection(row)

    def page(self, *, limit: int, after: str | None = None) -> list[Collection]:
        stmt = select(collections).order_by(collections.c.collection_id).limit(limit)
        if after is not None:
            stmt = stmt.where(collections.c.collection_id > after)
        return [_collection(row) for row in self._conn.execute(stmt)]

    def stats(self, collection_id: str) -> CollectionStats:
        face_count = self._conn.execute(
            select(func.count()).select_from(faces)
            .where(faces.c.collection_id == collection_id)).scalar_one()
        subject_count = self._conn.execute(
            select(func.count()).select_from(subjects)
            .where(subjects.c.collection_id == collection_id)).scalar_one()
        return CollectionStats(face_count=int(face_count), subject_count=int(subject_count))

    def bump_version(self, collection_id: str) -> int:
        # On PostgreSQL the UPDATE also row-locks the collection until commit, which
        # serialises concurrent writers to one collection.
        self._conn.execute(
            update(collections).where(collections.c.collection_id == collection_id)
            .values(version=collections.c.version + 1))
        version = self._conn.execute(
            select(collections.c.version)
            .where(collections.c.collection_id == collection_id)).scalar_one()
        return int(version)

    def set_policies(self, collection_id: str, policies: Sequence[str]) -> None:
        self._conn.execute(
            update(collections).where(collections.c.collection_id == collection_id)
            .values(policies=policies_to_text(policies)))

    def set_model_version(self, collection_id: str, model_version: str) -> None:
        self._conn.execute(
            update(collections).where(collections.c.collection_id == collection_id)
            .values(model_version=model_version))

    def delete(self, collection_id: str) -> None:
        # Children first and explicitly, so nothing depends on the database honouring
        # ON DELETE CASCADE (SQLite only does with its foreign_keys pragma on).
        self._conn.execute(delete(consents).where(consents.c.collection_id == collection_id))
        self._conn.execute(delete(face_chips).where(face_chips.c.collection_id == collection_id))
        self._conn.execute(delete(faces).where(faces.c.collection_id == collection_id))
        self._conn.execute(delete(subjects).where(subjects.c.collection_id == collection_id))
        self._conn.execute(
            delete(collections).where(collections.c.collection_id == collection_id))


class SqlSubjectsRepo:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def get(self, collection_id: str, subject_id: str) -> Subject | None:
        row = self._conn.execute(select(subjects).where(
            subjects.c.collection_id == collection_id,
            subjects.c.subject_id == subject_id)).first()
        if row is None:
            return None
        return Subject(collection_id=row.collection_id, subject_id=row.subject_id,
                       created_at=_utc(row.created_at))

    def ensure(self, subject: Subject) -> Subject:
        existing = self.get(subject.collection_id, subject.subject_id)
        if existing is not None:
            return existing
        self._conn.execute(insert(subjects).values(
            collection_id=subject.collection_id, subject_id=subject.subject_id,
            created_at=subject.created_at))
        return subject

    def delete(self, collection_id: str, subject_id: str) -> bool:
        result = self._conn.execute(delete(subjects).where(
            subjects.c.collection_id == collection_id, subjects.c.subject_id == subject_id))
        return bool(result.rowcount)

    def lock(self, collection_id: str, subject_id: str) -> bool:
        stmt = select(subjects.c.subject_id).where(subjects.c.collection_id == collection_id,
                                                   subjects.c.subject_id == subject_id)
        if self._conn.dialect.name == "postgresql":
            # SQLite's BEGIN IMMEDIATE already holds the one write lock.
            stmt = stmt.with_for_update()
        return self._conn.execute(stmt).first() is not None

    def ids(self, collection_id: str) -> list[str]:
        """Every subject id of a collection (collection deletion erases them all)."""
        return list(self._conn.execute(
            select(subjects.c.subject_id).where(subjects.c.collection_id == collection_id)
            .order_by(subjects.c.subject_id)).scalars())


_FACE_COLUMNS_NO_EMBEDDING = [c for c in faces.c if c.name != "embedding"]


def _face(row: Row[Any], *, with_embedding: bool) -> StoredFace:
    quality = (Quality(brightness=row.brightness, sharpness=row.sharpness)
               if row.brightness is not None and row.sharpness is not None else None)
    pose = (Pose(roll=row.roll, yaw=row.yaw, pitch=row.pitch)
            if row.yaw is not None and row.pitch is not None and row.roll is not None else None)
    embedding = row.embedding if with_embedding else None
    return StoredFace(
        face_id=row.face_id, collection_id=row.collection_id, subject_id=row.subject_id,
        image_id=row.image_id, image_sha256=row.image_sha256,
        bounding_box=BoundingBox(width=row.box_width, height=row.box_height,
                                 left=row.box_left, top=row.box_top),
        confidence=row.confidence, created_at=_utc(row.created_at), quality=quality,
        pose=pose, width_px=row.width_px, height_px=row.height_px,
        embedding=bytes(embedding) if embedding is not None else None,
        engine_face_id=row.engine_face_id, added_version=int(row.added_version),
        template_version=row.template_version)


class SqlFacesRepo:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def add(self, face: StoredFace) -> None:
        box, quality, pose = face.bounding_box, face.quality, face.pose
        self._conn.execute(insert(faces).values(
            face_id=face.face_id, collection_id=face.collection_id, subject_id=face.subject_id,
            image_id=face.image_id, image_sha256=face.image_sha256,
            box_width=box.width, box_height=box.height, box_left=box.left, box_top=box.top,
            confidence=face.confidence,
            brightness=quality.brightness if quality else None,
            sharpness=quality.sharpness if quality else None,
            roll=pose.roll if pose else None, yaw=pose.yaw if pose else None,
            pitch=pose.pitch if pose else None,
            width_px=face.width_px, height_px=face.height_px, embedding=face.embedding,
            engine_face_id=face.engine_face_id, created_at=face.created_at,
            added_version=face.added_version, template_version=face.template_version))

    def get(self, collection_id: str, face_id: str) -> StoredFace | None:
        row = self._conn.execute(select(faces).where(
            faces.c.collection_id == collection_id, faces.c.face_id == face_id)).first()
        return None if row is None else _face(row, with_embedding=True)

    def page(self, collection_id: str, *, subject_id: str | None = None, limit: int,
             after: str | None = None) -> list[StoredFace]:
        stmt = (select(*_FACE_COLUMNS_NO_EMBEDDING)
                .where(faces.c.collection_id == collection_id)
                .order_by(faces.c.face_id).limit(limit))
        if subject_id is not None:
            stmt = stmt.where(faces.c.subject_id == subject_id)
        if after is not None:
            stmt = stmt.where(faces.c.face_id > after)
        rows = self._conn.execute(stmt)
        return [_face(row, with_embedding=False) for row in rows]

    def list_for_subject(self, collection_id: str, subject_id: str) -> list[StoredFace]:
        rows = self._conn.execute(select(faces).where(
            faces.c.collection_id == collection_id, faces.c.subject_id == subject_id)
            .order_by(faces.c.created_at, faces.c.face_id))
        return [_face(row, with_embedding=True) for row in rows]

    def by_engine_face_ids(self, collection_id: str,
                           engine_face_ids: Sequence[str]) -> dict[str, StoredFace]:
        wanted = list(dict.fromkeys(engine_face_ids))
        found: dict[str, StoredFace] = {}
        for start in range(0, len(wanted), 500):
            rows = self._conn.execute(select(*_FACE_COLUMNS_NO_EMBEDDING).where(
                faces.c.collection_id == collection_id,
                faces.c.engine_face_id.in_(wanted[start:start + 500])))
            for row in rows:
                found[row.engine_face_id] = _face(row, with_embedding=False)
        return found

    def subject_face_ids(self, collection_id: str,
                         subject_id: str) -> list[tuple[str, str | None]]:
        rows = self._conn.execute(select(faces.c.face_id, faces.c.engine_face_id).where(
            faces.c.collection_id == collection_id, faces.c.subject_id == subject_id)
            .order_by(faces.c.face_id))
        return [(row.face_id, row.engine_face_id) for row in rows]

    def engine_face_ids(self, collection_id: str, face_ids: Sequence[str]) -> list[str]:
        wanted = list(dict.fromkeys(face_ids))
        found: list[str] = []
        for start in range(0, len(wanted), 500):
            found += self._conn.execute(select(faces.c.engine_face_id).where(
                faces.c.collection_id == collection_id,
                faces.c.face_id.in_(wanted[start:start + 500]),
                faces.c.engine_face_id.is_not(None))).scalars()
        return found

    def find_by_image(self, collection_id: str, image_sha256: str) -> list[StoredFace]:
        rows = self._conn.execute(select(*_FACE_COLUMNS_NO_EMBEDDING).where(
            faces.c.collection_id == collection_id, faces.c.image_sha256 == image_sha256)
            .order_by(faces.c.face_id))
        return [_face(row, with_embedding=False) for row in rows]

    def delete(self, collection_id: str, face_ids: Sequence[str]) -> list[str]:
        if not face_ids:
            return []
        found = list(self._conn.execute(select(faces.c.face_id).where(
            faces.c.collection_id == collection_id, faces.c.face_id.in_(list(face_ids))))
            .scalars())
        if found:
            # A chip never outlives its face, whatever deletes the face.
            self._conn.execute(delete(face_chips).where(
                face_chips.c.collection_id == collection_id, face_chips.c.face_id.in_(found)))
            self._conn.execute(delete(faces).where(
                faces.c.collection_id == collection_id, faces.c.face_id.in_(found)))
        return found

    def delete_for_subject(self, collection_id: str, subject_id: str) -> list[str]:
        found = list(self._conn.execute(select(faces.c.face_id).where(
            faces.c.collection_id == collection_id, faces.c.subject_id == subject_id))
            .scalars())
        if found:
            self._conn.execute(delete(face_chips).where(
                face_chips.c.collection_id == collection_id,
                face_chips.c.subject_id == subject_id))
            self._conn.execute(delete(faces).where(
                faces.c.collection_id == collection_id, faces.c.subject_id == subject_id))
        return found

    @staticmethod
    def _with_embedding(collection_id: str, template_version: str | None) -> list[Any]:
        where = [faces.c.collection_id == collection_id, faces.c.embedding.is_not(None)]
        if template_version is not None:
            where.append(faces.c.template_version == template_version)
        return where

    def embeddings(self, collection_id: str,
                   template_version: str | None = None) -> list[tuple[str, str, bytes]]:
        rows = self._conn.execute(
            select(faces.c.face_id, faces.c.subject_id, faces.c.embedding)
            .where(*self._with_embedding(collection_id, template_version))
            .order_by(faces.c.face_id))
        return [(row.face_id, row.subject_id, bytes(row.embedding)) for row in rows]

    def embeddings_since(self, collection_id: str, version: int,
                         template_version: str | None = None) -> list[tuple[str, str, bytes]]:
        rows = self._conn.execute(
            select(faces.c.face_id, faces.c.subject_id, faces.c.embedding)
            .where(*self._with_embedding(collection_id, template_version),
                   faces.c.added_version > version)
            .order_by(faces.c.added_version, faces.c.face_id))
        return [(row.face_id, row.subject_id, bytes(row.embedding)) for row in rows]

    def embedding_count(self, collection_id: str, template_version: str | None = None) -> int:
        return int(self._conn.execute(
            select(func.count()).select_from(faces)
            .where(*self._with_embedding(collection_id, template_version))
        ).scalar_one())

    def template_counts(self, collection_id: str) -> dict[str, int]:
        rows = self._conn.execute(
            select(faces.c.template_version, func.count())
            .where(faces.c.collection_id == collection_id)
            .group_by(faces.c.template_version))
        return {row[0]: int(row[1]) for row in rows}

    def not_at_template(self, collection_id: str, template_version: str, *,
                        after: str | None, limit: int) -> list[StoredFace]:
        stmt = (select(*_FACE_COLUMNS_NO_EMBEDDING)
                .where(faces.c.collection_id == collection_id,
                       faces.c.template_version != template_version)
                .order_by(faces.c.face_id).limit(limit))
        if after is not None:
            stmt = stmt.where(faces.c.face_id > after)
        return [_face(row, with_embedding=False) for row in self._conn.execute(stmt)]

    def set_template(self, collection_id: str, face_id: str, *, embedding: bytes,
                     template_version: str, from_version: str, added_version: int) -> bool:
        result = self._conn.execute(
            update(faces).where(faces.c.collection_id == collection_id,
                                faces.c.face_id == face_id,
                                faces.c.template_version == from_version)
            .values(embedding=embedding, template_version=template_version,
                    added_version=added_version))
        return bool(result.rowcount)


class SqlConsentsRepo:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def record(self, consent: Consent) -> None:
        self._conn.execute(insert(consents).values(
            collection_id=consent.collection_id, subject_id=consent.subject_id,
            basis=consent.basis.value, reference=consent.reference,
            recorded_at=consent.recorded_at, recorded_by=consent.recorded_by,
            expires_at=consent.expires_at))

    def current(self, collection_id: str, subject_id: str) -> Consent | None:
        row = self._conn.execute(
            select(consents).where(consents.c.collection_id == collection_id,
                                   consents.c.subject_id == subject_id)
            .order_by(consents.c.consent_id.desc()).limit(1)).first()
        if row is None:
            return None
        return Consent(collection_id=row.collection_id, subject_id=row.subject_id,
                       basis=ConsentBasis(row.basis), reference=row.reference,
                       recorded_at=_utc(row.recorded_at), recorded_by=row.recorded_by,
                       expires_at=None if row.expires_at is None else _utc(row.expires_at))

    def delete_for_subject(self, collection_id: str, subject_id: str) -> int:
        result = self._conn.execute(delete(consents).where(
            consents.c.collection_id == collection_id, consents.c.subject_id == subject_id))
        return int(result.rowcount)

    @staticmethod
    def _in_force() -> Any:
        """The newest consent record of each subject (the one in force)."""
        return (select(func.max(consents.c.consent_id).label("consent_id"))
                .group_by(consents.c.collection_id, consents.c.subject_id))

    def lapsed_among(self, collection_id: str, subject_ids: Sequence[str],
                     now: datetime) -> set[str]:
        if not subject_ids:
            return set()
        newest = self._in_force().where(
            consents.c.collection_id == collection_id,
            consents.c.subject_id.in_(sorted(set(subject_ids)))).subquery()
        stmt = select(consents.c.subject_id).join(
            newest, consents.c.consent_id == newest.c.consent_id).where(
            consents.c.expires_at.is_not(None), consents.c.expires_at <= now)
        return set(self._conn.execute(stmt).scalars())

    def lapsed(self, now: datetime, limit: int) -> list[tuple[str, str]]:
        # Only subjects with some lapsed record can qualify: the index on expires_at
        # keeps this cheap however many consents never lapse.
        candidates = select(consents.c.collection_id, consents.c.subject_id).where(
            consents.c.expires_at.is_not(None), consents.c.expires_at <= now)
        newest = self._in_force().where(
            tuple_(consents.c.collection_id, consents.c.subject_id).in_(candidates)
        ).subquery()
        stmt = (select(consents.c.collection_id, consents.c.subject_id)
                .join(newest, consents.c.consent_id == newest.c.consent_id)
                .where(consents.c.expires_at.is_not(None), consents.c.expires_at <= now)
                .order_by(consents.c.expires_at, consents.c.collection_id,
                          consents.c.subject_id)
                .limit(limit))
        return [(row.collection_id, row.subject_id) for row in self._conn.execute(stmt)]
