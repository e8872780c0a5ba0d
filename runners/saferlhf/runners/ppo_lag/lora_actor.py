"""The LoRA actor of PPO-Lagrangian and its reference: one set of base weights for both.

The reference policy π_ref is the actor's starting point (reference §5.1; the planner passes the
SFT model as `reference_path`). With LoRA the actor is base + adapter, and the base *is* π_ref
when it was loaded from `reference_path`, so π_ref is the actor with its adapters switched off
(`AdapterDisabled`) and no second copy of the weights is held. That holds in two cases:

- `actor_path` is `reference_path` (round 1): base = that policy (an SFT adapter folder is
  merged first), with a fresh adapter (B = 0, so the actor starts exactly at π_ref);
- `actor_path` is a LoRA adapter trained on `reference_path` (round r ≥ 2, the previous round's
  PPO output): base = π_ref, and the previous adapter is trained on.

Otherwise (an actor that is not an adapter over the reference) the adapter goes on the actor and
π_ref is loaded as a separate frozen model, with a warning — the KL term stays against the true
reference either way.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from saferlhf.runners.common.adapters import (
    adapter_base,
    continue_adapter,
    is_adapter_folder,
    same_folder,
)
from saferlhf.runners.common.config import PPOLagConfig
from saferlhf.runners.common.lora import add_lora
from saferlhf.runners.common.models import load_policy
from torch import nn

log = logging.getLogger(__name__)


@dataclass
class LoraStart:
    model: nn.Module  # the peft actor
    tokenizer: object
    base: str  # the folder the adapter is trained on (recorded in the saved adapter)
    reference: nn.Module | None  # a separate π_ref; None = the adapter-disabled base


def load_lora_actor(cfg: PPOLagConfig) -> LoraStart:
    assert cfg.lora is not None
    if same_folder(cfg.actor_path, cfg.reference_path):
        base, tokenizer = load_policy(cfg.actor_path, field="actor_path")
        model = add_lora(base, cfg.lora, field="lora.target_modules")
        return LoraStart(model, tokenizer, cfg.reference_path, None)
    if is_adapter_folder(cfg.actor_path) and _over(cfg.actor_path, cfg.reference_path):
        base, tokenizer = load_policy(cfg.reference_path, field="reference_path")
        model = continue_adapter(base, cfg.actor_path)
        _warn_if_settings_differ(cfg, model)
        return LoraStart(model, tokenizer, cfg.reference_path, None)
    log.warning("actor_path %s is not reference_path %s nor a LoRA adapter trained on it: "
                "the reference is loaded as a separate frozen model", cfg.actor_path,
                cfg.reference_path)
    base, tokenizer = load_policy(cfg.actor_path, field="actor_path")
    model = add_lora(base, cfg.lora, field="lora.target_modules")
    reference, _ = load_policy(cfg.reference_path, field="reference_path")
    return LoraStart(model, tokenizer, cfg.actor_path, reference)


def _over(adapter: str, reference: str) -> bool:
    base, _ = adapter_base(adapter)
    try:
        return same_folder(base, reference)
    except OSError:
        return False


def _warn_if_settings_differ(cfg: PPOLagConfig, model: nn.Module) -> None:
    assert cfg.lora is not None
    saved = model.peft_config["default"]
    ours = (cfg.lora.r, cfg.lora.alpha)
    if ours != (saved.r, saved.lora_alpha) or (
        cfg.lora.target_modules and set(cfg.lora.target_modules) != set(saved.target_modules)
    ):
        log.warning("actor_path's adapter has r=%s alpha=%s on %s; it is trained on as it is "
                    "(lora: r=%s alpha=%s ignored for it)", saved.r, saved.lora_alpha,
                    sorted(saved.target_modules), cfg.lora.r, cfg.lora.alpha)
