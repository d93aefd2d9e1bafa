"""Schemas of the collections API: snake_case requests, Rekognition-named responses
(CreateCollection, ListCollections, DescribeCollection, IndexFaces, ListFaces,
DeleteFaces), plus our subject and consent resources."""

from __future__ import annotations

import contextlib
import json
from typing import Any

from marshmallow import Schema, fields, pre_dump, pre_load, validate

from faceapi.domain.collections import ConsentBasis, MultipleFaces, QualityFilter, StoredFace
from faceapi.entrypoints.web.api.schemas import (
    BoundingBoxSchema,
    FaceDetailSchema,
    ImageSchema,
    StrictSchema,
    _OmitNoneSchema,
)

ID_VALIDATOR = validate.Regexp(r"^[A-Za-z0-9_.\-]{1,128}\Z",
                               error="1-128 letters, digits, '_', '.' or '-'")


class CreateCollectionRequestSchema(StrictSchema):
    collection_id = fields.String(required=True, validate=ID_VALIDATOR)
    description = fields.String(load_default="", validate=validate.Length(max=512))
    consent_required = fields.Boolean(
        load_default=True, truthy={True}, falsy={False},  # JSON true/false only
        metadata={"description": "refuse to index a subject's faces without a recorded "
                                 "consent (default true)"})
    keep_face_crops = fields.Boolean(
        load_default=True, truthy={True}, falsy={False},  # JSON true/false only
        metadata={"description": "keep a small JPEG crop of each indexed face, shown to "
                                 "reviewers of decisions about it (default true)"})
    multiple_faces = fields.String(
        load_default="refuse", validate=validate.OneOf([m.value for m in MultipleFaces]),
        metadata={"description": "enrolling a photo with several faces: `refuse` (422 "
                                 "`multiple_faces`, default) or `largest` (the largest "
                                 "face, with a warning)"})
    keep_chips = fields.Boolean(
        load_default=True, truthy={True}, falsy={False},  # JSON true/false only
        metadata={"description": "keep each face's aligned chip, sealed, so a model change "
                                 "needs `faceapi collections reindex`, not re-enrollment "
                                 "(default true)"})
    policies = fields.List(
        fields.String(validate=validate.Length(min=1, max=64)), load_default=None,
        validate=validate.Length(min=1, max=32),
        metadata={"description": "the verify and search policies that may be used on the "
                                 "collection (default: FACEAPI_DEFAULT_COLLECTION_POLICIES)"})


class CollectionPoliciesSchema(StrictSchema):
    policies = fields.List(
        fields.String(validate=validate.Length(min=1, max=64)), required=True,
        validate=validate.Length(min=1, max=32),
        metadata={"description": "the verify and search policies that may be used on the "
                                 "collection; replaces the current binding"})


class CollectionPoliciesResponseSchema(Schema):
    collection_id = fields.String(data_key="CollectionId")
    policies = fields.List(fields.String(), data_key="Policies")


class CreateCollectionResponseSchema(Schema):
    status_code = fields.Integer(data_key="StatusCode")
    collection_id = fields.String(data_key="CollectionId")
    collection_arn = fields.String(data_key="CollectionArn")
    face_model_version = fields.String(data_key="FaceModelVersion")


class ListCollectionsArgsSchema(StrictSchema):
    max_results = fields.Integer(load_default=100, validate=validate.Range(min=1, max=1000))
    next_token = fields.String(load_default=None, validate=validate.Length(max=128))


class ListCollectionsResponseSchema(_OmitNoneSchema):
    collection_ids = fields.List(fields.String(), data_key="CollectionIds")
    face_model_versions = fields.List(fields.String(), data_key="FaceModelVersions")
    next_token = fields.String(data_key="NextToken", allow_none=True)


class DescribeCollectionResponseSchema(Schema):
    collection_id = fields.String(data_key="CollectionId")
    collection_arn = fields.String(data_key="CollectionARN")
    description = fields.String(data_key="Description")
    face_count = fields.Integer(data_key="FaceCount")
    user_count = fields.Integer(data_key="UserCount",
                                metadata={"description": "number of subjects"})
    face_model_version = fields.String(data_key="FaceModelVersion")
    engine = fields.String(data_key="Engine")
    creation_timestamp = fields.DateTime(data_key="CreationTimestamp")
    consent_required = fields.Boolean(data_key="ConsentRequired")
    keep_face_crops = fields.Boolean(data_key="KeepFaceCrops")
    multiple_faces = fields.String(data_key="MultipleFaces",
                                   metadata={"description": "refuse | largest"})
    keep_chips = fields.Boolean(data_key="KeepChips")
    # Faces per template version: more than one while a model change is being reindexed.
    template_versions = fields.Dict(keys=fields.String(), values=fields.Integer(),
                                    data_key="TemplateVersions")
    policies = fields.List(fields.String(), data_key="Policies")


