"""Following a job to its end and reporting it: shared by `watch`, `submit --wait` and `run`."""

from __future__ import annotations

from typing import Any, TextIO

from saferlhf.service.cli import constraint, render, report
from saferlhf.service.cli.client import EXIT_FAILED, Client, CliError
from saferlhf.service.cli.watch import LiveView
from saferlhf.v1 import job_service_pb2 as api
from saferlhf.v1 import resources_pb2 as pb

LOG_TAIL_LINES = 10


def print_line(out: TextIO, text: str) -> None:
    out.write(text + "\n")
    out.flush()


def view_mode(out: TextIO, fmt: str) -> str:
    if fmt == "json":
        return "json"
    return "tty" if getattr(out, "isatty", lambda: False)() else "plain"


def exit_code_for(job: pb.Job | None) -> int:
    return 0 if job is not None and job.state == pb.JOB_STATE_SUCCEEDED else EXIT_FAILED


def watch_job(client: Client, job_id: str, out: TextIO, fmt: str, after: int = 0) -> pb.Job:
    view = LiveView(out, view_mode(out, fmt))
    if fmt != "json":
        view.seed(client.call("GetJob", api.GetJobRequest(job_id=job_id)))
    view.follow(client.stream("WatchJob", api.WatchJobRequest(job_id=job_id,
                                                              after_cursor=after)))
    return client.call("GetJob", api.GetJobRequest(job_id=job_id))


def final_report(out: TextIO, got: Any, client: Client | None = None) -> None:
    """The job's end state, the log tail of each failed stage (when `client` can fetch it) and
    the per-round report."""
    metrics = render.latest_metrics(got.latest_metrics)
    print_line(out, f"\njob {got.job.id} {render.job_state(got.job.state)}"
           + (f": {got.job.message}" if got.job.message else ""))
    for stage in got.stages:
        if client is not None and stage.state == pb.ATTEMPT_STATE_FAILED:
            try:
                lines = [ln for chunk in client.stream("GetStageLogs", api.GetStageLogsRequest(
                    job_id=got.job.id, stage_id=stage.id)) for ln in chunk.lines]
            except CliError:
                continue  # no log to show; the state line above still says what failed
            print_line(out, f"\nlast lines of {stage.id}'s log:")
            print_line(out, "\n".join(f"  {ln}" for ln in lines[-LOG_TAIL_LINES:]))
    for line in constraint.condition_lines(got.job.conditions):
        print_line(out, line)
    block = constraint.constraints_block(got.stages, metrics)
    if block:
        print_line(out, "\nsafety constraint (PPO-Lagrangian):\n" + block)
    if report.has_report(got.stages, metrics):
        print_line(out, "\nper-round report (harmful and helpful rates on held-out prompts; "
                   "round 0 = the starting model):\n" + report.round_report(got.stages, metrics))
