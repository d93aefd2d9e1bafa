"""The repository contract of template versions and kept chips, over the fake and the
SQL store (tests/contract/conftest.py)."""

from __future__ import annotations

from dataclasses import replace

from faceapi.domain.collections import FaceChip
from faceapi.services.ports import UnitOfWorkFactory
from tests.contract.test_repositories import audited, stored_face, with_collection


def test_faces_by_template_version_counts_listing_and_a_conditional_move(
        new_uow: UnitOfWorkFactory) -> None:
    uow = with_collection(new_uow)
    with uow:
        for face_id, version in (("fa", "v1"), ("fb", "v1"), ("fc", "v2")):
            uow.faces.add(replace(stored_face(face_id), template_version=version))
        audited(uow)
    with uow:
        assert uow.faces.template_counts("c1") == {"v1": 2, "v2": 1}
        assert [f.face_id for f in uow.faces.not_at_template("c1", "v2", after=None,
                                                             limit=10)] == ["fa", "fb"]
        assert [f.face_id for f in uow.faces.not_at_template("c1", "v2", after="fa",
                                                             limit=10)] == ["fb"]
        assert [r[0] for r in uow.faces.embeddings("c1", "v1")] == ["fa", "fb"]
        assert uow.faces.embedding_count("c1", "v2") == 1
        # Only from the version it was read at: a second mover finds it gone.
        assert uow.faces.set_template("c1", "fa", embedding=b"\x00\x00\x00@",
                                      template_version="v2", from_version="v1",
                                      added_version=7)
        assert not uow.faces.set_template("c1", "fa", embedding=b"\x00\x00@@",
                                          template_version="v2", from_version="v1",
                                          added_version=8)
        audited(uow)
    with uow:
        moved = uow.faces.get("c1", "fa")
        assert moved is not None
        assert (moved.template_version, moved.added_version, moved.embedding) == (
            "v2", 7, b"\x00\x00\x00@")
        assert [r[0] for r in uow.faces.embeddings_since("c1", 6, "v2")] == ["fa"]
        assert uow.faces.template_counts("c1") == {"v1": 1, "v2": 2}


def test_kept_chips_read_back_and_go_with_their_faces_and_subjects(
        new_uow: UnitOfWorkFactory) -> None:
    uow = with_collection(new_uow)
    with uow:
        for face_id, subject in (("fa", "s1"), ("fb", "s1"), ("fc", "s2")):
            uow.faces.add(stored_face(face_id, subject))
            uow.chips.add(FaceChip("c1", subject, face_id, "fmt", face_id.encode() * 100))
        audited(uow)
    with uow:
        assert uow.chips.get_many("c1", ["fa", "zz"])["fa"].pixels == b"fa" * 100
        uow.faces.delete("c1", ["fa"])
        assert uow.chips.delete_for_subject("c1", "s2") == 1
        audited(uow)
    with uow:
        assert list(uow.chips.get_many("c1", ["fa", "fb", "fc"])) == ["fb"]
        uow.faces.delete_for_subject("c1", "s1")
        audited(uow)
    with uow:
        assert uow.chips.get_many("c1", ["fb"]) == {}
