"""Parity of the onnx descriptor runtime with dlib over the shared face data set.

Run:  .venv/bin/python -m bench.parity              (about 2 minutes on 2 CPUs)
      .venv/bin/python -m bench.parity --limit 10   (a quick look while developing)

For every image of IMAGE_NOTES.csv that decodes (our intake, every known format), the
engine's detection (HOG, upsample 1, orientation search) finds the faces; each face gets
dlib's descriptor (`compute_face_descriptor` on the image and the 68-point shape: what
FACEAPI_DESCRIPTOR_RUNTIME=dlib runs) and the onnx runtime's (the converted ResNet on the
chips `dlib.get_face_chip` cuts, all faces of an image in one batch). Reported: the
largest absolute difference of any descriptor value, and of any similarity; for every
pair of faces and every threshold of a shipped policy (min_similarity, band edges),
whether the decision (similarity >= threshold) differs; the pair closest to a threshold;
and the descriptor time per face both ways (single-threaded onnxruntime, this machine).
Writes bench/results/parity.json and parity.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from faceapi.adapters.engines.local import LocalEngine
from faceapi.adapters.engines.local.detection import find_faces
from faceapi.adapters.engines.local.engine import CHIP_PADDING
from faceapi.adapters.images import decode_image
from faceapi.adapters.policy_files import load_policies
from faceapi.config import KNOWN_FORMATS, Settings
from faceapi.domain.errors import FaceApiError
from faceapi.domain.images import DecodedImage

if __package__ in (None, ""):  # run as a script (`python bench/parity.py`)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import REPO, RESULTS, environment, faces_dir, percentile, read_csv, write_json

TOLERANCE = 1e-5
COMMAND = ".venv/bin/python -m bench.parity"


def noted_files(root: Path, limit: int | None) -> list[str]:
    """The files of IMAGE_NOTES.csv (every image of the shared set), the first `limit`."""
    files = [row["file"] for row in read_csv(root / "IMAGE_NOTES.csv")]
    return files[:limit] if limit else files


def decoded(root: Path, files: list[str], settings: Settings,
            undecodable: list[str]) -> Iterator[tuple[str, DecodedImage]]:
    """Each file of `files` that our intake decodes, with its image; the others are
    added to `undecodable` (the set holds broken files on purpose)."""
    for file in files:
        try:
            image = decode_image((root / file).read_bytes(), settings)
        except Exception:  # any refusal: these files are there to be refused
            undecodable.append(file)
            continue
        yield file, image


def report(name: str, lines: list[str], *, failed: bool) -> None:
    """Write and print a Markdown report; exit 1 when it found a difference."""
    (RESULTS / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    if failed:
        sys.exit(1)


def thresholds() -> list[float]:
    found: set[float] = set()
    for policy in load_policies(REPO / "policies").values():
        found.add(policy.min_similarity)
        if policy.human_review.band is not None:
            found.update(policy.human_review.band)
    return sorted(found)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=0, help="only the first N images")
    parser.add_argument("--detect-strategy", choices=("adaptive",), default=None,
                        help="compare FACEAPI_DETECT_STRATEGY=adaptive with fixed instead")
    parser.add_argument("--detect-threads", action="store_true",
                        help="compare FACEAPI_DETECT_THREADS=2 with 1 instead")
    parser.add_argument("--hog-split", action="store_true",
                        help="compare the HOG scan split over two threads with dlib's")
    args = parser.parse_args()
    if args.hog_split:
        hog_split_parity(args)
        return
    if args.detect_threads:
        threads_parity(args)
        return
    if args.detect_strategy:
        strategy_parity(args)
        return
    root = faces_dir()
    files = noted_files(root, args.limit)
    with tempfile.TemporaryDirectory() as data_dir:
        settings = Settings(env="test", image_formats=KNOWN_FORMATS, data_dir=Path(data_dir))
        engine = LocalEngine(settings)
        if engine.descriptor_runtime != "onnx":
            sys.exit("the engine did not start the onnx runtime")
        models: Any = engine._models
        ref: list[np.ndarray] = []
        onnx: list[np.ndarray] = []
        dlib_ms: list[float] = []
        onnx_ms: list[float] = []  # per face, batched per image
        images = 0
        undecodable: list[str] = []
        for _file, image in decoded(root, files, settings, undecodable):
            found = find_faces(image.pixels, models, upsample=settings.upsample,
                               max_side=settings.detect_max_side, orientation_search=True)
            faces = list(found.faces)
            if not faces:
                continue
            images += 1
            if len(onnx) == 0:
                engine.descriptors(found.pixels, faces[:1])  # the session, made once
            for face in faces:
                start = time.perf_counter()
                vector = models.recognizer.compute_face_descriptor(
                    found.pixels, face.shape68, 1, CHIP_PADDING)
                dlib_ms.append((time.perf_counter() - start) * 1000)
                ref.append(np.asarray(vector, dtype=np.float64))
            start = time.perf_counter()
            batch = engine.descriptors(found.pixels, faces)
            onnx_ms += [(time.perf_counter() - start) * 1000 / len(faces)] * len(faces)
            onnx += [np.asarray(v, dtype=np.float64) for v in batch]
        a, b = np.array(ref), np.array(onnx)
        diff = np.abs(a - b)
        levels = thresholds()
        changed = dict.fromkeys(levels, 0)
        max_sim_diff = 0.0
        closest: tuple[float, float, float] = (float("inf"), 0.0, 0.0)  # gap, level, sim
        pairs = list(itertools.combinations(range(len(a)), 2))
        for i, j in pairs:
            s_ref = engine.similarity(tuple(a[i]), tuple(a[j]))
            s_onnx = engine.similarity(tuple(b[i]), tuple(b[j]))
            max_sim_diff = max(max_sim_diff, abs(s_ref - s_onnx))
            for level in levels:
                if (s_ref >= level) != (s_onnx >= level):
                    changed[level] += 1
                gap = abs(s_ref - level)
                if gap < closest[0]:
                    closest = (gap, level, s_ref)
    result: dict[str, Any] = {
        "command": COMMAND + (f" --limit {args.limit}" if args.limit else ""),
        "environment": environment() | {"onnxruntime": _ort_version(), "onnx_threads": 1},
        "images": len(files), "images_with_faces": images, "undecodable": len(undecodable),
        "faces": len(a), "pairs": len(pairs),
        "max_abs_descriptor_difference": float(diff.max()),
        "mean_abs_descriptor_difference": float(diff.mean()),
        "p99_per_face_max_difference": percentile(diff.max(axis=1).tolist(), 99),
        "tolerance": TOLERANCE,
        "within_tolerance": bool(diff.max() <= TOLERANCE),
        "max_abs_similarity_difference": max_sim_diff,
        "policy_thresholds": levels,
        "decisions_changed": {str(k): v for k, v in changed.items()},
        "closest_pair_to_a_threshold": {"gap": closest[0], "threshold": closest[1],
                                        "similarity": closest[2]},
        "descriptor_ms_per_face": {
            "dlib": {"p50": percentile(dlib_ms, 50), "p95": percentile(dlib_ms, 95)},
            "onnx_batched_per_image": {"p50": percentile(onnx_ms, 50),
                                       "p95": percentile(onnx_ms, 95)},
        },
    }
    print(f"wrote {write_json('parity.json', result)}")
    (RESULTS / "parity.md").write_text(markdown(result), encoding="utf-8")
    print(markdown(result))


def _iou(a: Any, b: Any) -> float:
    left, top = max(a.left, b.left), max(a.top, b.top)
    right, bottom = min(a.right, b.right), min(a.bottom, b.bottom)
    inter = max(0.0, right - left) * max(0.0, bottom - top)
    union = a.area + b.area - inter
    return inter / union if union > 0 else 0.0


def strategy_parity(args: argparse.Namespace) -> None:
    """The answers of FACEAPI_DETECT_STRATEGY=adaptive against fixed (both on onnx):
    faces found per image, boxes (IoU of matched faces), the descriptors of matched
    faces, and, with each image's largest face, every pair's decision at every policy
    threshold. Writes bench/results/parity_adaptive.json and .md."""
    root = faces_dir()
    files = noted_files(root, args.limit)
    with tempfile.TemporaryDirectory() as data_dir:
        settings = Settings(env="test", image_formats=KNOWN_FORMATS, data_dir=Path(data_dir))
        engine = LocalEngine(settings)
        models: Any = engine._models
        count_changes: list[dict[str, Any]] = []
        ious: list[float] = []
        diffs: list[float] = []
        largest: dict[str, dict[str, np.ndarray]] = {"fixed": {}, "adaptive": {}}
        seconds: dict[str, list[float]] = {"fixed": [], "adaptive": []}
        for file in files:
            try:
                image = decode_image((root / file).read_bytes(), settings)
            except FaceApiError:  # the set holds broken files on purpose
                continue
            found = {}
            for name, adaptive in (("fixed", False), ("adaptive", True)):
                start = time.perf_counter()
                found[name] = find_faces(image.pixels, models, upsample=settings.upsample,
                                         max_side=settings.detect_max_side,
                                         orientation_search=True, adaptive=adaptive)
                seconds[name].append(time.perf_counter() - start)
            fixed, adaptive_found = list(found["fixed"].faces), list(found["adaptive"].faces)
            if len(fixed) != len(adaptive_found):
                count_changes.append({"file": file, "fixed": len(fixed),
                                      "adaptive": len(adaptive_found)})
            if not fixed or not adaptive_found:
                continue
            vec_f = engine.descriptors(found["fixed"].pixels, fixed)
            vec_a = engine.descriptors(found["adaptive"].pixels, adaptive_found)
            for i, face in enumerate(fixed):
                j = max(range(len(adaptive_found)), key=lambda k: _iou(face, adaptive_found[k]))
                overlap = _iou(face, adaptive_found[j])
                if overlap > 0.3:
                    ious.append(overlap)
                    diffs.append(float(np.abs(np.subtract(vec_f[i], vec_a[j])).max()))
            for name, faces, vecs in (("fixed", fixed, vec_f), ("adaptive", adaptive_found, vec_a)):
                k = max(range(len(faces)), key=lambda n: faces[n].area)
                largest[name][file] = np.asarray(vecs[k], dtype=np.float64)
        common = sorted(set(largest["fixed"]) & set(largest["adaptive"]))
        levels = thresholds()
        changed = dict.fromkeys(levels, 0)
        sim_diffs: list[float] = []
        changed_pairs: list[dict[str, Any]] = []
        for a, b in itertools.combinations(common, 2):
            s_f = engine.similarity(tuple(largest["fixed"][a]), tuple(largest["fixed"][b]))
            s_a = engine.similarity(tuple(largest["adaptive"][a]),
                                    tuple(largest["adaptive"][b]))
            sim_diffs.append(abs(s_f - s_a))
            for level in levels:
                if (s_f >= level) != (s_a >= level):
                    changed[level] += 1
                    changed_pairs.append({"a": a, "b": b, "threshold": level,
                                          "fixed": round(s_f, 3), "adaptive": round(s_a, 3)})
    pairs = len(common) * (len(common) - 1) // 2
    result: dict[str, Any] = {
        "command": COMMAND + " --detect-strategy adaptive"
                   + (f" --limit {args.limit}" if args.limit else ""),
        "environment": environment(),
        "images": len(files), "face_count_changes": count_changes,
        "matched_faces": len(diffs),
        "matched_box_iou": {"min": min(ious, default=float("nan")),
                            "p50": percentile(ious, 50)},
        "matched_descriptor_max_abs_difference": {"max": max(diffs, default=float("nan")),
                                                   "p50": percentile(diffs, 50)},
        "tolerance": TOLERANCE,
        "largest_face_pairs": pairs,
        "max_abs_similarity_difference": max(sim_diffs, default=0.0),
        "p50_abs_similarity_difference": percentile(sim_diffs, 50),
        "policy_thresholds": levels,
        "decisions_changed": {str(k): v for k, v in changed.items()},
        "changed_pairs": changed_pairs,
        "detection_seconds_per_image": {
            name: {"p50": percentile(v, 50), "p95": percentile(v, 95),
                   "mean": sum(v) / len(v) if v else float("nan")}
            for name, v in seconds.items()},
    }
    print(f"wrote {write_json('parity_adaptive.json', result)}")
    (RESULTS / "parity_adaptive.md").write_text(strategy_markdown(result), encoding="utf-8")
    print(strategy_markdown(result))


def strategy_markdown(r: dict[str, Any]) -> str:
    det = r["detection_seconds_per_image"]
    counts = ", ".join(f"{c['file'].rsplit('/', 1)[-1]} {c['fixed']}->{c['adaptive']}"
                       for c in r["face_count_changes"]) or "none"
    desc = r["matched_descriptor_max_abs_difference"]
    facts = [
        ("images", r["images"]),
        ("images whose face count changed (fixed->adaptive)",
         f"{len(r['face_count_changes'])}: {counts}"),
        ("matched faces; box IoU min / p50",
         f"{r['matched_faces']}; {r['matched_box_iou']['min']:.3f} / "
         f"{r['matched_box_iou']['p50']:.3f}"),
        ("matched faces' largest descriptor difference max / p50",
         f"{desc['max']:.3g} / {desc['p50']:.3g} (parity tolerance {r['tolerance']:g})"),
        ("largest-face pairs", r["largest_face_pairs"]),
        ("similarity difference max / p50",
         f"{r['max_abs_similarity_difference']:.3g} / {r['p50_abs_similarity_difference']:.3g}"),
        ("detection per image p50 / p95 / mean, fixed",
         f"{det['fixed']['p50'] * 1000:.0f} / {det['fixed']['p95'] * 1000:.0f} / "
         f"{det['fixed']['mean'] * 1000:.0f} ms"),
        ("detection per image p50 / p95 / mean, adaptive",
         f"{det['adaptive']['p50'] * 1000:.0f} / {det['adaptive']['p95'] * 1000:.0f} / "
         f"{det['adaptive']['mean'] * 1000:.0f} ms"),
    ]
    lines = ["# Detection strategy adaptive vs fixed: what changes", "",
             f"`{r['command']}` ({r['environment']['time_utc']})", "",
             "| | |", "|---|---|", *[f"| {k} | {v} |" for k, v in facts], "",
             "Largest-face pair decisions that differ, per shipped policy threshold:", "",
             "| threshold | pairs changed |", "|---|---|",
             *[f"| {level} | {n} |" for level, n in r["decisions_changed"].items()]]
    return "\n".join(lines) + "\n"


def _detection_key(found: Any) -> tuple[Any, ...]:
    """Everything a detection hands on: the image it refers to, the boxes, scores,
    confidences, 68 points, and the orientation."""
    return (found.pixels.shape, found.orientation_correction,
            tuple((f.left, f.top, f.right, f.bottom, f.score, f.confidence,
                   f.points.tobytes()) for f in found.faces))


def threads_parity(args: argparse.Namespace) -> None:
    """FACEAPI_DETECT_THREADS=2 against 1: every image detected on the helper thread
    (its own detector instance) and in the calling thread must give bit-identical faces
    (boxes, scores, 68 points, orientation) and descriptors; and compare_faces on pairs
    of images (each image as source, the next one as target; then with the roles
    swapped) must give equal Comparisons or the same error, with both settings.
    Writes bench/results/parity_threads.json and .md."""
    from faceapi.adapters.engines.local.parallel import thread_models

    root = faces_dir()
    files = noted_files(root, args.limit)
    with tempfile.TemporaryDirectory() as data_dir:
        base = Settings(env="test", image_formats=KNOWN_FORMATS, data_dir=Path(data_dir))
        one = LocalEngine(dataclasses.replace(base, detect_threads=1))
        two = LocalEngine(dataclasses.replace(base, detect_threads=2))
        undecodable: list[str] = []
        images = list(decoded(root, files, base, undecodable))
        skipped = len(undecodable)
        detection_diff: list[str] = []
        descriptor_diff: list[str] = []
        faces = 0
        with ThreadPoolExecutor(max_workers=1) as helper:
            for file, image in images:
                main_found = one._find(image)
                helper_found = helper.submit(
                    lambda im=image: two._find(im, thread_models(two._models))).result()
                if _detection_key(main_found) != _detection_key(helper_found):
                    detection_diff.append(file)
                    continue
                faces += len(main_found.faces)
                if main_found.faces and (
                        one.descriptors(main_found.pixels, list(main_found.faces))
                        != two.descriptors(helper_found.pixels, list(helper_found.faces))):
                    descriptor_diff.append(file)
        compare_diff: list[str] = []
        outcomes: dict[str, int] = {}
        pairs = [(images[i], images[(i + 1) % len(images)]) for i in range(len(images))]
        pairs += [(b, a) for a, b in pairs]
        times = {"1": 0.0, "2": 0.0}
        # Pairs of very different sizes take the in-turn path (each scan split), the
        # others the side-by-side one: both are compared with one thread here.
        in_turn = sum(two._in_turn(a, b) for (_, a), (_, b) in pairs)
        for (fa, a), (fb, b) in pairs:
            results = []
            for name, engine in (("1", one), ("2", two)):
                start = time.perf_counter()
                try:
                    results.append(engine.compare_faces(a, b, 80.0))
                except FaceApiError as exc:
                    results.append(type(exc).__name__)
                times[name] += time.perf_counter() - start
            kind = results[0] if isinstance(results[0], str) else "compared"
            outcomes[kind] = outcomes.get(kind, 0) + 1
            if results[0] != results[1]:
                compare_diff.append(f"{fa} vs {fb}")
    result: dict[str, Any] = {
        "command": COMMAND + " --detect-threads" + (f" --limit {args.limit}" if args.limit else ""),
        "environment": environment(),
        "images": len(files), "decoded": len(images), "undecodable": skipped, "faces": faces,
        "detections_differing": detection_diff, "descriptors_differing": descriptor_diff,
        "compare_pairs": len(pairs), "compare_outcomes": outcomes,
        "compare_pairs_in_turn": in_turn, "comparisons_differing": compare_diff,
        "compare_seconds_total": times,
    }
    print(f"wrote {write_json('parity_threads.json', result)}")
    md = ["# FACEAPI_DETECT_THREADS=2 vs 1: what changes", "",
          f"`{result['command']}` ({result['environment']['time_utc']}, "
          f"{result['environment']['processor_count']} CPUs)", "",
          "| | |", "|---|---|",
          f"| images (decoded / undecodable) | {len(files)} ({len(images)} / {skipped}) |",
          f"| faces detected | {faces} |",
          f"| detections differing (boxes, scores, 68 points, orientation; bit for bit) | "
          f"{len(detection_diff)} {detection_diff or ''} |",
          f"| descriptors differing (bit for bit) | {len(descriptor_diff)} "
          f"{descriptor_diff or ''} |",
          f"| compare_faces pairs (outcomes) | {len(pairs)} {outcomes} |",
          f"| of which detected in turn (very different sizes), the rest side by side | "
          f"{in_turn} |",
          f"| Comparisons differing (every field, or the error) | {len(compare_diff)} "
          f"{compare_diff or ''} |",
          f"| compare_faces total seconds, threads 1 / 2 (machine shared) | "
          f"{times['1']:.1f} / {times['2']:.1f} |"]
    report("parity_threads.md", md, failed=bool(detection_diff or descriptor_diff
                                                 or compare_diff))


def hog_split_parity(args: argparse.Namespace) -> None:
    """The HOG scan split over two threads (hog_split.py) against dlib's `run` on every
    decodable image of the set, as the engine detects it (downscaled to
    FACEAPI_DETECT_MAX_SIDE), at upsample 1 with the threshold as shipped and lowered by
    0.5 (many more windows, so the suppression between the halves is exercised): boxes,
    scores and filter indices must be equal, in order. Then the engine with
    FACEAPI_DETECT_THREADS=2 (split) and 1 (not): embed_faces must give equal Detections
    and descriptors. Times are wall-clock on this machine, median per image.
    Writes bench/results/parity_hog_split.json and .md."""
    import threading

    import dlib

    from faceapi.adapters.engines.local.detection import downscale
    from faceapi.adapters.engines.local.hog_split import SplitHog
    from faceapi.adapters.engines.local.parallel import PairRunner

    root = faces_dir()
    files = noted_files(root, args.limit)
    with tempfile.TemporaryDirectory() as data_dir:
        base = Settings(env="test", image_formats=KNOWN_FORMATS, data_dir=Path(data_dir))
        split = SplitHog(dlib.get_frontal_face_detector(), threading.Lock(),
                         PairRunner(2).helper)
        used: list[bool] = []
        split_merged = split.merged

        def merged(*a: Any) -> Any:
            used.append(True)
            return split_merged(*a)

        split.merged = merged  # type: ignore[method-assign, assignment]
        one = LocalEngine(dataclasses.replace(base, detect_threads=1))
        two = LocalEngine(dataclasses.replace(base, detect_threads=2))
        scans = halves = 0
        differing: list[str] = []
        engine_differing: list[str] = []
        full_ms: list[float] = []
        split_ms: list[float] = []
        faces = 0
        undecodable: list[str] = []
        for file, image in decoded(root, files, base, undecodable):
            pixels, _ = downscale(np.ascontiguousarray(image.pixels), base.detect_max_side)
            for adjust in (0.0, -0.5):
                used.clear()
                start = time.perf_counter()
                got = split.run(pixels, 1, adjust)
                split_ms.append((time.perf_counter() - start) * 1000)
                start = time.perf_counter()
                want = split.full(pixels, 1, adjust)
                full_ms.append((time.perf_counter() - start) * 1000)
                scans += 1
                halves += bool(used)
                if got != want:
                    differing.append(f"{file} (adjust {adjust})")
            a, b = one.embed_faces(image), two.embed_faces(image)
            faces += len(a[1])
            if a[0] != b[0] or [f.embedding for f in a[1]] != [f.embedding for f in b[1]]:
                engine_differing.append(file)
    result: dict[str, Any] = {
        "command": COMMAND + " --hog-split" + (f" --limit {args.limit}" if args.limit else ""),
        "environment": environment(),
        "images": len(files), "undecodable": len(undecodable), "scans": scans,
        "scans_split_in_halves": halves, "scans_differing": differing,
        "engine_faces": faces, "engine_differing": engine_differing,
        "median_ms": {"dlib_run": percentile(full_ms, 50), "split": percentile(split_ms, 50)},
    }
    print(f"wrote {write_json('parity_hog_split.json', result)}")
    md = ["# HOG scan split over two threads vs dlib's run", "",
          f"`{result['command']}` ({result['environment']['time_utc']}, "
          f"{result['environment']['processor_count']} CPUs)", "",
          "| | |", "|---|---|",
          f"| images (undecodable) | {len(files)} ({len(undecodable)}) |",
          f"| scans (upsample 1; threshold 0 and -0.5) / split in halves (the rest too "
          f"small to split) | {scans} / {halves} |",
          f"| scans differing (boxes, scores, filter indices, order) | {len(differing)} "
          f"{differing or ''} |",
          f"| engine embed_faces, detect threads 2 vs 1: faces / differing images "
          f"(Detection, descriptors) | {faces} / {len(engine_differing)} "
          f"{engine_differing or ''} |",
          f"| median ms per scan, dlib run / split (wall clock) | "
          f"{percentile(full_ms, 50):.0f} / {percentile(split_ms, 50):.0f} |"]
    report("parity_hog_split.md", md, failed=bool(differing or engine_differing))


def _ort_version() -> str:
    import onnxruntime

    return str(onnxruntime.__version__)


def markdown(r: dict[str, Any]) -> str:
    ms = r["descriptor_ms_per_face"]
    dlib_ms, onnx_ms = ms["dlib"], ms["onnx_batched_per_image"]
    closest = r["closest_pair_to_a_threshold"]
    env = r["environment"]
    facts = [
        ("images (with faces / undecodable)",
         f"{r['images']} ({r['images_with_faces']} / {r['undecodable']})"),
        ("faces", r["faces"]),
        ("max abs descriptor difference",
         f"{r['max_abs_descriptor_difference']:.3g} (tolerance {r['tolerance']:g})"),
        ("mean abs descriptor difference", f"{r['mean_abs_descriptor_difference']:.3g}"),
        ("max abs similarity difference", f"{r['max_abs_similarity_difference']:.3g}"),
        ("face pairs compared", r["pairs"]),
        ("closest pair to a threshold",
         f"similarity {closest['similarity']:.4f} vs {closest['threshold']}"),
        ("descriptor per face, dlib p50 / p95",
         f"{dlib_ms['p50']:.1f} / {dlib_ms['p95']:.1f} ms"),
        ("descriptor per face, onnx (1 thread, batched per image) p50 / p95",
         f"{onnx_ms['p50']:.1f} / {onnx_ms['p95']:.1f} ms"),
    ]
    lines = [
        "# Descriptor parity: onnxruntime vs dlib", "",
        f"`{r['command']}` ({env['time_utc']}, dlib {env['dlib']}, onnxruntime "
        f"{env['onnxruntime']}, {env['processor_count']} CPUs)", "",
        "| | |", "|---|---|", *[f"| {k} | {v} |" for k, v in facts], "",
        "Decisions (similarity >= threshold) that differ between the runtimes, per shipped",
        "policy threshold:", "",
        "| threshold | pairs changed |", "|---|---|",
        *[f"| {level} | {count} |" for level, count in r["decisions_changed"].items()],
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
