"""Policies: the rule for one use case (verify, search or compare), as plain values.

A policy is read from `policies/<name>.yaml` by faceapi/adapters/policy_files.py (YAML +
marshmallow, which the domain may not import); this module holds the model, the
invariants every policy must keep, the canonical form and its version, and the
quality gate. The invariants are checked here as well as in the schema so that a
Policy built in code can never be consequential without human review either.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from faceapi.domain.errors import FaceApiError
from faceapi.domain.faces import FaceDetail


class Operation(StrEnum):
    VERIFY = "verify"  # 1:1 against a claimed subject's enrolled faces
    SEARCH = "search"  # 1:N against a collection
    COMPARE = "compare"  # 1:1 between two images


class ReviewMode(StrEnum):
    ALWAYS = "always"
    BAND = "band"
    NEVER = "never"


# Face attributes a policy may allow a response to carry (Rekognition names).
KNOWN_ATTRIBUTES = ("BoundingBox", "Confidence", "Landmarks", "Pose", "Quality",
                    "EyesOpen", "MouthOpen")


class TemplateScoring(StrEnum):
    """How a verify scores a subject with several enrolled faces (docs/policies.md)."""

    BEST_OF = "best_of"  # the highest similarity over the subject's faces
    FUSED = "fused"  # the similarity to one template fused from all of them


class PolicyError(FaceApiError):
    """A policy file or value breaks a rule; the message names the file and field."""

    code = "invalid_policy"


class UnknownPolicy(FaceApiError):
    code = "unknown_policy"


class WrongPolicyOperation(FaceApiError):
    code = "wrong_policy_operation"


class InvalidPolicyBinding(FaceApiError):
    """A collection's policy binding names an unknown policy or one that is neither for
    verify nor for search."""

    code = "invalid_policy_binding"


@dataclass(frozen=True)
class QualityGate:
    """Minimums a probe face must meet before it is compared at all."""

    min_face_px: int = 0
    max_yaw: float = 90.0
    max_pitch: float = 90.0
    max_roll: float = 180.0
    min_sharpness: float = 0.0
    min_brightness: float = 0.0


@dataclass(frozen=True)
class HumanReview:
    mode: ReviewMode = ReviewMode.NEVER
    band: tuple[float, float] | None = None  # [low, high): scores here go to review
    reviewers: int = 1
    max_wait_hours: float = 72.0  # a review still pending after this expires as rejected


@dataclass(frozen=True)
class Lockout:
    """NIST SP 800-63B 5.2.2 throttling: consecutive failures per subject and policy."""

    failures: int = 5  # consecutive no_match results that lock
    window_minutes: float = 60.0  # failures further apart than this start a new count
    base_delay_seconds: float = 60.0  # first lock; every further lock doubles it
    max_delay_seconds: float = 3600.0


@dataclass(frozen=True)
class LivenessRule:
    """`liveness:` of a policy: whether a decision needs an external liveness service's
    signed attestation, and which issuers (names in FACEAPI_LIVENESS_ISSUERS) it trusts.
    See faceapi/domain/liveness.py and docs/verify.md."""

    required: bool = False
    issuers: tuple[str, ...] = ()


# Decision rows (outcome, scores, ids; never an image) are deleted this long after they
# were made (`faceapi retention run`), unless a policy says otherwise.
DEFAULT_DECISION_RETENTION_DAYS = 365


@dataclass(frozen=True)
class Policy:
    """One use case's rule. See docs/policies.md for every field."""

    name: str
    description: str
    operation: Operation
    consequential: bool
    min_similarity: float
    min_face_confidence: float = 90.0
    quality: QualityGate = field(default_factory=QualityGate)
    max_faces: int = 1  # faces the probe image may contain
    max_matches: int = 10  # search: the most candidates returned
    human_review: HumanReview = field(default_factory=HumanReview)
    lockout: Lockout | None = None
    retention_days: int = 30  # review evidence kept this long after the review ends
    decision_retention_days: int = DEFAULT_DECISION_RETENTION_DAYS  # decision rows kept
    attributes: tuple[str, ...] = ("BoundingBox", "Confidence")
    liveness: LivenessRule = field(default_factory=LivenessRule)
    template_scoring: TemplateScoring = TemplateScoring.BEST_OF

    def __post_init__(self) -> None:
        for problem in policy_problems(self):
            raise PolicyError(f"policy {self.name}: {problem}")

    @property
    def two_person(self) -> bool:
        return self.human_review.reviewers >= 2

    def canonical(self) -> dict[str, Any]:
        """The policy as plain JSON values with every default filled in."""
        data = asdict(self)
        data["operation"] = self.operation.value
        data["human_review"]["mode"] = self.human_review.mode.value
        band = self.human_review.band
        data["human_review"]["band"] = list(band) if band is not None else None
        data["attributes"] = list(self.attributes)
        # Only a policy that requires liveness names it, so every other policy keeps the
        # version it had before the rule existed (decisions record policy versions).
        if self.liveness.required:
            data["liveness"]["issuers"] = list(self.liveness.issuers)
        else:
            del data["liveness"]
        # Likewise only a policy that fuses templates names its scoring.
        if self.template_scoring is TemplateScoring.BEST_OF:
            del data["template_scoring"]
        else:
            data["template_scoring"] = self.template_scoring.value
        return data

    def canonical_text(self) -> str:
        """The canonical form as text: sorted keys, no spaces, UTF-8. Its SHA-256 is the
        version, so a reader holding this text can prove which rules a version means."""
        return json.dumps(self.canonical(), sort_keys=True, separators=(",", ":"),
                          ensure_ascii=False)

    @property
    def version(self) -> str:
        """SHA-256 of the canonical JSON form: any change to any rule changes it."""
        return text_version(self.canonical_text())


