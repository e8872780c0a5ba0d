"""LoRA stage runs on tiny random models: PPO-Lag through its CLI (the issue's done-when item),
the adapter-disabled reference, resume, SFT with LoRA and the stages that load its output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from saferlhf.runners.common.events import read_events
from saferlhf.runners.common.lora import lora_delta
from saferlhf.runners.ppo_lag.tiny import build_tiny_policy, tiny_stage_config
from safetensors.torch import load_file

from tests.integration.runners._stages import TINY, events_of, run_stage
from tests.tools import ROOT

LORA = {"r": 4, "alpha": 8, "dropout": 0.0}


@pytest.fixture(scope="module")
def policy(tmp_path_factory) -> Path:
    return build_tiny_policy(tmp_path_factory.mktemp("lora") / "policy")


def _cli(cfg, tmp_path: Path, name: str, **env: str) -> subprocess.CompletedProcess:
    stage = tmp_path / f"{name}.json"
    stage.write_text(cfg.model_dump_json())
    return subprocess.run(
        [sys.executable, "-m", "saferlhf.runners.ppo_lag", "--config", str(stage)], cwd=ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
             "PYTHONPATH": str(ROOT), **env},
        capture_output=True, text=True, timeout=600)


def _step_values(out: Path, key: str) -> list[float]:
    return [e["values"][key] for e in read_events(out / "events.jsonl")
            if e["type"] == "metrics" and key in e["values"]]


def _logs(out: Path) -> list[str]:
    return [e["message"] for e in read_events(out / "events.jsonl") if e["type"] == "log"]


def _ids(tokenizer) -> dict[str, torch.Tensor]:
    return tokenizer(["BEGINNING OF CONVERSATION: USER: how do I bake bread ASSISTANT:"],
                     return_tensors="pt")


def test_a_lora_ppo_lag_cli_run_trains_adapters_over_the_frozen_base_and_both_outputs_reload(
    policy, tmp_path
):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "out"
    cfg = tiny_stage_config(policy, out, batch_size=4, lora={**LORA, "save_merged": True},
                            critic_lora={"r": 2})
    proc = _cli(cfg, tmp_path, "ppo")
    assert proc.returncode == 0, proc.stderr[-3000:]

    # adapters train: B starts at 0 and is non-zero after the 4 updates; only adapters are saved
    adapter = load_file(str(out / "model" / "adapter_model.safetensors"))
    assert adapter and all(".lora_A." in k or ".lora_B." in k for k in adapter)
    assert all(adapter[k].abs().max() > 0 for k in adapter if ".lora_B." in k)
    config = json.loads((out / "model" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(policy.resolve())
    assert set(config["target_modules"]) == {"c_attn", "c_proj", "c_fc"}

    # the base stayed frozen and unchanged: merged = starting weights + s·B·A, exactly that
    base = load_file(str(policy / "model.safetensors"))
    merged = load_file(str(out / "model" / "merged" / "model.safetensors"))
    assert merged.keys() == base.keys()
    scaling = LORA["alpha"] / LORA["r"]
    adapted = 0
    for key, weight in base.items():
        a_key = "base_model.model." + key.replace(".weight", ".lora_A.weight")
        if a_key not in adapter:
            assert torch.equal(merged[key], weight), key  # embeddings, norms, biases
            continue
        delta = lora_delta(adapter[a_key], adapter[a_key.replace("lora_A", "lora_B")], scaling,
                           fan_in_fan_out=True)  # GPT-2 Conv1D
        assert torch.allclose(merged[key], weight + delta, atol=1e-6), key
        adapted += 1
    assert adapted == 2 * 4  # 2 layers × c_attn, attn.c_proj, c_fc, mlp.c_proj

    # the reference is the adapter-disabled base: KL is exactly 0 while the adapter is still
    # B = 0 (the first iteration's rollouts), then moves once the adapter has trained
    kl = _step_values(out, "train/kl_divergence")
    assert kl[:2] == [0.0, 0.0] and all(v != 0.0 for v in kl[2:]), kl
    assert any("reference = the adapter-disabled base" in m for m in _logs(out))

    # both outputs reload: the adapter with peft over the base, merged/ with transformers alone
    tok = AutoTokenizer.from_pretrained(out / "model" / "merged")
    assert tok.get_vocab() == AutoTokenizer.from_pretrained(policy).get_vocab()
    ids = _ids(tok)
    with torch.no_grad():
        start = AutoModelForCausalLM.from_pretrained(policy).eval()
        start_logits = start(**ids).logits
        via_peft = PeftModel.from_pretrained(start, out / "model").eval()(**ids).logits
        via_merged = AutoModelForCausalLM.from_pretrained(out / "model" / "merged").eval()(
            **ids).logits
    assert torch.allclose(via_peft, via_merged, atol=1e-5)
    assert not torch.allclose(via_merged, start_logits, atol=1e-4)


def test_the_actors_reference_is_its_own_base_with_adapters_off_equal_to_the_start_policy(
    policy, tmp_path
):
    """In process, after training: π_ref shares the actor's weights (no copy) and gives exactly
    the starting policy's logits, while the actor has moved."""
    from saferlhf.runners.common.dist import DistInfo
    from saferlhf.runners.common.events import EventSink
    from saferlhf.runners.common.lora import AdapterDisabled
    from saferlhf.runners.common.models import load_policy
    from saferlhf.runners.ppo_lag.trainer import PPOLagTrainer

    cfg = tiny_stage_config(policy, tmp_path / "out", batch_size=4, lora=LORA)
    trainer = PPOLagTrainer(cfg, EventSink(cfg.output_dir), DistInfo(0, 1, 0, torch.device("cpu")))
    trainer.run()
    reference, actor = trainer.nets.reference, trainer.nets.actor.bare
    assert isinstance(reference, AdapterDisabled) and reference.peft_model is actor
    start, tok = load_policy(policy)
    ids = _ids(tok)
    with torch.no_grad():
        want = start.eval()(**ids).logits
        actor.eval()
        moved = actor(**ids).logits
    assert torch.equal(reference(**ids).logits, want)
    assert not torch.allclose(moved, want, atol=1e-4)


