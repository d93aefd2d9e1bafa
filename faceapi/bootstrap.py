"""The composition root: the one place that picks adapters and binds use cases.

`bootstrap(settings)` returns a `Container` that builds each adapter from Settings once,
on first use (a CLI command that only lists keys never loads the dlib models), and hands
out `container.use_cases`: every use case with those adapters bound, so a caller passes
only what its request says. The web app (`entrypoints/web/app.py`) and every CLI command
(`entrypoints/cli/`) start here; tests pass their own settings and fakes of our ports.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from functools import cached_property
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from faceapi.adapters import health
from faceapi.adapters.blobs import DirectoryBlobStore
from faceapi.adapters.engines.factory import build_engine
from faceapi.adapters.images import PillowImageDecoder
from faceapi.adapters.liveness import JwtAttestationVerifier
from faceapi.adapters.metrics import PrometheusMetrics, TimedDecoder, TimedEngine, TimedIndex
from faceapi.adapters.policy_files import load_policies
from faceapi.adapters.private_files import PrivateFiles
from faceapi.adapters.search.index import BruteForceIndex, StoreIndexSource
from faceapi.adapters.signing_keys import CheckpointSigner, signing_key_path
from faceapi.adapters.store import Store
from faceapi.adapters.webhook_sender import HttpWebhookSender
from faceapi.config import Settings
from faceapi.domain import access
from faceapi.domain.access import ApiKey
from faceapi.domain.audit import Actor, AuditEvent, AuditQuery, Checkpoint, RecordedEvent
from faceapi.domain.audit_chain import VerifyReport
from faceapi.domain.clock import Clock, SystemClock
from faceapi.domain.collections import Collection, CollectionStats, Consent
from faceapi.domain.decisions import Decision, Review
from faceapi.domain.errors import FaceApiError
from faceapi.domain.faces import Capabilities, Comparison, Detection
from faceapi.domain.liveness import Freshness
from faceapi.domain.policies import Policy, PolicySet, PolicyVersion
from faceapi.domain.webhooks import AddressRules, Delivery, DeliveryStatus, Webhook
from faceapi.services import audit_trail, policy_history
from faceapi.services import blob_check as blob_check_svc
from faceapi.services import bulk_import as bulk_import_svc
from faceapi.services import collections as collections_svc
from faceapi.services import compare as compare_svc
from faceapi.services import detect as detect_svc
from faceapi.services import enroll as enroll_svc
from faceapi.services import erase as erase_svc
from faceapi.services import idempotency as idempotency_svc
from faceapi.services import keys as keys_svc
from faceapi.services import lockout as lockout_svc
from faceapi.services import reindex as reindex_svc
from faceapi.services import retention as retention_svc
from faceapi.services import review as review_svc
from faceapi.services import search as search_svc
from faceapi.services import sigv4 as sigv4_svc
from faceapi.services import verify as verify_svc
from faceapi.services import webhooks as webhooks_svc
from faceapi.services.collections import RemoteFacesEraser
from faceapi.services.erase import ErasureReport
from faceapi.services.face_crops import FaceCropEraser
from faceapi.services.liveness import LivenessGate
from faceapi.services.ports import (
    BlobStore,
    FaceEngine,
    ImageDecoder,
    Metrics,
    NullMetrics,
    SearchIndex,
    SecretFileWriter,
    SubjectEraser,
    WebhookSender,
    remote_collections,
)
from faceapi.services.retention import DecisionPseudonymiser, ReviewPseudonymiser
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
    def metrics(self) -> Metrics:
        """Prometheus (summed over gunicorn workers when PROMETHEUS_MULTIPROC_DIR is set),
        or nothing when FACEAPI_METRICS_ENABLED=false."""
        if not self.settings.metrics_enabled:
            return NullMetrics()
        return PrometheusMetrics.from_environment(self.store)

    @cached_property
    def engine(self) -> FaceEngine:
        """The configured engine, its stages timed; an engine passed in (a test's fake)
        is used as given."""
        return TimedEngine(build_engine(self.settings), self.metrics)

    # Set by an opener whose commands use the policies with a migrated store (the
    # CLI's, entrypoints/cli/common.py): the load then records new policy versions. The
    # web app records them itself at start, once its schema is checked.
    record_policy_loads = False

    @cached_property
    def policies(self) -> PolicySet:
        """policies/*.yaml; a bad file raises PolicyError here."""
        policies = load_policies(self.settings.policies_dir)
        if self.record_policy_loads:
            self.use_cases.record_policy_versions(policies)
        return policies

    @cached_property
    def calibration_document(self) -> dict[str, Any] | None:
        """calibration.json of the local engine (None for Rekognition, or unreadable:
        the engine's readiness reports that case)."""
        if self.settings.engine != "local":
            return None
        from faceapi.adapters.engines.local.similarity import CALIBRATION_FILE, SimilarityMap
        try:
            document: dict[str, Any] = json.loads(CALIBRATION_FILE.read_text(encoding="utf-8"))
            SimilarityMap.from_document(document)  # the scale version the code uses
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return document

    @cached_property
    def calibration_png(self) -> bytes | None:
        document = self.calibration_document
        if document is None:
            return None
        from faceapi.adapters import plots  # matplotlib only for those who look

        return plots.calibration_png(document)

    @cached_property
    def decoder(self) -> ImageDecoder:
        """Image intake under the configured byte, pixel and decode limits."""
        return TimedDecoder(PillowImageDecoder(self.settings), self.metrics)

    @cached_property
    def liveness(self) -> LivenessGate:
        """Liveness attestations: the issuers' public keys (FACEAPI_LIVENESS_ISSUERS, read
        once; a bad file raises ConfigError here) and how fresh a token must be."""
        s = self.settings
        return LivenessGate(JwtAttestationVerifier.from_file(s.liveness_issuers),
                            Freshness(max_age_seconds=s.liveness_max_age_seconds,
                                      clock_skew_seconds=s.liveness_clock_skew_seconds))

    @cached_property
    def blobs(self) -> BlobStore:
        return DirectoryBlobStore(self.settings.resolved_blob_dir)

    @cached_property
    def files(self) -> SecretFileWriter:
        """0600 files: the bootstrap admin key."""
        return PrivateFiles()

    @cached_property
    def index(self) -> SearchIndex:
        """This process's copy of the collections' descriptors."""
        return TimedIndex(BruteForceIndex(StoreIndexSource(self.store.read_uow),
                                          self.engine.similarity), self.metrics)

    @cached_property
    def erasers(self) -> tuple[SubjectEraser, ...]:
        """What a subject's erasure (and a collection's deletion) also deletes: review
        evidence and lockout state, enrolled-face crops, the subject's ids in decision
        and review rows (after the evidence eraser, which finds reviews by those ids),
        and the engine's own copy of the faces when it keeps them (Rekognition)."""
        erasers: tuple[SubjectEraser, ...] = (ReviewEvidenceEraser(self.blobs, self.clock),
                                              FaceCropEraser(self.blobs),
                                              reindex_svc.FaceChipEraser(),
                                              DecisionPseudonymiser(), ReviewPseudonymiser(),
                                              idempotency_svc.IdempotencyEraser())
        if "engine" not in self.__dict__ and self.settings.engine == "local":
            # The local engine keeps no faces of its own: a process that has not built
            # it (`faceapi retention run`) need not load its models to know that.
            return erasers
        remote = remote_collections(self.engine)
        if remote is not None:
            erasers = (*erasers, RemoteFacesEraser(self.engine, remote))
        return erasers

    @cached_property
    def webhook_rules(self) -> AddressRules:
        """Where review callbacks may go (FACEAPI_WEBHOOK_*)."""
        s = self.settings
        return AddressRules(hosts=s.webhook_allowed_hosts,
                            networks=s.webhook_allowed_networks,
                            http_loopback=s.webhook_allow_http_loopback)

    @cached_property
    def webhook_sender(self) -> WebhookSender:
        return HttpWebhookSender(self.webhook_rules,
                                 timeout_seconds=self.settings.webhook_timeout_seconds)

    @cached_property
    def use_cases(self) -> UseCases:
        """Every use case with these adapters bound."""
        return UseCases(self)

    def close(self) -> None:
        """Release the database connections, if the store was built."""
        store = self.__dict__.get("store")
        if store is not None:
            store.dispose()


class UseCases:
    """Every use case with this process's adapters bound: callers pass only what the
    request says (the request object, the caller, the request id). Each call gets a
    fresh unit of work; the adapters are read from the container at call time, so a
    test that swaps one (`container.blobs = ...`) is seen by the next call."""

    def __init__(self, container: Container) -> None:
        self._c = container

    # --- Readiness ----------------------------------------------------------------------

    def readiness(self) -> dict[str, tuple[bool, str]]:
        """What /readyz reports: the engine says whether it can serve; the store runs a
        real query (the schema revision), so an unreachable database or an unmigrated
        schema is not ready; Redis answers PING (when configured); the blob directory
        takes a small file; the audit signing key file reads."""
        settings = self._c.settings
        checks = {"engine": self._c.engine.ready(), "store": self._store_ready(),
                  "blobs": health.directory_writable(settings.resolved_blob_dir),
                  "signing_key": health.signing_key_readable(signing_key_path(settings))}
        if settings.redis_url:
            checks["redis"] = health.redis_answers(settings.redis_url)
        return checks

    def _store_ready(self) -> tuple[bool, str]:
        try:
            self._c.store.require_current_schema()
        except FaceApiError as exc:
            return False, exc.code
        except RuntimeError:
            return False, "schema_not_current"
        except Exception as exc:  # a failing check must report, not crash readiness
            return False, type(exc).__name__
        return True, "reachable, schema current"

    # --- What is in force: policies, the engine ----------------------------------------

    def list_policies(self) -> list[Policy]:
        """The policies in force (policies/*.yaml, validated at start)."""
        return list(self._c.policies.values())

    def get_policy(self, name: str) -> Policy | None:
        return self._c.policies.get(name)

    def record_policy_versions(self, policies: PolicySet | None = None) -> list[PolicyVersion]:
        """Keep the canonical text of every loaded policy version not recorded yet, each
        with a `policy.load` audit event (once, however many workers start at once)."""
        c = self._c
        return policy_history.record_loaded(policies if policies is not None else c.policies,
                                            uow=c.store.uow(), clock=c.clock,
                                            actor=Actor.system("start"))

    def get_policy_version(self, name: str, version: str, *,
                           actor: Actor) -> policy_history.PolicyVersionView:
        """The canonical text of any policy version ever loaded (NotFound otherwise)."""
        return policy_history.get_version(name, version, actor=actor,
                                          uow=self._c.store.read_uow())

    def engine_capabilities(self) -> Capabilities:
        """The active engine: what it computes and what it never returns."""
        return self._c.engine.capabilities()

    def similarity_calibration(self) -> dict[str, Any] | None:
        """The local engine's calibration document (curve, measured FMR/FNMR per
        threshold, pair histograms), or None for an engine without one."""
        return self._c.calibration_document

    def similarity_calibration_png(self) -> bytes | None:
        """The calibration drawn as a PNG (rendered once per process, then kept)."""
        return self._c.calibration_png

    # --- Images without a collection (detect, compare) ----------------------------------

    def detect(self, req: detect_svc.DetectRequest, *, actor: Actor) -> Detection:
        c = self._c
        return detect_svc.detect(req, engine=c.engine, decoder=c.decoder, uow=c.store.uow(),
                                 actor=actor)

    def compare(self, req: compare_svc.CompareRequest, *, actor: Actor) -> Comparison:
        c = self._c
        return compare_svc.compare(req, engine=c.engine, decoder=c.decoder,
                                   uow=c.store.uow(), actor=actor)

    # --- Decisions under a policy (verify, compare, search) -----------------------------

    def verify(self, req: verify_svc.VerifyRequest, *, actor: Actor,
               request_id: str | None = None) -> Decision:
        c = self._c
        return self._counted(verify_svc.verify(
            req, actor=actor, engine=c.engine, uow=c.store.uow(), policies=c.policies,
            clock=c.clock, blobs=c.blobs, decoder=c.decoder, request_id=request_id,
            liveness=c.liveness))

    def compare_under_policy(self, req: verify_svc.CompareRequest, *, actor: Actor,
                             request_id: str | None = None) -> Decision:
        c = self._c
        return self._counted(verify_svc.compare_under_policy(
            req, actor=actor, engine=c.engine, uow=c.store.uow(), policies=c.policies,
            clock=c.clock, blobs=c.blobs, decoder=c.decoder, request_id=request_id))

    def search(self, req: search_svc.SearchRequest, *, actor: Actor,
               request_id: str | None = None) -> search_svc.SearchResult:
        c = self._c
        result = search_svc.search(req, actor=actor, engine=c.engine, uow=c.store.uow(),
                                   index=c.index, policies=c.policies, clock=c.clock,
                                   blobs=c.blobs, decoder=c.decoder, request_id=request_id,
                                   liveness=c.liveness)
        self._counted(result.decision)
        return result

    def search_every_face(self, req: search_svc.SearchRequest, *, actor: Actor,
                          request_id: str | None = None) -> list[search_svc.SearchResult]:
        """Photo tagging of a group photo: each face its own result and decision."""
        c = self._c
        results = search_svc.search_every_face(
            req, actor=actor, engine=c.engine, uow=c.store.uow(), index=c.index,
            policies=c.policies, clock=c.clock, blobs=c.blobs, decoder=c.decoder,
            request_id=request_id)
        for result in results:
            self._counted(result.decision)
        return results

    def search_by_face(self, req: search_svc.SearchByFaceRequest, *, actor: Actor,
                       request_id: str | None = None) -> search_svc.SearchResult:
        c = self._c
        result = search_svc.search_by_face(req, actor=actor, engine=c.engine,
                                           uow=c.store.uow(), index=c.index,
                                           policies=c.policies, clock=c.clock, blobs=c.blobs,
                                           request_id=request_id)
        self._counted(result.decision)
        return result

    def _counted(self, decision: Decision) -> Decision:
        self._c.metrics.count_decision(decision.kind.value, decision.policy_name,
                                       decision.outcome.value)
        return decision

    def get_decision(self, decision_id: str, *, actor: Actor) -> Decision:
        c = self._c
        return review_svc.get_decision(decision_id, actor=actor, uow=c.store.uow(),
                                       blobs=c.blobs, clock=c.clock)

    # --- Review callbacks ---------------------------------------------------------------

    def register_webhook(self, url: str, *, actor: Actor,
                         request_id: str | None = None) -> webhooks_svc.RegisteredWebhook:
        c = self._c
        return webhooks_svc.register_webhook(url, actor=actor, uow=c.store.uow(),
                                             clock=c.clock, rules=c.webhook_rules,
                                             request_id=request_id)

    def get_webhook(self, *, actor: Actor) -> Webhook:
        return webhooks_svc.get_webhook(actor=actor, uow=self._c.store.uow())

    def delete_webhook(self, *, actor: Actor, request_id: str | None = None) -> None:
        webhooks_svc.delete_webhook(actor=actor, uow=self._c.store.uow(),
                                    request_id=request_id)

    def list_webhook_deliveries(self, *, actor: Actor, limit: int = 50,
                                before: str | None = None,
                                status: DeliveryStatus | None = None) -> list[Delivery]:
        return webhooks_svc.list_deliveries(actor=actor, uow=self._c.store.uow(),
                                            limit=limit, before=before, status=status)

    def deliver_webhooks(self, render: Callable[[Decision], bytes], *,
                         limit: int = webhooks_svc.DELIVERY_BATCH
                         ) -> webhooks_svc.DeliveryReport:
        """Send the due review callbacks once; `render` is the decision's JSON as
        GET /v1/decisions/{id} shows it (the entry point's schema)."""
        c = self._c
        s = c.settings
        return webhooks_svc.deliver_due(
            uow_factory=c.store.uow, sender=c.webhook_sender, clock=c.clock, render=render,
            settings=webhooks_svc.DeliverySettings(
                max_attempts=s.webhook_max_attempts,
                backoff_seconds=s.webhook_backoff_seconds,
                lease_seconds=s.webhook_lease_seconds),
            limit=limit)

    # --- Lockouts -----------------------------------------------------------------------

    def lockout_status(self, collection_id: str, subject_id: str, *,
                       actor: Actor) -> list[lockout_svc.LockoutStatus]:
        c = self._c
        return lockout_svc.lockout_status(collection_id, subject_id, actor=actor,
                                          uow=c.store.uow(), clock=c.clock)

    def unlock(self, collection_id: str, subject_id: str, policy_name: str | None, *,
               actor: Actor, request_id: str | None = None) -> int:
        c = self._c
        return lockout_svc.unlock(collection_id, subject_id, policy_name, actor=actor,
                                  uow=c.store.uow(), clock=c.clock, request_id=request_id)

    # --- Human review -------------------------------------------------------------------

    def list_reviews(self, query: review_svc.ReviewQuery, *, actor: Actor) -> list[Review]:
        c = self._c
        return review_svc.list_reviews(query, actor=actor, uow=c.store.uow(), blobs=c.blobs,
                                       clock=c.clock)

    def count_waiting_reviews(self, *, actor: Actor) -> int:
        c = self._c
        return review_svc.count_waiting_reviews(actor=actor, uow=c.store.uow(), clock=c.clock)

    def get_review(self, review_id: str, *, actor: Actor) -> review_svc.ReviewView:
        c = self._c
        return review_svc.get_review(review_id, actor=actor, uow=c.store.uow(), blobs=c.blobs,
                                     clock=c.clock)

    def get_evidence(self, review_id: str, name: str, *, actor: Actor,
                     request_id: str | None = None) -> bytes:
        c = self._c
        return review_svc.get_evidence(review_id, name, actor=actor, uow=c.store.uow(),
                                       blobs=c.blobs, clock=c.clock, request_id=request_id)

    def decide_review(self, req: review_svc.VoteRequest, *, actor: Actor,
                      request_id: str | None = None) -> review_svc.ReviewView:
        c = self._c
        return review_svc.decide_review(req, actor=actor, uow=c.store.uow(), blobs=c.blobs,
                                        clock=c.clock, request_id=request_id)

    def sweep_reviews(self) -> tuple[int, int]:
        """Expire overdue reviews and purge evidence past retention: (expired, purged)."""
        c = self._c
        return review_svc.sweep(uow=c.store.uow(), blobs=c.blobs, clock=c.clock)

    def run_retention(self) -> retention_svc.RetentionReport:
        """Erase subjects whose consent has lapsed (with every eraser, as a manual
        erasure), delete decision rows past their policy's decision_retention_days;
        audited. Other workers' search index copies see the erasures' version bumps."""
        c = self._c
        return retention_svc.run_retention(uow_factory=c.store.uow, policies=c.policies,
                                           clock=c.clock, actor=Actor.system("retention"),
                                           erasers=c.erasers)

    # --- Idempotency-Key (services/idempotency.py) --------------------------------------

    def claim_idempotency(self, req: idempotency_svc.IdempotentRequest
                          ) -> idempotency_svc.Claim | idempotency_svc.Replay:
        return idempotency_svc.claim(req, uow=self._c.store.uow(), clock=self._c.clock)

    def save_idempotent_response(self, held: idempotency_svc.Claim, *, status: int,
                                 body: str, headers: tuple[tuple[str, str], ...],
                                 collection_id: str | None) -> bool:
        return idempotency_svc.save_response(held, status=status, body=body,
                                             headers=headers, collection_id=collection_id,
                                             uow=self._c.store.uow())

    def release_idempotency(self, held: idempotency_svc.Claim) -> None:
        idempotency_svc.release(held, uow=self._c.store.uow())

    def purge_idempotency_records(self) -> int:
        """Delete Idempotency-Key records past their 24 h (`faceapi retention run`)."""
        return idempotency_svc.purge_expired(uow=self._c.store.uow(), clock=self._c.clock)

    # --- Collections, faces, subjects, consent ------------------------------------------

    def create_collection(self, req: collections_svc.CreateCollectionRequest, *,
                          actor: Actor) -> Collection:
        c = self._c
        return collections_svc.create_collection(
            req, actor=actor, engine=c.engine, uow=c.store.uow(), clock=c.clock,
            policies=c.policies, default_policies=c.settings.default_collection_policies)

    def set_collection_policies(self, collection_id: str, names: Sequence[str], *,
                                actor: Actor, request_id: str | None = None) -> Collection:
        c = self._c
        return collections_svc.set_collection_policies(
            collection_id, names, actor=actor, uow=c.store.uow(), policies=c.policies,
            request_id=request_id)

    def list_collections(self, *, actor: Actor, limit: int = 100,
                         next_token: str | None = None) -> collections_svc.CollectionPage:
        return collections_svc.list_collections(actor=actor, uow=self._c.store.read_uow(),
                                                limit=limit, next_token=next_token)

    def describe_collection(self, collection_id: str, *,
                            actor: Actor) -> collections_svc.CollectionDescription:
        return collections_svc.describe_collection(collection_id, actor=actor,
                                                   uow=self._c.store.read_uow())

    def delete_collection(self, collection_id: str, *, actor: Actor) -> None:
        c = self._c
        collections_svc.delete_collection(collection_id, actor=actor, uow=c.store.uow(),
                                          erasers=c.erasers, on_erased=c.index.invalidate)

    def reindex_collection(self, collection_id: str, *, actor: Actor,
                           to_version: str = "current",
                           batch_size: int = reindex_svc.DEFAULT_BATCH,
                           progress: Callable[[reindex_svc.ReindexProgress], None] | None = None
                           ) -> reindex_svc.ReindexReport:
        """Move a collection's faces to the engine's template version from kept chips."""
        c = self._c
        return reindex_svc.reindex_collection(collection_id, actor=actor, engine=c.engine,
                                              uow=c.store.uow, to_version=to_version,
                                              batch_size=batch_size, progress=progress)

    def index_faces(self, req: enroll_svc.IndexFacesRequest, *,
                    actor: Actor) -> enroll_svc.IndexFacesResult:
        c = self._c
        return enroll_svc.index_faces(req, actor=actor, engine=c.engine, uow=c.store.uow(),
                                      clock=c.clock, decoder=c.decoder, blobs=c.blobs,
                                      policies=c.policies)

    def faces_of_image(self, collection_id: str, sha256: str) -> tuple[str, ...]:
        return bulk_import_svc.faces_of_image(collection_id, sha256,
                                              uow=self._c.store.read_uow())

    def consent_status(self, collection_id: str, subject_id: str) -> str:
        """`in_force`, `lapsed` or `none` (services/bulk_import.py)."""
        return bulk_import_svc.consent_status(collection_id, subject_id,
                                              uow=self._c.store.read_uow(),
                                              now=self._c.clock.now())

    def record_import_run(self, collection_id: str, counts: dict[str, int], *,
                          actor: Actor) -> None:
        bulk_import_svc.record_import_run(collection_id, counts, actor=actor,
                                          uow=self._c.store.uow())

    def list_faces(self, collection_id: str, *, actor: Actor, subject_id: str | None = None,
                   limit: int = 100,
                   next_token: str | None = None) -> collections_svc.FaceListPage:
        return collections_svc.list_faces(collection_id, actor=actor,
                                          uow=self._c.store.read_uow(), subject_id=subject_id,
                                          limit=limit, next_token=next_token)

    def delete_faces(self, collection_id: str, face_ids: list[str], *,
                     actor: Actor) -> collections_svc.DeleteFacesResult:
        c = self._c
        return collections_svc.delete_faces(collection_id, face_ids, actor=actor,
                                            uow=c.store.uow(), engine=c.engine, blobs=c.blobs)

    def get_subject(self, collection_id: str, subject_id: str, *,
                    actor: Actor) -> collections_svc.SubjectView:
        return collections_svc.get_subject(collection_id, subject_id, actor=actor,
                                           uow=self._c.store.read_uow())

    def erase_subject(self, collection_id: str, subject_id: str, *,
                      actor: Actor) -> ErasureReport:
        """GDPR Art 17: the subject's faces, consent, review data and lockout state, with
        every eraser the container built; this worker's index copy is dropped at once."""
        c = self._c
        return erase_svc.erase_subject(collection_id, subject_id, actor=actor,
                                       uow=c.store.uow(), erasers=c.erasers,
                                       on_erased=c.index.invalidate)

    def record_consent(self, collection_id: str, subject_id: str,
                       consent: collections_svc.ConsentInput, *, actor: Actor) -> Consent:
        c = self._c
        return collections_svc.record_consent(collection_id, subject_id, consent, actor=actor,
                                              uow=c.store.uow(), clock=c.clock)

    def collection_counts(self, collections: Sequence[Collection]
                          ) -> list[tuple[Collection, CollectionStats]]:
        """Face and subject counts of a page of collections, in one read (a read model
        for listings; access was checked when the page was listed)."""
        with self._c.store.read_uow() as uow:
            return [(c, uow.collections.stats(c.collection_id)) for c in collections]

    # --- Audit trail --------------------------------------------------------------------

    def list_audit_events(self, query: AuditQuery, limit: int, *,
                          reader: Actor) -> tuple[list[RecordedEvent], int | None]:
        return audit_trail.list_events(query, limit, uow=self._c.store.read_uow(),
                                       reader=reader)

    def get_audit_event(self, event_id: str, *, reader: Actor) -> RecordedEvent:
        return audit_trail.get_event(event_id, uow=self._c.store.read_uow(), reader=reader)

    def verify_audit_trail(self, *, actor: Actor,
                           public_keys: Sequence[Ed25519PublicKey] = (),
                           extra_checkpoints: Sequence[Checkpoint] = ()) -> VerifyReport:
        """Walk the live chain and its checkpoints (audited), with `public_keys` or else
        this deployment's trusted keys (the signing key's and the configured retired ones)."""
        store = self._c.store
        return audit_trail.verify_trail(read_uow=store.read_uow(), uow=store.uow(),
                                        public_keys=public_keys or store.signer.trusted_public_keys,
                                        actor=actor, extra_checkpoints=extra_checkpoints)

    def export_audit_trail(self, query: AuditQuery, fmt: str, *, actor: Actor,
                           now: datetime | None = None) -> tuple[str, Iterator[str]]:
        """The export's file name and its chunks (JSONL or CSV); the export is audited
        before the first chunk. The export's time is `now`, else the store's clock (the
        one audit events carry)."""
        store = self._c.store
        now = now or store.now()
        chunks = audit_trail.export_trail(query, fmt, uow=store.uow(),
                                          read_uow=store.read_uow(), actor=actor,
                                          public_key=store.signer.public_key, now=now,
                                          retired_keys=store.signer.retired_public_keys)
        return audit_trail.export_filename(fmt, now), chunks

    def record_audit_event(self, event: AuditEvent) -> RecordedEvent:
        """One event in its own transaction (a refused request, a sign-in)."""
        return audit_trail.record(event, uow=self._c.store.uow())

    def list_checkpoints(self) -> list[Checkpoint]:
        return audit_trail.list_checkpoints(uow=self._c.store.read_uow())

    def create_checkpoint(self) -> Checkpoint | None:
        return audit_trail.create_checkpoint(uow=self._c.store.uow())

    def check_blobs(self) -> blob_check_svc.BlobCheck:
        """Whether the blob store holds every crop and evidence file the database names
        (after a restore: docs/operations.md, "Backup and restore")."""
        return blob_check_svc.check_blobs(read_uow=self._c.store.read_uow, blobs=self._c.blobs)

    # --- API keys and authentication ----------------------------------------------------

    def create_key(self, new: keys_svc.NewKey, *, actor: Actor) -> keys_svc.CreatedKey:
        c = self._c
        return keys_svc.create_key(new, uow=c.store.uow(), clock=c.clock, actor=actor)

    def list_keys(self, *, actor: Actor, include_revoked: bool = True) -> list[ApiKey]:
        return keys_svc.list_keys(uow=self._c.store.read_uow(), actor=actor,
                                  include_revoked=include_revoked)

    def get_key(self, key_id: str, *, actor: Actor) -> ApiKey:
        return keys_svc.get_key(key_id, uow=self._c.store.read_uow(), actor=actor)

    def revoke_key(self, key_id: str, *, actor: Actor,
                   allow_last_admin: bool = False) -> ApiKey:
        c = self._c
        return keys_svc.revoke_key(key_id, uow=c.store.uow(), clock=c.clock, actor=actor,
                                   allow_last_admin=allow_last_admin)

    def rotate_key(self, key_id: str, *, actor: Actor,
                   expires_at: datetime | None = None) -> keys_svc.CreatedKey:
        c = self._c
        return keys_svc.rotate_key(key_id, uow=c.store.uow(), clock=c.clock, actor=actor,
                                   expires_at=expires_at)

    def bootstrap_keys(self) -> keys_svc.BootstrapResult:
        """First start: the first admin key into <data dir>/admin-key.txt (mode 0600)."""
        c = self._c
        return keys_svc.bootstrap(c.settings.data_dir, uow=c.store.uow(), clock=c.clock,
                                  files=c.files)

    def authenticate(self, token: str | None) -> access.Actor:
        c = self._c
        return keys_svc.authenticate(token, read_uow=c.store.read_uow, write_uow=c.store.uow,
                                     clock=c.clock)

    def authenticate_signed(self, req: sigv4_svc.SignedRequest) -> access.Actor:
        store = self._c.store
        return sigv4_svc.authenticate_signed(req, read_uow=store.read_uow,
                                             write_uow=store.uow, clock=self._c.clock,
                                             now=store.now())


def bootstrap(settings: Settings | None = None, *, engine: FaceEngine | None = None,
              clock: Clock | None = None) -> Container:
    """The adapters for one process: the web app's or one CLI command's. In production
    the keys must come from outside the data directory (ConfigError says how)."""
    settings = settings or Settings.from_env()
    settings.require_production_keys()
    return Container(settings, engine=engine, clock=clock)
