"""The PPO-Lagrangian stage loop (reference §5): rollout → λ update → actor → critics, per
micro-batch, with events, checkpoints and the safety-budget calibration around it.

    for each iteration:
        roll out this rank's prompt batch in micro-batches (generate, score, log-probs, values)
        add the sampled costs to the episode-cost window
        for each update iter, for each micro-batch:
            λ update (ppo_lag, after the delay)  →  actor step  →  critic steps  →  metrics
        checkpoint when due or when SIGTERM asked for it
"""

from __future__ import annotations

import contextlib
import logging
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from saferlhf.runners.common import checkpoint as ckpt
from saferlhf.runners.common.config import PPOLagConfig
from saferlhf.runners.common.dist import (
    DistInfo,
    all_reduce_mean,
    get_world_size,
    is_dist,
)
from saferlhf.runners.common.errors import InvalidInputError, TransientError
from saferlhf.runners.common.events import EventSink
from saferlhf.runners.ppo_lag import checkpointing
from saferlhf.runners.ppo_lag.calibration import Calibration, break_even_lambda
from saferlhf.runners.ppo_lag.engine_sync import SyncStats, make_engine, sync_actor
from saferlhf.runners.ppo_lag.guards import (
    DEFAULT_VACUOUS_TARGET,
    GuardState,
    update_guards,
    vacuous_threshold,
)
from saferlhf.runners.ppo_lag.lagrange import (
    EpisodeCostWindow,
    LagrangeMultiplier,
    broadcast_scalar,
)
from saferlhf.runners.ppo_lag.models import Networks, build_networks
from saferlhf.runners.ppo_lag.rollout import Experience, collect_experience
from saferlhf.runners.ppo_lag.setup import (
    PromptRow,
    Schedule,
    iteration_prompts,
    load_prompt_rows,
    make_schedule,
)
from saferlhf.runners.ppo_lag.step import (
    compute_advantages,
    rl_step,
    rl_step_reusing_rollout,
    rollout_metrics,
)
from saferlhf.runners.ppo_lag.timing import PhaseTimer

log = logging.getLogger(__name__)



class Stopped(TransientError):
    """SIGTERM arrived and a checkpoint was written: exit 75 so a retry resumes from it."""


@dataclass
class LoopState:
    iteration: int = 0
    global_step: int = 0
    guards: GuardState = field(default_factory=GuardState)
    vacuous_checked: bool = False
    last_metrics: dict[str, float] = field(default_factory=dict)
    samples: int = 0  # prompts this rank rolled out, over every resume (the completion check)


