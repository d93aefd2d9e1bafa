"""The decisions repository's part of liveness (issue 17, item 3), over the fake and the
SQL store: an attestation's token id is consumed by one attested decision only (the
partial unique index of migration 0013), while refused replays are recorded freely."""

from __future__ import annotations

import pytest

from faceapi.domain.decisions import Outcome
from faceapi.domain.liveness import (
    AttestationReplayed,
    LivenessCheck,
    LivenessFailure,
    LivenessStatus,
)
from faceapi.services.ports import UnitOfWorkFactory
from tests.contract.conftest import new_uow  # noqa: F401 (the fake and the SQL store)
from tests.contract.test_repositories import audited, decision

JTI = "a" * 64
ATTESTED = LivenessCheck(LivenessStatus.ATTESTED, issuer="example-liveness", jti_sha256=JTI)
REPLAYED = LivenessCheck(LivenessStatus.FAILED, issuer="example-liveness", jti_sha256=JTI,
                         failure=LivenessFailure.REPLAYED)


def test_a_decisions_liveness_reads_back(new_uow: UnitOfWorkFactory) -> None:  # noqa: F811
    uow = new_uow()
    with uow:
        assert not uow.decisions.liveness_jti_used(JTI)
        uow.decisions.add(decision("d1", liveness=ATTESTED))
        uow.decisions.add(decision("d2"))
        audited(uow)
    with uow:
        assert uow.decisions.get("d1") == decision("d1", liveness=ATTESTED)
        assert uow.decisions.get("d2").liveness.status is LivenessStatus.NOT_REQUIRED  # type: ignore[union-attr]
        assert uow.decisions.liveness_jti_used(JTI)


def test_a_second_attested_decision_with_one_token_is_refused_by_the_store(
        new_uow: UnitOfWorkFactory) -> None:  # noqa: F811
    uow = new_uow()
    with uow:
        uow.decisions.add(decision("d1", liveness=ATTESTED))
        audited(uow)
    with uow, pytest.raises(AttestationReplayed):
        uow.decisions.add(decision("d2", liveness=ATTESTED))
    with uow:
        # Refused replays are decisions too, recorded with the token id they reused.
        for did in ("d3", "d4"):
            uow.decisions.add(decision(did, outcome=Outcome.REJECTED, review_id=None,
                                       reasons=("liveness_required", "liveness_replayed"),
                                       liveness=REPLAYED))
        audited(uow)
    with uow:
        assert uow.decisions.get("d2") is None
        assert uow.decisions.get("d4") == decision(
            "d4", outcome=Outcome.REJECTED, review_id=None,
            reasons=("liveness_required", "liveness_replayed"), liveness=REPLAYED)
