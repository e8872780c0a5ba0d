"""Pure builder of the Kubernetes objects for one stage attempt (DESIGN §10).

No `kubernetes` import here: the builder turns a `LaunchSpec` plus cluster options into plain
dicts (golden-tested in tests/golden/k8s/), and `kubernetes.py` sends them.

One attempt becomes:
- a `batch/v1` Job, `backoffLimit: 0` (retry budgets live in the store, never in the Job), with
  one pod on a single node, or an **Indexed** Job (`completions = parallelism = nodes`) whose
  pods run `torchrun --nnodes N --nproc_per_node G --node_rank $(JOB_COMPLETION_INDEX)` with the
  rendezvous at index 0's stable DNS name `<job>-0.<service>`;
- for multi-node attempts a headless Service (`clusterIP: None`, `publishNotReadyAddresses`)
  that gives the pods those DNS names;
- a Secret holding the env values that are credentials (the stage token), referenced by
  `secretKeyRef` so it never appears in the Job object; env values from the user's own Secrets
  (`LaunchSpec.secret_env`, e.g. an llm judge's API key) are referenced the same way.

The command is always a list: values never pass through a shell. `$(JOB_COMPLETION_INDEX)` is
Kubernetes' own env expansion (the Job controller injects that variable), not a shell.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from saferlhf.service.execution.base import LaunchSpec

GROUP = "saferlhf.dev"
LABEL_JOB = f"{GROUP}/job"
LABEL_ROUND = f"{GROUP}/round"
LABEL_STAGE = f"{GROUP}/stage"
LABEL_ATTEMPT = f"{GROUP}/attempt"
LABEL_KIND = f"{GROUP}/kind"
LABEL_RUN = f"{GROUP}/run"  # the Kubernetes Job name; selects the pods of one attempt
LABEL_INSTANCE = f"{GROUP}/instance"  # which service installation owns the object
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY = "saferlhf"
ANNOTATION_ATTEMPT_ID = f"{GROUP}/attempt-id"
ANNOTATION_JOB_ID = f"{GROUP}/job-id"
ANNOTATION_STAGE = f"{GROUP}/stage-id"
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
GPU_RESOURCE = "nvidia.com/gpu"
SECRET_ENV_KEYS = frozenset({"SAFERLHF_STAGE_TOKEN"})
EVENTS_CA_DIR = "/etc/saferlhf/events-ca"

MAX_JOB_NAME = 52  # pods of an Indexed Job are named <job>-<index>-<5 chars>; hostnames ≤ 63
_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
_KIND = re.compile(r"^[a-z][a-z0-9_]*$")
_SECRET_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
_SECRET_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")


@dataclass(frozen=True)
class K8sJobOptions:
    """Cluster-side settings of the Kubernetes executor (from service settings / Helm values)."""

    namespace: str = "default"
    image: str = "ghcr.io/saferlhf/runner:0.1.0"  # used when LaunchSpec.image is empty
    image_pull_policy: str = "IfNotPresent"
    image_pull_secrets: tuple[str, ...] = ()
    service_account: str = ""  # stage pods' ServiceAccount ("" = namespace default)
    artifacts_pvc: str = ""  # PVC mounted at artifacts_mount_path ("" = none)
    artifacts_mount_path: str = "/artifacts"
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: tuple[Mapping[str, Any], ...] = ()
    affinity: Mapping[str, Any] | None = None
    priority_class: str = ""
    queue_name: str = ""  # Kueue LocalQueue: labels the Job and creates it suspended
    instance: str = "saferlhf"  # value of saferlhf.dev/instance (adoption only sees its own)
    ttl_seconds_after_finished: int = 86400
    active_deadline_seconds: int | None = None
    rdzv_port: int = 29500
    run_as_user: int = 1000
    termination_grace_seconds: int = 60  # SIGTERM → checkpoint → exit before SIGKILL (§5)
    python: str = "python"  # interpreter inside the runner image
    # host:port stage pods stream events to (the service's cluster DNS name). The scheduler's
    # address is the service's own view (e.g. 127.0.0.1 when it listens on 0.0.0.0), which pods
    # can't reach; "" keeps the scheduler's value.
    events_address: str = ""
    # Secret (in the stage namespace) with the CA that signed the service's TLS certificate, key
    # `events_ca_key`; mounted so runners verify the service when streaming events over TLS.
    events_ca_secret: str = ""
    events_ca_key: str = "ca.crt"

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], **overrides: Any) -> K8sJobOptions:
        """From the chart's stage-pod options (JSON in SAFERLHF_KUBERNETES_POD_OPTIONS, camelCase
        keys as in values.yaml `executor.stagePods`) plus explicit overrides (namespace, image …).
        Unknown keys are an error naming the key."""
        keys = {
            "serviceAccountName": "service_account", "nodeSelector": "node_selector",
            "tolerations": "tolerations", "affinity": "affinity",
            "priorityClassName": "priority_class", "imagePullSecrets": "image_pull_secrets",
            "ttlSecondsAfterFinished": "ttl_seconds_after_finished",
            "activeDeadlineSeconds": "active_deadline_seconds",
            "artifactsMountPath": "artifacts_mount_path", "instance": "instance",
            "eventsAddress": "events_address",
            "terminationGracePeriodSeconds": "termination_grace_seconds",
            "eventsCaSecret": "events_ca_secret", "eventsCaKey": "events_ca_key",
        }
        unknown = sorted(set(values) - set(keys))
        if unknown:
            raise ValueError(f"kubernetes pod options: unknown keys {unknown}; "
                             f"expected some of {sorted(keys)}")
        kw: dict[str, Any] = {keys[k]: v for k, v in values.items() if v not in (None, "", {})}
        for name in ("tolerations", "image_pull_secrets"):
            if name in kw:
                kw[name] = tuple(kw[name])
        if not kw.get("active_deadline_seconds"):
            kw.pop("active_deadline_seconds", None)  # 0 = no deadline
        kw.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**kw)


def label_value(value: str) -> str:
    """Sanitise to a valid label value: [A-Za-z0-9._-], ≤ 63 chars, alphanumeric at both ends.

    Longer or altered values keep uniqueness with a short hash suffix.
    """
    clean = re.sub(r"[^A-Za-z0-9._-]+", "-", value).strip("-._")
    if clean == value and len(clean) <= 63:
        return clean
    suffix = hashlib.sha256(value.encode()).hexdigest()[:6]
    return f"{clean[: 63 - 7].rstrip('-._')}-{suffix}".lstrip("-")


def dns_label(value: str, max_len: int = 63) -> str:
    """Lower-case RFC 1123 label (also a valid RFC 1035 label: starts with a letter)."""
    clean = re.sub(r"[^a-z0-9-]+", "-", value.lower()).strip("-")
    clean = re.sub(r"-{2,}", "-", clean)
    if not clean or not clean[0].isalpha():
        clean = f"s-{clean}".rstrip("-")
    return clean[:max_len].rstrip("-")


def job_name(spec: LaunchSpec) -> str:
    """`<kind>-<job name>-r<round>-a<attempt>-<hash>`, ≤ 52 chars, unique per attempt id."""
    digest = hashlib.sha256(spec.attempt_id.encode()).hexdigest()[:8]
    tail = f"-r{spec.round}-a{spec.attempt}-{digest}"
    head = dns_label(f"{spec.kind.replace('_', '-')}-{spec.job_name}", MAX_JOB_NAME - len(tail))
    return f"{head}{tail}"


def stage_labels(spec: LaunchSpec, opts: K8sJobOptions) -> dict[str, str]:
    """Labels on every object of one attempt (adoption and log lookup select by these)."""
    return {
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_INSTANCE: label_value(opts.instance),
        LABEL_JOB: label_value(spec.job_id),
        LABEL_ROUND: str(spec.round),
        LABEL_STAGE: label_value(spec.stage),
        LABEL_KIND: label_value(spec.kind),
        LABEL_ATTEMPT: str(spec.attempt),
        LABEL_RUN: job_name(spec),
    }


def _annotations(spec: LaunchSpec) -> dict[str, str]:
    return {
        ANNOTATION_ATTEMPT_ID: spec.attempt_id,
        ANNOTATION_JOB_ID: spec.job_id,
        ANNOTATION_STAGE: spec.stage,
    }


def service_name(spec: LaunchSpec) -> str:
    return job_name(spec)


def secret_name(spec: LaunchSpec) -> str:
    return secret_name_of(job_name(spec))


def secret_name_of(job: str) -> str:
    """The token Secret of the attempt whose Job (and Service) is named `job`."""
    return f"{job}-env"


def validate_spec(spec: LaunchSpec) -> None:
    """Reject values that would make an invalid or unsafe object (ValueError naming the field)."""
    r = spec.resources
    if not _KIND.match(spec.kind):
        raise ValueError(f"kind: expected a runner module name like 'ppo_lag', got {spec.kind!r}")
    for name in ("nodes", "nproc_per_node"):
        if getattr(r, name) < 1:
            raise ValueError(f"resources.{name}: must be >= 1, got {getattr(r, name)}")
    if r.gpus_per_node < 0:
        raise ValueError(f"resources.gpus_per_node: must be >= 0, got {r.gpus_per_node}")
    for name in ("cpu", "memory", "shm_size"):
        value = getattr(r, name)
        if not _QUANTITY.match(str(value)):
            raise ValueError(
                f"resources.{name}: expected a Kubernetes quantity like '2', '500m' or '8Gi', "
                f"got {value!r}"
            )
    for key in spec.env:
        if not _ENV_NAME.match(key):
            raise ValueError(f"env: {key!r} is not a valid environment variable name")
    for key, (secret, secret_key) in spec.secret_env.items():
        if not _ENV_NAME.match(key) or key in spec.env or key in SECRET_ENV_KEYS:
            raise ValueError(f"secret_env: {key!r} is not a free environment variable name")
        if not _SECRET_NAME.match(secret) or not _SECRET_KEY.match(secret_key):
            raise ValueError(f"secret_env: {key!r} names an invalid Secret reference "
                             f"{secret!r}/{secret_key!r}")
    if not spec.config_path or "\n" in spec.config_path:
        raise ValueError(f"config_path: expected a file path, got {spec.config_path!r}")


def runner_command(spec: LaunchSpec, opts: K8sJobOptions) -> list[str]:
    """The container command: plain python for one process, torchrun otherwise (DESIGN §5)."""
    r = spec.resources
    module = ["-m", f"saferlhf.runners.{spec.kind}", "--config", spec.config_path]
    if r.nodes == 1 and r.nproc_per_node == 1:
        return [opts.python, *module]
    if r.nodes == 1:
        return ["torchrun", "--standalone", "--nnodes", "1",
                "--nproc_per_node", str(r.nproc_per_node), *module]
    return [
        "torchrun",
        "--nnodes", str(r.nodes),
        "--nproc_per_node", str(r.nproc_per_node),
        "--node_rank", "$(JOB_COMPLETION_INDEX)",
        "--rdzv_backend", "static",
        "--master_addr", f"{job_name(spec)}-0.{service_name(spec)}",
        "--master_port", str(opts.rdzv_port),
        *module,
    ]


def _env(spec: LaunchSpec, opts: K8sJobOptions) -> list[dict[str, Any]]:
    values = {**spec.env, "SAFERLHF_ATTEMPT_ID": spec.attempt_id}  # the runner reports as it
    if opts.events_address and "SAFERLHF_EVENTS_ADDR" in values:
        values["SAFERLHF_EVENTS_ADDR"] = opts.events_address
    if opts.events_ca_secret:
        values["SAFERLHF_EVENTS_CA"] = f"{EVENTS_CA_DIR}/{opts.events_ca_key}"
    out: list[dict[str, Any]] = []
    for key in sorted(values):
        if key in SECRET_ENV_KEYS:
            ref = {"name": secret_name(spec), "key": key}
            out.append({"name": key, "valueFrom": {"secretKeyRef": ref}})
        else:
            out.append({"name": key, "value": str(values[key])})
    for key, (secret, secret_key) in sorted(spec.secret_env.items()):  # the user's own Secrets
        out.append({"name": key, "valueFrom": {"secretKeyRef": {"name": secret,
                                                                "key": secret_key}}})
    # Writable places under a read-only root filesystem (both on the /tmp emptyDir).
    out.append({"name": "HOME", "value": "/tmp"})
    out.append({"name": "TORCH_EXTENSIONS_DIR", "value": "/tmp/torch_extensions"})
    return out


def _resources(spec: LaunchSpec) -> dict[str, Any]:
    r = spec.resources
    requests: dict[str, str] = {"cpu": str(r.cpu), "memory": str(r.memory)}
    limits: dict[str, str] = {"memory": str(r.memory)}
    if r.gpus_per_node > 0:
        requests[GPU_RESOURCE] = str(r.gpus_per_node)
        limits[GPU_RESOURCE] = str(r.gpus_per_node)
    return {"requests": requests, "limits": limits}


def _volumes(spec: LaunchSpec, opts: K8sJobOptions) -> tuple[list[dict], list[dict]]:
    volumes: list[dict[str, Any]] = [
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": spec.resources.shm_size}},
        {"name": "tmp", "emptyDir": {}},
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "dshm", "mountPath": "/dev/shm"},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    if opts.events_ca_secret:
        volumes.append({"name": "events-ca", "secret": {
            "secretName": opts.events_ca_secret,
            "items": [{"key": opts.events_ca_key, "path": opts.events_ca_key}]}})
        mounts.append({"name": "events-ca", "mountPath": EVENTS_CA_DIR, "readOnly": True})
    if opts.artifacts_pvc:
        volumes.append(
            {"name": "artifacts", "persistentVolumeClaim": {"claimName": opts.artifacts_pvc}}
        )
        mounts.append({"name": "artifacts", "mountPath": opts.artifacts_mount_path})
    return volumes, mounts


def _pod_spec(spec: LaunchSpec, opts: K8sJobOptions) -> dict[str, Any]:
    volumes, mounts = _volumes(spec, opts)
    container: dict[str, Any] = {
        "name": "runner",
        "image": spec.image or opts.image,
        "imagePullPolicy": opts.image_pull_policy,
        "command": runner_command(spec, opts),
        "env": _env(spec, opts),
        "resources": _resources(spec),
        "volumeMounts": mounts,
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    if spec.resources.nodes > 1:
        container["ports"] = [{"name": "rdzv", "containerPort": opts.rdzv_port}]
    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": opts.termination_grace_seconds,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": opts.run_as_user,
            "runAsGroup": opts.run_as_user,
            "fsGroup": opts.run_as_user,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": volumes,
    }
    if spec.resources.nodes > 1:
        pod["subdomain"] = service_name(spec)
    if opts.service_account:
        pod["serviceAccountName"] = opts.service_account
    pod["automountServiceAccountToken"] = False  # runners never call the Kubernetes API
    if opts.node_selector:
        pod["nodeSelector"] = dict(opts.node_selector)
    if opts.tolerations:
        pod["tolerations"] = [dict(t) for t in opts.tolerations]
    if opts.affinity:
        pod["affinity"] = dict(opts.affinity)
    if opts.priority_class:
        pod["priorityClassName"] = opts.priority_class
    if opts.image_pull_secrets:
        pod["imagePullSecrets"] = [{"name": s} for s in opts.image_pull_secrets]
    return pod


def build_job(spec: LaunchSpec, opts: K8sJobOptions) -> dict[str, Any]:
    """The batch/v1 Job of one attempt (Indexed when `resources.nodes > 1`)."""
    validate_spec(spec)
    labels = stage_labels(spec, opts)
    job_labels = dict(labels)
    if opts.queue_name:
        job_labels[KUEUE_QUEUE_LABEL] = label_value(opts.queue_name)
    nodes = spec.resources.nodes
    job_spec: dict[str, Any] = {
        "backoffLimit": 0,
        "completions": nodes,
        "parallelism": nodes,
        "ttlSecondsAfterFinished": opts.ttl_seconds_after_finished,
        "template": {
            "metadata": {"labels": labels, "annotations": _annotations(spec)},
            "spec": _pod_spec(spec, opts),
        },
    }
    if nodes > 1:
        job_spec["completionMode"] = "Indexed"
    if opts.active_deadline_seconds is not None:
        job_spec["activeDeadlineSeconds"] = opts.active_deadline_seconds
    if opts.queue_name:
        job_spec["suspend"] = True  # Kueue unsuspends it on admission
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name(spec),
            "namespace": opts.namespace,
            "labels": job_labels,
            "annotations": _annotations(spec),
        },
        "spec": job_spec,
    }


def build_service(spec: LaunchSpec, opts: K8sJobOptions) -> dict[str, Any] | None:
    """The headless Service giving Indexed pods DNS names; None for single-node attempts."""
    if spec.resources.nodes <= 1:
        return None
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": service_name(spec),
            "namespace": opts.namespace,
            "labels": stage_labels(spec, opts),
            "annotations": _annotations(spec),
        },
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,  # rendezvous resolves before pods are Ready
            "selector": {LABEL_RUN: job_name(spec)},
            "ports": [{"name": "rdzv", "port": opts.rdzv_port, "targetPort": opts.rdzv_port}],
        },
    }


def build_secret(spec: LaunchSpec, opts: K8sJobOptions) -> dict[str, Any] | None:
    """The Secret with the attempt's credential env values; None when there are none."""
    data = {k: str(v) for k, v in spec.env.items() if k in SECRET_ENV_KEYS}
    if not data:
        return None
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": secret_name(spec),
            "namespace": opts.namespace,
            "labels": stage_labels(spec, opts),
            "annotations": _annotations(spec),
        },
        "type": "Opaque",
        "stringData": data,
    }


def build_objects(spec: LaunchSpec, opts: K8sJobOptions) -> list[dict[str, Any]]:
    """Every object of one attempt in creation order: Secret, Service, Job."""
    objs = [build_secret(spec, opts), build_service(spec, opts), build_job(spec, opts)]
    return [o for o in objs if o is not None]


def adoption_selector(opts: K8sJobOptions) -> str:
    """Label selector of every Job this service installation created."""
    return f"{LABEL_MANAGED_BY}={MANAGED_BY},{LABEL_INSTANCE}={label_value(opts.instance)}"
