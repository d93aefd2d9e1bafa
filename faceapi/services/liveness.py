"""Use case step: judge a liveness attestation for a decision whose policy requires it.

Runs before any image work: without a valid attestation the decision is `rejected`
with `liveness_required` (and a precise reason), no face is compared and no lockout
failure is counted (a missing attestation is not a failed face match; it tells an
attacker nothing about the subject's face). A valid one is consumed by the decision
that uses it: its `jti` hash is stored on the decision row, whose unique index makes a
second use impossible even for two requests racing with one token.

What the attestation's `sub` must be (decided here, documented in docs/verify.md):
- verify: the claimed subject id, so a token minted for one account cannot log into
  another;
- search by image: `search:<collection_id>`, so a search token is no verify token
  (subject ids cannot contain `:`) and is good for one collection only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from faceapi.domain.clock import Clock
from faceapi.domain.liveness import (
    NOT_REQUIRED,
    Attestation,
    AttestationRejected,
    Freshness,
    LivenessCheck,
    LivenessFailure,
    LivenessStatus,
    LivenessUnsupported,
    claims_problem,
)
from faceapi.domain.policies import Policy
from faceapi.services.ports import LivenessVerifier, UnitOfWork


class _NoIssuers:
    """The verifier when FACEAPI_LIVENESS_ISSUERS is not set: nobody is trusted."""

    def verify(self, token: str) -> Attestation:
        raise AttestationRejected(LivenessFailure.UNTRUSTED_ISSUER, "no issuer configured")


@dataclass(frozen=True)
class LivenessGate:
    """What judging an attestation needs besides the policy: the signature verifier
    and the configured freshness."""

    verifier: LivenessVerifier
    freshness: Freshness = field(default_factory=Freshness)


NO_LIVENESS = LivenessGate(_NoIssuers())


def search_subject(collection_id: str) -> str:
    """The `sub` a search-by-image attestation must carry."""
    return f"search:{collection_id}"


def check_liveness(policy: Policy, token: str | None, *, subject: str, gate: LivenessGate,
                   uow: UnitOfWork, clock: Clock) -> LivenessCheck:
    """The liveness part of a decision under `policy` for `subject`: not required,
    attested (to be consumed by the decision), or failed with its reason."""
    if not policy.liveness.required:
        return NOT_REQUIRED
    if not token:
        return _failed(LivenessFailure.MISSING)
    try:
        attestation = gate.verifier.verify(token)
    except AttestationRejected as exc:
        return _failed(exc.failure)
    digest = attestation.jti_sha256
    problem = claims_problem(attestation, trusted=policy.liveness.issuers, subject=subject,
                             now=clock.now(), freshness=gate.freshness)
    if problem is None:
        with uow:
            if uow.decisions.liveness_jti_used(digest):
                problem = LivenessFailure.REPLAYED
    if problem is not None:
        return _failed(problem, issuer=attestation.issuer, jti_sha256=digest)
    return LivenessCheck(LivenessStatus.ATTESTED, issuer=attestation.issuer,
                         jti_sha256=digest)


def replayed(check: LivenessCheck) -> LivenessCheck:
    """The check of a decision that lost the race for its token to another decision."""
    return _failed(LivenessFailure.REPLAYED, issuer=check.issuer, jti_sha256=check.jti_sha256)


def refuse_unattestable(policy: Policy, route: str) -> None:
    """Refuse (403 `liveness_unsupported`, audited as a refusal) a route that has no way
    to carry a live capture's attestation, under a policy that requires one."""
    if policy.liveness.required:
        raise LivenessUnsupported(
            f"policy {policy.name} requires a liveness attestation, which {route} cannot "
            "carry; use POST /v1/verify or POST /v1/collections/{id}/search with "
            "`liveness_attestation`",
            details={"policy": policy.name, "refusal": "liveness_unsupported"})


def _failed(failure: LivenessFailure, *, issuer: str | None = None,
            jti_sha256: str | None = None) -> LivenessCheck:
    return LivenessCheck(LivenessStatus.FAILED, issuer=issuer, jti_sha256=jti_sha256,
                         failure=failure)
