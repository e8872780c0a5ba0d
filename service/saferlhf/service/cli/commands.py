"""One function per `saferlhf` command: parse → request → print. Printing happens here only."""

from __future__ import annotations

import argparse
import sys
import uuid
from pathlib import Path
from typing import Any, TextIO

from saferlhf.service.cli import render
from saferlhf.service.cli.client import EXIT_INVALID, Client, CliError, read_input
from saferlhf.service.cli.follow import exit_code_for, final_report, print_line, watch_job
from saferlhf.v1 import job_service_pb2 as api
from saferlhf.v1 import resources_pb2 as pb


def _client(args: argparse.Namespace, server: str | None = None) -> Client:
    return Client(server or args.server, args.token, ca_file=args.ca_file,
                  cert_file=getattr(args, "cert_file", None),
                  key_file=getattr(args, "key_file", None), timeout_seconds=args.timeout)


def _emit(out: TextIO, msg: Any, fmt: str, text: str) -> None:
    print_line(out, render.dump(render.to_data(msg), fmt) if fmt in ("json", "yaml") else text)


# --- commands -------------------------------------------------------------------------------


def cmd_submit(args: argparse.Namespace, out: TextIO) -> int:
    client = _client(args)
    request = api.CreateJobRequest(spec_yaml=read_input(args.spec), project=args.project,
                                   request_id=args.request_id or str(uuid.uuid4()))
    job = client.call("CreateJob", request).job
    if not args.wait:
        _emit(out, job, args.output, f"submitted {job.id} ({job.name}, project {job.project})")
        return 0
    if args.output == "text":
        print_line(out, f"submitted {job.id}; watching (Ctrl-C stops watching, the job goes on)")
    got = watch_job(client, job.id, out, args.output)
    if args.output == "text":
        final_report(out, got, client)
    return exit_code_for(got.job)


def cmd_get(args: argparse.Namespace, out: TextIO) -> int:
    got = _client(args).call("GetJob", api.GetJobRequest(job_id=args.job))
    print_line(out, render.dump(render.job_data(got), args.output)
           if args.output in ("json", "yaml") else render.job_text(got))
    return 0


def cmd_list(args: argparse.Namespace, out: TextIO) -> int:
    client = _client(args)
    jobs: list[pb.Job] = []
    token = ""
    while True:
        page = client.call("ListJobs", api.ListJobsRequest(
            filter=args.filter, page_size=args.page_size, page_token=token))
        jobs.extend(page.jobs)
        token = page.next_page_token
        if not token or not args.all:
            break
    if args.output in ("json", "yaml"):
        data = {"jobs": [render.to_data(j) for j in jobs], "next_page_token": token}
        print_line(out, render.dump(data, args.output))
    else:
        print_line(out, render.jobs_table(jobs) + (f"\n(more: --all, or page token {token})"
                                               if token else ""))
    return 0


def cmd_watch(args: argparse.Namespace, out: TextIO) -> int:
    client = _client(args)
    got = watch_job(client, args.job, out, args.output, after=args.after)
    if args.output == "text":
        final_report(out, got, client)
    return exit_code_for(got.job)


def cmd_logs(args: argparse.Namespace, out: TextIO) -> int:
    client = _client(args)
    request = api.GetStageLogsRequest(job_id=args.job, stage_id=args.stage, follow=args.follow)
    for chunk in client.stream("GetStageLogs", request):
        for line in chunk.lines:
            out.write(line + "\n")
        out.flush()
    return 0


def cmd_cancel(args: argparse.Namespace, out: TextIO) -> int:
    job = _client(args).call("CancelJob", api.CancelJobRequest(job_id=args.job,
                                                               reason=args.reason)).job
    _emit(out, job, args.output, f"{job.id} {render.job_state(job.state)}")
    return 0


def cmd_retry(args: argparse.Namespace, out: TextIO) -> int:
    job = _client(args).call("RetryJob", api.RetryJobRequest(job_id=args.job)).job
    _emit(out, job, args.output, f"{job.id} {render.job_state(job.state)}")
    return 0


