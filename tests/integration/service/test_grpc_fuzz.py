"""Bad input never crashes the API: hypothesis-generated specs and requests through a real gRPC
server over the real App get OK or INVALID_ARGUMENT with field violations (NOT_FOUND for ids that
do not exist) — never INTERNAL, UNKNOWN or a dropped connection."""

from __future__ import annotations

import json

import grpc
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from saferlhf.service.api.errors import field_violations
from saferlhf.v1 import job_service_pb2 as api
from saferlhf.v1 import resources_pb2 as pb
from saferlhf.v1 import runner_service_pb2 as rpb
from saferlhf.v1 import runner_service_pb2_grpc as rpb_grpc

from bench.reliability.strategies import mutate
from tests.integration.service.app_server import app_server
from tests.tools import ROOT

QUICKSTART = yaml.safe_load((ROOT / "examples" / "quickstart.yaml").read_text())
FUZZ = settings(max_examples=60, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    with app_server(tmp_path_factory.mktemp("fuzz")) as ctx:
        yield ctx


def _paths(node, prefix=()):
    if isinstance(node, dict):
        for k, v in node.items():
            yield (*prefix, k)
            yield from _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield (*prefix, i)
            yield from _paths(v, (*prefix, i))


PATHS = list(_paths(QUICKSTART))
VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-10**12, max_value=10**12),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=30),
    st.sampled_from(["../../etc/passwd", "/etc/shadow", "builtin:nope", "hub:x/y", "1e309"]),
    st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=6), st.integers(),
                                                         max_size=2),
)


def _assert_ok_or_invalid_with_violations(call) -> None:
    try:
        call()
    except grpc.RpcError as err:
        assert err.code() is grpc.StatusCode.INVALID_ARGUMENT, (err.code(), err.details())
        assert field_violations(err), err.details()


@FUZZ
@given(mutations=st.lists(st.tuples(st.sampled_from(PATHS), VALUES, st.booleans()),
                          min_size=1, max_size=4))
def test_mutated_specs_are_valid_or_invalid_argument_with_field_violations(served, mutations):
    doc = QUICKSTART
    for path, value, delete in mutations:
        try:
            doc = mutate(doc, path, value, delete)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation removed the parent
    text = yaml.safe_dump(doc, allow_unicode=True)
    _assert_ok_or_invalid_with_violations(lambda: served.jobs.CreateJob(
        api.CreateJobRequest(spec_yaml=text, validate_only=True), timeout=30))


@FUZZ
@given(text=st.text(max_size=300))
def test_arbitrary_text_as_a_spec_is_invalid_argument_with_field_violations(served, text):
    with pytest.raises(grpc.RpcError) as info:
        served.jobs.CreateJob(api.CreateJobRequest(spec_yaml=text, validate_only=True),
                              timeout=30)
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert field_violations(info.value)


@FUZZ
@given(filter_=st.text(max_size=40), page_size=st.integers(-2**31, 2**31 - 1),
       token=st.text(max_size=40))
def test_list_requests_are_ok_or_invalid_argument(served, filter_, page_size, token):
    _assert_ok_or_invalid_with_violations(lambda: served.jobs.ListJobs(api.ListJobsRequest(
        filter=filter_, page_size=page_size, page_token=token), timeout=30))


@FUZZ
@given(job_id=st.text(max_size=40), cursor=st.integers(-2**63, 2**63 - 1))
def test_requests_for_unknown_jobs_are_not_found_or_invalid_argument(served, job_id, cursor):
    for call in (lambda: served.jobs.GetJob(api.GetJobRequest(job_id=job_id), timeout=30),
                 lambda: list(served.jobs.WatchJob(api.WatchJobRequest(
                     job_id=job_id, after_cursor=cursor), timeout=30)),
                 lambda: served.jobs.CancelJob(api.CancelJobRequest(job_id=job_id), timeout=30)):
        with pytest.raises(grpc.RpcError) as info:
            call()
        assert info.value.code() in (grpc.StatusCode.NOT_FOUND,
                                     grpc.StatusCode.INVALID_ARGUMENT), info.value.details()
        if info.value.code() is grpc.StatusCode.INVALID_ARGUMENT:
            assert field_violations(info.value)


EVENTS = st.lists(st.builds(
    pb.Event, seq=st.integers(-5, 2**62), attempt=st.integers(-3, 5), time=st.text(max_size=10),
    type=st.integers(0, 9),
    payload_json=st.one_of(st.text(max_size=30), st.dictionaries(
        st.sampled_from(["step", "values", "total_steps", "message", "level"]),
        st.one_of(st.integers(), st.text(max_size=5), st.none(),
                  st.dictionaries(st.text(max_size=5), st.floats())), max_size=3).map(
        lambda d: json.dumps(d)))), max_size=5)


@FUZZ
@given(events=EVENTS, attempt_id=st.text(max_size=20), token=st.text(
    alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=20))
def test_report_events_with_garbage_is_invalid_or_unauthenticated(served, events, attempt_id,
                                                                   token):
    runner = rpb_grpc.RunnerServiceStub(grpc.insecure_channel(served.address))
    with pytest.raises(grpc.RpcError) as info:
        runner.ReportEvents(rpb.ReportEventsRequest(attempt_id=attempt_id, events=events),
                            metadata=[("authorization", f"Bearer {token}")], timeout=30)
    assert info.value.code() in (grpc.StatusCode.INVALID_ARGUMENT,
                                 grpc.StatusCode.UNAUTHENTICATED), info.value.details()
