"""Status tracking from watch streams, with a small fake of the API and of `kubernetes.watch`.

kmock's emulator replays objects but sends no live watch events, so watch semantics are tested
here against a scripted fake: ADDED/MODIFIED/DELETED/BOOKMARK bookkeeping of resourceVersion,
410 Gone (as an ERROR event and as an ApiException) → relist, and status derived from the caches.
No real API server's watch cache, timeouts or bookmarks were exercised.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from kubernetes.client.exceptions import ApiException
from saferlhf.service.execution.base import RunState
from saferlhf.service.execution.k8s_job import LABEL_RUN, K8sJobOptions
from saferlhf.service.execution.kubernetes import KubernetesExecutor, ResourceCache
from saferlhf.service.state.types import FailureClass

JOB = "ppo-lag-beaver-r1-a1-8b7c1351"


def _job(rv: str, conditions=(), active=1) -> dict:
    return {"metadata": {"name": JOB, "resourceVersion": rv,
                         "annotations": {"saferlhf.dev/attempt-id": "j/r1/ppo_lag/1"}},
            "spec": {}, "status": {"active": active, "conditions": [
                {"type": t, "status": "True", "reason": r} for t, r in conditions]}}


def _pod(rv: str, phase: str, state: dict) -> dict:
    return {"metadata": {"name": f"{JOB}-0-abcde", "resourceVersion": rv,
                         "labels": {LABEL_RUN: JOB}},
            "status": {"phase": phase, "containerStatuses": [{"name": "runner", "state": state}]}}


class FakeApi:
    """List endpoints returning scripted snapshots; records every call's arguments."""

    def __init__(self) -> None:
        self.snapshots: dict[str, list[dict]] = {}
        self.calls: list[tuple[str, dict]] = []

    def _list(self, kind: str, namespace: str, **kwargs) -> SimpleNamespace:
        self.calls.append((kind, kwargs))
        items, rv = self.snapshots.get(kind, ([], "1"))
        return SimpleNamespace(data=json.dumps({"metadata": {"resourceVersion": rv},
                                                "items": items}).encode())

    def list_namespaced_job(self, namespace, **kw):
        return self._list("jobs", namespace, **kw)

    def list_namespaced_pod(self, namespace, **kw):
        return self._list("pods", namespace, **kw)

    def list_namespaced_event(self, namespace, **kw):
        return self._list("events", namespace, **kw)


class FakeWatch:
    """Replays scripted streams per list function; an Exception item is raised mid-stream."""

    scripts: dict[str, list[list]] = {}
    calls: list[tuple[str, dict]] = []

    def stream(self, func, namespace, **kwargs):
        FakeWatch.calls.append((func.__name__, kwargs))
        queue = FakeWatch.scripts.get(func.__name__, [])
        for item in queue.pop(0) if queue else []:
            if isinstance(item, Exception):
                raise item
            yield {"type": item[0], "raw_object": item[1], "object": None}


@pytest.fixture()
def fake():
    FakeWatch.scripts, FakeWatch.calls = {}, []
    api = FakeApi()
    ex = KubernetesExecutor(K8sJobOptions(namespace="ns"), batch_api=api, core_api=api,
                            clock=lambda: 0.0, watch_factory=FakeWatch)
    return api, ex


def test_watch_resumes_from_the_last_resource_version_seen(fake):
    api, ex = fake
    api.snapshots["jobs"] = ([], "10")
    FakeWatch.scripts["list_namespaced_job"] = [
        [("ADDED", _job("11")), ("MODIFIED", _job("12")),
         ("BOOKMARK", {"metadata": {"resourceVersion": "15"}})],
        [],
    ]
    ex.jobs.watch_once()
    ex.jobs.watch_once()
    versions = [kw["resource_version"] for name, kw in FakeWatch.calls]
    assert versions == ["10", "15"]
    assert ex.jobs.relists == 1 and ex.jobs.get(JOB)["metadata"]["resourceVersion"] == "12"


