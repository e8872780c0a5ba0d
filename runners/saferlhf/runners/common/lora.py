"""LoRA adapters (peft) on policies and score models, and the weights an inference engine gets.

A LoRA layer keeps its weight W frozen and learns a low-rank update: y = W·x + s·B·A·x with
A (r × in), B (out × r), s = alpha / r (Hu et al. 2021). Training holds gradients and Adam state
for A and B only, and the frozen base doubles as the PPO reference model (`AdapterDisabled`).

`engine_weights` is the one place that turns a model into the tensors a serving engine (vLLM)
loads: W' = W + s·B·A under the base model's own parameter names for a peft model, the plain
state dict otherwise. It is pure (nothing is mutated, no layer is merged in place).

peft is imported lazily: a stage without LoRA never pays its import.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import torch
from saferlhf.runners.common.config import LORA_DEFAULT_TARGETS, LoraSpec
from saferlhf.runners.common.errors import InvalidInputError
from torch import nn

ADAPTABLE_TYPES = ("Linear", "Conv1D")  # nn.Linear; transformers' GPT-2 Conv1D (W is in × out)
PEFT_WRAPPER = "base_model.model."  # what a PeftModel puts in front of its base model's names
BASE_LAYER = ".base_layer"  # what a LoRA layer puts between its name and the wrapped weight


# --------------------------------------------------------------------------------------------
# Which layers get adapters
# --------------------------------------------------------------------------------------------


def adaptable_layers(model: nn.Module) -> dict[str, str]:
    """Full module name → class name of every layer LoRA can adapt here (Linear / Conv1D)."""
    return {name: type(module).__name__ for name, module in model.named_modules()
            if type(module).__name__ in ADAPTABLE_TYPES and name}


def _matches(module_name: str, target: str) -> bool:
    """peft's rule: a target names a module by its full name or by a dotted suffix."""
    return module_name == target or module_name.endswith("." + target)


def _head_names(model: nn.Module) -> set[str]:
    """The output head's module name(s) (lm_head): never adapted by default."""
    get = getattr(model, "get_output_embeddings", None)
    head = get() if callable(get) else None
    return {name for name, module in model.named_modules() if head is not None and module is head}


def _tied_to_input_embeddings(model: nn.Module) -> set[str]:
    get = getattr(model, "get_input_embeddings", None)
    embeddings = get() if callable(get) else None
    weight = getattr(embeddings, "weight", None)
    return {name for name, module in model.named_modules()
            if weight is not None and name and module is not embeddings
            and getattr(module, "weight", None) is weight}


def resolve_target_modules(model: nn.Module, spec: LoraSpec, *, field: str) -> list[str]:
    """The target names for `model`: the spec's, checked against the model, or the default.

    Raises InvalidInputError naming `field` and the model's adaptable layer names when a target
    matches no layer, or matches a layer that is not Linear / Conv1D (an embedding, a norm).
    """
    layers = adaptable_layers(model)
    short = sorted({name.rsplit(".", 1)[-1] for name in layers})
    model_type = getattr(getattr(model, "config", None), "model_type", "?")
    if spec.target_modules is None:
        defaults = [t for t in LORA_DEFAULT_TARGETS.get(model_type, ())
                    if any(_matches(name, t) for name in layers)]
        if defaults:
            return defaults
        heads = _head_names(model)
        names = sorted({n.rsplit(".", 1)[-1] for n in layers if n not in heads})
        if not names:
            raise InvalidInputError(
                f"this {model_type} model has no Linear layer for LoRA to adapt", field=field)
        return names
    others = {name: type(module).__name__ for name, module in model.named_modules() if name}
    problems = []
    for target in spec.target_modules:
        if any(_matches(name, target) for name in layers):
            continue
        kinds = sorted({kind for name, kind in others.items() if _matches(name, target)})
        what = f"is a {'/'.join(kinds)}, not a Linear layer" if kinds else "matches no layer"
        problems.append(f"{target!r} {what}")
    tied = _tied_to_input_embeddings(model)
    problems += [f"{target!r} shares its weight with the input embeddings (tied), so its "
                 "adapter cannot be merged into one tensor" for target in spec.target_modules
                 if any(_matches(name, target) for name in tied)]
    if problems:
        raise InvalidInputError(
            f"{'; '.join(problems)} of this {model_type} model; its Linear layers are "
            f"{', '.join(short)} (leave target_modules unset for the default)", field=field)
    return list(spec.target_modules)


