"""A world of fakes for use case tests: store, engine, clock, blobs, decoder, index and
the shipped policies, with one-line helpers to enroll and to call a use case."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from faceapi.adapters.policy_files import load_policies
from faceapi.domain.access import Actor
from faceapi.domain.collections import Collection
from faceapi.domain.policies import PolicySet
from tests.fakes import (
    FakeBlobStore,
    FakeClock,
    FakeEngine,
    FakeImageDecoder,
    ScriptedFace,
    face,
    unit_vector,
)
from tests.fakes_store import FakeSearchIndex, FakeStore

APP = Actor(role="app", key_id="app1")
OPERATOR = Actor(role="operator", key_id="op1")
REVIEWER = Actor(role="reviewer", key_id="rev1")
REVIEWER_2 = Actor(role="reviewer", key_id="rev2")
ADMIN = Actor(role="admin", key_id="adm1")


@cache
def shipped_policies() -> PolicySet:
    return load_policies(Path(__file__).resolve().parents[2] / "policies")


@dataclass
class World:
    store: FakeStore = field(default_factory=FakeStore)
    engine: FakeEngine = field(default_factory=FakeEngine)
    clock: FakeClock = field(default_factory=FakeClock)
    blobs: FakeBlobStore = field(default_factory=FakeBlobStore)
    decoder: FakeImageDecoder = field(default_factory=FakeImageDecoder)

    @property
    def policies(self) -> PolicySet:
        return shipped_policies()

    @property
    def index(self) -> FakeSearchIndex:
        return FakeSearchIndex(self.store, self.engine.similarity)

    def collection(self, cid: str = "c1", *, consent_required: bool = False,
                   keep_face_crops: bool = False,
                   policies: tuple[str, ...] = ("identity_check", "login",
                                                "watchlist_search")) -> Collection:
        """A collection put straight into the store (creating it is not under test)."""
        made = Collection(collection_id=cid, description="", engine=self.engine.name,
                          model_version=self.engine.model_version,
                          created_at=self.clock.now(), version=0,
                          consent_required=consent_required,
                          keep_face_crops=keep_face_crops, policies=policies)
        self.store.state.collections[cid] = made
        return made

    def photo(self, seed: int, *, faces: int = 1, width_px: int = 200) -> bytes:
        """Image bytes that the fake engine sees as `faces` faces of person `seed`."""
        data = f"photo-{seed}-{faces}-{width_px}".encode()
        self.engine.script(data, [ScriptedFace(face(left=0.1 + 0.3 * i, width_px=width_px),
                                               unit_vector(seed)) for i in range(faces)])
        return data

    def other_photo(self, seed: int, tag: str) -> bytes:
        """Another image of person `seed` (another digest, the same descriptor)."""
        data = f"photo-{seed}-{tag}".encode()
        self.engine.script(data, [ScriptedFace(face(), unit_vector(seed))])
        return data
