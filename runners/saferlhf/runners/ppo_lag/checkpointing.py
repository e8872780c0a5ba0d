"""Checkpoint and resume of a PPO-Lag stage (DESIGN §5): everything, or a loud failure.

A checkpoint holds actor and critics (weights, optimizer, scheduler; DeepSpeed engines save their
own shards), log λ and its SGD state, every rank's episode-cost window, the iteration and step,
the calibration, the guard counters and harmful-prompt flags; `saferlhf.runners.common.checkpoint`
adds each
rank's RNG states, writes atomically and refuses a checkpoint from another world size.
"""

from __future__ import annotations

from typing import Any

import torch
from saferlhf.runners.common import checkpoint as ckpt
from saferlhf.runners.common.dist import get_world_size, is_dist
from saferlhf.runners.common.errors import RunnerError
from saferlhf.runners.ppo_lag.calibration import Calibration
from saferlhf.runners.ppo_lag.guards import GuardState
from saferlhf.runners.ppo_lag.lagrange import EpisodeCostWindow

STATE_KEYS = ("iteration", "global_step", "lagrange", "windows", "guards", "calibration",
              "harmful_flags", "models")


def trained_models(trainer) -> dict[str, Any]:
    nets = trainer.nets
    out = {"actor": nets.actor, "reward_critic": nets.reward_critic}
    if nets.cost_critic is not None:
        out["cost_critic"] = nets.cost_critic
    return out


def save(trainer) -> None:
    """Write a checkpoint at the current step (collective: every rank calls it)."""
    st = trainer.state
    windows = gather_objects(list(trainer.window.costs))
    deepspeed = trainer.cfg.backend.kind == "deepspeed"
    models = {} if deepspeed else {
        name: {"model": ckpt.model_state(m.module), "optimizer": m.optimizer.state_dict(),
               "scheduler": m.scheduler.state_dict()}
        for name, m in trained_models(trainer).items()
    }
    state = {
        "iteration": st.iteration, "global_step": st.global_step,
        "lagrange": trainer.lagrange.state_dict(), "windows": windows,
        "guards": (st.guards.pinned_run, st.guards.below_break_even_run),
        "calibration": trainer.calibration.as_dict() if trainer.calibration else None,
        "threshold": trainer.threshold, "break_even": trainer.break_even,
        "harmful_flags": dict(trainer.harmful_flags), "models": models,
        # the last step's metrics (the result of a run resumed after its last iteration), and
        # the work done so far (the completion check of a resumed run)
        "last_metrics": dict(st.last_metrics), "samples": st.samples,
        "total_steps": trainer.total_steps,
    }
    engines = ({k: m.engine for k, m in trained_models(trainer).items()} if deepspeed
               else None)
    path = ckpt.save_checkpoint(trainer.output_dir, st.global_step, state, engines=engines)
    trainer.sink.checkpoint(st.global_step, path)


def resume(trainer) -> bool:
    """Restore the latest checkpoint into `trainer`; False when there is none."""
    path = ckpt.latest_checkpoint(trainer.output_dir)
    if path is None:
        return False
    deepspeed = trainer.cfg.backend.kind == "deepspeed"
    models = trained_models(trainer)
    engines = {k: m.engine for k, m in models.items()} if deepspeed else None
    state = ckpt.load_checkpoint(path, expected_keys=STATE_KEYS, engines=engines)
    if not deepspeed:
        missing = sorted(set(models) - set(state["models"]))
        if missing:
            raise ckpt.ResumeError(f"cannot resume from {path}: no state for {missing}")
        for name, m in models.items():
            ckpt.restore_model_state(m.module, state["models"][name]["model"], name)
            m.optimizer.load_state_dict(state["models"][name]["optimizer"])
            m.scheduler.load_state_dict(state["models"][name]["scheduler"])
    st = trainer.state
    st.iteration, st.global_step = state["iteration"], state["global_step"]
    check_position(trainer, state, path)
    st.vacuous_checked = True
    st.last_metrics = dict(state.get("last_metrics", {}))
    st.samples = int(state.get("samples", st.iteration * trainer.cfg.rollout.prompt_batch_size))
    st.guards = GuardState(*state["guards"])
    trainer.lagrange.load_state_dict(state["lagrange"])
    trainer.window = EpisodeCostWindow(trainer.cfg.episode_cost_window_size,
                                       state["windows"][trainer.dist.rank])
    if state["calibration"] is not None:
        trainer.calibration = Calibration(**state["calibration"])
    trainer.threshold = state["threshold"]
    trainer.break_even = state["break_even"]
    trainer.harmful_flags = dict(state["harmful_flags"])
    trainer.sink.log(f"resumed from {path} at step {st.global_step} (iteration {st.iteration})")
    return True


def steps_per_iteration(trainer) -> int:
    return trainer.schedule.steps_per_iteration * trainer.cfg.update_iters


def check_position(trainer, state: dict[str, Any], path: Any) -> None:
    """A checkpoint from a run planned differently (prompts, batch sizes, iterations changed)
    or whose step count disagrees with its iteration cannot be resumed without skipping work."""
    problems = []
    planned = state.get("total_steps")
    if planned is not None and planned != trainer.total_steps:
        problems.append(f"it was written by a run planned for {planned} steps, this run plans "
                        f"{trainer.total_steps} (prompts, batch sizes or iterations changed)")
    expected = state["iteration"] * steps_per_iteration(trainer)
    if state["global_step"] != expected:
        problems.append(f"it is at step {state['global_step']} after {state['iteration']} "
                        f"iterations, expected {expected}")
    if problems:
        raise ckpt.ResumeError(f"cannot resume from {path}: " + "; ".join(problems)
                               + ". Restore the stage's config, or delete the checkpoints "
                               "folder to start over.")


class IncompleteRunError(RunnerError):
    """The loop ended without all its planned iterations, steps and rollouts (verl #7401)."""


def check_complete(trainer) -> None:
    """Before the model is written: every planned iteration, step and rollout ran."""
    st, schedule = trainer.state, trainer.schedule
    expected_samples = schedule.total_iterations * trainer.cfg.rollout.prompt_batch_size
    if st.iteration != schedule.total_iterations or st.global_step != trainer.total_steps \
            or st.samples != expected_samples:
        raise IncompleteRunError(
            f"PPO-Lag ended after {st.iteration} of {schedule.total_iterations} iterations, "
            f"{st.global_step} of {trainer.total_steps} steps and {st.samples} of "
            f"{expected_samples} rollout prompts on this rank: work was skipped (a resume that "
            "lost its position?). No model is written; delete the checkpoints folder to start "
            "over.")


def gather_objects(obj: Any) -> list[Any]:
    """Every rank's object, in rank order (rank 0 saves them all)."""
    if not is_dist():
        return [obj]
    out: list[Any] = [None] * get_world_size()
    torch.distributed.all_gather_object(out, obj)
    return out
