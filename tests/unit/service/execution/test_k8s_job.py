"""The pure Kubernetes manifest builder: golden manifests and the properties they must have.

Goldens live in tests/golden/k8s/. Regenerate after an intended change with
`SAFERLHF_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/unit/service/execution/test_k8s_job.py`
and review the diff. These are offline checks of the objects (schema-validated for Kubernetes 1.29
and 1.33 by kubernetes-validate); no real cluster ran them.
"""

from __future__ import annotations

import os
import re
from dataclasses import replace
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from saferlhf.service.execution.base import LaunchSpec
from saferlhf.service.execution.k8s_job import (
    GPU_RESOURCE,
    KUEUE_QUEUE_LABEL,
    K8sJobOptions,
    build_job,
    build_objects,
    build_service,
    job_name,
    label_value,
    runner_command,
)
from saferlhf.service.state.types import Resources

GOLDEN = Path(__file__).resolve().parents[3] / "golden" / "k8s"
DNS_1123_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")

OPTS = K8sJobOptions(
    namespace="safety-team",
    image="ghcr.io/saferlhf/runner-cuda:0.1.0",
    image_pull_secrets=("regcred",),
    service_account="saferlhf-runner",
    artifacts_pvc="saferlhf-artifacts",
    node_selector={"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"},
    tolerations=({"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},),
    priority_class="training",
    ttl_seconds_after_finished=3600,
)


def _spec(**kw) -> LaunchSpec:
    base = LaunchSpec(
        attempt_id="j-20261127-ab12cd/r1/sft/1",
        job_id="j-20261127-ab12cd",
        job_name="beaver-tiny",
        project="safety-team",
        round=1,
        stage="r1/sft",
        kind="sft",
        attempt=1,
        config_path="/artifacts/safety-team/j-20261127-ab12cd/r1/sft/stage.json",
        output_dir="/artifacts/safety-team/j-20261127-ab12cd/r1/sft",
        env={"HF_HUB_OFFLINE": "1", "SAFERLHF_EVENTS_ADDR": "saferlhf:50051",
             "SAFERLHF_STAGE_TOKEN": "tok-123"},
        resources=Resources(nodes=1, nproc_per_node=1, gpus_per_node=0, cpu="2", memory="8Gi"),
    )
    return replace(base, **kw)


MULTI = _spec(
    attempt_id="j-20261127-ab12cd/r2/ppo_lag/3", stage="r2/ppo_lag", kind="ppo_lag", round=2,
    attempt=3, config_path="/artifacts/safety-team/j-20261127-ab12cd/r2/ppo_lag/stage.json",
    output_dir="/artifacts/safety-team/j-20261127-ab12cd/r2/ppo_lag",
    resources=Resources(nodes=2, nproc_per_node=8, gpus_per_node=8, cpu="64", memory="900Gi",
                        shm_size="64Gi"),
)


def _check_golden(name: str, objs: list[dict]) -> None:
    text = yaml.safe_dump_all(objs, sort_keys=True)
    path = GOLDEN / name
    if os.environ.get("SAFERLHF_UPDATE_GOLDEN") == "1":
        path.write_text(text)
    assert path.exists(), f"{path} missing: run with SAFERLHF_UPDATE_GOLDEN=1 to create it"
    assert text == path.read_text(), f"{name} differs from the golden file (see module doc)"


def test_single_node_attempt_matches_its_golden_manifest():
    _check_golden("single_node.yaml", build_objects(_spec(), OPTS))


def test_multi_node_attempt_matches_its_golden_manifest():
    _check_golden("multi_node.yaml", build_objects(MULTI, OPTS))


def test_multi_node_attempt_is_an_indexed_job_with_torchrun_rendezvous_at_index_zero():
    job = build_job(MULTI, OPTS)
    svc = build_service(MULTI, OPTS)
    name = job_name(MULTI)
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed"
    assert spec["completions"] == spec["parallelism"] == 2
    assert spec["backoffLimit"] == 0
    pod = spec["template"]["spec"]
    assert svc is not None and svc["spec"]["clusterIP"] == "None"
    assert pod["subdomain"] == svc["metadata"]["name"]
    cmd = pod["containers"][0]["command"]
    joined = " ".join(cmd)
    assert "--nnodes 2 --nproc_per_node 8" in joined
    assert "--node_rank $(JOB_COMPLETION_INDEX)" in joined
    assert cmd[cmd.index("--master_addr") + 1] == f"{name}-0.{svc['metadata']['name']}"
    assert cmd[-2:] == ["--config", MULTI.config_path]
    assert cmd[cmd.index("-m") + 1] == "saferlhf.runners.ppo_lag"
    # the headless service selects exactly the pods of this attempt
    sel = svc["spec"]["selector"]
    assert all(spec["template"]["metadata"]["labels"][k] == v for k, v in sel.items())
    limits = pod["containers"][0]["resources"]["limits"]
    assert limits[GPU_RESOURCE] == "8"
    shm = next(v for v in pod["volumes"] if v["name"] == "dshm")
    assert shm["emptyDir"] == {"medium": "Memory", "sizeLimit": "64Gi"}
    mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "dshm")
    assert mount["mountPath"] == "/dev/shm"


def test_single_process_attempt_runs_plain_python_and_multi_process_runs_torchrun():
    assert runner_command(_spec(), OPTS)[:3] == ["python", "-m", "saferlhf.runners.sft"]
    multi = _spec(resources=Resources(nproc_per_node=4))
    cmd = runner_command(multi, OPTS)
    assert cmd[:2] == ["torchrun", "--standalone"] and "4" in cmd
    assert build_service(multi, OPTS) is None  # one node: no rendezvous service needed


def test_pods_run_non_root_with_no_capabilities_and_a_read_only_root():
    pod = build_job(_spec(), OPTS)["spec"]["template"]["spec"]
    sc = pod["securityContext"]
    assert sc["runAsNonRoot"] is True and sc["runAsUser"] != 0
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    csc = pod["containers"][0]["securityContext"]
    assert csc == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                   "capabilities": {"drop": ["ALL"]}}
    assert pod["restartPolicy"] == "Never"
    assert {"name": "artifacts", "persistentVolumeClaim": {"claimName": "saferlhf-artifacts"}} in (
        pod["volumes"]
    )


