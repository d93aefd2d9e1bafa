"""Acceptance bench for /verify under the `login` policy with the real local engine.

Run:  .venv/bin/python -m bench.verify          (a few minutes on 2 CPUs)
      .venv/bin/python -m bench.verify --enroll 2 [--template-scoring best_of|fused]

On the shared data set (LABELS.csv; identities blank or `none` are left out): enroll
one image per identity (the first, by file name, that indexes exactly one face), then
call the verify service for every other image of every identity (genuine attempts) and,
as impostor attempts, for every image against every other enrolled identity (or a
seeded sample of N per image with --impostors-per-image N). Prints and writes to
bench/results/verify.json: FMR (impostor matches / impostor attempts decided), FNMR
(genuine no_match / genuine attempts decided), and the attempts rejected before any
comparison (no face, several faces, poor quality) counted separately.

The service path is the real one (intake, quality gates, store, decision, audit) on a
throw-away SQLite store; two things differ from production, on purpose: each image is
embedded once and reused (an engine wrapper caching by SHA-256, so the run takes
minutes, not an hour), and the lockout is switched off in a copy of `login` (same
threshold and quality gates) so hundreds of impostor attempts are all decided.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bench.common import environment, faces_dir, read_csv, write_json
from faceapi.adapters.blobs import DirectoryBlobStore
from faceapi.adapters.engines.factory import build_engine
from faceapi.adapters.engines.local.similarity import SCALE_VERSION
from faceapi.adapters.images import PillowImageDecoder
from faceapi.adapters.policy_files import load_policies
from faceapi.adapters.store import Store
from faceapi.config import Settings
from faceapi.domain.access import Actor
from faceapi.domain.clock import SystemClock
from faceapi.domain.decisions import Decision, Outcome
from faceapi.domain.faces import Attributes, Capabilities, Comparison, Detection, EmbeddedFace
from faceapi.domain.images import DecodedImage
from faceapi.domain.policies import (
    Lockout,
    Policy,
    PolicySet,
    TemplateScoring,
    quality_reasons,
)
from faceapi.services.collections import CreateCollectionRequest, create_collection, delete_faces
from faceapi.services.enroll import IndexFacesRequest, index_faces
from faceapi.services.ports import FaceEngine
from faceapi.services.verify import VerifyRequest, verify

REPO = Path(__file__).resolve().parent.parent
COLLECTION = "bench"


@dataclass
class CachingEngine:
    """The real engine, with embed_faces cached by image digest (see module doc)."""

    inner: FaceEngine
    settings: Settings
    cache: dict[str, tuple[Detection, list[EmbeddedFace]]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def model_version(self) -> str:
        return self.inner.model_version

    @property
    def template_version(self) -> str:
        return self.inner.template_version

    def capabilities(self) -> Capabilities:
        return self.inner.capabilities()

    def detect_faces(self, image: DecodedImage, attributes: Attributes) -> Detection:
        return self.inner.detect_faces(image, attributes)

    def compare_faces(self, source: DecodedImage, target: DecodedImage,
                      similarity_threshold: float) -> Comparison:
        return self.inner.compare_faces(source, target, similarity_threshold)

    def embed_faces(self, image: DecodedImage) -> tuple[Detection, list[EmbeddedFace]]:
        if image.sha256 not in self.cache:
            self.cache[image.sha256] = self.inner.embed_faces(image)
        return self.cache[image.sha256]

    def similarity(self, a: tuple[float, ...], b: tuple[float, ...]) -> float:
        return self.inner.similarity(a, b)

    def fused_similarity(self, probe: tuple[float, ...],
                         templates: Sequence[tuple[float, ...]]) -> float:
        return self.inner.fused_similarity(probe, templates)

    def ready(self) -> tuple[bool, str]:
        return self.inner.ready()


@dataclass
class Tally:
    outcomes: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    scores: list[float] = field(default_factory=list)  # best similarity, decided attempts
    matches: list[dict[str, Any]] = field(default_factory=list)

    def add(self, decision: Decision, file: str) -> None:
        self.outcomes[decision.outcome.value] += 1
        if decision.outcome is Outcome.REJECTED:
            self.reasons.update(str(r) for r in decision.reasons)
            return
        # An unknown subject has no score; it can only be a no_match.
        self.scores.append(decision.similarity if decision.similarity is not None else 0.0)
        if decision.outcome is Outcome.MATCH:
            self.matches.append({"file": file, "claimed": decision.subject_id,
                                 "similarity": round(decision.similarity or 0.0, 3)})

    @property
    def decided(self) -> int:
        return self.outcomes["match"] + self.outcomes["no_match"]

    def rate(self, outcome: str) -> float:
        return self.outcomes[outcome] / self.decided if self.decided else float("nan")

    def as_json(self) -> dict[str, Any]:
        return {"attempts": sum(self.outcomes.values()), "decided": self.decided,
                "outcomes": dict(self.outcomes), "rejected_reasons": dict(self.reasons)}


def threshold_for_fmr(impostor: list[float], target: float) -> float:
    """The lowest threshold (just above an impostor score) with FMR <= target."""
    ordered = sorted(impostor, reverse=True)
    allowed = int(target * len(ordered))  # impostor scores that may reach the threshold
    if allowed >= len(ordered):
        return 0.0
    return round(ordered[allowed] + 0.01, 2)


GATES = ("low_confidence", "small_face", "extreme_pose", "low_quality")


def gate_breakdown(engine: CachingEngine, policy: Policy, data: Path,
                   attempts: list[tuple[str, str, bool]],
                   templates: dict[str, list[tuple[float, ...]]]) -> dict[str, Any]:
    """Where attempts are lost, and what each gate buys: every attempt is also scored
    with the gates ignored (its largest face against the claimed subject's enrolled
    faces, best of them), so for the attempts a gate rejects we can say how many
    would have been errors (genuine below the threshold, impostor at or above it)."""
    threshold = policy.min_similarity
    per_gate = {g: {"genuine_rejected": 0, "genuine_rejected_would_fail": 0,
                    "impostor_rejected": 0, "impostor_rejected_would_match": 0}
                for g in GATES}
    lost: Counter[str] = Counter()
    for file, claimed, is_genuine in attempts:
        _, faces = engine.embed_faces(PillowImageDecoder(engine.settings).decode(
            (data / file).read_bytes()))
        if not faces:
            if is_genuine:
                lost["no_face"] += 1
            continue
        # The verify service's own rule (services/verify.py screen_details): only
        # detections at the policy's confidence count as faces.
        counted = [f for f in faces if f.detail.confidence >= policy.min_face_confidence]
        probe = max(counted or faces, key=lambda f: f.detail.bounding_box.width
                    * f.detail.bounding_box.height)
        score = (engine.fused_similarity(probe.embedding, templates[claimed])
                 if policy.template_scoring is TemplateScoring.FUSED
                 else max(engine.similarity(probe.embedding, t) for t in templates[claimed]))
        reasons = quality_reasons(probe.detail, policy)
        many = len(counted) > policy.max_faces
        for gate in reasons:
            row = per_gate[gate]
            if is_genuine:
                row["genuine_rejected"] += 1
                row["genuine_rejected_would_fail"] += score < threshold
            else:
                row["impostor_rejected"] += 1
                row["impostor_rejected_would_match"] += score >= threshold
        if is_genuine:
            if many:
                lost["multiple_faces"] += 1
            elif reasons:
                lost["gate:" + "+".join(reasons)] += 1
            elif score < threshold:
                lost["score"] += 1
            else:
                lost["match"] += 1
    return {"genuine_outcome_causes": dict(lost), "per_gate": per_gate}


def fusion(engine: CachingEngine, data: Path, by_identity: dict[str, list[str]],
           threshold_fmr: float = 1e-3) -> dict[str, Any]:
    """Two enrolled images per identity (when it has three or more): best-of (the
    highest similarity over the templates, what verify does) against a fused template
    (mean of the L2-normalised descriptors, renormalised), each at the threshold giving
    impostor FMR <= threshold_fmr in this protocol; with one enrolled image as the base."""
    import numpy as np

    vectors: dict[str, tuple[float, ...]] = {}
    for files in by_identity.values():
        for file in files:
            _, faces = engine.embed_faces(PillowImageDecoder(engine.settings).decode(
                (data / file).read_bytes()))
            if len(faces) == 1:
                vectors[file] = faces[0].embedding
    enrolled = {i: [f for f in fs if f in vectors][:2] for i, fs in by_identity.items()}
    enrolled = {i: fs for i, fs in enrolled.items()
                if len(fs) == 2 and sum(1 for f in by_identity[i] if f in vectors) >= 3}

    def unit(v: tuple[float, ...]) -> Any:
        a = np.asarray(v, dtype=np.float64)
        return a / np.linalg.norm(a)

    fused: dict[str, tuple[float, ...]] = {}
    for identity, files in enrolled.items():
        mean = sum(unit(vectors[f]) for f in files) / len(files)
        # Back to the descriptors' own length (dlib's are about unit length already).
        norm = float(np.mean([np.linalg.norm(vectors[f]) for f in files]))
        fused[identity] = tuple(float(x) for x in mean / np.linalg.norm(mean) * norm)
    schemes: dict[str, Any] = {
        "one_image": lambda i, v: engine.similarity(v, vectors[enrolled[i][0]]),
        "best_of_two": lambda i, v: max(engine.similarity(v, vectors[f]) for f in enrolled[i]),
        "fused_two": lambda i, v: engine.similarity(v, fused[i]),
    }
    out: dict[str, Any] = {"identities": len(enrolled)}
    for name, score in schemes.items():
        genuine, impostor = [], []
        for identity, files in by_identity.items():
            for file in files:
                if file not in vectors:
                    continue
                for claimed in enrolled:
                    if file in enrolled[claimed]:
                        continue
                    (genuine if claimed == identity else impostor).append(
                        score(claimed, vectors[file]))
        needed = threshold_for_fmr(impostor, threshold_fmr)
        out[name] = {"genuine": len(genuine), "impostor": len(impostor),
                     "threshold_for_fmr_1e-3": needed,
                     "fnmr_there": round(sum(s < needed for s in genuine) / len(genuine), 4),
                     "fnmr_at_80": round(sum(s < 80 for s in genuine) / len(genuine), 4),
                     "fmr_at_80": round(sum(s >= 80 for s in impostor) / len(impostor), 5)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--impostors-per-image", type=int, default=0,
                        help="sample this many other identities per image (0: all)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--policy", default="login", help="policy file name (policies/)")
    parser.add_argument("--enroll", type=int, default=1,
                        help="enroll up to this many single-face images per identity "
                             "(always leaving one as a genuine attempt)")
    parser.add_argument("--template-scoring", choices=[t.value for t in TemplateScoring],
                        help="override the policy's template_scoring (to compare them)")
    parser.add_argument("--out", default="verify.json")
    args = parser.parse_args()

    data = faces_dir()
    labels = [r for r in read_csv(data / "LABELS.csv")
              if r["identity"].strip() and r["identity"].strip() != "none"]
    by_identity: dict[str, list[str]] = defaultdict(list)
    for row in sorted(labels, key=lambda r: r["file"]):
        by_identity[row["identity"].strip()].append(row["file"])

    work = Path(tempfile.mkdtemp(prefix="faceapi-bench-verify-"))
    settings = Settings(env="test", data_dir=work, log_level="WARNING",
                        image_formats=("jpeg", "png", "webp", "bmp", "gif"))
    store = Store.from_settings(settings)
    store.upgrade()
    engine = CachingEngine(build_engine(settings), settings)
    login = load_policies(REPO / "policies")[args.policy]
    if args.template_scoring:
        login = replace(login, template_scoring=TemplateScoring(args.template_scoring))
    # A verify policy must lock (issue 12); a count no run reaches keeps every attempt
    # decided, which is what "switched off" means here.
    measured = replace(login, lockout=Lockout(failures=10**9))
    policies = PolicySet({"login": measured})
    clock = SystemClock()
    blobs = DirectoryBlobStore(settings.resolved_blob_dir)
    operator = Actor(role="operator", key_id="bench-operator")
    app_actor = Actor(role="app", key_id="bench-app")
    create_collection(CreateCollectionRequest(COLLECTION, consent_required=False),
                      actor=operator, engine=engine, uow=store.uow(), clock=clock)

    started = time.perf_counter()
    enrolled: dict[str, list[str]] = {}  # identity -> enrolled files
    # What the operator was told at each enrollment (services/enrollment_checks.py).
    enrollment_warnings: list[dict[str, Any]] = []
    for identity, files in sorted(by_identity.items()):
        # Up to --enroll images, always leaving one for a genuine attempt.
        wanted = max(1, min(args.enroll, len(files) - 1))
        for file in files:
            result = index_faces(IndexFacesRequest(
                collection_id=COLLECTION, image=(data / file).read_bytes(),
                subject_id=identity, max_faces=1), actor=operator, engine=engine,
                uow=store.uow(), clock=clock, decoder=PillowImageDecoder(settings),
                blobs=blobs, policies=policies)
            if len(result.face_records) == 1 and not result.unindexed_faces:
                enrolled.setdefault(identity, []).append(file)
                warned = sorted({w.split(":", 1)[0] for w in result.warnings})
                enrollment_warnings.append({"file": file, "identity": identity,
                                            "warnings": warned})
                if len(enrolled[identity]) == wanted:
                    break
            elif result.face_records:
                # Several faces: a group photo is no enrolment; undo it.
                delete_faces(COLLECTION, [r.face.face_id for r in result.face_records],
                             actor=operator, uow=store.uow(), engine=engine, blobs=blobs)

    def attempt(file: str, claimed: str) -> Decision:
        return verify(VerifyRequest(COLLECTION, claimed, (data / file).read_bytes(),
                                        "login"),
                          actor=app_actor, engine=engine, uow=store.uow(),
                          policies=policies, clock=clock, blobs=blobs,
                          decoder=PillowImageDecoder(settings))

    templates: dict[str, list[tuple[float, ...]]] = {}
    for identity, files in enrolled.items():
        for file in files:
            _, faces = engine.embed_faces(PillowImageDecoder(settings).decode(
                (data / file).read_bytes()))
            templates.setdefault(identity, []).append(faces[0].embedding)
    attempts: list[tuple[str, str, bool]] = []
    genuine, impostor = Tally(), Tally()
    rng = random.Random(args.seed)
    for identity, files in sorted(by_identity.items()):
        for file in files:
            if identity in enrolled and file not in enrolled[identity]:
                genuine.add(attempt(file, identity), file)
                attempts.append((file, identity, True))
            others = sorted(i for i in enrolled if i != identity)
            if args.impostors_per_image:
                others = rng.sample(others, min(args.impostors_per_image, len(others)))
            for claimed in others:
                impostor.add(attempt(file, claimed), file)
                attempts.append((file, claimed, False))
    seconds = time.perf_counter() - started
    store.dispose()
    breakdown = gate_breakdown(engine, login, data, attempts, templates)
    fused = fusion(engine, data, by_identity)

    fmr, fnmr = impostor.rate("match"), genuine.rate("no_match")
    # The same protocol's own answer to "which threshold gives FMR <= 1e-3": for
    # comparison with the calibrated one (all LABELS.csv pairs, docs/accuracy.md).
    needed = threshold_for_fmr(impostor.scores, 1e-3)
    fnmr_needed = (sum(1 for s in genuine.scores if s < needed) / len(genuine.scores)
                   if genuine.scores else float("nan"))
    summary: dict[str, Any] = {
        "policy": {"name": args.policy, "version": login.version,
                   "threshold": login.min_similarity,
                   "note": "lockout switched off for the measurement; threshold and "
                           "quality gates are login's"},
        "engine": {"name": engine.name, "model_version": engine.model_version},
        "identities": len(by_identity), "enrolled_identities": len(enrolled),
        "enrolled_images": sum(len(files) for files in enrolled.values()),
        "enroll_per_identity": args.enroll,
        "template_scoring": login.template_scoring.value,
        "images": len(labels),
        "fmr": fmr, "fnmr": fnmr,
        # Issue 15's acceptance figure: genuine attempts answered `match`, over all
        # genuine attempts (rejected ones included: a refused genuine user is lost too).
        "genuine_acceptance": (genuine.outcomes["match"] / sum(genuine.outcomes.values())
                               if genuine.outcomes else float("nan")),
        "similarity_scale": SCALE_VERSION,
        "genuine": genuine.as_json(), "impostor": impostor.as_json(),
        "impostor_matches": impostor.matches,
        "breakdown": breakdown, "templates": fused,
        "enrollment_warnings": {
            "enrollments": len(enrollment_warnings),
            "warned": [e for e in enrollment_warnings if e["warnings"]]},
        "this_protocol": {"threshold_for_fmr_1e-3": needed,
                          "fnmr_at_that_threshold": fnmr_needed},
        "impostors_per_image": args.impostors_per_image or "all",
        "seconds": round(seconds, 1), "environment": environment(),
    }
    path = write_json(args.out, summary)
    print(f"login threshold {login.min_similarity} (policy version {login.version[:12]})")
    print(f"enrolled {len(enrolled)} of {len(by_identity)} identities "
          f"({summary['enrolled_images']} images; scoring {login.template_scoring.value})")
    print(f"genuine attempts {sum(genuine.outcomes.values())}: {dict(genuine.outcomes)}")
    print(f"impostor attempts {sum(impostor.outcomes.values())}: {dict(impostor.outcomes)}")
    print(f"FMR  {fmr:.5f}  ({impostor.outcomes['match']} of {impostor.decided} decided)")
    print(f"FNMR {fnmr:.5f}  ({genuine.outcomes['no_match']} of {genuine.decided} decided)")
    print(f"genuine acceptance {summary['genuine_acceptance']:.4f} "
          f"({genuine.outcomes['match']} match of {sum(genuine.outcomes.values())} attempts)")
    print(f"this protocol would need threshold {needed} for FMR <= 1e-3 "
          f"(FNMR there {fnmr_needed:.4f})")
    print(f"rejected before comparison: genuine {dict(genuine.reasons)}, "
          f"impostor {dict(impostor.reasons)}")
    print("genuine attempts by cause:", breakdown["genuine_outcome_causes"])
    for gate, row in breakdown["per_gate"].items():
        print(f"gate {gate}: {row}")
    print("templates:", fused)
    print("enrollment warnings:", summary["enrollment_warnings"])
    print(f"wrote {path.relative_to(REPO)} in {seconds:.0f} s")


if __name__ == "__main__":
    main()
