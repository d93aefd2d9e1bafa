"""Marshmallow schemas at the edge: request shapes and Rekognition-named responses.

Schemas check shape, types and ranges only; rules live in the services.
"""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, post_dump, pre_load, validate


class StrictSchema(Schema):
    """Unknown fields are an error: a misspelt option must not be silently ignored."""


class S3ObjectSchema(StrictSchema):
    bucket = fields.String(required=True, data_key="Bucket", validate=validate.Length(3, 255))
    name = fields.String(required=True, data_key="Name", validate=validate.Length(1, 1024))
    version = fields.String(data_key="Version", validate=validate.Length(1, 1024))


class ImageSchema(StrictSchema):
    bytes = fields.Raw(metadata={"description": "base64 image (JSON) or a file part (multipart)"})
    s3_object = fields.Nested(
        S3ObjectSchema, data_key="S3Object",
        metadata={"description": "an image in S3 (JSON only), instead of bytes; only with "
                                 "the rekognition engine (docs/engines.md)"})


class DetectRequestSchema(StrictSchema):
    image = fields.Nested(ImageSchema)
    attributes = fields.List(
        fields.String(validate=validate.OneOf(["DEFAULT", "ALL"])),
        load_default=["DEFAULT"],
        metadata={"description": "DEFAULT or ALL, like Rekognition DetectFaces Attributes"})

    @pre_load
    def _single_attribute(self, data: Any, **_: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("attributes"), str):
            data = {**data, "attributes": [data["attributes"]]}
        return data


class CompareRequestSchema(StrictSchema):
    source = fields.Nested(ImageSchema)
    target = fields.Nested(ImageSchema)
    similarity_threshold = fields.Float(
        load_default=80.0, validate=validate.Range(min=0, max=100),
        metadata={"description": "minimum Similarity for a FaceMatch, 0-100"})


class _OmitNoneSchema(Schema):
    @post_dump
    def _drop_none(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        # An attribute the engine did not compute is absent, not null.
        return {key: value for key, value in data.items() if value is not None}


class BoundingBoxSchema(Schema):
    width = fields.Float(data_key="Width")
    height = fields.Float(data_key="Height")
    left = fields.Float(data_key="Left")
    top = fields.Float(data_key="Top")


class LandmarkSchema(Schema):
    type = fields.String(data_key="Type")
    x = fields.Float(data_key="X")
    y = fields.Float(data_key="Y")


class PoseSchema(Schema):
    roll = fields.Float(data_key="Roll")
    yaw = fields.Float(data_key="Yaw")
    pitch = fields.Float(data_key="Pitch")


class QualitySchema(Schema):
    brightness = fields.Float(data_key="Brightness")
    sharpness = fields.Float(data_key="Sharpness")


class BooleanAttributeSchema(Schema):
    value = fields.Boolean(data_key="Value")
    confidence = fields.Float(data_key="Confidence")


class FaceDetailSchema(_OmitNoneSchema):
    bounding_box = fields.Nested(BoundingBoxSchema, data_key="BoundingBox")
    confidence = fields.Float(data_key="Confidence")
    landmarks = fields.List(fields.Nested(LandmarkSchema), data_key="Landmarks")
    pose = fields.Nested(PoseSchema, data_key="Pose", allow_none=True)
    quality = fields.Nested(QualitySchema, data_key="Quality", allow_none=True)
    eyes_open = fields.Nested(BooleanAttributeSchema, data_key="EyesOpen", allow_none=True)
    mouth_open = fields.Nested(BooleanAttributeSchema, data_key="MouthOpen", allow_none=True)


class ComparedFaceSchema(_OmitNoneSchema):
    """CompareFaces' ComparedFace: box, confidence, landmarks, pose, quality."""

    bounding_box = fields.Nested(BoundingBoxSchema, data_key="BoundingBox")
    confidence = fields.Float(data_key="Confidence")
    landmarks = fields.List(fields.Nested(LandmarkSchema), data_key="Landmarks")
    pose = fields.Nested(PoseSchema, data_key="Pose", allow_none=True)
    quality = fields.Nested(QualitySchema, data_key="Quality", allow_none=True)


class DetectResponseSchema(_OmitNoneSchema):
    faces = fields.List(fields.Nested(FaceDetailSchema), data_key="FaceDetails")
    orientation_correction = fields.Function(
        lambda d: d.orientation_correction.value if d.orientation_correction else None,
        data_key="OrientationCorrection")


class SourceFaceSchema(Schema):
    bounding_box = fields.Nested(BoundingBoxSchema, data_key="BoundingBox")
    confidence = fields.Float(data_key="Confidence")


class CompareFaceMatchSchema(Schema):
    similarity = fields.Float(data_key="Similarity")
    face = fields.Nested(ComparedFaceSchema, data_key="Face")


class CompareResponseSchema(_OmitNoneSchema):
    source_face = fields.Nested(SourceFaceSchema, data_key="SourceImageFace")
    face_matches = fields.List(fields.Nested(CompareFaceMatchSchema), data_key="FaceMatches")
    unmatched_faces = fields.List(fields.Nested(ComparedFaceSchema), data_key="UnmatchedFaces")
    source_orientation_correction = fields.Function(
        lambda c: c.source_orientation_correction.value
        if c.source_orientation_correction else None,
        data_key="SourceImageOrientationCorrection")
    target_orientation_correction = fields.Function(
        lambda c: c.target_orientation_correction.value
        if c.target_orientation_correction else None,
        data_key="TargetImageOrientationCorrection")


class CapabilitiesSchema(Schema):
    engine = fields.String()
    model_version = fields.String()
    detector = fields.String()
    attributes = fields.List(fields.String(), metadata={"description": "attributes computed"})
    unsupported = fields.List(fields.String(),
                              metadata={"description": "attributes never returned"})
    similarity = fields.String(metadata={"description": "how Similarity is calibrated"})
    max_image_bytes = fields.Integer(allow_none=True)
    notes = fields.List(fields.String())


class HealthSchema(Schema):
    status = fields.String()
    checks = fields.Dict(keys=fields.String(), values=fields.String())


class ErrorBodySchema(Schema):
    code = fields.String()
    message = fields.String()
    request_id = fields.String(allow_none=True)
    details = fields.Dict()


class ErrorSchema(Schema):
    error = fields.Nested(ErrorBodySchema)
