"""The reconcile loop (DESIGN §2, §7): every tick moves each live job one step from stored state.

A tick, per job (oldest first):
1. PENDING → RUNNING; CANCELLING: cancel live attempts, and CANCELLED once none is left;
2. poll live attempts: finished ones are gap-filled from events.jsonl and classified; failures are
   retried with exponential backoff while the store-counted budget lasts; silent ones are HUNG;
3. gates after a succeeded stage are evaluated (fail → job FAILED, pause → job PAUSED,
   escalate → the escalation branch runs, or is skipped as not needed when the gate passes; the
   job's `Escalation` condition says which and why);
4. the job's outcome: SUCCEEDED, FAILED (once nothing of it still runs), PAUSED;
then launches ready stages of RUNNING jobs (dependencies succeeded, gates open, backoff over) up to
`max_concurrent_stages` in all. All time comes from the injected clock, so tests jump time.

Everything is re-derived from the store each tick, so a restarted service simply continues:
`recover()` re-attaches live attempts to the executor's handles and fills event gaps first.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import secrets
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from saferlhf.runners.common.judge_config import secret_env_of
from saferlhf.service.errors import Unavailable
from saferlhf.service.events import EventIngestor
from saferlhf.service.execution.base import Executor, LaunchSpec, RunState, RunStatus
from saferlhf.service.scheduler import gates as gate_rules
from saferlhf.service.scheduler.launch import (
    DONE,
    awaiting_labels,
    not_needed,
    ready_stages,
    resources_of,
    write_stage_config,
)
from saferlhf.service.scheduler.repair import repairs
from saferlhf.service.scheduler.retry import decide
from saferlhf.service.scheduler.stall import is_hung, past_deadline
from saferlhf.service.state.transitions import GATE_OPEN
from saferlhf.service.state.types import (
    ESCALATE,
    Attempt,
    AttemptState,
    FailureClass,
    Gate,
    GateState,
    Job,
    JobState,
    Stage,
)
from saferlhf.service.store.base import ACTIVE_ATTEMPT_STATES, Store

log = logging.getLogger(__name__)

class Clock(Protocol):
    def __call__(self) -> float: ...


class SchedulerMetrics(Protocol):
    def attempt_finished(self, kind: str, outcome: str, duration_seconds: float | None) -> None:
        ...

    def retry(self, kind: str, reason: str) -> None: ...

    def job_finished(self, job_id: str, project: str, state: str, now: float) -> None: ...

    def sweep(self, now: float) -> int: ...


@dataclass(frozen=True)
class SchedulerConfig:
    max_concurrent_stages: int = 1
    stall_minutes: float = 30.0
    cancel_grace_seconds: float = 10.0
    runner_env: Mapping[str, str] | None = None  # extra env for every attempt (events address…)
    image: str = ""


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Scheduler:
    def __init__(
        self, store: Store, executor: Executor, clock: Clock, ingestor: EventIngestor,
        config: SchedulerConfig, metrics: SchedulerMetrics | None = None,
        events_address: Callable[[], str | None] = lambda: None,
    ) -> None:
        self.store = store
        self.executor = executor
        self.clock = clock
        self.ingestor = ingestor
        self.config = config
        self.metrics = metrics
        self.events_address = events_address
        self.lock = threading.RLock()  # one reconcile at a time (loop thread and API calls)
        self._cancel_sent: dict[str, float] = {}  # handle -> when this process last cancelled it

    # ---- recovery ---------------------------------------------------------------------------
    def recover(self) -> None:
        """After a restart: re-attach live attempts to the executor's handles, then ingest the
        events the service missed while it was away."""
        with self.lock:
            known = self.executor.adopt()
            now = self.clock()
            for attempt in self.store.attempts_in_states([AttemptState.PENDING]):
                handle = known.get(attempt.id)
                if handle:
                    # Submitted, then the service died before storing it: the runner runs with
                    # the token stored with this attempt. Re-submitting would hand the executor
                    # (idempotent on the attempt id) a new token the running runner never gets,
                    # and the service would refuse its event stream.
                    self.store.update_attempt(attempt.id, at=now, state=AttemptState.QUEUED,
                                              reason="Adopted", handle=handle)
                    log.info("adopted %s, submitted before the restart (handle %s)",
                             attempt.id, handle)
            for attempt in self.store.attempts_in_states(ACTIVE_ATTEMPT_STATES):
                handle = known.get(attempt.id)
                if handle and handle != attempt.handle:
                    attempt = self.store.update_attempt(attempt.id, at=now, handle=handle)
                job = self.store.get_job(attempt.job_id)
                stage = self.store.get_stage(attempt.job_id, attempt.stage_id)
                self.ingestor.fill_from_file(job, stage, attempt)
                log.info("adopted %s (handle %s)", attempt.id, attempt.handle or "none")

    # ---- the tick ---------------------------------------------------------------------------
    def tick(self) -> None:
        with self.lock:
            now = self.clock()
            jobs = self.store.active_jobs()
            for job in jobs:
                try:
                    self._reconcile(job, now)
                except Unavailable:
                    raise  # the store is away: no job can move; the next tick tries again
                except Exception:  # one broken job must not stop the others
                    log.exception("reconciling job %s failed", job.id)
            self._launch_ready(now)
            if self.metrics is not None:
                self.metrics.sweep(now)

    def _reconcile(self, job: Job, now: float) -> None:
        if job.state == JobState.PENDING:
            job = self.store.set_job_state(job.id, JobState.RUNNING, at=now, reason="Started")
        attempts = self.store.list_attempts(job.id)
        if job.state == JobState.CANCELLING:
            self._reconcile_cancel(job, attempts, now)
            return
        listed = self.store.list_stages(job.id)
        stages = {s.id: s for s in listed}
        polled = False
        for attempt in attempts:
            if attempt.state in ACTIVE_ATTEMPT_STATES:
                self._poll(job, stages[attempt.stage_id], attempt, now)
                polled = True
        if polled:  # polling may have changed the job, its stages and attempts: read them again
            job = self.store.get_job(job.id)
            listed, attempts = self.store.list_stages(job.id), self.store.list_attempts(job.id)
        if self._repair(job, listed, attempts, now):
            job = self.store.get_job(job.id)
            listed, attempts = self.store.list_stages(job.id), self.store.list_attempts(job.id)
        # Nothing polled, nothing changed: a queued job is settled as read (a tick over hundreds
        # of queued jobs otherwise decodes every stage twice).
        self._settle(job, listed, attempts, now)

    # ---- polling ----------------------------------------------------------------------------
    def _poll(self, job: Job, stage: Stage, attempt: Attempt, now: float) -> None:
        if not attempt.handle:
            return  # created but never submitted: the launch step resubmits it
        status = self.executor.poll(attempt.handle)
        if status.state == RunState.PENDING:
            return
        if status.state == RunState.RUNNING:
            if attempt.state == AttemptState.QUEUED:
                attempt = self.store.update_attempt(attempt.id, at=now,
                                                    state=AttemptState.RUNNING,
                                                    reason="Started", started_at=now)
                self.store.update_stage(job.id, stage.id, at=now, state=AttemptState.RUNNING,
                                        reason="Started")
            stall = stage.stall_minutes or self.config.stall_minutes
            # No stream to the service (or a silent one): the file is the runner's voice.
            no_stream = self.events_address() is None
            if (no_stream or is_hung(attempt, now, stall)) and \
                    self.ingestor.fill_from_file(job, stage, attempt):
                attempt = self.store.get_attempt(attempt.id)
            if attempt.failure in (FailureClass.HUNG, FailureClass.DEADLINE):
                self._cancel(attempt.handle, now)  # again after the grace, or after a restart
            elif past_deadline(attempt, now, stage.timeout_minutes):
                self._cancel(attempt.handle, now)
                self.store.update_attempt(
                    attempt.id, at=now, failure=FailureClass.DEADLINE,
                    message=f"ran longer than timeout_minutes={stage.timeout_minutes:g}: "
                            "cancelled")
            elif is_hung(attempt, now, stall):
                self._cancel(attempt.handle, now)
                self.store.update_attempt(
                    attempt.id, at=now, failure=FailureClass.HUNG,
                    message=f"no event for {stall:g} minutes: cancelled as hung")
            return
        self._finish(job, stage, attempt, status, now)

    def _finish(self, job: Job, stage: Stage, attempt: Attempt, status: RunStatus,
                now: float) -> None:
        self.ingestor.fill_from_file(job, stage, attempt)
        began = attempt.started_at if attempt.started_at is not None else max(
            attempt.created_at, attempt.not_before or 0.0)  # never seen RUNNING: since submit
        duration = max(0.0, now - began)
        # Cancelled by us as HUNG or past its DEADLINE: a clean exit after SIGTERM (checkpoint
        # written) is still that failure, to be retried.
        decided_here = attempt.failure in (FailureClass.HUNG, FailureClass.DEADLINE)
        if status.state == RunState.SUCCEEDED and decided_here:
            status = RunStatus(RunState.FAILED, status.exit_code, attempt.failure)
        if status.state == RunState.SUCCEEDED:
            self.store.update_attempt(attempt.id, at=now, state=AttemptState.SUCCEEDED,
                                      reason="Succeeded", exit_code=status.exit_code,
                                      finished_at=now)
            if self.metrics is not None:
                self.metrics.attempt_finished(stage.kind, "succeeded", duration)
            self._stage_succeeded(job, stage, now)
            return
        failure = attempt.failure if attempt.failure != FailureClass.NONE else status.failure
        if failure == FailureClass.NONE:
            failure = FailureClass.UNKNOWN
        if status.state == RunState.LOST:
            failure, message = FailureClass.UNKNOWN, status.message or "the executor lost it"
        else:
            message = attempt.message if decided_here else status.message
        self.store.update_attempt(attempt.id, at=now, state=AttemptState.FAILED,
                                  reason=failure.value, exit_code=status.exit_code,
                                  failure=failure, message=message, finished_at=now)
        if self.metrics is not None:
            self.metrics.attempt_finished(stage.kind, failure.value.lower(), duration)
        self._stage_after_failure(job, stage, attempt, failure, message, now)

    def _stage_succeeded(self, job: Job, stage: Stage, now: float) -> None:
        """The stage's attempt succeeded (and is stored so): the stage, then its gates."""
        stage = self.store.update_stage(job.id, stage.id, at=now, state=AttemptState.SUCCEEDED,
                                        reason="Succeeded", result=self._read_result(stage),
                                        progress=1.0)
        self._evaluate_gates(job, stage, now)

    def _stage_after_failure(self, job: Job, stage: Stage, attempt: Attempt,
                             failure: FailureClass, message: str, now: float) -> None:
        """The stage's attempt failed (and is stored so): a retry attempt, or the stage fails."""
        decision = decide(stage, failure)
        if decision.retry:
            number = self.store.next_attempt_number(job.id, stage.id)
            retry = Attempt(
                id=f"{job.id}/{stage.id}/{number}", job_id=job.id,
                stage_id=stage.id, number=number, created_at=now,
                not_before=now + decision.delay_seconds,
                message=f"retry after {failure.value}: {message}",
            )
            self.store.add_attempt(retry)
            self.store.update_stage(
                job.id, stage.id, at=now, state=AttemptState.PENDING,
                reason=f"Retry{failure.value.title()}",
                message=f"attempt {attempt.number} failed ({failure.value}: {message}); "
                        f"retrying in {decision.delay_seconds:g}s")
            if self.metrics is not None:
                self.metrics.retry(stage.kind, failure.value)
        else:
            self.store.update_stage(job.id, stage.id, at=now, state=AttemptState.FAILED,
                                    reason=failure.value,
                                    message=f"attempt {attempt.number}: {message}; "
                                            f"{decision.reason}")

    @staticmethod
    def _read_result(stage: Stage) -> dict[str, Any]:
        path = Path(stage.output_dir) / "result.json"
        try:
            loaded = json.loads(path.read_text())
        except (OSError, ValueError):
            return dict(stage.result)
        return loaded if isinstance(loaded, dict) else {"value": loaded}

    # ---- crash repairs ----------------------------------------------------------------------
    def _repair(self, job: Job, stages: list[Stage], attempts: list[Attempt],
                now: float) -> bool:
        """Finish what a service killed between two writes left half-done (scheduler.repair)."""
        if job.state not in (JobState.RUNNING, JobState.PAUSED):
            return False
        done = any(s.state in (AttemptState.SUCCEEDED, AttemptState.SKIPPED) for s in stages)
        fixes = repairs(stages, attempts, self.store.list_gates(job.id) if done else [])
        for fix in fixes:
            stage, attempt = fix.stage, fix.attempt
            log.warning("job %s: repairing %s of %s after an interrupted update (%s)", job.id,
                        fix.action, stage.id, attempt.id if attempt else "no attempt")
            if fix.action == "state":
                assert fix.to is not None
                self.store.update_stage(job.id, stage.id, at=now, state=fix.to,
                                        reason="Recovered",
                                        message=f"attempt {attempt.number}" if attempt else "")
            elif fix.action == "gates":
                if stage.state == AttemptState.SKIPPED:
                    self._pass_gates_of_skipped(job, stage, now)
                else:
                    self._evaluate_gates(job, stage, now)
            elif attempt is not None and attempt.state == AttemptState.SUCCEEDED:
                self._stage_succeeded(job, stage, now)
            elif attempt is not None:
                failure = attempt.failure if attempt.failure != FailureClass.NONE \
                    else FailureClass.UNKNOWN
                self._stage_after_failure(job, stage, attempt, failure, attempt.message, now)
        return bool(fixes)

    # ---- gates and outcomes -----------------------------------------------------------------
    def _evaluate_gates(self, job: Job, stage: Stage, now: float) -> None:
        latest = self.store.latest_metrics(job.id).get(stage.id, {})
        for gate in self.store.list_gates(job.id):
            if gate.after_stage != stage.id or gate.state != GateState.PENDING:
                continue
            outcome = gate_rules.evaluate(gate, stage.result, latest)
            reason = {GateState.PASSED: "GatePassed", GateState.FAILED: "GateFailed",
                      GateState.AWAITING_APPROVAL: "GateAwaitingApproval",
                      GateState.ESCALATED: "GateEscalated"}[outcome.state]
            self.store.update_gate(job.id, gate.id, at=now, state=outcome.state, reason=reason,
                                   observed=outcome.observed, message=outcome.message)
            if gate.on_fail == ESCALATE:
                self._note_escalation(job, gate, outcome, now)

    def _note_escalation(self, job: Job, gate: Gate, outcome: gate_rules.GateOutcome,
                         now: float) -> None:
        """The job's `Escalation` condition: which branch runs after the screening evaluation,
        and why (shown by Get/Watch and the CLI)."""
        stages = self.store.list_stages(job.id)
        branch = [s.id for s in stages if gate.after_stage in _ancestors(s, stages)]
        if outcome.state == GateState.ESCALATED:
            text = (f"escalated: {outcome.message} after {gate.after_stage}, so "
                    f"{', '.join(branch)} run from the offline policy")
        elif outcome.state == GateState.PASSED:
            text = (f"not needed: {outcome.message} after {gate.after_stage}, so the offline "
                    f"policy is kept and {', '.join(branch)} are skipped")
        else:
            text = f"undecided: {outcome.message}; the job fails (retry after fixing it)"
        current = self.store.get_job(job.id)
        self.store.update_job(job.id, at=now, conditions={**current.conditions,
                                                          "Escalation": text})

    def _settle(self, job: Job, stages: list[Stage], attempts: list[Attempt], now: float) -> None:
        """Decide the job's state from its stages, attempts (as read after polling) and gates."""
        if job.state not in (JobState.RUNNING, JobState.PAUSED):
            return
        gates = self.store.list_gates(job.id)
        live = [a for a in attempts if a.state in ACTIVE_ATTEMPT_STATES]
        failed = [s for s in stages if s.state == AttemptState.FAILED]
        closed = [g for g in gates if g.state in (GateState.FAILED, GateState.REJECTED)]
        if failed or closed:
            if live:
                return  # let running siblings finish; nothing new starts (see _ready)
            if failed:
                why = _failure_messages(self.store, job.id)
                reason, message = "StageFailed", "; ".join(
                    f"{s.id} failed: {why.get(s.id, '')}" for s in failed)
            else:
                g = closed[0]
                reason = "GateRejected" if g.state == GateState.REJECTED else "GateFailed"
                message = f"gate {g.id} after {g.after_stage}: {g.message}"
            self._end(job, JobState.FAILED, now, reason, message)
            return
        if all(s.state in DONE for s in stages) and all(g.state in GATE_OPEN for g in gates) \
                and not any(awaiting_labels(s) for s in stages):
            self._end(job, JobState.SUCCEEDED, now, "Succeeded", "all stages succeeded")
            return
        waiting = [g for g in gates if g.state == GateState.AWAITING_APPROVAL]
        labels = [s for s in stages if awaiting_labels(s)]
        if job.state == JobState.RUNNING and (waiting or labels):
            if waiting:
                g = waiting[0]
                self.store.set_job_state(job.id, JobState.PAUSED, at=now,
                                         reason="GateAwaitingApproval",
                                         message=f"gate {g.id}: {g.message}; approve or reject it")
            else:
                self.store.set_job_state(
                    job.id, JobState.PAUSED, at=now, reason="AWAITING_LABELS",
                    message=f"round {labels[0].round}: export the samples, label them and "
                            "import the labels")
            return
        pending = [s for s in stages if s.state == AttemptState.PENDING]
        if job.state == JobState.RUNNING and pending and not live and not ready_stages(
                stages, gates, self.store.list_attempts(job.id), float("inf")) \
                and not not_needed(stages, gates):
            # Nothing runs, nothing waits for a person, and nothing can ever start: say so
            # instead of running forever (a plan whose dependencies cannot be met).
            self._end(job, JobState.FAILED, now, "Stuck",
                      "stages that can never start: " + ", ".join(s.id for s in pending))

    def _end(self, job: Job, state: JobState, now: float, reason: str, message: str) -> None:
        self.store.set_job_state(job.id, state, at=now, reason=reason, message=message)
        if self.metrics is not None:
            self.metrics.job_finished(job.id, job.project, state.value, now)

    # ---- cancel -----------------------------------------------------------------------------
    def _reconcile_cancel(self, job: Job, attempts: list[Attempt], now: float) -> None:
        live = False
        for attempt in attempts:
            if attempt.state == AttemptState.PENDING or (
                    attempt.state in ACTIVE_ATTEMPT_STATES and not attempt.handle):
                self.store.update_attempt(attempt.id, at=now, state=AttemptState.CANCELLED,
                                          reason="Cancelled", finished_at=now)
                continue
            if attempt.state not in ACTIVE_ATTEMPT_STATES:
                continue
            status = self.executor.poll(attempt.handle)
            if status.state in (RunState.SUCCEEDED, RunState.FAILED, RunState.LOST):
                self.ingestor.fill_from_file(job, self.store.get_stage(job.id, attempt.stage_id),
                                             attempt)
                self.store.update_attempt(
                    attempt.id, at=now, state=AttemptState.CANCELLED, reason="Cancelled",
                    exit_code=status.exit_code, finished_at=now,
                    failure=FailureClass.KILLED if status.state == RunState.FAILED
                    else FailureClass.NONE, message=status.message)
                if self.metrics is not None:
                    began = attempt.started_at or attempt.created_at
                    self.metrics.attempt_finished(
                        self.store.get_stage(job.id, attempt.stage_id).kind, "cancelled",
                        max(0.0, now - began))
                continue
            live = True
            self._cancel(attempt.handle, now)
        if live:
            return
        for stage in self.store.list_stages(job.id):
            if not stage.state.terminal:
                self.store.update_stage(job.id, stage.id, at=now, state=AttemptState.CANCELLED,
                                        reason="Cancelled")
        self._end(job, JobState.CANCELLED, now, "Cancelled", job.message or "cancelled")

    def _cancel(self, handle: str, now: float) -> None:
        """Ask the executor to stop an attempt: once, then again each time the grace has passed
        (a restarted service repeats it at once; the executor escalates to SIGKILL)."""
        sent = self._cancel_sent.get(handle)
        if sent is None or now - sent >= self.config.cancel_grace_seconds:
            self.executor.cancel(handle, self.config.cancel_grace_seconds)
            self._cancel_sent[handle] = now

    # ---- launching --------------------------------------------------------------------------
    def _launch_ready(self, now: float) -> None:
        running = len(self.store.attempts_in_states(ACTIVE_ATTEMPT_STATES))
        capacity = self.config.max_concurrent_stages - running
        for job in self.store.active_jobs():
            if job.state != JobState.RUNNING:
                continue
            self._skip_not_needed(job, now)
            while True:  # skipped stages (`use:`) are done at once, and may unblock others
                ready = self._ready(job, now)
                skips = [stage for stage, _ in ready if stage.skipped_with is not None]
                for stage in skips:
                    self.store.update_stage(job.id, stage.id, at=now, state=AttemptState.SKIPPED,
                                            reason="Skipped",
                                            message=f"using {stage.skipped_with}")
                    self._pass_gates_of_skipped(job, stage, now)
                if not skips:
                    break
            for stage, pending in ready:
                if capacity <= 0:
                    return
                self._launch(job, stage, pending, now)
                capacity -= 1

    def _skip_not_needed(self, job: Job, now: float) -> None:
        """SKIPPED, without running: the escalation branch after an `escalate` gate that passed
        (and any gate after those stages, which then has nothing to compare)."""
        gates = self.store.list_gates(job.id)
        for stage, gate in not_needed(self.store.list_stages(job.id), gates):
            self.store.update_stage(
                job.id, stage.id, at=now, state=AttemptState.SKIPPED, reason="NotNeeded",
                message=f"not needed: gate {gate.id} passed ({gate.message}), so the policy "
                        f"evaluated by {gate.after_stage} is kept")
            for after in gates:
                if after.after_stage == stage.id and after.state == GateState.PENDING:
                    self.store.update_gate(
                        job.id, after.id, at=now, state=GateState.PASSED,
                        reason="GateNotEvaluated",
                        message=f"not evaluated: {stage.id} was not needed")

    def _pass_gates_of_skipped(self, job: Job, stage: Stage, now: float) -> None:
        for gate in self.store.list_gates(job.id):
            if gate.after_stage == stage.id and gate.state == GateState.PENDING:
                self.store.update_gate(  # nothing ran, so nothing to compare
                    job.id, gate.id, at=now, state=GateState.PASSED,
                    reason="GateNotEvaluated",
                    message=f"not evaluated: {stage.id} did not run")

    def _ready(self, job: Job, now: float) -> list[tuple[Stage, Attempt | None]]:
        return ready_stages(self.store.list_stages(job.id), self.store.list_gates(job.id),
                            self.store.list_attempts(job.id), now)

    def _launch(self, job: Job, stage: Stage, attempt: Attempt | None, now: float) -> None:
        if attempt is None:
            number = self.store.next_attempt_number(job.id, stage.id)
            attempt = self.store.add_attempt(Attempt(
                id=f"{job.id}/{stage.id}/{number}", job_id=job.id, stage_id=stage.id,
                number=number, created_at=now))
        token = secrets.token_urlsafe(32)
        attempt = self.store.update_attempt(attempt.id, at=now, token_hash=hash_token(token))
        env = dict(self.config.runner_env or {})
        env["SAFERLHF_STAGE_TOKEN"] = token
        address = self.events_address()
        if address:
            env["SAFERLHF_EVENTS_ADDR"] = address
        try:
            config_path = write_stage_config(stage)
            spec = LaunchSpec(
                attempt_id=attempt.id, job_id=job.id, job_name=job.name, project=job.project,
                round=stage.round, stage=stage.id, kind=stage.kind, attempt=attempt.number,
                config_path=str(config_path), output_dir=str(config_path.parent), env=env,
                secret_env=secret_env_of(stage.config),
                resources=resources_of(stage.resources), image=self.config.image,
            )
            handle = self.executor.submit(spec)
        except Exception as exc:  # an executor error is a transient failure of this attempt
            failure, message = submit_failure(exc, stage.output_dir)
            if failure == FailureClass.STORAGE:  # expected and explained: no traceback
                log.warning("cannot start %s: %s", attempt.id, message)
            else:
                log.exception("submitting %s failed", attempt.id)
            failed = replace(attempt, state=AttemptState.QUEUED, handle="")
            self._finish(job, stage, failed, RunStatus(RunState.FAILED, None, failure, message),
                         now)
            return
        self.store.update_attempt(attempt.id, at=now, state=AttemptState.QUEUED,
                                  reason="Submitted", handle=handle)
        self.store.update_stage(job.id, stage.id, at=now, state=AttemptState.QUEUED,
                                reason="Submitted", message=f"attempt {attempt.number}")