def test_stage_token_is_referenced_from_a_secret_never_inlined_in_the_job():
    objs = build_objects(_spec(), OPTS)
    job = objs[-1]
    assert "tok-123" not in yaml.safe_dump(job)
    env = {e["name"]: e for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    ref = env["SAFERLHF_STAGE_TOKEN"]["valueFrom"]["secretKeyRef"]
    secret = next(o for o in objs if o["kind"] == "Secret")
    assert ref["name"] == secret["metadata"]["name"]
    assert secret["stringData"]["SAFERLHF_STAGE_TOKEN"] == "tok-123"


def test_kueue_queue_label_creates_the_job_suspended():
    job = build_job(_spec(), replace(OPTS, queue_name="team-a"))
    assert job["metadata"]["labels"][KUEUE_QUEUE_LABEL] == "team-a"
    assert job["spec"]["suspend"] is True
    assert "suspend" not in build_job(_spec(), OPTS)["spec"]


def test_active_deadline_is_set_only_when_configured():
    assert "activeDeadlineSeconds" not in build_job(_spec(), OPTS)["spec"]
    job = build_job(_spec(), replace(OPTS, active_deadline_seconds=7200))
    assert job["spec"]["activeDeadlineSeconds"] == 7200


@pytest.mark.parametrize(
    "job_display_name",
    ["beaver-tiny", "A_Very/Long Job Name With Spaces & Symbols " * 4, "123-starts-with-digit",
     "---", "ünïcödé"],
)
def test_names_are_dns_labels_of_at_most_52_chars_and_labels_are_valid(job_display_name):
    spec = _spec(job_name=job_display_name, job_id=job_display_name * 2,
                 stage="r10/ppo_lag/with/slashes" * 3)
    name = job_name(spec)
    assert len(name) <= 52 and DNS_1123_LABEL.match(name), name
    for value in build_job(spec, OPTS)["metadata"]["labels"].values():
        assert len(value) <= 63 and LABEL_VALUE.match(value), value


def test_distinct_attempts_get_distinct_names_even_when_truncated():
    a = _spec(job_name="x" * 100, attempt_id="a/1")
    b = _spec(job_name="x" * 100, attempt_id="a/2")
    assert job_name(a) != job_name(b)


def test_label_value_keeps_valid_values_and_hashes_altered_ones():
    assert label_value("r1-sft") == "r1-sft"
    assert label_value("r1/sft") != label_value("r1-sft")
    assert LABEL_VALUE.match(label_value("/" * 80))


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("resources", Resources(memory="8 GB"), "resources.memory"),
        ("resources", Resources(cpu="two"), "resources.cpu"),
        ("resources", Resources(nodes=0), "resources.nodes"),
        ("kind", "sft; rm -rf /", "kind"),
        ("env", {"BAD NAME": "x"}, "env"),
    ],
)
def test_invalid_values_are_rejected_with_the_field_named(field, value, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        build_job(_spec(**{field: value}), OPTS)


@pytest.mark.parametrize("k8s_version", ["1.29", "1.33"])
def test_every_built_object_is_valid_in_strict_mode(k8s_version):
    for spec in (_spec(), MULTI):
        for obj in build_objects(spec, replace(OPTS, queue_name="team-a",
                                               active_deadline_seconds=60)):
            kubernetes_validate.validate(obj, k8s_version, strict=True)


def test_pods_stream_events_to_the_configured_cluster_address_with_their_attempt_id():
    opts = replace(OPTS, events_address="saferlhf.saferlhf.svc:50051")
    env = {e["name"]: e.get("value") for e in
           build_job(_spec(), opts)["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["SAFERLHF_EVENTS_ADDR"] == "saferlhf.saferlhf.svc:50051"
    assert env["SAFERLHF_ATTEMPT_ID"] == "j-20261127-ab12cd/r1/sft/1"
    no_stream = _spec(env={"HF_HUB_OFFLINE": "1"})  # the scheduler had no address: none added
    env = {e["name"] for e in
           build_job(no_stream, opts)["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert "SAFERLHF_EVENTS_ADDR" not in env


def test_options_from_the_charts_stage_pod_json():
    opts = K8sJobOptions.from_mapping(
        {"serviceAccountName": "runner", "nodeSelector": {"pool": "gpu"},
         "tolerations": [{"key": "gpu", "operator": "Exists"}], "affinity": {},
         "priorityClassName": "", "imagePullSecrets": ["regcred"],
         "ttlSecondsAfterFinished": 600, "activeDeadlineSeconds": 0,
         "eventsAddress": "svc:50051"},
        namespace="training", image="runner:2", queue_name=None)
    assert opts.namespace == "training" and opts.image == "runner:2"
    assert opts.service_account == "runner" and opts.node_selector == {"pool": "gpu"}
    assert opts.tolerations == ({"key": "gpu", "operator": "Exists"},)
    assert opts.image_pull_secrets == ("regcred",) and opts.ttl_seconds_after_finished == 600
    assert opts.active_deadline_seconds is None  # 0 means no deadline
    assert opts.queue_name == "" and opts.events_address == "svc:50051"
    with pytest.raises(ValueError, match="nodeSelecter"):
        K8sJobOptions.from_mapping({"nodeSelecter": {}})


def test_with_tls_the_runner_gets_the_services_ca_mounted_read_only():
    job = build_job(_spec(), replace(OPTS, events_ca_secret="saferlhf-tls"))
    pod = job["spec"]["template"]["spec"]
    c = pod["containers"][0]
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["SAFERLHF_EVENTS_CA"] == "/etc/saferlhf/events-ca/ca.crt"
    vol = next(v for v in pod["volumes"] if v["name"] == "events-ca")
    assert vol["secret"]["secretName"] == "saferlhf-tls"
    mount = next(m for m in c["volumeMounts"] if m["name"] == "events-ca")
    assert mount["readOnly"] is True and env["SAFERLHF_EVENTS_CA"].startswith(mount["mountPath"])
    for version in ("1.29", "1.33"):
        kubernetes_validate.validate(job, version, strict=True)


def test_a_judge_api_key_comes_from_the_users_secret_by_reference():
    spec = _spec(kind="evaluate", secret_env={"JUDGE_API_KEY": ("judge-creds", "api-key")})
    objs = build_objects(spec, OPTS)
    env = {e["name"]: e for e in objs[-1]["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["JUDGE_API_KEY"] == {"name": "JUDGE_API_KEY", "valueFrom": {
        "secretKeyRef": {"name": "judge-creds", "key": "api-key"}}}
    secret = next(o for o in objs if o["kind"] == "Secret")
    assert "JUDGE_API_KEY" not in secret["stringData"]  # the service never holds the key
    for bad in ({"HF_HUB_OFFLINE": ("s", "k")}, {"K": ("Bad_Name", "k")}, {"K": ("s", "a b")}):
        with pytest.raises(ValueError, match="secret_env"):
            build_job(_spec(secret_env=bad), OPTS)


def test_the_scheduler_reads_secret_references_from_the_eval_stage_config():
    from saferlhf.runners.common.config import EvaluateParams
    from saferlhf.runners.common.judge_config import secret_env_of

    params = EvaluateParams.model_validate({
        "prompts": [{"format": "synthetic", "split": "eval"}],
        "judges": ["keyword", {"kind": "llm", "name": "gpt", "base_url": "https://api/v1",
                               "model": "m", "api_key": {"env": "JUDGE_API_KEY", "secret": {
                                   "name": "judge-creds", "key": "api-key"}}},
                   {"kind": "llm", "name": "local", "base_url": "http://vllm/v1", "model": "m",
                    "api_key": {"env": "LOCAL_KEY"}}]})
    assert secret_env_of(params.model_dump()) == {"JUDGE_API_KEY": ("judge-creds", "api-key")}
    assert secret_env_of({"kind": "sft"}) == {}
