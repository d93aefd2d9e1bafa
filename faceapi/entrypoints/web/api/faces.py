"""Face analysis endpoints: DetectFaces and CompareFaces."""

from __future__ import annotations

from typing import Any

from flask_smorest import Blueprint

from faceapi.domain.faces import Attributes
from faceapi.entrypoints.web.api.deps import (
    current_actor,
    load_body,
    require_image_source,
    use_cases,
)
from faceapi.entrypoints.web.api.schemas import (
    CompareRequestSchema,
    CompareResponseSchema,
    DetectRequestSchema,
    DetectResponseSchema,
)
from faceapi.services.compare import CompareRequest
from faceapi.services.detect import DetectRequest

blp = Blueprint("faces", __name__, url_prefix="/v1/faces",
                description="Face detection and 1:1 comparison")


def image_request_body(schema: type, image_fields: tuple[str, ...], *,
                       s3: bool = False) -> dict[str, Any]:
    """OpenAPI requestBody for an endpoint taking images as JSON or multipart. The
    multipart form, and which image fields are required, are filled in from the JSON
    schema by api/openapi_doc.py (`x-image-fields`; `x-s3`: an S3Object may stand for
    the bytes, with an engine that reads S3)."""
    multipart_props = {name: {"type": "string", "format": "binary"} for name in image_fields}
    return {
        "required": True,
        "content": {
            "application/json": {"schema": schema},
            "multipart/form-data": {"schema": {"type": "object", "properties": multipart_props}},
        },
        "x-image-fields": list(image_fields),
        "x-s3": s3,
    }


@blp.route("/detect", methods=["POST"])
@blp.doc(requestBody=image_request_body(DetectRequestSchema, ("image",), s3=True))
@blp.response(200, DetectResponseSchema)
def detect_faces() -> Any:
    """Detect faces (DetectFaces): boxes, confidence and, with ALL, landmarks, pose, quality."""
    loaded = load_body(DetectRequestSchema(), ("image",))
    attributes = Attributes.ALL if "ALL" in loaded["attributes"] else Attributes.DEFAULT
    req = DetectRequest(image=require_image_source(loaded, "image"), attributes=attributes)
    return use_cases().detect(req, actor=current_actor())


@blp.route("/compare", methods=["POST"])
@blp.doc(requestBody=image_request_body(CompareRequestSchema, ("source", "target"),
                                         s3=True))
@blp.response(200, CompareResponseSchema)
def compare_faces() -> Any:
    """Compare the largest source face with every target face (CompareFaces)."""
    loaded = load_body(CompareRequestSchema(), ("source", "target"))
    req = CompareRequest(source=require_image_source(loaded, "source"),
                         target=require_image_source(loaded, "target"),
                         similarity_threshold=loaded["similarity_threshold"])
    return use_cases().compare(req, actor=current_actor())
