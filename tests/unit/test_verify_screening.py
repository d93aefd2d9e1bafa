"""Choosing the probe face under a policy, before anything is compared."""

from __future__ import annotations

from pathlib import Path

import pytest

from faceapi.adapters.policy_files import load_policies
from faceapi.domain.faces import EmbeddedFace
from faceapi.domain.policies import PolicySet
from faceapi.services.verify import screen_faces
from tests.fakes import face, unit_vector


@pytest.fixture(scope="module")
def policies() -> PolicySet:
    return load_policies(Path(__file__).resolve().parents[2] / "policies")


def embedded(**face_args: float) -> EmbeddedFace:
    return EmbeddedFace(detail=face(**face_args), embedding=unit_vector(1))  # type: ignore[arg-type]


def test_no_face_is_rejected_as_no_face(policies: PolicySet) -> None:
    assert screen_faces([], policies["login"]) == (None, ["no_face"])


def test_two_faces_are_rejected_for_verify(policies: PolicySet) -> None:
    probe, reasons = screen_faces([embedded(), embedded(left=0.6)], policies["login"])
    assert probe is None
    assert reasons == ["multiple_faces"]


def test_a_tagging_search_takes_the_largest_of_several_faces(policies: PolicySet) -> None:
    small, large = embedded(size=0.1), embedded(size=0.3, left=0.5)
    probe, reasons = screen_faces([small, large], policies["photo_tagging"])
    assert probe is large
    assert reasons == []


@pytest.mark.parametrize(("face_args", "reason"), [
    ({"confidence": 30.0}, "low_confidence"),
    ({"width_px": 40}, "small_face"),
    ({"yaw": 60.0}, "extreme_pose"),
    ({"sharpness": 1.0}, "low_quality"),
])
def test_a_face_below_the_policys_gates_is_rejected_with_the_reason(
        policies: PolicySet, face_args: dict[str, float], reason: str) -> None:
    probe, reasons = screen_faces([embedded(**face_args)], policies["login"])
    assert probe is None
    assert reason in reasons
