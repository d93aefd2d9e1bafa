"""SearchFacesByImage under a policy: Rekognition's response shape plus our decision."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from flask_smorest import Blueprint
from marshmallow import Schema, fields, post_dump, validate

from faceapi.domain.decisions import requester_view
from faceapi.entrypoints.web.api.deps import (
    current_actor,
    load_body,
    request_id,
    require_image,
    use_cases,
)
from faceapi.entrypoints.web.api.faces import image_request_body
from faceapi.entrypoints.web.api.idempotency import idempotent
from faceapi.entrypoints.web.api.schemas import (
    BoundingBoxSchema,
    FaceDetailSchema,
    ImageSchema,
    StrictSchema,
)
from faceapi.entrypoints.web.api.verify import DecisionSchema
from faceapi.services.search import SearchRequest, SearchResult

blp = Blueprint("search", __name__, url_prefix="/v1/collections",
                description="Search a collection for a face (SearchFacesByImage) under a policy")

class SearchRequestSchema(StrictSchema):
    policy = fields.String(required=True, validate=validate.Length(min=1, max=64))
    image = fields.Nested(ImageSchema)
    threshold = fields.Float(
        load_default=None, allow_none=True, validate=validate.Range(min=0, max=100),
        metadata={"description": "FaceMatchThreshold; never below the policy's min_similarity"})
    max_faces = fields.Integer(
        load_default=None, allow_none=True, validate=validate.Range(min=1, max=4096),
        metadata={"description": "MaxFaces; never above the policy's max_matches"})
    liveness_attestation = fields.String(
        load_default=None, allow_none=True, validate=validate.Length(min=1, max=8192),
        metadata={"description": "a liveness service's signed attestation (JWT) whose "
                                 "`sub` is `search:<collection_id>`; required by a policy "
                                 "with `liveness.required` (docs/verify.md)"})
    all_faces = fields.Boolean(
        load_default=False,
        metadata={"description": "search every face of the photo, each its own decision "
                                 "(FaceSearches, largest first; the top level is the "
                                 "largest face's); only under a policy that is not "
                                 "consequential, e.g. photo_tagging (docs/collections.md)"})


class SearchByFaceRequestSchema(StrictSchema):
    """REST SearchFaces: the probe is a face of the collection; no image."""

    policy = fields.String(required=True, validate=validate.Length(min=1, max=64),
                           metadata={"description": "a search policy the collection binds"})
    threshold = fields.Float(
        load_default=None, allow_none=True, validate=validate.Range(min=0, max=100),
        metadata={"description": "FaceMatchThreshold; never below the policy's min_similarity"})
    max_faces = fields.Integer(
        load_default=None, allow_none=True, validate=validate.Range(min=1, max=4096),
        metadata={"description": "MaxFaces; never above the policy's max_matches"})


class StoredFaceSchema(Schema):
    face_id = fields.String(data_key="FaceId")
    bounding_box = fields.Nested(BoundingBoxSchema, data_key="BoundingBox")
    image_id = fields.String(data_key="ImageId")
    subject_id = fields.String(data_key="ExternalImageId")
    confidence = fields.Float(data_key="Confidence")


class FaceMatchSchema(Schema):
    similarity = fields.Float(data_key="Similarity")
    face = fields.Nested(StoredFaceSchema, data_key="Face")


def _allowed_attributes(result: SearchResult) -> dict[str, Any] | None:
    if result.searched_face is None:
        return None
    dumped: dict[str, Any] = FaceDetailSchema().dump(result.searched_face)
    return {k: v for k, v in dumped.items() if k in result.attributes}


class SearchResponseSchema(Schema):
    searched_face_bounding_box = fields.Function(
        lambda r: BoundingBoxSchema().dump(r.searched_face.bounding_box)
        if r.searched_face else None, data_key="SearchedFaceBoundingBox")
    searched_face_confidence = fields.Function(
        lambda r: r.searched_face.confidence if r.searched_face else None,
        data_key="SearchedFaceConfidence")
    face_matches = fields.List(fields.Nested(FaceMatchSchema), data_key="FaceMatches")
    model_version = fields.String(data_key="FaceModelVersion")
    faces_not_migrated = fields.Integer(
        data_key="FacesNotMigrated",
        metadata={"description": "faces of the collection at another template version "
                                 "(a model change not yet reindexed): not searched"})
    searched_face = fields.Function(
        _allowed_attributes, data_key="SearchedFace",
        metadata={"description": "the searched face's attributes the policy allows"})
    searched_face_id = fields.String(
        data_key="SearchedFaceId", metadata={"description": "search by face: the probe"})
    decision = fields.Nested(DecisionSchema)
    face_searches = fields.Function(
        lambda r: [SearchResponseSchema().dump(replace(f, face_searches=()))
                   for f in r.face_searches] or None,
        data_key="FaceSearches",
        metadata={"description": "all_faces: one search result per face, largest first, "
                                 "each with its own decision"})

    @post_dump
    def _drop_none(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        return {k: v for k, v in data.items() if v is not None}


@blp.route("/<string:collection_id>/search", methods=["POST"])
@idempotent
@blp.doc(requestBody=image_request_body(SearchRequestSchema, ("image",)))
@blp.response(200, SearchResponseSchema)
def search_faces_by_image(collection_id: str) -> SearchResult:
    """Search the collection for the image's largest face, under a policy."""
    loaded = load_body(SearchRequestSchema(), ("image",))
    req = SearchRequest(collection_id=collection_id, image=require_image(loaded, "image"),
                        policy=loaded["policy"], threshold=loaded["threshold"],
                        max_faces=loaded["max_faces"],
                        liveness_attestation=loaded["liveness_attestation"])
    if loaded["all_faces"]:
        every = [replace(r, decision=requester_view(r.decision)) for r in
                 use_cases().search_every_face(req, actor=current_actor(),
                                               request_id=request_id())]
        return replace(every[0], face_searches=tuple(every))
    result = use_cases().search(req, actor=current_actor(), request_id=request_id())
    # Until reviewers decide, the caller learns only that review is required.
    return replace(result, decision=requester_view(result.decision))
