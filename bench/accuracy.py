"""Verification accuracy of the local engine against plain dlib, and the Similarity
calibration.

Run:  .venv/bin/python -m bench.accuracy          (about 3 minutes on 2 CPUs)

Every image of LABELS.csv and PAIRS.csv is embedded once per engine (largest face);
then every pair of PAIRS.csv and every pair formed from LABELS.csv (identity set and
not `none`) is scored by euclidean descriptor distance. Printed and written to
bench/results/accuracy.json: images without a face, ROC AUC, EER, FNMR at FMR 1e-2 and
1e-3, per source, for both engines; the calibration table (written to
faceapi/adapters/engines/local/calibration.json); the detector-score to confidence fit; the
similarity threshold for FMR <= 1e-3.

The baseline is dlib used the plain way: PIL decode without EXIF handling,
get_frontal_face_detector() with upsample 1 on the full image, the 5-point shape
predictor, the same ResNet model, the largest face, no orientation search.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image

from faceapi.adapters.engines.local import LocalEngine
from faceapi.adapters.engines.local import attributes as attrs
from faceapi.adapters.engines.local.detection import (
    HOG_SCORE_THRESHOLD,
    downscale,
    raw_detections,
    score_to_confidence,
)
from faceapi.adapters.engines.local.engine import DESCRIPTOR_ALIGNMENT, DESCRIPTOR_JITTERS
from faceapi.adapters.engines.local.models import Models, load_models
from faceapi.adapters.engines.local.similarity import (
    ANCHOR_SIMILARITY,
    CALIBRATION_FILE,
    SimilarityMap,
    calibration_document,
    nines_to_similarity,
)
from faceapi.adapters.images import decode_image
from faceapi.config import KNOWN_FORMATS, Settings
from faceapi.domain.faces import OrientationCorrection

if __package__ in (None, ""):  # run as a script (`python bench/accuracy.py`, make bench)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import (
    environment,
    faces_dir,
    read_csv,
    source_of,
    table,
    write_json,
)

FloatArray = npt.NDArray[np.float64]


@dataclass
class Embedded:
    """One image through one engine."""

    descriptor: FloatArray | None
    faces: int
    seconds: float
    orientation: str | None = None
    error: str | None = None


@dataclass
class PairSet:
    name: str
    pairs: list[tuple[str, str, bool, str]] = field(default_factory=list)  # a, b, same, group


# Engines ------------------------------------------------------------------------------

def embed_ours(engine: LocalEngine, path: Path, settings: Settings) -> Embedded:
    start = time.perf_counter()
    try:
        image = decode_image(path.read_bytes(), settings)
        detection, faces = engine.embed_faces(image)
    except Exception as exc:  # the bench records any failure per image
        return Embedded(None, 0, time.perf_counter() - start, error=type(exc).__name__)
    seconds = time.perf_counter() - start
    if not faces:
        return Embedded(None, 0, seconds)
    largest = max(faces, key=lambda f: f.detail.width_px * f.detail.height_px)
    oc = detection.orientation_correction
    return Embedded(np.asarray(largest.embedding, dtype=np.float64), len(faces), seconds,
                    orientation=oc.value if isinstance(oc, OrientationCorrection) else None)


def embed_plain(models: Models, path: Path) -> Embedded:
    start = time.perf_counter()
    with Image.open(path) as img:
        pixels = np.ascontiguousarray(np.asarray(img.convert("RGB"), dtype=np.uint8))
    dets = models.hog(pixels, 1)
    if len(dets) == 0:
        return Embedded(None, 0, time.perf_counter() - start)
    largest = max(dets, key=lambda r: r.width() * r.height())
    shape = models.shape5(pixels, largest)
    vector = models.recognizer.compute_face_descriptor(pixels, shape)
    return Embedded(np.asarray(vector, dtype=np.float64), len(dets), time.perf_counter() - start)


# Metrics ------------------------------------------------------------------------------

def metrics(genuine: FloatArray, impostor: FloatArray) -> dict[str, Any]:
    """ROC figures for distances (a pair matches when its distance is small).
    Infinite distances stand for pairs an engine could not score (never a match)."""
    out: dict[str, Any] = {"genuine": int(genuine.size), "impostor": int(impostor.size)}
    if genuine.size == 0 or impostor.size == 0:
        return out | {"auc": math.nan, "eer": math.nan, "fnmr_at_fmr_1e-2": math.nan,
                      "fnmr_at_fmr_1e-3": math.nan}
    imp = np.sort(impostor)
    left = np.searchsorted(imp, genuine, side="left")
    right = np.searchsorted(imp, genuine, side="right")
    # AUC = P(genuine distance < impostor distance) + 0.5 P(equal).
    out["auc"] = float(np.mean((imp.size - right + 0.5 * (right - left)) / imp.size))
    thresholds = np.unique(np.concatenate([genuine, impostor, [-np.inf]]))
    thresholds = thresholds[np.isfinite(thresholds) | (thresholds < 0)]
    fmr = np.searchsorted(imp, thresholds, side="right") / imp.size
    gen = np.sort(genuine)
    fnmr = 1.0 - np.searchsorted(gen, thresholds, side="right") / gen.size
    i = int(np.argmin(np.abs(fmr - fnmr)))
    out["eer"] = float((fmr[i] + fnmr[i]) / 2.0)
    for label, target in (("fnmr_at_fmr_1e-2", 1e-2), ("fnmr_at_fmr_1e-3", 1e-3)):
        ok = fmr <= target
        out[label] = float(fnmr[ok].min()) if ok.any() else 1.0
    out["fmr_resolution"] = 1.0 / imp.size
    return out


def distances(emb: dict[str, Embedded], pairs: list[tuple[str, str, bool, str]],
              keep: set[tuple[str, str]] | None = None,
              ) -> tuple[list[float], list[bool], list[str]]:
    ds, same, groups = [], [], []
    for a, b, s, g in pairs:
        if keep is not None and (a, b) not in keep:
            continue
        ea, eb = emb[a].descriptor, emb[b].descriptor
        d = float(np.linalg.norm(ea - eb)) if ea is not None and eb is not None else math.inf
        ds.append(d)
        same.append(s)
        groups.append(g)
    return ds, same, groups


def grouped_metrics(ds: list[float], same: list[bool], groups: list[str]) -> dict[str, Any]:
    arr, sm = np.asarray(ds), np.asarray(same)
    result = {"all": metrics(arr[sm], arr[~sm])}
    gr = np.asarray(groups)
    for g in sorted(set(groups)):
        mask = gr == g
        result[g] = metrics(arr[mask & sm], arr[mask & ~sm])
    return result


# Pair sets ----------------------------------------------------------------------------

def build_pairs(root: Path) -> tuple[PairSet, PairSet]:
    listed = PairSet("PAIRS.csv")
    for row in read_csv(root / "PAIRS.csv"):
        listed.pairs.append((row["file_a"], row["file_b"], row["same"] == "1",
                             source_of(row["file_a"])))
    labelled = [(r["file"], r["identity"]) for r in read_csv(root / "LABELS.csv")
                if r["identity"] and r["identity"] != "none"]
    every = PairSet("LABELS.csv all pairs")
    for (fa, ia), (fb, ib) in itertools.combinations(labelled, 2):
        group = source_of(fa) if source_of(fa) == source_of(fb) else "cross-source"
        every.pairs.append((fa, fb, ia == ib, group))
    return listed, every


# Detector confidence fit --------------------------------------------------------------

def detector_scores(root: Path, models: Models, settings: Settings) -> dict[str, Any]:
    """Scores of faces and of false detections found with a lowered threshold.

    Images with a known face count N >= 1 (not rotated): the N best detections are
    taken as faces, the rest as false; no_face images: every detection is false."""
    faces: list[float] = []
    false: list[float] = []
    variances: list[float] = []
    for row in read_csv(root / "IMAGE_NOTES.csv"):
        tags = row["tags"]
        if "invalid" in tags or "rotated" in tags or row["faces"] == "":
            continue
        count = int(row["faces"])
        image = decode_image((root / row["file"]).read_bytes(),
                             settings.with_overrides(image_formats=KNOWN_FORMATS))
        small, _ = downscale(image.pixels, settings.detect_max_side)
        found = sorted(raw_detections(small, models, settings.upsample, -1.0),
                       key=lambda d: d[4], reverse=True)
        faces.extend(d[4] for d in found[:count])
        false.extend(d[4] for d in found[count:])
        for left, top, right, bottom, _score in found[:count]:
            variances.append(attrs.face_laplacian_variance(small, left, top, right + 1, bottom + 1))
    slope, midpoint = fit_logistic(faces, false)
    return {
        "faces": len(faces), "false_detections": len(false),
        "min_face_score": min(faces), "max_false_score": max(false),
        "false_at_or_above_threshold": sum(1 for s in false if s >= HOG_SCORE_THRESHOLD),
        "faces_below_threshold": sum(1 for s in faces if s < HOG_SCORE_THRESHOLD),
        "fitted_slope": slope, "fitted_midpoint": midpoint,
        "confidence_at_threshold": score_to_confidence(HOG_SCORE_THRESHOLD, "hog"),
        "confidence_at_score_1": score_to_confidence(1.0, "hog"),
        "median_face_laplacian_variance": float(np.median(variances)) if variances else None,
    }


def fit_logistic(positive: list[float], negative: list[float],
                 penalty: float = 1.0) -> tuple[float, float]:
    """L2-penalised (on the slope) logistic regression of face/not-face on the score,
    by Newton's method; returns (slope, midpoint)."""
    x = np.asarray(positive + negative, dtype=np.float64)
    y = np.asarray([1.0] * len(positive) + [0.0] * len(negative))
    a, b = 1.0, 0.0
    for _ in range(100):
        p = 1.0 / (1.0 + np.exp(-(a * x + b)))
        w = p * (1.0 - p)
        grad = np.array([np.sum((p - y) * x) + penalty * a, np.sum(p - y)])
        hess = np.array([[np.sum(w * x * x) + penalty, np.sum(w * x)],
                         [np.sum(w * x), np.sum(w) + 1e-9]])
        step = np.linalg.solve(hess, grad)
        a, b = a - step[0], b - step[1]
        if np.abs(step).max() < 1e-10:
            break
    return float(a), float(-b / a)


