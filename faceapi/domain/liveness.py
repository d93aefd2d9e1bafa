"""Liveness attestations: what a policy that requires liveness accepts, as plain rules.

faceapi does not detect presentation attacks (a printed photo, a screen, a mask)
itself. A policy may require that an external liveness service vouched for the
capture: the request then carries that service's signed attestation (a JWT; the
signature is checked by faceapi/adapters/liveness.py against the issuer's public key
from configuration, never from the request). This module holds what is judged after
the signature: which issuer the policy trusts, the subject the attestation names, how
old it may be, and the reasons a decision gives when it is not good enough.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from faceapi.domain.access import Forbidden


class LivenessStatus(StrEnum):
    """What a decision records about liveness."""

    NOT_REQUIRED = "not_required"  # the policy does not require it (nothing was checked)
    ATTESTED = "attested"  # a valid attestation was presented and consumed
    FAILED = "failed"  # required, and missing or not valid: the decision is rejected


class LivenessFailure(StrEnum):
    """The precise reason beside `liveness_required` when an attestation is refused."""

    MISSING = "liveness_missing"
    INVALID = "liveness_invalid"  # malformed, bad signature, forbidden algorithm, claims
    UNTRUSTED_ISSUER = "liveness_untrusted_issuer"
    EXPIRED = "liveness_expired"  # issued too long ago, or past its own `exp`
    ISSUED_IN_FUTURE = "liveness_issued_in_future"
    WRONG_SUBJECT = "liveness_wrong_subject"
    REPLAYED = "liveness_replayed"  # its `jti` was already used by a decision


# The reason every refused attestation gives (with a LivenessFailure after it).
LIVENESS_REQUIRED = "liveness_required"


class AttestationRejected(Exception):
    """The verifier adapter refused a token before its claims could be judged."""

    def __init__(self, failure: LivenessFailure, detail: str = "") -> None:
        super().__init__(f"{failure.value}: {detail}" if detail else failure.value)
        self.failure = failure
        self.issuer: str | None = None


class AttestationReplayed(Exception):
    """Raised by the decisions repository when a decision would consume an attestation
    that another decision consumed first (two requests racing with one token)."""


class LivenessUnsupported(Forbidden):
    """A route with no way to carry a live capture's attestation (the Rekognition
    emulator, a search by a stored face) under a policy that requires liveness."""

    code = "liveness_unsupported"


@dataclass(frozen=True)
class Attestation:
    """The verified claims of an attestation (signature already checked)."""

    issuer: str
    subject: str
    jti: str
    issued_at: datetime
    expires_at: datetime | None = None
    not_before: datetime | None = None

    @property
    def jti_sha256(self) -> str:
        """What decisions store instead of the token: the issuer and its token id, hashed
        (a `jti` is unique per issuer, so the pair is what may be used once)."""
        return jti_digest(self.issuer, self.jti)


def jti_digest(issuer: str, jti: str) -> str:
    return hashlib.sha256(f"{issuer}\x00{jti}".encode()).hexdigest()


@dataclass(frozen=True)
class LivenessCheck:
    """The liveness part of one decision."""

    status: LivenessStatus = LivenessStatus.NOT_REQUIRED
    issuer: str | None = None
    jti_sha256: str | None = None
    failure: LivenessFailure | None = None

    @property
    def refused(self) -> bool:
        return self.status is LivenessStatus.FAILED

    @property
    def reasons(self) -> tuple[str, ...]:
        return (LIVENESS_REQUIRED, self.failure.value) if self.failure is not None else ()


NOT_REQUIRED = LivenessCheck()


@dataclass(frozen=True)
class Freshness:
    """How old an attestation may be (FACEAPI_LIVENESS_MAX_AGE_SECONDS) and how far the
    issuer's clock may run ahead of ours (FACEAPI_LIVENESS_CLOCK_SKEW_SECONDS)."""

    max_age_seconds: int = 120
    clock_skew_seconds: int = 10


def claims_problem(attestation: Attestation, *, trusted: tuple[str, ...], subject: str,
                   now: datetime, freshness: Freshness) -> LivenessFailure | None:
    """Why verified claims are not good enough for this check (None: they are)."""
    if attestation.issuer not in trusted:
        return LivenessFailure.UNTRUSTED_ISSUER
    skew = timedelta(seconds=freshness.clock_skew_seconds)
    if attestation.issued_at > now + skew or \
            (attestation.not_before is not None and attestation.not_before > now + skew):
        return LivenessFailure.ISSUED_IN_FUTURE
    if now - attestation.issued_at > timedelta(seconds=freshness.max_age_seconds) + skew or \
            (attestation.expires_at is not None and attestation.expires_at + skew <= now):
        return LivenessFailure.EXPIRED
    if attestation.subject != subject:
        return LivenessFailure.WRONG_SUBJECT
    return None
