"""The Rekognition-compatible endpoint reports our outages (database, blob directory) as
Rekognition's service failure, which boto3 retries, never as a client's mistake."""

from __future__ import annotations

import pytest

from faceapi.domain.errors import BlobStoreUnavailable, StoreUnavailable
from faceapi.entrypoints.web.emulator.protocol import aws_error_from


@pytest.mark.parametrize("error", [StoreUnavailable("down", retry_after=5),
                                   BlobStoreUnavailable("full", retry_after=30)])
def test_an_outage_is_an_internal_server_error_with_a_retry_hint(
        error: StoreUnavailable | BlobStoreUnavailable) -> None:
    aws = aws_error_from(error)
    assert (aws.type, aws.status) == ("InternalServerError", 500)
    assert aws.headers["x-amz-retry-after"] == str(error.retry_after * 1000)  # ms
