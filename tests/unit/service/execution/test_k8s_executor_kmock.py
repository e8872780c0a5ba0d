"""The Kubernetes executor's API calls, sent by the real `kubernetes` client to kmock's
KubernetesEmulator (an in-memory fake API server on 127.0.0.1).

The emulator is NOT a real cluster: no Job controller creates pods, no scheduler, no kubelet, no
garbage collection; it does not honour label selectors or propagation policies. Tests therefore
drive object status by hand and assert on the requests the executor sent. Watch behaviour
(events, 410 Gone) is tested against a fake watch in test_k8s_executor_watch.py.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from dataclasses import replace

import kmock
import kubernetes
import pytest
from saferlhf.service.execution.base import LaunchSpec, RunState
from saferlhf.service.execution.k8s_job import (
    LABEL_RUN,
    K8sJobOptions,
    build_job,
    build_objects,
    job_name,
)
from saferlhf.service.execution.kubernetes import KubernetesExecutor
from saferlhf.service.state.types import FailureClass, Resources

NS = "stages"
JOBS = kmock.resource("batch", "v1", "jobs")
PODS = kmock.resource("", "v1", "pods")
SERVICES = kmock.resource("", "v1", "services")
SECRETS = kmock.resource("", "v1", "secrets")


class Emulator:
    """KubernetesEmulator on a background event loop, so the sync client can call it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._main())

    async def _main(self) -> None:
        self.done = asyncio.Event()
        async with kmock.KubernetesEmulator() as k, kmock.Server(k) as server:
            self.k = k
            for res in ("batch/v1/jobs", "v1/pods", "v1/services", "v1/secrets", "v1/events"):
                k.resources[res] = {}
            self.url = str(server.url).rstrip("/")
            self.ready.set()
            await self.done.wait()

    def __enter__(self) -> Emulator:
        self.thread.start()
        assert self.ready.wait(10), "kmock did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.done.set)
        self.thread.join(10)

    def call(self, fn):
        """Run a function on the emulator's loop (its object store is not thread-safe)."""
        fut = asyncio.run_coroutine_threadsafe(self._call(fn), self.loop)
        return fut.result(10)

    @staticmethod
    async def _call(fn):
        return fn()


@pytest.fixture()
def emulator() -> Iterator[Emulator]:
    with Emulator() as emu:
        yield emu


def _apis(url: str):
    cfg = kubernetes.client.Configuration()
    cfg.host = url
    client = kubernetes.client.ApiClient(cfg)
    return kubernetes.client.BatchV1Api(client), kubernetes.client.CoreV1Api(client)


def _executor(emu: Emulator, instance: str = "saferlhf", now: float = 0.0) -> KubernetesExecutor:
    batch, core = _apis(emu.url)
    opts = K8sJobOptions(namespace=NS, image="runner:1", artifacts_pvc="arts", instance=instance)
    return KubernetesExecutor(opts, batch_api=batch, core_api=core, clock=lambda: now)


def _spec(attempt: int = 1, nodes: int = 1) -> LaunchSpec:
    return LaunchSpec(
        attempt_id=f"j-1/r1/ppo_lag/{attempt}", job_id="j-1", job_name="beaver", project="p",
        round=1, stage="r1/ppo_lag", kind="ppo_lag", attempt=attempt,
        config_path="/artifacts/p/j-1/r1/ppo_lag/stage.json",
        output_dir="/artifacts/p/j-1/r1/ppo_lag", env={"SAFERLHF_STAGE_TOKEN": "t"},
        resources=Resources(nodes=nodes, nproc_per_node=2 if nodes > 1 else 1),
    )


def _requests(emu: Emulator, method: str, resource=None) -> list:
    return [r for r in emu.call(lambda: list(emu.k))
            if r.method.value == method and (resource is None or r.resource == resource)]


def _set_job_status(emu: Emulator, name: str, status: dict) -> None:
    emu.call(lambda: emu.k.objects[JOBS, NS, name].patch({"status": status}))