def cmd_gate(args: argparse.Namespace, out: TextIO) -> int:
    request = api.ApproveGateRequest(job_id=args.job, gate_id=args.gate,
                                     approve=args.command == "approve", comment=args.comment)
    gate = _client(args).call("ApproveGate", request).gate
    _emit(out, gate, args.output, f"gate {gate.id} {render.gate_state(gate.state)}")
    return 0


def cmd_labels(args: argparse.Namespace, out: TextIO) -> int:
    client = _client(args)
    if args.labels_command == "export":
        got = client.call("ExportSamples", api.ExportSamplesRequest(job_id=args.job,
                                                                    round=args.round))
        target = Path(args.file or got.filename)
        target.write_bytes(got.content)
        print_line(out, f"wrote {len(got.content.splitlines())} samples to {target}; label them "
               f"and run `saferlhf labels import {args.job} {target} --round {args.round}`")
        return 0
    try:
        content = Path(args.file).read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read the labels file {args.file}: {exc}", EXIT_INVALID) from None
    job = client.call("ImportLabels", api.ImportLabelsRequest(job_id=args.job, round=args.round,
                                                              content=content)).job
    print_line(out, f"labels imported; {job.id} {render.job_state(job.state)}")
    return 0


def cmd_validate(args: argparse.Namespace, out: TextIO) -> int:
    from saferlhf.service.planning.fit import memory_violations
    from saferlhf.service.spec.load import load_spec_file

    if not Path(args.spec).is_file():
        raise CliError(f"no spec file at {args.spec}", EXIT_INVALID)
    job = load_spec_file(args.spec, check_data=not args.no_data_check,
                         artifacts_root=args.artifacts_root, checks=(memory_violations,))
    print_line(out, f"{args.spec}: valid ({job.metadata.name}, project {job.metadata.project})")
    return 0


def cmd_plan(args: argparse.Namespace, out: TextIO) -> int:
    """The memory plan; exit 2 when a stage does not fit (the table says what would)."""
    from saferlhf.service.cli.memory_table import plan_data, plan_text
    from saferlhf.service.planning.fit import memory_plan
    from saferlhf.service.spec.load import load_spec_file

    if not Path(args.spec).is_file():
        raise CliError(f"no spec file at {args.spec}", EXIT_INVALID)
    # Planning needs no network: hub references are allowed here (validate and submit check
    # them); a hub model's size is read from the local Hugging Face cache when it is there.
    job = load_spec_file(args.spec, check_data=not args.no_data_check,
                         artifacts_root=args.artifacts_root, allow_hub=True)
    rows = memory_plan(job)
    name = job.metadata.name
    print_line(out, render.dump(plan_data(name, rows), args.output)
               if args.output in ("json", "yaml") else plan_text(name, rows))
    failing = [r.stage for r in rows if r.status == "does not fit"]
    if failing:
        raise CliError(f"{', '.join(failing)}: does not fit the GPUs, so submit would reject "
                       "this spec (see above for what would fit)", EXIT_INVALID)
    return 0


def cmd_schema(args: argparse.Namespace, out: TextIO) -> int:
    from saferlhf.service.spec.schema import json_schema

    print_line(out, render.dump(json_schema(), "yaml" if args.output == "yaml" else "json"))
    return 0


def cmd_tokens(args: argparse.Namespace, out: TextIO) -> int:
    from saferlhf.service.auth import create_token

    if not args.tokens_file:
        raise CliError("which tokens file? pass --tokens-file or set SAFERLHF_TOKENS_FILE "
                       "(the service reads it through its tokens_file setting)", EXIT_INVALID)
    name = args.name or f"{args.project}-{args.role}"
    token = create_token(args.tokens_file, name=name, project=args.project, role=args.role)
    print_line(out, token)
    sys.stderr.write(f"token {name!r} ({args.role} on {args.project}) added to "
                     f"{args.tokens_file}; it is shown only now, store it safely\n")
    return 0


COMMANDS = {"submit": cmd_submit, "get": cmd_get, "list": cmd_list, "watch": cmd_watch,
            "logs": cmd_logs, "cancel": cmd_cancel, "retry": cmd_retry, "approve": cmd_gate,
            "reject": cmd_gate, "labels": cmd_labels, "validate": cmd_validate,
            "plan": cmd_plan, "schema": cmd_schema, "tokens": cmd_tokens}
