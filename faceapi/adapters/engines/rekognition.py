"""RekognitionEngine: the engine port on AWS Rekognition through boto3.

boto3 is imported here and nowhere else. Every call goes through `_call`, which turns
boto3's exceptions into our FaceApiError subclasses, so nothing above the engine ever
sees a botocore type. Retries are boto3's own `standard` mode (throttling, 5xx,
timeouts and connection errors are retried with jittered backoff; client errors are
not), bounded by `aws_max_attempts` in total.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import boto3
import botocore.exceptions
import numpy as np
from botocore.config import Config

from faceapi.config import Settings
from faceapi.domain.collections import CollectionExists, QualityFilter, UnindexedReason
from faceapi.domain.engine_values import (
    CollectionIdPage,
    CollectionInfo,
    CollectionMatch,
    CollectionSearch,
    FaceDeletion,
    IndexedFace,
    IndexedFacePage,
    IndexedFaceRecord,
    IndexResult,
    NotIndexedFace,
    S3Image,
    S3Object,
    image_digest,
)
from faceapi.domain.errors import (
    Conflict,
    EngineAccessDenied,
    EngineThrottled,
    EngineUnavailable,
    FaceApiError,
    ImageTooLarge,
    InvalidParameter,
    NoFaceInSource,
    NotFound,
    UnsupportedImageFormat,
)
from faceapi.domain.faces import (
    DETAIL_ATTRIBUTES,
    UNCARRIED_ATTRIBUTES,
    Attributes,
    BooleanAttribute,
    BoundingBox,
    Capabilities,
    CompareFaceMatch,
    Comparison,
    Detection,
    EmbeddedFace,
    FaceDetail,
    Landmark,
    OrientationCorrection,
    Pose,
    Quality,
)
from faceapi.domain.images import REKOGNITION_MAX_IMAGE_BYTES, DecodedImage

API_VERSION = "2016-06-27"
# Rekognition's documented limits for images passed as bytes: 5 MB, JPEG or PNG.
# Checked here so a request that would fail (and might be billed) is never sent.
MAX_IMAGE_BYTES = REKOGNITION_MAX_IMAGE_BYTES
ACCEPTED_FORMATS = ("jpeg", "png")
# Rekognition sends no Retry-After; after boto3 has spent its attempts a client should
# wait about as long as boto3's next backoff step would have been.
DEFAULT_RETRY_AFTER_S = 2
# /readyz is polled often; one cheap ListCollections call per this many seconds at most.
READY_CACHE_S = 30.0

_THROTTLING_CODES = frozenset({"ThrottlingException", "ProvisionedThroughputExceededException",
                               "LimitExceededException", "TooManyRequestsException"})
_AUTH_CODES = frozenset({"AccessDeniedException", "UnrecognizedClientException",
                         "InvalidSignatureException", "ExpiredTokenException",
                         "MissingAuthenticationTokenException", "InvalidClientTokenId"})
_TRANSPORT_ERRORS: tuple[type[Exception], ...] = (
    botocore.exceptions.EndpointConnectionError,
    botocore.exceptions.ConnectTimeoutError,
    botocore.exceptions.ReadTimeoutError,
    botocore.exceptions.ConnectionClosedError,
    botocore.exceptions.ProxyConnectionError,
    botocore.exceptions.HTTPClientError,
)


class RekognitionEngine:
    """Face detection and comparison by AWS Rekognition (or any endpoint speaking its
    JSON 1.1 protocol, such as faceapi's own emulator)."""

    def __init__(self, settings: Settings, *, session: Any = None) -> None:
        """`session` is a boto3.Session; by default boto3's usual credential chain
        (environment, shared files, instance/task role) is used, never our config."""
        self._settings = settings
        config = Config(
            region_name=settings.aws_region,
            retries={"mode": "standard", "total_max_attempts": max(1, settings.aws_max_attempts)},
            connect_timeout=settings.aws_connect_timeout,
            read_timeout=settings.aws_read_timeout,
            user_agent_extra="faceapi",
        )
        self._session = session or boto3.session.Session()
        self._config = config
        self._client: Any = self._new_client()
        self._lock = threading.Lock()
        self._ready_checked_at = -READY_CACHE_S
        self._ready_result: tuple[bool, str] = (False, "not checked yet")
        # gunicorn preloads the app and forks: a worker must not share the parent's
        # HTTP connection pool or its readiness verdict. A weak reference, so engines
        # built by tests are not kept alive by the fork hook.
        this = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _after_fork(this))

    def _new_client(self) -> Any:
        return self._session.client(
            "rekognition", region_name=self._settings.aws_region,
            endpoint_url=self._settings.aws_endpoint_url or None, config=self._config)

    def _reset_after_fork(self) -> None:
        self._client = self._new_client()
        self._lock = threading.Lock()
        self._ready_checked_at = -READY_CACHE_S

    # Port: identity ------------------------------------------------------------------

    @property
    def name(self) -> str:
        return "rekognition"

    @property
    def model_version(self) -> str:
        return f"rekognition-{API_VERSION}"

    @property
    def template_version(self) -> str:
        # Rekognition keeps its faces: one version for everything it computes.
        return self.model_version

    @property
    def client(self) -> Any:
        """The boto3 client, for the collection operations in this module."""
        return self._client

    def capabilities(self) -> Capabilities:
        return Capabilities(
            engine=self.name,
            model_version=self.model_version,
            detector="aws-rekognition",
            attributes=DETAIL_ATTRIBUTES,
            # Rekognition computes these but our FaceDetail does not carry them, so
            # callers never receive them through this engine (docs/engines.md).
            unsupported=UNCARRIED_ATTRIBUTES,
            similarity="Rekognition's own Similarity (0-100), not calibrated by faceapi; "
                       "its scale differs from the local engine's (docs/engines.md)",
            max_image_bytes=MAX_IMAGE_BYTES,
            notes=(f"region {self._settings.aws_region}",
                   "images may also be given as S3Object {Bucket, Name} in the "
                   "region's buckets"),
        )

    def ready(self) -> tuple[bool, str]:
        """Ask the endpoint (cached); say why not when it cannot be reached or refuses us."""
        now = time.monotonic()
        with self._lock:
            if now - self._ready_checked_at < READY_CACHE_S:
                return self._ready_result
        try:
            self._call("ListCollections", {"MaxResults": 1})
            result = (True, "rekognition reachable")
        except FaceApiError as exc:
            result = (False, exc.message)
        with self._lock:
            self._ready_checked_at = now
            self._ready_result = result
        return result

    # Port: analysis --------------------------------------------------------------------

    def detect_faces(self, image: DecodedImage, attributes: Attributes) -> Detection:
        response = self._call("DetectFaces", {
            "Image": self.image_param(image), "Attributes": [attributes.value]})
        size = (image.width, image.height)
        return Detection(
            faces=tuple(face_detail(d, size) for d in response.get("FaceDetails", [])),
            orientation_correction=_orientation(response.get("OrientationCorrection")))

    def compare_faces(self, source: DecodedImage, target: DecodedImage,
                      similarity_threshold: float) -> Comparison:
        if not 0.0 <= similarity_threshold <= 100.0:
            raise InvalidParameter("similarity_threshold must be between 0 and 100")
        response = self._call("CompareFaces", {
            "SourceImage": self.image_param(source), "TargetImage": self.image_param(target),
            "SimilarityThreshold": float(similarity_threshold)},
            no_face=lambda message: NoFaceInSource(
                f"no face was found in the source image ({message})"))
        source_size = (source.width, source.height)
        target_size = (target.width, target.height)
        matches = sorted(
            (CompareFaceMatch(similarity=float(m["Similarity"]),
                              face=face_detail(m["Face"], target_size))
             for m in response.get("FaceMatches", [])),
            key=lambda m: m.similarity, reverse=True)
        return Comparison(
            source_face=face_detail(response.get("SourceImageFace", {}), source_size),
            face_matches=tuple(matches),
            unmatched_faces=tuple(face_detail(d, target_size)
                                  for d in response.get("UnmatchedFaces", [])),
            source_orientation_correction=_orientation(
                response.get("SourceImageOrientationCorrection")),
            target_orientation_correction=_orientation(
                response.get("TargetImageOrientationCorrection")))

    def embed_faces(self, image: DecodedImage) -> tuple[Detection, list[EmbeddedFace]]:
        raise InvalidParameter(
            "the rekognition engine does not expose face descriptors; its collections "
            "are kept by Rekognition (use the collection operations)")

    def similarity(self, a: tuple[float, ...], b: tuple[float, ...]) -> float:
        raise InvalidParameter("the rekognition engine does not expose face descriptors")

    def fused_similarity(self, probe: tuple[float, ...],
                         templates: Sequence[tuple[float, ...]]) -> float:
        # Rekognition scores each stored face on its own; a verify on it is best-of
        # whatever the policy says, and its audit event says so.
        raise InvalidParameter("the rekognition engine does not expose face descriptors")

    # Port: collections (faces are kept by Rekognition) ---------------------------------

    def _remote(self, collection_id: str) -> str:
        # The prefix keeps faceapi's collections apart from others in the same account
        # and lets an IAM policy grant access to `collection/<prefix>*` only.
        return self._settings.rekognition_collection_prefix + collection_id

    def create_collection(self, collection_id: str) -> CollectionInfo:
        response = self._call("CreateCollection", {"CollectionId": self._remote(collection_id)})
        return CollectionInfo(collection_id=collection_id,
                              face_model_version=str(response.get("FaceModelVersion", "")),
                              arn=response.get("CollectionArn"))

    def delete_collection(self, collection_id: str) -> None:
        self._call("DeleteCollection", {"CollectionId": self._remote(collection_id)})

    def describe_collection(self, collection_id: str) -> CollectionInfo:
        response = self._call("DescribeCollection",
                              {"CollectionId": self._remote(collection_id)})
        users = response.get("UserCount")
        return CollectionInfo(collection_id=collection_id,
                              face_model_version=str(response.get("FaceModelVersion", "")),
                              face_count=int(response.get("FaceCount", 0)),
                              subject_count=None if users is None else int(users),
                              created_at=response.get("CreationTimestamp"),
                              arn=response.get("CollectionARN"))

    def list_collections(self, max_results: int = 100,
                         next_token: str | None = None) -> CollectionIdPage:
        params: dict[str, Any] = {"MaxResults": max_results}
        if next_token:
            params["NextToken"] = next_token
        response = self._call("ListCollections", params)
        prefix = self._settings.rekognition_collection_prefix
        ids = response.get("CollectionIds", [])
        versions = response.get("FaceModelVersions", [""] * len(ids))
        ours = [(i[len(prefix):], v) for i, v in zip(ids, versions, strict=False)
                if i.startswith(prefix)]
        return CollectionIdPage(collection_ids=tuple(i for i, _ in ours),
                                face_model_versions=tuple(v for _, v in ours),
                                next_token=response.get("NextToken"))

    def index_faces(self, collection_id: str, image: DecodedImage, external_image_id: str,
                    max_faces: int | None = None,
                    quality_filter: QualityFilter = QualityFilter.AUTO) -> IndexResult:
        params: dict[str, Any] = {
            "CollectionId": self._remote(collection_id), "Image": self.image_param(image),
            "ExternalImageId": external_image_id, "DetectionAttributes": ["ALL"],
            "QualityFilter": quality_filter.value}
        if max_faces is not None:
            params["MaxFaces"] = max_faces
        response = self._call("IndexFaces", params)
        size = (image.width, image.height)
        return IndexResult(
            records=tuple(IndexedFaceRecord(face=_indexed_face(r["Face"]),
                                            detail=face_detail(r.get("FaceDetail", {}), size))
                          for r in response.get("FaceRecords", [])),
            unindexed=tuple(NotIndexedFace(
                reasons=tuple(UnindexedReason(x) for x in u.get("Reasons", [])
                              if x in UnindexedReason.__members__),
                detail=face_detail(u.get("FaceDetail", {}), size))
                for u in response.get("UnindexedFaces", [])),
            face_model_version=str(response.get("FaceModelVersion", "")),
            orientation_correction=_orientation(response.get("OrientationCorrection")))

    def search_faces_by_image(self, collection_id: str, image: DecodedImage,
                              threshold: float, max_faces: int) -> CollectionSearch:
        response = self._call("SearchFacesByImage", {
            "CollectionId": self._remote(collection_id), "Image": self.image_param(image),
            "FaceMatchThreshold": float(threshold), "MaxFaces": max_faces},
            no_face=lambda message: NoFaceInSource(
                f"no face was found in the search image ({message})"))
        box = response.get("SearchedFaceBoundingBox")
        searched = None
        if box is not None:
            searched = face_detail({"BoundingBox": box,
                                    "Confidence": response.get("SearchedFaceConfidence", 0.0)},
                                   (image.width, image.height))
        return CollectionSearch(matches=_matches(response),
                                face_model_version=str(response.get("FaceModelVersion", "")),
                                searched_face=searched)

    def search_faces(self, collection_id: str, face_id: str, threshold: float,
                     max_faces: int) -> CollectionSearch:
        response = self._call("SearchFaces", {
            "CollectionId": self._remote(collection_id), "FaceId": face_id,
            "FaceMatchThreshold": float(threshold), "MaxFaces": max_faces})
        return CollectionSearch(matches=_matches(response),
                                face_model_version=str(response.get("FaceModelVersion", "")),
                                searched_face_id=response.get("SearchedFaceId"))

    def list_faces(self, collection_id: str, max_results: int = 100,
                   next_token: str | None = None) -> IndexedFacePage:
        params: dict[str, Any] = {"CollectionId": self._remote(collection_id),
                                  "MaxResults": max_results}
        if next_token:
            params["NextToken"] = next_token
        response = self._call("ListFaces", params)
        return IndexedFacePage(faces=tuple(_indexed_face(f) for f in response.get("Faces", [])),
                               next_token=response.get("NextToken"),
                               face_model_version=str(response.get("FaceModelVersion", "")))

    def delete_faces(self, collection_id: str, face_ids: Sequence[str]) -> FaceDeletion:
        response = self._call("DeleteFaces", {"CollectionId": self._remote(collection_id),
                                              "FaceIds": list(face_ids)})
        return FaceDeletion(
            deleted=tuple(response.get("DeletedFaces", [])),
            not_deleted=tuple(u.get("FaceId", "")
                              for u in response.get("UnsuccessfulFaceDeletions", [])))

    # Helpers shared with the collection operations -----------------------------------

    def image_from_s3(self, ref: S3Object) -> DecodedImage:
        """An S3 object as an image Rekognition reads itself (with our credentials)."""
        if not ref.bucket or not ref.name:
            raise InvalidParameter("S3Object needs Bucket and Name")
        return S3Image(data=b"", sha256=image_digest(ref),
                       format="s3", pixels=np.zeros((0, 0, 3), dtype=np.uint8), s3_object=ref)

    def image_param(self, image: DecodedImage) -> dict[str, Any]:
        """Rekognition's `Image` parameter, after checking its limits before the call."""
        s3 = image.s3_object if isinstance(image, S3Image) else None
        if s3 is not None:
            ref: dict[str, Any] = {"Bucket": s3.bucket, "Name": s3.name}
            if s3.version:
                ref["Version"] = s3.version
            return {"S3Object": ref}
        if len(image.data) > MAX_IMAGE_BYTES:
            raise ImageTooLarge(
                f"Rekognition accepts images up to {MAX_IMAGE_BYTES} bytes; "
                f"this one is {len(image.data)}",
                details={"bytes": len(image.data), "limit": MAX_IMAGE_BYTES})
        if image.format not in ACCEPTED_FORMATS:
            raise UnsupportedImageFormat(
                f"Rekognition accepts JPEG and PNG only; this image is {image.format}",
                details={"accepted": list(ACCEPTED_FORMATS)})
        return {"Bytes": image.data}

    def _call(self, operation: str, params: Mapping[str, Any], *,
              no_face: Callable[[str], FaceApiError] | None = None) -> dict[str, Any]:
        """Call one Rekognition operation; map every failure to our error types."""
        method = getattr(self._client, _snake(operation))
        try:
            response: dict[str, Any] = method(**params)
        except botocore.exceptions.ClientError as exc:
            raise _map_client_error(exc, operation, no_face) from exc
        except botocore.exceptions.NoCredentialsError as exc:
            raise EngineAccessDenied(
                "no AWS credentials found in boto3's credential chain "
                "(environment, shared credentials file, instance or task role)") from exc
        except botocore.exceptions.ParamValidationError as exc:
            raise InvalidParameter(f"{operation}: {exc}") from exc
        except _TRANSPORT_ERRORS as exc:
            why = f"rekognition endpoint unreachable: {type(exc).__name__}"
            with self._lock:
                # A failed call is fresher news than a cached success.
                self._ready_result = (False, why)
                self._ready_checked_at = time.monotonic()
            raise EngineUnavailable(why) from exc
        return response


