"""Use case: tune a similarity threshold on an operator's own labelled data.

`faceapi calibrate` hands this module a labelled set: images with an identity (every
pair of them is scored; same identity = genuine, different = impostor) or explicit
pairs. Each distinct image is embedded once by the engine (largest face); each pair gets
the engine's calibrated similarity. An image without a usable face makes its pairs
non-matches (similarity 0): a genuine user whose photo shows no face is refused, so
FNMR counts it; such pairs never raise FMR.

The report gives FMR and FNMR at every integer threshold (a pair matches when its
similarity is at least the threshold, as in CompareFaces), the smallest threshold on a
0.1 grid whose FMR is at most the target, and a confidence interval for that threshold:
a percentile bootstrap over *identities* (resample identities with replacement, weight
every pair by how often its identities were drawn, recompute the threshold). Identities,
not pairs, are the independent unit: the pairs of one person share that person's photos,
so resampling pairs would pretend to have far more evidence than there is. With explicit
pairs and no identities the bootstrap resamples pairs, and the report says it is then
too narrow when pairs share people. When the data has a group column, each group gets its
own counts, FMR/FNMR at the chosen threshold and its own threshold for the target.

Writing the chosen threshold into a policy file (`write_policy_threshold`) is a file
change, which no database transaction covers; see that function for the order kept.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from faceapi.domain.audit import Action, Actor, AuditEvent
from faceapi.domain.clock import Clock
from faceapi.domain.errors import FaceApiError, InvalidParameter
from faceapi.domain.images import DecodedImage
from faceapi.domain.policies import PolicyVersion
from faceapi.services.ports import (
    FaceEngine,
    PolicyChange,
    PolicyThresholdWriter,
    UnitOfWork,
)

CROSS_GROUP = "cross-group"
THRESHOLDS = tuple(range(0, 100))
GRID = 0.1  # resolution of the chosen threshold
DEFAULT_BOOTSTRAP_ROUNDS = 500
CONFIDENCE = 0.95
# Bounds the pairs formed from labelled images (4.5 million at most, about 1 GB as
# Python objects); the bootstrap costs pairs x rounds, so big sets want fewer rounds.
MAX_IMAGES = 3_000


@dataclass(frozen=True)
class LabelledImage:
    path: str
    identity: str
    group: str | None = None


@dataclass(frozen=True)
class LabelledPair:
    path_a: str
    path_b: str
    same: bool
    group: str | None = None


@dataclass(frozen=True)
class LabelledSet:
    """Either images with identities or explicit pairs (exactly one is non-empty)."""

    images: tuple[LabelledImage, ...] = ()
    pairs: tuple[LabelledPair, ...] = ()

    def __post_init__(self) -> None:
        if bool(self.images) == bool(self.pairs):
            raise InvalidParameter("give labelled images or labelled pairs, not both or none")
        if len(self.images) > MAX_IMAGES:
            raise InvalidParameter(f"at most {MAX_IMAGES} labelled images")

    def paths(self) -> list[str]:
        seen = dict.fromkeys([i.path for i in self.images]
                             + [p for pair in self.pairs for p in (pair.path_a, pair.path_b)])
        return list(seen)


@dataclass(frozen=True)
class ScoredPair:
    score: float
    same: bool
    group: str | None
    identities: tuple[str, str] | None  # None for explicit pairs


@dataclass(frozen=True)
class Rates:
    threshold: float
    fmr: float
    fnmr: float
    false_matches: int
    false_non_matches: int


@dataclass(frozen=True)
class Choice:
    """The threshold for a target FMR and its bootstrap interval."""

    target_fmr: float
    threshold: float
    fmr: float
    fnmr: float
    low: float
    high: float
    method: str
    measurable: bool  # False when the target is below 1 / impostor pairs


@dataclass(frozen=True)
class GroupFigures:
    group: str
    genuine: int
    impostor: int
    at_chosen: Rates
    own_threshold: float


@dataclass
class CalibrationReport:
    engine: str
    model_version: str
    images: int
    images_without_face: list[str]
    genuine: list[float]
    impostor: list[float]
    table: list[Rates]
    choice: Choice
    groups: list[GroupFigures] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """The report's figures without per-pair scores or file names of faces."""
        return {
            "engine": self.engine, "model_version": self.model_version,
            "images": self.images, "images_without_face": len(self.images_without_face),
            "genuine_pairs": len(self.genuine), "impostor_pairs": len(self.impostor),
            "target_fmr": self.choice.target_fmr, "threshold": self.choice.threshold,
            "fmr": self.choice.fmr, "fnmr": self.choice.fnmr,
            "interval": [self.choice.low, self.choice.high],
            "interval_method": self.choice.method, "measurable": self.choice.measurable,
            "groups": {g.group: {"genuine": g.genuine, "impostor": g.impostor,
                                 "fmr": g.at_chosen.fmr, "fnmr": g.at_chosen.fnmr,
                                 "own_threshold": g.own_threshold} for g in self.groups},
        }


