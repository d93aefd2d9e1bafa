"""A plain boto3 Rekognition program, run against faceapi's Rekognition-compatible
endpoint: create a collection, index three faces, search, compare, detect; print what
came back.

    python bench/boto3_sample.py                      # starts faceapi itself (temp dir)
    python bench/boto3_sample.py --url http://127.0.0.1:8000 \
        --access-key-id <key id> --secret-access-key <its SigV4 secret>

Nothing here is faceapi-specific except the endpoint URL and the credentials, which
`faceapi keys create` (or POST /v1/keys) shows once with an operator key: the key's id
is the access key id, its SigV4 secret the secret access key (docs/engines.md). The
same code runs against AWS.
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


def client(url: str, credentials: tuple[str, str]) -> Any:
    # faceapi checks the SigV4 signature as AWS does: the key id and its SigV4 secret.
    access_key_id, secret_access_key = credentials
    return boto3.client("rekognition", endpoint_url=url, region_name="us-east-1",
                        aws_access_key_id=access_key_id,
                        aws_secret_access_key=secret_access_key)


@contextmanager
def local_server() -> Iterator[tuple[str, tuple[str, str]]]:
    """faceapi on a free port with a fresh database; yields (url, operator credentials)."""
    from werkzeug.serving import make_server

    from faceapi.config import Settings
    from faceapi.domain.audit import SYSTEM
    from faceapi.entrypoints.web.api.deps import EXTENSION_KEY
    from faceapi.entrypoints.web.app import create_app
    from faceapi.services.keys import NewKey, create_key

    with tempfile.TemporaryDirectory(prefix="faceapi-sample-") as tmp:
        settings = Settings(env="development", data_dir=Path(tmp), log_level="WARNING",
                            policies_dir=REPO / "policies")
        app = create_app(settings)
        deps = app.extensions[EXTENSION_KEY]
        created = create_key(NewKey(name="boto3-sample", role="operator"),
                             uow=deps.store.uow(), clock=deps.clock, actor=SYSTEM)
        credentials = (created.key.id, created.sigv4_secret)
        server = make_server("127.0.0.1", 0, app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_port}", credentials
        finally:
            server.shutdown()
            server.server_close()


def run(url: str, credentials: tuple[str, str], faces: Path) -> None:
    rekognition = client(url, credentials)

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
    parser.add_argument("--access-key-id", help="an operator or admin key's id (with --url)")
    parser.add_argument("--secret-access-key",
                        help="that key's SigV4 secret, shown once at creation (with --url)")
    parser.add_argument("--faces", type=Path, default=DEFAULT_FACES,
                        help="the shared face data set (default ../shared/data/faces)")
    args = parser.parse_args()
    if not (args.faces / PROBE).is_file():
        parser.error(f"face images not found under {args.faces} (use --faces)")
    if args.url:
        if not (args.access_key_id and args.secret_access_key):
            parser.error("--url needs --access-key-id and --secret-access-key (an operator "
                         "or admin key's id and SigV4 secret)")
        run(args.url, (args.access_key_id, args.secret_access_key), args.faces)
        return
    with local_server() as (url, credentials):
        print(f"faceapi started at {url}")
        run(url, credentials, args.faces)


if __name__ == "__main__":
    main()
