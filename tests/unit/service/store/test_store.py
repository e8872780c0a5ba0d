"""The store suite, run on SQLite and on a real PostgreSQL (see conftest)."""

from __future__ import annotations

import threading

import pytest
from saferlhf.service.errors import Conflict, NotFound, SpecError
from saferlhf.service.state.types import (
    Attempt,
    AttemptState,
    FailureClass,
    Gate,
    GateState,
    Job,
    JobState,
    Stage,
)
from saferlhf.service.store import Store, open_store, parse_filter


def make_job(i: int = 0, *, project: str = "p", request_id: str = "", labels=None,
             created_at: float | None = None) -> tuple[Job, list[Stage], list[Gate]]:
    job_id = f"j-{i:05d}"
    job = Job(id=job_id, name=f"job{i}", project=project, spec={"n": i}, request_id=request_id,
              labels=labels or {}, created_at=created_at if created_at is not None else 1000.0 + i,
              updated_at=1000.0 + i)
    stages = [
        Stage("r1/sft", job_id, 1, "sft", config={"kind": "sft", "lr": 3e-4}, output_dir="/o/sft",
              max_attempts=3, resources={"nodes": 1}),
        Stage("r1/reward", job_id, 1, "reward", depends_on=("r1/sft",)),
        Stage("r1/cost", job_id, 1, "cost", depends_on=("r1/sft",)),
    ]
    gates = [Gate("r1/cost/0", job_id, "r1/cost", "eval/accuracy_sign", ">=", 0.75)]
    return job, stages, gates


def test_a_created_job_reads_back_with_its_plan(store: Store) -> None:
    job, stages, gates = make_job()
    store.create_job(job, stages, gates)
    assert store.get_job(job.id) == job
    assert store.list_stages(job.id) == stages
    assert store.list_gates(job.id) == gates
    [(cursor, t)] = store.transitions(job.id)
    assert (cursor, t.subject, t.to_state, t.reason) == (1, "job", "PENDING", "Created")


def test_the_schema_is_migrated_once_and_reopening_keeps_the_data(store_url: str) -> None:
    s1 = open_store(store_url)
    job, stages, gates = make_job()
    s1.create_job(job, stages, gates)
    version = s1.schema_version()
    s1.close()
    s2 = open_store(store_url)
    assert s2.schema_version() == version >= 1
    assert s2.get_job(job.id).name == "job0"
    s2.close()


def test_a_repeated_request_id_returns_the_first_job(store: Store) -> None:
    job, stages, gates = make_job(1, request_id="req-1")
    created, fresh = store.create_job(job, stages, gates)
    assert fresh
    again, fresh2 = store.create_job(make_job(2, request_id="req-1")[0], stages, gates)
    assert not fresh2 and again.id == created.id
    # the same request id in another project is a different request
    other, fresh3 = store.create_job(make_job(3, project="q", request_id="req-1")[0], [], [])
    assert fresh3 and other.id == "j-00003"


def test_unknown_jobs_raise_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        store.get_job("nope")
    with pytest.raises(NotFound):
        store.set_job_state("nope", JobState.RUNNING, at=1.0)


def test_job_state_changes_are_recorded_with_time_and_reason(store: Store) -> None:
    job, stages, gates = make_job()
    store.create_job(job, stages, gates)
    j = store.set_job_state(job.id, JobState.RUNNING, at=2000.0, reason="Started")
    assert j.state == JobState.RUNNING and j.updated_at == 2000.0
    j = store.set_job_state(job.id, JobState.FAILED, at=2001.0, reason="StageFailed",
                            message="r1/sft failed")
    assert j.finished_at == 2001.0 and j.message == "r1/sft failed"
    ts = [t for _, t in store.transitions(job.id)]
    assert [(t.from_state, t.to_state, t.reason) for t in ts[1:]] == [
        ("PENDING", "RUNNING", "Started"), ("RUNNING", "FAILED", "StageFailed")]
    with pytest.raises(Conflict):
        store.set_job_state(job.id, JobState.CANCELLING, at=2002.0,
                            expect=[JobState.RUNNING, JobState.PENDING])


