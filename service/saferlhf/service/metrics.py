"""Prometheus metrics (DESIGN §9), built from `saferlhf.service.metrics_catalog` on an injected
registry.

- Training gauges mirror runner metric keys (the catalog's `source`), labelled
  saferlhf_job (the job id), project, round, stage (the runner kind). They live in one
  `TrainingSeries` collector (plain dicts, exposition lines built on update) rather than Gauge
  children, so a 1,000-job scrape stays cheap (`saferlhf.service.metrics_series`).
- `saferlhf_jobs` is computed from the store at scrape time by a custom collector.
- Per-job series are removed `retention_seconds` after the job ends (`sweep`), so cardinality is
  bounded by the jobs in flight plus the recently finished ones.
- `serve_metrics(registry, address)` serves /metrics on its own port.
"""

from __future__ import annotations

import functools
import logging
import threading
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from saferlhf.runners.common.harm_categories import bounded
from saferlhf.service import metrics_http
from saferlhf.service.metrics_catalog import BY_NAME, CATALOG, TRAIN_LABELS
from saferlhf.service.metrics_series import TrainingSeries
from saferlhf.service.state.types import last_metric_values

log = logging.getLogger(__name__)

STAGE_DURATION_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400)
GRPC_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10)

# runner metric key -> (metric name, extra labels); built from the catalog's `source` column.
_PLAIN_SOURCES: dict[str, str] = {
    m.source: m.name for m in CATALOG
    if m.source and "<" not in m.source and "|" not in m.source
    and m.source not in ("step", "progress")
}
GUARDS = ("VacuousThreshold", "LambdaPinned", "LambdaBelowBreakEven")
# registry -> the training series `Metrics` put on it, so `serve_metrics(registry)` finds them
_TRAINING: weakref.WeakKeyDictionary[CollectorRegistry, TrainingSeries] = (
    weakref.WeakKeyDictionary())


def route(key: str) -> tuple[str, dict[str, str]] | None:
    """Which gauge a runner metric key feeds, and with which extra labels (None: not exported).

    train/lambda → saferlhf_lagrange_multiplier; train/harmful_rate → saferlhf_harmful_ratio
    {judge="train"}; eval/harmful_rate/<judge> → {judge=<judge>};
    eval/category_harmful_rate/<judge>/<category> → saferlhf_category_harmful_ratio{judge,
    category} with the category bounded by the harm vocabulary (anything else → "other");
    eval/prompt_harmful_share/<judge> → saferlhf_harmful_prompt_ratio{judge}; guard/<name> →
    saferlhf_guard_active{guard=<name>}."""
    if key in _PLAIN_SOURCES:
        return _PLAIN_SOURCES[key], {}
    if key == "train/harmful_rate":
        return "saferlhf_harmful_ratio", {"judge": "train"}
    if key.startswith("eval/harmful_rate/") and len(key) > len("eval/harmful_rate/"):
        return "saferlhf_harmful_ratio", {"judge": key[len("eval/harmful_rate/"):]}
    if key.startswith("eval/category_harmful_rate/"):
        judge, _, category = key[len("eval/category_harmful_rate/"):].partition("/")
        if judge and category:
            return "saferlhf_category_harmful_ratio", {"judge": judge,
                                                       "category": bounded(category)}
        return None
    if key.startswith("eval/prompt_harmful_share/") and len(key) > len(
            "eval/prompt_harmful_share/"):
        return "saferlhf_harmful_prompt_ratio", {"judge": key[len("eval/prompt_harmful_share/"):]}
    if key.startswith("guard/") and len(key) > len("guard/"):
        return "saferlhf_guard_active", {"guard": key[len("guard/"):]}
    return None


@functools.lru_cache(maxsize=4096)
def _route_key(key: str) -> tuple[str, tuple[tuple[str, str], ...]] | None:
    target = route(key)
    return None if target is None else (target[0], tuple(sorted(target[1].items())))


class JobsCollector(Collector):
    """saferlhf_jobs{project, state}: counted by the store when Prometheus scrapes."""

    def __init__(self, count: Callable[[], Mapping[tuple[str, str], int]]) -> None:
        self._count = count

    def collect(self) -> Iterator[GaugeMetricFamily]:
        m = BY_NAME["saferlhf_jobs"]
        family = GaugeMetricFamily(m.name, m.help, labels=list(m.labels))
        try:
            counts = self._count()
        except Exception:  # a scrape must not fail because the store hiccuped
            log.exception("counting jobs for /metrics failed")
            counts = {}
        for (project, state), n in sorted(counts.items()):
            family.add_metric([project, state], float(n))
        yield family

    def describe(self) -> Iterator[GaugeMetricFamily]:
        m = BY_NAME["saferlhf_jobs"]
        yield GaugeMetricFamily(m.name, m.help, labels=list(m.labels))


