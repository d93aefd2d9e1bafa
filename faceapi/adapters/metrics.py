"""Prometheus metrics: the `Metrics` port (services/ports.py) over prometheus_client,
the collector that reads the store at scrape time, and the wrappers that time the
engine stages at the adapter boundary (the services never see any of this).

Under gunicorn every worker is its own process: with PROMETHEUS_MULTIPROC_DIR set
(deploy/gunicorn.conf.py sets it before the app is imported), counters and histograms
are kept in per-process files in that directory and `/metrics` sums them across workers
(prometheus_client's multiprocess mode). Without it (one process) they live in this
object's own registry. Values read from the store (review queue, lockouts, audit chain)
are the same for every worker, so they are read once per scrape, not per process.

No label carries an image, a descriptor, a subject id, a collection id or a key: only
route rules, methods, statuses, stages, decision kinds, policy names and outcomes.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from faceapi.adapters.store import Store
from faceapi.adapters.store.tables import audit_checkpoints, audit_events, lockouts, reviews
from faceapi.domain.faces import Attributes, Capabilities, Comparison, Detection, EmbeddedFace
from faceapi.domain.images import DecodedImage
from faceapi.services.ports import FaceEngine, ImageDecoder, Metrics, SearchHit, SearchIndex

log = structlog.get_logger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Engine stages take from a few milliseconds (decode, search) to seconds (CNN detection).
_STAGE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class PrometheusMetrics:
    """The Metrics port over prometheus_client, plus the `/metrics` exposition."""

    def __init__(self, store: Store | None = None, *,
                 multiprocess_dir: str | None = None) -> None:
        self._multiprocess_dir = multiprocess_dir
        self._registry = CollectorRegistry(auto_describe=True)
        # In multiprocess mode values go to the directory's files, not to a registry.
        registry = None if multiprocess_dir else self._registry
        self._requests = Histogram(
            "faceapi_http_request_duration_seconds",
            "HTTP requests by route rule, method and status, and how long they took",
            ("route", "method", "status"), registry=registry)
        self._stages = Histogram(
            "faceapi_engine_stage_duration_seconds",
            "Time in each engine stage: decode, detect, embed, compare, search",
            ("stage",), buckets=_STAGE_BUCKETS, registry=registry)
        self._decisions = Counter(
            "faceapi_decisions",
            "Decisions taken, by kind, policy and first outcome",
            ("kind", "policy", "outcome"), registry=registry)
        self._rate_limited = Counter(
            "faceapi_rate_limit_refusals",
            "Requests refused by a rate limit (429), by route rule",
            ("route",), registry=registry)
        self._store_collector = StoreCollector(store) if store is not None else None
        if self._store_collector is not None and not multiprocess_dir:
            self._registry.register(self._store_collector)

    @classmethod
    def from_environment(cls, store: Store | None) -> PrometheusMetrics:
        """Multiprocess mode when PROMETHEUS_MULTIPROC_DIR is set (gunicorn.conf.py)."""
        return cls(store, multiprocess_dir=os.environ.get(MULTIPROC_ENV) or None)

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        self._requests.labels(route, method, str(status)).observe(seconds)

    def observe_stage(self, stage: str, seconds: float) -> None:
        self._stages.labels(stage).observe(seconds)

    def count_decision(self, kind: str, policy: str, outcome: str) -> None:
        self._decisions.labels(kind, policy, outcome).inc()

    def count_rate_limited(self, route: str) -> None:
        self._rate_limited.labels(route).inc()

    def exposition(self) -> tuple[bytes, str]:
        """The text format of every metric (summed over workers in multiprocess mode)
        and its content type."""
        if not self._multiprocess_dir:
            return generate_latest(self._registry), CONTENT_TYPE_LATEST
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=self._multiprocess_dir)  # type: ignore[no-untyped-call]
        if self._store_collector is not None:
            registry.register(self._store_collector)
        return generate_latest(registry), CONTENT_TYPE_LATEST


class StoreCollector(Collector):
    """What the store knows, read at scrape time with a few indexed queries: the review
    queue (depth and oldest age, by policy), active lockouts (by policy) and the audit
    chain (events appended, head age, last signed checkpoint). A failing store is
    reported as `faceapi_store_scrape_ok 0`, never as a failed scrape."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def describe(self) -> Iterable[Metric]:
        # Nothing to describe up front: the registry must not query the store on register.
        return []

    def collect(self) -> Iterator[Metric]:
        ok = GaugeMetricFamily("faceapi_store_scrape_ok",
                               "1 when the store answered this scrape's queries")
        try:
            families = list(self._read(datetime.now(UTC)))
        except Exception as exc:  # a scrape must report the store's failure, not crash
            log.warning("metrics_store_unavailable", error=type(exc).__name__)
            ok.add_metric([], 0.0)
            yield ok
            return
        ok.add_metric([], 1.0)
        yield ok
        yield from families

    def _read(self, now: datetime) -> Iterator[Metric]:
        depth = GaugeMetricFamily("faceapi_review_queue_depth",
                                  "Reviews waiting for a reviewer, by policy", labels=["policy"])
        oldest = GaugeMetricFamily("faceapi_review_queue_oldest_age_seconds",
                                   "Age of the oldest waiting review, by policy",
                                   labels=["policy"])
        locked = GaugeMetricFamily("faceapi_lockouts_active",
                                   "Claimed subjects locked out of verify now, by policy",
                                   labels=["policy"])
        with self._store.engine.connect() as conn:
            for policy, count, first in conn.execute(
                    select(reviews.c.policy_name, func.count(), func.min(reviews.c.created_at))
                    .where(reviews.c.status == "pending").group_by(reviews.c.policy_name)):
                depth.add_metric([policy], float(count))
                oldest.add_metric([policy], max(0.0, (now - _utc(first)).total_seconds()))
            for policy, count in conn.execute(
                    select(lockouts.c.policy_name, func.count())
                    .where(lockouts.c.locked_until > now).group_by(lockouts.c.policy_name)):
                locked.add_metric([policy], float(count))
            head = conn.execute(select(audit_events.c.seq, audit_events.c.occurred_at)
                                .order_by(audit_events.c.seq.desc()).limit(1)).first()
            checkpoint = conn.execute(select(func.max(audit_checkpoints.c.seq))).scalar()
        yield depth
        yield oldest
        yield locked
        appends = CounterMetricFamily(
            "faceapi_audit_appends",
            "Audit events appended to the chain (the head's sequence number; every "
            "process, the CLI included)")
        appends.add_metric([], float(head.seq) if head is not None else 0.0)
        yield appends
        head_age = GaugeMetricFamily("faceapi_audit_chain_head_age_seconds",
                                     "Time since the newest audit event")
        if head is not None:
            head_age.add_metric([], max(0.0, (now - _utc(head.occurred_at)).total_seconds()))
        yield head_age
        signed = GaugeMetricFamily("faceapi_audit_checkpoint_seq",
                                   "Sequence number of the newest signed checkpoint")
        signed.add_metric([], float(checkpoint or 0))
        yield signed


