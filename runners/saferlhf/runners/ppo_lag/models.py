"""The six networks of PPO-Lagrangian (reference §5.1), loaded from a stage config."""

from __future__ import annotations

from dataclasses import dataclass

from saferlhf.runners.common.config import PPOLagConfig
from saferlhf.runners.common.errors import InvalidInputError
from saferlhf.runners.ppo_lag.engines import TrainedModel, check_precision, frozen
from saferlhf.runners.ppo_lag.scoring import ModelScorer, OracleScorer, load_score_model
from saferlhf.runners.ppo_lag.setup import require_path


@dataclass
class Networks:
    tokenizer: object
    actor: TrainedModel
    reference: object
    reward_critic: TrainedModel
    cost_critic: TrainedModel | None
    scorer: object  # OracleScorer | ModelScorer
    actor_base: str | None = None  # LoRA: the folder the actor's adapter is trained on


def uses_cost_critic(cfg: PPOLagConfig) -> bool:
    return cfg.algorithm == "ppo_lag"


def needs_cost(cfg: PPOLagConfig) -> bool:
    return cfg.algorithm in ("ppo_lag", "reward_shaping")


def _critic(cfg: PPOLagConfig, path: str | None, field: str, actor_tokenizer):
    from saferlhf.runners.common.score_model import ScoreModel

    if cfg.critic_init == "policy" or cfg.reward_source == "oracle" or path is None:
        return ScoreModel.from_policy(cfg.actor_path, score_type="critic", normalizer_type=None)
    require_path(path, field, "critic initialisation (a reward/cost model folder)")
    model, tokenizer = load_score_model(path, "critic")
    if tokenizer is not None and tokenizer.get_vocab() != actor_tokenizer.get_vocab():
        raise InvalidInputError(
            f"the critic at {path} has a different tokenizer from the actor; critics must share "
            "the actor's tokens (reference §5.1). Set `critic_init: policy`", field=field,
        )
    model.train()
    return model


def _with_critic_lora(cfg: PPOLagConfig, critic):
    if cfg.critic_lora is None:
        return critic
    from saferlhf.runners.common.lora import add_lora_to_score_model

    return add_lora_to_score_model(critic, cfg.critic_lora, field="critic_lora.target_modules")


def _actor_and_reference(cfg: PPOLagConfig, total_steps: int):
    """(actor TrainedModel, reference, tokenizer, LoRA base or None)."""
    from saferlhf.runners.common.models import load_policy

    backend, mb = cfg.backend, cfg.batch_size
    if cfg.lora is None:
        actor_model, tokenizer = load_policy(cfg.actor_path, field="actor_path")
        reference_model, _ = load_policy(cfg.reference_path, field="reference_path")
        actor = TrainedModel(actor_model, cfg.actor_optim, total_steps, backend,
                             micro_batch_size=mb)
        return actor, frozen(reference_model, backend), tokenizer, None
    from saferlhf.runners.common.lora import AdapterDisabled
    from saferlhf.runners.ppo_lag.lora_actor import load_lora_actor

    start = load_lora_actor(cfg)
    actor = TrainedModel(start.model, cfg.actor_optim, total_steps, backend, micro_batch_size=mb)
    reference = (AdapterDisabled(start.model, call=actor.module) if start.reference is None
                 else frozen(start.reference, backend))
    return actor, reference, start.tokenizer, start.base


def build_networks(cfg: PPOLagConfig, total_steps: int) -> Networks:
    require_path(cfg.actor_path, "actor_path", "the starting policy folder")
    require_path(cfg.reference_path, "reference_path", "the reference policy folder")
    if cfg.backend.kind == "deepspeed" and cfg.backend.precision != "fp32":
        raise InvalidInputError(
            "backend.precision is the plain backend's; under DeepSpeed set "
            "backend.deepspeed.precision", field="backend.precision")
    check_precision(cfg.backend)
    actor, reference, tokenizer, actor_base = _actor_and_reference(cfg, total_steps)
    backend = cfg.backend
    mb = cfg.batch_size

    if cfg.reward_source == "oracle":
        scorer: object = OracleScorer()
    else:
        rm_path = require_path(cfg.reward_model_path, "reward_model_path",
                               "a reward model (or set reward_source: oracle)")
        rm, rm_tok = load_score_model(rm_path, "reward")
        cm = cm_tok = None
        if cfg.cost_model_path or needs_cost(cfg):
            cm_path = require_path(cfg.cost_model_path, "cost_model_path",
                                   f"a cost model ({cfg.algorithm} needs one)")
            cm, cm_tok = load_score_model(cm_path, "cost")
            cm = frozen(cm, backend)
        scorer = ModelScorer(frozen(rm, backend), rm_tok, cm, cm_tok, tokenizer)

    reward_critic = TrainedModel(
        _with_critic_lora(cfg, _critic(cfg, cfg.reward_critic_path or cfg.reward_model_path,
                                       "reward_critic_path", tokenizer)),
        cfg.critic_optim, total_steps, backend, micro_batch_size=mb,
    )
    cost_critic = None
    if uses_cost_critic(cfg):
        cost_critic = TrainedModel(
            _with_critic_lora(cfg, _critic(cfg, cfg.cost_critic_path or cfg.cost_model_path,
                                           "cost_critic_path", tokenizer)),
            cfg.critic_optim, total_steps, backend, micro_batch_size=mb,
        )
    return Networks(tokenizer, actor, reference, reward_critic, cost_critic, scorer, actor_base)