def test_attempts_count_against_the_stage_budget(store: Store) -> None:
    job, stages, gates = make_job()
    store.create_job(job, stages, gates)
    for n in (1, 2):
        assert store.next_attempt_number(job.id, "r1/sft") == n
        store.add_attempt(Attempt(f"{job.id}/r1/sft/{n}", job.id, "r1/sft", n, created_at=n))
    assert store.get_stage(job.id, "r1/sft").attempts == 2
    a = store.update_attempt(f"{job.id}/r1/sft/2", at=5.0, state=AttemptState.FAILED,
                             reason="Exit", exit_code=75, failure=FailureClass.TRANSIENT)
    assert (a.state, a.exit_code, a.failure) == (AttemptState.FAILED, 75, FailureClass.TRANSIENT)
    assert [x.id for x in store.attempts_in_states([AttemptState.PENDING])] == [
        f"{job.id}/r1/sft/1"]
    assert [x.number for x in store.list_attempts(job.id)] == [1, 2]


def test_stage_and_gate_updates_record_transitions(store: Store) -> None:
    job, stages, gates = make_job()
    store.create_job(job, stages, gates)
    s = store.update_stage(job.id, "r1/sft", at=3.0, state=AttemptState.SUCCEEDED,
                           reason="Exit0", result={"eval/accuracy": 0.9}, progress=1.0)
    assert s.result == {"eval/accuracy": 0.9} and s.progress == 1.0
    g = store.update_gate(job.id, "r1/cost/0", at=4.0, state=GateState.AWAITING_APPROVAL,
                          observed=0.5, message="0.5 >= 0.75 is false")
    assert g.observed == 0.5
    with pytest.raises(Conflict):
        store.update_gate(job.id, "r1/cost/0", at=5.0, state=GateState.APPROVED,
                          expect=[GateState.PASSED])
    subjects = [t.subject for _, t in store.transitions(job.id)]
    assert subjects == ["job", "r1/sft", "gate:r1/cost/0"]


def test_events_are_stored_once_by_attempt_and_seq_with_increasing_cursors(store: Store) -> None:
    job, stages, gates = make_job()
    store.create_job(job, stages, gates)
    ev = [{"seq": s, "attempt": 1, "time": "t", "type": "metrics", "step": s,
           "values": {"train/lambda": float(s)}} for s in (1, 2, 3)]
    new = store.add_events(job.id, "a1", "r1/sft", ev[:2])
    assert [e.seq for e in new] == [1, 2]
    again = store.add_events(job.id, "a1", "r1/sft", ev)  # 1, 2 re-sent; 3 is new
    assert [e.seq for e in again] == [3]
    stored = store.events(job.id)
    assert [e.seq for e in stored] == [1, 2, 3]
    cursors = [e.cursor for e in stored]
    assert cursors == sorted(cursors) and len(set(cursors)) == 3
    assert store.latest_metrics(job.id) == {"r1/sft": {"train/lambda": 3.0}}
    assert store.events(job.id, after_cursor=cursors[1])[0].seq == 3
    assert stored[0].payload == {"attempt": 1, "step": 1, "values": {"train/lambda": 1.0}}
    # another attempt may reuse seq numbers
    assert len(store.add_events(job.id, "a2", "r1/sft", ev[:1])) == 1
    assert store.max_cursor(job.id) == max(e.cursor for e in store.events(job.id))


def test_concurrent_ingestion_never_doubles_an_event(store: Store) -> None:
    job, stages, gates = make_job()
    store.create_job(job, stages, gates)
    ev = [{"seq": s, "time": "t", "type": "progress", "step": s, "total_steps": 50}
          for s in range(1, 51)]
    errors = []

    def send() -> None:
        try:
            store.add_events(job.id, "a1", "r1/sft", ev)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=send) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert [e.seq for e in store.attempt_events("a1")] == list(range(1, 51))


