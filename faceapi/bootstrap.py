"""The composition root: the one place that picks adapters.

`bootstrap(settings)` returns a `Container` that builds each adapter from Settings once,
on first use (a CLI command that only lists keys never loads the dlib models). The web
app (`entrypoints/web/app.py`) and every CLI command (`entrypoints/cli/`) start here;
tests pass their own settings and fakes of our ports.
"""

from __future__ import annotations

from functools import cached_property

from faceapi.adapters.blobs import DirectoryBlobStore
from faceapi.adapters.engines.factory import build_engine
from faceapi.adapters.images import PillowImageDecoder
from faceapi.adapters.policy_files import load_policies
from faceapi.adapters.search.index import BruteForceIndex, StoreIndexSource
from faceapi.adapters.signing_keys import CheckpointSigner
from faceapi.adapters.store import Store
from faceapi.config import Settings
from faceapi.domain.clock import Clock, SystemClock
from faceapi.domain.policies import PolicySet
from faceapi.services.collections import RemoteFacesEraser
from faceapi.services.face_crops import FaceCropEraser
from faceapi.services.ports import (
    BlobStore,
    FaceEngine,
    ImageDecoder,
    SearchIndex,
    SubjectEraser,
    remote_collections,
)
from faceapi.services.review import ReviewEvidenceEraser


class Container:
    """The adapters of one process, each built from Settings once, when first asked for."""

    def __init__(self, settings: Settings, *, engine: FaceEngine | None = None,
                 clock: Clock | None = None) -> None:
        self.settings = settings
        self.clock: Clock = clock or SystemClock()
        if engine is not None:
            self.__dict__["engine"] = engine

    @cached_property
    def store(self) -> Store:
        """The database, with the audit signing key and the secret box (store/db.py).
        Audit events carry wall-clock time from the store, not the injectable clock."""
        return Store.from_settings(self.settings)

    @property
    def signer(self) -> CheckpointSigner:
        """The audit signing key (FACEAPI_AUDIT_SIGNING_KEY, or generated on first start)."""
        return self.store.signer

    @cached_property
    def engine(self) -> FaceEngine:
        return build_engine(self.settings)

    @cached_property
    def policies(self) -> PolicySet:
        """policies/*.yaml; a bad file raises PolicyError here."""
        return load_policies(self.settings.policies_dir)

    @cached_property
    def decoder(self) -> ImageDecoder:
        """Image intake under the configured byte, pixel and decode limits."""
        return PillowImageDecoder(self.settings)

    @cached_property
    def blobs(self) -> BlobStore:
        return DirectoryBlobStore(self.settings.resolved_blob_dir)

    @cached_property
    def index(self) -> SearchIndex:
        """This process's copy of the collections' descriptors."""
        return BruteForceIndex(StoreIndexSource(self.store.read_uow), self.engine.similarity)

    @cached_property
    def erasers(self) -> tuple[SubjectEraser, ...]:
        """What a subject's erasure (and a collection's deletion) also deletes: review
        evidence and lockout state, enrolled-face crops, and the engine's own copy of
        the faces when it keeps them (Rekognition)."""
        erasers: tuple[SubjectEraser, ...] = (ReviewEvidenceEraser(self.blobs, self.clock),
                                              FaceCropEraser(self.blobs))
        remote = remote_collections(self.engine)
        if remote is not None:
            erasers = (*erasers, RemoteFacesEraser(self.engine, remote))
        return erasers

    def close(self) -> None:
        """Release the database connections, if the store was built."""
        store = self.__dict__.get("store")
        if store is not None:
            store.dispose()


def bootstrap(settings: Settings | None = None, *, engine: FaceEngine | None = None,
              clock: Clock | None = None) -> Container:
    """The adapters for one process: the web app's or one CLI command's."""
    return Container(settings or Settings.from_env(), engine=engine, clock=clock)
