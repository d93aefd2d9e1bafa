"""Image intake for the use cases: image bytes go through the `ImageDecoder` port; an
S3 object goes to an engine that reads S3 itself (Rekognition)."""

from __future__ import annotations

from faceapi.domain.engine_values import S3Object
from faceapi.domain.errors import InvalidParameter
from faceapi.domain.images import DecodedImage
from faceapi.services.ports import FaceEngine, ImageDecoder, S3ImageReader


def intake(source: bytes | S3Object, decoder: ImageDecoder, engine: FaceEngine) -> DecodedImage:
    """Bytes are decoded under the decoder's limits; an S3 object is handed to an engine
    that reads S3 itself and refused by any other, which has no way to fetch it."""
    if not isinstance(source, S3Object):
        return decoder.decode(source)
    if not isinstance(engine, S3ImageReader):
        raise InvalidParameter(
            f"S3Object images need the rekognition engine; the {engine.name} engine "
            "takes image bytes", details={"accepted": ["bytes"]})
    return engine.image_from_s3(source)