def test_listing_pages_through_every_job_once_newest_first(store: Store) -> None:
    for i in range(7):
        job, _, _ = make_job(i, project="a" if i % 2 else "b", labels={"team": str(i % 3)},
                             created_at=1000.0 + (i // 2))  # ties on created_at on purpose
        store.create_job(job, [], [])
    flt = parse_filter("")
    seen, token = [], ""
    while True:
        jobs, token = store.list_jobs(flt, 3, token)
        seen += [j.id for j in jobs]
        if not token:
            break
    assert len(seen) == 7 and len(set(seen)) == 7
    keys = [(store.get_job(i).created_at, i) for i in seen]
    assert keys == sorted(keys, reverse=True)
    jobs, _ = store.list_jobs(parse_filter("project=a"), 10)
    assert {j.project for j in jobs} == {"a"} and len(jobs) == 3
    jobs, _ = store.list_jobs(parse_filter("label.team=0"), 10)
    assert sorted(j.id for j in jobs) == ["j-00000", "j-00003", "j-00006"]
    jobs, _ = store.list_jobs(parse_filter("", projects=["b"]), 10)
    assert {j.project for j in jobs} == {"b"}
    assert store.list_jobs(parse_filter("project=a", projects=["b"]), 10) == ([], "")


def test_page_tokens_are_checked(store: Store) -> None:
    for i in range(3):
        store.create_job(make_job(i)[0], [], [])
    _, token = store.list_jobs(parse_filter(""), 1)
    with pytest.raises(SpecError, match="another filter"):
        store.list_jobs(parse_filter("state=RUNNING"), 1, token)
    with pytest.raises(SpecError, match="page_token"):
        store.list_jobs(parse_filter(""), 1, "garbage!!")


def test_bad_filters_name_the_term() -> None:
    with pytest.raises(SpecError) as err:
        parse_filter("state=NOPE colour=red justtext")
    fields = [v.description for v in err.value.violations]
    assert len(fields) == 3 and "unknown state 'NOPE'" in fields[0]


def test_jobs_are_counted_by_project_and_state(store: Store) -> None:
    for i in range(3):
        store.create_job(make_job(i, project="a" if i else "b")[0], [], [])
    store.set_job_state("j-00001", JobState.RUNNING, at=1.0)
    assert store.count_jobs_by_state() == {("a", "PENDING"): 1, ("a", "RUNNING"): 1,
                                           ("b", "PENDING"): 1}
    assert [j.id for j in store.active_jobs()] == ["j-00000", "j-00001", "j-00002"]


def test_an_older_database_is_migrated_forward_at_open(store_url: str, monkeypatch) -> None:
    import saferlhf.service.store.schema as schema

    latest = schema.MIGRATIONS
    monkeypatch.setattr(schema, "MIGRATIONS", latest[:1])  # a database from the first release
    old = open_store(store_url)
    assert old.schema_version() == 1
    old.close()
    monkeypatch.setattr(schema, "MIGRATIONS", latest)
    new = open_store(store_url)
    assert new.schema_version() == latest[-1][0] >= 2
    job, stages, gates = make_job()
    stages[0] = Stage(**{**stages[0].__dict__, "timeout_minutes": 45.0})
    new.create_job(job, stages, gates)
    assert new.get_stage(job.id, "r1/sft").timeout_minutes == 45.0
    new.close()


def test_a_bad_database_url_names_the_setting() -> None:
    with pytest.raises(SpecError) as err:
        open_store("mysql://x/y")
    assert err.value.violations[0].field == "database_url"


def test_an_unreachable_postgres_is_unavailable_without_leaking_the_password() -> None:
    from saferlhf.service.errors import Unavailable

    with pytest.raises(Unavailable) as err:
        open_store("postgresql://user:s3cret@127.0.0.1:1/db?connect_timeout=2")
    assert "s3cret" not in err.value.message and "user:***@" in err.value.message