def add_lora(model: nn.Module, spec: LoraSpec, *, field: str, causal_lm: bool = True):
    """`model` wrapped in a peft LoRA model (base frozen, adapters trainable, B = 0 at start)."""
    from peft import LoraConfig, get_peft_model

    targets = resolve_target_modules(model, spec, field=field)
    layers = adaptable_layers(model)
    chosen = {kind for name, kind in layers.items() if any(_matches(name, t) for t in targets)}
    config = LoraConfig(
        r=spec.r, lora_alpha=spec.alpha, lora_dropout=spec.dropout, target_modules=targets,
        fan_in_fan_out=chosen == {"Conv1D"},  # GPT-2's Conv1D stores W as (in, out)
        bias="none", task_type="CAUSAL_LM" if causal_lm else None,
    )
    return get_peft_model(model, config)


def add_lora_to_score_model(model: nn.Module, spec: LoraSpec, *, field: str) -> nn.Module:
    """Adapters on a ScoreModel's backbone; its score head stays fully trainable."""
    model.backbone = add_lora(model.backbone, spec, field=field, causal_lm=False)
    return model


def is_peft_model(model: nn.Module) -> bool:
    return hasattr(model, "peft_config") and hasattr(model, "disable_adapter")


def parameter_counts(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts; a tied weight counts once."""
    seen: dict[int, nn.Parameter] = {}
    for param in model.parameters():
        seen.setdefault(id(param), param)
    trainable = sum(p.numel() for p in seen.values() if p.requires_grad)
    return trainable, sum(p.numel() for p in seen.values())


def describe(model: nn.Module) -> str:
    """One line for the stage log: where the adapters are and what share of weights trains."""
    trainable, total = parameter_counts(model)
    configs = [m.peft_config["default"] for _, m in model.named_modules() if is_peft_model(m)]
    where = "; ".join(f"r={c.r} alpha={c.lora_alpha:g} on {', '.join(sorted(c.target_modules))}"
                      for c in configs)
    return (f"LoRA {where}: {trainable:,} of {total:,} parameters trainable "
            f"({trainable / max(total, 1):.2%})")


# --------------------------------------------------------------------------------------------
# The reference model: the base with its adapters switched off
# --------------------------------------------------------------------------------------------


class AdapterDisabled:
    """π_ref as the actor's base model: a forward of `call` (the actor's module: the peft model,
    or the DeepSpeed engine around it) inside peft's `disable_adapter()`, in eval mode, without
    grad. With every adapter off each LoRA layer computes W·x alone, so these are exactly the
    starting policy's logits — and no second copy of the weights exists."""

    def __init__(self, peft_model: nn.Module, call: nn.Module | None = None) -> None:
        if not is_peft_model(peft_model):
            raise TypeError("AdapterDisabled needs a peft model (add_lora)")
        self.peft_model = peft_model
        self.call = call if call is not None else peft_model

    @torch.no_grad()
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        was_training = self.call.training
        self.call.eval()
        try:
            with self.peft_model.disable_adapter():
                return self.call(*args, **kwargs)
        finally:
            self.call.train(was_training)

    def parameters(self) -> Iterator[nn.Parameter]:
        return self.peft_model.parameters()

    @property
    def module(self) -> nn.Module:
        """What a forward runs (`models.unwrap` descends through it to the bare model)."""
        return self.call


# --------------------------------------------------------------------------------------------
# Merged weights for an inference engine
# --------------------------------------------------------------------------------------------