class Metrics:
    """Every catalogued metric on one registry, plus the per-job series bookkeeping."""

    def __init__(
        self, registry: CollectorRegistry, *, retention_seconds: float = 900.0,
        count_jobs: Callable[[], Mapping[tuple[str, str], int]] | None = None,
    ) -> None:
        self.registry = registry
        self.retention_seconds = retention_seconds
        self.families: dict[str, Any] = {}
        self.training = TrainingSeries([m for m in CATALOG if m.labels[:4] == TRAIN_LABELS])
        registry.register(self.training)
        _TRAINING[registry] = self.training
        for m in CATALOG:
            if m.name == "saferlhf_jobs" or m.labels[:4] == TRAIN_LABELS:
                continue
            if m.type == "gauge":
                self.families[m.name] = Gauge(m.name, m.help, m.labels, registry=registry)
            elif m.type == "counter":
                name = m.name[: -len("_total")] if m.name.endswith("_total") else m.name
                self.families[m.name] = Counter(name, m.help, m.labels, registry=registry)
            elif m.type == "histogram":
                buckets = GRPC_BUCKETS if "grpc" in m.name else STAGE_DURATION_BUCKETS
                self.families[m.name] = Histogram(m.name, m.help, m.labels, registry=registry,
                                                  buckets=buckets)
            else:  # pragma: no cover - the catalog is checked by its own test
                raise ValueError(f"unknown metric type {m.type!r} for {m.name}")
        if count_jobs is not None:
            registry.register(JobsCollector(count_jobs))
        self._lock = threading.Lock()
        self._series: dict[str, set[tuple[str, tuple[str, ...]]]] = {}  # job id -> series
        self._ended: dict[str, float] = {}  # job id -> time it ended

    # ---- training gauges --------------------------------------------------------------------
    def _set(self, name: str, labels: dict[str, str], value: float, job_id: str) -> None:
        values = tuple(labels[k] for k in BY_NAME[name].labels)
        if self.training.set(name, values, value):  # a new series: remember whose it is
            with self._lock:
                self._series.setdefault(job_id, set()).add((name, values))
        if job_id in self._ended:
            with self._lock:
                self._ended.pop(job_id, None)

    def observe_event(
        self, *, job_id: str, project: str, round: int, kind: str, event: Mapping[str, Any],
        now: float,
    ) -> None:
        """Update the training gauges from one runner event."""
        self.observe_events(job_id=job_id, project=project, round=round, kind=kind,
                            events=[event], now=now)

    def observe_events(
        self, *, job_id: str, project: str, round: int, kind: str,
        events: Sequence[Mapping[str, Any]], now: float,
    ) -> None:
        """Update the training gauges from a batch of one stage's events, in order. Gauges keep
        only the last value, so each series is set once per batch."""
        last: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        for event in events:
            etype = event.get("type")
            if etype == "progress":
                total = event.get("total_steps") or 0
                if total:
                    last[("saferlhf_stage_progress_ratio", ())] = min(
                        1.0, float(event.get("step", 0)) / float(total))
            elif etype in ("metrics", "result"):
                if etype == "metrics" and isinstance(event.get("step"), int | float):
                    last[("saferlhf_train_step", ())] = float(event["step"])
            elif etype == "log" and event.get("level") == "warning":
                name = str(event.get("message", "")).split(":", 1)[0]
                if name in GUARDS:
                    last[("saferlhf_guard_active", (("guard", name),))] = 1.0
        for key, value in last_metric_values(events).items():
            target = _route_key(key)
            if target is not None:
                last[target] = value
        if not events:
            return
        base = {"saferlhf_job": job_id, "project": project, "round": str(round), "stage": kind}
        self._set("saferlhf_stage_last_event_timestamp_seconds", base, now, job_id)
        for (name, extra), value in last.items():
            self._set(name, {**base, **dict(extra)}, value, job_id)

    # ---- control plane ----------------------------------------------------------------------
    def attempt_finished(self, kind: str, outcome: str, duration_seconds: float | None) -> None:
        self.families["saferlhf_stage_attempts_total"].labels(kind, outcome).inc()
        if duration_seconds is not None and duration_seconds >= 0:
            self.families["saferlhf_stage_duration_seconds"].labels(kind).observe(
                duration_seconds)

    def retry(self, kind: str, reason: str) -> None:
        self.families["saferlhf_stage_retries_total"].labels(kind, reason).inc()

    def events_received(self, source: str, n: int) -> None:
        if n:
            self.families["saferlhf_events_received_total"].labels(source).inc(n)

    def grpc_request(self, method: str, code: str, seconds: float) -> None:
        self.families["saferlhf_grpc_requests_total"].labels(method, code).inc()
        self.families["saferlhf_grpc_request_duration_seconds"].labels(method).observe(seconds)

    def job_finished(self, job_id: str, project: str, state: str, now: float) -> None:
        """Count the terminal state and start the retention clock of the job's series."""
        self.families["saferlhf_jobs_finished_total"].labels(project, state).inc()
        with self._lock:
            self._ended[job_id] = now

    def sweep(self, now: float) -> int:
        """Drop the series of jobs that ended more than the retention ago; returns how many."""
        with self._lock:
            expired = [j for j, t in self._ended.items() if now - t >= self.retention_seconds]
            dropped = 0
            for job_id in expired:
                for name, values in self._series.pop(job_id, set()):
                    dropped += self.training.remove(name, values)
                del self._ended[job_id]
        return dropped

    def tracked_jobs(self) -> set[str]:
        with self._lock:
            return set(self._series)


def serve_metrics(registry: CollectorRegistry, address: str) -> tuple[Any, threading.Thread]:
    """Serve `registry` at http://<address>/metrics; returns (server, thread). Port 0 picks one:
    read it from `server.server_port`. Stop with `server.shutdown()`. The training families of
    the `Metrics` built on `registry` come from pre-built lines
    (`saferlhf.service.metrics_series`)."""
    return metrics_http.serve(registry, address, _TRAINING.get(registry))
