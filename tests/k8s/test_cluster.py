"""Opt-in suite against a REAL cluster: `pytest -m k8s tests/k8s` with KUBECONFIG set.

Skipped everywhere else (no kube-apiserver can run on the build machines). It has NOT been run
in this repository's CI; docs/deploy_kubernetes.md shows how to run it on kind:

    kind create cluster --name saferlhf
    docker build -f docker/Dockerfile.runner -t saferlhf-runner:dev .
    docker build -f docker/Dockerfile.service -t saferlhf-service:dev .
    kind load docker-image saferlhf-runner:dev saferlhf-service:dev --name saferlhf
    kubectl create namespace saferlhf-test
    KUBECONFIG=~/.kube/config SAFERLHF_K8S_RUNNER_IMAGE=saferlhf-runner:dev \
      SAFERLHF_K8S_SERVICE_IMAGE=saferlhf-service:dev .venv/bin/python -m pytest -m k8s tests/k8s

Environment: SAFERLHF_K8S_NAMESPACE (default saferlhf-test, must exist),
SAFERLHF_K8S_RUNNER_IMAGE, SAFERLHF_K8S_SERVICE_IMAGE (helm install + helm test only).
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid

import pytest
from saferlhf.service.execution.base import LaunchSpec, RunState
from saferlhf.service.execution.k8s_job import K8sJobOptions
from saferlhf.service.state.types import FailureClass, Resources

from tests.tools import ROOT, require_tool

pytestmark = [
    pytest.mark.k8s,
    pytest.mark.skipif(not os.environ.get("KUBECONFIG"),
                       reason="needs a real cluster: set KUBECONFIG (see module docstring)"),
]
NS = os.environ.get("SAFERLHF_K8S_NAMESPACE", "saferlhf-test")
RUNNER = os.environ.get("SAFERLHF_K8S_RUNNER_IMAGE", "saferlhf-runner:dev")


@pytest.fixture()
def executor():
    from saferlhf.service.execution.kubernetes import KubernetesExecutor

    ex = KubernetesExecutor(K8sJobOptions(namespace=NS, image=RUNNER,
                                          image_pull_policy="IfNotPresent",
                                          instance=f"test-{uuid.uuid4().hex[:6]}",
                                          ttl_seconds_after_finished=600))
    yield ex
    for handle in ex.adopt().values():
        ex.cancel(handle)
    ex.stop()


def _spec(config_path: str, image: str = "") -> LaunchSpec:
    run = uuid.uuid4().hex[:6]
    return LaunchSpec(attempt_id=f"k8s-test-{run}/r1/sft/1", job_id=f"k8s-test-{run}",
                      job_name="k8s-test", project="test", round=1, stage="r1/sft", kind="sft",
                      attempt=1, config_path=config_path, output_dir="/tmp/out",
                      env={"HF_HUB_OFFLINE": "1"}, image=image,
                      resources=Resources(cpu="100m", memory="1Gi", shm_size="64Mi"))


def _wait(ex, handle: str, timeout: float = 300.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        status = ex.poll(handle)
        if status.state in (RunState.SUCCEEDED, RunState.FAILED, RunState.LOST):
            return status
        time.sleep(2)
    raise AssertionError(f"{handle} still {status} after {timeout} s")


def test_a_stage_with_a_missing_config_fails_as_invalid_input_and_its_logs_are_readable(executor):
    handle = executor.submit(_spec("/nonexistent/stage.json"))
    status = _wait(executor, handle)
    assert (status.state, status.failure, status.exit_code) == (
        RunState.FAILED, FailureClass.INVALID, 2)
    assert any("stage.json" in line for line in executor.logs(handle))


def test_an_unpullable_image_fails_as_image_pull(executor):
    handle = executor.submit(_spec("/x.json", image="saferlhf.invalid/nope:0.0.0"))
    status = _wait(executor, handle)
    assert status.failure == FailureClass.IMAGE_PULL


def test_a_new_executor_adopts_jobs_by_labels_and_cancel_removes_them(executor):
    from saferlhf.service.execution.kubernetes import KubernetesExecutor

    spec = _spec("/nonexistent/stage.json")
    handle = executor.submit(spec)
    again = KubernetesExecutor(executor.options)
    assert again.adopt()[spec.attempt_id] == handle
    assert again.submit(spec) == handle  # 409 → the same Job
    again.cancel(handle)
    deadline = time.time() + 120
    while time.time() < deadline and again.poll(handle).state != RunState.LOST:
        time.sleep(2)
    assert again.poll(handle).state == RunState.LOST


@pytest.mark.skipif(not os.environ.get("SAFERLHF_K8S_SERVICE_IMAGE"),
                    reason="set SAFERLHF_K8S_SERVICE_IMAGE to helm-install the service")
def test_helm_install_then_helm_test_passes_the_grpc_health_check():
    helm = require_tool("helm")
    repo, tag = os.environ["SAFERLHF_K8S_SERVICE_IMAGE"].rsplit(":", 1)
    release = f"t{uuid.uuid4().hex[:6]}"
    args = ["--namespace", NS, "--set", f"image.repository={repo}", "--set", f"image.tag={tag}",
            "--set", "auth.tokensSecret=", "--set", "auth.allowInsecureBind=true",
            "--set", "artifacts.accessModes={ReadWriteOnce}", "--set", "artifacts.size=1Gi"]
    try:
        subprocess.run([helm, "install", release, str(ROOT / "charts" / "saferlhf"), *args,
                        "--wait", "--timeout", "5m"], check=True, timeout=360)
        subprocess.run([helm, "test", release, "--namespace", NS], check=True, timeout=180)
    finally:
        subprocess.run([helm, "uninstall", release, "--namespace", NS], timeout=120)