def text_version(canonical_text: str) -> str:
    """The version a canonical policy text stands for (its SHA-256, hex)."""
    return hashlib.sha256(canonical_text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class PolicyVersion:
    """A policy version some start loaded, kept for good (`policy_versions`): the text
    every decision recorded under (name, version) ran under. `audit_event_id` is the
    `policy.load` event that recorded it; that event's hash-chained `policy_version`
    equals the SHA-256 of `canonical_text`, which is what proves the text."""

    name: str
    version: str
    canonical_text: str
    first_loaded_at: datetime
    audit_event_id: str


def policy_problems(policy: Policy) -> list[str]:
    """Every cross-field rule a policy breaks, as `field: message` strings."""
    problems: list[str] = []
    review = policy.human_review
    if policy.consequential and review.mode is not ReviewMode.ALWAYS:
        problems.append("human_review.mode: a consequential policy must use `always`")
    if (policy.consequential and policy.operation is Operation.SEARCH
            and review.reviewers < 2):
        problems.append("human_review.reviewers: consequential 1:N search needs 2 reviewers")
    if review.mode is ReviewMode.BAND:
        if review.band is None:
            problems.append("human_review.band: required when mode is `band`")
        else:
            low, high = review.band
            if not 0 <= low < high <= 100:
                problems.append("human_review.band: expected [low, high), 0 <= low < high <= 100")
            elif not low <= policy.min_similarity <= high:
                problems.append("human_review.band: must contain min_similarity")
    elif review.band is not None:
        problems.append("human_review.band: only allowed when mode is `band`")
    if review.reviewers not in (1, 2):
        problems.append("human_review.reviewers: 1 or 2")
    if policy.operation is Operation.VERIFY and policy.max_faces != 1:
        problems.append("max_faces: verify needs exactly one face (1)")
    if (policy.template_scoring is not TemplateScoring.BEST_OF
            and policy.operation is not Operation.VERIFY):
        problems.append("template_scoring: only a verify policy scores one subject's faces")
    if policy.lockout is not None and policy.operation is not Operation.VERIFY:
        problems.append("lockout: only a verify policy has a subject to lock")
    if policy.lockout is None and policy.operation is Operation.VERIFY:
        # Without a lockout a verify policy is an oracle: unlimited guesses per subject.
        problems.append("lockout: required for a verify policy")
    if not 0 <= policy.min_similarity <= 100:
        problems.append("min_similarity: 0-100")
    if policy.liveness.required and not policy.liveness.issuers:
        problems.append("liveness.issuers: name at least one trusted issuer")
    if policy.liveness.required and policy.operation is Operation.COMPARE:
        problems.append("liveness: a compare policy has no live capture to attest")
    if policy.liveness.issuers and not policy.liveness.required:
        problems.append("liveness.issuers: only with `required: true`")
    unknown = [a for a in policy.attributes if a not in KNOWN_ATTRIBUTES]
    if unknown:
        problems.append(f"attributes: unknown {', '.join(unknown)}")
    return problems


def quality_reasons(face: FaceDetail, policy: Policy) -> list[str]:
    """Why a probe face is not good enough under `policy` (empty when it is)."""
    gate = policy.quality
    reasons: list[str] = []
    if face.confidence < policy.min_face_confidence:
        reasons.append("low_confidence")
    if gate.min_face_px and min(face.width_px, face.height_px) < gate.min_face_px:
        reasons.append("small_face")
    pose = face.pose
    if pose is not None and (abs(pose.yaw) > gate.max_yaw or abs(pose.pitch) > gate.max_pitch
                             or abs(pose.roll) > gate.max_roll):
        reasons.append("extreme_pose")
    quality = face.quality
    if quality is not None and (quality.sharpness < gate.min_sharpness
                                or quality.brightness < gate.min_brightness):
        reasons.append("low_quality")
    return reasons


class PolicySet(Mapping[str, Policy]):
    """The policies in force, by name; loaded once at start."""

    def __init__(self, policies: Mapping[str, Policy]) -> None:
        self._policies = dict(sorted(policies.items()))

    def __getitem__(self, name: str) -> Policy:
        return self._policies[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._policies)

    def __len__(self) -> int:
        return len(self._policies)

    def require(self, name: str, operation: Operation | None = None) -> Policy:
        """The named policy, or 422 `unknown_policy`; optionally of one operation."""
        policy = self._policies.get(name)
        if policy is None:
            raise UnknownPolicy(f"no policy named {name[:64]!r}",
                                details={"known": sorted(self._policies)})
        if operation is not None and policy.operation is not operation:
            raise WrongPolicyOperation(
                f"policy {name} is for {policy.operation.value}, not {operation.value}",
                details={"policy": name, "operation": policy.operation.value})
        return policy


# --- Collections bind the policies that may be used on them ------------------------------

# No policies known (a caller that has none to offer, such as a unit test's enrollment).
NO_POLICIES = PolicySet({})

BINDABLE = (Operation.VERIFY, Operation.SEARCH)


def check_binding(names: Iterable[str], policies: Mapping[str, Policy]) -> tuple[str, ...]:
    """The sorted, de-duplicated binding, or InvalidPolicyBinding (422) naming what is
    wrong: every name must be a loaded verify or search policy, and at least one."""
    wanted = tuple(sorted({n.strip() for n in names if n.strip()}))
    if not wanted:
        raise InvalidPolicyBinding("a collection must be bound to at least one policy",
                                   details={"field": "policies"})
    unknown = [n for n in wanted if n not in policies]
    if unknown:
        raise InvalidPolicyBinding(
            f"unknown policy {unknown[0][:64]!r}",
            details={"field": "policies", "known": sorted(policies)})
    wrong = [n for n in wanted if policies[n].operation not in BINDABLE]
    if wrong:
        raise InvalidPolicyBinding(
            f"policy {wrong[0]} is for {policies[wrong[0]].operation.value}; a collection "
            "binds verify and search policies only", details={"field": "policies"})
    return wanted


def strictness(policy: Policy) -> tuple[bool, int, bool, float]:
    """Orders policies from lenient to strict: consequential first, then more reviewers,
    then one that requires liveness, then a higher threshold."""
    return (policy.consequential, policy.human_review.reviewers, policy.liveness.required,
            policy.min_similarity)


def strictest_bound(bound: Iterable[str], policies: Mapping[str, Policy],
                    operation: Operation) -> Policy | None:
    """The strictest of the bound policies of one operation (what a request that names
    no policy, such as the emulator's SearchFacesByImage, decides under), or None."""
    found = [policies[n] for n in bound
             if n in policies and policies[n].operation is operation]
    return max(found, key=strictness) if found else None
