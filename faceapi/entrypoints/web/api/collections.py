"""Collections, faces (IndexFaces, ListFaces, DeleteFaces), subjects and consent."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from flask_smorest import Blueprint

from faceapi.domain.collections import ConsentBasis, MultipleFaces, QualityFilter
from faceapi.domain.decisions import requester_view
from faceapi.domain.faces import Attributes
from faceapi.entrypoints.web.api.collections_schemas import (
    CollectionPoliciesResponseSchema,
    CollectionPoliciesSchema,
    ConsentInputSchema,
    ConsentSchema,
    CreateCollectionRequestSchema,
    CreateCollectionResponseSchema,
    DeleteCollectionResponseSchema,
    DeleteFacesRequestSchema,
    DeleteFacesResponseSchema,
    DescribeCollectionResponseSchema,
    EraseSubjectResponseSchema,
    IndexFacesRequestSchema,
    IndexFacesResponseSchema,
    ListCollectionsArgsSchema,
    ListCollectionsResponseSchema,
    ListFacesArgsSchema,
    ListFacesResponseSchema,
    SubjectResponseSchema,
)
from faceapi.entrypoints.web.api.deps import (
    current_actor,
    load_body,
    request_id,
    require_image,
    use_cases,
)
from faceapi.entrypoints.web.api.faces import image_request_body
from faceapi.entrypoints.web.api.idempotency import idempotent
from faceapi.entrypoints.web.api.search import SearchByFaceRequestSchema, SearchResponseSchema
from faceapi.services import collections as service
from faceapi.services.enroll import IndexFacesRequest
from faceapi.services.search import SearchByFaceRequest, SearchResult

blp = Blueprint("collections", __name__, url_prefix="/v1/collections",
                description="Face collections, indexed faces, subjects and consent")

def _arn(collection_id: str) -> str:
    return f"arn:faceapi:rekognition::collection/{collection_id}"


@blp.route("", methods=["POST"])
@blp.arguments(CreateCollectionRequestSchema)
@blp.response(201, CreateCollectionResponseSchema)
def create_collection(args: dict[str, Any]) -> Any:
    """Create a collection (CreateCollection) bound to the engine and model in use."""
    policies = args.pop("policies", None)
    multiple_faces = MultipleFaces(args.pop("multiple_faces", MultipleFaces.REFUSE.value))
    collection = use_cases().create_collection(
        service.CreateCollectionRequest(**args, policies=None if policies is None
                                        else tuple(policies), multiple_faces=multiple_faces),
        actor=current_actor())
    return {"status_code": 201, "collection_id": collection.collection_id,
            "collection_arn": _arn(collection.collection_id),
            "face_model_version": collection.model_version}


@blp.route("/<collection_id>/policies", methods=["PUT"])
@blp.arguments(CollectionPoliciesSchema)
@blp.response(200, CollectionPoliciesResponseSchema)
def set_collection_policies(args: dict[str, Any], collection_id: str) -> Any:
    """Re-bind the policies that may be used on a collection (unscoped admins only)."""
    collection = use_cases().set_collection_policies(
        collection_id, args["policies"], actor=current_actor(), request_id=request_id())
    return {"collection_id": collection.collection_id, "policies": collection.policies}


@blp.route("", methods=["GET"])
@blp.arguments(ListCollectionsArgsSchema, location="query")
@blp.response(200, ListCollectionsResponseSchema)
def list_collections(args: dict[str, Any]) -> Any:
    """List the collections this key may see (ListCollections), by id, paged."""
    page = use_cases().list_collections(actor=current_actor(), limit=args["max_results"],
                                        next_token=args["next_token"])
    return {"collection_ids": [c.collection_id for c in page.collections],
            "face_model_versions": [c.model_version for c in page.collections],
            "next_token": page.next_token}


@blp.route("/<collection_id>", methods=["GET"])
@blp.response(200, DescribeCollectionResponseSchema)
def describe_collection(collection_id: str) -> Any:
    """Describe a collection (DescribeCollection): face and subject counts, model."""
    found = use_cases().describe_collection(collection_id, actor=current_actor())
    c = found.collection
    return {"collection_id": c.collection_id, "collection_arn": _arn(c.collection_id),
            "description": c.description, "face_count": found.stats.face_count,
            "user_count": found.stats.subject_count, "face_model_version": c.model_version,
            "engine": c.engine, "creation_timestamp": c.created_at,
            "consent_required": c.consent_required, "keep_face_crops": c.keep_face_crops,
            "multiple_faces": c.multiple_faces.value,
            "keep_chips": c.keep_chips, "template_versions": dict(found.stats.template_versions),
            "policies": c.policies}


@blp.route("/<collection_id>", methods=["DELETE"])
@blp.response(200, DeleteCollectionResponseSchema)
def delete_collection(collection_id: str) -> Any:
    """Delete a collection with all its faces, subjects, consents and review data."""
    use_cases().delete_collection(collection_id, actor=current_actor())
    return {"status_code": 200}


@blp.route("/<collection_id>/faces", methods=["POST"])
@idempotent
@blp.doc(requestBody=image_request_body(IndexFacesRequestSchema, ("image",)))
@blp.response(200, IndexFacesResponseSchema)
@blp.alt_response(422, description="multiple_faces: the photo shows several faces and the "
                                   "collection's multiple_faces rule is refuse "
                                   "(details.face_count); also validation and intake codes")
def index_collection_faces(collection_id: str) -> Any:
    """Index the faces of an image under a subject (IndexFaces), with its consent."""
    loaded = load_body(IndexFacesRequestSchema(), ("image",))
    consent = loaded["consent"]
    req = IndexFacesRequest(
        collection_id=collection_id, image=require_image(loaded, "image"),
        subject_id=loaded["subject_id"], max_faces=loaded["max_faces"],
        quality_filter=QualityFilter(loaded["quality_filter"]),
        consent=service.ConsentInput(ConsentBasis(consent["basis"]), consent["reference"],
                                     consent["expires_at"]) if consent else None,
        attributes=Attributes.ALL if "ALL" in loaded["detection_attributes"]
        else Attributes.DEFAULT,
        # Without max_faces, the collection's rule for group photos decides; with it,
        # Rekognition's MaxFaces (the largest faces up to it), with a warning.
        collection_rule=loaded["max_faces"] is None)
    return use_cases().index_faces(req, actor=current_actor())


@blp.route("/<collection_id>/faces/<face_id>/search", methods=["POST"])
@idempotent
@blp.arguments(SearchByFaceRequestSchema)
@blp.response(200, SearchResponseSchema)
@blp.alt_response(404, description="no such collection or face (or outside the key's scope)")
def search_by_face_id(args: dict[str, Any], collection_id: str, face_id: str) -> SearchResult:
    """Search the collection for faces like one of its own (SearchFaces), under a
    policy the collection binds: its threshold, lockout filter and review apply as to a
    search by image. Refused (403 `liveness_unsupported`) under a policy that requires
    liveness: a stored face is no live capture."""
    req = SearchByFaceRequest(collection_id=collection_id, face_id=face_id,
                              threshold=args["threshold"], max_faces=args["max_faces"],
                              policy=args["policy"])
    result = use_cases().search_by_face(req, actor=current_actor(), request_id=request_id())
    # Until reviewers decide, the caller learns only that review is required.
    return replace(result, decision=requester_view(result.decision))


@blp.route("/<collection_id>/faces", methods=["GET"])
@blp.arguments(ListFacesArgsSchema, location="query")
@blp.response(200, ListFacesResponseSchema)
def list_faces(args: dict[str, Any], collection_id: str) -> Any:
    """List a collection's faces (ListFaces), optionally of one subject, paged."""
    return use_cases().list_faces(collection_id, actor=current_actor(),
                                  subject_id=args["subject_id"], limit=args["max_results"],
                                  next_token=args["next_token"])


