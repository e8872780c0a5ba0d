"""The Kubernetes executor (DESIGN §10): a batch/v1 Job per stage attempt.

The only module that imports the `kubernetes` client. Objects come from the pure builder
(`k8s_job.py`); their state is mapped to `RunStatus` by the pure `k8s_status.py`.

- submit: Secret (stage token) → headless Service (multi-node) → Job, then the Secret and Service
  get an ownerReference to the Job so Kubernetes deletes them with it. 409 on create = already
  there: the Job is checked to carry the same attempt id and adopted (idempotent submit).
- status: three caches (Jobs, Pods, Events) fed by list+watch with resourceVersion bookkeeping;
  410 Gone → relist. Until the caches have synced (or when the watch threads aren't started),
  `poll` reads the objects directly.
- cancel: delete with propagationPolicy Foreground (pods go first); 404 = already gone.
- adopt: after a restart, list Jobs by this installation's labels.
- logs: the pods/log API of rank 0's pod, followed if asked.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from typing import Any

import kubernetes
from kubernetes.client.exceptions import ApiException
from saferlhf.service.execution.base import LaunchSpec, RunState, RunStatus
from saferlhf.service.execution.k8s_job import (
    ANNOTATION_ATTEMPT_ID,
    LABEL_INSTANCE,
    LABEL_MANAGED_BY,
    LABEL_RUN,
    MANAGED_BY,
    K8sJobOptions,
    adoption_selector,
    build_objects,
    label_value,
    secret_name_of,
)
from saferlhf.service.execution.k8s_status import job_status
from saferlhf.service.state.types import FailureClass

log = logging.getLogger(__name__)
GONE, NOT_FOUND, CONFLICT = 410, 404, 409
MAX_EVENTS = 5000  # events kept in the cache (oldest dropped first)
STUCK_FAILURES = frozenset({FailureClass.IMAGE_PULL, FailureClass.UNSCHEDULABLE})


def _raw(resp: Any) -> dict[str, Any]:
    """JSON body of a call made with `_preload_content=False`."""
    return json.loads(resp.data)


def _name(obj: Mapping[str, Any]) -> str:
    return (obj.get("metadata") or {}).get("name", "")


class ResourceCache:
    """Objects of one kind in one namespace, kept current by list + watch.

    `resource_version` is the last version seen (list, event or BOOKMARK); a watch resumes from
    it. When the server answers 410 Gone (the version fell out of its window) the cache relists.
    """

    def __init__(
        self,
        list_fn: Callable[..., Any],
        namespace: str,
        label_selector: str | None = None,
        watch_factory: Callable[[], Any] = kubernetes.watch.Watch,
        keep: Callable[[dict[str, Any]], bool] | None = None,
        max_items: int | None = None,
    ) -> None:
        self.list_fn = list_fn
        self.namespace = namespace
        self.label_selector = label_selector
        self.watch_factory = watch_factory
        self.keep = keep or (lambda obj: True)
        self.max_items = max_items  # oldest dropped first (events only: they never end)
        self.items: dict[str, dict[str, Any]] = {}
        self.resource_version: str | None = None
        self.relists = 0
        self.lock = threading.Lock()

    def _kwargs(self) -> dict[str, Any]:
        return {"label_selector": self.label_selector} if self.label_selector else {}

    def relist(self) -> None:
        data = _raw(self.list_fn(self.namespace, _preload_content=False, **self._kwargs()))
        items = {_name(o): o for o in data.get("items") or [] if self.keep(o)}
        with self.lock:
            self.items = items
            self.resource_version = (data.get("metadata") or {}).get("resourceVersion")
        self.relists += 1

    @property
    def synced(self) -> bool:
        return self.resource_version is not None

    def apply(self, event: Mapping[str, Any]) -> None:
        """One watch event: ADDED/MODIFIED/DELETED/BOOKMARK, or ERROR (410 → relist)."""
        kind = event.get("type")
        obj = event.get("raw_object") or event.get("object") or {}
        if kind == "ERROR":
            if obj.get("code") == GONE:
                self.resource_version = None
                self.relist()
                return
            raise ApiException(status=obj.get("code"), reason=obj.get("message", "watch error"))
        version = (obj.get("metadata") or {}).get("resourceVersion")
        with self.lock:
            if kind in ("ADDED", "MODIFIED") and self.keep(obj):
                self.items[_name(obj)] = obj
            elif kind == "DELETED":
                self.items.pop(_name(obj), None)
            if self.max_items is not None and len(self.items) > self.max_items:
                for name in list(self.items)[: len(self.items) - self.max_items]:
                    self.items.pop(name)
            if version:
                self.resource_version = version

    def watch_once(self, timeout_seconds: int = 60) -> None:
        """List if needed, then apply one watch stream's events until it ends."""
        if not self.synced:
            self.relist()
        watch = self.watch_factory()
        try:
            for event in watch.stream(
                self.list_fn, self.namespace, resource_version=self.resource_version,
                timeout_seconds=timeout_seconds, allow_watch_bookmarks=True, **self._kwargs(),
            ):
                self.apply(event)
        except ApiException as exc:
            if exc.status != GONE:
                raise
            log.info("watch of %s: 410 Gone, relisting", self.list_fn.__name__)
            self.resource_version = None
            self.relist()

    def get(self, name: str) -> dict[str, Any] | None:
        with self.lock:
            return self.items.get(name)

    def values(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.items.values())


