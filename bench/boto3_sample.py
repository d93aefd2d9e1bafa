"""A plain boto3 Rekognition program, run against faceapi's Rekognition-compatible
endpoint: create a collection, index three faces, search, compare, detect; print what
came back.

    python bench/boto3_sample.py                      # starts faceapi itself (temp dir)
    python bench/boto3_sample.py --url http://127.0.0.1:8000 --key fa_<operator key>

Nothing here is faceapi-specific except the endpoint URL and the API keys used as
access key ids (docs/engines.md): the same code runs against AWS.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3

REPO = Path(__file__).resolve().parent.parent
DEFAULT_FACES = REPO.parent / "shared" / "data" / "faces"
ENROL = {  # subject -> image (the shared data set)
    "jack_dorsey": "deepface/tests/unit/dataset/img16.jpg",
    "katy_perry": "deepface/tests/unit/dataset/img46.jpg",
    "jeff_bezos": "deepface/tests/unit/dataset/img21.jpg",
}
PROBE = "deepface/tests/unit/dataset/img17.jpg"  # another photo of jack_dorsey
GROUP = "deepface/tests/unit/dataset/couple.jpg"


def client(url: str, key: str) -> Any:
    # faceapi reads the API key from the access key id and checks no signature, so the
    # secret access key may be any string (docs/engines.md).
    return boto3.client("rekognition", endpoint_url=url, region_name="us-east-1",
                        aws_access_key_id=key,
                        aws_secret_access_key="unused")  # noqa: S106


@contextmanager
def local_server() -> Iterator[tuple[str, str]]:
    """faceapi on a free port with a fresh database; yields (url, operator key)."""
    from werkzeug.serving import make_server

    from faceapi.api.deps import EXTENSION_KEY
    from faceapi.app import create_app
    from faceapi.config import Settings
    from faceapi.domain.audit import SYSTEM
    from faceapi.services.keys import NewKey, create_key

    with tempfile.TemporaryDirectory(prefix="faceapi-sample-") as tmp:
        settings = Settings(env="development", data_dir=Path(tmp), log_level="WARNING",
                            policies_dir=REPO / "policies")
        app = create_app(settings)
        deps = app.extensions[EXTENSION_KEY]
        key = create_key(NewKey(name="boto3-sample", role="operator"),
                         uow=deps.store.uow(), clock=deps.clock, actor=SYSTEM).secret
        server = make_server("127.0.0.1", 0, app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_port}", key
        finally:
            server.shutdown()
            server.server_close()


def run(url: str, key: str, faces: Path) -> None:
    rekognition = client(url, key)

    def read(name: str) -> bytes:
        return (faces / name).read_bytes()

    collection = f"sample-{uuid.uuid4().hex[:8]}"
    # The tag opts this collection out of faceapi's per-subject consent records, which
    # an SDK cannot send (docs/engines.md); a real deployment records consent instead.
    created = rekognition.create_collection(CollectionId=collection,
                                         Tags={"faceapi:consent_required": "false"})
    print(f"CreateCollection {collection}: status {created['StatusCode']}, "
          f"model {created['FaceModelVersion']}")

    for subject, name in ENROL.items():
        indexed = rekognition.index_faces(CollectionId=collection, Image={"Bytes": read(name)},
                                       ExternalImageId=subject, MaxFaces=1)
        for record in indexed["FaceRecords"]:
            face = record["Face"]
            print(f"IndexFaces {subject}: face {face['FaceId']} "
                  f"confidence {face['Confidence']:.1f}")
        for unindexed in indexed["UnindexedFaces"]:
            print(f"IndexFaces {subject}: not indexed: {', '.join(unindexed['Reasons'])}")

    described = rekognition.describe_collection(CollectionId=collection)
    print(f"DescribeCollection: {described['FaceCount']} faces")

    found = rekognition.search_faces_by_image(CollectionId=collection, Image={"Bytes": read(PROBE)},
                                      FaceMatchThreshold=60, MaxFaces=3)
    print("SearchFacesByImage (another photo of jack_dorsey):")
    for match in found["FaceMatches"]:
        print(f"  {match['Face']['ExternalImageId']}: similarity {match['Similarity']:.1f}")
    if not found["FaceMatches"]:
        print("  no match at or above the threshold")

    compared = rekognition.compare_faces(SourceImage={"Bytes": read(ENROL["jack_dorsey"])},
                                 TargetImage={"Bytes": read(PROBE)}, SimilarityThreshold=0)
    for match in compared["FaceMatches"]:
        print(f"CompareFaces jack_dorsey vs jack_dorsey: similarity {match['Similarity']:.1f}")
    compared = rekognition.compare_faces(SourceImage={"Bytes": read(ENROL["jack_dorsey"])},
                                 TargetImage={"Bytes": read(ENROL["katy_perry"])},
                                 SimilarityThreshold=0)
    for match in compared["FaceMatches"]:
        print(f"CompareFaces jack_dorsey vs katy_perry: similarity {match['Similarity']:.1f}")

    detected = rekognition.detect_faces(Image={"Bytes": read(GROUP)}, Attributes=["ALL"])
    print(f"DetectFaces (couple.jpg): {len(detected['FaceDetails'])} faces")
    for detail in detected["FaceDetails"]:
        box, pose = detail["BoundingBox"], detail["Pose"]
        print(f"  box left {box['Left']:.2f} top {box['Top']:.2f} width {box['Width']:.2f}, "
              f"confidence {detail['Confidence']:.1f}, yaw {pose['Yaw']:.0f}")

    rekognition.delete_collection(CollectionId=collection)
    print(f"DeleteCollection {collection}: done")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="faceapi base URL; default: start one here")
    parser.add_argument("--key", help="operator or admin API key (with --url)")
    parser.add_argument("--faces", type=Path, default=DEFAULT_FACES,
                        help="the shared face data set (default ../shared/data/faces)")
    args = parser.parse_args()
    if not (args.faces / PROBE).is_file():
        parser.error(f"face images not found under {args.faces} (use --faces)")
    if args.url:
        if not args.key:
            parser.error("--url needs --key (an operator or admin API key)")
        run(args.url, args.key, args.faces)
        return
    with local_server() as (url, key):
        print(f"faceapi started at {url}")
        run(url, key, args.faces)


if __name__ == "__main__":
    main()