@blp.route("/<collection_id>/faces", methods=["DELETE"])
@blp.arguments(DeleteFacesRequestSchema)
@blp.response(200, DeleteFacesResponseSchema)
def delete_faces(args: dict[str, Any], collection_id: str) -> Any:
    """Delete faces by id (DeleteFaces); unknown ids come back as FACE_NOT_FOUND."""
    result = use_cases().delete_faces(collection_id, args["face_ids"], actor=current_actor())
    return {"deleted_faces": result.deleted,
            "unsuccessful": [{"face_id": f, "reasons": ["FACE_NOT_FOUND"]}
                             for f in result.not_found]}


@blp.route("/<collection_id>/subjects/<subject_id>", methods=["GET"])
@blp.response(200, SubjectResponseSchema)
def get_subject(collection_id: str, subject_id: str) -> Any:
    """A subject: its faces and the consent in force."""
    return use_cases().get_subject(collection_id, subject_id, actor=current_actor())


@blp.route("/<collection_id>/subjects/<subject_id>", methods=["DELETE"])
@blp.response(200, EraseSubjectResponseSchema)
def erase_collection_subject(collection_id: str, subject_id: str) -> Any:
    """Erase a subject (GDPR Art 17): faces, descriptors, consent, review data, lockout."""
    return use_cases().erase_subject(collection_id, subject_id, actor=current_actor())


@blp.route("/<collection_id>/subjects/<subject_id>/consent", methods=["POST"])
@blp.arguments(ConsentInputSchema)
@blp.response(201, ConsentSchema)
def record_subject_consent(args: dict[str, Any], collection_id: str, subject_id: str) -> Any:
    """Record the consent (or other lawful basis) for a subject's faces."""
    return use_cases().record_consent(
        collection_id, subject_id,
        service.ConsentInput(ConsentBasis(args["basis"]), args["reference"],
                             args["expires_at"]),
        actor=current_actor())

