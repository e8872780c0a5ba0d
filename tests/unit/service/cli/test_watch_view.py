"""The live view folds updates into the job's picture; on a terminal it redraws in place, at
most every REDRAW_SECONDS, with progress bars and the per-round numbers."""

from __future__ import annotations

import io
import json

from saferlhf.service.cli.watch import REDRAW_SECONDS, LiveView
from saferlhf.v1 import job_service_pb2 as api
from saferlhf.v1 import resources_pb2 as pb


def _event(cursor: int, stage: str, type_: int, payload: dict, points=()) -> api.WatchJobResponse:
    msg = api.WatchJobResponse(cursor=cursor, event=pb.Event(
        seq=cursor, stage_id=stage, type=type_, payload_json=json.dumps(payload)))
    msg.metric_points.extend(pb.MetricPoint(stage_id=stage, round=1, name=n, value=v)
                             for n, v in points)
    return msg


def test_a_terminal_view_redraws_with_bars_and_round_metrics_throttled():
    now = [0.0]
    out = io.StringIO()
    view = LiveView(out, "tty", clock=lambda: now[0])
    view.apply(api.WatchJobResponse(cursor=1, job=pb.Job(id="j-1", name="demo",
                                                          state=pb.JOB_STATE_RUNNING)))
    view.apply(api.WatchJobResponse(cursor=2, stage=pb.Stage(
        id="r1/ppo_lag", round=1, kind="ppo_lag", state=pb.ATTEMPT_STATE_RUNNING)))
    assert out.getvalue().count("\x1b[H\x1b[J") == 1  # the second update came too soon
    now[0] += REDRAW_SECONDS
    view.apply(_event(3, "r1/ppo_lag", pb.EVENT_TYPE_PROGRESS, {"step": 3, "total_steps": 4}))
    now[0] += REDRAW_SECONDS
    view.apply(_event(4, "r1/ppo_lag", pb.EVENT_TYPE_METRICS, {"step": 3},
                      [("train/lambda", 1.5), ("train/cost", 0.25)]))
    frame = out.getvalue().split("\x1b[H\x1b[J")[-1]
    assert "j-1  demo  RUNNING" in frame
    assert "r1/ppo_lag" in frame and "75%" in frame
    report = frame[frame.index("ROUND"):].splitlines()
    assert report[0].split()[0:1] == ["ROUND"] and "1.500" in report[1] and "0.250" in report[1]


def test_plain_mode_writes_one_line_per_change_and_no_escape_codes():
    out = io.StringIO()
    view = LiveView(out, "plain")
    view.apply(api.WatchJobResponse(cursor=1, stage=pb.Stage(id="r1/sft", state=2)))
    view.apply(api.WatchJobResponse(cursor=2, stage=pb.Stage(id="r1/sft", state=2)))  # same
    view.apply(_event(3, "r1/sft", pb.EVENT_TYPE_LOG, {"level": "warning", "message": "slow"}))
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and lines[0].endswith("stage r1/sft QUEUED")
    assert lines[1].endswith("stage r1/sft warning: slow")
    assert "\x1b" not in out.getvalue()
