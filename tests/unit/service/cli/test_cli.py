"""The `saferlhf` CLI against a real gRPC server over the FakeControlPlane: output formats and
the error paths (bad spec, unreachable server, denied access) end in one paragraph, no traceback."""

from __future__ import annotations

import io
import json
import socket
import threading

import pytest
import yaml
from saferlhf.service.auth import TokenAuth, create_token
from saferlhf.service.cli.main import main
from saferlhf.service.state.types import JobState

from tests.unit.service.api.fake_controlplane import FakeControlPlane, running_server

SPEC = ("apiVersion: saferlhf.dev/v1alpha1\nkind: SafeRLHFJob\n"
        "metadata: {name: demo, project: p}\n")


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def server(tmp_path):
    app = FakeControlPlane()
    with running_server(app) as (address, _):
        yield app, address


@pytest.fixture
def spec_file(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text(SPEC)
    return str(path)


def test_submit_prints_the_job_id_and_get_shows_it_as_json_and_yaml(server, spec_file):
    app, address = server
    code, out, err = run("--server", address, "submit", spec_file)
    assert code == 0, err
    job_id = next(iter(app.jobs))
    assert job_id in out
    code, out, _ = run("get", job_id, "--server", address, "-o", "json")
    data = json.loads(out)
    assert data["job"]["id"] == job_id and data["job"]["state"] == "JOB_STATE_PENDING"
    assert data["job"]["spec"]["metadata"]["name"] == "demo"  # spec_json expanded
    code, out, _ = run("--server", address, "get", job_id, "-o", "yaml")
    assert yaml.safe_load(out)["stages"][0]["id"] == "r1/sft"
    code, out, _ = run("--server", address, "get", job_id)
    assert "r1/sft" in out and "PENDING" in out and "r1/sft/0" in out


def test_list_shows_a_table_and_follows_pages_with_all(server, spec_file):
    app, address = server
    for _ in range(3):
        assert run("--server", address, "submit", spec_file)[0] == 0
    code, out, _ = run("--server", address, "list", "--page-size", "2")
    assert out.splitlines()[0].split() == ["ID", "NAME", "PROJECT", "STATE", "AGE"]
    assert len([ln for ln in out.splitlines() if ln.startswith("j-")]) == 2
    assert "--all" in out
    code, out, _ = run("--server", address, "list", "--page-size", "2", "--all", "-o", "json")
    assert len(json.loads(out)["jobs"]) == 3


def test_a_bad_spec_is_one_paragraph_naming_fields_and_exit_2(server, tmp_path):
    _, address = server
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: Other\nmetadata: {}\n")
    code, out, err = run("--server", address, "submit", str(bad))
    assert code == 2
    assert "kind:" in err and "metadata.name" in err and "Traceback" not in err


def test_an_unreachable_server_is_exit_3_with_advice(spec_file):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code, _, err = run("--server", f"127.0.0.1:{port}", "--timeout", "3", "submit", spec_file)
    assert code == 3
    assert "cannot reach" in err and "saferlhf serve" in err and "Traceback" not in err


def test_a_missing_spec_file_and_an_unknown_job_are_clear(server, tmp_path):
    _, address = server
    code, _, err = run("--server", address, "submit", str(tmp_path / "nope.yaml"))
    assert code == 2 and "cannot read the spec file" in err
    code, _, err = run("--server", address, "get", "j-nope")
    assert code == 5 and "not found" in err


def test_denied_access_is_exit_4_without_a_traceback(tmp_path, spec_file):
    tokens = tmp_path / "tokens.yaml"
    reader = create_token(tokens, name="r", project="p", role="read")
    app = FakeControlPlane()
    with running_server(app, auth=TokenAuth(tokens)) as (address, _):
        code, _, err = run("--server", address, "submit", spec_file)
        assert code == 4 and "token" in err
        code, _, err = run("--server", address, "--token", reader, "submit", spec_file)
        assert code == 4 and "permission denied" in err and "write" in err
        assert "Traceback" not in err


def test_watch_prints_plain_lines_when_not_a_tty_and_exits_by_final_state(server, spec_file):
    app, address = server
    run("--server", address, "submit", spec_file)
    job_id = next(iter(app.jobs))
    attempt = app.add_attempt(job_id, "r1/ppo_lag", "tok")
    app.report_events(attempt, "tok", [
        {"seq": 1, "attempt": 1, "time": "t", "type": "metrics", "step": 3,
         "values": {"train/lambda": 1.25, "train/cost": -0.5}},
        {"seq": 2, "attempt": 1, "time": "t", "type": "progress", "step": 5, "total_steps": 10}])
    threading.Timer(0.3, app.set_state, (job_id, JobState.FAILED)).start()
    code, out, _ = run("--server", address, "watch", job_id)
    assert code == 1
    assert "λ=1.250" in out and "cost=-0.500" in out
    assert "50%" in out and f"job {job_id} FAILED" in out
    assert "\x1b[" not in out


def test_watch_json_prints_one_document_per_update_resuming_after_a_cursor(server, spec_file):
    app, address = server
    run("--server", address, "submit", spec_file)
    job_id = next(iter(app.jobs))
    app.set_state(job_id, JobState.RUNNING)
    app.set_state(job_id, JobState.SUCCEEDED)
    code, out, _ = run("--server", address, "watch", job_id, "--after", "1", "-o", "json")
    docs = [json.loads(line) for line in out.splitlines()]
    assert code == 0
    assert [d["cursor"] for d in docs] == ["2", "3"]
    assert docs[-1]["job"]["state"] == "JOB_STATE_SUCCEEDED"


def test_cancel_approve_reject_retry_and_labels(server, spec_file, tmp_path):
    app, address = server
    run("--server", address, "submit", spec_file)
    job_id = next(iter(app.jobs))
    code, out, _ = run("--server", address, "reject", job_id, "r1/sft/0", "--comment", "no")
    assert code == 0 and "REJECTED" in out
    code, _, err = run("--server", address, "approve", job_id, "r1/sft/0")
    assert code == 1 and "not possible now" in err
    assert "CANCELLED" in run("--server", address, "cancel", job_id)[1]
    assert "RUNNING" in run("--server", address, "retry", job_id)[1]
    target = tmp_path / "samples.jsonl"
    code, out, _ = run("--server", address, "labels", "export", job_id, "--round", "2",
                       "--file", str(target))
    assert code == 0 and target.read_bytes().startswith(b'{"prompt"')
    labels = tmp_path / "labels.jsonl"
    labels.write_text('{"no": 1}\n')
    code, _, err = run("--server", address, "labels", "import", job_id, str(labels),
                       "--round", "2")
    assert code == 2 and "labels row 1: better" in err


def test_logs_prints_the_stage_log(server, spec_file):
    app, address = server
    run("--server", address, "submit", spec_file)
    job_id = next(iter(app.jobs))
    app.logs[(job_id, "r1/sft")] = ["hello\n", "world\n"]
    code, out, _ = run("--server", address, "logs", job_id, "r1/sft")
    assert code == 0 and out == "hello\nworld\n"


def test_tokens_create_prints_a_token_once_and_stores_only_its_hash(tmp_path, capsys):
    tokens = tmp_path / "tokens.yaml"
    code, out, _ = run("tokens", "create", "--project", "p", "--role", "write",
                       "--tokens-file", str(tokens))
    token = out.strip()
    assert code == 0 and token.startswith("srl_")
    stored = tokens.read_text()
    assert token not in stored
    principal = TokenAuth(tokens).authenticate([("authorization", f"Bearer {token}")])
    assert principal.projects == {"p": "write"}


def test_validate_and_schema_work_offline(tmp_path):
    from tests.tools import ROOT

    code, out, err = run("validate", str(ROOT / "examples" / "quickstart.yaml"))
    assert code == 0, err
    assert "valid" in out
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: saferlhf.dev/v1alpha1\nkind: SafeRLHFJob\nmetadata: {name: x}\n"
                   "spec:\n  stages:\n    ppo_lag: {lambda_lr: -1}\n")
    code, _, err = run("validate", str(bad))
    assert code == 2 and "spec.stages.ppo_lag.lambda_lr" in err and "Traceback" not in err
    code, out, _ = run("schema")
    assert code == 0 and json.loads(out)["title"].startswith("SafeRLHFJob")


def test_usage_errors_exit_2():
    assert run("frobnicate")[0] == 2
    assert run("get")[0] == 2


def test_submit_wait_watches_to_the_end_and_exits_by_the_outcome(server, spec_file):
    app, address = server

    def finish_when_submitted() -> None:
        for _ in range(100):
            if app.jobs:
                app.set_state(next(iter(app.jobs)), JobState.SUCCEEDED)
                return
            threading.Event().wait(0.05)
    threading.Thread(target=finish_when_submitted).start()
    code, out, _ = run("--server", address, "submit", spec_file, "--wait")
    assert code == 0
    assert "submitted" in out and "SUCCEEDED" in out