class CalibrationFailed(FaceApiError):
    """The labelled set cannot give a threshold (no genuine or no impostor pair)."""

    code = "invalid_parameter"


# Scoring ------------------------------------------------------------------------------

def embed_all(paths: Sequence[str], *, engine: FaceEngine,
              load: Callable[[str], DecodedImage],
              progress: Callable[[int, int], None] | None = None,
              ) -> tuple[dict[str, tuple[float, ...] | None], list[str]]:
    """The largest face's descriptor of each image (None when none is usable)."""
    found: dict[str, tuple[float, ...] | None] = {}
    missing: list[str] = []
    for i, path in enumerate(paths, 1):
        descriptor: tuple[float, ...] | None = None
        try:
            _, faces = engine.embed_faces(load(path))
        except FaceApiError:  # undecodable or refused image: no usable face
            faces = []
        if faces:
            largest = max(faces, key=lambda f: f.detail.width_px * f.detail.height_px)
            descriptor = largest.embedding
        else:
            missing.append(path)
        found[path] = descriptor
        if progress is not None:
            progress(i, len(paths))
    return found, missing


def score_pairs(data: LabelledSet, descriptors: dict[str, tuple[float, ...] | None],
                similarity: Callable[[tuple[float, ...], tuple[float, ...]], float],
                ) -> list[ScoredPair]:
    def score(a: str, b: str) -> float:
        da, db = descriptors[a], descriptors[b]
        return similarity(da, db) if da is not None and db is not None else 0.0

    scored: list[ScoredPair] = []
    if data.pairs:
        for p in data.pairs:
            scored.append(ScoredPair(score(p.path_a, p.path_b), p.same, p.group, None))
        return scored
    images = data.images
    for i, a in enumerate(images):
        for b in images[i + 1:]:
            group = a.group if a.group == b.group else CROSS_GROUP
            if a.group is None and b.group is None:
                group = None
            scored.append(ScoredPair(score(a.path, b.path), a.identity == b.identity, group,
                                     (a.identity, b.identity)))
    return scored


# Rates --------------------------------------------------------------------------------

def rates_at(threshold: float, genuine: Sequence[float], impostor: Sequence[float]) -> Rates:
    """A pair matches when its similarity is at least the threshold."""
    fm = sum(1 for s in impostor if s >= threshold)
    fnm = sum(1 for s in genuine if s < threshold)
    return Rates(threshold, fm / len(impostor) if impostor else math.nan,
                 fnm / len(genuine) if genuine else math.nan, fm, fnm)


def threshold_for(target_fmr: float, impostor: Sequence[float],
                  weights: Sequence[float] | None = None) -> float:
    """The smallest threshold on the 0.1 grid whose (weighted) FMR is at most the
    target; 100 when even that cannot be met."""
    w = list(weights) if weights is not None else [1.0] * len(impostor)
    total = sum(w)
    if total <= 0:
        return 0.0
    allowed = target_fmr * total
    ordered = sorted(zip(impostor, w, strict=True), key=lambda x: x[0], reverse=True)
    above = 0.0
    for score, weight in ordered:
        if above + weight > allowed + 1e-12:
            # Every impostor strictly above the grid point over `score` is allowed.
            return min(100.0, math.floor(score / GRID + 1.0 + 1e-9) * GRID)
        above += weight
    return 0.0


def _bootstrap(pairs: Sequence[ScoredPair], target_fmr: float, rounds: int,
               seed: int) -> tuple[float, float, str]:
    rng = random.Random(seed)
    impostors = [p for p in pairs if not p.same]
    by_identity = all(p.identities is not None for p in pairs)
    found: list[float] = []
    if by_identity:
        names = sorted({n for p in pairs if p.identities for n in p.identities})
        for _ in range(rounds):
            drawn: dict[str, int] = {}
            for _ in names:
                pick = names[rng.randrange(len(names))]
                drawn[pick] = drawn.get(pick, 0) + 1
            weights = [drawn.get(p.identities[0], 0) * drawn.get(p.identities[1], 0)
                       for p in impostors if p.identities]
            found.append(threshold_for(target_fmr, [p.score for p in impostors], weights))
        method = (f"percentile bootstrap over identities ({rounds} rounds, {len(names)} "
                  "identities; an impostor pair weighs the product of its two identities' "
                  "draw counts)")
    else:
        scores = [p.score for p in impostors]
        for _ in range(rounds):
            sample = [scores[rng.randrange(len(scores))] for _ in scores]
            found.append(threshold_for(target_fmr, sample))
        method = (f"percentile bootstrap over pairs ({rounds} rounds): no identities given, "
                  "so the interval is too narrow when pairs share people")
    found.sort()
    tail = (1.0 - CONFIDENCE) / 2.0
    low = found[math.floor(tail * (len(found) - 1))]
    high = found[math.ceil((1.0 - tail) * (len(found) - 1))]
    return low, high, method


