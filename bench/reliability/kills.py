"""Service SIGKILL trials: a job with every stage kind runs under the real service; the service is
killed with SIGKILL at a moment of the job's life and restarted on the same state after a pause
(its runners go on meanwhile); the job must still finish, with every runner event stored once.

Moments are spread uniformly over the life of an uninterrupted run (stratified: trial i of N is
killed at a uniform random fraction in [i, i+1)/N of D, D the job's length re-estimated after every
trial), so every stage and every hand-over between stages gets its share of kills. A kill that
comes after its job ended is recorded and drawn again earlier: it is not a kill trial.
"""

from __future__ import annotations

import random
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from saferlhf.v1 import resources_pb2 as pb

from bench.reliability.service import (
    CHAOS_JOB,
    TERMINAL,
    ServiceProcess,
    attempt_fates,
    audit_events,
    live_attempts,
    processes_under,
    reap,
)


def run_job(root: Path, *, spec: str = CHAOS_JOB, kill_after: float | None = None,
            down_seconds: float = 3.0, timeout: float = 1800.0,
            on_live: Any = None) -> dict[str, Any]:
    """One job under a service killed `kill_after` seconds after the job was created (None:
    never). `on_live(service, job_id, got)` may decide the kill moment instead: the service is
    killed as soon as it returns True. Returns the trial's record."""
    service = ServiceProcess(root / "state")
    started = time.monotonic()
    try:
        service.start()
        job_id = service.create(spec)
        created = time.monotonic()
        snapshot = service.get(job_id)
        killed_at = None
        if kill_after is not None or on_live is not None:
            while True:
                elapsed = time.monotonic() - created
                if kill_after is not None and elapsed >= kill_after:
                    break
                if on_live is not None and on_live(service, job_id, snapshot):
                    break
                time.sleep(0.1 if kill_after is None else max(0.01, min(0.25,
                                                                  kill_after - elapsed)))
                snapshot = service.get(job_id)
            snapshot = service.get(job_id)  # the attempts live right before the kill
            service.kill()
            killed_at = time.monotonic() - created
            time.sleep(down_seconds)
            service.start()
        final = service.wait_terminal(job_id, timeout)
        duration = time.monotonic() - created
        events = audit_events(service, final)
    finally:
        service.stop()
    time.sleep(1.0)
    orphans = processes_under([root])
    reap(orphans)
    live = live_attempts(snapshot) if killed_at is not None else []
    log = service.log_text()
    return {
        "kill_after_seconds": None if killed_at is None else round(killed_at, 2),
        "job_state": pb.JobState.Name(final.job.state)[len("JOB_STATE_"):],
        "job_message": final.job.message,
        "job_seconds": round(duration, 1),
        "ended_before_kill": killed_at is not None and snapshot.job.state in TERMINAL,
        "stages_live_at_kill": sorted({stage for _, stage, _ in live}),
        "attempts_live_at_kill": attempt_fates(final, live),
        "attempts": len(final.attempts),
        "attempts_failed": sorted(f"{a.id}: {a.message}" for a in final.attempts
                                  if a.state == pb.ATTEMPT_STATE_FAILED),
        "events": {k: (len(v) if isinstance(v, list) else v)
                   for k, v in asdict(events).items()},
        "events_lost_keys": events.lost[:20],
        "events_doubled_keys": events.doubled[:20],
        "orphaned_processes": sorted(orphans.values()),
        "service_starts": service.starts,
        "tracebacks_in_service_log": log.count("Traceback"),
        "wall_seconds": round(time.monotonic() - started, 1),
    }


def ok(trial: dict[str, Any]) -> bool:
    """The trial's verdict: finished, nothing lost / doubled / different, no orphan."""
    e = trial["events"]
    return (trial["job_state"] == "SUCCEEDED" and e["lost"] == 0 and e["doubled"] == 0
            and e["unknown"] == 0 and e["differing"] == 0 and not trial["orphaned_processes"]
            and e["in_files"] > 0)


def summary(baseline: dict[str, Any], trials: list[dict[str, Any]]) -> dict[str, Any]:
    fates = [f for t in trials for f in t["attempts_live_at_kill"].values()]
    return {
        "job": "bench/reliability/chaos_job.yaml (2 rounds: sft, reward, cost, ppo_lag, "
               "evaluate, collect)",
        "baseline_job_seconds": baseline["job_seconds"],
        "baseline_ok": ok(baseline),
        "service_kills": sum(1 for t in trials if t["kill_after_seconds"] is not None),
        "trials": len(trials),
        "jobs_finished": sum(1 for t in trials if t["job_state"] == "SUCCEEDED"),
        "trials_passed": sum(1 for t in trials if ok(t)),
        "events_in_files": sum(t["events"]["in_files"] for t in trials),
        "events_lost": sum(t["events"]["lost"] for t in trials),
        "events_doubled": sum(t["events"]["doubled"] for t in trials),
        "events_differing": sum(t["events"]["differing"] for t in trials),
        "attempts_live_at_kill": len(fates),
        "adopted": fates.count("adopted"),
        "rerun": fates.count("rerun"),
        "orphaned_processes": sum(len(t["orphaned_processes"]) for t in trials),
        "tracebacks_in_service_logs": sum(t["tracebacks_in_service_log"] for t in trials),
        "per_trial": trials,
    }


def run_trials(root: Path, n: int, *, seed: int = 13, log: Any = None,
               max_redraws: int = 3) -> dict[str, Any]:
    """The baseline (no kill), then n kill trials that landed while their job was running.

    The job's length moves with the machine's load (94 s vs 60 s on the same shared machine), so
    the life a moment is a fraction of is re-estimated after every trial: the median length of the
    uninterrupted runs so far (the baseline, and each trial's job minus the time the service was
    down). A kill that came after its job had already ended is no kill trial: it is recorded as
    such and the trial is drawn again at 0.7× the moment (at most `max_redraws` times)."""
    import statistics

    baseline = run_job(root / "baseline")
    if log:
        log(f"baseline: {baseline['job_state']} in {baseline['job_seconds']}s")
    lengths = [baseline["job_seconds"]]
    rng = random.Random(seed)
    trials, late = [], []
    for i in range(n):
        fraction = (i + rng.random()) / n
        for attempt in range(max_redraws + 1):
            life = statistics.median(lengths)
            moment = fraction * life * 0.7 ** attempt
            trial = run_job(root / f"trial-{i:02d}-{attempt}", kill_after=moment)
            trial.update(trial=i, fraction_of_life=round(fraction, 3),
                         life_estimate_seconds=round(life, 1))
            if not trial["ended_before_kill"]:
                # minus the 3 s the service was down and ~2 s of its second start-up
                lengths.append(max(1.0, trial["job_seconds"] - 5.0))
                break
            lengths.append(trial["job_seconds"])
            late.append(trial)
        trials.append(trial)
        if log:
            log(f"kill {i + 1}/{n} at {moment:.1f}s ({fraction:.0%} of ~{life:.0f}s): "
                f"{trial['job_state']}, live {trial['stages_live_at_kill']}, fates "
                f"{trial['attempts_live_at_kill']}, lost {trial['events']['lost']}, doubled "
                f"{trial['events']['doubled']}, orphans {len(trial['orphaned_processes'])}")
    out = summary(baseline, trials)
    out["kills_after_the_job_had_ended"] = len(late)
    out["kills_landed_while_running"] = sum(1 for t in trials if not t["ended_before_kill"])
    out["late_kills"] = [{k: t[k] for k in ("trial", "kill_after_seconds", "job_seconds",
                                             "job_state")} for t in late]
    return out
