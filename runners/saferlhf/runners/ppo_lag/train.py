"""Entry point: the shared stage CLI (exit codes, logging) around `PPOLagTrainer`."""

from __future__ import annotations

from saferlhf.runners.common.config import PPOLagConfig


def run(cfg: PPOLagConfig, local_rank: int | None) -> dict:
    """Run one PPO-Lag stage in this process (rank from the environment)."""
    from saferlhf.runners.common.checkpoint import seed_everything
    from saferlhf.runners.common.dist import destroy
    from saferlhf.runners.common.events import EventSink
    from saferlhf.runners.common.train_setup import init_stage_distributed
    from saferlhf.runners.ppo_lag.trainer import PPOLagTrainer

    dist = init_stage_distributed(cfg, local_rank)
    seed_everything(cfg.seed + dist.rank)
    sink = EventSink(cfg.output_dir, enabled=dist.is_rank0)
    try:
        return PPOLagTrainer(cfg, sink, dist).run()
    finally:
        sink.close()
        destroy()


def main(argv: list[str] | None = None) -> int:
    from saferlhf.runners.common.stage_cli import main as stage_main

    return stage_main("ppo_lag", run, argv)
