"""Hard-photo benchmark: the shared set's labelled faces, degraded eight ways.

Run:  .venv/bin/python -m bench.degraded [--per-kind 60] [--seed 15] [--out NAME]
      FACEAPI_DETECT_FALLBACK=hard .venv/bin/python -m bench.degraded --out degraded_fallback

For each labelled image whose identity has at least two images and whose clean image
shows a face (the clean reference), one degraded copy per kind is generated, seeded by
(seed, kind, file), into a cache directory outside the repository (the shared set's
images are not ours to redistribute: ../shared/data/faces/SOURCES.md), then sent through
the engine's real path (decoder, including EXIF orientation; detection; descriptor).

Kinds: small (the face rescaled to ~30 px wide, pasted in a 640x480 noisy frame), dark
(brightness x0.12-0.2, Gaussian noise sigma 6), blur (Gaussian, sigma = face width / 25),
roll (rotated 25-30 degrees either way about the face), mask (mouth and nose covered
by a flat-coloured polygon over the lower face's landmarks), jpeg (quality 3-8),
lowcontrast (grayscale squeezed into 20% of the range around mid-grey), exif (pixels
rotated 90/180/270 with the EXIF orientation tag that undoes it).

Per kind: faces found (share of degraded images where a face is detected whose
descriptor matches the clean reference of the same image, similarity >= the threshold
for FMR 1e-2 of the calibration, i.e. the enrolled identity's face and not another
one), FNMR at FMR 1e-2 (genuine: degraded image vs every OTHER clean image of the same
identity; impostor: degraded image vs clean images of other identities; the threshold
is the lowest score with impostor FMR <= 1e-2 in that kind; an image with no face is a
non-match in both), and detection + descriptor time per image. Writes
bench/results/<out>.json and .md.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import random
import tempfile
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from bench.common import environment, faces_dir, percentile, read_csv, table, write_json
from faceapi.adapters.engines.local.detection import find_faces
from faceapi.adapters.engines.local.engine import LocalEngine
from faceapi.adapters.images import PillowImageDecoder
from faceapi.config import Settings

KINDS = ("clean", "small", "dark", "blur", "roll", "mask", "jpeg", "lowcontrast", "exif")
CACHE = Path(tempfile.gettempdir()) / "faceapi-degraded"
# Calibration (similarity scale 2): similarity 50 is about FMR 1e-2 on clean pairs.
FACE_FOUND_SIMILARITY = 50.0


def _rng(seed: int, kind: str, file: str) -> random.Random:
    digest = hashlib.sha256(f"{seed}/{kind}/{file}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def _png(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def _jpeg(pixels: np.ndarray, quality: int, exif: Image.Exif | None = None) -> bytes:
    out = io.BytesIO()
    img = Image.fromarray(pixels)
    if exif is not None:
        img.save(out, format="JPEG", quality=quality, exif=exif)
    else:
        img.save(out, format="JPEG", quality=quality)
    return out.getvalue()


def degrade(kind: str, pixels: np.ndarray, box: tuple[float, float, float, float],
            points: np.ndarray, rng: random.Random) -> bytes:
    """One degraded copy as encoded bytes. box = (left, top, right, bottom) and points
    (68 landmarks) of the clean image's face."""
    h, w = pixels.shape[:2]
    left, top, right, bottom = box
    face_w = max(right - left, 1.0)
    nrng = np.random.default_rng(rng.getrandbits(32))
    if kind == "clean":
        return _png(pixels)
    if kind == "small":
        target = rng.uniform(28, 32)
        scale = target / face_w
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        small = cv2.resize(pixels, size, interpolation=cv2.INTER_AREA)
        frame = np.clip(nrng.normal(128, 30, (480, 640, 3)), 0, 255).astype(np.uint8)
        sh, sw = min(small.shape[0], 480), min(small.shape[1], 640)
        y, x = rng.randint(0, 480 - sh), rng.randint(0, 640 - sw)
        frame[y:y + sh, x:x + sw] = small[:sh, :sw]
        return _png(frame)
    if kind == "dark":
        factor = rng.uniform(0.12, 0.2)
        dark = pixels.astype(np.float64) * factor + nrng.normal(0, 6, pixels.shape)
        return _png(np.clip(dark, 0, 255).astype(np.uint8))
    if kind == "blur":
        sigma = face_w / 25.0
        return _png(cv2.GaussianBlur(pixels, (0, 0), sigmaX=sigma))
    if kind == "roll":
        angle = rng.uniform(25, 30) * rng.choice((-1, 1))
        centre = ((left + right) / 2, (top + bottom) / 2)
        matrix = cv2.getRotationMatrix2D(centre, angle, 1.0)
        return _png(cv2.warpAffine(pixels, matrix, (w, h), borderMode=cv2.BORDER_REFLECT))
    if kind == "mask":
        # Lower face: jaw points 2-14 and the nose bridge's midpoint (point 28).
        poly = np.vstack([points[2:15], points[28:29]]).round().astype(np.int32)
        masked = pixels.copy()
        colour = tuple(int(c) for c in (rng.randint(150, 220), rng.randint(180, 230),
                                        rng.randint(200, 250)))
        cv2.fillPoly(masked, [cv2.convexHull(poly)], colour)
        return _png(masked)
    if kind == "jpeg":
        return _jpeg(pixels, rng.randint(3, 8))
    if kind == "lowcontrast":
        gray = cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY).astype(np.float64)
        squeezed = np.clip((gray - gray.mean()) * 0.2 + 128, 0, 255).astype(np.uint8)
        return _png(np.stack([squeezed] * 3, axis=-1))
    if kind == "exif":
        # Orientation 6: the stored pixels are the upright image turned 90 deg
        # counter-clockwise... (viewers turn them 90 clockwise); 8 the other way; 3 180.
        tag, turns = rng.choice(((6, 1), (8, 3), (3, 2)))
        stored = np.ascontiguousarray(np.rot90(pixels, turns))
        exif = Image.Exif()
        exif[0x0112] = tag
        return _jpeg(stored, 92, exif)
    raise ValueError(kind)


