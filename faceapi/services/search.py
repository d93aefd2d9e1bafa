"""Use case: SearchFacesByImage under a policy (1:N identification or tagging).

The largest face of the probe image is searched in the collection's in-process index.
A caller may ask for a higher threshold or fewer matches than the policy's, never a
lower threshold or more. Under a consequential policy a candidate list is never shown
to the caller: the answer is `pending_review`, and the confirmed match (if reviewers
agree) is read later at GET /v1/decisions/{id}.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from faceapi.domain.access import require_policy_access
from faceapi.domain.audit import Action, Actor
from faceapi.domain.clock import Clock
from faceapi.domain.collections import (
    Collection,
    PolicyNotBound,
    StoredFace,
    consent_expired_error,
    require_bound,
)
from faceapi.domain.decisions import (
    Candidate,
    Decision,
    DecisionKind,
    Outcome,
    Reason,
)
from faceapi.domain.errors import InvalidParameter, NoFaceInSource, NotFound
from faceapi.domain.faces import FaceDetail
from faceapi.domain.images import DecodedImage
from faceapi.domain.liveness import NOT_REQUIRED, AttestationReplayed, LivenessCheck
from faceapi.domain.policies import (
    Operation,
    Policy,
    PolicySet,
    quality_reasons,
    strictest_bound,
)
from faceapi.services.collection_lookup import load_collection, resource
from faceapi.services.collections import check_engine
from faceapi.services.decision_pipeline import DecisionAudit, Finding, take_decision
from faceapi.services.face_crops import candidate_crops
from faceapi.services.liveness import (
    NO_LIVENESS,
    LivenessGate,
    check_liveness,
    refuse_unattestable,
    replayed,
    search_subject,
)
from faceapi.services.lockout import locked_subjects
from faceapi.services.ports import (
    BlobStore,
    FaceCollections,
    FaceEngine,
    ImageDecoder,
    SearchIndex,
    UnitOfWork,
    remote_collections,
)
from faceapi.services.review import evidence_images
from faceapi.services.verify import policy_for, remote_probe, screen_faces


@dataclass(frozen=True)
class SearchRequest:
    collection_id: str
    image: bytes
    # None: the collection's bound search policy (the emulator's SearchFacesByImage,
    # whose callers name no policy), as search_by_face does.
    policy: str | None
    threshold: float | None = None  # default: the policy's min_similarity
    max_faces: int | None = None  # default: the policy's max_matches
    # A liveness service's signed attestation (a JWT), for a policy that requires one;
    # its `sub` is search_subject(collection_id) (services/liveness.py).
    liveness_attestation: str | None = None


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
    searched_face_id: str | None = None  # search by face: the probe face
    # REST `all_faces` (search_every_face): every face's result, largest first; this
    # result is the first of them.
    face_searches: tuple[SearchResult, ...] = ()
    # Faces of the collection at another template version than the probe (a model
    # change whose reindex has not reached them): this search could not find them.
    faces_not_migrated: int = 0


def search(req: SearchRequest, *, actor: Actor, engine: FaceEngine, uow: UnitOfWork,
           index: SearchIndex, policies: PolicySet, clock: Clock, blobs: BlobStore,
           decoder: ImageDecoder, request_id: str | None = None,
           liveness: LivenessGate = NO_LIVENESS) -> SearchResult:
    """Search the collection for the probe's largest face and decide under the policy,
    which the collection must bind (403 `policy_not_bound` otherwise)."""
    named = (policy_for(policies, actor, req.policy, Operation.SEARCH)
             if req.policy is not None else None)
    policy = _check_collection(req.collection_id, named, policies, actor=actor,
                               engine=engine, uow=uow)
    if named is None:
        # A search naming no policy is the emulator's SearchFacesByImage: Rekognition's
        # request has no field for an attestation.
        refuse_unattestable(policy, "the Rekognition-compatible SearchFacesByImage")
    threshold = max(policy.min_similarity, req.threshold or 0.0)
    max_faces = min(policy.max_matches, req.max_faces or policy.max_matches)
    attested = check_liveness(policy, req.liveness_attestation,
                              subject=search_subject(req.collection_id), gate=liveness,
                              uow=uow, clock=clock)
    if attested.refused:
        return _liveness_refused(req, attested, policy=policy, actor=actor, engine=engine,
                                 uow=uow, clock=clock, blobs=blobs, request_id=request_id,
                                 threshold=threshold, max_faces=max_faces)
    image = decoder.decode(req.image)
    probe, found = _search_probe(req.collection_id, image, policy, engine=engine, uow=uow,
                                 index=index, threshold=threshold, max_faces=max_faces)
    try:
        decision, matches = _decide(
            found, policy=policy, actor=actor, engine=engine, uow=uow, clock=clock,
            blobs=blobs, request_id=request_id, liveness=attested,
            evidence=lambda found: {**evidence_images(image, probe),
                                    **candidate_crops(blobs, req.collection_id, found)})
    except AttestationReplayed:
        # Another request consumed the same token first; nothing of this one was written.
        return _liveness_refused(req, replayed(attested), policy=policy, actor=actor,
                                 engine=engine, uow=uow, clock=clock, blobs=blobs,
                                 request_id=request_id, threshold=threshold,
                                 max_faces=max_faces)
    return SearchResult(decision=decision, searched_face=probe, face_matches=matches,
                        attributes=policy.attributes, model_version=engine.model_version,
                        faces_not_migrated=int(found.scores.get("faces_not_migrated") or 0))


def search_every_face(req: SearchRequest, *, actor: Actor, engine: FaceEngine,
                      uow: UnitOfWork, index: SearchIndex, policies: PolicySet, clock: Clock,
                      blobs: BlobStore, decoder: ImageDecoder,
                      request_id: str | None = None) -> list[SearchResult]:
    """Photo tagging of a group photo: every face of the image is searched, each with
    its own result and its own decision (largest face first), under a policy that is
    not consequential (a crowd photo must not open one human review per face) and
    needs no liveness attestation (one token is consumed by one decision). Local
    engine only: a remote engine searches the largest face of an image only. More faces
    than the policy's `max_faces` give one `rejected` decision (`multiple_faces`), as
    the single-face search does."""
    named = policy_for(policies, actor, req.policy or "", Operation.SEARCH)
    policy = _check_collection(req.collection_id, named, policies, actor=actor,
                               engine=engine, uow=uow)
    if policy.consequential or policy.liveness.required:
        raise InvalidParameter(
            f"all_faces: policy {policy.name} is consequential or requires liveness; every "
            "face would be its own reviewed decision: search the faces one by one",
            details={"field": "all_faces", "policy": policy.name})
    if remote_collections(engine) is not None:
        raise InvalidParameter("all_faces: this engine searches the largest face only",
                               details={"field": "all_faces"})
    threshold = max(policy.min_similarity, req.threshold or 0.0)
    max_faces = min(policy.max_matches, req.max_faces or policy.max_matches)
    image = decoder.decode(req.image)
    _, embedded = engine.embed_faces(image)
    if not embedded or len(embedded) > policy.max_faces:
        # Nothing to search face by face: the single search's refusal, decided once.
        return [search(req, actor=actor, engine=engine, uow=uow, index=index,
                       policies=policies, clock=clock, blobs=blobs, decoder=decoder,
                       request_id=request_id)]
    ordered = sorted(embedded, key=lambda f: -(f.detail.bounding_box.width
                                               * f.detail.bounding_box.height))
    results = []
    for position, face in enumerate(ordered):
        reasons = tuple(quality_reasons(face.detail, policy))
        candidates: tuple[Candidate, ...] = ()
        if not reasons:
            hits = index.search(req.collection_id, face.embedding, threshold=threshold,
                                max_faces=max_faces + LOCKED_HEADROOM)
            candidates = tuple(Candidate(h.face_id, h.subject_id, h.similarity)
                               for h in hits)
        found = _Probe(collection_id=req.collection_id, sha256=image.sha256,
                       candidates=candidates, usable=not reasons, reasons=reasons,
                       threshold=threshold, max_faces=max_faces,
                       scores={"face_count": len(embedded), "face_index": position},
                       details={"all_faces": "true"})
        decision, matches = _decide(found, policy=policy, actor=actor, engine=engine,
                                    uow=uow, clock=clock, blobs=blobs, request_id=request_id,
                                    evidence=lambda _found: {})
        results.append(SearchResult(decision=decision,
                                    searched_face=None if reasons else face.detail,
                                    face_matches=matches, attributes=policy.attributes,
                                    model_version=engine.model_version))
    return results


def _liveness_refused(req: SearchRequest, check: LivenessCheck, *, policy: Policy,
                      actor: Actor, engine: FaceEngine, uow: UnitOfWork, clock: Clock,
                      blobs: BlobStore, request_id: str | None, threshold: float,
                      max_faces: int) -> SearchResult:
    """A `rejected` search (`liveness_required`) decided without looking at the image."""
    found = _Probe(collection_id=req.collection_id,
                   sha256=hashlib.sha256(req.image).hexdigest(), candidates=(),
                   usable=False, reasons=(), threshold=threshold, max_faces=max_faces,
                   scores={}, details={})
    decision, _ = _decide(found, policy=policy, actor=actor, engine=engine, uow=uow,
                          clock=clock, blobs=blobs, request_id=request_id, liveness=check,
                          evidence=lambda _found: {})
    return SearchResult(decision=decision, searched_face=None, face_matches=(),
                        attributes=policy.attributes, model_version=engine.model_version)


def _check_collection(collection_id: str, policy: Policy | None, policies: PolicySet, *,
                      actor: Actor, engine: FaceEngine, uow: UnitOfWork) -> Policy:
    """Pre-checks, before any image work: the collection exists for this caller, binds
    the policy (or, when none is named, has a bound search policy) and was built by this
    engine. Returns the policy the search decides under."""
    with uow:
        collection = load_collection(uow, actor, collection_id)
        if policy is None:
            policy = bound_search_policy(collection, policies, actor)
        else:
            require_bound(collection, policy.name)
    check_engine(collection, engine)
    return policy


def _search_probe(collection_id: str, image: DecodedImage, policy: Policy, *,
                  engine: FaceEngine, uow: UnitOfWork, index: SearchIndex, threshold: float,
                  max_faces: int) -> tuple[FaceDetail | None, _Probe]:
    """Engine work: screen the probe's largest face, then search for it in our index
    (or in the engine's own collection)."""
    remote = remote_collections(engine)
    probe: FaceDetail | None
    candidates: tuple[Candidate, ...] = ()
    if remote is None:
        _, embedded = engine.embed_faces(image)
        found, reasons = screen_faces(embedded, policy)
        probe = found.detail if found is not None else None
        face_count = len(embedded)
        if found is not None:
            # Like with like: only faces of the probe's template version are compared.
            hits = index.search(collection_id, found.embedding, threshold=threshold,
                                max_faces=max_faces + LOCKED_HEADROOM,
                                template_version=engine.template_version)
            candidates = tuple(Candidate(h.face_id, h.subject_id, h.similarity)
                               for h in hits)
        with uow:
            counts = uow.faces.template_counts(collection_id)
        not_compared = sum(n for v, n in counts.items() if v != engine.template_version)
    else:
        not_compared = 0
        probe, reasons, face_count = remote_probe(engine, image, policy)
        if probe is not None:
            candidates, reasons = _remote_candidates(remote, uow, collection_id, image,
                                                     threshold=threshold,
                                                     max_faces=max_faces + LOCKED_HEADROOM)
            probe = probe if not reasons else None
    return probe, _Probe(collection_id=collection_id, sha256=image.sha256,
                         candidates=candidates, usable=probe is not None,
                         reasons=tuple(reasons), threshold=threshold, max_faces=max_faces,
                         # Faces of another template version, awaiting a reindex: a
                         # search cannot find them (docs/collections.md).
                         scores={"face_count": face_count,
                                 "faces_not_migrated": not_compared}, details={})


# Searches ask the index for this many candidates more than they may return, so that
# leaving out locked subjects rarely shortens the answer.
LOCKED_HEADROOM = 16


@dataclass(frozen=True)
class _Probe:
    """What a search found, before the policy decides."""

    collection_id: str
    sha256: str
    candidates: tuple[Candidate, ...]  # best first; may hold locked subjects
    usable: bool  # a probe face passed the policy's gates
    reasons: tuple[str, ...]  # why not, when not usable
    threshold: float
    max_faces: int
    scores: dict[str, float | int | bool | None]
    details: dict[str, str]


def _decide(found: _Probe, *, policy: Policy, actor: Actor, engine: FaceEngine,
            uow: UnitOfWork, clock: Clock, blobs: BlobStore, request_id: str | None,
            evidence: Callable[[tuple[Candidate, ...]], dict[str, bytes]],
            liveness: LivenessCheck = NOT_REQUIRED
            ) -> tuple[Decision, tuple[FaceMatch, ...]]:
    """Leave out locked subjects and subjects whose consent has lapsed, then the
    decision pipeline; the matches only on a final match."""
    candidates = _usable_candidates(found, uow=uow, clock=clock)[:found.max_faces]
    best = candidates[0].similarity if candidates else None
    finding = Finding(kind=DecisionKind.SEARCH, usable=found.usable, reasons=found.reasons,
                      threshold=found.threshold, similarity=best, probe_sha256=found.sha256,
                      candidates=candidates, collection_id=found.collection_id,
                      liveness=liveness)
    audit = DecisionAudit(
        action=Action.SEARCH_DECISION, resource=resource(found.collection_id),
        scores={"best_similarity": None if best is None else round(best, 4),
                "threshold": found.threshold, "candidate_count": len(candidates),
                **found.scores},
        input_digests=(found.sha256,), details=found.details)
    matches: list[FaceMatch] = []

    def read_matched_faces(uow: UnitOfWork, decision: Decision) -> None:
        if decision.outcome is Outcome.MATCH:
            for candidate in candidates:
                face = uow.faces.get(found.collection_id, candidate.face_id)
                if face is not None:  # erased since the index was read
                    matches.append(FaceMatch(candidate.similarity, face))

    decision = take_decision(finding, audit, policy=policy, actor=actor, engine=engine,
                             uow=uow, blobs=blobs, clock=clock, request_id=request_id,
                             evidence=lambda: evidence(candidates), after=read_matched_faces)
    return decision, tuple(matches)


def _usable_candidates(found: _Probe, *, uow: UnitOfWork,
                       clock: Clock) -> tuple[Candidate, ...]:
    """A locked subject is not found by any search, under any policy, until it unlocks:
    otherwise a search would walk around the verify lockout. A subject whose consent
    has lapsed is found by none from that moment, before retention erases it."""
    if not found.candidates:
        return ()
    now = clock.now()
    subject_ids = sorted({c.subject_id for c in found.candidates})
    with uow:
        left_out = locked_subjects(uow, found.collection_id, subject_ids, now)
        left_out |= uow.consents.lapsed_among(found.collection_id, subject_ids, now)
    return tuple(c for c in found.candidates if c.subject_id not in left_out)


@dataclass(frozen=True)
class SearchByFaceRequest:
    """Rekognition's SearchFaces: a face already in the collection is the probe."""

    collection_id: str
    face_id: str
    threshold: float | None = None
    max_faces: int | None = None
    # A search policy the collection binds (REST); None: the collection's bound search
    # policy, the strictest when several are (the emulator's SearchFaces).
    policy: str | None = None


def search_by_face(req: SearchByFaceRequest, *, actor: Actor, engine: FaceEngine,
                   uow: UnitOfWork, index: SearchIndex, policies: PolicySet, clock: Clock,
                   blobs: BlobStore, request_id: str | None = None) -> SearchResult:
    """Search the collection for faces like one of its own, under the named policy
    (which the collection must bind) or else the collection's bound search policy (the
    strictest, when several are bound): its threshold, match limit, lockout filter and
    human review apply as to any search. A stored face is no live capture: under a
    policy that requires liveness the search is refused."""
    named = (policy_for(policies, actor, req.policy, Operation.SEARCH)
             if req.policy is not None else None)
    with uow:
        collection = load_collection(uow, actor, req.collection_id)
        probe = uow.faces.get(req.collection_id, req.face_id)
        lapsed = probe is not None and bool(uow.consents.lapsed_among(
            req.collection_id, [probe.subject_id], clock.now()))
    if named is not None:
        require_bound(collection, named.name)
    policy = named or bound_search_policy(collection, policies, actor)
    refuse_unattestable(policy, "a search by a stored face")
    if probe is None or not probe.embedding:
        raise NotFound(f"face {req.face_id!r} not found in collection "
                       f"{req.collection_id!r}", details={"collection_id": req.collection_id})
    if lapsed:
        # The face of a subject whose consent has lapsed is no probe either.
        raise consent_expired_error(req.collection_id, probe.subject_id)
    threshold = max(policy.min_similarity, req.threshold or 0.0)
    max_faces = min(policy.max_matches, req.max_faces or policy.max_matches)
    # One more than asked: the probe finds itself first and is left out, as in
    # Rekognition.
    hits = [h for h in index.search(req.collection_id, probe.vector(), threshold=threshold,
                                    max_faces=max_faces + 1 + LOCKED_HEADROOM,
                                    template_version=probe.template_version)
            if h.face_id != req.face_id]
    decision, matches = _decide(
        _Probe(collection_id=req.collection_id, sha256=probe.image_sha256,
               candidates=tuple(Candidate(h.face_id, h.subject_id, h.similarity)
                                for h in hits),
               usable=True, reasons=(), threshold=threshold, max_faces=max_faces,
               scores={}, details={"searched_face_id": req.face_id}),
        policy=policy, actor=actor, engine=engine, uow=uow, clock=clock, blobs=blobs,
        request_id=request_id,
        evidence=lambda found: candidate_crops(blobs, req.collection_id,
                                               (Candidate(probe.face_id, probe.subject_id,
                                                          100.0), *found)))
    return SearchResult(decision=decision, searched_face=None, face_matches=matches,
                        attributes=(), model_version=collection.model_version,
                        searched_face_id=req.face_id)


def bound_search_policy(collection: Collection, policies: PolicySet, actor: Actor) -> Policy:
    """The policy a search that names none decides under: the collection's bound search
    policy, the strictest when several are bound; refused when none is."""
    policy = strictest_bound(collection.policies, policies, Operation.SEARCH)
    if policy is None:
        raise PolicyNotBound(
            f"collection {collection.collection_id!r} is bound to no search policy",
            details={"collection_id": collection.collection_id,
                     "refusal": "policy_not_bound", "bound": list(collection.policies)})
    require_policy_access(actor, policy.name)
    return policy


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