class KubernetesExecutor:
    """Runs stage attempts as Kubernetes Jobs. Settings arrive as `K8sJobOptions`."""

    name = "kubernetes"

    def __init__(
        self,
        options: K8sJobOptions,
        batch_api: Any | None = None,
        core_api: Any | None = None,
        clock: Callable[[], float] = time.time,
        watch_factory: Callable[[], Any] = kubernetes.watch.Watch,
        unschedulable_grace_seconds: float = 600.0,
        watch: bool | None = None,
    ) -> None:
        """`watch`: start the list+watch threads now (default: when the executor builds its own
        API clients, i.e. in the service; tests inject fakes and drive `sync` themselves)."""
        own_clients = batch_api is None or core_api is None
        if own_clients:
            _load_config()
        self.options = options
        # Any: the client accepts plain dicts (camelCase JSON), which its stubs don't declare.
        self.batch: Any = batch_api or kubernetes.client.BatchV1Api()
        self.core: Any = core_api or kubernetes.client.CoreV1Api()
        self.clock = clock
        self.unschedulable_grace_seconds = unschedulable_grace_seconds
        ns, selector = options.namespace, adoption_selector(options)
        self.jobs = ResourceCache(self.batch.list_namespaced_job, ns, selector, watch_factory)
        self.pods = ResourceCache(self.core.list_namespaced_pod, ns, selector, watch_factory)
        self.events = ResourceCache(self.core.list_namespaced_event, ns, None, watch_factory,
                                    keep=self._is_our_event, max_items=MAX_EVENTS)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._final: dict[str, RunStatus] = {}  # handle → terminal status seen (in memory)
        start_now = own_clients if watch is None else watch
        if start_now:
            self.start()

    # -- watching ----------------------------------------------------------------------------
    def _is_our_event(self, event: Mapping[str, Any]) -> bool:
        involved = (event.get("involvedObject") or {}).get("name", "")
        return any(involved.startswith(job) for job in self.jobs.items)

    def start(self, timeout_seconds: int = 60) -> None:
        """Start one daemon thread per cache (list + watch loops until `stop`); idempotent."""
        if self._threads:
            return
        for cache in (self.jobs, self.pods, self.events):
            t = threading.Thread(target=self._watch_loop, args=(cache, timeout_seconds),
                                 name=f"k8s-watch-{cache.list_fn.__name__}", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        self._stop.set()

    def _watch_loop(self, cache: ResourceCache, timeout_seconds: int) -> None:
        while not self._stop.is_set():
            try:
                cache.watch_once(timeout_seconds)
            except Exception:  # keep watching: the API server may be restarting
                log.warning("watch of %s failed; retrying", cache.list_fn.__name__,
                            exc_info=True)
                self._stop.wait(2.0)

    def sync(self, timeout_seconds: int = 1) -> None:
        """One list/watch round of every cache (tests; a service uses `start`)."""
        for cache in (self.jobs, self.pods, self.events):
            cache.watch_once(timeout_seconds)

    @property
    def synced(self) -> bool:
        return self.jobs.synced and self.pods.synced and self.events.synced

    # -- Executor interface ------------------------------------------------------------------
    def submit(self, spec: LaunchSpec) -> str:
        objs = build_objects(spec, self.options)
        ns = self.options.namespace
        job = objs[-1]
        name = _name(job)
        for obj in objs[:-1]:
            secret = obj["kind"] == "Secret"
            create = self.core.create_namespaced_secret if secret \
                else self.core.create_namespaced_service
            try:
                create(ns, obj)
            except ApiException as exc:
                if exc.status != CONFLICT:
                    raise
                if secret:  # left by an interrupted submit: carry this submit's token
                    self.core.patch_namespaced_secret(
                        _name(obj), ns, {"stringData": obj["stringData"]})
        try:
            created = _raw(self.batch.create_namespaced_job(ns, job, _preload_content=False))
        except ApiException as exc:
            if exc.status != CONFLICT:
                raise
            existing = _raw(self.batch.read_namespaced_job(name, ns, _preload_content=False))
            owner = (existing["metadata"].get("annotations") or {}).get(ANNOTATION_ATTEMPT_ID)
            if owner != spec.attempt_id:
                raise RuntimeError(
                    f"Job {ns}/{name} exists but belongs to attempt {owner!r}, not "
                    f"{spec.attempt_id!r}; delete it or change the job name"
                ) from exc
            log.info("Job %s/%s already exists for %s: adopted", ns, name, spec.attempt_id)
            return name
        self._own(objs[:-1], created)
        return name

    def _own(self, objs: list[dict[str, Any]], job: dict[str, Any]) -> None:
        """Make the Job the owner of its Secret/Service so they are deleted with it."""
        ref = {"apiVersion": "batch/v1", "kind": "Job", "name": _name(job),
               "uid": job["metadata"].get("uid", ""), "blockOwnerDeletion": True}
        if not ref["uid"]:
            return
        patch = {"metadata": {"ownerReferences": [ref]}}
        for obj in objs:
            fn = (self.core.patch_namespaced_secret if obj["kind"] == "Secret"
                  else self.core.patch_namespaced_service)
            try:
                fn(_name(obj), self.options.namespace, patch)
            except ApiException as exc:
                log.warning("could not set the owner of %s %s: %s", obj["kind"], _name(obj), exc)

    def _observe(self, handle: str) -> tuple[dict | None, list[dict], list[dict]]:
        """The Job, its Pods and their Events: from the caches when they know the Job, else
        read directly (caches not synced yet, or the watch hasn't delivered a new Job)."""
        ns = self.options.namespace
        cached = self.jobs.get(handle) if self.synced else None
        if cached is not None:
            job: dict | None = cached
            pods = [p for p in self.pods.values()
                    if (p["metadata"].get("labels") or {}).get(LABEL_RUN) == handle]
            all_events = self.events.values()
        else:
            try:
                job = _raw(self.batch.read_namespaced_job(handle, ns, _preload_content=False))
            except ApiException as exc:
                if exc.status != NOT_FOUND:
                    raise
                job = None
            pods = _raw(self.core.list_namespaced_pod(
                ns, label_selector=f"{LABEL_RUN}={handle}", _preload_content=False))["items"]
            all_events = _raw(self.core.list_namespaced_event(ns, _preload_content=False))[
                "items"]
        names = {handle} | {_name(p) for p in pods}
        events = [e for e in all_events if (e.get("involvedObject") or {}).get("name") in names]
        return job, pods, events

    def poll(self, handle: str) -> RunStatus:
        job, pods, events = self._observe(handle)
        if job is None and handle in self._final:
            return self._final[handle]  # deleted after it ended (by us, or its TTL)
        status = job_status(job, pods, events, now=self.clock(),
                            unschedulable_grace_seconds=self.unschedulable_grace_seconds)
        if status.state == RunState.FAILED and job is not None and \
                status.failure in STUCK_FAILURES:
            # The Job controller never fails a Job for these (its pods just wait): delete it so
            # its pods don't hold a queue slot or GPUs while the service decides on a retry.
            self.cancel(handle)
            status = replace(status, message=status.message + " (Job deleted)")
        if status.state in (RunState.SUCCEEDED, RunState.FAILED):
            self._final[handle] = status
        return status

    def cancel(self, handle: str, grace_seconds: float = 10.0) -> None:
        body = kubernetes.client.V1DeleteOptions(
            propagation_policy="Foreground", grace_period_seconds=int(grace_seconds))
        ns = self.options.namespace
        try:
            self.batch.delete_namespaced_job(handle, ns, body=body)
        except ApiException as exc:
            if exc.status != NOT_FOUND:
                raise
        # Owned by the Job (garbage-collected with it); deleted here too in case the owner
        # reference could not be set. The Service shares the Job's name.
        for delete, name in ((self.core.delete_namespaced_service, handle),
                             (self.core.delete_namespaced_secret, secret_name_of(handle))):
            try:
                delete(name, ns)
            except ApiException as exc:
                if exc.status != NOT_FOUND:
                    raise

    def logs(self, handle: str, follow: bool = False) -> Iterator[str]:
        pods = _raw(self.core.list_namespaced_pod(
            self.options.namespace, label_selector=f"{LABEL_RUN}={handle}",
            _preload_content=False))["items"]
        if not pods:
            return
        rank0 = min(pods, key=lambda p: int((p["metadata"].get("annotations") or {}).get(
            "batch.kubernetes.io/job-completion-index", "0")))
        try:
            resp = self.core.read_namespaced_pod_log(
                _name(rank0), self.options.namespace, container="runner", follow=follow,
                _preload_content=False)
        except ApiException as exc:
            if exc.status in (400, NOT_FOUND):  # container not started yet, or pod gone
                log.info("no log yet for %s: %s", _name(rank0), exc.reason)
                return
            raise
        buf = b""
        try:
            for chunk in resp.stream(4096):
                buf += chunk
                *lines, buf = buf.split(b"\n")
                for line in lines:
                    yield line.decode("utf-8", errors="replace")
            if buf:
                yield buf.decode("utf-8", errors="replace")
        finally:
            resp.release_conn()

    def adopt(self) -> dict[str, str]:
        data = _raw(self.batch.list_namespaced_job(
            self.options.namespace, label_selector=adoption_selector(self.options),
            _preload_content=False))
        out: dict[str, str] = {}
        instance = label_value(self.options.instance)
        for job in data.get("items") or []:
            meta = job.get("metadata") or {}
            labels = meta.get("labels") or {}
            if labels.get(LABEL_MANAGED_BY) != MANAGED_BY or labels.get(LABEL_INSTANCE) != instance:
                continue  # another installation's Job (selector not honoured by the server)
            attempt_id = (meta.get("annotations") or {}).get(ANNOTATION_ATTEMPT_ID)
            if attempt_id:
                out[attempt_id] = meta["name"]
        return out


def _load_config() -> None:
    """In-cluster credentials (the service's ServiceAccount), else the local kubeconfig."""
    try:
        kubernetes.config.load_incluster_config()
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config()