class PPOLagTrainer:
    def __init__(self, cfg: PPOLagConfig, sink: EventSink, dist: DistInfo,
                 *, timer: PhaseTimer | None = None) -> None:
        self.cfg, self.sink, self.dist = cfg, sink, dist
        self.timer = timer or PhaseTimer()
        self.output_dir = Path(cfg.output_dir)
        self.threshold: float | None = cfg.threshold
        self.calibration: Calibration | None = None
        self.break_even: float | None = None
        self.harmful_flags: dict[str, bool] = {}
        self.state = LoopState()

        self.prompts: list[PromptRow] = []
        self.schedule: Schedule
        self.nets: Networks
        self.lagrange = LagrangeMultiplier(cfg.lambda_init, cfg.lambda_lr, cfg.lambda_max)
        self.window = EpisodeCostWindow(cfg.episode_cost_window_size)
        self.ptx: list | None = None
        self.engine = None  # RolloutEngine, built in setup
        self.sync_stats = SyncStats()

    # -- setup -----------------------------------------------------------------------------------
    def setup(self) -> None:
        from saferlhf.runners.ppo_lag.setup import require_path
        from transformers import AutoTokenizer

        require_path(self.cfg.actor_path, "actor_path", "the starting policy folder")
        require_path(self.cfg.reference_path, "reference_path", "the reference policy folder")
        tokenizer = AutoTokenizer.from_pretrained(self.cfg.actor_path)  # the template's EOS
        self.prompts = load_prompt_rows(self.cfg.prompts, tokenizer.eos_token, self.cfg.seed)
        self.schedule = make_schedule(self.cfg, len(self.prompts), get_world_size())
        self.total_steps = self.schedule.total_steps(self.cfg.update_iters)
        self.nets = build_networks(self.cfg, self.total_steps)
        self.log_lora()
        self.max_prompt_tokens = prompt_budget(self.cfg, self.nets.actor.bare.config)
        self.engine = make_engine(self)
        self.reuse = self.cfg.reuse_rollout_forward and self.reuse_allowed()
        if self.cfg.ptx_data:
            from saferlhf.runners.ppo_lag.ptx import load_ptx

            self.ptx = load_ptx(self.cfg, self.nets.tokenizer)

    def log_lora(self) -> None:
        """Where the adapters are and what share of the weights trains, once per attempt."""
        from saferlhf.runners.common.lora import AdapterDisabled, describe

        nets = self.nets
        if self.cfg.lora is not None:
            reference = ("the adapter-disabled base" if isinstance(nets.reference, AdapterDisabled)
                         else "a separate frozen copy of reference_path")
            self.sink.log(f"actor: {describe(nets.actor.bare)}; reference = {reference}")
        if self.cfg.critic_lora is not None:
            self.sink.log(f"reward critic: {describe(nets.reward_critic.bare)}")

    def reuse_allowed(self) -> bool:
        """reuse_rollout_forward needs dropout-free actor and critics (ppo_lag/reuse.py)."""
        from saferlhf.runners.ppo_lag.reuse import reuse_possible

        nets = self.nets
        critics = [c.bare if c is not None else None for c in (nets.reward_critic,
                                                              nets.cost_critic)]
        if reuse_possible(nets.actor.bare, *critics):
            return True
        self.sink.log("reuse_rollout_forward is on but the actor or a critic has dropout: the "
                      "rollout's forwards are computed separately", level="info")
        return False

    @property
    def synced_gpus(self) -> bool:
        backend = self.cfg.backend
        return backend.kind == "deepspeed" and backend.deepspeed.zero_stage == 3

    # -- the run -----------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        self.setup()
        previous_handler = signal.getsignal(signal.SIGTERM)
        self.stop = ckpt.StopSignal()
        try:
            return self.loop()
        finally:
            with contextlib.suppress(ValueError):  # not the main thread
                signal.signal(signal.SIGTERM, previous_handler)
            if self.engine is not None:
                self.engine.close()

    def loop(self) -> dict[str, Any]:
        resumed = checkpointing.resume(self)
        sync_actor(self)  # the engine started from a folder: the actor's weights (resumed, LoRA)
        if not resumed and self.cfg.safety_budget is not None and self.cfg.algorithm == "ppo_lag":
            from saferlhf.runners.ppo_lag.calibrate_pass import calibrate

            self.calibration, self.harmful_flags = calibrate(self)
            self.threshold = self.calibration.threshold
            self.break_even = self.calibration.break_even_lambda
            self.emit_calibration()
        st = self.state
        while st.iteration < self.schedule.total_iterations:
            self.run_iteration()
            st.iteration += 1
            last = st.iteration == self.schedule.total_iterations
            stop = self.stop.should_stop()
            if stop or (not last and self.checkpoint_due()):
                checkpointing.save(self)
            if stop:
                self.sink.log(f"SIGTERM: checkpoint written at step {st.global_step}; exiting",
                              level="warning")
                raise Stopped(f"SIGTERM: checkpoint written at step {st.global_step}; "
                              "exiting so that a retry resumes from it")
        return self.finish()

    def run_iteration(self) -> None:
        cfg, st, nets = self.cfg, self.state, self.nets
        rows = iteration_prompts(
            self.prompts, st.iteration, self.schedule, seed=cfg.seed, rank=self.dist.rank,
            world_size=get_world_size(), prompt_batch_size=cfg.rollout.prompt_batch_size,
        )
        chunk = self.schedule.prompts_per_chunk
        batch: list[Experience] = []
        self.engine.wake()
        for start in range(0, len(rows), chunk):
            part = rows[start : start + chunk]
            exp = collect_experience(
                actor=nets.actor, reference=nets.reference, reward_critic=nets.reward_critic,
                cost_critic=nets.cost_critic, scorer=nets.scorer, tokenizer=nets.tokenizer,
                prompts=[r.text for r in part], is_harmful=[r.is_harmful for r in part],
                rollout_params=cfg.rollout, engine=self.engine,
                max_prompt_tokens=self.max_prompt_tokens, timer=self.timer,
                # the first micro-batch is trained first, at the rollout's weights: its actor
                # and critic forwards can wait for the update (reuse_rollout_forward)
                policy_forwards=not (self.reuse and start == 0),
            )
            if exp.costs is not None:
                self.window.extend(self.scoped_costs(exp))
            batch.append(exp)
            st.samples += len(part)
        self.engine.sleep()  # frees the engine's KV cache while the actor trains (GPU only)
        if not st.vacuous_checked:
            self.check_vacuous(batch)
        advantages = [None if exp.deferred else compute_advantages(exp, cfg) for exp in batch]
        for _ in range(cfg.update_iters):
            for i, exp in enumerate(batch):
                lam = self.lagrange_update()
                ptx = self.ptx_batch() if self.ptx else None
                adv = advantages[i]
                if adv is None:
                    metrics, adv = rl_step_reusing_rollout(nets, exp, lam, cfg, ptx_batch=ptx,
                                                           timer=self.timer)
                    advantages[i] = adv
                else:
                    metrics = rl_step(nets, exp, adv, lam, cfg, ptx_batch=ptx, timer=self.timer)
                metrics.update(rollout_metrics(exp, adv, cfg))
                st.global_step += 1
                self.emit_step(metrics, exp)
                self.stop.after_step(st.global_step)
        sync_actor(self)  # the updated actor into the rollout engine, before it samples again

    # -- λ ---------------------------------------------------------------------------------------
    def episode_cost(self) -> float:
        """J_C: each rank's window mean, averaged over ranks (SUM then divide)."""
        local = torch.tensor([self.window.local_mean()], dtype=torch.float64)
        return float(all_reduce_mean(local).item())

    def lagrange_update(self) -> float:
        """Reference §5.6: at the start of every rl step once global_step ≥ delay (ppo_lag only)."""
        cfg = self.cfg
        if cfg.algorithm != "ppo_lag":
            return cfg.lambda_init if cfg.algorithm == "reward_shaping" else 0.0
        if self.state.global_step >= cfg.lambda_update_delay_steps:
            self.lagrange.step(self.episode_cost(), self.threshold_value)
            self.lagrange.set_log_lambda(broadcast_scalar(float(self.lagrange.log_lambda.detach())))
        return self.lagrange.value

    @property
    def threshold_value(self) -> float:
        assert self.threshold is not None, "ppo_lag without threshold (config validator)"
        return self.threshold

    def scoped_costs(self, exp: Experience) -> list[float]:
        """The costs that enter the window: all of them, or harmful prompts' only (budget scope)."""
        costs = exp.costs.tolist()
        budget = self.cfg.safety_budget
        if budget is None or budget.scope == "all_prompts":
            return costs
        keep = []
        for prompt, harmful, c in zip(exp.prompts, exp.is_harmful, costs, strict=True):
            if harmful is None:  # unmarked data: the calibration pass's flag, else this sample
                harmful = self.harmful_flags.setdefault(prompt, c > 0)
            if harmful:
                keep.append(c)
        return keep

    # -- guards ----------------------------------------------------------------------------------
    def check_vacuous(self, batch: list[Experience]) -> None:
        """VacuousThreshold, once at the start of a fresh run (from the calibration, or the first
        iteration's rollouts for a raw threshold)."""
        self.state.vacuous_checked = True
        if self.cfg.algorithm != "ppo_lag" or batch[0].costs is None:
            return
        if self.calibration is not None:
            cal = self.calibration
            start_cost, rate, target = cal.start_episode_cost, cal.start_harmful_rate, cal.target
        else:
            costs = torch.cat([e.costs for e in batch]).tolist()
            flags = [h for e in batch for h in e.is_harmful]
            harmful = [bool(h) if h is not None else c > 0 for h, c in zip(flags, costs,
                                                                          strict=True)]
            rewards = torch.cat([e.rewards for e in batch]).tolist()
            on_harmful = [c for c, h in zip(costs, harmful, strict=True) if h] or costs
            stats = torch.tensor([sum(costs) / len(costs),
                                  sum(c > 0 for c in on_harmful) / len(on_harmful)],
                                 dtype=torch.float64)
            start_cost, rate = all_reduce_mean(stats).tolist()
            target = DEFAULT_VACUOUS_TARGET
            self.break_even = break_even_lambda(costs, harmful, rewards)
        event = vacuous_threshold(start_cost, self.threshold_value, rate, target)
        if event is not None:
            self.sink.log(event.message, level="warning")
            self.sink.metrics(self.state.global_step, {"guard/VacuousThreshold": 1.0})
            log.warning(event.message)

    # -- events ----------------------------------------------------------------------------------
    def emit_step(self, metrics: dict[str, float], exp: Experience) -> None:
        cfg, st = self.cfg, self.state
        metrics = reduce_metrics(metrics)
        metrics["train/max_generated_length"] = reduce_max(float(exp.generated_lengths.max()))
        if exp.costs is not None:
            metrics["train/episode_cost"] = self.episode_cost()
        if cfg.algorithm == "ppo_lag":
            lam = self.lagrange.value
            metrics["train/lambda"] = lam
            metrics["train/threshold"] = self.threshold_value
            st.guards, events, guard_metrics = update_guards(
                st.guards, lam=lam, lambda_max=cfg.lambda_max,
                episode_cost=metrics["train/episode_cost"], threshold=self.threshold_value,
                break_even=self.break_even,
            )
            metrics.update(guard_metrics)
            for event in events:
                self.sink.log(event.message, level="warning")
                log.warning(event.message)
        st.last_metrics = metrics
        self.sink.metrics(st.global_step, metrics)
        self.sink.progress(st.global_step, self.total_steps)

    def emit_calibration(self) -> None:
        cal = self.calibration
        assert cal is not None
        values = {f"calibration/{k}": float(v) for k, v in cal.as_dict().items()
                  if isinstance(v, int | float) and v is not None}
        self.sink.metrics(0, values)
        self.sink.log(
            f"safety budget calibrated: at most {cal.target:.1%} harmful on {cal.scope} → "
            f"threshold d = {cal.threshold:.4g} (mean cost safe {cal.mean_cost_safe:.4g}, "
            f"unsafe {cal.mean_cost_unsafe:.4g}; harmful prompt share "
            f"{cal.harmful_prompt_share:.3g}; starting policy harmful rate "
            f"{cal.start_harmful_rate:.1%}, J_C {cal.start_episode_cost:.4g}; "
            f"break-even λ {cal.break_even_lambda}; {cal.samples} samples, prompt labels from "
            f"{cal.prompt_labels})"
        )

    # -- checkpoints -----------------------------------------------------------------------------
    def checkpoint_due(self) -> bool:
        every = self.cfg.checkpoint_every_steps
        per_iter = self.schedule.steps_per_iteration * self.cfg.update_iters
        before = self.state.global_step - per_iter
        return self.state.global_step // every > before // every

    # -- end -------------------------------------------------------------------------------------
    def ptx_batch(self):
        from saferlhf.runners.ppo_lag.ptx import batch_at

        return batch_at(self.ptx, self.state.global_step, self.cfg.batch_size,
                        self.nets.tokenizer.pad_token_id)

    def finish(self) -> dict[str, Any]:
        from saferlhf.runners.common.models import save_model

        checkpointing.check_complete(self)
        nets = self.nets
        full = nets.actor.full_state_dict()
        if self.cfg.lora is not None and nets.actor_base is not None:
            from saferlhf.runners.common.adapters import save_adapter

            save_adapter(nets.actor.bare, nets.tokenizer, self.output_dir / "model",
                         base=nets.actor_base, merged=self.cfg.lora.save_merged, state_dict=full)
        else:
            save_model(nets.actor.bare, nets.tokenizer, self.output_dir / "model",
                       state_dict=full)
        self.sink.artifact("model", self.output_dir / "model")
        last = self.state.last_metrics
        result: dict[str, Any] = {
            "algorithm": self.cfg.algorithm,
            "iterations": self.state.iteration,
            "global_step": self.state.global_step,
            "model_path": str(self.output_dir / "model"),
            "final_lambda": self.lagrange.value if self.cfg.algorithm == "ppo_lag" else None,
            "episode_cost": last.get("train/episode_cost"),
            "threshold": self.threshold,
            "calibration": self.calibration.as_dict() if self.calibration else None,
            "train/reward": last.get("train/reward"),
            "train/cost": last.get("train/cost"),
            "train/harmful_rate": last.get("train/harmful_rate"),
            "train/kl_divergence": last.get("train/kl_divergence"),
            **self.sync_stats.summary(self.cfg.rollout.engine),
        }
        self.sink.result(result)
        return result


def prompt_budget(cfg: PPOLagConfig, model_config) -> int:
    """Prompt tokens kept (cut on the left): max_length_tokens, and room for the response
    within the model's context."""
    context = (getattr(model_config, "n_positions", None)
               or getattr(model_config, "max_position_embeddings", None))
    budget = cfg.max_length_tokens
    if context:
        budget = min(budget, int(context) - cfg.rollout.max_new_tokens)
    if budget < 1:
        raise InvalidInputError(
            f"rollout.max_new_tokens ({cfg.rollout.max_new_tokens}) leaves no room for the prompt "
            f"in the model's context of {context} tokens; lower it", field="rollout.max_new_tokens",
        )
    return budget


def reduce_metrics(values: dict[str, float]) -> dict[str, float]:
    """Mean of every metric over ranks (SUM then divide); one collective for all keys."""
    if not is_dist():
        return dict(values)
    keys = sorted(values)
    stacked = all_reduce_mean(torch.tensor([values[k] for k in keys], dtype=torch.float64))
    return {k: float(v) for k, v in zip(keys, stacked.tolist(), strict=True)}


def reduce_max(value: float) -> float:
    if not is_dist():
        return value
    t = torch.tensor([value], dtype=torch.float64)
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
    return float(t.item())
