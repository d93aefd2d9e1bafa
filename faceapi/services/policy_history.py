"""Use cases: keep the text of every policy version a start loads, and read it back.

A decision (and its audit event) records the policy's name and version, the SHA-256 of
the policy's canonical JSON text. At each start (the web app's, and each CLI command that
loads the policies with a store) every loaded version not yet recorded is written to
`policy_versions` with its canonical text, and a `policy.load` audit event (policy name
and version) is appended in the same transaction. So the hash-chained trail holds the
version, the table holds the text, and anyone can check that SHA-256(text) == version:
the text cannot be changed without that check failing, and the event cannot be changed
without the chain failing.

Several gunicorn workers start at once: the recording holds the table's writer lock
(`policy_versions.lock()`), so the first records and the others find the rows.
"""

from __future__ import annotations

from dataclasses import dataclass

from faceapi.domain.access import require_policy_access
from faceapi.domain.audit import Action, Actor, AuditEvent
from faceapi.domain.clock import Clock
from faceapi.domain.errors import NotFound
from faceapi.domain.policies import PolicySet, PolicyVersion, text_version
from faceapi.services.ports import UnitOfWork


def record_loaded(policies: PolicySet, *, uow: UnitOfWork, clock: Clock,
                  actor: Actor) -> list[PolicyVersion]:
    """Record every loaded version not recorded yet, each with a `policy.load` event, in
    one transaction; returns the newly recorded ones (empty on most starts)."""
    recorded: list[PolicyVersion] = []
    with uow:
        uow.policy_versions.lock()
        for policy in policies.values():  # sorted by name
            if uow.policy_versions.get(policy.name, policy.version) is not None:
                continue
            event = uow.audit.append(AuditEvent(
                action=Action.POLICY_LOAD, outcome="recorded", actor=actor,
                resource=f"policies/{policy.name}", policy_name=policy.name,
                policy_version=policy.version,
                details={"operation": policy.operation.value,
                         "consequential": policy.consequential}))
            version = PolicyVersion(name=policy.name, version=policy.version,
                                    canonical_text=policy.canonical_text(),
                                    first_loaded_at=clock.now(), audit_event_id=event.id)
            uow.policy_versions.add(version)
            recorded.append(version)
        if recorded:
            uow.commit()
    return recorded


@dataclass(frozen=True)
class PolicyVersionView:
    recorded: PolicyVersion
    # SHA-256 of the stored text, computed now: equal to the version unless the row was
    # tampered with (a reader sees the mismatch instead of a silently different text).
    text_sha256: str

    @property
    def intact(self) -> bool:
        return self.text_sha256 == self.recorded.version


def get_version(name: str, version: str, *, actor: Actor,
                uow: UnitOfWork) -> PolicyVersionView:
    """The canonical text of a version some start loaded; NotFound otherwise. Which
    roles may ask is the route's rule (access.PERMISSIONS); a key limited to some
    policies reads only their history (403 otherwise, audited by the API layer)."""
    require_policy_access(actor, name)
    with uow:
        found = uow.policy_versions.get(name, version)
    if found is None:
        raise NotFound(f"no recorded version {version[:64]!r} of policy {name[:64]!r}")
    return PolicyVersionView(found, text_version(found.canonical_text))
