"""The App: the domain API (`saferlhf.service.controlplane.ControlPlane`) over the store, the spec
loader
and planner, the scheduler, the executor, event ingestion and metrics.

`build_app(settings, clock=, registry=, executor=)` is the composition the gRPC server and the CLI
use; tests inject a fake clock and a fake executor. `app.start()` recovers (adopts live attempts,
fills event gaps) and runs the reconcile loop in a background thread; `app.stop()` ends it.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from saferlhf.service.controlplane import JobView, Page, WatchUpdate
from saferlhf.service.errors import (
    Conflict,
    FieldViolation,
    NotFound,
    ServiceError,
    SpecError,
    Unauthenticated,
    Unavailable,
)
from saferlhf.service.events import EventIngestor, JobNotifier, updates_after
from saferlhf.service.execution.base import Executor
from saferlhf.service.metrics import Metrics
from saferlhf.service.scheduler.loop import Scheduler, SchedulerConfig, awaiting_labels, hash_token
from saferlhf.service.settings import Settings
from saferlhf.service.state.transitions import check_job
from saferlhf.service.state.types import (
    AttemptState,
    Gate,
    GateState,
    Job,
    JobState,
    Stage,
)
from saferlhf.service.store import Store, open_store, parse_filter

log = logging.getLogger(__name__)

WATCH_SAFETY_WAKE_SECONDS = 5.0  # watchers are woken by the notifier; this only bounds a miss


def new_job_id(now: float) -> str:
    day = datetime.fromtimestamp(now, UTC).strftime("%Y%m%d")
    return f"j-{day}-{secrets.token_hex(3)}"


class App:
    def __init__(
        self, settings: Settings, store: Store, executor: Executor, *,
        clock: Callable[[], float], registry: CollectorRegistry,
    ) -> None:
        self.settings = settings
        self.store = store
        self.executor = executor
        self.clock = clock
        self.registry = registry
        self.artifacts_root = settings.resolved_artifacts_root
        self.metrics = Metrics(registry, retention_seconds=settings.metrics_retention_seconds,
                               count_jobs=store.count_jobs_by_state)
        self.notifier = JobNotifier()
        store.add_listener(self.notifier.notify)
        self.ingestor = EventIngestor(store, clock, self.metrics)
        self._events_address: str | None = None
        self.scheduler = Scheduler(
            store, executor, clock, self.ingestor,
            SchedulerConfig(
                max_concurrent_stages=settings.max_concurrent_stages,
                stall_minutes=settings.stall_minutes,
                cancel_grace_seconds=settings.cancel_grace_seconds,
                runner_env={"HF_HUB_OFFLINE": "1",
                            "OMP_NUM_THREADS": str(settings.runner_omp_threads),
                            **runner_tls_env(settings)},
                image=settings.kubernetes_image,
            ),
            metrics=self.metrics, events_address=lambda: self._events_address,
        )
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    # ---- lifecycle --------------------------------------------------------------------------
    def set_events_address(self, address: str | None) -> None:
        """Where runners stream events (the RunnerService address), passed to new attempts."""
        self._events_address = address

    def start(self) -> None:
        """Recover, then run the reconcile loop in a background thread."""
        start = getattr(self.executor, "start", None)
        if callable(start):
            start()  # e.g. the Kubernetes executor's watch threads
        self.scheduler.recover()
        self._stopping.clear()
        self._thread = threading.Thread(target=self._loop, name="saferlhf-reconcile", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        store_down = False
        while not self._stopping.is_set():
            try:
                self.scheduler.tick()
                if store_down:
                    log.warning("the store is back: reconciling again")
                store_down = False
            except Unavailable as exc:  # the database restarts: said once, not every tick
                if not store_down:
                    log.warning("reconcile paused while the store is unavailable: %s",
                                exc.message)
                store_down = True
            except Exception:
                log.exception("reconcile tick failed")
            self._wake.wait(self.settings.reconcile_interval_seconds)
            self._wake.clear()

    def kick(self) -> None:
        """Run the next reconcile tick now (after an API call changed something)."""
        self._wake.set()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        stop = getattr(self.executor, "stop", None)
        if callable(stop):
            stop()
        self.notifier.close()

    def close(self) -> None:
        self.stop()
        self.store.close()

    # ---- create / read ----------------------------------------------------------------------
    def create_job(
        self, spec_yaml: str, *, project: str | None, request_id: str, validate_only: bool
    ) -> Job | None:
        from saferlhf.service.planning.fit import memory_violations
        from saferlhf.service.planning.plan import plan_job
        from saferlhf.service.spec.load import load_spec

        spec = load_spec(spec_yaml, artifacts_root=self.artifacts_root,
                         checks=(memory_violations,))
        meta = spec.metadata
        if project and meta.project not in (project, "default"):
            raise SpecError([FieldViolation(
                "metadata.project", f"the spec names project {meta.project!r} but the request is "
                f"for project {project!r}; make them agree")])
        project = project or meta.project
        if spec.spec.executor != self.settings.executor:
            raise SpecError([FieldViolation(
                "spec.executor", f"this service runs the {self.settings.executor} executor, "
                f"got {spec.spec.executor!r}; set `executor: {self.settings.executor}` (only "
                "`executor` and `resources` change between a laptop and a cluster)")])
        if request_id and not validate_only:
            existing = self.store.find_job_by_request(project, request_id)
            if existing is not None:
                return existing
        now = self.clock()
        job_id = new_job_id(now)
        plan = plan_job(spec, job_id=job_id, artifacts_root=self.artifacts_root)
        if validate_only:
            return None
        stages = [
            Stage(
                id=p.id, job_id=job_id, round=p.round, kind=p.kind,
                depends_on=tuple(p.depends_on), config=dict(p.config), output_dir=p.output_dir,
                skipped_with=p.skipped_with, max_attempts=p.retries.max_attempts,
                backoff_seconds=p.retries.backoff_seconds,
                backoff_max_seconds=p.retries.backoff_max_seconds,
                stall_minutes=p.stall_minutes, resources=_as_dict(p.resources),
                timeout_minutes=getattr(p, "timeout_minutes", None),
            )
            for p in plan.stages
        ]
        gates = [Gate(id=g.id, job_id=job_id, after_stage=g.after_stage, metric=g.metric,
                      op=g.op, value=float(g.value), on_fail=g.on_fail) for g in plan.gates]
        job = Job(id=job_id, name=meta.name, project=project,
                  spec=spec.model_dump(mode="json"), request_id=request_id,
                  labels=dict(meta.labels), created_at=now, updated_at=now)
        created, _ = self.store.create_job(job, stages, gates)
        self.kick()
        return created

    def get_job(self, job_id: str) -> JobView:
        job = self.store.get_job(job_id)
        return JobView(
            job=job, stages=tuple(self.store.list_stages(job_id)),
            attempts=tuple(self.store.list_attempts(job_id)),
            gates=tuple(self.store.list_gates(job_id)),
            transitions=tuple(t for _, t in self.store.transitions(job_id)),
            latest_metrics=self.store.latest_metrics(job_id),
        )

    def list_jobs(
        self, *, projects: list[str] | None, filter: str, page_size: int, page_token: str
    ) -> Page:
        flt = parse_filter(filter, projects)
        jobs, token = self.store.list_jobs(flt, page_size, page_token)
        return Page(tuple(jobs), token)

    # ---- watch ------------------------------------------------------------------------------
    def watch_job(self, job_id: str, *, after_cursor: int = 0) -> Iterator[WatchUpdate]:
        last = self.store.max_cursor(job_id)  # NotFound before the stream starts
        if after_cursor > last:
            # A cursor this job never gave out: following from it would silently skip the
            # updates between its last cursor and this one as they happen.
            raise SpecError([FieldViolation(
                "after_cursor", f"expected at most {last} (the job's last cursor), got "
                f"{after_cursor}; resume with the cursor of the last update received")])
        return self._watch(job_id, after_cursor)

    def _watch(self, job_id: str, cursor: int) -> Iterator[WatchUpdate]:
        while not self.notifier.closed:  # shutting down: the store may be closing too
            version = self.notifier.version(job_id)
            updates = self.updates_after(job_id, cursor)
            for update in updates:
                cursor = update.cursor
                yield update
            if updates:
                continue
            if self.store.get_job(job_id).state.terminal and \
                    cursor >= self.store.max_cursor(job_id):
                return
            if self.notifier.closed:
                return
            self.notifier.wait(job_id, version, WATCH_SAFETY_WAKE_SECONDS)

    def updates_after(self, job_id: str, cursor: int, limit: int = 1000) -> list[WatchUpdate]:
        """Stored history after `cursor` as watch updates, in cursor order."""
        return updates_after(self.store, job_id, cursor, limit)

    # ---- control ----------------------------------------------------------------------------
    def cancel_job(self, job_id: str, reason: str = "") -> Job:
        with self.scheduler.lock:  # never interleaved with a reconcile tick
            return self._cancel_job(job_id, reason)

    def _cancel_job(self, job_id: str, reason: str) -> Job:
        job = self.store.get_job(job_id)
        if job.state.terminal:
            raise Conflict(f"job {job_id} already ended ({job.state.value}); nothing to cancel")
        if job.state == JobState.CANCELLING:
            return job
        job = self.store.set_job_state(
            job_id, JobState.CANCELLING, at=self.clock(), reason="CancelRequested",
            message=reason or "cancel requested",
            expect=[JobState.PENDING, JobState.RUNNING, JobState.PAUSED])
        self.kick()
        return job

    def retry_job(self, job_id: str) -> Job:
        with self.scheduler.lock:
            return self._retry_job(job_id)

    def _retry_job(self, job_id: str) -> Job:
        job = self.store.get_job(job_id)
        check_job(job.state, JobState.RUNNING, f"job {job_id}")
        if job.state not in (JobState.FAILED, JobState.CANCELLED):
            raise Conflict(f"job {job_id} is {job.state.value}; only a FAILED or CANCELLED job "
                           "can be retried")
        now = self.clock()
        rerun: set[str] = set()
        for gate in self.store.list_gates(job_id):
            if gate.state in (GateState.FAILED, GateState.REJECTED):
                self.store.update_gate(job_id, gate.id, at=now, state=GateState.PENDING,
                                       reason="RetryJob", observed=None, message="")
                rerun.add(gate.after_stage)
        for stage in self.store.list_stages(job_id):
            if stage.state in (AttemptState.FAILED, AttemptState.CANCELLED) or stage.id in rerun:
                self.store.update_stage(job_id, stage.id, at=now, state=AttemptState.PENDING,
                                        reason="RetryJob", attempts=0, progress=0.0,
                                        message="re-run by RetryJob")
        job = self.store.set_job_state(job_id, JobState.RUNNING, at=now, reason="RetryJob",
                                       message="retrying failed stages", finished_at=None)
        self.kick()
        return job

    def approve_gate(self, job_id: str, gate_id: str, *, approve: bool, comment: str = "") -> Gate:
        with self.scheduler.lock:
            return self._approve_gate(job_id, gate_id, approve, comment)

    def _approve_gate(self, job_id: str, gate_id: str, approve: bool, comment: str) -> Gate:
        now = self.clock()
        job = self.store.get_job(job_id)
        state = GateState.APPROVED if approve else GateState.REJECTED
        gate = self.store.update_gate(
            job_id, gate_id, at=now, state=state,
            reason="Approved" if approve else "Rejected", expect=[GateState.AWAITING_APPROVAL],
            message=comment or ("approved" if approve else "rejected"))
        if approve:
            self._resume_if_unblocked(job, now, "GateApproved", f"gate {gate_id} approved")
        self.kick()
        return gate

    def _resume_if_unblocked(self, job: Job, now: float, reason: str, message: str) -> None:
        if job.state != JobState.PAUSED:
            return
        if any(g.state == GateState.AWAITING_APPROVAL for g in self.store.list_gates(job.id)):
            return
        if any(awaiting_labels(s) for s in self.store.list_stages(job.id)):
            return
        self.store.set_job_state(job.id, JobState.RUNNING, at=now, reason=reason,
                                 message=message, expect=[JobState.PAUSED])

    # ---- logs -------------------------------------------------------------------------------
    def stage_logs(self, job_id: str, stage_id: str, *, follow: bool) -> Iterator[str]:
        stage = self.store.get_stage(job_id, stage_id)
        attempts = [a for a in self.store.list_attempts(job_id)
                    if a.stage_id == stage_id and a.handle]
        if attempts:
            return self.executor.logs(attempts[-1].handle, follow=follow)
        path = Path(stage.output_dir) / "stage.log"
        if path.exists():
            return iter(path.read_text(errors="replace").splitlines())
        raise NotFound(f"stage {stage_id} of job {job_id} has no logs yet (it has not started)")

    # ---- labels (labeler: import) -----------------------------------------------------------
    def _collect_stage(self, job_id: str, round: int) -> Stage:
        for stage in self.store.list_stages(job_id):
            if stage.kind == "collect" and stage.round == round:
                return stage
        raise NotFound(f"job {job_id} has no collect stage in round {round}")

    def export_samples(self, job_id: str, round: int) -> tuple[str, bytes]:
        stage = self._collect_stage(job_id, round)
        path = Path(stage.output_dir) / "export.jsonl"
        if stage.state != AttemptState.SUCCEEDED or not path.exists():
            raise Conflict(f"round {round} of job {job_id} has no exported samples yet "
                           f"(collect is {stage.state.value})")
        return f"{job_id}-round{round}-export.jsonl", path.read_bytes()

    def import_labels(self, job_id: str, round: int, content: bytes) -> Job:
        with self.scheduler.lock:
            return self._import_labels(job_id, round, content)

    def _import_labels(self, job_id: str, round: int, content: bytes) -> Job:
        from saferlhf.runners.collect.labels import merge_labels, write_labelled
        from saferlhf.runners.common.errors import InvalidInputError

        stage = self._collect_stage(job_id, round)
        if not awaiting_labels(stage):
            raise Conflict(f"round {round} of job {job_id} is not waiting for labels")
        out = Path(stage.output_dir)
        try:
            rows = merge_labels(out / "export.jsonl", content, labels_name="labels")
        except InvalidInputError as exc:
            in_export = bool(exc.file) and Path(str(exc.file)).name == "export.jsonl"
            where = ("export" if in_export else "labels") + (f".{exc.field}" if exc.field else "")
            raise SpecError([FieldViolation(where, str(exc), exc.row)]) from None
        raw_path = Path(stage.config.get("labels_path") or out / "imported_labels.jsonl")
        raw_path.write_bytes(content)
        labelled = write_labelled(rows, out / "labelled.jsonl")
        now = self.clock()
        self.store.update_stage(job_id, stage.id, at=now, result={
            **stage.result, "awaiting_labels": False, "pairs": len(rows),
            "labelled_path": str(labelled)})
        job = self.store.get_job(job_id)
        self._resume_if_unblocked(job, now, "LabelsImported",
                                  f"round {round}: {len(rows)} labelled pairs imported")
        self.kick()
        return self.store.get_job(job_id)

    # ---- runners ----------------------------------------------------------------------------
    def report_events(self, attempt_id: str, token: str, events: list[dict[str, Any]]) -> int:
        try:
            attempt = self.store.get_attempt(attempt_id)
        except NotFound:
            raise Unauthenticated("unknown stage attempt or wrong stage token") from None
        if not token or not attempt.token_hash or not secrets.compare_digest(
                hash_token(token), attempt.token_hash):
            raise Unauthenticated("unknown stage attempt or wrong stage token")
        job = self.store.get_job(attempt.job_id)
        stage = self.store.get_stage(attempt.job_id, attempt.stage_id)
        return len(self.ingestor.ingest(job, stage, attempt, events, "stream"))


def runner_tls_env(settings: Settings) -> dict[str, str]:
    """What local runners need to stream events to a TLS (or mutual-TLS) service: the CA that
    signed its certificate and, under mutual TLS, their client certificate. (Kubernetes stage
    pods get the CA from a Secret instead: executor.stagePods.eventsCaSecret.)"""
    if settings.executor != "local" or not settings.tls_cert:
        return {}
    env = {"SAFERLHF_EVENTS_CA": str(Path(settings.tls_ca or settings.tls_cert).resolve())}
    if settings.runner_tls_cert and settings.runner_tls_key:
        env["SAFERLHF_EVENTS_CERT"] = str(Path(settings.runner_tls_cert).resolve())
        env["SAFERLHF_EVENTS_KEY"] = str(Path(settings.runner_tls_key).resolve())
    return env


def _as_dict(obj: Any) -> dict[str, Any]:
    if obj is None:
        return {}
    if isinstance(obj, dict):
        return dict(obj)
    if hasattr(obj, "model_dump"):
        return dict(obj.model_dump())
    if hasattr(obj, "__dataclass_fields__"):
        return {k: getattr(obj, k) for k in obj.__dataclass_fields__}
    return dict(vars(obj))


def _kubernetes_executor(settings: Settings) -> Executor:
    from saferlhf.service.execution.k8s_job import K8sJobOptions
    from saferlhf.service.execution.kubernetes import KubernetesExecutor

    try:
        options = K8sJobOptions.from_mapping(
            settings.kubernetes_pod_options, namespace=settings.kubernetes_namespace,
            image=settings.kubernetes_image, artifacts_pvc=settings.kubernetes_artifacts_pvc,
            queue_name=settings.kubernetes_queue)
    except (ValueError, TypeError) as exc:
        raise SpecError([FieldViolation("kubernetes_pod_options", str(exc))]) from exc
    try:
        return KubernetesExecutor(options)
    except Exception as exc:  # no kubeconfig / in-cluster config
        raise ServiceError(f"cannot reach the Kubernetes API for the kubernetes executor: "
                           f"{exc}") from exc


def build_app(
    settings: Settings, *, clock: Callable[[], float] | None = None,
    registry: CollectorRegistry | None = None, executor: Executor | None = None,
    store: Store | None = None,
) -> App:
    """The composition: store from `database_url`, executor from `executor` (local default)."""
    Path(settings.state_dir).mkdir(parents=True, exist_ok=True)
    Path(settings.resolved_artifacts_root).mkdir(parents=True, exist_ok=True)
    store = store or open_store(settings.resolved_database_url)
    if executor is None:
        if settings.executor == "local":
            from saferlhf.service.execution.local import LocalExecutor

            executor = LocalExecutor(settings.state_dir, python=settings.runner_python,
                                     omp_threads=settings.runner_omp_threads)
        else:
            executor = _kubernetes_executor(settings)
    return App(settings, store, executor, clock=clock or time.time,
               registry=registry if registry is not None else CollectorRegistry())