def analyse(pairs: Sequence[ScoredPair], *, target_fmr: float, engine: str,
            model_version: str, images: int, images_without_face: list[str],
            rounds: int = DEFAULT_BOOTSTRAP_ROUNDS, seed: int = 0) -> CalibrationReport:
    if not 0.0 < target_fmr < 1.0:
        raise InvalidParameter("target FMR must be between 0 and 1")
    genuine = [p.score for p in pairs if p.same]
    impostor = [p.score for p in pairs if not p.same]
    if not genuine or not impostor:
        raise CalibrationFailed("the labelled set needs same-identity and different-identity "
                                f"pairs (found {len(genuine)} and {len(impostor)})")
    chosen = threshold_for(target_fmr, impostor)
    at = rates_at(chosen, genuine, impostor)
    low, high, method = _bootstrap(pairs, target_fmr, rounds, seed)
    choice = Choice(target_fmr, chosen, at.fmr, at.fnmr, low, high, method,
                    measurable=target_fmr * len(impostor) >= 1.0)
    groups: list[GroupFigures] = []
    names = sorted({p.group for p in pairs if p.group is not None})
    for name in names:
        gen = [p.score for p in pairs if p.group == name and p.same]
        imp = [p.score for p in pairs if p.group == name and not p.same]
        groups.append(GroupFigures(name, len(gen), len(imp), rates_at(chosen, gen, imp),
                                   threshold_for(target_fmr, imp) if imp else math.nan))
    return CalibrationReport(
        engine=engine, model_version=model_version, images=images,
        images_without_face=images_without_face, genuine=genuine, impostor=impostor,
        table=[rates_at(float(t), genuine, impostor) for t in THRESHOLDS],
        choice=choice, groups=groups)


def calibrate(data: LabelledSet, *, engine: FaceEngine, load: Callable[[str], DecodedImage],
              target_fmr: float, rounds: int = DEFAULT_BOOTSTRAP_ROUNDS, seed: int = 0,
              progress: Callable[[int, int], None] | None = None) -> CalibrationReport:
    """Embed, score and analyse a labelled set (see the module doc)."""
    paths = data.paths()
    descriptors, missing = embed_all(paths, engine=engine, load=load, progress=progress)
    pairs = score_pairs(data, descriptors, engine.similarity)
    return analyse(pairs, target_fmr=target_fmr, engine=engine.name,
                   model_version=engine.model_version, images=len(paths),
                   images_without_face=missing, rounds=rounds, seed=seed)


# Report text --------------------------------------------------------------------------

def table_csv(report: CalibrationReport) -> str:
    lines = ["threshold,fmr,fnmr,false_matches,false_non_matches,impostor_pairs,genuine_pairs"]
    for r in report.table:
        lines.append(f"{r.threshold:g},{r.fmr:.6f},{r.fnmr:.6f},{r.false_matches},"
                     f"{r.false_non_matches},{len(report.impostor)},{len(report.genuine)}")
    return "\n".join(lines) + "\n"