class DeleteCollectionResponseSchema(Schema):
    status_code = fields.Integer(data_key="StatusCode")


class ConsentInputSchema(StrictSchema):
    basis = fields.String(required=True, validate=validate.OneOf([b.value for b in ConsentBasis]),
                          metadata={"description": "lawful basis (GDPR Art 9(2))"})
    reference = fields.String(
        required=True, validate=validate.Length(min=1, max=256),
        metadata={"description": "where the evidence is kept (form id, ticket); not the "
                                 "evidence itself"})
    expires_at = fields.AwareDateTime(
        load_default=None, allow_none=True,
        metadata={"description": "when the consent lapses (ISO 8601 with a zone, in the "
                                 "future); from then the subject is used by no enrollment, "
                                 "verify or search, and the next retention run erases it. "
                                 "Omitted: it does not lapse"})


class IndexFacesRequestSchema(StrictSchema):
    image = fields.Nested(ImageSchema)
    subject_id = fields.String(
        required=True, validate=ID_VALIDATOR,
        metadata={"description": "the person these faces belong to; returned as "
                                 "ExternalImageId and UserId"})
    max_faces = fields.Integer(load_default=None, allow_none=True,
                               validate=validate.Range(min=1, max=100))
    quality_filter = fields.String(load_default="AUTO",
                                   validate=validate.OneOf([q.value for q in QualityFilter]))
    detection_attributes = fields.List(
        fields.String(validate=validate.OneOf(["DEFAULT", "ALL"])), load_default=["DEFAULT"])
    consent = fields.Nested(ConsentInputSchema, load_default=None, allow_none=True)

    @pre_load
    def _from_form(self, data: Any, **_: Any) -> Any:
        # Multipart forms carry `consent` as a JSON string and one attribute as a string.
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if isinstance(data.get("consent"), str):
            # Bad JSON stays text, which the Nested field then reports as invalid.
            with contextlib.suppress(ValueError):
                data["consent"] = json.loads(data["consent"])
        if isinstance(data.get("detection_attributes"), str):
            data["detection_attributes"] = [data["detection_attributes"]]
        return data


def face_view(face: StoredFace, model_version: str) -> dict[str, Any]:
    """A stored face as FaceSchema dumps it (the descriptor is left behind)."""
    return {"face_id": face.face_id, "bounding_box": face.bounding_box,
            "image_id": face.image_id, "external_image_id": face.subject_id,
            "user_id": face.subject_id,
            "confidence": face.confidence, "model_version": model_version}


class FaceSchema(_OmitNoneSchema):
    """Rekognition's Face: a stored face without its descriptor."""

    face_id = fields.String(data_key="FaceId")
    bounding_box = fields.Nested(BoundingBoxSchema, data_key="BoundingBox")
    image_id = fields.String(data_key="ImageId")
    external_image_id = fields.String(data_key="ExternalImageId")
    user_id = fields.String(data_key="UserId", metadata={"description": "the subject id"})
    confidence = fields.Float(data_key="Confidence")
    model_version = fields.String(data_key="IndexFacesModelVersion")


class FaceRecordSchema(Schema):
    face = fields.Nested(FaceSchema, data_key="Face")
    detail = fields.Nested(FaceDetailSchema, data_key="FaceDetail")


class UnindexedFaceSchema(Schema):
    reasons = fields.List(fields.String(), data_key="Reasons")
    detail = fields.Nested(FaceDetailSchema, data_key="FaceDetail")


