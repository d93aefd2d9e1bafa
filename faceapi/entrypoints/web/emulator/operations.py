"""Rekognition operations answered by our own engine and store.

Each handler takes the decoded JSON request and a context, and returns the JSON
response with Rekognition's member names. Responses are dumped with the same
marshmallow schemas as our REST API, so there is one mapping from our dataclasses to
Rekognition's names; tests validate every response against botocore's service model.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from faceapi.bootstrap import UseCases
from faceapi.config import Settings
from faceapi.domain.audit import Actor
from faceapi.domain.collections import QualityFilter
from faceapi.domain.engine_values import CollectionInfo, CollectionMatch, IndexedFace
from faceapi.domain.faces import Attributes, BoundingBox, FaceDetail
from faceapi.entrypoints.web.api.schemas import (
    BoundingBoxSchema,
    CompareResponseSchema,
    DetectResponseSchema,
    FaceDetailSchema,
)
from faceapi.entrypoints.web.emulator import protocol as p
from faceapi.entrypoints.web.emulator.collections import StoreCollections
from faceapi.services.compare import CompareRequest
from faceapi.services.detect import DetectRequest


@dataclass(frozen=True)
class OperationContext:
    settings: Settings
    use_cases: UseCases
    actor: Actor
    # Builds the collection port for this caller; `consent_required` comes from
    # CreateCollection's tag (the only operation that sets it).
    collections: Callable[[bool], StoreCollections]
    # Headers the response carries besides the body (views.dispatch adds them): the id
    # of a decision a search recorded, so an SDK caller can read it later.
    response_headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[[Mapping[str, Any], OperationContext], dict[str, Any]]


def _limit(ctx: OperationContext) -> int:
    return min(ctx.settings.max_image_bytes, p.MAX_IMAGE_BYTES)


def detect_faces(body: Mapping[str, Any], ctx: OperationContext) -> dict[str, Any]:
    """DetectFaces: any attribute other than DEFAULT asks for everything we compute;
    attributes the engine cannot compute stay absent, as Rekognition omits them too."""
    data = p.image_bytes(body, "Image", _limit(ctx))
    attributes = _attributes(body, "Attributes")
    # The same use case as POST /v1/faces/detect, so the call is audited the same way.
    detection = ctx.use_cases.detect(DetectRequest(image=data, attributes=attributes),
                                     actor=ctx.actor)
    dumped: dict[str, Any] = DetectResponseSchema().dump(detection)
    return dumped


def _attributes(body: Mapping[str, Any], name: str) -> Attributes:
    """DetectFaces' `Attributes`, IndexFaces' `DetectionAttributes`: anything other than
    DEFAULT asks for everything we compute."""
    requested = body.get(name, ["DEFAULT"])
    if not isinstance(requested, list) or not all(isinstance(a, str) for a in requested):
        raise p.invalid(f"{name} must be a list of strings")
    return Attributes.DEFAULT if set(requested) <= {"DEFAULT"} else Attributes.ALL


def compare_faces(body: Mapping[str, Any], ctx: OperationContext) -> dict[str, Any]:
    """CompareFaces; SimilarityThreshold defaults to 80 as in Rekognition."""
    source = p.image_bytes(body, "SourceImage", _limit(ctx))
    target = p.image_bytes(body, "TargetImage", _limit(ctx))
    threshold = p.optional_number(body, "SimilarityThreshold", 80.0, low=0.0, high=100.0)
    _quality_filter(body)
    comparison = ctx.use_cases.compare(CompareRequest(source=source, target=target,
                                                      similarity_threshold=threshold),
                                       actor=ctx.actor)
    dumped: dict[str, Any] = CompareResponseSchema().dump(comparison)
    return dumped


QUALITY_FILTERS = ("NONE", "AUTO", "LOW", "MEDIUM", "HIGH")


def _quality_filter(body: Mapping[str, Any], default: str = "NONE") -> str:
    value = body.get("QualityFilter", default)
    if value not in QUALITY_FILTERS:
        raise p.invalid(f"QualityFilter must be one of {', '.join(QUALITY_FILTERS)}")
    return str(value)


# --- collections ---------------------------------------------------------------------

COLLECTION_ID = r"[a-zA-Z0-9_.\-]+"
FACE_ID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
EXTERNAL_IMAGE_ID = r"[a-zA-Z0-9_.\-:]+"
# CreateCollection tag an operator sets to create a collection whose subjects need no
# recorded consent (SDKs cannot send consent with IndexFaces). Audited with the create.
CONSENT_TAG = "faceapi:consent_required"
# CreateCollection tag naming the policies the collection binds ("a,b"); absent: the
# configured default (FACEAPI_DEFAULT_COLLECTION_POLICIES).
POLICIES_TAG = "faceapi:policies"
# Response header naming the decision a SearchFacesByImage / SearchFaces recorded.
DECISION_HEADER = "X-Faceapi-Decision-Id"


def _collection_id(body: Mapping[str, Any]) -> str:
    return p.require_str(body, "CollectionId", pattern=COLLECTION_ID)


def _box(box: BoundingBox) -> dict[str, float]:
    dumped: dict[str, float] = BoundingBoxSchema().dump(box)
    return dumped


def _face(face: IndexedFace) -> dict[str, Any]:
    out: dict[str, Any] = {"FaceId": face.face_id, "BoundingBox": _box(face.bounding_box),
                           "ImageId": face.image_id, "Confidence": face.confidence}
    if face.external_image_id is not None:
        out["ExternalImageId"] = face.external_image_id
    return out


def _detail(detail: FaceDetail) -> dict[str, Any]:
    dumped: dict[str, Any] = FaceDetailSchema().dump(detail)
    return dumped


def _matches(matches: tuple[CollectionMatch, ...]) -> list[dict[str, Any]]:
    return [{"Similarity": m.similarity, "Face": _face(m.face)} for m in matches]


def _arn(ctx: OperationContext, collection_id: str) -> str:
    # Not an AWS account's ARN: a name in the same form, so code that logs it works.
    return f"arn:faceapi:rekognition:{ctx.settings.aws_region}:local:collection/{collection_id}"


def _drop_none(out: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in out.items() if v is not None}


def create_collection(body: Mapping[str, Any], ctx: OperationContext) -> dict[str, Any]:
    collection_id = _collection_id(body)
    tags = body.get("Tags") or {}
    if not isinstance(tags, dict):
        raise p.invalid("Tags must be a map of strings")
    raw = str(tags.get(CONSENT_TAG, "true")).lower()
    if raw not in ("true", "false"):
        raise p.invalid(f"tag {CONSENT_TAG} must be true or false")
    bind = tags.get(POLICIES_TAG)
    if bind is not None and not isinstance(bind, str):
        raise p.invalid(f"tag {POLICIES_TAG} must be a comma-separated list of policies")
    port = ctx.collections(raw == "true")
    if bind is not None:
        port = replace(port, bind_policies=tuple(n.strip() for n in bind.split(",")))
    info = port.create_collection(collection_id)
    return {"StatusCode": 200, "CollectionArn": _arn(ctx, collection_id),
            "FaceModelVersion": info.face_model_version}


def delete_collection(body: Mapping[str, Any], ctx: OperationContext) -> dict[str, Any]:
    ctx.collections(True).delete_collection(_collection_id(body))
    return {"StatusCode": 200}


def describe_collection(body: Mapping[str, Any], ctx: OperationContext) -> dict[str, Any]:
    collection_id = _collection_id(body)
    info: CollectionInfo = ctx.collections(True).describe_collection(collection_id)
    return _drop_none({
        "FaceCount": info.face_count, "FaceModelVersion": info.face_model_version,
        "CollectionARN": _arn(ctx, collection_id),
        "CreationTimestamp": info.created_at.timestamp() if info.created_at else None,
        "UserCount": info.subject_count})


def list_collections(body: Mapping[str, Any], ctx: OperationContext) -> dict[str, Any]:
    limit = p.optional_int(body, "MaxResults", 100, low=0, high=4096) or 100
    page = ctx.collections(True).list_collections(limit, p.optional_str(body, "NextToken"))
    return _drop_none({"CollectionIds": list(page.collection_ids),
                       "FaceModelVersions": list(page.face_model_versions),
                       "NextToken": page.next_token})


def index_faces(body: Mapping[str, Any], ctx: OperationContext) -> dict[str, Any]:
    collection_id = _collection_id(body)
    data = p.image_bytes(body, "Image", _limit(ctx))
    external = p.optional_str(body, "ExternalImageId", pattern=EXTERNAL_IMAGE_ID)
    if external is None:
        raise p.invalid("ExternalImageId is required by faceapi: it names the subject "
                        "the faces belong to")
    attributes = _attributes(body, "DetectionAttributes")
    max_faces = p.optional_int(body, "MaxFaces", None, low=1, high=100)
    quality = QualityFilter(_quality_filter(body, "AUTO"))
    # Bytes, not a decoded image: the enroll service decodes them once, after its checks.
    # The enroll service leaves out what DEFAULT does not show (enroll.shown).
    result = ctx.collections(True).index_image_bytes(collection_id, data, external,
                                                     max_faces, quality,
                                                     attributes=attributes)
    out: dict[str, Any] = {
        "FaceRecords": [{"Face": _face(r.face), "FaceDetail": _detail(r.detail)}
                        for r in result.records],
        "FaceModelVersion": result.face_model_version,
        "UnindexedFaces": [{"Reasons": [r.value for r in u.reasons],
                            "FaceDetail": _detail(u.detail)}
                           for u in result.unindexed]}
    if result.orientation_correction is not None:
        out["OrientationCorrection"] = result.orientation_correction.value
    return out


def _name_decision(port: StoreCollections, ctx: OperationContext) -> None:
    """Name the search's decision in a header: a decision waiting for review answers
    with no FaceMatches, and its outcome is read later at GET /v1/decisions/{id}."""
    if port.last_decision is not None:
        ctx.response_headers[DECISION_HEADER] = port.last_decision.id


def search_faces_by_image(body: Mapping[str, Any], ctx: OperationContext) -> dict[str, Any]:
    collection_id = _collection_id(body)
    data = p.image_bytes(body, "Image", _limit(ctx))
    threshold = p.optional_number(body, "FaceMatchThreshold", 80.0, low=0.0, high=100.0)
    max_faces = p.optional_int(body, "MaxFaces", 10, low=1, high=4096) or 10
    _quality_filter(body)
    port = ctx.collections(True)
    result = port.search_image_bytes(collection_id, data, threshold, max_faces)
    _name_decision(port, ctx)
    out: dict[str, Any] = {"FaceMatches": _matches(result.matches),
                           "FaceModelVersion": result.face_model_version}
    if result.searched_face is not None:
        out["SearchedFaceBoundingBox"] = _box(result.searched_face.bounding_box)
        out["SearchedFaceConfidence"] = result.searched_face.confidence
    return out


def search_faces(body: Mapping[str, Any], ctx: OperationContext) -> dict[str, Any]:
    collection_id = _collection_id(body)
    face_id = p.require_str(body, "FaceId", pattern=FACE_ID)
    threshold = p.optional_number(body, "FaceMatchThreshold", 80.0, low=0.0, high=100.0)
    max_faces = p.optional_int(body, "MaxFaces", 10, low=1, high=4096) or 10
    port = ctx.collections(True)
    result = port.search_faces(collection_id, face_id, threshold, max_faces)
    _name_decision(port, ctx)
    return {"SearchedFaceId": face_id, "FaceMatches": _matches(result.matches),
            "FaceModelVersion": result.face_model_version}


def list_faces(body: Mapping[str, Any], ctx: OperationContext) -> dict[str, Any]:
    collection_id = _collection_id(body)
    limit = p.optional_int(body, "MaxResults", 1000, low=0, high=4096) or 1000
    page = ctx.collections(True).list_faces(collection_id, limit,
                                            p.optional_str(body, "NextToken"))
    return _drop_none({"Faces": [_face(f) for f in page.faces], "NextToken": page.next_token,
                       "FaceModelVersion": page.face_model_version})


def delete_faces(body: Mapping[str, Any], ctx: OperationContext) -> dict[str, Any]:
    collection_id = _collection_id(body)
    face_ids = body.get("FaceIds")
    if not isinstance(face_ids, list) or not face_ids or len(face_ids) > 4096 or \
            not all(isinstance(f, str) for f in face_ids):
        raise p.invalid("FaceIds must be a list of 1 to 4096 face ids")
    result = ctx.collections(True).delete_faces(collection_id, face_ids)
    return {"DeletedFaces": list(result.deleted),
            "UnsuccessfulFaceDeletions": [{"FaceId": f, "Reasons": ["FACE_NOT_FOUND"]}
                                          for f in result.not_deleted]}


HANDLERS: dict[str, Handler] = {
    "DetectFaces": detect_faces,
    "CompareFaces": compare_faces,
    "CreateCollection": create_collection,
    "DeleteCollection": delete_collection,
    "DescribeCollection": describe_collection,
    "ListCollections": list_collections,
    "IndexFaces": index_faces,
    "SearchFacesByImage": search_faces_by_image,
    "SearchFaces": search_faces,
    "ListFaces": list_faces,
    "DeleteFaces": delete_faces,
}
