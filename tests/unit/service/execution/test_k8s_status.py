"""Mapping Job/Pod/Event objects to RunStatus and FailureClass.

The objects are hand-written in the shape the Kubernetes API returns (camelCase JSON); they were
not captured from a real cluster.
"""

from __future__ import annotations

from saferlhf.service.execution.base import RunState
from saferlhf.service.execution.k8s_status import job_status
from saferlhf.service.state.types import FailureClass

T0 = "2026-11-27T10:00:00Z"
T0_UNIX = 1795773600.0


def _job(conditions=(), suspend=False, active=0):
    return {
        "metadata": {"name": "sft-x-r1-a1-abc"},
        "spec": {"suspend": suspend},
        "status": {"active": active, "conditions": [
            {"type": t, "status": "True", "reason": r, "message": m} for t, r, m in conditions
        ]},
    }


def _pod(phase="Running", terminated=None, waiting=None, reason=None, conditions=()):
    state = {}
    if terminated:
        state["terminated"] = terminated
    if waiting:
        state["waiting"] = waiting
    if not state:
        state["running"] = {"startedAt": T0}
    status = {"phase": phase, "containerStatuses": [{"name": "runner", "state": state}],
              "conditions": list(conditions)}
    if reason:
        status["reason"] = reason
        status["message"] = "The node was low on resource: memory."
    return {"metadata": {"name": "sft-x-r1-a1-abc-0-xyz"}, "status": status}


def test_complete_job_is_succeeded():
    assert job_status(_job([("Complete", "", "")]), []).state == RunState.SUCCEEDED


def test_deadline_exceeded_maps_to_deadline():
    st = job_status(_job([("Failed", "DeadlineExceeded", "Job was active longer")]), [])
    assert (st.state, st.failure) == (RunState.FAILED, FailureClass.DEADLINE)


def test_oom_killed_container_maps_to_oom_with_a_hint():
    pod = _pod("Failed", terminated={"exitCode": 137, "reason": "OOMKilled"})
    st = job_status(_job([("Failed", "BackoffLimitExceeded", "")]), [pod])
    assert (st.state, st.failure, st.exit_code) == (RunState.FAILED, FailureClass.OOM, 137)
    assert "resources.memory" in st.message


def test_evicted_pod_is_a_transient_failure():
    st = job_status(_job([("Failed", "BackoffLimitExceeded", "")]),
                    [_pod("Failed", reason="Evicted")])
    assert (st.state, st.failure) == (RunState.FAILED, FailureClass.TRANSIENT)
    assert "Evicted" in st.message


def test_runner_exit_codes_follow_the_runner_contract():
    for code, cls in ((2, FailureClass.INVALID), (75, FailureClass.TRANSIENT),
                      (1, FailureClass.UNKNOWN)):
        pod = _pod("Failed", terminated={"exitCode": code, "reason": "Error"})
        st = job_status(_job([("Failed", "BackoffLimitExceeded", "")]), [pod])
        assert (st.failure, st.exit_code) == (cls, code)


def test_the_failing_rank_is_reported_not_the_peer_that_was_killed_after_it():
    killed = _pod("Failed", terminated={"exitCode": 143, "reason": "Error"})
    oom = _pod("Failed", terminated={"exitCode": 137, "reason": "OOMKilled"})
    st = job_status(_job([("Failed", "BackoffLimitExceeded", "")]), [killed, oom])
    assert st.failure == FailureClass.OOM


def test_a_failed_rank_fails_the_attempt_before_the_job_condition_arrives():
    pod = _pod("Failed", terminated={"exitCode": 2, "reason": "Error"})
    st = job_status(_job(active=1), [pod, _pod()])
    assert (st.state, st.failure) == (RunState.FAILED, FailureClass.INVALID)


def test_image_pull_backoff_is_a_permanent_image_pull_failure():
    pod = _pod("Pending", waiting={"reason": "ImagePullBackOff", "message": "not found"})
    st = job_status(_job(active=1), [pod])
    assert (st.state, st.failure) == (RunState.FAILED, FailureClass.IMAGE_PULL)
    assert not st.failure.retryable


def test_first_err_image_pull_is_still_pending_with_the_reason_shown():
    pod = _pod("Pending", waiting={"reason": "ErrImagePull", "message": "timeout"})
    st = job_status(_job(active=1), [pod])
    assert st.state == RunState.PENDING and "ErrImagePull" in st.message


def test_unschedulable_pod_is_pending_until_the_grace_then_fails():
    cond = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
            "message": "0/3 nodes have enough nvidia.com/gpu", "lastTransitionTime": T0}
    pod = _pod("Pending", conditions=[cond])
    pod["status"]["containerStatuses"] = []
    early = job_status(_job(active=1), [pod], now=T0_UNIX + 60, unschedulable_grace_seconds=600)
    late = job_status(_job(active=1), [pod], now=T0_UNIX + 601, unschedulable_grace_seconds=600)
    assert early.state == RunState.PENDING and "nvidia.com/gpu" in early.message
    assert (late.state, late.failure) == (RunState.FAILED, FailureClass.UNSCHEDULABLE)


def test_suspended_job_waits_for_kueue_admission():
    st = job_status(_job(suspend=True), [])
    assert st.state == RunState.PENDING and "Kueue" in st.message


def test_running_pod_means_running_and_missing_job_means_lost():
    assert job_status(_job(active=1), [_pod()]).state == RunState.RUNNING
    assert job_status(None, []).state == RunState.LOST


def test_pending_job_shows_the_newest_warning_event():
    events = [
        {"type": "Warning", "reason": "FailedMount", "message": "old",
         "lastTimestamp": "2026-11-27T09:00:00Z"},
        {"type": "Warning", "reason": "FailedCreate", "message": "quota exceeded",
         "lastTimestamp": "2026-11-27T10:00:00Z"},
        {"type": "Normal", "reason": "Scheduled", "message": "ok",
         "lastTimestamp": "2026-11-27T11:00:00Z"},
    ]
    st = job_status(_job(), [], events)
    assert st.state == RunState.PENDING and st.message == "FailedCreate: quota exceeded"
