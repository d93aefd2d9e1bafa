"""The calibrate service's arithmetic and its policy write, on fakes: thresholds for a
target FMR, the identity bootstrap, and what happens when the audit append fails after
the policy file was written."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from faceapi.domain.audit import Actor
from faceapi.services import calibrate as svc
from faceapi.services.ports import PolicyChange
from tests.fakes import FakeClock
from tests.fakes_store import FakeStore


def pairs(genuine: list[float], impostor: list[tuple[float, str, str]]) -> list[svc.ScoredPair]:
    out = [svc.ScoredPair(s, True, None, ("g", "g")) for s in genuine]
    out += [svc.ScoredPair(s, False, None, (a, b)) for s, a, b in impostor]
    return out


def test_the_threshold_is_the_smallest_on_the_grid_that_meets_the_target() -> None:
    impostor = [10.0, 20.0, 30.0, 40.0, 85.25]
    # One false match allowed in five at FMR 0.2: 85.25 may match, 40 may not.
    assert svc.threshold_for(0.2, impostor) == pytest.approx(40.1)
    # None allowed: just above the highest impostor.
    assert svc.threshold_for(0.1, impostor) == pytest.approx(85.3)
    assert svc.rates_at(85.3, [], impostor).false_matches == 0
    assert svc.rates_at(85.2, [], impostor).false_matches == 1


def test_rates_count_a_pair_at_the_threshold_as_a_match() -> None:
    r = svc.rates_at(80.0, [80.0, 79.99], [80.0, 10.0])
    assert (r.false_matches, r.false_non_matches, r.fmr, r.fnmr) == (1, 1, 0.5, 0.5)


def test_the_bootstrap_resamples_identities_and_brackets_the_threshold() -> None:
    names = [f"p{i}" for i in range(8)]
    impostor = [(float(10 + 3 * i + j), a, b) for i, a in enumerate(names)
                for j, b in enumerate(names) if a < b]
    report = svc.analyse(pairs([90.0, 95.0], impostor), target_fmr=0.05, engine="fake",
                         model_version="m", images=8, images_without_face=[], rounds=200)
    c = report.choice
    assert c.low <= c.threshold <= c.high
    assert "identities" in c.method
    assert c.measurable


def test_a_set_without_impostor_pairs_cannot_be_calibrated() -> None:
    with pytest.raises(svc.CalibrationFailed):
        svc.analyse(pairs([90.0], []), target_fmr=0.01, engine="fake", model_version="m",
                    images=2, images_without_face=[])


@dataclass
class RecordingWriter:
    restored: list[bytes] = field(default_factory=list)
    fail_restore: bool = False

    def write(self, name: str, threshold: float, note: str) -> tuple[PolicyChange, bytes]:
        return PolicyChange(name, "a" * 64, "b" * 64, 80.0, threshold, "{}"), b"old text"

    def restore(self, name: str, previous: bytes) -> None:
        if self.fail_restore:
            raise OSError("disk gone")
        self.restored.append(previous)


class BrokenUnitOfWork:
    """A unit of work whose transaction cannot start (database down)."""

    def __enter__(self) -> BrokenUnitOfWork:
        raise ConnectionError("database unreachable")

    def __exit__(self, *args: object) -> None:
        return None


def a_report() -> svc.CalibrationReport:
    return svc.analyse(pairs([90.0, 95.0], [(10.0, "a", "b"), (20.0, "a", "c")]),
                       target_fmr=0.5, engine="fake", model_version="m", images=3,
                       images_without_face=[], rounds=50)


def test_writing_a_policy_audits_it_and_keeps_the_new_version_text() -> None:
    store = FakeStore()
    change = svc.write_policy_threshold("login", a_report(), writer=RecordingWriter(),
                                        uow=store.uow(), clock=FakeClock(),
                                        actor=Actor.system("cli"))
    assert store.actions == ["policy.calibrate"]
    event = store.audit.committed[0].event
    assert event.policy_version == change.new_version
    assert event.details["previous_version"] == change.old_version
    assert ("login", change.new_version) in store.state.policy_versions


def test_a_failed_audit_append_puts_the_previous_policy_file_back() -> None:
    writer = RecordingWriter()
    with pytest.raises(svc.CalibrationFailed, match="restored"):
        svc.write_policy_threshold("login", a_report(), writer=writer,
                                   uow=BrokenUnitOfWork(), clock=FakeClock(),
                                   actor=Actor.system("cli"))
    assert writer.restored == [b"old text"]


def test_a_failed_restore_says_the_new_version_is_in_force_unaudited() -> None:
    writer = RecordingWriter(fail_restore=True)
    with pytest.raises(svc.CalibrationFailed, match="unaudited until the next start"):
        svc.write_policy_threshold("login", a_report(), writer=writer,
                                   uow=BrokenUnitOfWork(), clock=FakeClock(),
                                   actor=Actor.system("cli"))