@pytest.mark.parametrize("gone", [
    ("ERROR", {"kind": "Status", "code": 410, "message": "too old resource version: 10"}),
    ApiException(status=410, reason="Gone"),
], ids=["error-event", "api-exception"])
def test_410_gone_relists_and_the_next_watch_starts_from_the_fresh_list(fake, gone):
    api, ex = fake
    api.snapshots["jobs"] = ([], "10")
    FakeWatch.scripts["list_namespaced_job"] = [[("ADDED", _job("11")), gone], []]
    ex.jobs.watch_once()
    # while the watch was broken the Job finished; the relist sees it at version 30
    assert ex.jobs.relists == 2
    api.snapshots["jobs"] = ([_job("30", [("Complete", "")])], "30")
    ex.jobs.relist()
    ex.jobs.watch_once()
    assert FakeWatch.calls[-1][1]["resource_version"] == "30"
    assert ex.jobs.get(JOB)["metadata"]["resourceVersion"] == "30"


def test_other_watch_errors_are_raised_not_swallowed(fake):
    api, ex = fake
    FakeWatch.scripts["list_namespaced_job"] = [[ApiException(status=403, reason="Forbidden")]]
    with pytest.raises(ApiException) as err:
        ex.jobs.watch_once()
    assert err.value.status == 403


def test_status_follows_watch_events_of_jobs_and_pods(fake):
    api, ex = fake
    FakeWatch.scripts = {
        "list_namespaced_job": [[("ADDED", _job("2"))], [("MODIFIED", _job("5", [
            ("Failed", "BackoffLimitExceeded")], active=0))], [("DELETED", _job("6"))]],
        "list_namespaced_pod": [[("ADDED", _pod("3", "Running", {"running": {}}))], [(
            "MODIFIED", _pod("4", "Failed", {"terminated": {"exitCode": 75, "reason": "Error"}}))],
            []],
        "list_namespaced_event": [[], [], []],
    }
    ex.sync()
    assert ex.synced and ex.poll(JOB).state == RunState.RUNNING
    ex.sync()
    st = ex.poll(JOB)
    assert (st.state, st.failure, st.exit_code) == (RunState.FAILED, FailureClass.TRANSIENT, 75)
    ex.sync()
    # gone from the cache: poll reads the API directly and gets 404
    api.read_namespaced_job = _raise_404
    api.list_namespaced_pod = lambda ns, **kw: SimpleNamespace(data=b'{"items": []}')
    api.list_namespaced_event = lambda ns, **kw: SimpleNamespace(data=b'{"items": []}')
    assert ex.poll(JOB) == st  # deleted after it ended (TTL): its end is remembered
    assert ex.poll("never-submitted").state == RunState.LOST


def _raise_404(*args, **kwargs):
    raise ApiException(status=404, reason="Not Found")


def test_only_events_of_our_jobs_and_their_pods_are_cached(fake):
    api, ex = fake
    ex.jobs.items[JOB] = _job("1")
    cache: ResourceCache = ex.events
    ours = {"metadata": {"name": "e1", "resourceVersion": "7"}, "type": "Warning",
            "involvedObject": {"name": f"{JOB}-0-abcde"}, "reason": "FailedScheduling"}
    theirs = {"metadata": {"name": "e2", "resourceVersion": "8"}, "type": "Warning",
              "involvedObject": {"name": "someone-elses-pod"}}
    cache.apply({"type": "ADDED", "raw_object": ours})
    cache.apply({"type": "ADDED", "raw_object": theirs})
    assert set(cache.items) == {"e1"} and cache.resource_version == "8"


def test_jobs_and_pods_are_listed_with_this_installations_label_selector(fake):
    api, ex = fake
    ex.sync()
    selectors = {kind: kw.get("label_selector") for kind, kw in api.calls}
    assert selectors["jobs"] == selectors["pods"] == (
        "app.kubernetes.io/managed-by=saferlhf,saferlhf.dev/instance=saferlhf")
    assert selectors["events"] is None  # events carry no labels; filtered by involved object


def test_the_event_cache_is_bounded_but_job_and_pod_caches_are_not(fake):
    api, ex = fake
    ex.events.max_items = 3
    ex.jobs.items[JOB] = _job("1")
    for i in range(5):
        ex.events.apply({"type": "ADDED", "raw_object": {
            "metadata": {"name": f"e{i}", "resourceVersion": str(i)},
            "involvedObject": {"name": JOB}}})
        ex.pods.apply({"type": "ADDED", "raw_object": {
            "metadata": {"name": f"p{i}", "resourceVersion": str(i)}}})
    assert list(ex.events.items) == ["e2", "e3", "e4"]
    assert len(ex.pods.items) == 5
