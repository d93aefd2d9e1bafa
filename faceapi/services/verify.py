"""Use case: 1:1 verify of a claimed subject under a policy (face login, identity check).

lockout check -> intake -> exactly one usable face -> compare with every enrolled face
of the subject -> decide under the policy -> one unit of work with the lockout count,
the decision, the review (when pending) and their audit events.

An unknown subject is compared with nothing and decided exactly like a low score, and
its failures lock like anyone's, so answers never tell who is enrolled.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from faceapi.adapters.images import decode_image
from faceapi.config import Settings
from faceapi.domain.access import require_policy_access
from faceapi.domain.audit import Action, Actor, AuditEvent
from faceapi.domain.clock import Clock
from faceapi.domain.collections import require_bound
from faceapi.domain.decisions import (
    Candidate,
    Decision,
    DecisionKind,
    Outcome,
    Proposal,
    Reason,
    decide,
    rejected_for,
)
from faceapi.domain.errors import NoFaceInSource
from faceapi.domain.faces import Attributes, EmbeddedFace, FaceDetail
from faceapi.domain.images import DecodedImage
from faceapi.domain.lockout import LockoutKey, locked_error
from faceapi.domain.policies import (
    Operation,
    Policy,
    PolicySet,
    ReviewMode,
    quality_reasons,
)
from faceapi.services.collection_lookup import load_collection, resource
from faceapi.services.collections import check_engine
from faceapi.services.face_crops import candidate_crops
from faceapi.services.lockout import apply_result, audit_lock, subject_lock
from faceapi.services.ports import (
    BlobStore,
    FaceCollections,
    FaceEngine,
    UnitOfWork,
    remote_collections,
)
from faceapi.services.review import discard_evidence, evidence_images, record_decision

# Rekognition's largest SearchFacesByImage MaxFaces: a verify filters the matches by
# the claimed subject, so it asks for as many as the engine gives.
REMOTE_MAX_MATCHES = 4096


@dataclass(frozen=True)
class VerifyRequest:
    collection_id: str
    subject_id: str
    image: bytes
    policy: str


def policy_for(policies: PolicySet, actor: Actor, name: str, operation: Operation) -> Policy:
    """The named policy for this operation, if the caller may decide under it."""
    policy = policies.require(name, operation)
    require_policy_access(actor, policy.name)
    return policy


def screen_faces(faces: list[EmbeddedFace], policy: Policy) -> tuple[EmbeddedFace | None,
                                                                      list[str]]:
    """The probe face to compare, or the reasons there is none usable under the policy.
    The largest face is the probe (as Rekognition's SearchFacesByImage does)."""
    detail, reasons = screen_details([f.detail for f in faces], policy)
    return next((f for f in faces if f.detail is detail), None), reasons


def screen_details(faces: Sequence[FaceDetail], policy: Policy) -> tuple[FaceDetail | None,
                                                                         list[str]]:
    """`screen_faces` for detected faces without descriptors (a remote engine)."""
    if not faces:
        return None, [Reason.NO_FACE]
    if len(faces) > policy.max_faces:
        return None, [Reason.MULTIPLE_FACES]
    probe = max(faces, key=lambda f: f.bounding_box.width * f.bounding_box.height)
    reasons = quality_reasons(probe, policy)
    return (None, reasons) if reasons else (probe, [])


def remote_floor(policy: Policy) -> float:
    """The lowest similarity a remote collection search must return for a verify: the
    lowest score the decision can turn on (the threshold, or the bottom of the review
    band), or 0 when every verify goes to a reviewer, who should see the claimed
    subject's faces with their scores whatever they are."""
    review = policy.human_review
    if review.mode is ReviewMode.ALWAYS:
        return 0.0
    band = review.band
    return min(policy.min_similarity, band[0]) if band is not None else policy.min_similarity


def remote_probe(engine: FaceEngine, image: DecodedImage,
                 policy: Policy) -> tuple[FaceDetail | None, list[str], int]:
    """Screen the probe on an engine that keeps faces itself: DetectFaces with every
    attribute, so the policy's face count and quality gates hold as on the local path
    (SearchFacesByImage alone reports only the searched face's box)."""
    detection = engine.detect_faces(image, Attributes.ALL)
    detail, reasons = screen_details(detection.faces, policy)
    return detail, reasons, len(detection.faces)


def verify(req: VerifyRequest, *, actor: Actor, engine: FaceEngine, uow: UnitOfWork,
           policies: PolicySet, clock: Clock, blobs: BlobStore, settings: Settings,
           request_id: str | None = None) -> Decision:
    """Decide whether the image shows the claimed subject; raises Locked (423)."""
    policy = policy_for(policies, actor, req.policy, Operation.VERIFY)
    key = LockoutKey(req.collection_id, req.subject_id, policy.name)
    with uow:
        collection = load_collection(uow, actor, req.collection_id)
        require_bound(collection, policy.name)
        # Locked under any policy is locked under this one: the lock is the subject's.
        locked = subject_lock(uow, req.collection_id, req.subject_id, clock.now())
        if locked is not None:
            _audit_locked(uow, policy, req, actor=actor, engine=engine, request_id=request_id)
            uow.commit()
            raise locked_error(locked, clock.now())
    check_engine(collection, engine)

    image = decode_image(req.image, settings)
    remote = remote_collections(engine)
    probe: FaceDetail | None
    scored: list[Candidate] = []
    if remote is None:
        _, embedded = engine.embed_faces(image)
        found, reasons = screen_faces(embedded, policy)
        probe = found.detail if found is not None else None
        if found is not None:
            with uow:
                stored = uow.faces.list_for_subject(req.collection_id, req.subject_id)
            scored = [Candidate(f.face_id, f.subject_id,
                                engine.similarity(found.embedding, f.vector()))
                      for f in stored if f.embedding]
    else:
        probe, reasons, _ = remote_probe(engine, image, policy)
        if probe is not None:
            scored, reasons = _remote_scores(remote, uow, req, image, policy)
            probe = probe if not reasons else None
    scored.sort(key=lambda c: -c.similarity)
    candidates = tuple(scored)
    similarity = scored[0].similarity if scored else None
    proposal: Proposal = decide(policy, similarity) if probe is not None else \
        rejected_for(reasons)

    now = clock.now()
    decision = Decision(
        id=str(uuid.uuid4()), kind=DecisionKind.VERIFY, outcome=proposal.outcome,
        reasons=proposal.reasons, policy_name=policy.name, policy_version=policy.version,
        threshold=policy.min_similarity, collection_id=req.collection_id,
        subject_id=req.subject_id, similarity=similarity, candidates=candidates,
        matched_face_id=candidates[0].face_id if proposal.outcome is Outcome.MATCH else None,
        review_id=str(uuid.uuid4()) if proposal.needs_review else None,
        requester_key_id=actor.key_id, requester_role=actor.role, probe_sha256=image.sha256,
        request_id=request_id, created_at=now,
        decided_at=None if proposal.needs_review else now,
        engine=engine.name, model_version=engine.model_version)
    try:
        with uow:
            update = apply_result(uow, policy, key, decision.outcome, now)
            if update.was_locked and update.state is not None:
                # Locked by a concurrent request while this one was comparing: never
                # let a guess that raced the lock through, whatever its score.
                _audit_locked(uow, policy, req, actor=actor, engine=engine,
                              request_id=request_id)
                uow.commit()
                raise locked_error(update.state, now)
            decision = record_decision(
                uow, blobs, decision, _decision_event(decision, actor, policy, probe),
                policy=policy, now=now, actor=actor,
                evidence=lambda: {**evidence_images(image, probe),
                                  **candidate_crops(blobs, req.collection_id, candidates)})
            if update.locked_now and update.state is not None:
                audit_lock(uow, update.state, policy, actor=actor, now=now,
                           request_id=request_id)
            uow.commit()
    except BaseException:
        discard_evidence(blobs, decision.review_id)
        raise
    return decision


def _remote_scores(remote: FaceCollections, uow: UnitOfWork, req: VerifyRequest,
                   image: DecodedImage, policy: Policy) -> tuple[list[Candidate], list[str]]:
    """The claimed subject's faces among a remote collection search's matches.

    The search runs even for an unknown subject, so the answer takes as long and costs
    the same as for an enrolled one (no enumeration by timing). Faces below the
    policy's floor are not returned by the engine: their similarity stays unknown,
    which decides exactly like a low score."""
    with uow:
        ours = {engine_id: face_id for face_id, engine_id
                in uow.faces.subject_face_ids(req.collection_id, req.subject_id) if engine_id}
    try:
        found = remote.search_faces_by_image(req.collection_id, image,
                                             threshold=remote_floor(policy),
                                             max_faces=REMOTE_MAX_MATCHES)
    except NoFaceInSource:
        return [], [Reason.NO_FACE]
    return [Candidate(ours[m.face.face_id], req.subject_id, m.similarity)
            for m in found.matches if m.face.face_id in ours], []


def _decision_event(decision: Decision, actor: Actor, policy: Policy,
                    probe: FaceDetail | None) -> AuditEvent:
    return AuditEvent(
        action=Action.VERIFY_DECISION, outcome=decision.outcome.value, actor=actor,
        resource=resource(decision.collection_id or "", decision.subject_id),
        subject_id=decision.subject_id, policy_name=policy.name,
        policy_version=policy.version, engine=decision.engine,
        model_version=decision.model_version,
        scores={"similarity": None if decision.similarity is None
                else round(decision.similarity, 4),
                "threshold": decision.threshold,
                "compared_faces": len(decision.candidates),
                "face_confidence": None if probe is None else round(probe.confidence, 2)},
        input_digests=(decision.probe_sha256,) if decision.probe_sha256 else (),
        request_id=decision.request_id, reason=",".join(decision.reasons)[:256],
        details={"decision_id": decision.id, "collection_id": decision.collection_id,
                 **({"review_id": decision.review_id} if decision.review_id else {})})


def _audit_locked(uow: UnitOfWork, policy: Policy, req: VerifyRequest, *, actor: Actor,
                  engine: FaceEngine, request_id: str | None) -> None:
    uow.audit.append(AuditEvent(
        action=Action.VERIFY_DECISION, outcome=Outcome.REJECTED.value, actor=actor,
        resource=resource(req.collection_id, req.subject_id), subject_id=req.subject_id,
        policy_name=policy.name, policy_version=policy.version, engine=engine.name,
        model_version=engine.model_version, request_id=request_id, reason=Reason.LOCKED,
        details={"collection_id": req.collection_id}))


@dataclass(frozen=True)
class CompareRequest:
    source: bytes
    target: bytes
    policy: str


def compare_under_policy(req: CompareRequest, *, actor: Actor, engine: FaceEngine,
                         uow: UnitOfWork, policies: PolicySet, clock: Clock,
                         blobs: BlobStore, settings: Settings,
                         request_id: str | None = None) -> Decision:
    """Decide whether two images show the same person, under a compare policy (e.g.
    dataset_cleaning: scores in the review band wait for a reviewer)."""
    policy = policy_for(policies, actor, req.policy, Operation.COMPARE)
    source = decode_image(req.source, settings)
    target = decode_image(req.target, settings)
    source_face, reasons = screen_faces(engine.embed_faces(source)[1], policy)
    target_face, target_reasons = screen_faces(engine.embed_faces(target)[1], policy)
    reasons += [f"target_{r}" for r in target_reasons]
    similarity: float | None = None
    if source_face is not None and target_face is not None:
        similarity = engine.similarity(source_face.embedding, target_face.embedding)
    proposal = decide(policy, similarity) if similarity is not None else rejected_for(reasons)
    now = clock.now()
    decision = Decision(
        id=str(uuid.uuid4()), kind=DecisionKind.COMPARE, outcome=proposal.outcome,
        reasons=proposal.reasons, policy_name=policy.name, policy_version=policy.version,
        threshold=policy.min_similarity, collection_id=None, subject_id=None,
        similarity=similarity, review_id=str(uuid.uuid4()) if proposal.needs_review else None,
        requester_key_id=actor.key_id, requester_role=actor.role, probe_sha256=source.sha256,
        request_id=request_id, created_at=now,
        decided_at=None if proposal.needs_review else now,
        engine=engine.name, model_version=engine.model_version)
    try:
        with uow:
            decision = record_decision(uow, blobs, decision, AuditEvent(
                action=Action.FACE_COMPARE, outcome=decision.outcome.value, actor=actor,
                resource="compare", policy_name=policy.name, policy_version=policy.version,
                engine=engine.name, model_version=engine.model_version,
                scores={"similarity": None if similarity is None else round(similarity, 4),
                        "threshold": policy.min_similarity},
                input_digests=(source.sha256, target.sha256), request_id=request_id,
                reason=",".join(decision.reasons)[:256],
                details={"decision_id": decision.id,
                         **({"review_id": decision.review_id} if decision.review_id else {})}),
                policy=policy, now=now, actor=actor, evidence=lambda: {
                    **evidence_images(source, source_face.detail if source_face else None),
                    **evidence_images(target, target_face.detail if target_face else None,
                                      prefix="target")})
            uow.commit()
    except BaseException:
        discard_evidence(blobs, decision.review_id)
        raise
    return decision