def test_a_lora_run_resumed_after_sigterm_ends_with_the_adapter_of_a_straight_run(
    policy, tmp_path, monkeypatch
):
    from saferlhf.runners.ppo_lag.train import run
    from saferlhf.runners.ppo_lag.trainer import Stopped

    common = {"iterations": 3, "batch_size": 4, "checkpoint_every_steps": 1000, "lora": LORA,
              "critic_lora": {"r": 2}}
    run(tiny_stage_config(policy, tmp_path / "straight", **common), None)
    out = tmp_path / "resumed"
    monkeypatch.setenv("SAFERLHF_FAULT_AFTER_STEPS", "3")
    with pytest.raises(Stopped):
        run(tiny_stage_config(policy, out, **common), None)
    state = torch.load(out / "checkpoints" / "step-4" / "state.pt", weights_only=False)
    for name in ("actor", "reward_critic", "cost_critic"):  # adapters (+ value heads) only
        saved = state["models"][name]["model"]
        assert saved and all(".lora_" in k or "score_head" in k or "extra_state" in k
                             for k in saved), name
    monkeypatch.delenv("SAFERLHF_FAULT_AFTER_STEPS")
    run(tiny_stage_config(policy, out, **common), None)
    a = load_file(str(tmp_path / "straight" / "model" / "adapter_model.safetensors"))
    b = load_file(str(out / "model" / "adapter_model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-6), key
    assert _step_values(out, "train/kl_divergence") == pytest.approx(
        _step_values(tmp_path / "straight", "train/kl_divergence"), abs=1e-6)


# -- SFT with LoRA, and the stages after it ---------------------------------------------------


def sft_config(out: Path, **over) -> dict:
    cfg = {"output_dir": str(out), "seed": 3, "model": TINY,
           "data": [{"format": "synthetic", "split": "sft", "size": 160}],
           "eval_split_ratio": 0.2, "batch_size": 16, "epochs": 2, "max_length_tokens": 96,
           "log_every_steps": 2, "checkpoint_every_steps": 4,
           "optim": {"lr": 5e-3}, "lora": {"r": 8, "alpha": 16, "dropout": 0.0}}
    cfg.update(over)
    return cfg


@pytest.fixture(scope="module")
def sft_lora(tmp_path_factory) -> Path:
    """An SFT LoRA run of the builtin tiny GPT-2 through the CLI (adapter only, no merged/)."""
    root = tmp_path_factory.mktemp("sft_lora")
    proc = run_stage("sft", sft_config(root / "sft"), root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root / "sft"


def test_sft_with_lora_writes_its_builtin_base_and_an_adapter_that_learned(sft_lora):
    from saferlhf.runners.common.models import load_policy

    model_dir, base_dir = sft_lora / "model", sft_lora / "base"
    assert (model_dir / "adapter_model.safetensors").exists()
    assert not (model_dir / "model.safetensors").exists() and not (model_dir / "merged").exists()
    assert (base_dir / "model.safetensors").exists()  # a builtin model has no folder of its own
    config = json.loads((model_dir / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(base_dir.resolve())
    losses = [e["values"]["train/loss"] for e in events_of(sft_lora, "metrics")
              if "train/loss" in e["values"]]
    # the adapters learn, modestly: a random base's frozen tied embeddings and final norm keep
    # every logit small, so no adapter can make this tiny model confident
    assert losses[-1] < losses[0] - 0.05
    assert any("LoRA r=8" in e["message"] for e in events_of(sft_lora, "log"))
    model, tok = load_policy(model_dir)  # what eval and collect do with `<sft>/model`
    base, _ = load_policy(base_dir)
    from saferlhf.runners.ppo_lag.tiny import synthetic_texts

    held_out = tok(synthetic_texts(16, seed=99), return_tensors="pt", padding=True)
    labels = held_out["input_ids"].masked_fill(held_out["attention_mask"] == 0, -100)
    with torch.no_grad():
        nll = {name: m.eval()(**held_out, labels=labels).loss.item()
               for name, m in (("lora", model), ("base", base))}
    assert nll["lora"] < nll["base"] - 0.05, nll


def test_sft_with_lora_on_a_model_folder_names_that_folder_as_the_base(tmp_path):
    from saferlhf.runners.common.config import SFTConfig
    from saferlhf.runners.sft.train import run

    from tests.integration.runners._stages import make_policy

    folder = make_policy(tmp_path / "pretrained")
    cfg = SFTConfig.model_validate({"kind": "sft", **sft_config(
        tmp_path / "out", model={"path": str(folder)}, max_steps=2, eval_split_ratio=None,
        lora={"r": 2, "target_modules": ["c_attn"], "save_merged": True})})
    run(cfg)
    config = json.loads((tmp_path / "out" / "model" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(folder.resolve())
    assert config["target_modules"] == ["c_attn"]
    assert not (tmp_path / "out" / "base").exists()  # no copy of a base that has a folder
    assert (tmp_path / "out" / "model" / "merged" / "model.safetensors").exists()


def test_reward_and_ppo_stages_start_from_an_sft_adapter_and_round_two_trains_it_on(
    sft_lora, tmp_path
):
    """Round 1: actor = reference = the SFT adapter folder → base = SFT merged, fresh adapter,
    KL 0 at first. Round 2: actor = round 1's adapter over the SFT model → that adapter trains
    on, π_ref is still the SFT model (KL ≠ 0 from the first rollout)."""
    from saferlhf.runners.common.models import load_policy
    from saferlhf.runners.common.score_model import ScoreModel
    from saferlhf.runners.ppo_lag.train import run

    sft_model = sft_lora / "model"
    critic = ScoreModel.from_policy(str(sft_model), score_type="critic")  # reward / cost stages
    policy_model, _ = load_policy(sft_model)
    for key, value in policy_model.base_model.state_dict().items():
        assert torch.equal(critic.backbone.state_dict()[key], value), key

    prompts = {"prompts": [{"format": "synthetic", "split": "prompts", "size": 32}]}
    r1 = tmp_path / "r1"
    run(tiny_stage_config(sft_model, r1, batch_size=4, iterations=2, lora=LORA, **prompts), None)
    assert _step_values(r1, "train/kl_divergence")[:2] == [0.0, 0.0]
    first = load_file(str(r1 / "model" / "adapter_model.safetensors"))

    r2 = tmp_path / "r2"
    cfg = tiny_stage_config(sft_model, r2, batch_size=4, iterations=1, lora=LORA,
                            actor_path=str(r1 / "model"), **prompts)
    run(cfg, None)
    assert _step_values(r2, "train/kl_divergence")[0] != 0.0
    assert any("reference = the adapter-disabled base" in m for m in _logs(r2))
    config = json.loads((r2 / "model" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(sft_model.resolve())
    second = load_file(str(r2 / "model" / "adapter_model.safetensors"))
    assert second.keys() == first.keys()
    assert any(not torch.equal(first[k], second[k]) for k in first)
    model, _ = load_policy(r2 / "model")  # sft base + sft adapter + round-2 adapter, merged
    assert not hasattr(model, "peft_config")


def test_sft_with_lora_resumed_after_sigterm_ends_with_the_adapter_of_a_straight_run(
    sft_lora, tmp_path, monkeypatch
):
    from saferlhf.runners.common.config import SFTConfig
    from saferlhf.runners.common.train_loop import Stopped
    from saferlhf.runners.sft.train import run

    cfg = SFTConfig.model_validate({"kind": "sft", **sft_config(tmp_path / "b")})
    monkeypatch.setenv("SAFERLHF_FAULT_AFTER_STEPS", "6")
    with pytest.raises(Stopped):
        run(cfg)
    saved = torch.load(tmp_path / "b" / "checkpoints" / "step-6" / "state.pt",
                       weights_only=False)["model"]
    assert saved and all(".lora_" in k for k in saved)
    monkeypatch.delenv("SAFERLHF_FAULT_AFTER_STEPS")
    run(cfg)
    a = load_file(str(sft_lora / "model" / "adapter_model.safetensors"))
    b = load_file(str(tmp_path / "b" / "model" / "adapter_model.safetensors"))
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-6), key
    base_a = load_file(str(sft_lora / "base" / "model.safetensors"))
    base_b = load_file(str(tmp_path / "b" / "base" / "model.safetensors"))
    assert all(torch.equal(base_a[k], base_b[k]) for k in base_a)  # the same builtin init


def test_gradient_checkpointing_with_lora_trains_the_same_adapter(tmp_path):
    """Checkpointed segments whose inputs need no grad (a frozen embedding) must still give the
    adapters their gradients."""
    from saferlhf.runners.common.config import SFTConfig
    from saferlhf.runners.sft.train import run

    for name, checkpointing in (("plain", False), ("ckpt", True)):
        run(SFTConfig.model_validate({"kind": "sft", **sft_config(
            tmp_path / name, max_steps=3, eval_split_ratio=None,
            backend={"gradient_checkpointing": checkpointing})}))
    a = load_file(str(tmp_path / "plain" / "model" / "adapter_model.safetensors"))
    b = load_file(str(tmp_path / "ckpt" / "model" / "adapter_model.safetensors"))
    assert any(a[k].abs().max() > 0 for k in a if ".lora_B." in k)
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-6), key


def test_an_unknown_lora_target_exits_2_naming_the_field_and_the_models_layers(tmp_path):
    proc = run_stage("sft", sft_config(tmp_path / "out", lora={"target_modules": ["q_proj"]}),
                     tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "lora.target_modules" in proc.stderr and "c_attn, c_fc, c_proj" in proc.stderr
    assert "Traceback" not in proc.stderr


# -- DeepSpeed -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_zero2_lora_run_checkpoints_adapters_only_and_resumes_to_the_straight_adapter(
    policy, tmp_path
):
    """ZeRO-2 through the CLI: the engines' checkpoints leave the frozen base out, and a run
    stopped by SIGTERM resumes to the adapter of a straight run."""
    common = {"iterations": 3, "checkpoint_every_steps": 1000, "lora": LORA,
              "critic_lora": {"r": 2},
              "backend": {"kind": "deepspeed", "deepspeed": {"zero_stage": 2}}}
    stopped = _cli(tiny_stage_config(policy, tmp_path / "resumed", **common), tmp_path, "r",
                   SAFERLHF_FAULT_AFTER_STEPS="1")
    assert stopped.returncode == 75, stopped.stderr[-3000:]
    states = torch.load(tmp_path / "resumed" / "checkpoints" / "step-1" / "actor" / "ds" /
                        "mp_rank_00_model_states.pt", weights_only=False)
    base_keys = [k for k in states["module"] if ".lora_" not in k]
    # DeepSpeed drops frozen parameters by name; GPT-2's lm_head is an alias of the (frozen)
    # input embeddings, so that one tensor stays in its state dict
    assert states["module"] and base_keys == ["base_model.model.lm_head.weight"], base_keys
    for name in ("resumed", "straight"):
        proc = _cli(tiny_stage_config(policy, tmp_path / name, **common), tmp_path, name)
        assert proc.returncode == 0, proc.stderr[-3000:]
    a = load_file(str(tmp_path / "straight" / "model" / "adapter_model.safetensors"))
    b = load_file(str(tmp_path / "resumed" / "model" / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


@pytest.mark.slow
@pytest.mark.parametrize("zero_stage", [2, 3])
def test_sft_with_lora_under_deepspeed_trains_the_adapter_of_the_plain_backend(
    tmp_path, zero_stage
):
    """ZeRO-3 also gathers the sharded weights for the adapter and the merged folder."""
    from saferlhf.runners.common.config import SFTConfig
    from saferlhf.runners.sft.train import run

    lora = {"r": 4, "dropout": 0.0, "save_merged": True}
    run(SFTConfig.model_validate({"kind": "sft", **sft_config(tmp_path / "plain", max_steps=4,
                                                              lora=lora)}))
    ds = sft_config(tmp_path / "ds", max_steps=4, lora=lora,
                    backend={"kind": "deepspeed", "deepspeed": {"zero_stage": zero_stage}})
    proc = run_stage("sft", ds, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ("adapter_model.safetensors", "merged/model.safetensors"):
        a = load_file(str(tmp_path / "plain" / "model" / name))
        b = load_file(str(tmp_path / "ds" / "model" / name))
        assert a.keys() == b.keys()
        for key in a:
            assert torch.allclose(a[key], b[key], atol=1e-5), (name, key)


def test_a_reward_model_trained_with_lora_is_saved_merged_in_the_usual_layout(policy, tmp_path):
    from saferlhf.runners.common.config import RewardConfig
    from saferlhf.runners.common.score_model import ScoreModel
    from saferlhf.runners.reward.train import run

    cfg = RewardConfig.model_validate({
        "kind": "reward", "output_dir": str(tmp_path / "rm"), "policy_path": str(policy),
        "data": [{"format": "synthetic", "split": "preference", "size": 48}], "batch_size": 8,
        "max_steps": 3, "max_length_tokens": 64, "optim": {"lr": 1e-2},
        "lora": {"r": 2, "dropout": 0.0}})
    run(cfg)
    saved = load_file(str(tmp_path / "rm" / "model" / "model.safetensors"))
    assert not any("lora_" in k or "base_model" in k for k in saved)
    start = load_file(str(policy / "model.safetensors"))
    adapted = "backbone.h.0.attn.c_attn.weight"
    assert not torch.equal(saved[adapted], start["transformer.h.0.attn.c_attn.weight"])
    assert torch.equal(saved["backbone.wte.weight"], start["transformer.wte.weight"])  # frozen
    ScoreModel.from_pretrained(tmp_path / "rm" / "model")  # what PPO-Lag and evaluate load
    assert any("reward: LoRA r=2" in m for m in _logs(tmp_path / "rm"))
