"""Distributed helpers on gloo: SUM-then-divide means, uneven gathers, env initialisation."""

import os

import pytest
import torch
import torch.multiprocessing as mp
from saferlhf.runners.common import dist


def test_one_process_needs_no_launcher_environment(monkeypatch):
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    info = dist.init_distributed()
    assert (info.rank, info.world_size, info.local_rank, info.is_rank0) == (0, 1, 0, True)
    assert not dist.is_dist()
    assert dist.all_reduce_mean(torch.tensor([3.0])).item() == 3.0


def test_the_local_rank_argument_fills_in_when_the_environment_lacks_it(monkeypatch):
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert dist.env_rank_info(local_rank_arg=3)[2] == 3
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert dist.env_rank_info(local_rank_arg=3)[2] == 1


def _worker(rank: int, world: int, port: int, out) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_distributed()
    mean = dist.all_reduce_mean(torch.tensor([float(rank + 1), 10.0 * rank]))
    gathered = dist.all_gather_cat(torch.arange(rank + 1, dtype=torch.float32) + 100 * rank)
    weighted = dist.weighted_mean(torch.tensor(float(rank + 1) * 2), torch.tensor(float(rank + 1)))
    obj = dist.broadcast_object({"rank": rank} if rank == 0 else None)
    out.put((rank, mean.tolist(), gathered.tolist(), float(weighted), obj))
    dist.barrier()
    dist.destroy()


@pytest.mark.slow
def test_two_gloo_processes_reduce_means_and_gather_uneven_tensors():
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    port = dist.free_port()
    procs = [ctx.Process(target=_worker, args=(r, 2, port, queue)) for r in range(2)]
    for p in procs:
        p.start()
    results = sorted(queue.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    for _, mean, gathered, weighted, obj in results:
        assert mean == pytest.approx([1.5, 5.0])
        assert gathered == [0.0, 100.0, 101.0]
        assert weighted == pytest.approx(2.0)
        assert obj == {"rank": 0}


def test_no_runner_module_uses_reduce_op_avg():
    from pathlib import Path

    root = Path(dist.__file__).parents[1]
    offenders = [str(p) for p in root.rglob("*.py") if "ReduceOp.AVG" in p.read_text()]
    assert offenders == []


def test_stage_clis_accept_the_deepspeed_launchers_local_rank_flag():
    from saferlhf.runners.common.stage_cli import parse_args

    assert parse_args("sft", ["--config", "s.json", "--local_rank=1"]).local_rank == 1
    assert parse_args("cost", ["--config", "s.json"]).local_rank == -1