# Main ---------------------------------------------------------------------------------

def login_threshold(sim_map: SimilarityMap, ds: list[float], same: list[bool],
                    target: float = 1e-3) -> dict[str, Any]:
    """Smallest similarity threshold (0.1 steps) whose FMR over the impostor pairs is
    at most `target`, and the FNMR there."""
    imp = sorted((sim_map.similarity(d) for d, s in zip(ds, same, strict=True)
                  if not s and math.isfinite(d)), reverse=True)
    gen = [sim_map.similarity(d) if math.isfinite(d) else 0.0
           for d, s in zip(ds, same, strict=True) if s]
    n = len([1 for s in same if not s])
    allowed = int(target * n)
    threshold = 0.0
    if allowed < len(imp):
        threshold = math.floor(imp[allowed] * 10.0 + 1.0) / 10.0
    fmr = sum(1 for s in imp if s >= threshold) / n
    fnmr = sum(1 for s in gen if s < threshold) / len(gen)
    return {"target_fmr": target, "impostor_pairs": n, "threshold": threshold,
            "measured_fmr": fmr, "false_matches": sum(1 for s in imp if s >= threshold),
            "fnmr": fnmr,
            "model_similarity_for_target": nines_to_similarity(-math.log10(target))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--alignment", choices=("68", "5"), default=DESCRIPTOR_ALIGNMENT)
    parser.add_argument("--jitters", type=int, default=DESCRIPTOR_JITTERS)
    parser.add_argument("--upsample", type=int, default=Settings().upsample)
    parser.add_argument("--no-orientation-search", action="store_true")
    parser.add_argument("--detect-strategy", choices=("fixed", "adaptive"), default="fixed")
    parser.add_argument("--output", default="accuracy.json")
    args = parser.parse_args()

    root = faces_dir()
    settings = Settings(image_formats=KNOWN_FORMATS, upsample=args.upsample,
                        orientation_search=not args.no_orientation_search,
                        detect_strategy=args.detect_strategy)
    default_config = (args.alignment == DESCRIPTOR_ALIGNMENT and args.jitters == DESCRIPTOR_JITTERS
                      and args.upsample == Settings().upsample and not args.no_orientation_search
                      and args.detect_strategy == Settings().detect_strategy)
    engine = LocalEngine(settings, alignment=args.alignment, jitters=args.jitters)
    models = load_models("hog")
    listed, every = build_pairs(root)
    files = sorted({p for ps in (listed, every) for a, b, _, _ in ps.pairs for p in (a, b)})

    ours: dict[str, Embedded] = {}
    plain: dict[str, Embedded] = {}
    for i, file in enumerate(files, 1):
        ours[file] = embed_ours(engine, root / file, settings)
        plain[file] = embed_plain(models, root / file)
        print(f"\r{i}/{len(files)} images embedded", end="", flush=True)
    print()

    report: dict[str, Any] = {
        "config": {"engine": engine.model_version, "alignment": args.alignment,
                   "jitters": args.jitters, "upsample": args.upsample,
                   "detect_strategy": args.detect_strategy,
                   "descriptor_runtime": settings.descriptor_runtime,
                   "orientation_search": settings.orientation_search,
                   "detect_max_side": settings.detect_max_side,
                   "baseline": "plain dlib: no EXIF, frontal detector upsample 1 on the full "
                               "image, 5-point shape, same ResNet, largest face"},
        "environment": environment(),
        "images": {},
    }
    image_rows = []
    for file in files:
        o, p = ours[file], plain[file]
        report["images"][file] = {
            "ours": {"faces": o.faces, "seconds": round(o.seconds, 4),
                     "orientation": o.orientation, "error": o.error},
            "plain": {"faces": p.faces, "seconds": round(p.seconds, 4)},
        }
        if o.descriptor is None or p.descriptor is None or o.faces > 1 or p.faces > 1:
            image_rows.append([file, o.faces, o.orientation or "", o.error or "", p.faces])
    print("\nImages where an engine found no face or several faces (largest face used)")
    print(table(["file", "ours faces", "ours orientation", "ours error", "plain faces"],
                image_rows))
    report["seconds_per_image"] = {
        "ours_mean": float(np.mean([e.seconds for e in ours.values()])),
        "plain_mean": float(np.mean([e.seconds for e in plain.values()])),
    }

    results: dict[str, Any] = {}
    for pairset in (listed, every):
        both = {(a, b) for a, b, _, _ in pairset.pairs
                if ours[a].descriptor is not None and ours[b].descriptor is not None
                and plain[a].descriptor is not None and plain[b].descriptor is not None}
        skipped: dict[str, int] = {}
        for a, b, _, _ in pairset.pairs:
            for label, emb in (("ours", ours), ("plain", plain)):
                if emb[a].descriptor is None or emb[b].descriptor is None:
                    skipped[f"{label}: no face in an image"] = skipped.get(
                        f"{label}: no face in an image", 0) + 1
        entry: dict[str, Any] = {"pairs": len(pairset.pairs), "scored_by_both": len(both),
                                 "skipped": skipped}
        for label, emb in (("ours", ours), ("plain", plain)):
            entry[label] = {
                "common_pairs": grouped_metrics(*distances(emb, pairset.pairs, both)),
                "all_pairs_missing_is_non_match": grouped_metrics(*distances(emb, pairset.pairs)),
            }
        results[pairset.name] = entry
        for mode in ("common_pairs", "all_pairs_missing_is_non_match"):
            rows = []
            for group in entry["ours"][mode]:
                for label in ("ours", "plain"):
                    m = entry[label][mode][group]
                    rows.append([group, label, m["genuine"], m["impostor"], m.get("auc"),
                                 m.get("eer"), m.get("fnmr_at_fmr_1e-2"),
                                 m.get("fnmr_at_fmr_1e-3")])
            print(f"\n{pairset.name}: {len(pairset.pairs)} pairs, {len(both)} scored by both; "
                  f"skipped {skipped or 'none'}; {mode.replace('_', ' ')}")
            print(table(["source", "engine", "genuine", "impostor", "AUC", "EER",
                         "FNMR@FMR1e-2", "FNMR@FMR1e-3"], rows))
    report["results"] = results

    # Calibration on every LABELS.csv pair our engine scored.
    ds, same, _ = distances(ours, every.pairs)
    impostor = [d for d, s in zip(ds, same, strict=True) if not s and math.isfinite(d)]
    genuine = [d for d, s in zip(ds, same, strict=True) if s and math.isfinite(d)]
    calibration = calibration_document(
        engine.model_version, impostor, genuine,
        "every different-identity pair of the shared data set's LABELS.csv (bench/accuracy.py)")
    report["calibration"] = calibration
    curve = calibration["curve"]
    print(f"\nCalibration (LABELS.csv pairs): {len(curve['anchors'])} anchors, "
          f"normal-tail sigma below {curve['sigma_low']:.4f}, "
          f"slope above {curve['slope_high']:.3f} (log10 FMR per unit distance)")
    print(table(["target FMR", "distance", "measured FMR", "model FMR", "similarity", "FNMR"],
                [[r["target_fmr"], r["distance"], r["measured_fmr"], r["model_fmr"],
                  r["similarity"], r["fnmr"]] for r in calibration["table"]]))
    print(table(["similarity", "distance", "model FMR", "measured FMR", "false matches",
                 "FNMR", "extrapolated"],
                [[r["similarity"], r["distance"], r["model_fmr"], r["measured_fmr"],
                  r["false_matches"], r["fnmr"], "yes" if r["extrapolated"] else ""]
                 for r in calibration["similarity_meaning"]]))
    print(f"genuine-pair similarity quantiles: {calibration['genuine_similarity']}")
    anchor = next(r for r in calibration["similarity_meaning"]
                  if r["similarity"] == ANCHOR_SIMILARITY)
    # The scale's promise: the default threshold 80 meets FMR <= 1e-3 on the measured pairs.
    print(f"measured FMR at {ANCHOR_SIMILARITY:g}: {anchor['measured_fmr']} "
          f"({'meets' if anchor['measured_fmr'] <= 1e-3 else 'DOES NOT MEET'} 1e-3)")
    if default_config:
        CALIBRATION_FILE.write_text(json.dumps(calibration, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {CALIBRATION_FILE}")
    sim_map = SimilarityMap.from_document(calibration)
    login = login_threshold(sim_map, ds, same)
    report["login_threshold"] = login
    print(f"\nSimilarity threshold for FMR <= 1e-3 over {login['impostor_pairs']} "
          f"different-identity LABELS.csv pairs: {login['threshold']} "
          f"(measured FMR {login['measured_fmr']:.5f}, FNMR {login['fnmr']:.4f})")

    detector = detector_scores(root, models, settings)
    report["detector"] = detector
    print("\nHOG detector scores (threshold lowered to -1):")
    print(json.dumps(detector, indent=2))
    print(f"\nseconds per image: ours {report['seconds_per_image']['ours_mean']:.3f}, "
          f"plain {report['seconds_per_image']['plain_mean']:.3f}")
    path = write_json(args.output, report)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
