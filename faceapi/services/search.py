"""Use case: SearchFacesByImage under a policy (1:N identification or tagging).

The largest face of the probe image is searched in the collection's in-process index.
A caller may ask for a higher threshold or fewer matches than the policy's, never a
lower threshold or more. Under a consequential policy a candidate list is never shown
to the caller: the answer is `pending_review`, and the confirmed match (if reviewers
agree) is read later at GET /v1/decisions/{id}.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace

from faceapi.blobs import BlobStore
from faceapi.config import Settings
from faceapi.domain.audit import Action, Actor, AuditEvent
from faceapi.domain.clock import Clock
from faceapi.domain.collections import StoredFace
from faceapi.domain.decisions import (
    Candidate,
    Decision,
    DecisionKind,
    Outcome,
    Reason,
    decide,
    rejected_for,
)
from faceapi.domain.errors import NoFaceInSource
from faceapi.domain.faces import FaceDetail
from faceapi.domain.images import DecodedImage
from faceapi.domain.policies import Operation, PolicySet
from faceapi.engines.base import FaceCollections, FaceEngine, remote_collections
from faceapi.images import decode_image
from faceapi.search.index import SearchIndex
from faceapi.services.collections import check_engine, load_collection, resource
from faceapi.services.face_crops import candidate_crops
from faceapi.services.ports import UnitOfWork
from faceapi.services.review import discard_evidence, evidence_images, record_decision
from faceapi.services.verify import policy_for, remote_probe, screen_faces


@dataclass(frozen=True)
class SearchRequest:
    collection_id: str
    image: bytes
    policy: str
    threshold: float | None = None  # default: the policy's min_similarity
    max_faces: int | None = None  # default: the policy's max_matches


@dataclass(frozen=True)
class FaceMatch:
    similarity: float
    face: StoredFace


@dataclass(frozen=True)
class SearchResult:
    decision: Decision
    searched_face: FaceDetail | None
    face_matches: tuple[FaceMatch, ...]  # empty unless the decision is a final match
    attributes: tuple[str, ...]  # the policy's allowed attributes of the searched face
    model_version: str


def search(req: SearchRequest, *, actor: Actor, engine: FaceEngine, uow: UnitOfWork,
           index: SearchIndex, policies: PolicySet, clock: Clock, blobs: BlobStore,
           settings: Settings, request_id: str | None = None) -> SearchResult:
    """Search the collection for the probe's largest face and decide under the policy."""
    policy = policy_for(policies, actor, req.policy, Operation.SEARCH)
    threshold = max(policy.min_similarity, req.threshold or 0.0)
    max_faces = min(policy.max_matches, req.max_faces or policy.max_matches)
    with uow:
        collection = load_collection(uow, actor, req.collection_id)
    check_engine(collection, engine)

    image = decode_image(req.image, settings)
    remote = remote_collections(engine)
    probe: FaceDetail | None
    candidates: tuple[Candidate, ...] = ()
    if remote is None:
        _, embedded = engine.embed_faces(image)
        found, reasons = screen_faces(embedded, policy)
        probe = found.detail if found is not None else None
        face_count = len(embedded)
        if found is not None:
            hits = index.search(req.collection_id, found.embedding, threshold=threshold,
                                max_faces=max_faces)
            candidates = tuple(Candidate(h.face_id, h.subject_id, h.similarity)
                               for h in hits)
    else:
        probe, reasons, face_count = remote_probe(engine, image, policy)
        if probe is not None:
            candidates, reasons = _remote_candidates(remote, uow, req.collection_id, image,
                                                     threshold=threshold,
                                                     max_faces=max_faces)
            probe = probe if not reasons else None
    # The decision is taken at the threshold actually used (the caller may raise it).
    effective = replace(policy, min_similarity=threshold) if threshold != policy.min_similarity \
        else policy
    best = candidates[0].similarity if candidates else None
    proposal = decide(effective, best) if probe is not None else rejected_for(reasons)

    now = clock.now()
    decision = Decision(
        id=str(uuid.uuid4()), kind=DecisionKind.SEARCH, outcome=proposal.outcome,
        reasons=proposal.reasons, policy_name=policy.name, policy_version=policy.version,
        threshold=threshold, collection_id=req.collection_id, subject_id=None,
        similarity=best, candidates=candidates,
        matched_face_id=candidates[0].face_id if proposal.outcome is Outcome.MATCH else None,
        review_id=str(uuid.uuid4()) if proposal.needs_review else None,
        requester_key_id=actor.key_id, requester_role=actor.role, probe_sha256=image.sha256,
        request_id=request_id, created_at=now,
        decided_at=None if proposal.needs_review else now,
        engine=engine.name, model_version=engine.model_version)
    matches: list[FaceMatch] = []
    try:
        with uow:
            decision = record_decision(uow, blobs, decision, AuditEvent(
                action=Action.SEARCH_DECISION, outcome=decision.outcome.value, actor=actor,
                resource=resource(req.collection_id), policy_name=policy.name,
                policy_version=policy.version, engine=engine.name,
                model_version=engine.model_version,
                scores={"best_similarity": None if best is None else round(best, 4),
                        "threshold": threshold, "candidate_count": len(candidates),
                        "face_count": face_count},
                input_digests=(image.sha256,), request_id=request_id,
                reason=",".join(decision.reasons)[:256],
                details={"decision_id": decision.id,
                         **({"review_id": decision.review_id} if decision.review_id else {})}),
                policy=policy, now=now, actor=actor,
                evidence=lambda: {**evidence_images(image, probe),
                                  **candidate_crops(blobs, req.collection_id, candidates)})
            if decision.outcome is Outcome.MATCH:
                for candidate in candidates:
                    face = uow.faces.get(req.collection_id, candidate.face_id)
                    if face is not None:  # erased since the index was read
                        matches.append(FaceMatch(candidate.similarity, face))
            uow.commit()
    except BaseException:
        discard_evidence(blobs, decision.review_id)
        raise
    return SearchResult(decision=decision, searched_face=probe,
                        face_matches=tuple(matches), attributes=policy.attributes,
                        model_version=engine.model_version)


def _remote_candidates(remote: FaceCollections, uow: UnitOfWork, collection_id: str,
                       image: DecodedImage, *, threshold: float, max_faces: int
                       ) -> tuple[tuple[Candidate, ...], list[str]]:
    """SearchFacesByImage in the engine's collection, its face ids mapped to ours (a
    face the engine still holds but our store no longer does is left out)."""
    try:
        found = remote.search_faces_by_image(collection_id, image, threshold=threshold,
                                             max_faces=max_faces)
    except NoFaceInSource:
        return (), [Reason.NO_FACE]
    with uow:
        ours = uow.faces.by_engine_face_ids(collection_id,
                                            [m.face.face_id for m in found.matches])
    hits = sorted(((ours[m.face.face_id], m.similarity) for m in found.matches
                   if m.face.face_id in ours), key=lambda hit: -hit[1])
    return tuple(Candidate(face.face_id, face.subject_id, similarity)
                 for face, similarity in hits[:max_faces]), []