def _fmt(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{x:.4f}"


def report_markdown(report: CalibrationReport, plots: Sequence[str]) -> str:
    c = report.choice
    out = [
        "# Calibration report", "",
        f"Engine `{report.engine}` ({report.model_version}); {report.images} images, "
        f"{len(report.images_without_face)} without a usable face (their pairs count as "
        f"non-matches); {len(report.genuine)} genuine and {len(report.impostor)} impostor "
        "pairs. A pair matches when its similarity is at least the threshold.", "",
        f"**Threshold for FMR <= {c.target_fmr:g}: {c.threshold:.1f}** (measured FMR "
        f"{c.fmr:.6f}, FNMR {c.fnmr:.4f}); {CONFIDENCE:.0%} interval "
        f"[{c.low:.1f}, {c.high:.1f}] by {c.method}.", "",
    ]
    if not c.measurable:
        out += [f"Warning: {len(report.impostor)} impostor pairs cannot measure an FMR of "
                f"{c.target_fmr:g} (fewer than 1 / target): the threshold only says that no "
                "impostor pair scored at or above it.", ""]
    if report.groups:
        out += ["## Per group", "",
                "| group | genuine | impostor | FMR at chosen | FNMR at chosen | "
                "own threshold for target |", "|---|---:|---:|---:|---:|---:|"]
        for g in report.groups:
            own = "n/a" if math.isnan(g.own_threshold) else f"{g.own_threshold:.1f}"
            if g.impostor and g.impostor * c.target_fmr < 1.0:
                own += " (too few impostor pairs: above every one)"
            out.append(f"| {g.group} | {g.genuine} | {g.impostor} | {_fmt(g.at_chosen.fmr)} | "
                       f"{_fmt(g.at_chosen.fnmr)} | {own} |")
        out.append("")
    out += ["## FMR and FNMR per threshold", "",
            "| threshold | FMR | FNMR | false matches | false non-matches |",
            "|---:|---:|---:|---:|---:|"]
    for r in report.table:
        out.append(f"| {r.threshold:g} | {r.fmr:.6f} | {r.fnmr:.4f} | {r.false_matches} | "
                   f"{r.false_non_matches} |")
    out += ["", "## Plots", ""] + [f"![{name}]({name})" for name in plots]
    if report.images_without_face:
        out += ["", "## Images without a usable face", ""]
        out += [f"- `{p}`" for p in report.images_without_face]
    return "\n".join(out) + "\n"


# Writing a policy ---------------------------------------------------------------------

def write_policy_threshold(name: str, report: CalibrationReport, *,
                           writer: PolicyThresholdWriter, uow: UnitOfWork, clock: Clock,
                           actor: Actor) -> PolicyChange:
    """Write the chosen threshold into policies/NAME.yaml, then audit it.

    No transaction spans a file and the database, so the order is: (1) the writer
    validates the new text with the policy loader and replaces the file atomically
    (a reader sees the old or the new file, never half); (2) one transaction appends a
    `policy.calibrate` event (old and new version and threshold, the target and the
    measured figures; no image, no score list) and, in the same transaction, keeps the
    new version's canonical text in policy_versions (as a start's `policy.load` would),
    so the trail names the calibration as the origin of that version. If (2) fails,
    the previous file is put back (atomically again) and the error raised: no
    unaudited threshold stays in force. Should that restore fail too, the error says
    so; the next start of the app or CLI then records the new version with a
    `policy.load` event, so the trail still shows the change, without the
    calibration's figures."""
    c = report.choice
    note = (f"faceapi calibrate: FMR <= {c.target_fmr:g} at {c.threshold:.1f} on "
            f"{len(report.impostor)} impostor / {len(report.genuine)} genuine pairs "
            f"(measured FMR {c.fmr:.6f}, FNMR {c.fnmr:.4f}; {CONFIDENCE:.0%} interval "
            f"{c.low:.1f}-{c.high:.1f})")
    change, previous = writer.write(name, c.threshold, note)
    try:
        with uow:
            uow.policy_versions.lock()
            event = uow.audit.append(AuditEvent(
                action=Action.POLICY_CALIBRATE, outcome="written", actor=actor,
                resource=f"policies/{name}", policy_name=name,
                policy_version=change.new_version, engine=report.engine,
                model_version=report.model_version,
                scores={"previous_min_similarity": change.old_threshold,
                        "min_similarity": change.new_threshold,
                        "target_fmr": c.target_fmr, "measured_fmr": c.fmr,
                        "measured_fnmr": c.fnmr, "interval_low": c.low,
                        "interval_high": c.high, "genuine_pairs": len(report.genuine),
                        "impostor_pairs": len(report.impostor)},
                details={"previous_version": change.old_version}))
            if uow.policy_versions.get(name, change.new_version) is None:
                uow.policy_versions.add(PolicyVersion(
                    name=name, version=change.new_version,
                    canonical_text=change.canonical_text, first_loaded_at=clock.now(),
                    audit_event_id=event.id))
            uow.commit()
    except Exception as exc:
        try:
            writer.restore(name, previous)
        except Exception as again:
            raise CalibrationFailed(
                f"policies/{name}.yaml was written but the audit event failed "
                f"({type(exc).__name__}) and restoring the previous file failed too "
                f"({type(again).__name__}): the new version is in force, unaudited until "
                "the next start records it (policy.load)") from exc
        raise CalibrationFailed(
            f"the audit event failed ({type(exc).__name__}); policies/{name}.yaml was "
            "restored to its previous text") from exc
    return change