def compare(before_name: str, after_name: str) -> str:
    """A before/after table of two runs' JSON (bench/results/<name>.json)."""
    import json

    results = Path(__file__).resolve().parent / "results"
    def load(names: str) -> dict[str, Any]:
        # Comma-separated names: runs of different kinds, merged (later ones win).
        runs = [json.loads((results / f"{n}.json").read_text()) for n in names.split(",")]
        return {"command": " ; ".join(r["command"] for r in runs),
                "load": " ; ".join(str(r.get("load_average", "not recorded")) for r in runs),
                "kinds": {k: v for r in runs for k, v in r["kinds"].items()}}

    before, after = load(before_name), load(after_name)
    rows = []
    for kind in KINDS:
        b, a = before["kinds"].get(kind), after["kinds"].get(kind)
        if b is None or a is None:
            continue
        rows.append([kind, b["images"], f"{b['faces_found']:.3f} -> {a['faces_found']:.3f}",
                     f"{b['fnmr_at_fmr_1e-2']:.3f} -> {a['fnmr_at_fmr_1e-2']:.3f}",
                     f"{b['ms_per_image_mean']:.0f} -> {a['ms_per_image_mean']:.0f}"])
    for key, label in (("no_face_images", "(no face)"), ("no_face_1600px", "(no face, 1600 px)")):
        b, a = before["kinds"].get(key), after["kinds"].get(key)
        if b and a:
            rows.append([label, b["images"], "-", "-",
                         f"{b['ms_per_image_mean']:.0f} -> {a['ms_per_image_mean']:.0f}"])
    headers = ["kind", "images", "faces found", "FNMR @FMR 1e-2", "ms/image (mean)"]
    return (f"# Degraded benchmark: {before_name} -> {after_name}\n\n"
            f"before: `{before['command']}` (load average: {before['load']})\n"
            f"after: `{after['command']}` (load average: {after['load']})\n\n"
            f"```\n{table(headers, rows)}\n```\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--per-kind", type=int, default=60,
                        help="degraded images per kind (seeded sample; 0: all)")
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--out", default="degraded")
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--compare", nargs=2, metavar=("BEFORE", "AFTER"),
                        help="only write bench/results/<compare-out>.md from two runs")
    parser.add_argument("--compare-out", default="degraded_compare")
    args = parser.parse_args()
    if args.compare:
        text = compare(*args.compare)
        (Path(__file__).resolve().parent / "results" / f"{args.compare_out}.md").write_text(
            text, encoding="utf-8")
        print(text)
        return
    kinds = [k for k in args.kinds.split(",") if k]

    data = faces_dir()
    rows = [r for r in read_csv(data / "LABELS.csv")
            if r["identity"].strip() and r["identity"].strip() != "none"]
    by_identity: dict[str, list[str]] = defaultdict(list)
    for row in sorted(rows, key=lambda r: r["file"]):
        by_identity[row["identity"].strip()].append(row["file"])

    settings = replace(Settings.from_env(), data_dir=Path(tempfile.mkdtemp()),
                       image_formats=("jpeg", "png", "webp", "bmp", "gif"),
                       max_image_bytes=64 * 1024 * 1024)
    engine = LocalEngine(settings)
    decoder = PillowImageDecoder(settings)
    models = engine._models  # the bench reads the clean faces' landmarks

    # Clean references: the largest face of each labelled image.
    clean: dict[str, tuple[Any, tuple[float, ...]]] = {}  # file -> (raw face, descriptor)
    clean_pixels: dict[str, np.ndarray] = {}
    for _identity, files in sorted(by_identity.items()):
        for file in files:
            image = decoder.decode((data / file).read_bytes())
            found = find_faces(image.pixels, models, upsample=settings.upsample,
                               max_side=settings.detect_max_side, orientation_search=True)
            if not found.faces:
                continue
            face = max(found.faces, key=lambda f: f.area)
            (vector,) = engine.descriptors(found.pixels, [face])
            clean[file] = (face, vector)
            clean_pixels[file] = found.pixels
    identity_of = {f: i for i, fs in by_identity.items() for f in fs}
    usable = sorted(f for f in clean
                    if sum(1 for o in by_identity[identity_of[f]] if o in clean and o != f))
    sample = usable
    if args.per_kind and len(usable) > args.per_kind:
        sample = sorted(random.Random(args.seed).sample(usable, args.per_kind))

    load_before = os.getloadavg()  # the machine is shared: times depend on its load
    cache = CACHE / f"seed{args.seed}"
    results: dict[str, Any] = {}
    md_rows = []
    for kind in kinds:
        (cache / kind).mkdir(parents=True, exist_ok=True)
        found_ok, times = 0, []
        genuine: list[float] = []
        impostor: list[float] = []
        for file in sample:
            face, _ = clean[file]
            target = cache / kind / (hashlib.sha256(file.encode()).hexdigest()[:16] + ".img")
            if not target.is_file():
                target.write_bytes(degrade(kind, clean_pixels[file],
                                           (face.left, face.top, face.right, face.bottom),
                                           face.points, _rng(args.seed, kind, file)))
            image = decoder.decode(target.read_bytes())
            started = time.perf_counter()
            _, embedded = engine.embed_faces(image)
            times.append(time.perf_counter() - started)
            probe = max(embedded, key=lambda e: e.detail.width_px * e.detail.height_px,
                        default=None)
            own = clean[file][1]
            if embedded and max(engine.similarity(e.embedding, own)
                                for e in embedded) >= FACE_FOUND_SIMILARITY:
                found_ok += 1
            identity = identity_of[file]
            for other, (_, vector) in clean.items():
                if other == file:
                    continue
                score = (engine.similarity(probe.embedding, vector) if probe is not None
                         else float("-inf"))
                (genuine if identity_of[other] == identity else impostor).append(score)
        ordered = sorted(impostor, reverse=True)
        allowed = int(0.01 * len(ordered))
        threshold = ordered[allowed] + 1e-6 if allowed < len(ordered) else float("-inf")
        threshold = max(threshold, -1e9)
        fnmr = sum(1 for s in genuine if s < threshold) / len(genuine) if genuine else 0.0
        fmr = sum(1 for s in impostor if s >= threshold) / len(impostor) if impostor else 0.0
        results[kind] = {
            "images": len(sample), "faces_found": found_ok / len(sample),
            "genuine_pairs": len(genuine), "impostor_pairs": len(impostor),
            "threshold_at_fmr_1e-2": round(threshold, 3), "fmr": round(fmr, 5),
            "fnmr_at_fmr_1e-2": round(fnmr, 4),
            "ms_per_image_p50": round(percentile(times, 50) * 1000, 1),
            "ms_per_image_mean": round(sum(times) / len(times) * 1000, 1),
        }
        r = results[kind]
        md_rows.append([kind, r["images"], r["faces_found"], r["fnmr_at_fmr_1e-2"],
                        r["threshold_at_fmr_1e-2"], r["ms_per_image_p50"],
                        r["ms_per_image_mean"]])
        print(kind, results[kind], flush=True)

    # The fallbacks' price where they cannot help: images without a face (LABELS.csv
    # `none`) run every normal pass and then every fallback.
    noface_times = []
    for row in read_csv(data / "LABELS.csv"):
        if row["identity"].strip() == "none":
            image = decoder.decode((data / row["file"]).read_bytes())
            started = time.perf_counter()
            engine.embed_faces(image)
            noface_times.append(time.perf_counter() - started)
    # And a large one (1600x1200, smooth gradients and noise, no face): the detection
    # image's maximum size, where each extra pass costs most.
    rng = np.random.default_rng(args.seed)
    ramp = np.linspace(20, 230, 1600)[None, :, None] * np.ones((1200, 1, 3))
    large = np.clip(ramp + rng.normal(0, 12, (1200, 1600, 3)), 0, 255).astype(np.uint8)
    image = decoder.decode(_jpeg(large, 90))
    started = time.perf_counter()
    engine.embed_faces(image)
    large_ms = round((time.perf_counter() - started) * 1000, 1)
    results["no_face_1600px"] = {"images": 1, "ms_per_image_mean": large_ms}
    md_rows.append(["(no face, 1600 px)", 1, "-", "-", "-", "-", large_ms])
    results["no_face_images"] = {
        "images": len(noface_times),
        "ms_per_image_mean": round(sum(noface_times) / max(1, len(noface_times)) * 1000, 1),
        "ms_per_image_max": round(max(noface_times, default=0.0) * 1000, 1)}
    md_rows.append(["(no face)", len(noface_times), "-", "-", "-", "-",
                    results["no_face_images"]["ms_per_image_mean"]])
    print("no_face_images", results["no_face_images"], flush=True)

    summary = {
        "command": ("FACEAPI_DETECT_FALLBACK=" + ",".join(settings.detect_fallback) + " "
                    if settings.detect_fallback else "")
        + f".venv/bin/python -m bench.degraded --per-kind {args.per_kind} "
                   f"--seed {args.seed} --out {args.out}"
        + (f" --kinds {args.kinds}" if args.kinds != ",".join(KINDS) else ""),
        "settings": {"detect_fallback": list(settings.detect_fallbacks),
                     "upsample": settings.upsample, "detect_strategy": settings.detect_strategy,
                     "descriptor_runtime": settings.descriptor_runtime},
        "load_average": {"before": [round(v, 2) for v in load_before],
                         "after": [round(v, 2) for v in os.getloadavg()]},
        "clean_references": len(clean), "sampled_images": len(sample),
        "kinds": results, "environment": environment(),
    }
    write_json(f"{args.out}.json", summary)
    headers = ["kind", "images", "faces found", "FNMR @FMR1e-2", "threshold",
               "ms p50", "ms mean"]
    text = (f"# Degraded benchmark ({args.out})\n\n`{summary['command']}` "
            f"(settings: {summary['settings']}; load average {summary['load_average']})"
            f"\n\n```\n{table(headers, md_rows)}\n```\n")
    (Path(__file__).resolve().parent / "results" / f"{args.out}.md").write_text(
        text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
