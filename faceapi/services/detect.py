"""Use case: detect faces in one image."""

from __future__ import annotations

from dataclasses import dataclass, replace

from faceapi.domain.audit import Action, Actor, AuditEvent
from faceapi.domain.engine_values import S3Object, image_digest
from faceapi.domain.errors import FaceApiError
from faceapi.domain.faces import Attributes, Detection
from faceapi.services.audit_trail import record
from faceapi.services.image_intake import intake
from faceapi.services.ports import AuditUnitOfWork, FaceEngine, ImageDecoder


@dataclass(frozen=True)
class DetectRequest:
    image: bytes | S3Object  # S3Object: with the rekognition engine only
    attributes: Attributes


def detect(req: DetectRequest, *, engine: FaceEngine, decoder: ImageDecoder,
           uow: AuditUnitOfWork,
           actor: Actor) -> Detection:
    """Run intake, then the engine's detector; the call is audited (digest, no image)."""
    base = AuditEvent(action=Action.FACE_DETECT, outcome="success", actor=actor,
                      engine=engine.name, model_version=engine.model_version,
                      details={"attributes": req.attributes.value})
    try:
        image = intake(req.image, decoder, engine)
        detection = engine.detect_faces(image, req.attributes)
    except FaceApiError as exc:
        # Refused input is on record too: who sent what (by digest) and why it failed.
        record(replace(base, outcome="rejected", reason=exc.code,
                       input_digests=(image_digest(req.image),)), uow=uow)
        raise
    # The intake has hashed the image already (the same digest image_digest gives).
    record(replace(base, input_digests=(image.sha256,),
                   scores={"face_count": len(detection.faces)}), uow=uow)
    return detection