def _ancestors(stage: Stage, stages: list[Stage]) -> set[str]:
    """Every stage id `stage` depends on, directly or through others."""
    by_id = {s.id: s for s in stages}
    seen: set[str] = set()
    todo = list(stage.depends_on)
    while todo:
        current = todo.pop()
        if current not in seen:
            seen.add(current)
            todo.extend(by_id[current].depends_on if current in by_id else ())
    return seen


_STORAGE_ERRNOS = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded",
                   errno.EROFS: "read-only file system", errno.EACCES: "permission denied"}


def submit_failure(exc: Exception, output_dir: str) -> tuple[FailureClass, str]:
    """A failed launch: a full or unwritable artifacts folder (stage.json, stage.log cannot be
    written) is STORAGE with a message saying so; anything else TRANSIENT."""
    if isinstance(exc, OSError) and exc.errno in _STORAGE_ERRNOS:
        return FailureClass.STORAGE, (
            f"cannot start the stage: {_STORAGE_ERRNOS[exc.errno]} writing "
            f"{exc.filename or output_dir}; free space or fix the artifacts folder's permissions")
    return FailureClass.TRANSIENT, f"submit failed: {exc}"


def _failure_messages(store: Store, job_id: str) -> dict[str, str]:
    """stage id → the message of its latest move to FAILED."""
    out = {}
    for _, t in store.transitions(job_id):
        if t.to_state == AttemptState.FAILED.value and "#" not in t.subject:
            out[t.subject] = t.message
    return out