def _add_pod(emu: Emulator, spec: LaunchSpec, name: str, status: dict, index: int = 0) -> None:
    _, core = _apis(emu.url)
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "namespace": NS,
                        "labels": {LABEL_RUN: job_name(spec)},
                        "annotations": {"batch.kubernetes.io/job-completion-index": str(index)}},
           "spec": {"containers": [{"name": "runner", "image": "runner:1"}]}}
    core.create_namespaced_pod(NS, pod)
    emu.call(lambda: emu.k.objects[PODS, NS, name].patch({"status": status}))


def test_submit_creates_secret_service_and_indexed_job_then_sets_owners(emulator):
    # kmock assigns no uid; answer the Job create like a real API server does (with a uid)
    emulator.k[kmock.method.POST, JOBS] << (
        lambda req: {**req.data, "metadata": {**req.data["metadata"], "uid": "uid-1"}})
    ex = _executor(emulator)
    spec = _spec(nodes=2)
    handle = ex.submit(spec)
    assert handle == job_name(spec)
    posted = [r.resource for r in _requests(emulator, "POST")]
    assert posted == [SECRETS, SERVICES, JOBS]  # the token Secret exists before the Job
    stored = emulator.call(lambda: emulator.k.objects[JOBS, NS, handle].raw)
    assert stored["spec"] == build_job(spec, ex.options)["spec"]
    assert stored["spec"]["completionMode"] == "Indexed"
    patches = _requests(emulator, "PATCH")
    assert {r.resource for r in patches} == {SECRETS, SERVICES}  # deleted with the Job
    for r in patches:
        (owner,) = r.data["metadata"]["ownerReferences"]
        assert (owner["kind"], owner["name"], owner["uid"]) == ("Job", handle, "uid-1")


def test_submitting_the_same_attempt_twice_gets_409_and_returns_the_same_handle(emulator):
    ex = _executor(emulator)
    first = ex.submit(_spec())
    second = ex.submit(_spec())
    assert first == second
    job_posts = _requests(emulator, "POST", JOBS)
    assert len(job_posts) == 2  # the second create hit 409 Conflict and was adopted
    assert len(emulator.call(lambda: [k for k in emulator.k.objects if k[0] == JOBS])) == 1


def test_resubmitting_after_an_interrupted_submit_refreshes_the_token_secret(emulator):
    ex = _executor(emulator)
    spec = _spec()
    secret = build_objects(spec, ex.options)[0]
    secret["stringData"]["SAFERLHF_STAGE_TOKEN"] = "stale"
    ex.core.create_namespaced_secret(NS, secret)  # the earlier submit died after this
    ex.submit(spec)
    patch = [r for r in _requests(emulator, "PATCH", SECRETS) if "stringData" in r.data][0]
    assert patch.data["stringData"]["SAFERLHF_STAGE_TOKEN"] == "t"


def test_a_name_clash_with_another_attempt_is_refused(emulator):
    ex = _executor(emulator)
    ex.submit(_spec())
    clash = replace(_spec(), attempt_id="someone/else")
    # same generated name only if the hash matched; force it by creating the clash by hand
    job = build_job(clash, ex.options)
    job["metadata"]["name"] = job_name(_spec(attempt=2))
    ex.batch.create_namespaced_job(NS, job)
    with pytest.raises(RuntimeError, match="belongs to attempt 'someone/else'"):
        ex.submit(_spec(attempt=2))


def test_poll_maps_job_and_pod_status_read_directly_from_the_api(emulator):
    ex = _executor(emulator)
    spec = _spec()
    handle = ex.submit(spec)
    assert ex.poll(handle).state == RunState.PENDING
    _add_pod(emulator, spec, f"{handle}-0-abcde", {"phase": "Running", "containerStatuses": [
        {"name": "runner", "state": {"running": {"startedAt": "2026-11-27T10:00:00Z"}}}]})
    assert ex.poll(handle).state == RunState.RUNNING
    _set_job_status(emulator, handle, {"conditions": [
        {"type": "Complete", "status": "True"}]})
    assert ex.poll(handle).state == RunState.SUCCEEDED


