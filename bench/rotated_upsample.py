"""Does the orientation search lose faces when its turned passes upsample one step
less than the upright pass (faceapi/adapters/engines/local/detection.py)?

For every image of the shared set that shows no face upright, the three turned passes
run at upsample 1 and at upsample 0; the table gives what each found and its time.
Writes bench/results/rotated_upsample.json.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import environment, faces_dir, table, write_json
from faceapi.adapters.engines.local.detection import _SEARCH_ORDER, _boxes, downscale
from faceapi.adapters.engines.local.models import Models, load_models
from faceapi.adapters.images import decode_image
from faceapi.config import Settings
from faceapi.domain.errors import FaceApiError

SKIP_SUFFIXES = (".csv", ".md", ".txt")


def turned_search(small: np.ndarray, models: Models,
                  upsample: int) -> tuple[str | None, int, float]:
    started = time.perf_counter()
    for k, correction in _SEARCH_ORDER:
        boxes = _boxes(np.ascontiguousarray(np.rot90(small, k)), models, upsample)
        if boxes:
            return correction.value, len(boxes), time.perf_counter() - started
    return None, 0, time.perf_counter() - started


def main() -> None:
    root = faces_dir()
    settings = Settings(env="test")
    models = load_models("hog")
    rows = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        if path.suffix.lower() in SKIP_SUFFIXES:
            continue
        try:
            image = decode_image(path.read_bytes(), settings)
        except FaceApiError:
            continue  # refused by intake: no detection runs on it
        small, _ = downscale(image.pixels, settings.detect_max_side)
        if _boxes(small, models, settings.upsample):
            continue
        at1 = turned_search(small, models, 1)
        at0 = turned_search(small, models, 0)
        rows.append({"file": str(path.relative_to(root)), "upsample_1": at1[:2],
                     "upsample_1_s": round(at1[2], 3), "upsample_0": at0[:2],
                     "upsample_0_s": round(at0[2], 3), "same": at1[:2] == at0[:2]})
    print(table(["file", "turned @1", "s", "turned @0", "s", "same"],
                [[r["file"], r["upsample_1"], r["upsample_1_s"], r["upsample_0"],
                  r["upsample_0_s"], r["same"]] for r in rows]))
    agree = sum(r["same"] for r in rows)
    print(f"{len(rows)} images show no face upright; {agree} give the same turned result")
    write_json("rotated_upsample.json", {"environment": environment(), "images": rows,
                                    "no_upright_face": len(rows), "same_at_upsample_0": agree})


if __name__ == "__main__":
    main()