def _utc(value: datetime) -> datetime:
    # SQLite returns naive datetimes; the store writes UTC.
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


# --- Engine stages, timed at the adapter boundary -------------------------------------

class _Timer:
    def __init__(self, metrics: Metrics, stage: str) -> None:
        self._metrics = metrics
        self._stage = stage
        self._started = 0.0

    def __enter__(self) -> None:
        self._started = time.perf_counter()

    def __exit__(self, *_exc: object) -> None:
        self._metrics.observe_stage(self._stage, time.perf_counter() - self._started)


class TimedDecoder:
    """An ImageDecoder whose decodes are timed as the `decode` stage."""

    def __init__(self, inner: ImageDecoder, metrics: Metrics) -> None:
        self._inner = inner
        self._metrics = metrics

    def decode(self, data: bytes) -> DecodedImage:
        with _Timer(self._metrics, "decode"):
            return self._inner.decode(data)


class TimedIndex:
    """A SearchIndex whose searches are timed as the `search` stage."""

    def __init__(self, inner: SearchIndex, metrics: Metrics) -> None:
        self._inner = inner
        self._metrics = metrics

    def search(self, collection_id: str, embedding: Sequence[float], *, threshold: float,
               max_faces: int, template_version: str | None = None) -> list[SearchHit]:
        with _Timer(self._metrics, "search"):
            return self._inner.search(collection_id, embedding, threshold=threshold,
                                      max_faces=max_faces, template_version=template_version)

    def invalidate(self, collection_id: str) -> None:
        self._inner.invalidate(collection_id)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


# The remote-collection operations (Rekognition) reached through __getattr__, by stage.
_REMOTE_STAGES = {"index_faces": "embed", "search_faces_by_image": "search",
                  "search_faces": "search"}


class TimedEngine:
    """A FaceEngine whose detect, embed and compare calls are timed. Everything else
    (the FaceCollections and S3ImageReader operations an engine may also offer) is
    passed through, so `isinstance(engine, FaceCollections)` still tells the truth."""

    def __init__(self, inner: FaceEngine, metrics: Metrics) -> None:
        self._inner = inner
        self._metrics = metrics

    @property
    def name(self) -> str:
        return self._inner.name

    @property
    def model_version(self) -> str:
        return self._inner.model_version

    @property
    def template_version(self) -> str:
        return self._inner.template_version

    def capabilities(self) -> Capabilities:
        return self._inner.capabilities()

    def detect_faces(self, image: DecodedImage, attributes: Attributes) -> Detection:
        with _Timer(self._metrics, "detect"):
            return self._inner.detect_faces(image, attributes)

    def compare_faces(self, source: DecodedImage, target: DecodedImage,
                      threshold: float) -> Comparison:
        with _Timer(self._metrics, "compare"):
            return self._inner.compare_faces(source, target, threshold)

    def embed_faces(self, image: DecodedImage) -> tuple[Detection, list[EmbeddedFace]]:
        with _Timer(self._metrics, "embed"):
            return self._inner.embed_faces(image)

    def similarity(self, a: tuple[float, ...], b: tuple[float, ...]) -> float:
        return self._inner.similarity(a, b)

    def fused_similarity(self, probe: tuple[float, ...],
                         templates: Sequence[tuple[float, ...]]) -> float:
        return self._inner.fused_similarity(probe, templates)

    def ready(self) -> tuple[bool, str]:
        return self._inner.ready()

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._inner, name)
        stage = _REMOTE_STAGES.get(name)
        if stage is None or not callable(attribute):
            return attribute
        return _timed_call(attribute, self._metrics, stage)


def _timed_call(call: Callable[..., Any], metrics: Metrics, stage: str) -> Callable[..., Any]:
    def timed(*args: Any, **kwargs: Any) -> Any:
        with _Timer(metrics, stage):
            return call(*args, **kwargs)
    return timed