def lora_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Module name → peft LoRA layer (a module with `lora_A` adapters around a `base_layer`)."""
    return {name: module for name, module in model.named_modules()
            if isinstance(getattr(module, "lora_A", None), nn.ModuleDict)
            and hasattr(module, "base_layer")}


def _wrapper_prefixes(model: nn.Module) -> list[str]:
    """Name prefixes of the peft wrappers inside `model` (a nested one: `backbone.`)."""
    return [f"{name}.{PEFT_WRAPPER}" if name else PEFT_WRAPPER
            for name, module in model.named_modules() if is_peft_model(module)]


def plain_name(key: str, wrappers: list[str]) -> str:
    """A peft state-dict key → the base model's own name:
    `base_model.model.h.0.attn.c_attn.base_layer.weight` → `h.0.attn.c_attn.weight`."""
    for prefix in wrappers:
        if key.startswith(prefix):
            head = prefix[: -len(PEFT_WRAPPER)]
            key = head + key[len(prefix):]
            break
    return key.replace(BASE_LAYER + ".", ".")


def lora_delta(
    lora_a: torch.Tensor,  # size = (r, in)
    lora_b: torch.Tensor,  # size = (out, r)
    scaling: float,  # s = alpha / r
    *,
    fan_in_fan_out: bool,  # W stored as (in, out) (GPT-2 Conv1D)
) -> torch.Tensor:  # size = (out, in), or (in, out) when fan_in_fan_out
    """ΔW = s·B·A in the layout of the base weight, computed in float32."""
    delta = scaling * (lora_b.float() @ lora_a.float())  # (out, in)
    return delta.T if fan_in_fan_out else delta


def _layer_delta(layer: nn.Module, name: str, tensors: Mapping[str, torch.Tensor]
                 ) -> torch.Tensor | None:
    """Σ over the layer's active, unmerged adapters of s·B·A; None when there is none."""
    if layer.disable_adapters:
        return None
    total = None
    for adapter in layer.active_adapters:
        if adapter not in layer.lora_A or adapter in layer.merged_adapters:
            continue
        if layer.use_dora.get(adapter) or getattr(layer, "lora_bias", {}).get(adapter):
            raise NotImplementedError(f"{name}: DoRA / LoRA bias adapters are not supported")
        a = tensors.get(f"{name}.lora_A.{adapter}.weight", layer.lora_A[adapter].weight)
        b = tensors.get(f"{name}.lora_B.{adapter}.weight", layer.lora_B[adapter].weight)
        delta = lora_delta(a, b, float(layer.scaling[adapter]), fan_in_fan_out=layer.fan_in_fan_out)
        total = delta if total is None else total + delta
    return total


@torch.no_grad()
def engine_weights(
    model: nn.Module, state_dict: Mapping[str, torch.Tensor] | None = None
) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, tensor) pairs of the weights an inference engine should serve.

    A model with LoRA layers: every base tensor under its base-model name, with W' = W + s·B·A
    (in W's dtype) for each adapted weight and no adapter tensors; anything else: its state dict
    as it is. `state_dict` supplies the tensors instead of the live parameters (a ZeRO-3 state
    dict gathered on rank 0); the layer structure still comes from `model`. Unadapted tensors
    are the model's own (not copies): an engine copies what it loads.
    """
    tensors = state_dict if state_dict is not None else model.state_dict()
    layers = lora_layers(model)
    if not layers:
        yield from tensors.items()
        return
    wrappers = _wrapper_prefixes(model)
    for key, value in tensors.items():
        owner, _, leaf = key.rpartition(".")
        if ".lora_" in key or not isinstance(value, torch.Tensor):
            continue  # adapter tensors (merged below) and non-tensor extra state
        if owner.endswith(BASE_LAYER) and leaf == "weight":
            name = owner[: -len(BASE_LAYER)]
            delta = _layer_delta(layers[name], name, tensors) if name in layers else None
            if delta is not None:
                value = (value.float() + delta).to(value.dtype)
        yield plain_name(key, wrappers), value
