"""Helpers for the verify, search, review and lockout tests: enrol scripted faces and
make probes with an exact similarity to them (FakeEngine: similarity = cosine * 100)."""

from __future__ import annotations

import base64
import itertools
import math
from typing import Any

from flask import Flask
from sqlalchemy import func, select

from faceapi.adapters.store.tables import audit_events, decisions, reviews
from faceapi.domain.audit import Actor
from faceapi.services.collections import CreateCollectionRequest, create_collection
from faceapi.services.enroll import IndexFacesRequest, index_faces
from tests.conftest import solid_image
from tests.fakes import FakeEngine, ScriptedFace, face, unit_vector

OPERATOR = Actor.system("tests")
_colours = itertools.count(1)


def new_image() -> bytes:
    """A distinct small PNG each call (distinct SHA-256, so distinct scripted faces)."""
    n = next(_colours)
    return solid_image(32, 32, color=(n % 251, (n // 251) % 251, 7))


def vector_at(base: tuple[float, ...], similarity: float, seed: int = 999) -> tuple[float, ...]:
    """A unit vector whose cosine with `base` is similarity / 100."""
    other = unit_vector(seed)
    dot = sum(a * b for a, b in zip(base, other, strict=True))
    ortho = [o - dot * b for o, b in zip(other, base, strict=True)]
    norm = math.sqrt(sum(v * v for v in ortho))
    c = similarity / 100.0
    s = math.sqrt(max(0.0, 1.0 - c * c))
    return tuple(c * b + s * o / norm for b, o in zip(base, ortho, strict=True))


def scripted(engine: FakeEngine, vectors: list[tuple[float, ...]], **face_args: Any) -> bytes:
    """An image on which the fake engine finds one face per vector."""
    image = new_image()
    engine.script(image, [ScriptedFace(face(left=0.1 + 0.3 * i, size=0.25, **face_args), v)
                          for i, v in enumerate(vectors)])
    return image


def make_collection(app: Flask, collection_id: str,
                    policies: tuple[str, ...] | None = None) -> None:
    """A collection bound to `policies`; by default to every verify and search policy,
    so a test can decide under any of them (the binding itself is tested in
    tests/security/test_policy_binding.py)."""
    d = app.extensions["faceapi"]
    bound = policies if policies is not None else tuple(
        name for name, p in d.policies.items() if p.operation.value in ("verify", "search"))
    create_collection(CreateCollectionRequest(collection_id, consent_required=False,
                                              policies=bound),
                      actor=OPERATOR, engine=d.engine, uow=d.store.uow(), clock=d.clock,
                      policies=d.policies)


def enroll(app: Flask, collection_id: str, subject_id: str,
           vector: tuple[float, ...]) -> str:
    """Index one face with `vector` for the subject; returns its face id."""
    d = app.extensions["faceapi"]
    image = scripted(d.engine, [vector])
    result = index_faces(IndexFacesRequest(collection_id=collection_id, image=image,
                                           subject_id=subject_id),
                         actor=OPERATOR, engine=d.engine, uow=d.store.uow(), clock=d.clock,
                         decoder=d.decoder, blobs=d.blobs)
    return result.face_records[0].face.face_id


def b64(data: bytes) -> dict[str, str]:
    return {"bytes": base64.b64encode(data).decode("ascii")}


def row_counts(app: Flask) -> dict[str, int]:
    """Rows in the tables a decision writes, to prove nothing is half-written."""
    d = app.extensions["faceapi"]
    with d.store.engine.connect() as conn:
        return {t.name: int(conn.execute(select(func.count()).select_from(t)).scalar_one())
                for t in (decisions, reviews, audit_events)}