def _after_fork(ref: weakref.ReferenceType[RekognitionEngine]) -> None:
    engine = ref()
    if engine is not None:
        engine._reset_after_fork()


def _snake(operation: str) -> str:
    out = []
    for i, ch in enumerate(operation):
        if ch.isupper() and i:
            out.append("_")
        out.append(ch.lower())
    return "".join(out)


def _map_client_error(exc: botocore.exceptions.ClientError, operation: str,
                      no_face: Callable[[str], FaceApiError] | None) -> FaceApiError:
    error = exc.response.get("Error", {})
    code = str(error.get("Code", "Unknown"))
    message = str(error.get("Message", "") or code)
    if code == "InvalidImageFormatException":
        return UnsupportedImageFormat(f"Rekognition could not read the image: {message}")
    if code == "ImageTooLargeException":
        return ImageTooLarge(f"Rekognition refused the image as too large: {message}")
    if code == "InvalidParameterException":
        # Rekognition reports "no face in the source image" as InvalidParameter.
        if no_face is not None:
            return no_face(message)
        return InvalidParameter(f"Rekognition {operation}: {message}")
    if code in ("InvalidS3ObjectException", "InvalidPaginationTokenException"):
        return InvalidParameter(f"Rekognition {operation}: {message}")
    if code == "ResourceNotFoundException":
        return NotFound(f"not found in Rekognition: {message}")
    if code == "ResourceAlreadyExistsException":
        return CollectionExists(f"already exists in Rekognition: {message}")
    if code == "ServiceQuotaExceededException":
        return Conflict(f"Rekognition quota exceeded: {message}")
    if code in _AUTH_CODES:
        return EngineAccessDenied(
            f"Rekognition refused {operation} ({code}): check the IAM policy of the "
            f"credentials in use (docs/engines.md lists the actions needed)")
    if code in _THROTTLING_CODES:
        return EngineThrottled(
            f"Rekognition is throttling {operation} after "
            f"{_attempts(exc)} attempts; retry later",
            retry_after=_retry_after(exc))
    return EngineUnavailable(f"Rekognition {operation} failed: {code}")