def test_oom_killed_pod_fails_the_attempt_with_the_oom_class(emulator):
    ex = _executor(emulator)
    spec = _spec()
    handle = ex.submit(spec)
    _add_pod(emulator, spec, f"{handle}-0-abcde", {"phase": "Failed", "containerStatuses": [
        {"name": "runner", "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}]})
    _set_job_status(emulator, handle, {"conditions": [
        {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]})
    st = ex.poll(handle)
    assert (st.state, st.failure, st.exit_code) == (RunState.FAILED, FailureClass.OOM, 137)


def test_image_pull_backoff_fails_and_deletes_the_stuck_job(emulator):
    ex = _executor(emulator)
    spec = _spec()
    handle = ex.submit(spec)
    _add_pod(emulator, spec, f"{handle}-0-abcde", {"phase": "Pending", "containerStatuses": [
        {"name": "runner", "state": {"waiting": {"reason": "ImagePullBackOff"}}}]})
    st = ex.poll(handle)
    assert (st.state, st.failure) == (RunState.FAILED, FailureClass.IMAGE_PULL)
    assert _requests(emulator, "DELETE", JOBS), "the stuck Job must be deleted"
    assert ex.poll(handle).failure == FailureClass.IMAGE_PULL  # remembered after the delete
    assert _executor(emulator).poll(handle).state == RunState.LOST  # a new process: unknown


def test_cancel_deletes_with_foreground_propagation_and_tolerates_404(emulator):
    ex = _executor(emulator)
    handle = ex.submit(_spec())
    ex.cancel(handle, grace_seconds=7)
    deletes = _requests(emulator, "DELETE", JOBS)
    assert len(deletes) == 1
    assert deletes[0].data["propagationPolicy"] == "Foreground"
    assert deletes[0].data["gracePeriodSeconds"] == 7
    assert len(_requests(emulator, "DELETE", SECRETS)) == 1  # the token goes with it
    ex.cancel(handle)  # already gone: 404 is fine
    assert len(_requests(emulator, "DELETE", JOBS)) == 2
    assert ex.poll(handle).state == RunState.LOST


def test_a_restarted_service_adopts_its_running_jobs_by_labels(emulator):
    before = _executor(emulator)
    handles = {s.attempt_id: before.submit(s) for s in (_spec(1), _spec(2, nodes=2))}
    _executor(emulator, instance="other-install").submit(_spec(3))
    after = _executor(emulator)  # a new process: nothing in memory
    assert after.adopt() == handles
    lists = _requests(emulator, "GET", JOBS)
    assert "app.kubernetes.io/managed-by=saferlhf" in str(lists[-1].params)


def test_logs_come_from_rank_zero_pod_through_the_pods_log_api(emulator):
    ex = _executor(emulator)
    spec = _spec(nodes=2)
    handle = ex.submit(spec)
    _add_pod(emulator, spec, f"{handle}-1-zzzzz", {"phase": "Running"}, index=1)
    _add_pod(emulator, spec, f"{handle}-0-aaaaa", {"phase": "Running"}, index=0)
    emulator.k[kmock.resource("", "v1", "pods"), kmock.subresource("log"),
               kmock.name(f"{handle}-0-aaaaa")] << b"step 1 loss 2.0\nstep 2 loss 1.5\n"
    lines = list(ex.logs(handle, follow=True))
    assert lines == ["step 1 loss 2.0", "step 2 loss 1.5"]
    log_req = [r for r in emulator.call(lambda: list(emulator.k)) if r.subresource == "log"][-1]
    assert log_req.params.get("follow") == "true" and log_req.name == f"{handle}-0-aaaaa"


def test_secret_value_never_appears_in_the_job_sent_to_the_api(emulator):
    ex = _executor(emulator)
    ex.submit(_spec())
    job_post = _requests(emulator, "POST", JOBS)[0]
    assert '"t"' not in json.dumps(job_post.data["spec"])


def test_logs_of_a_container_that_has_not_started_are_empty_not_an_error(emulator):
    ex = _executor(emulator)
    spec = _spec()
    handle = ex.submit(spec)
    _add_pod(emulator, spec, f"{handle}-0-aaaaa", {"phase": "Pending"})
    emulator.k[kmock.resource("", "v1", "pods"), kmock.subresource("log")] << 400 << {
        "kind": "Status", "code": 400, "message": "container is waiting to start"}
    assert list(ex.logs(handle)) == []
