"""Decision rows' lifecycle (services/retention.py), on fakes with the fake clock:
pseudonymised by a subject's erasure, deleted after the policy's retention."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from faceapi.domain.audit import Actor
from faceapi.domain.decisions import Candidate, Decision, DecisionKind, Outcome
from faceapi.domain.lockout import LockoutKey, LockoutState
from faceapi.domain.policies import PolicySet
from faceapi.services.erase import erase_subject
from faceapi.services.retention import DecisionPseudonymiser, run_retention
from tests.unit.test_usecase_erasure import enroll
from tests.unit.usecase_world import ADMIN, World

JOB = Actor.system("retention")


def made(w: World, did: str, *, days_ago: float, policy: str = "login",
         subject: str | None = "s1") -> Decision:
    decision = Decision(
        id=did, kind=DecisionKind.VERIFY, outcome=Outcome.MATCH, reasons=("match",),
        policy_name=policy, policy_version="v1", threshold=80.0, collection_id="c1",
        subject_id=subject, similarity=93.0,
        candidates=(Candidate("f-" + did, subject, 93.0),) if subject else (),
        matched_face_id="f-" + did if subject else None,
        created_at=w.clock.now() - timedelta(days=days_ago),
        decided_at=w.clock.now() - timedelta(days=days_ago))
    w.store.state.decisions[did] = decision
    return decision


def test_erasing_a_subject_pseudonymises_its_decisions_in_the_same_audited_transaction(
        ) -> None:
    w = World()
    w.collection()
    enroll(w, "s1", 1)
    made(w, "d1", days_ago=1)
    other = made(w, "d2", days_ago=1, subject="s2")
    report = erase_subject("c1", "s1", actor=ADMIN, uow=w.store.uow(),
                           erasers=(DecisionPseudonymiser(),))
    assert report.other == {"decisions_pseudonymised": 1}
    row = w.store.state.decisions["d1"]
    assert (row.subject_id, row.matched_face_id) == (None, None)
    assert row.candidates == (Candidate("", "", 93.0),)
    assert (row.outcome, row.similarity, row.policy_name) == (Outcome.MATCH, 93.0, "login")
    assert w.store.state.decisions["d2"] == other
    event = w.store.audit.committed[-1]
    assert event.id == report.audit_event_id
    assert event.event.scores["decisions_pseudonymised_count"] == 1


def test_a_subject_known_only_from_decisions_can_still_be_erased() -> None:
    w = World()
    w.collection()
    made(w, "d1", days_ago=1, subject="gone")
    report = erase_subject("c1", "gone", actor=ADMIN, uow=w.store.uow(),
                           erasers=(DecisionPseudonymiser(),))
    assert report.other == {"decisions_pseudonymised": 1}
    assert w.store.state.decisions["d1"].subject_id is None


def test_retention_deletes_decisions_past_their_policys_days_and_audits_the_counts() -> None:
    w = World()
    days = w.policies["login"].decision_retention_days
    made(w, "old", days_ago=days + 1)
    made(w, "young", days_ago=days - 1)
    report = run_retention(uow_factory=w.store.uow, policies=w.policies, clock=w.clock,
                           actor=JOB)
    assert report.decisions_deleted == {"login": 1}
    assert set(w.store.state.decisions) == {"young"}
    event = w.store.audit.committed[-1]
    assert (event.id, event.event.action.value) == (report.audit_event_id, "retention.run")
    assert event.event.scores == {"decisions_deleted": 1, "subjects_erased": 0,
                                  "erasures_failed": 0, "lockouts_cleared": 0}
    assert dict(event.event.details) == {"policies": ("login",),
                                         "policy_decisions_deleted": (1,)}
    assert event.event.actor == JOB
    # Time passes: the young row goes on a later run.
    w.clock.advance(days=2)
    later = run_retention(uow_factory=w.store.uow, policies=w.policies, clock=w.clock,
                          actor=JOB)
    assert later.total_decisions_deleted == 1
    assert w.store.state.decisions == {}


def test_each_policy_keeps_its_own_days_and_a_retired_policy_the_default() -> None:
    w = World()
    short = replace(w.policies["login"], decision_retention_days=30)
    policies = PolicySet({**w.policies, "login": short})
    made(w, "login-40", days_ago=40)
    made(w, "check-40", days_ago=40, policy="identity_check")
    made(w, "retired-400", days_ago=400, policy="no_longer_shipped")
    made(w, "retired-300", days_ago=300, policy="no_longer_shipped")
    report = run_retention(uow_factory=w.store.uow, policies=policies, clock=w.clock,
                           actor=JOB)
    assert report.decisions_deleted == {"login": 1, "no_longer_shipped": 1}
    assert set(w.store.state.decisions) == {"check-40", "retired-300"}


def test_a_run_with_nothing_to_delete_is_still_audited() -> None:
    w = World()
    report = run_retention(uow_factory=w.store.uow, policies=w.policies, clock=w.clock,
                           actor=JOB)
    assert report.total_decisions_deleted == 0
    assert w.store.actions[-1] == "retention.run"
    assert w.store.audit.committed[-1].event.scores == {
        "decisions_deleted": 0, "subjects_erased": 0, "erasures_failed": 0, "lockouts_cleared": 0}


def test_retention_clears_lockout_states_quiet_for_longer_than_their_window() -> None:
    w = World()
    window = w.policies["login"].lockout
    assert window is not None
    now = w.clock.now()

    def state(subject: str, policy: str, quiet_minutes: float,
              locked_for_minutes: float | None = None) -> None:
        key = LockoutKey("c1", subject, policy)
        last = now - timedelta(minutes=quiet_minutes)
        until = None if locked_for_minutes is None else now + timedelta(
            minutes=locked_for_minutes)
        w.store.state.lockouts[key] = LockoutState(key, failures=2, lock_count=1,
                                                   last_failure_at=last, locked_until=until)

    state("stale", "login", window.window_minutes + 1)
    state("recent", "login", window.window_minutes - 1)
    state("still-locked", "login", window.window_minutes + 1, locked_for_minutes=5)
    state("retired", "no_longer_shipped", 2 * 24 * 60)
    report = run_retention(uow_factory=w.store.uow, policies=w.policies, clock=w.clock,
                           actor=JOB)
    assert report.lockouts_cleared == 2
    assert {k.subject_id for k in w.store.state.lockouts} == {"recent", "still-locked"}
    assert w.store.audit.committed[-1].event.scores["lockouts_cleared"] == 2
