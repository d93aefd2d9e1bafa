"""Liveness attestations (issue 17, item 3) on fakes: the JWT adapter's refusals, the
claim rules, the policy field, and verify/search deciding with them (services/liveness.py)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import jwt
import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from faceapi.adapters.liveness import JwtAttestationVerifier, algorithms_for
from faceapi.adapters.policy_files import parse_policy
from faceapi.bootstrap import Container
from faceapi.config import ConfigError, Settings
from faceapi.domain.decisions import Decision, Outcome
from faceapi.domain.liveness import (
    AttestationRejected,
    AttestationReplayed,
    Freshness,
    LivenessFailure,
    LivenessStatus,
    LivenessUnsupported,
    claims_problem,
)
from faceapi.domain.policies import PolicyError, PolicySet
from faceapi.services.enroll import IndexFacesRequest, index_faces
from faceapi.services.liveness import LivenessGate
from faceapi.services.search import (
    SearchByFaceRequest,
    SearchRequest,
    search,
    search_by_face,
)
from faceapi.services.verify import VerifyRequest, verify
from tests.fakes_store import FakeDecisionsRepo
from tests.liveness_tokens import (
    OTHER,
    TRUSTED,
    Issuers,
    hmac_with_public_key,
    mint,
    unsigned,
    write_issuers,
)
from tests.unit.usecase_world import APP, OPERATOR, World, shipped_policies

SHIPPED = Path(__file__).resolve().parents[2] / "policies"


@pytest.fixture
def issuers(tmp_path: Path) -> Issuers:
    return write_issuers(tmp_path / "issuers")


@pytest.fixture
def verifier(issuers: Issuers) -> JwtAttestationVerifier:
    return JwtAttestationVerifier.from_file(issuers.file)


# --- the adapter: only a configured issuer's asymmetric signature passes -----------------

def test_a_token_signed_by_the_configured_key_gives_its_claims(
        issuers: Issuers, verifier: JwtAttestationVerifier) -> None:
    now = World().clock.now()
    found = verifier.verify(mint(issuers.trusted_key, sub="alice", at=now, jti="j-1"))
    assert (found.issuer, found.subject, found.jti, found.issued_at) == (
        TRUSTED, "alice", "j-1", now)


def test_an_ed25519_issuer_from_a_jwks_file_is_verified_by_key_id(
        issuers: Issuers, verifier: JwtAttestationVerifier) -> None:
    now = World().clock.now()
    token = mint(issuers.other_key, sub="alice", at=now, iss=OTHER, alg="EdDSA",
                 headers={"kid": "k1"})
    assert verifier.verify(token).issuer == OTHER
    wrong_kid = mint(issuers.other_key, sub="alice", at=now, iss=OTHER, alg="EdDSA",
                     headers={"kid": "k2"})
    with pytest.raises(AttestationRejected) as refused:
        verifier.verify(wrong_kid)
    assert refused.value.failure is LivenessFailure.INVALID


@pytest.mark.parametrize("forge", ["alg_none", "hs256_with_public_key", "attacker_key",
                                   "other_issuers_key", "garbage", "too_long"])
def test_forged_tokens_are_invalid(issuers: Issuers, verifier: JwtAttestationVerifier,
                                   forge: str) -> None:
    now = World().clock.now()
    token = {
        "alg_none": lambda: unsigned(sub="alice", at=now),
        "hs256_with_public_key": lambda: hmac_with_public_key(
            issuers.trusted_public_pem, sub="alice", at=now),
        "attacker_key": lambda: mint(ec.generate_private_key(ec.SECP256R1()), sub="alice",
                                     at=now),
        # Right algorithm family for nobody: the trusted issuer's name, the other's key.
        "other_issuers_key": lambda: mint(issuers.other_key, sub="alice", at=now,
                                          alg="EdDSA"),
        "garbage": lambda: "not.a.jwt",
        "too_long": lambda: "a" * 9000,
    }[forge]()
    with pytest.raises(AttestationRejected) as refused:
        verifier.verify(token)
    assert refused.value.failure is LivenessFailure.INVALID


def test_an_unconfigured_issuer_is_untrusted_and_no_file_trusts_nobody(
        verifier: JwtAttestationVerifier) -> None:
    now = World().clock.now()
    token = mint(ec.generate_private_key(ec.SECP256R1()), sub="alice", at=now,
                 iss="https://evil.example")
    for check in (verifier, JwtAttestationVerifier.from_file(Path(""))):
        with pytest.raises(AttestationRejected) as refused:
            check.verify(token)
        assert refused.value.failure is LivenessFailure.UNTRUSTED_ISSUER


def test_a_token_missing_a_required_claim_is_invalid(
        issuers: Issuers, verifier: JwtAttestationVerifier) -> None:
    now = World().clock.now()
    token = jwt.encode({"iss": TRUSTED, "sub": "alice", "iat": int(now.timestamp())},
                       issuers.trusted_key, algorithm="ES256")  # no jti
    with pytest.raises(AttestationRejected):
        verifier.verify(token)


def test_symmetric_or_weak_keys_cannot_be_configured(tmp_path: Path) -> None:
    (tmp_path / "oct.json").write_text(json.dumps(
        {"keys": [{"kty": "oct", "k": "c2VjcmV0c2VjcmV0c2VjcmV0", "kid": "h"}]}))
    (tmp_path / "issuers.json").write_text(json.dumps(
        {"issuers": {"hmac": {"jwks_file": "oct.json"}}}))
    with pytest.raises(ConfigError, match="no symmetric"):
        JwtAttestationVerifier.from_file(tmp_path / "issuers.json")
    with pytest.raises(ConfigError, match="2048"):
        algorithms_for(rsa.generate_private_key(65537, 1024).public_key())  # noqa: S505
    # An issuer name must fit a decision row and an audit event.
    (tmp_path / "long.json").write_text(json.dumps(
        {"issuers": {"x" * 300: {"public_key_file": "k.pem"}}}))
    with pytest.raises(ConfigError, match="issuer name"):
        JwtAttestationVerifier.from_file(tmp_path / "long.json")
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ConfigError, match="FACEAPI_LIVENESS_ISSUERS"):
        JwtAttestationVerifier.from_file(tmp_path / "bad.json")


def test_the_freshness_settings_are_bounded() -> None:
    assert Settings.from_env({"FACEAPI_LIVENESS_MAX_AGE_SECONDS": "60"}) \
        .liveness_max_age_seconds == 60
    with pytest.raises(ConfigError, match="FACEAPI_LIVENESS_MAX_AGE_SECONDS"):
        Settings(liveness_max_age_seconds=0)
    with pytest.raises(ConfigError, match="FACEAPI_LIVENESS_CLOCK_SKEW_SECONDS"):
        Settings(liveness_clock_skew_seconds=301)


# --- the claim rules ---------------------------------------------------------------------

def test_claims_are_judged_for_issuer_time_and_subject(
        issuers: Issuers, verifier: JwtAttestationVerifier) -> None:
    now = World().clock.now()
    fresh = Freshness(max_age_seconds=120, clock_skew_seconds=10)

    def problem(**kw: object) -> LivenessFailure | None:
        at = verifier.verify(mint(issuers.trusted_key, at=now, **kw))  # type: ignore[arg-type]
        return claims_problem(at, trusted=(TRUSTED,), subject="alice", now=now,
                              freshness=fresh)

    assert problem(sub="alice", age_s=125) is None  # within max age + skew
    assert problem(sub="alice", age_s=131) is LivenessFailure.EXPIRED
    assert problem(sub="alice", age_s=-9) is None  # the issuer's clock slightly ahead
    assert problem(sub="alice", age_s=-11) is LivenessFailure.ISSUED_IN_FUTURE
    assert problem(sub="alice", exp=int(now.timestamp()) - 30) is LivenessFailure.EXPIRED
    assert problem(sub="bob") is LivenessFailure.WRONG_SUBJECT
    other = verifier.verify(mint(issuers.other_key, sub="alice", at=now, iss=OTHER,
                                 alg="EdDSA", headers={"kid": "k1"}))
    assert claims_problem(other, trusted=(TRUSTED,), subject="alice", now=now,
                          freshness=fresh) is LivenessFailure.UNTRUSTED_ISSUER


# --- the policy field --------------------------------------------------------------------

def _login(**liveness: object) -> str:
    data = yaml.safe_load((SHIPPED / "login.yaml").read_text())
    data["liveness"] = liveness
    return yaml.safe_dump(data)


def test_a_policy_requiring_liveness_names_its_issuers_and_only_verify_or_search() -> None:
    policy = parse_policy(_login(required=True, issuers=[TRUSTED]), "login.yaml", "login")
    assert policy.liveness.issuers == (TRUSTED,)
    assert policy.canonical()["liveness"] == {"required": True, "issuers": [TRUSTED]}
    with pytest.raises(PolicyError, match=r"liveness\.issuers"):
        parse_policy(_login(required=True), "login.yaml", "login")
    with pytest.raises(PolicyError, match="liveness"):
        parse_policy(_login(required=False, issuers=[TRUSTED]), "login.yaml", "login")
    compare = yaml.safe_load((SHIPPED / "dataset_cleaning.yaml").read_text())
    compare["liveness"] = {"required": True, "issuers": [TRUSTED]}
    with pytest.raises(PolicyError, match="compare"):
        parse_policy(yaml.safe_dump(compare), "d.yaml", "dataset_cleaning")


def test_a_policy_without_liveness_keeps_the_version_it_had() -> None:
    # Decisions record policy versions: the new field must not change existing ones.
    login = shipped_policies()["login"]
    assert "liveness" not in login.canonical()
    assert login.version == replace(login, liveness=login.liveness).version


# --- verify and search deciding with attestations ---------------------------------------

TAGGING_LIVE = """
name: tagging_live
description: search that needs a live capture
operation: search
consequential: false
min_similarity: 60.0
human_review: {mode: never}
liveness: {required: true, issuers: [example-liveness]}
"""


def policies() -> PolicySet:
    return PolicySet({**shipped_policies(),
                      "tagging_live": parse_policy(TAGGING_LIVE, "t.yaml", "tagging_live")})


def world(issuers: Issuers) -> tuple[World, LivenessGate]:
    w = World()
    w.collection(policies=("login", "login_liveness", "tagging_live", "photo_tagging"))
    index_faces(IndexFacesRequest(collection_id="c1", image=w.photo(1), subject_id="s1"),
                actor=OPERATOR, engine=w.engine, uow=w.store.uow(), clock=w.clock,
                decoder=w.decoder, blobs=w.blobs)
    return w, LivenessGate(JwtAttestationVerifier.from_file(issuers.file))


def run_verify(w: World, gate: LivenessGate, token: str | None,
               policy: str = "login_liveness") -> Decision:
    return verify(VerifyRequest(collection_id="c1", subject_id="s1",
                                image=w.other_photo(1, "selfie"), policy=policy,
                                liveness_attestation=token),
                  actor=APP, engine=w.engine, uow=w.store.uow(), policies=policies(),
                  clock=w.clock, blobs=w.blobs, decoder=w.decoder, liveness=gate)


def test_a_verify_without_an_attestation_is_rejected_without_comparing_or_counting(
        issuers: Issuers) -> None:
    w, gate = world(issuers)
    calls = len(w.engine.calls)
    for _ in range(7):  # more than the lockout's 5 failures
        decision = run_verify(w, gate, None)
        assert decision.outcome is Outcome.REJECTED
        assert decision.reasons == ("liveness_required", "liveness_missing")
        assert decision.similarity is None
    assert len(w.engine.calls) == calls  # the image was never looked at
    # Not a failed face match: the subject is not locked, a valid attestation passes.
    assert w.store.state.lockouts == {}
    valid = run_verify(w, gate, mint(issuers.trusted_key, sub="s1", at=w.clock.now()))
    assert valid.outcome is Outcome.MATCH
    assert valid.liveness.status is LivenessStatus.ATTESTED
    event = w.store.audit.committed[-1].event
    assert event.details["liveness"] == "attested"
    assert event.details["liveness_issuer"] == TRUSTED


def test_a_token_is_used_once_and_its_replay_is_rejected(issuers: Issuers) -> None:
    w, gate = world(issuers)
    token = mint(issuers.trusted_key, sub="s1", at=w.clock.now())
    first = run_verify(w, gate, token)
    again = run_verify(w, gate, token)
    assert first.outcome is Outcome.MATCH
    assert again.outcome is Outcome.REJECTED
    assert again.reasons == ("liveness_required", "liveness_replayed")
    assert again.liveness.jti_sha256 == first.liveness.jti_sha256


def test_a_replay_that_wins_the_pre_check_race_is_rejected_by_the_store(
        issuers: Issuers, monkeypatch: pytest.MonkeyPatch) -> None:
    # Two requests with one token both pass the read-only check before either commits:
    # the store's uniqueness (the decision's own insert) decides, and the loser becomes
    # a `liveness_replayed` rejection with nothing else of it written.
    w, gate = world(issuers)
    token = mint(issuers.trusted_key, sub="s1", at=w.clock.now())
    assert run_verify(w, gate, token).outcome is Outcome.MATCH
    add = FakeDecisionsRepo.add
    monkeypatch.setattr(FakeDecisionsRepo, "liveness_jti_used", lambda self, digest: False)
    monkeypatch.setattr(FakeDecisionsRepo, "add",
                        lambda self, d: add(self, d) if d.liveness.status is not
                        LivenessStatus.ATTESTED else _replay(d))
    lost = run_verify(w, gate, token)
    assert lost.outcome is Outcome.REJECTED
    assert lost.reasons[-1] == "liveness_replayed"
    assert len(w.store.state.decisions) == 2


def _replay(decision: Decision) -> None:
    raise AttestationReplayed(decision.liveness.jti_sha256 or "")


def test_a_policy_without_liveness_ignores_attestations_and_says_not_required(
        issuers: Issuers) -> None:
    w, gate = world(issuers)
    decision = run_verify(w, gate, "anything", policy="login")
    assert decision.outcome is Outcome.MATCH
    assert decision.liveness.status is LivenessStatus.NOT_REQUIRED
    assert w.store.audit.committed[-1].event.details["liveness"] == "not_required"


def test_a_search_attestation_names_the_collection_not_a_subject(issuers: Issuers) -> None:
    w, gate = world(issuers)

    def run(token: str | None) -> Decision:
        return search(SearchRequest(collection_id="c1", image=w.other_photo(1, "probe"),
                                    policy="tagging_live", liveness_attestation=token),
                      actor=APP, engine=w.engine, uow=w.store.uow(), index=w.index,
                      policies=policies(), clock=w.clock, blobs=w.blobs,
                      decoder=w.decoder, liveness=gate).decision

    now = w.clock.now()
    assert run(None).reasons[-1] == "liveness_missing"
    assert run(mint(issuers.trusted_key, sub="s1", at=now)).reasons[-1] == \
        "liveness_wrong_subject"
    assert run(mint(issuers.trusted_key, sub="search:c1", at=now)).outcome is Outcome.MATCH


def test_routes_that_cannot_carry_an_attestation_are_refused(issuers: Issuers) -> None:
    w, gate = world(issuers)
    face_id = next(iter(w.store.state.faces.values())).face_id
    with pytest.raises(LivenessUnsupported):  # a stored face is no live capture
        search_by_face(SearchByFaceRequest("c1", face_id, policy="tagging_live"),
                       actor=APP, engine=w.engine, uow=w.store.uow(), index=w.index,
                       policies=policies(), clock=w.clock, blobs=w.blobs)
    w.collection("c2", policies=("tagging_live",))
    with pytest.raises(LivenessUnsupported):  # the emulator names no policy
        search(SearchRequest(collection_id="c2", image=w.photo(1), policy=None),
               actor=OPERATOR, engine=w.engine, uow=w.store.uow(), index=w.index,
               policies=policies(), clock=w.clock, blobs=w.blobs, decoder=w.decoder,
               liveness=gate)
    assert all(d.collection_id != "c2" for d in w.store.state.decisions.values())


def test_an_expired_token_is_rejected_even_with_a_valid_signature(issuers: Issuers) -> None:
    w, gate = world(issuers)
    token = mint(issuers.trusted_key, sub="s1", at=w.clock.now())
    w.clock.advance(seconds=200)
    decision = run_verify(w, gate, token)
    assert decision.reasons == ("liveness_required", "liveness_expired")


def test_a_collection_binding_a_liveness_search_policy_refuses_the_emulator_search(
        issuers: Issuers) -> None:
    # With a lenient policy and a liveness one bound, the emulator (which names no
    # policy) decides under the strictest: the liveness one, which it cannot satisfy.
    w, gate = world(issuers)
    w.collection("c3", policies=("photo_tagging", "tagging_live"))
    with pytest.raises(LivenessUnsupported):
        search(SearchRequest(collection_id="c3", image=w.photo(1), policy=None),
               actor=OPERATOR, engine=w.engine, uow=w.store.uow(), index=w.index,
               policies=policies(), clock=w.clock, blobs=w.blobs, decoder=w.decoder,
               liveness=gate)


def test_an_unreadable_issuers_file_stops_the_start(tmp_path: Path) -> None:
    settings = Settings(env="test", data_dir=tmp_path,
                        liveness_issuers=tmp_path / "missing.json")
    with pytest.raises(ConfigError, match="FACEAPI_LIVENESS_ISSUERS"):
        Container(settings).liveness  # noqa: B018 - built at start by create_app
