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
import itertools
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from faceapi.adapters.engines.local import LocalEngine
from faceapi.adapters.engines.local.detection import find_faces
from faceapi.adapters.engines.local.engine import CHIP_PADDING
from faceapi.adapters.images import decode_image
from faceapi.adapters.policy_files import load_policies
from faceapi.config import KNOWN_FORMATS, Settings

if __package__ in (None, ""):  # run as a script (`python bench/parity.py`)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import REPO, RESULTS, environment, faces_dir, percentile, read_csv, write_json

TOLERANCE = 1e-5
COMMAND = ".venv/bin/python -m bench.parity"


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
    args = parser.parse_args()
    root = faces_dir()
    files = [row["file"] for row in read_csv(root / "IMAGE_NOTES.csv")]
    if args.limit:
        files = files[:args.limit]
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
        images = skipped = 0
        for file in files:
            try:
                image = decode_image((root / file).read_bytes(), settings)
            except Exception:  # the set holds broken files on purpose
                skipped += 1
                continue
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
        "images": len(files), "images_with_faces": images, "undecodable": skipped,
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