def _attempts(exc: botocore.exceptions.ClientError) -> int:
    retries = exc.response.get("ResponseMetadata", {}).get("RetryAttempts", 0)
    return int(retries) + 1


def _retry_after(exc: botocore.exceptions.ClientError) -> int:
    headers = exc.response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
    raw = headers.get("x-amz-retry-after")  # milliseconds, when the service sends it
    try:
        return max(1, -(-int(raw) // 1000)) if raw is not None else DEFAULT_RETRY_AFTER_S
    except ValueError:
        return DEFAULT_RETRY_AFTER_S


def _box(raw: Mapping[str, Any]) -> BoundingBox:
    return BoundingBox(width=float(raw.get("Width", 0.0)), height=float(raw.get("Height", 0.0)),
                       left=float(raw.get("Left", 0.0)), top=float(raw.get("Top", 0.0)))


def _indexed_face(raw: Mapping[str, Any]) -> IndexedFace:
    return IndexedFace(
        face_id=str(raw.get("FaceId", "")),
        bounding_box=_box(raw.get("BoundingBox", {})),
        confidence=float(raw.get("Confidence", 0.0)),
        image_id=str(raw.get("ImageId", "")),
        external_image_id=raw.get("ExternalImageId"))


def _matches(response: Mapping[str, Any]) -> tuple[CollectionMatch, ...]:
    return tuple(CollectionMatch(similarity=float(m["Similarity"]), face=_indexed_face(m["Face"]))
                 for m in response.get("FaceMatches", []))


def _orientation(value: Any) -> OrientationCorrection | None:
    try:
        return OrientationCorrection(value) if value else None
    except ValueError:
        return None


def face_detail(raw: Mapping[str, Any], size: tuple[int, int]) -> FaceDetail:
    """A Rekognition FaceDetail / ComparedFace as our FaceDetail. Attributes our model
    does not carry are dropped; `size` (image width, height) gives pixel sizes."""
    box = _box(raw.get("BoundingBox", {}))
    pose_raw = raw.get("Pose")
    quality_raw = raw.get("Quality")
    return FaceDetail(
        bounding_box=box,
        confidence=float(raw.get("Confidence", 0.0)),
        landmarks=tuple(Landmark(type=str(lm["Type"]), x=float(lm["X"]), y=float(lm["Y"]))
                        for lm in raw.get("Landmarks", [])),
        pose=Pose(roll=float(pose_raw["Roll"]), yaw=float(pose_raw["Yaw"]),
                  pitch=float(pose_raw["Pitch"])) if pose_raw else None,
        quality=Quality(brightness=float(quality_raw["Brightness"]),
                        sharpness=float(quality_raw["Sharpness"])) if quality_raw else None,
        eyes_open=_boolean(raw.get("EyesOpen")),
        mouth_open=_boolean(raw.get("MouthOpen")),
        width_px=round(box.width * size[0]),
        height_px=round(box.height * size[1]),
    )


def _boolean(raw: Mapping[str, Any] | None) -> BooleanAttribute | None:
    if not raw:
        return None
    return BooleanAttribute(value=bool(raw["Value"]), confidence=float(raw["Confidence"]))