class IndexFacesResponseSchema(_OmitNoneSchema):
    @pre_dump
    def _faces(self, result: Any, **_: Any) -> dict[str, Any]:
        return {"face_records": [{"face": face_view(r.face, result.face_model_version),
                                  "detail": r.detail} for r in result.face_records],
                "orientation_correction": result.orientation_correction,
                "face_model_version": result.face_model_version,
                "unindexed_faces": result.unindexed_faces,
                "warnings": list(result.warnings) or None,
                "audit_event_id": result.audit_event_id}

    face_records = fields.List(fields.Nested(FaceRecordSchema), data_key="FaceRecords")
    orientation_correction = fields.Function(
        lambda r: r["orientation_correction"].value if r["orientation_correction"] else None,
        data_key="OrientationCorrection")
    face_model_version = fields.String(data_key="FaceModelVersion")
    unindexed_faces = fields.List(fields.Nested(UnindexedFaceSchema), data_key="UnindexedFaces")
    warnings = fields.List(fields.String(), data_key="Warnings", metadata={
        "description": "each 'code: message'; codes: multiple_faces (the photo showed "
                       "several faces and only the largest was enrolled), poor_template (a "
                       "bound policy would refuse the face as a probe), "
                       "inconsistent_with_subject (the face does not match the subject's "
                       "other faces at any bound threshold); absent when there is nothing "
                       "to say. Warnings never refuse the enrollment"})
    audit_event_id = fields.String(data_key="AuditEventId")


class ListFacesArgsSchema(StrictSchema):
    subject_id = fields.String(load_default=None, validate=ID_VALIDATOR)
    max_results = fields.Integer(load_default=100, validate=validate.Range(min=1, max=1000))
    next_token = fields.String(load_default=None, validate=validate.Length(max=64))


class ListFacesResponseSchema(_OmitNoneSchema):
    @pre_dump
    def _faces(self, page: Any, **_: Any) -> dict[str, Any]:
        version = page.collection.model_version
        return {"faces": [face_view(f, version) for f in page.faces],
                "next_token": page.next_token, "face_model_version": version}

    faces = fields.List(fields.Nested(FaceSchema), data_key="Faces")
    next_token = fields.String(data_key="NextToken", allow_none=True)
    face_model_version = fields.String(data_key="FaceModelVersion")


class DeleteFacesRequestSchema(StrictSchema):
    face_ids = fields.List(fields.String(validate=validate.Length(min=1, max=64)),
                           required=True, validate=validate.Length(min=1, max=4096))


class UnsuccessfulFaceDeletionSchema(Schema):
    face_id = fields.String(data_key="FaceId")
    reasons = fields.List(fields.String(), data_key="Reasons")


class DeleteFacesResponseSchema(Schema):
    deleted_faces = fields.List(fields.String(), data_key="DeletedFaces")
    unsuccessful = fields.List(fields.Nested(UnsuccessfulFaceDeletionSchema),
                               data_key="UnsuccessfulFaceDeletions")


class ConsentSchema(_OmitNoneSchema):
    basis = fields.Function(lambda c: c.basis.value, data_key="Basis")
    reference = fields.String(data_key="Reference")
    recorded_at = fields.DateTime(data_key="RecordedAt")
    recorded_by = fields.String(data_key="RecordedBy", allow_none=True)
    expires_at = fields.DateTime(data_key="ExpiresAt", allow_none=True)


class SubjectResponseSchema(_OmitNoneSchema):
    @pre_dump
    def _view(self, view: Any, **_: Any) -> dict[str, Any]:
        return {"collection_id": view.subject.collection_id,
                "subject_id": view.subject.subject_id, "created_at": view.subject.created_at,
                "face_count": len(view.faces),
                "faces": [face_view(f, view.model_version) for f in view.faces],
                "consent": view.consent}

    collection_id = fields.String(data_key="CollectionId")
    subject_id = fields.String(data_key="SubjectId")
    created_at = fields.DateTime(data_key="CreatedAt")
    face_count = fields.Integer(data_key="FaceCount")
    faces = fields.List(fields.Nested(FaceSchema), data_key="Faces")
    consent = fields.Nested(ConsentSchema, data_key="Consent", allow_none=True)


class EraseSubjectResponseSchema(Schema):
    collection_id = fields.String(data_key="CollectionId")
    subject_id = fields.String(data_key="SubjectId")
    face_count = fields.Integer(data_key="DeletedFaceCount")
    consent_count = fields.Integer(data_key="DeletedConsentCount")
    other = fields.Dict(keys=fields.String(), values=fields.Integer(), data_key="DeletedOther")
    audit_event_id = fields.String(data_key="AuditEventId")
