"""Use case: 1:1 verify of a claimed subject under a policy (face login, identity check).

lockout check -> intake -> exactly one usable face -> compare with every enrolled face
of the subject -> decide under the policy -> one unit of work with the lockout count,
the decision, the review (when pending) and their audit events.

An unknown subject is compared with nothing and decided exactly like a low score, and
its failures lock like anyone's, so answers never tell who is enrolled.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from faceapi.domain.access import require_policy_access
from faceapi.domain.audit import Action, Actor, AuditEvent
from faceapi.domain.clock import Clock
from faceapi.domain.collections import consent_lapsed, require_bound
from faceapi.domain.decisions import (
    Candidate,
    Decision,
    DecisionKind,
    Outcome,
    Reason,
)
from faceapi.domain.errors import NoFaceInSource
from faceapi.domain.faces import Attributes, EmbeddedFace, FaceDetail
from faceapi.domain.images import DecodedImage
from faceapi.domain.liveness import AttestationReplayed, LivenessCheck
from faceapi.domain.lockout import LockoutKey, LockoutState, locked_error
from faceapi.domain.policies import (
    Operation,
    Policy,
    PolicySet,
    ReviewMode,
    TemplateScoring,
    quality_reasons,
)
from faceapi.services.collection_lookup import load_collection, resource
from faceapi.services.collections import check_engine
from faceapi.services.decision_pipeline import DecisionAudit, Finding, take_decision
from faceapi.services.face_crops import candidate_crops
from faceapi.services.liveness import NO_LIVENESS, LivenessGate, check_liveness, replayed
from faceapi.services.lockout import apply_result, audit_lock, subject_lock
from faceapi.services.ports import (
    BlobStore,
    FaceCollections,
    FaceEngine,
    ImageDecoder,
    UnitOfWork,
    remote_collections,
)
from faceapi.services.review import evidence_images

# Rekognition's largest SearchFacesByImage MaxFaces: a verify filters the matches by
# the claimed subject, so it asks for as many as the engine gives.
REMOTE_MAX_MATCHES = 4096


@dataclass(frozen=True)
class VerifyRequest:
    collection_id: str
    subject_id: str
    image: bytes
    policy: str
    # A liveness service's signed attestation (a JWT), for a policy that requires one.
    liveness_attestation: str | None = None


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
    # Only faces the policy would accept as faces count against max_faces: a detection
    # below its min_face_confidence (a poster's pattern, an ear) is not a second person
    # (bench/verify.py: such a detection refused a genuine login as multiple_faces).
    # When every detection is below it, the largest one is refused as low_confidence.
    counted = [f for f in faces if f.confidence >= policy.min_face_confidence]
    if len(counted) > policy.max_faces:
        return None, [Reason.MULTIPLE_FACES]
    probe = max(counted or faces, key=lambda f: f.bounding_box.width * f.bounding_box.height)
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
           policies: PolicySet, clock: Clock, blobs: BlobStore, decoder: ImageDecoder,
           request_id: str | None = None, liveness: LivenessGate = NO_LIVENESS) -> Decision:
    """Decide whether the image shows the claimed subject; raises Locked (423)."""
    policy = policy_for(policies, actor, req.policy, Operation.VERIFY)
    _check_claim(req, policy, actor=actor, engine=engine, uow=uow, clock=clock,
                 request_id=request_id)
    attested = check_liveness(policy, req.liveness_attestation, subject=req.subject_id,
                              gate=liveness, uow=uow, clock=clock)
    if attested.refused:
        return _liveness_refused(req, attested, policy=policy, actor=actor, engine=engine,
                                 uow=uow, blobs=blobs, clock=clock, request_id=request_id)
    image = decoder.decode(req.image)
    probe, finding = _compare_with_claimed_subject(req, image, policy, engine=engine, uow=uow,
                                                   now=clock.now())
    finding = replace(finding, liveness=attested)
    lockout = _LockoutCount(LockoutKey(req.collection_id, req.subject_id, policy.name),
                            policy, req, actor=actor, engine=engine, request_id=request_id)
    try:
        return take_decision(
            finding, _decision_audit(finding, probe, fuses(policy, engine)), policy=policy,
            actor=actor,
            engine=engine, uow=uow, blobs=blobs, clock=clock, request_id=request_id,
            evidence=lambda: {**evidence_images(image, probe),
                              **candidate_crops(blobs, req.collection_id, finding.candidates)},
            before=lockout.count, after=lockout.audit_new_lock)
    except AttestationReplayed:
        # Another request consumed the same token first (its decision committed while
        # this one compared): nothing of this one was written; it is a replay.
        return _liveness_refused(req, replayed(attested), policy=policy, actor=actor,
                                 engine=engine, uow=uow, blobs=blobs, clock=clock,
                                 request_id=request_id)


def _liveness_refused(req: VerifyRequest, check: LivenessCheck, *, policy: Policy,
                      actor: Actor, engine: FaceEngine, uow: UnitOfWork, blobs: BlobStore,
                      clock: Clock, request_id: str | None) -> Decision:
    """A `rejected` decision (`liveness_required`) made without looking at the image:
    no face compared, no lockout failure counted (it is not a failed match), audited."""
    finding = Finding(
        kind=DecisionKind.VERIFY, usable=False, reasons=(), threshold=policy.min_similarity,
        similarity=None, probe_sha256=hashlib.sha256(req.image).hexdigest(),
        collection_id=req.collection_id, subject_id=req.subject_id, liveness=check)
    return take_decision(finding, _decision_audit(finding, None, False), policy=policy,
                         actor=actor, engine=engine, uow=uow, blobs=blobs, clock=clock,
                         request_id=request_id, evidence=lambda: {})


class _LockoutCount:
    """The writes a verify adds to its decision's unit of work: the subject's failure
    count (refusing a guess that raced a concurrent lock), then the audit of a lock this
    decision caused."""

    def __init__(self, key: LockoutKey, policy: Policy, req: VerifyRequest, *, actor: Actor,
                 engine: FaceEngine, request_id: str | None) -> None:
        self.key, self.policy, self.req = key, policy, req
        self.actor, self.engine, self.request_id = actor, engine, request_id
        self.locked_now: LockoutState | None = None

    def count(self, uow: UnitOfWork, decision: Decision) -> None:
        now = _decided_at(decision)
        update = apply_result(uow, self.policy, self.key, decision.outcome, now)
        if update.was_locked and update.state is not None:
            # Locked by a concurrent request while this one was comparing: never
            # let a guess that raced the lock through, whatever its score.
            _audit_locked(uow, self.policy, self.req, actor=self.actor, engine=self.engine,
                          request_id=self.request_id)
            uow.commit()
            raise locked_error(update.state, now)
        self.locked_now = update.state if update.locked_now else None

    def audit_new_lock(self, uow: UnitOfWork, decision: Decision) -> None:
        if self.locked_now is not None:
            audit_lock(uow, self.locked_now, self.policy, actor=self.actor,
                       now=_decided_at(decision), request_id=self.request_id)


def _decided_at(decision: Decision) -> datetime:
    assert decision.created_at is not None  # the pipeline always sets it
    return decision.created_at


def _check_claim(req: VerifyRequest, policy: Policy, *, actor: Actor, engine: FaceEngine,
                 uow: UnitOfWork, clock: Clock, request_id: str | None) -> None:
    """Pre-checks, before any image work: the collection exists for this caller, binds
    the policy, and the claimed subject is not locked (a refusal is audited)."""
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


def _compare_with_claimed_subject(req: VerifyRequest, image: DecodedImage, policy: Policy, *,
                                  engine: FaceEngine, uow: UnitOfWork, now: datetime
                                  ) -> tuple[FaceDetail | None, Finding]:
    """Engine work: screen the probe, then score it against every enrolled face of the
    claimed subject (in our store, or in the engine's own collection). A subject whose
    consent has lapsed is compared with nothing, exactly like an unknown subject, so
    the answer tells nobody whether the subject is (still) enrolled."""
    remote = remote_collections(engine)
    probe: FaceDetail | None
    scored: list[Candidate] = []
    fused: float | None = None
    if remote is None:
        _, embedded = engine.embed_faces(image)
        found, reasons = screen_faces(embedded, policy)
        probe = found.detail if found is not None else None
        if found is not None:
            with uow:
                stored = ([] if _consent_lapsed(uow, req, now) else
                          uow.faces.list_for_subject(req.collection_id, req.subject_id))
            # Like with like: a face of another template version (a model change not
            # yet reindexed) is not compared; if that leaves nothing, say so rather
            # than answer no_match for a face that was never looked at.
            comparable = [f for f in stored
                          if f.embedding and f.template_version == engine.template_version]
            if stored and not comparable:
                reasons = [Reason.TEMPLATE_NOT_MIGRATED]
                probe = None
            scored = [Candidate(f.face_id, f.subject_id,
                                engine.similarity(found.embedding, f.vector()))
                      for f in comparable]
            if comparable and fuses(policy, engine):
                # The subject is scored as one fused template; each face keeps its own
                # score as a candidate, for reviewers and the matched face's id.
                fused = engine.fused_similarity(found.embedding,
                                                [f.vector() for f in comparable])
    else:
        probe, reasons, _ = remote_probe(engine, image, policy)
        if probe is not None:
            scored, reasons = _remote_scores(remote, uow, req, image, policy, now=now)
            probe = probe if not reasons else None
    scored.sort(key=lambda c: -c.similarity)
    best = scored[0].similarity if scored else None
    return probe, Finding(
        kind=DecisionKind.VERIFY, usable=probe is not None, reasons=tuple(reasons),
        threshold=policy.min_similarity,
        similarity=fused if fused is not None else best, probe_sha256=image.sha256,
        candidates=tuple(scored), collection_id=req.collection_id, subject_id=req.subject_id)


def fuses(policy: Policy, engine: FaceEngine) -> bool:
    """Whether a verify under `policy` scores the subject's faces as one fused template:
    only on an engine whose faces are in our store (a remote engine scores each stored
    face itself, so a verify on it is best-of whatever the policy says)."""
    return (policy.template_scoring is TemplateScoring.FUSED
            and remote_collections(engine) is None)


def _consent_lapsed(uow: UnitOfWork, req: VerifyRequest, now: datetime) -> bool:
    return consent_lapsed(uow.consents.current(req.collection_id, req.subject_id), now)


def _remote_scores(remote: FaceCollections, uow: UnitOfWork, req: VerifyRequest,
                   image: DecodedImage, policy: Policy, *,
                   now: datetime) -> tuple[list[Candidate], list[str]]:
    """The claimed subject's faces among a remote collection search's matches.

    The search runs even for an unknown subject, so the answer takes as long and costs
    the same as for an enrolled one (no enumeration by timing). Faces below the
    policy's floor are not returned by the engine: their similarity stays unknown,
    which decides exactly like a low score."""
    with uow:
        ours = {} if _consent_lapsed(uow, req, now) else {
            engine_id: face_id for face_id, engine_id
            in uow.faces.subject_face_ids(req.collection_id, req.subject_id) if engine_id}
    try:
        found = remote.search_faces_by_image(req.collection_id, image,
                                             threshold=remote_floor(policy),
                                             max_faces=REMOTE_MAX_MATCHES)
    except NoFaceInSource:
        return [], [Reason.NO_FACE]
    return [Candidate(ours[m.face.face_id], req.subject_id, m.similarity)
            for m in found.matches if m.face.face_id in ours], []


def _decision_audit(finding: Finding, probe: FaceDetail | None,
                    fused: bool) -> DecisionAudit:
    similarity = finding.similarity
    return DecisionAudit(
        action=Action.VERIFY_DECISION,
        resource=resource(finding.collection_id or "", finding.subject_id),
        subject_id=finding.subject_id,
        scores={"similarity": None if similarity is None else round(similarity, 4),
                "threshold": finding.threshold,
                "compared_faces": len(finding.candidates),
                "face_confidence": None if probe is None else round(probe.confidence, 2)},
        input_digests=(finding.probe_sha256,) if finding.probe_sha256 else (),
        # How the similarity was reached, when faces were compared.
        details={"collection_id": finding.collection_id or "",
                 **({"template_scoring": (TemplateScoring.FUSED if fused
                                          else TemplateScoring.BEST_OF).value}
                    if finding.candidates else {})})


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
                         blobs: BlobStore, decoder: ImageDecoder,
                         request_id: str | None = None) -> Decision:
    """Decide whether two images show the same person, under a compare policy (e.g.
    dataset_cleaning: scores in the review band wait for a reviewer)."""
    policy = policy_for(policies, actor, req.policy, Operation.COMPARE)
    source = decoder.decode(req.source)
    target = decoder.decode(req.target)
    source_face, reasons = screen_faces(engine.embed_faces(source)[1], policy)
    target_face, target_reasons = screen_faces(engine.embed_faces(target)[1], policy)
    reasons += [f"target_{r}" for r in target_reasons]
    similarity: float | None = None
    if source_face is not None and target_face is not None:
        similarity = engine.similarity(source_face.embedding, target_face.embedding)
    finding = Finding(kind=DecisionKind.COMPARE, usable=similarity is not None,
                      reasons=tuple(reasons), threshold=policy.min_similarity,
                      similarity=similarity, probe_sha256=source.sha256)
    audit = DecisionAudit(
        action=Action.FACE_COMPARE, resource="compare",
        scores={"similarity": None if similarity is None else round(similarity, 4),
                "threshold": policy.min_similarity},
        input_digests=(source.sha256, target.sha256))
    return take_decision(
        finding, audit, policy=policy, actor=actor, engine=engine, uow=uow, blobs=blobs,
        clock=clock, request_id=request_id, evidence=lambda: {
            **evidence_images(source, source_face.detail if source_face else None),
            **evidence_images(target, target_face.detail if target_face else None,
                              prefix="target")})
