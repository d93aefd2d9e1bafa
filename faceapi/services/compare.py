"""Use case: compare the largest face of a source image with every face of a target."""

from __future__ import annotations

from dataclasses import dataclass, replace

from faceapi.domain.audit import Action, Actor, AuditEvent
from faceapi.domain.engine_values import S3Object, image_digest
from faceapi.domain.errors import FaceApiError
from faceapi.domain.faces import Comparison
from faceapi.services.audit_trail import record
from faceapi.services.image_intake import intake
from faceapi.services.ports import AuditUnitOfWork, FaceEngine, ImageDecoder


@dataclass(frozen=True)
class CompareRequest:
    source: bytes | S3Object  # S3Object: with the rekognition engine only
    target: bytes | S3Object
    similarity_threshold: float


def compare(req: CompareRequest, *, engine: FaceEngine, decoder: ImageDecoder,
            uow: AuditUnitOfWork,
            actor: Actor) -> Comparison:
    """Intake both images (source first, so its errors are reported first), then compare;
    the call is audited with both digests and the best similarity, never the images."""
    base = AuditEvent(action=Action.FACE_COMPARE, outcome="success", actor=actor,
                      engine=engine.name, model_version=engine.model_version,
                      scores={"threshold": req.similarity_threshold})
    try:
        source = intake(req.source, decoder, engine)
        target = intake(req.target, decoder, engine)
        comparison = engine.compare_faces(source, target, req.similarity_threshold)
    except FaceApiError as exc:
        record(replace(base, outcome="rejected", reason=exc.code, input_digests=(
            image_digest(req.source), image_digest(req.target))), uow=uow)
        raise
    best = max((m.similarity for m in comparison.face_matches), default=None)
    # The intake has hashed both images already (the digests image_digest gives).
    record(replace(base, input_digests=(source.sha256, target.sha256),
                   outcome="match" if comparison.face_matches else "no_match", scores={
        "threshold": req.similarity_threshold, "best_similarity": best,
        "matched_faces": len(comparison.face_matches),
        "unmatched_faces": len(comparison.unmatched_faces)}), uow=uow)
    return comparison
