"""Enrollment warnings: telling the operator, in the IndexFaces answer and the audit
event, when a newly enrolled face makes a poor template (docs/collections.md,
"Enrollment warnings"; the measurements behind them are in docs/accuracy.md).

Two checks, both against the policies the collection binds:

- `poor_template`: the face would be refused as a probe by a bound policy's gates
  (confidence, size, pose, sharpness, brightness). A template poorer than what the
  policy demands of a probe caps every later comparison.
- `inconsistent_with_subject`: the face's best similarity with the subject's other
  enrolled faces is below the lowest threshold of any bound policy: no policy here
  would call them the same person. Either the photo is of someone else (an operator's
  mix-up) or the subject's photos differ so much that logins will fail; both need a
  look. Only where descriptors are in our store (the local engine).

Warnings never refuse an enrollment: the operator decides.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from faceapi.domain.collections import StoredFace
from faceapi.domain.faces import FaceDetail
from faceapi.domain.policies import Policy, PolicySet, quality_reasons
from faceapi.services.ports import FaceEngine

POOR_TEMPLATE = "poor_template"
INCONSISTENT_WITH_SUBJECT = "inconsistent_with_subject"


@dataclass(frozen=True)
class NewFace:
    face_id: str
    detail: FaceDetail  # every attribute, as the engine measured it
    embedding: tuple[float, ...] | None  # None on an engine that keeps faces itself


@dataclass(frozen=True)
class TemplateWarnings:
    messages: tuple[str, ...] = ()  # "code: what and what to do", for the answer
    codes: tuple[str, ...] = ()  # distinct codes, for the audit event
    # The lowest, over the new faces, of each one's best similarity with the subject's
    # other faces (None when there was nothing to compare with).
    subject_similarity: float | None = None


def bound_policies(policies: PolicySet, names: Sequence[str]) -> list[Policy]:
    """The bound policies this process knows (a binding to a policy file removed since
    is simply not checked)."""
    return [policies[name] for name in names if name in policies]


def template_warnings(new: Sequence[NewFace], existing: Sequence[StoredFace],
                      bound: Sequence[Policy], engine: FaceEngine) -> TemplateWarnings:
    """Warnings for the faces about to be enrolled under one subject; `existing` are the
    subject's faces already enrolled."""
    messages: list[str] = []
    codes: list[str] = []
    for face in new:
        for policy in bound:
            reasons = quality_reasons(face.detail, policy)
            if reasons:
                messages.append(
                    f"{POOR_TEMPLATE}: face {face.face_id} would be refused as a probe under "
                    f"policy {policy.name!r} ({', '.join(reasons)}); a clearer, frontal photo "
                    "makes a better template")
                codes.append(POOR_TEMPLATE)
    lowest, similarity, compared = _consistency(new, existing, bound, engine)
    if lowest is not None and similarity is not None and similarity < lowest.min_similarity:
        messages.append(
            f"{INCONSISTENT_WITH_SUBJECT}: the new face scores {similarity:.1f} at best with "
            f"the subject's {compared} other face(s), below the lowest threshold bound "
            f"here ({lowest.min_similarity:g}, policy {lowest.name!r}); check that it is "
            "the same person, and enroll more photos if it is")
        codes.append(INCONSISTENT_WITH_SUBJECT)
    return TemplateWarnings(tuple(messages), tuple(dict.fromkeys(codes)), similarity)


def needs_existing_faces(new: Sequence[NewFace], bound: Sequence[Policy]) -> bool:
    """Whether the consistency check can run at all (so the subject's faces are read
    only then): descriptors to compare and a threshold to compare them at."""
    return bool(bound) and any(f.embedding for f in new)


def _consistency(new: Sequence[NewFace], existing: Sequence[StoredFace],
                 bound: Sequence[Policy], engine: FaceEngine
                 ) -> tuple[Policy | None, float | None, int]:
    """The most lenient bound policy, the lowest over the new faces of each one's best
    similarity with the subject's comparable faces (like with like: the same template
    version), and how many faces that was."""
    comparable = [f.vector() for f in existing
                  if f.embedding and f.template_version == engine.template_version]
    vectors = [f.embedding for f in new if f.embedding]
    if not bound or not comparable or not vectors:
        return None, None, 0
    lowest = min(bound, key=lambda p: p.min_similarity)
    worst = min(max(engine.similarity(v, c) for c in comparable) for v in vectors)
    return lowest, worst, len(comparable)
