"""dlib's MMOD CNN face detector on onnxruntime (mmod_runtime.py) against dlib's own.

Run:  nice -n 10 .venv/bin/python -m bench.mmod [--side 400] [--dlib-budget 300]

1. Parity: the shared set's images (IMAGE_NOTES.csv, not `invalid`), each downscaled to
   at most --side px (INTER_AREA), through `dlib.cnn_face_detection_model_v1` and the
   onnx detector at upsample 0, in file order until dlib's CNN has used --dlib-budget
   seconds. Per image: same number of boxes, every box's corners within 1 px, the
   largest score difference.
2. Speed on those images: onnx CNN (1 and 2 intra-op threads) and HOG (upsample 0 and
   1), milliseconds per megapixel of input (total time / total megapixels).
3. Box adjustment for the 68-point shape predictor, trained on HOG's boxes: on every
   image at the `cnn` fallback's size (detection.py: longer side <= 800, up-sampled once
   when <= 400), faces found by both HOG (upsample 1) and the CNN (IoU >= 0.5) give the
   HOG box in CNN-box units (centre shift / side, side ratio: medians) fitted on the
   even-numbered images, and the landmark error (mean distance of the 68 points from
   those placed on the HOG box, over the inter-ocular distance) of landmarks placed on
   the raw and on the adjusted CNN box, measured on the odd-numbered ones.
4. The CNN's score-to-Confidence logistic, fitted as bench/accuracy.py fits HOG's
   (images with a known face count N, not rotated: the N best detections at threshold
   -1 are faces, the rest false; L2 penalty 1 on the slope), at the fallback's size.

Writes bench/results/mmod.json and .md.

With --faceless N, only: the `cnn` fallback's added time on face-less images (the set's
`none` images and a face-less 1600x1200 image), with and without it interleaved N times
in one process; writes bench/results/mmod_faceless.json and .md.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

import dlib
import numpy as np

from bench.accuracy import fit_logistic
from bench.common import RESULTS, environment, faces_dir, read_csv, table, write_json
from faceapi.adapters.engines.local import detection as det
from faceapi.adapters.engines.local.engine import LocalEngine, onnx_mmod_detector
from faceapi.adapters.engines.local.mmod_runtime import OnnxMmodDetector
from faceapi.adapters.engines.local.models import CNN_FILE, load_models
from faceapi.adapters.images import decode_image
from faceapi.config import KNOWN_FORMATS, Settings

Box = tuple[float, float, float, float, float]


def _iou(a: Box, b: Box) -> float:
    iw = min(a[2], b[2]) - max(a[0], b[0]) + 1
    ih = min(a[3], b[3]) - max(a[1], b[1]) + 1
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    area = (a[2] - a[0] + 1) * (a[3] - a[1] + 1) + (b[2] - b[0] + 1) * (b[3] - b[1] + 1)
    return float(inter / (area - inter))


def _geometry(box: Box) -> tuple[float, float, float]:
    """Centre x, centre y and side (mean of width and height) of an inclusive box."""
    w, h = box[2] - box[0] + 1, box[3] - box[1] + 1
    return (box[0] + box[2] + 1) / 2.0, (box[1] + box[3] + 1) / 2.0, (w + h) / 2.0


def _points(models: Any, pixels: np.ndarray, box: Box) -> np.ndarray:
    rect = dlib.rectangle(round(box[0]), round(box[1]), round(box[2]), round(box[3]))
    shape = models.shape68(pixels, rect)
    return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)


def _landmark_error(ref: np.ndarray, other: np.ndarray) -> float:
    interocular = float(np.linalg.norm(ref[36:42].mean(axis=0) - ref[42:48].mean(axis=0)))
    return float(np.linalg.norm(ref - other, axis=1).mean() / max(interocular, 1.0))


def _images(root: Path, settings: Settings) -> list[tuple[str, np.ndarray, dict[str, str]]]:
    out = []
    for row in read_csv(root / "IMAGE_NOTES.csv"):
        if "invalid" in row["tags"]:
            continue
        image = decode_image((root / row["file"]).read_bytes(), settings)
        out.append((row["file"], image.pixels, row))
    return out


def parity_and_speed(images: list[tuple[str, np.ndarray, dict[str, str]]], models: Any,
                     onnx1: OnnxMmodDetector, onnx2: OnnxMmodDetector, *, side: int,
                     budget: float) -> dict[str, Any]:
    reference = dlib.cnn_face_detection_model_v1(str(models.directory / CNN_FILE))
    spent = 0.0
    rows: list[dict[str, Any]] = []
    times: dict[str, float] = {"dlib_cnn": 0.0, "onnx_cnn_1_thread": 0.0,
                               "onnx_cnn_2_threads": 0.0, "hog_upsample_0": 0.0,
                               "hog_upsample_1": 0.0}
    megapixels = 0.0
    onnx1(np.zeros((64, 64, 3), np.uint8))  # sessions made before timing
    onnx2(np.zeros((64, 64, 3), np.uint8))
    for file, pixels, _ in images:
        if spent >= budget:
            break
        small, _ = det.downscale(pixels, side)
        small = np.ascontiguousarray(small)
        started = time.perf_counter()
        theirs = [(float(d.rect.left()), float(d.rect.top()), float(d.rect.right()),
                   float(d.rect.bottom()), float(d.confidence)) for d in reference(small, 0)]
        took = time.perf_counter() - started
        spent += took
        times["dlib_cnn"] += took
        started = time.perf_counter()
        ours = onnx1(small, 0)
        times["onnx_cnn_1_thread"] += time.perf_counter() - started
        started = time.perf_counter()
        onnx2(small, 0)
        times["onnx_cnn_2_threads"] += time.perf_counter() - started
        for upsample in (0, 1):
            started = time.perf_counter()
            models.hog(small, upsample)
            times[f"hog_upsample_{upsample}"] += time.perf_counter() - started
        megapixels += small.shape[0] * small.shape[1] / 1e6
        same_count = len(ours) == len(theirs)
        box_diff = max((max(abs(a[i] - b[i]) for i in range(4))
                        for a, b in zip(ours, theirs, strict=False)), default=0.0)
        score_diff = max((abs(a[4] - b[4]) for a, b in zip(ours, theirs, strict=False)),
                         default=0.0)
        rows.append({"file": file, "size": [int(small.shape[1]), int(small.shape[0])],
                     "dlib_faces": len(theirs), "onnx_faces": len(ours),
                     "same": bool(same_count and box_diff <= 1.0),
                     "max_box_diff_px": box_diff, "max_score_diff": score_diff,
                     "dlib_seconds": round(took, 3)})
    return {
        "images": len(rows), "side": side, "upsample": 0,
        "same_boxes": sum(1 for r in rows if r["same"]),
        "faces_dlib": sum(r["dlib_faces"] for r in rows),
        "faces_onnx": sum(r["onnx_faces"] for r in rows),
        "max_box_diff_px": max((r["max_box_diff_px"] for r in rows), default=0.0),
        "max_score_diff": max((r["max_score_diff"] for r in rows), default=0.0),
        "megapixels": round(megapixels, 3),
        "ms_per_megapixel": {k: round(v / megapixels * 1000, 1) for k, v in times.items()},
        "per_image": rows,
    }


def _fallback_copy(pixels: np.ndarray) -> tuple[np.ndarray, int]:
    copy, _ = det.downscale(pixels, det.CNN_FALLBACK_MAX_SIDE)
    upsample = 1 if max(copy.shape[:2]) <= det.CNN_UPSAMPLE_MAX_SIDE else 0
    return np.ascontiguousarray(copy), upsample


def box_fit_and_confidence(images: list[tuple[str, np.ndarray, dict[str, str]]],
                           models: Any, onnx1: OnnxMmodDetector) -> dict[str, Any]:
    pairs: list[tuple[int, np.ndarray, Box, Box]] = []  # image index, copy, hog, cnn
    faces: list[float] = []
    false: list[float] = []
    for index, (_, pixels, row) in enumerate(images):
        copy, upsample = _fallback_copy(pixels)
        if min(copy.shape[:2]) < det.MIN_DETECT_SIDE:
            continue
        found = sorted(onnx1(copy, upsample, -1.0), key=lambda d: d[4], reverse=True)
        if row["faces"] != "" and "rotated" not in row["tags"]:
            count = int(row["faces"])
            faces.extend(d[4] for d in found[:count])
            false.extend(d[4] for d in found[count:])
        cnn = [d for d in found if d[4] > 0.0]
        rects, scores, _ = models.hog.run(copy, 1, 0.0)
        hog = [(float(r.left()), float(r.top()), float(r.right()), float(r.bottom()), float(s))
               for r, s in zip(rects, scores, strict=True)]
        for h in hog:
            best = max(cnn, key=lambda c, h=h: _iou(h, c), default=None)
            if best is not None and _iou(h, best) >= 0.5:
                pairs.append((index, copy, h, best))
    fit = [p for p in pairs if p[0] % 2 == 0]
    held = [p for p in pairs if p[0] % 2 == 1]
    shifts = []
    for _, _, h, c in fit:
        hx, hy, hs = _geometry(h)
        cx, cy, cs = _geometry(c)
        shifts.append(((hx - cx) / cs, (hy - cy) / cs, hs / cs))
    arr = np.array(shifts)
    shift_x, shift_y, scale = (float(np.median(arr[:, i])) for i in range(3))
    raw_err, adj_err = [], []
    for _, copy, h, c in held:
        ref = _points(models, copy, h)
        raw_err.append(_landmark_error(ref, _points(models, copy, c)))
        cx, cy, cs = _geometry(c)
        ax, ay, half = cx + shift_x * cs, cy + shift_y * cs, cs * scale / 2.0
        adjusted = (ax - half, ay - half, ax + half - 1, ay + half - 1, c[4])
        adj_err.append(_landmark_error(ref, _points(models, copy, adjusted)))
    slope, midpoint = fit_logistic(faces, false)
    return {
        "box_adjustment": {
            "pairs_fit": len(fit), "pairs_held_out": len(held),
            "shift_x_per_side": round(shift_x, 4), "shift_y_per_side": round(shift_y, 4),
            "side_ratio": round(scale, 4),
            "landmark_error_raw_cnn_box": {"mean": round(float(np.mean(raw_err)), 4),
                                           "median": round(float(np.median(raw_err)), 4)},
            "landmark_error_adjusted_cnn_box": {
                "mean": round(float(np.mean(adj_err)), 4),
                "median": round(float(np.median(adj_err)), 4)},
        },
        "confidence_fit": {
            "faces": len(faces), "false_detections": len(false),
            "min_face_score": min(faces, default=None),
            "max_false_score": max(false, default=None),
            "false_at_or_above_threshold": sum(1 for s in false if s >= 0.0),
            "faces_below_threshold": sum(1 for s in faces if s < 0.0),
            "fitted_slope": round(slope, 3), "fitted_midpoint": round(midpoint, 3),
        },
    }


def faceless_cost(repeats: int) -> dict[str, Any]:
    """What the `cnn` fallback adds where it cannot help: the set's face-less images
    (LABELS.csv `none`) and a face-less 1600x1200 image (as bench/degraded.py makes it),
    each detected through the engine with the other fallbacks and then with `cnn` too,
    the two configurations interleaved `repeats` times in one process (so both see the
    same machine load); medians."""
    import tempfile

    from bench.degraded import _jpeg
    from faceapi.adapters.images import PillowImageDecoder

    root = faces_dir()
    base = Settings.from_env().with_overrides(
        data_dir=Path(tempfile.mkdtemp()), image_formats=KNOWN_FORMATS,
        max_image_bytes=64 * 1024 * 1024)
    without = LocalEngine(base.with_overrides(detect_fallback=("contrast", "roll", "upsample")))
    with_cnn = LocalEngine(base.with_overrides(detect_fallback=("hard",)))
    decoder = PillowImageDecoder(base)
    images = [(row["file"], decoder.decode((root / row["file"]).read_bytes()))
              for row in read_csv(root / "LABELS.csv") if row["identity"].strip() == "none"]
    rng = np.random.default_rng(15)
    ramp = np.linspace(20, 230, 1600)[None, :, None] * np.ones((1200, 1, 3))
    large = np.clip(ramp + rng.normal(0, 12, (1200, 1600, 3)), 0, 255).astype(np.uint8)
    images.append(("(synthetic 1600x1200, no face)", decoder.decode(_jpeg(large, 90))))
    with_cnn.embed_faces(images[0][1])  # sessions made before timing
    without.embed_faces(images[0][1])
    rows = []
    for name, image in images:
        times: dict[str, list[float]] = {"without_cnn": [], "with_cnn": []}
        faces = {}
        for _ in range(repeats):
            for label, engine in (("without_cnn", without), ("with_cnn", with_cnn)):
                started = time.perf_counter()
                _, found = engine.embed_faces(image)
                times[label].append(time.perf_counter() - started)
                faces[label] = len(found)
        a, b = (float(np.median(times[k])) * 1000 for k in ("without_cnn", "with_cnn"))
        rows.append({"image": name, "size": list(image.pixels.shape[1::-1]),
                     "faces_without_cnn": faces["without_cnn"],
                     "faces_with_cnn": faces["with_cnn"],
                     "ms_without_cnn": round(a, 1), "ms_with_cnn": round(b, 1),
                     "ms_added": round(b - a, 1)})
    return {"repeats": repeats, "images": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=400)
    parser.add_argument("--dlib-budget", type=float, default=300.0)
    parser.add_argument("--faceless", type=int, default=0, metavar="REPEATS",
                        help="only measure the cnn fallback's cost on face-less images "
                             "(writes mmod_faceless.json/.md)")
    args = parser.parse_args()
    if args.faceless:
        load_before = os.getloadavg()
        cost = faceless_cost(args.faceless)
        command = f"nice -n 10 .venv/bin/python -m bench.mmod --faceless {args.faceless}"
        loads = {"before": [round(v, 2) for v in load_before],
                 "after": [round(v, 2) for v in os.getloadavg()]}
        write_json("mmod_faceless.json", {"command": command, "load_average": loads, **cost,
                                          "environment": environment()})
        rows = [[r["image"], "x".join(map(str, r["size"])), r["ms_without_cnn"],
                 r["ms_with_cnn"], r["ms_added"], f"{r['faces_without_cnn']}/{r['faces_with_cnn']}"]
                for r in cost["images"]]
        headers = ["image", "size", "ms without cnn", "ms with cnn", "ms added", "faces"]
        text = (f"# The cnn fallback's cost on face-less images (bench/mmod.py)\n\n"
                f"`{command}`; load average {loads} (2 cores, shared). Median of "
                f"{args.faceless} interleaved runs through the engine (embed_faces): "
                f"FACEAPI_DETECT_FALLBACK=contrast,roll,upsample vs hard (the same plus "
                f"cnn).\n\n```\n"
                f"{table(headers, rows)}\n```\n")
        (RESULTS / "mmod_faceless.md").write_text(text, encoding="utf-8")
        print(text)
        return
    settings = Settings(image_formats=KNOWN_FORMATS, data_dir=Path("/tmp/faceapi-bench-mmod"),
                        max_image_bytes=64 * 1024 * 1024)
    models = load_models("hog")
    onnx1 = onnx_mmod_detector(settings, models)
    onnx2 = onnx_mmod_detector(settings.with_overrides(descriptor_threads=2), models)
    load_before = os.getloadavg()
    images = _images(faces_dir(), settings)
    parity = parity_and_speed(images, models, onnx1, onnx2, side=args.side,
                              budget=args.dlib_budget)
    print({k: v for k, v in parity.items() if k != "per_image"}, flush=True)
    fits = box_fit_and_confidence(images, models, onnx1)
    print(fits, flush=True)
    summary = {
        "command": f"nice -n 10 .venv/bin/python -m bench.mmod --side {args.side} "
                   f"--dlib-budget {args.dlib_budget:g}",
        "load_average_before": [round(v, 2) for v in load_before],
        "load_average_after": [round(v, 2) for v in os.getloadavg()],
        "parity": parity, **fits, "environment": environment(),
    }
    write_json("mmod.json", summary)
    ms = parity["ms_per_megapixel"]
    box = fits["box_adjustment"]
    conf = fits["confidence_fit"]
    speed_rows = [[k, v] for k, v in ms.items()]
    text = (
        f"# MMOD CNN on onnxruntime vs dlib (bench/mmod.py)\n\n`{summary['command']}`; "
        f"load average before {summary['load_average_before']}, after "
        f"{summary['load_average_after']} (2 cores, shared)\n\n"
        f"## Parity (upsample 0, images downscaled to <= {args.side} px)\n\n"
        f"{parity['same_boxes']} of {parity['images']} images give the same boxes "
        f"(count equal, corners within 1 px); faces dlib {parity['faces_dlib']}, "
        f"onnx {parity['faces_onnx']}; largest corner difference "
        f"{parity['max_box_diff_px']} px, largest score difference "
        f"{parity['max_score_diff']:.2e}.\n\n"
        f"## Speed on those images ({parity['megapixels']} Mpx)\n\n```\n"
        f"{table(['detector', 'ms per megapixel'], speed_rows)}\n```\n\n"
        f"## Box adjustment for the shape predictor (fallback size)\n\n"
        f"Fitted on {box['pairs_fit']} faces both detectors find (even images): HOG box = "
        f"CNN box centre + ({box['shift_x_per_side']}, {box['shift_y_per_side']}) x side, "
        f"side x {box['side_ratio']}. Landmark error vs landmarks on the HOG box "
        f"(inter-ocular units) on {box['pairs_held_out']} held-out faces: raw CNN box "
        f"mean {box['landmark_error_raw_cnn_box']['mean']} (median "
        f"{box['landmark_error_raw_cnn_box']['median']}), adjusted mean "
        f"{box['landmark_error_adjusted_cnn_box']['mean']} (median "
        f"{box['landmark_error_adjusted_cnn_box']['median']}).\n\n"
        f"## Score to Confidence (fallback size)\n\n"
        f"{conf['faces']} faces (scores from {conf['min_face_score']}), "
        f"{conf['false_detections']} false detections (up to {conf['max_false_score']}; "
        f"{conf['false_at_or_above_threshold']} at or above 0); faces below 0: "
        f"{conf['faces_below_threshold']}. Fitted slope {conf['fitted_slope']}, "
        f"midpoint {conf['fitted_midpoint']}.\n")
    (RESULTS / "mmod.md").write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
